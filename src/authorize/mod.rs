//! The authorization-code flow: the URL a user is sent to, and the callback that brings
//! the code back.
//!
//! [`Provider::authorization`] starts a [`PendingAuthorization`]: the URL to redirect the
//! user to, with a fresh random `state` (and a PKCE S256 challenge where the provider
//! accepts it). Keep the pending authorization on the server, keyed by its
//! [`state`](PendingAuthorization::state), until the callback arrives; then
//! [`PendingAuthorization::complete`] checks the callback (the `state` in constant time,
//! an `error` parameter as a typed error) and yields an [`AuthorizedCode`], which
//! becomes a [`Credential`] whose first token request exchanges the code.
//!
//! # The application's own `state`
//!
//! Applications carry data through the provider in `state`: where to send the user
//! afterwards, a tenant. [`AuthorizationRequest::state_data`] appends such data to the
//! random `state` (`{random}.{data}`), and [`AuthorizedCode::state_data`] hands it
//! back, from the pending authorization kept on the server, never as read from the
//! callback; a callback whose data was altered does not match and is refused.
//! [`AuthorizationRequest::state`] replaces the random part with the application's own
//! value, for an application that must find the login again from the `state` alone.
//! Either way the whole `state` is compared in constant time and a pending
//! authorization is used once ([`PendingAuthorization::complete`] takes it by value).
//!
//! A supplied `state` must be unguessable, and the crate can only check its length and
//! alphabet: at least [`MIN_STATE_CHARS`] (22) URL-safe characters (`A`–`Z`, `a`–`z`,
//! `0`–`9`, `-`, `.`, `_`, `~`), at most [`MAX_STATE_CHARS`]. 22 characters of the
//! base64url alphabet hold 132 bits, enough for the 128 bits of entropy a secret
//! needs against guessing, provided they were drawn at random (from a CSPRNG, or a
//! MAC over the application's data); a shorter value is refused with
//! [`AuthorizationErrorKind::UnusableState`], and a value of the right length that the
//! application did not draw at random is its own mistake. State data is not secret
//! (the user and the provider see it) and is at most [`MAX_STATE_DATA`] printable ASCII
//! characters.
//!
//! Most providers put the code in the callback URL's query, which reaches the server.
//! iOFFICE puts it in the fragment (`#code=…`), which browsers never send: the callback
//! page needs a line of script that posts `location.hash` to the backend, which then
//! passes it to [`complete`](PendingAuthorization::complete) as it is.
//!
//! # Example
//!
//! ```
//! use tower_oauth2::{providers, Credential, Error};
//!
//! # fn main() -> Result<(), Error> {
//! let provider = providers::dottedsign("https://api.dottedsign.com");
//! let pending = provider.authorization("my-client", "https://app.example.com/callback").start()?;
//! // Redirect the user to `pending.url()`, and keep `pending` under `pending.state()`.
//! assert!(pending.url().starts_with("https://api.dottedsign.com/v1/oauth/authorize?response_type=code"));
//!
//! // The provider redirects back to the callback:
//! let callback = format!("https://app.example.com/callback?code=abc&state={}", pending.state());
//! let code = pending.complete(&callback)?;
//! let credential = code.into_credential(provider, "my-client", Some("my-secret".into()));
//! # let _ = credential;
//! # Ok(())
//! # }
//! ```

pub(crate) mod state;

use std::{fmt, sync::Arc};

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use self::state::{is_usable_state, is_usable_state_data};
pub use self::state::{MAX_STATE_CHARS, MAX_STATE_DATA, MIN_STATE_CHARS};
use crate::{
    error::{AuthorizationError, AuthorizationErrorKind, Error},
    provider::{ClientAuth, Provider},
    redact::Redactor,
    secret::{AuthorizationCode, ClientSecret, PkceVerifier},
    Credential, Grant,
};

