//! Secret strings whose `Debug` never shows their content.
//!
//! Client secrets, access tokens and refresh tokens are each their own type, so one
//! cannot be passed where another is expected, and none of them prints its value:
//! `Debug` shows the type name and `***`. The value is reachable only through an
//! explicitly named accessor, [`AccessToken::secret`] and friends, which makes every
//! place that touches a secret easy to find in review.
//!
//! ```
//! use tower_oauth2::secret::ClientSecret;
//!
//! let secret = ClientSecret::new("hunter2");
//! assert_eq!(format!("{secret:?}"), "ClientSecret(***)");
//! assert_eq!(secret.secret(), "hunter2");
//! ```

use std::fmt;

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        // `Debug` is written by hand so that the value can never reach a log line.
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(Box<str>);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into().into_boxed_str())
            }

            /// The secret value itself. Every call site is a place where the secret
            /// leaves its wrapper; keep them few.
            pub fn secret(&self) -> &str {
                &self.0
            }

            /// A short, stable, non-reversible tag for this value, fit for log lines
            /// that need to tell two secrets apart (`"a3f09c1e"`). It is a truncated
            /// 64-bit FNV-1a hash: it identifies, it does not protect.
            pub fn fingerprint(&self) -> Fingerprint {
                Fingerprint::of(self.0.as_bytes())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(***)"))
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self::new(value)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self::new(value)
            }
        }
    };
}

secret_type! {
    /// An OAuth 2.0 client secret (RFC 6749 §2.3.1).
    ClientSecret
}

secret_type! {
    /// An access token: the credential attached to API requests.
    AccessToken
}

secret_type! {
    /// A refresh token: the long-lived credential exchanged for new access tokens.
    RefreshToken
}

secret_type! {
    /// An authorization code (RFC 6749 §4.1.2): short-lived, single-use, exchanged once
    /// for tokens.
    AuthorizationCode
}

secret_type! {
    /// A user's password, for the rare flows that take one (iOFFICE's direct code request).
    Password
}

secret_type! {
    /// A PKCE code verifier (RFC 7636 §4.1): sent with the code exchange, proving that
    /// whoever exchanges the code started the authorization.
    PkceVerifier
}

/// A short tag that tells two secrets apart without revealing either.
///
/// `Display` prints 8 hex digits. See [`AccessToken::fingerprint`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(u32);

impl Fingerprint {
    fn of(bytes: &[u8]) -> Self {
        // FNV-1a, 64 bit, folded to 32 bits: enough to correlate log lines.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        Self((hash ^ (hash >> 32)) as u32)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let token = AccessToken::new("very-secret-token");
        let refresh = RefreshToken::new("very-secret-refresh");
        let client = ClientSecret::new("very-secret-client");
        let printed = format!("{token:?} {refresh:?} {client:?} {:?}", Some(&token));
        assert!(!printed.contains("very-secret"), "{printed}");
        assert_eq!(
            printed,
            "AccessToken(***) RefreshToken(***) ClientSecret(***) Some(AccessToken(***))"
        );
    }

    #[test]
    fn fingerprints_are_stable_and_distinct() {
        let a = AccessToken::new("token-a");
        assert_eq!(a.fingerprint(), AccessToken::new("token-a").fingerprint());
        assert_ne!(a.fingerprint(), AccessToken::new("token-b").fingerprint());
        assert_eq!(a.fingerprint().to_string().len(), 8);
        assert!(!a.fingerprint().to_string().contains("token"));
    }
}
