//! Random values the server hands out: tokens, codes, nonces.

/// A random alphanumeric string of `len` characters.
pub(crate) fn random_string(len: usize) -> String {
    std::iter::repeat_with(fastrand::alphanumeric).take(len).collect()
}