/// An authorization about to start; see the [module documentation](self).
#[derive(Debug, Clone)]
#[must_use = "an authorization does nothing until `start` is called"]
pub struct AuthorizationRequest {
    provider: Provider,
    client_id: String,
    redirect_uri: String,
    scopes: Option<Vec<String>>,
    pkce: Option<bool>,
    extra: Vec<(String, String)>,
    state: Option<String>,
    state_data: Option<String>,
}

/// Random bytes in a drawn `state`: 192 bits, 32 base64url characters.
const STATE_BYTES: usize = 24;

impl Provider {
    /// Starts building an authorization-code request for `client_id`, whose callback is
    /// `redirect_uri`.
    pub fn authorization(
        &self,
        client_id: impl Into<String>,
        redirect_uri: impl Into<String>,
    ) -> AuthorizationRequest {
        AuthorizationRequest {
            provider: self.clone(),
            client_id: client_id.into(),
            redirect_uri: redirect_uri.into(),
            scopes: None,
            pkce: None,
            extra: Vec::new(),
            state: None,
            state_data: None,
        }
    }
}

impl AuthorizationRequest {
    /// The scopes to ask for, instead of the provider's default ones.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = Some(crate::provider::scope_set(scopes));
        self
    }

    /// Sends a PKCE S256 challenge, or not, whatever the provider's
    /// [`pkce`](Provider::pkce) setting says.
    pub fn pkce(mut self, enabled: bool) -> Self {
        self.pkce = Some(enabled);
        self
    }

    /// Adds a parameter the provider understands beyond the standard ones, such as
    /// `login_hint` or `prompt`. The standard ones cannot be replaced this way.
    pub fn param(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.push((name.into(), value.into()));
        self
    }

    /// The application's own `state`, instead of one drawn here: at least
    /// [`MIN_STATE_CHARS`] and at most [`MAX_STATE_CHARS`] URL-safe characters
    /// (`A`–`Z`, `a`–`z`, `0`–`9`, `-`, `.`, `_`, `~`), drawn at random by the application.
    /// See [the application's own `state`](self#the-applications-own-state).
    pub fn state(mut self, state: impl Into<String>) -> Self {
        self.state = Some(state.into());
        self
    }

    /// Data the application gets back with the code ([`AuthorizedCode::state_data`]): a
    /// return path, a tenant. It is appended to the `state` after a `.`, so the user and
    /// the provider see it: never put a secret here. At most [`MAX_STATE_DATA`] printable
    /// ASCII characters.
    pub fn state_data(mut self, data: impl Into<String>) -> Self {
        self.state_data = Some(data.into());
        self
    }

    /// Builds the URL, with a fresh `state` (or the application's) and, where enabled, a
    /// PKCE verifier.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when the provider has no authorization URL, or when the
    /// operating system's random source fails; [`Error::Authorization`] of kind
    /// [`AuthorizationErrorKind::UnusableState`] when a supplied `state` is too short,
    /// too long or not URL-safe, or state data is too long or not printable ASCII.
    pub fn start(self) -> Result<PendingAuthorization, Error> {
        let provider = &self.provider;
        let Some(base) = &provider.authorize_url else {
            return Err(Error::config(format!(
                "`{}` has no authorization URL; set `Provider::authorize_url`",
                provider.name
            )));
        };
        let unusable = || {
            Error::Authorization(AuthorizationError {
                provider: provider.name.clone(),
                kind: AuthorizationErrorKind::UnusableState,
                error: None,
                description: None,
            })
        };
        let mut state = match self.state {
            Some(state) if is_usable_state(&state) => state,
            Some(_) => return Err(unusable()),
            None => random_token(STATE_BYTES)?,
        };
        if let Some(data) = &self.state_data {
            if !is_usable_state_data(data) {
                return Err(unusable());
            }
            state.push('.');
            state.push_str(data);
        }
        let pkce = self.pkce.unwrap_or(provider.pkce);
        let verifier = pkce.then(|| random_token(32)).transpose()?;
        let scopes = self
            .scopes
            .unwrap_or_else(|| crate::provider::scope_set(provider.default_scopes.iter().cloned()));

        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("response_type", "code");
        if provider.client_auth != ClientAuth::None {
            query.append_pair("client_id", &self.client_id);
        }
        query.append_pair("redirect_uri", &self.redirect_uri);
        if !scopes.is_empty() {
            query.append_pair("scope", &provider.scope_syntax.join(&scopes));
        }
        query.append_pair("state", &state);
        if let Some(verifier) = &verifier {
            let challenge = Sha256::digest(verifier.as_bytes());
            query.append_pair("code_challenge", &base64url(&challenge));
            query.append_pair("code_challenge_method", "S256");
        }
        const STANDARD: [&str; 7] = [
            "response_type",
            "client_id",
            "redirect_uri",
            "scope",
            "state",
            "code_challenge",
            "code_challenge_method",
        ];
        for (name, value) in self
            .extra
            .iter()
            .filter(|(name, _)| !STANDARD.contains(&name.as_str()))
        {
            query.append_pair(name, value);
        }
        let separator = if base.contains('?') { '&' } else { '?' };
        Ok(PendingAuthorization {
            url: format!("{base}{separator}{}", query.finish()),
            state,
            verifier: verifier.map(PkceVerifier::new),
            redirect_uri: self.redirect_uri,
            provider: provider.name.clone(),
            state_data: self.state_data,
        })
    }
}

