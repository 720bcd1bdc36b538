//! Redirects that took a token's request to another origin, noticed where the crate can
//! see them: said once per credential in a warning that names origins (scheme, host,
//! port) and never a path, a query or a header value.
//!
//! The tower layer sees a redirect followed *inside* it through the `RequestUri` that
//! tower-http's `FollowRedirect` puts on every answer; the reqwest middleware through
//! the answer's URL. Both call [`Crossings::warn_once`].

use std::{
    collections::HashSet,
    fmt,
    sync::{atomic::AtomicBool, Mutex, PoisonError},
};

use http::Uri;

use crate::{credential::CredentialState, CredentialKey};

/// Per registry: which credentials were warned about, and whether a redirect policy of
/// this crate was built for it.
#[derive(Default)]
pub(crate) struct Crossings {
    /// Set by `redirect::policy`: a `FollowRedirect` found inside the layer is then
    /// taken to be using it, and a cross-origin hop is not reported (its tokens were
    /// stripped).
    #[cfg_attr(not(feature = "follow-redirect"), allow(dead_code))]
    pub(crate) guarded: AtomicBool,
    /// Keys without their subject: one warning per credential, or per users' provider.
    warned: Mutex<HashSet<CredentialKey>>,
}

impl Crossings {
    /// Logs `message` once for `state`'s credential, with the origin the token was sent
    /// to (when known) and the one the redirect went to.
    #[cold]
    pub(crate) fn warn_once(
        &self,
        state: &CredentialState,
        from: Option<&Uri>,
        to: &Uri,
        message: &'static str,
    ) {
        let key = state.credential_key().without_subject();
        let first = self
            .warned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone());
        if first {
            match from {
                Some(from) => tracing::warn!(
                    credential = %key,
                    from = %OriginOf(from),
                    to = %OriginOf(to),
                    "{}",
                    message
                ),
                None => tracing::warn!(credential = %key, to = %OriginOf(to), "{}", message),
            }
        }
    }
}

/// Displays a URI's origin only: `scheme://host:port`, the port always written.
pub(crate) struct OriginOf<'a>(pub(crate) &'a Uri);

impl fmt::Display for OriginOf<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.0.scheme_str().unwrap_or("?");
        let host = self.0.host().unwrap_or("?");
        let port = self.0.port_u16().or(match scheme {
            "https" => Some(443),
            "http" => Some(80),
            _ => None,
        });
        match port {
            Some(port) => write!(f, "{scheme}://{host}:{port}"),
            None => write!(f, "{scheme}://{host}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OriginOf;

    #[test]
    fn an_origin_is_shown_without_user_path_or_query() {
        for (uri, shown) in [
            (
                "https://api.example.com/v1?access_token=t",
                "https://api.example.com:443",
            ),
            ("http://user:pw@127.0.0.1:8080/x?y#z", "http://127.0.0.1:8080"),
            ("http://[::1]/", "http://[::1]:80"),
        ] {
            let uri: http::Uri = uri.parse().unwrap();
            assert_eq!(OriginOf(&uri).to_string(), shown);
        }
    }
}
