//! What an application may put in an authorization's `state`: the limits the module
//! documentation explains, in a module of their own so that the error messages that
//! quote them need nothing else of the authorization code.

/// The fewest characters a supplied `state` may have: 22 URL-safe characters can
/// hold the 128 bits of entropy that make it unguessable (see the
/// [module documentation](crate::authorize#the-applications-own-state)).
pub const MIN_STATE_CHARS: usize = 22;

/// The most characters a supplied `state` may have: it travels in URLs.
pub const MAX_STATE_CHARS: usize = 256;

/// The most characters of [state data](crate::authorize::AuthorizationRequest::state_data):
/// it travels in URLs, through the browser and the provider.
pub const MAX_STATE_DATA: usize = 1024;

/// Whether a supplied `state` is long enough to be unguessable, short enough for a URL,
/// and made of URL-safe (RFC 3986 unreserved) characters only.
pub(crate) fn is_usable_state(state: &str) -> bool {
    (MIN_STATE_CHARS..=MAX_STATE_CHARS).contains(&state.len())
        && state
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Whether state data is short enough for a URL and printable ASCII only.
pub(crate) fn is_usable_state_data(data: &str) -> bool {
    data.len() <= MAX_STATE_DATA && data.bytes().all(|b| (0x20..=0x7e).contains(&b))
}