/// An authorization waiting for its callback. Keep it on the server (never in the
/// browser), keyed by [`state`](Self::state), and use it once.
#[derive(Clone)]
pub struct PendingAuthorization {
    url: String,
    state: String,
    verifier: Option<PkceVerifier>,
    redirect_uri: String,
    provider: Arc<str>,
    state_data: Option<String>,
}

impl PendingAuthorization {
    /// The URL to send the user to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The `state` this authorization sent (with its [data](Self::state_data), if any),
    /// to find it again when the callback arrives.
    pub fn state(&self) -> &str {
        &self.state
    }

    /// The data given with [`AuthorizationRequest::state_data`], if any.
    pub fn state_data(&self) -> Option<&str> {
        self.state_data.as_deref()
    }

    /// The callback URL the code will be issued for.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Accepts the callback: the whole callback URL, or just its query or fragment
    /// (with or without the leading `?` or `#`).
    ///
    /// # Errors
    ///
    /// [`Error::Authorization`] when the `state` is missing or not this
    /// authorization's (compared in constant time), when the provider sent an `error`
    /// (`access_denied` when the user said no), or when there is no code.
    pub fn complete(self, callback: &str) -> Result<AuthorizedCode, Error> {
        let params = callback_params(callback);
        // Whoever sent the browser here wrote these: nothing of the callback that is a
        // secret (the state, a code) may come back out of the error.
        let redactor = params
            .iter()
            .filter(|(name, _)| name == "state" || name == "code")
            .fold(Redactor::none().secret(&self.state), |r, (_, value)| {
                r.secret(value)
            });
        let fail = |kind, error: Option<&str>, description: Option<&str>| {
            Error::Authorization(AuthorizationError {
                provider: self.provider.clone(),
                kind,
                error: error.map(|e| redactor.code(e)),
                description: description.map(|d| redactor.text(d, 256)),
            })
        };
        let get = |name: &str| {
            params
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        // The state comes first: an error or a code from a callback this server did
        // not start must not be believed.
        let state_matches =
            get("state").is_some_and(|state| bool::from(state.as_bytes().ct_eq(self.state.as_bytes())));
        if !state_matches {
            return Err(fail(AuthorizationErrorKind::StateMismatch, None, None));
        }
        if let Some(error) = get("error") {
            return Err(fail(
                AuthorizationErrorKind::Denied,
                Some(error),
                get("error_description"),
            ));
        }
        match get("code").filter(|code| !code.is_empty()) {
            Some(code) => Ok(AuthorizedCode {
                code: AuthorizationCode::new(code),
                redirect_uri: self.redirect_uri,
                verifier: self.verifier,
                state_data: self.state_data,
            }),
            None => Err(fail(AuthorizationErrorKind::MissingCode, None, None)),
        }
    }
}

impl fmt::Debug for PendingAuthorization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingAuthorization")
            .field("provider", &self.provider)
            .field("redirect_uri", &self.redirect_uri)
            .field("pkce", &self.verifier.is_some())
            .field("state_data", &self.state_data)
            .finish_non_exhaustive()
    }
}

/// A code the user's authorization produced, ready to be exchanged.
#[derive(Debug, Clone)]
pub struct AuthorizedCode {
    code: AuthorizationCode,
    redirect_uri: String,
    verifier: Option<PkceVerifier>,
    state_data: Option<String>,
}

impl AuthorizedCode {
    /// The callback URL the code was issued for.
    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// The data the authorization was started with
    /// ([`AuthorizationRequest::state_data`]): the pending authorization's copy, which
    /// the callback had to match.
    pub fn state_data(&self) -> Option<&str> {
        self.state_data.as_deref()
    }

    pub(crate) fn into_pending(self) -> crate::token_endpoint::PendingCode {
        crate::token_endpoint::PendingCode {
            code: self.code,
            redirect_uri: self.redirect_uri,
            pkce_verifier: self.verifier,
        }
    }

    /// The credential whose first token request exchanges this code (with the PKCE
    /// verifier, if the authorization sent a challenge).
    pub fn into_credential(
        self,
        provider: Provider,
        client_id: impl Into<String>,
        client_secret: Option<ClientSecret>,
    ) -> Credential {
        let mut credential =
            Credential::authorization_code(provider, client_id, client_secret, self.code, self.redirect_uri);
        if let Grant::AuthorizationCode { pkce_verifier, .. } = &mut credential.grant {
            *pkce_verifier = self.verifier;
        }
        credential
    }
}

/// The parameters of a callback URL, its query or its fragment.
///
/// A URL (absolute, or a path) is read from its first `?` or `#`; anything else is the
/// parameters themselves, with or without a leading `?` or `#`, and may hold a literal
/// `?` in a value (RFC 3986 allows it in a query: `iss=https://idp.example/?tenant=1`).
fn callback_params(callback: &str) -> Vec<(String, String)> {
    let callback = callback.trim();
    let params = if let Some(params) = callback.strip_prefix(['?', '#']) {
        params
    } else if is_url(callback) {
        match callback.find(['?', '#']) {
            Some(at) => &callback[at + 1..],
            None => "",
        }
    } else {
        callback
    };
    // A fragment after a query (`?a=1#code=…`) is read too.
    form_urlencoded::parse(params.replace('#', "&").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Whether `s` starts like a URL: a path, or a scheme (RFC 3986 §3.1) and `:`. A query
/// starts with a parameter name, which ends at `=` or `&` before any `:` could.
fn is_url(s: &str) -> bool {
    if s.starts_with('/') {
        return true;
    }
    let scheme_end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .unwrap_or(s.len());
    s[..scheme_end].starts_with(|c: char| c.is_ascii_alphabetic()) && s[scheme_end..].starts_with(':')
}

/// `bytes` random bytes from the operating system, base64url-encoded without padding.
/// Also the login routes' browser nonces (`crate::axum`).
pub(crate) fn random_token(bytes: usize) -> Result<String, Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|_| Error::config("the operating system's random source failed"))?;
    Ok(base64url(&buf))
}

fn base64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers;

    fn query_of(url: &str) -> Vec<(String, String)> {
        callback_params(url)
    }

    fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
        params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_url_carries_the_standard_parameters_and_a_fresh_state() {
        let provider = providers::ioffice("https://acme.iofficeconnect.com");
        let a = provider
            .authorization("cid", "https://app.example/cb")
            .start()
            .unwrap();
        let b = provider
            .authorization("cid", "https://app.example/cb")
            .start()
            .unwrap();
        assert!(a.url().starts_with("https://acme.iofficeconnect.com/login.html?"));
        let params = query_of(a.url());
        // iOFFICE's login page needs all five.
        assert_eq!(param(&params, "response_type"), Some("code"));
        assert_eq!(param(&params, "client_id"), Some("cid"));
        assert_eq!(param(&params, "redirect_uri"), Some("https://app.example/cb"));
        assert_eq!(param(&params, "scope"), Some("email"));
        assert_eq!(param(&params, "state"), Some(a.state()));
        assert!(a.state().len() >= 32);
        assert_ne!(a.state(), b.state());
        assert!(
            param(&params, "code_challenge").is_none(),
            "PKCE is off unless enabled"
        );
    }

    #[test]
    fn grindery_sends_no_client_id() {
        let pending = providers::grindery()
            .authorization("label", "https://app.example/cb")
            .start()
            .unwrap();
        assert!(param(&query_of(pending.url()), "client_id").is_none());
    }

    #[test]
    fn pkce_s256_challenge_matches_the_verifier() {
        let provider = Provider::standard("https://auth.example/token")
            .authorize_url("https://auth.example/authorize?tenant=x")
            .pkce(true);
        let pending = provider
            .authorization("cid", "https://app.example/cb")
            .start()
            .unwrap();
        let params = query_of(pending.url());
        assert_eq!(param(&params, "tenant"), Some("x"));
        assert_eq!(param(&params, "code_challenge_method"), Some("S256"));
        let verifier = pending.verifier.clone().unwrap();
        assert!((43..=128).contains(&verifier.secret().len()));
        let expected = base64url(&Sha256::digest(verifier.secret().as_bytes()));
        assert_eq!(param(&params, "code_challenge"), Some(expected.as_str()));

        let callback = format!("?code=c1&state={}", pending.state());
        let credential = pending
            .complete(&callback)
            .unwrap()
            .into_credential(provider, "cid", None);
        match &credential.grant {
            Grant::AuthorizationCode {
                code, pkce_verifier, ..
            } => {
                assert_eq!(code.secret(), "c1");
                assert_eq!(
                    pkce_verifier.as_ref().map(|v| v.secret()),
                    Some(verifier.secret())
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn callbacks_are_checked() {
        let provider = providers::agrello();
        let start = || {
            provider
                .authorization("cid", "https://app.example/cb")
                .start()
                .unwrap()
        };
        let kind = |result: Result<AuthorizedCode, Error>| match result {
            Err(Error::Authorization(e)) => e.kind(),
            other => panic!("{other:?}"),
        };

        let pending = start();
        assert_eq!(
            kind(pending.complete("https://app.example/cb?code=c&state=forged")),
            AuthorizationErrorKind::StateMismatch
        );
        assert_eq!(
            kind(start().complete("https://app.example/cb?code=c")),
            AuthorizationErrorKind::StateMismatch
        );
        let pending = start();
        let denied = format!(
            "https://app.example/cb?error=access_denied&error_description=User+said+no&state={}",
            pending.state()
        );
        match pending.complete(&denied) {
            Err(Error::Authorization(e)) => {
                assert_eq!(e.kind(), AuthorizationErrorKind::Denied);
                assert_eq!(e.error(), Some("access_denied"));
                assert_eq!(e.description(), Some("User said no"));
                assert!(e.to_string().contains("access_denied"));
            }
            other => panic!("{other:?}"),
        }
        let pending = start();
        let no_code = format!("state={}", pending.state());
        assert_eq!(
            kind(pending.complete(&no_code)),
            AuthorizationErrorKind::MissingCode
        );

        // iOFFICE's fragment, as the page script hands it over.
        let pending = start();
        let fragment = format!("#code=abc&appCode=x&state={}", pending.state());
        let code = pending.clone().complete(&fragment).unwrap();
        assert_eq!(code.code.secret(), "abc");
        let printed = format!("{pending:?} {code:?}");
        assert!(
            !printed.contains("abc") && !printed.contains(pending.state()),
            "{printed}"
        );
    }

    fn kind_of(err: Error) -> AuthorizationErrorKind {
        match err {
            Error::Authorization(e) => e.kind(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn state_data_travels_after_the_random_part_and_comes_back_from_the_server_copy() {
        let provider = providers::agrello();
        let start = || {
            provider
                .authorization("cid", "https://app.example/cb")
                .state_data("tenant=7;return=/docs/42?tab=2")
                .start()
                .unwrap()
        };
        let (pending, other) = (start(), start());
        assert_ne!(pending.state(), other.state());
        let (random, data) = pending.state().split_once('.').unwrap();
        assert_eq!(random.len(), 32);
        assert_eq!(data, "tenant=7;return=/docs/42?tab=2");
        assert_eq!(param(&query_of(pending.url()), "state"), Some(pending.state()));
        assert_eq!(pending.state_data(), Some(data));

        let callback = {
            let mut query = form_urlencoded::Serializer::new(String::from("https://app.example/cb?"));
            query
                .append_pair("code", "c1")
                .append_pair("state", pending.state());
            query.finish()
        };
        let code = pending.clone().complete(&callback).unwrap();
        assert_eq!(code.state_data(), Some("tenant=7;return=/docs/42?tab=2"));

        // The same random part with the data altered: not this authorization's state.
        let forged = format!("?code=c1&state={random}.tenant%3D8");
        assert_eq!(
            kind_of(pending.complete(&forged).unwrap_err()),
            AuthorizationErrorKind::StateMismatch
        );
    }

    #[test]
    fn a_supplied_state_is_sent_as_is_and_checked_like_a_drawn_one() {
        let supplied = "k4Jx-9_qLm~Zp.0aB3cD5eF7";
        let pending = providers::agrello()
            .authorization("cid", "https://app.example/cb")
            .state(supplied)
            .state_data("t1")
            .start()
            .unwrap();
        assert_eq!(pending.state(), format!("{supplied}.t1"));
        assert_eq!(param(&query_of(pending.url()), "state"), Some(pending.state()));
        let code = pending
            .clone()
            .complete(&format!("?code=c&state={supplied}.t1"))
            .unwrap();
        assert_eq!(code.state_data(), Some("t1"));
        assert_eq!(
            kind_of(
                pending
                    .complete(&format!("?code=c&state={supplied}"))
                    .unwrap_err()
            ),
            AuthorizationErrorKind::StateMismatch
        );
    }

    #[test]
    fn a_supplied_state_too_short_or_not_url_safe_and_unprintable_data_are_refused() {
        let start = |state: Option<&str>, data: Option<&str>| {
            let mut request = providers::agrello().authorization("cid", "https://app.example/cb");
            if let Some(state) = state {
                request = request.state(state);
            }
            if let Some(data) = data {
                request = request.state_data(data);
            }
            request.start()
        };
        let short = "a".repeat(MIN_STATE_CHARS - 1);
        let long = "a".repeat(MAX_STATE_CHARS + 1);
        for bad in [
            "",
            "abc",
            short.as_str(),
            long.as_str(),
            "aaaaaaaaaaaaaaaaaaaaaa aa",
            "aaaaaaaaaaaaaaaaaaaaaa&a=b",
            "aaaaaaaaaaaaaaaaaaaaaa\u{e9}",
        ] {
            let err = start(Some(bad), None).unwrap_err();
            assert_eq!(
                kind_of(err.clone()),
                AuthorizationErrorKind::UnusableState,
                "{bad:?}"
            );
            assert!(err.to_string().contains("22-256 URL-safe characters"), "{err}");
        }
        let too_much = "d".repeat(MAX_STATE_DATA + 1);
        for bad in ["line\nbreak", "tab\t", too_much.as_str()] {
            let err = start(None, Some(bad)).unwrap_err();
            assert_eq!(kind_of(err), AuthorizationErrorKind::UnusableState, "{bad:?}");
        }
        let shortest = "a".repeat(MIN_STATE_CHARS);
        assert!(start(Some(&shortest), Some(&"d".repeat(MAX_STATE_DATA))).is_ok());
    }

    #[test]
    fn a_provider_without_an_authorization_url_is_a_config_error() {
        let err = Provider::standard("https://auth.example/token")
            .authorization("cid", "https://app.example/cb")
            .start()
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
    }
}
