//! Providers: where a provider's endpoints are and how it speaks OAuth 2.0.
//!
//! A [`Provider`] is data, not a trait implementation per vendor: where its token endpoint
//! is, how a client authenticates there, where its APIs live, where an access token goes
//! on an API request, and which API answers mean "this token is dead". Every setting has
//! a setter, so a preset can be adjusted without forking it. The values those settings
//! take ([`ClientAuth`], [`TokenPlacement`], ...) are beside it in this module.
//!
//! A [`Credential`](crate::Credential) is a provider plus a client and a
//! [`Grant`](crate::Grant): what to send to the token endpoint to get a token. One
//! [`CredentialRegistry`](crate::CredentialRegistry) holds any number of them, routed by
//! the providers' API origins.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tower_oauth2::{ClientAuth, Credential, Provider, RefreshPolicy};
//!
//! let provider = Provider::standard("https://auth.example.com/oauth/token")
//!     .name("example")
//!     .api("https://api.example.com")
//!     .client_auth(ClientAuth::Basic);
//!
//! let credential = Credential::client_credentials(provider, "my-client", "my-secret")
//!     .scopes(["read", "write"])
//!     .refresh_policy(RefreshPolicy::default().margin(Duration::from_secs(120)));
//! # let _ = credential;
//! ```
//!
//! # Reading a provider
//!
//! Settings are written with chained setters named after the setting
//! (`Provider::standard(url).name("x")`); a setting is read back through the same name
//! with `_ref` ([`Provider::name_ref`]), as [`http::request::Builder`] reads what its
//! setters wrote. The crate's types follow this wherever a setter takes the bare name.

mod dialect;
pub(crate) mod metadata;

use std::{fmt, sync::Arc};

use http::{HeaderMap, StatusCode};

pub(crate) use self::dialect::scope_set;
#[cfg(feature = "jose")]
pub use self::dialect::AssertionAudience;
pub use self::dialect::{
    ClientAuth, CodeDelivery, HeaderParameters, ParameterEncoding, RefreshTokens, Revocation, ScopeSyntax,
    TokenPlacement,
};
use crate::{
    dead_token::{ApiAnswer, BodyJudge, Verdict, DEFAULT_BODY_LIMIT},
    redact::without_userinfo,
    token::{ExpiresIn, Lifetimes},
};

type DeadTokenFn = dyn Fn(StatusCode, &HeaderMap) -> bool + Send + Sync;

/// An OAuth 2.0 provider: its token endpoint, its APIs, and its dialect.
#[derive(Clone)]
pub struct Provider {
    pub(crate) name: Arc<str>,
    pub(crate) token_url: String,
    pub(crate) api_origins: Vec<String>,
    pub(crate) client_auth: ClientAuth,
    /// The `aud` of JWT client assertions.
    #[cfg(feature = "jose")]
    pub(crate) assertion_audience: AssertionAudience,
    pub(crate) placement: TokenPlacement,
    pub(crate) dead_token_statuses: Vec<StatusCode>,
    pub(crate) dead_token_when: Option<Arc<DeadTokenFn>>,
    pub(crate) dead_token_body: Option<BodyJudge>,
    pub(crate) dead_token_body_limit: usize,
    /// OAuth `error` codes that refuse the grant itself (the code or refresh token).
    pub(crate) refused_grant_errors: Vec<Arc<str>>,
    /// The API speaks gRPC: a trailers-only `UNAUTHENTICATED` answer is a dead token.
    pub(crate) grpc: bool,
    pub(crate) expires_in: ExpiresIn,
    pub(crate) lifetimes: Lifetimes,
    pub(crate) max_response_bytes: usize,
    pub(crate) encoding: ParameterEncoding,
    pub(crate) refresh_tokens: RefreshTokens,
    pub(crate) scope_syntax: ScopeSyntax,
    pub(crate) default_scopes: Vec<String>,
    pub(crate) revocation: Option<Revocation>,
    pub(crate) authorize_url: Option<String>,
    pub(crate) code_delivery: CodeDelivery,
    pub(crate) pkce: bool,
    pub(crate) repeat_authorization_params: bool,
    /// A preset given unusable input (a deployment name that is not a DNS label, ...)
    /// records why here; building the registry reports it.
    pub(crate) invalid: Option<Arc<str>>,
    /// The metadata a discovery read, when the provider came from one.
    pub(crate) metadata: Option<Arc<metadata::ProviderMetadata>>,
}

impl Provider {
    /// A standard RFC 6749 authorization server with its token endpoint at `token_url`.
    ///
    /// Defaults: named after the token URL's host, HTTP Basic client authentication,
    /// form-encoded parameters, space-delimited scopes, `Authorization: Bearer` on API
    /// requests, 401 means a dead token, `expires_in` in seconds (1 hour when absent),
    /// refresh tokens kept when an answer omits them, answers up to 64 KiB, no
    /// revocation or authorization endpoint, no PKCE. Add the API origins the tokens are
    /// for with [`api`](Self::api): without one, no request gets a token.
    pub fn standard(token_url: impl Into<String>) -> Self {
        let token_url = token_url.into();
        let name = token_url
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_owned))
            .unwrap_or_else(|| "oauth2".to_owned());
        Self {
            name: name.into(),
            token_url,
            api_origins: Vec::new(),
            client_auth: ClientAuth::Basic,
            #[cfg(feature = "jose")]
            assertion_audience: AssertionAudience::TokenEndpoint,
            placement: TokenPlacement::AuthorizationBearer,
            dead_token_statuses: vec![StatusCode::UNAUTHORIZED],
            dead_token_when: None,
            dead_token_body: None,
            dead_token_body_limit: DEFAULT_BODY_LIMIT,
            refused_grant_errors: vec![Arc::from("invalid_grant")],
            grpc: false,
            expires_in: ExpiresIn::Seconds,
            lifetimes: Lifetimes::default(),
            max_response_bytes: 64 * 1024,
            encoding: ParameterEncoding::Form,
            refresh_tokens: RefreshTokens::KeepWhenOmitted,
            scope_syntax: ScopeSyntax::SpaceDelimited,
            default_scopes: Vec::new(),
            revocation: None,
            authorize_url: None,
            code_delivery: CodeDelivery::Query,
            pkce: false,
            repeat_authorization_params: false,
            invalid: None,
            metadata: None,
        }
    }

    /// A provider whose preset was given input it cannot use; building a registry with
    /// it fails with `reason`.
    pub(crate) fn invalid(mut self, reason: String) -> Self {
        self.invalid = Some(reason.into());
        self
    }

    /// The name used in errors, log lines and metrics.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into().into();
        self
    }

    /// Adds an origin (`https://api.example.com`, `https://api.example.com:8443`) whose
    /// requests get this provider's tokens. Scheme, host and port must match exactly;
    /// any path is ignored. Plain `http` is accepted only for loopback hosts.
    pub fn api(mut self, origin: impl Into<String>) -> Self {
        self.api_origins.push(origin.into());
        self
    }

    /// Replaces all API origins with `origins` (see [`api`](Self::api)): for pointing a
    /// preset at another host, such as a test emulator.
    pub fn api_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.api_origins = origins.into_iter().map(Into::into).collect();
        self
    }

    /// Replaces the token endpoint URL.
    pub fn token_url(mut self, token_url: impl Into<String>) -> Self {
        self.token_url = token_url.into();
        self
    }

    /// How the client authenticates at the token endpoint.
    pub fn client_auth(mut self, client_auth: ClientAuth) -> Self {
        self.client_auth = client_auth;
        self
    }

    /// The `aud` of the JWT client assertions of [`ClientAuth::PrivateKeyJwt`] and
    /// [`ClientAuth::ClientSecretJwt`]: the token endpoint URL unless the server wants
    /// its issuer or another value. Feature `jose`.
    ///
    /// ```
    /// use tower_oauth2::{AssertionAudience, ClientAuth, Provider};
    ///
    /// let provider = Provider::standard("https://auth.example.com/oauth2/token")
    ///     .client_auth(ClientAuth::PrivateKeyJwt)
    ///     .client_assertion_audience(AssertionAudience::Value("https://auth.example.com".into()));
    /// # let _ = provider;
    /// ```
    #[cfg(feature = "jose")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jose")))]
    pub fn client_assertion_audience(mut self, audience: AssertionAudience) -> Self {
        self.assertion_audience = audience;
        self
    }

    /// Where the access token goes on API requests.
    pub fn token_placement(mut self, placement: TokenPlacement) -> Self {
        self.placement = placement;
        self
    }

    /// The API statuses that mean "this token is dead" (default: 401 only).
    pub fn dead_token_statuses(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.dead_token_statuses = statuses.into_iter().collect();
        self
    }

    /// An extra test for a dead token, over the API response's status and headers, for
    /// servers that say so with e.g. 403 and `WWW-Authenticate: Bearer error="invalid_token"`.
    /// A response is a dead-token answer if its status is listed in
    /// [`dead_token_statuses`](Self::dead_token_statuses) or this returns `true`.
    /// The body is not read for this; see [`dead_token_in_body`](Self::dead_token_in_body)
    /// for APIs that say it only there.
    pub fn dead_token_when<F>(mut self, predicate: F) -> Self
    where
        F: Fn(StatusCode, &HeaderMap) -> bool + Send + Sync + 'static,
    {
        self.dead_token_when = Some(Arc::new(predicate));
        self
    }

    /// A test for a dead token over the start of the body, for APIs that say so only
    /// there (a JSON-RPC error object, a `{"error": "token_expired"}` under a status
    /// that other errors share). For an answer whose status is in `statuses` (and that
    /// the tests above did not already call dead), the layer reads up to
    /// [`dead_token_body_limit`](Self::dead_token_body_limit) bytes of its body and asks
    /// `judge`; whatever the verdict, an answer that is returned reaches the caller with
    /// its body whole, byte for byte. Answers of other statuses are never read, so name
    /// only error statuses: a `2xx` listed here would be read on every success.
    ///
    /// See [`dead_token`](crate::dead_token) for an example. Replaces an earlier body
    /// test.
    pub fn dead_token_in_body<F>(mut self, statuses: impl IntoIterator<Item = StatusCode>, judge: F) -> Self
    where
        F: Fn(&ApiAnswer<'_>) -> bool + Send + Sync + 'static,
    {
        self.dead_token_body = Some(BodyJudge {
            statuses: statuses.into_iter().collect(),
            judge: Arc::new(judge),
        });
        self
    }

    /// The most bytes of a body a [`dead_token_in_body`](Self::dead_token_in_body) test
    /// sees (default: 4 KiB). The layer may read one frame past it; the rest of the body
    /// stays unread until the caller reads it.
    pub fn dead_token_body_limit(mut self, bytes: usize) -> Self {
        self.dead_token_body_limit = bytes;
        self
    }

    /// The OAuth `error` codes with which the token endpoint refuses the grant itself,
    /// the refresh token or the authorization code (default: `invalid_grant`, as RFC 6749
    /// §5.2 says). A refresh or code exchange refused with one of them fails with
    /// [`Error::ReauthorizationRequired`](crate::Error::ReauthorizationRequired), and
    /// the refresh token is dropped. Name another code only where the server uses it for
    /// nothing else (Grindery answers a dead refresh token with `invalid_request`).
    pub fn refused_grant_errors<I, S>(mut self, codes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.refused_grant_errors = codes.into_iter().map(|code| Arc::from(code.as_ref())).collect();
        self
    }

    /// Whether the provider's API speaks gRPC (default: no). When it does, an answer
    /// with gRPC status 16 (`UNAUTHENTICATED`) in its headers is also a dead-token
    /// answer: that is the "trailers-only" answer a gRPC server gives a call it refuses
    /// before running it (HTTP 200, `grpc-status: 16`), as an interceptor checking the
    /// token does. The token is refreshed and a unary call sent once more, as after a
    /// 401. A status sent in trailers after a streamed answer is not seen: reading it
    /// would mean holding the whole answer back.
    ///
    /// This adds to [`dead_token_statuses`](Self::dead_token_statuses) and
    /// [`dead_token_when`](Self::dead_token_when), which still apply.
    ///
    /// ```
    /// use tower_oauth2::Provider;
    ///
    /// let provider = Provider::standard("https://auth.example.com/oauth/token")
    ///     .api("https://grpc.example.com")
    ///     .grpc(true);
    /// # let _ = provider;
    /// ```
    pub fn grpc(mut self, enabled: bool) -> Self {
        self.grpc = enabled;
        self
    }

    /// The unit of `expires_in` (default: seconds).
    pub fn expires_in_unit(mut self, unit: ExpiresIn) -> Self {
        self.expires_in = unit;
        self
    }

    /// Default and bounds for token lifetimes.
    pub fn lifetimes(mut self, lifetimes: Lifetimes) -> Self {
        self.lifetimes = lifetimes;
        self
    }

    /// The largest token endpoint answer read (default 64 KiB); larger is an error.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// How token request parameters are carried (default: a form body).
    pub fn parameter_encoding(mut self, encoding: ParameterEncoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// What the provider does with refresh tokens (default:
    /// [`RefreshTokens::KeepWhenOmitted`]).
    pub fn refresh_tokens(mut self, behaviour: RefreshTokens) -> Self {
        self.refresh_tokens = behaviour;
        self
    }

    /// How scopes are joined (default: space-delimited).
    pub fn scope_syntax(mut self, syntax: ScopeSyntax) -> Self {
        self.scope_syntax = syntax;
        self
    }

    /// Scopes requested by credentials that name none (default: none).
    pub fn default_scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.default_scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// How tokens are revoked (default: not at all; [`CredentialRegistry::revoke`] then only
    /// forgets them).
    ///
    /// [`CredentialRegistry::revoke`]: crate::CredentialRegistry::revoke
    pub fn revocation(mut self, revocation: Revocation) -> Self {
        self.revocation = Some(revocation);
        self
    }

    /// Removes the revocation endpoint.
    pub fn without_revocation(mut self) -> Self {
        self.revocation = None;
        self
    }

    /// The authorization endpoint users are sent to in the authorization-code flow.
    pub fn authorize_url(mut self, url: impl Into<String>) -> Self {
        self.authorize_url = Some(url.into());
        self
    }

    /// Where the authorization server puts the code (default: the query).
    pub fn code_delivery(mut self, delivery: CodeDelivery) -> Self {
        self.code_delivery = delivery;
        self
    }

    /// Whether the provider accepts PKCE S256 (RFC 7636) in the authorization-code flow
    /// (default: no, as none of the presets' documents mention it).
    pub fn pkce(mut self, enabled: bool) -> Self {
        self.pkce = enabled;
        self
    }

    /// Whether token requests repeat the authorization request's parameters: the
    /// `redirect_uri` on refreshes and the `scope` on the code exchange (iOFFICE
    /// requires both; default: no, as in RFC 6749).
    pub fn repeat_authorization_params(mut self, enabled: bool) -> Self {
        self.repeat_authorization_params = enabled;
        self
    }

    /// The provider's name, set with [`name`](Self::name).
    pub fn name_ref(&self) -> &str {
        &self.name
    }

    /// The token endpoint URL, set with [`token_url`](Self::token_url).
    pub fn token_url_ref(&self) -> &str {
        &self.token_url
    }

    /// The authorization endpoint URL, if the provider has one (see
    /// [`authorize_url`](Self::authorize_url)).
    pub fn authorize_url_ref(&self) -> Option<&str> {
        self.authorize_url.as_deref()
    }

    /// How the client authenticates at the token endpoint, set with
    /// [`client_auth`](Self::client_auth).
    pub fn client_auth_ref(&self) -> ClientAuth {
        self.client_auth
    }

    /// Whether the authorization-code flow sends PKCE, set with [`pkce`](Self::pkce).
    pub fn pkce_ref(&self) -> bool {
        self.pkce
    }

    /// The API origins tokens are attached for, added with [`api`](Self::api).
    pub fn api_origins_ref(&self) -> &[String] {
        &self.api_origins
    }

    /// How tokens are revoked, if they can be (see [`revocation`](Self::revocation)).
    pub fn revocation_ref(&self) -> Option<&Revocation> {
        self.revocation.as_ref()
    }

    /// Where the access token goes on API requests, set with
    /// [`token_placement`](Self::token_placement).
    pub fn token_placement_ref(&self) -> &TokenPlacement {
        &self.placement
    }

    /// What an answer's status and headers say about the token it carried.
    pub(crate) fn verdict(&self, status: StatusCode, headers: &HeaderMap) -> Verdict {
        let dead = self.dead_token_statuses.contains(&status)
            || self
                .dead_token_when
                .as_ref()
                .is_some_and(|when| when(status, headers))
            || (self.grpc && is_grpc_unauthenticated(headers));
        if dead {
            Verdict::Dead
        } else if self
            .dead_token_body
            .as_ref()
            .is_some_and(|body| body.statuses.contains(&status))
        {
            Verdict::ReadBody
        } else {
            Verdict::Answer
        }
    }

    /// The body test's verdict on an answer whose status asked for it (`ReadBody`).
    pub(crate) fn is_dead_body(&self, answer: &ApiAnswer<'_>) -> bool {
        self.dead_token_body
            .as_ref()
            .is_some_and(|body| (body.judge)(answer))
    }

    /// Whether `error`, from the token endpoint, refuses the grant itself.
    pub(crate) fn refuses_grant(&self, error: &str) -> bool {
        self.refused_grant_errors.iter().any(|code| &**code == error)
    }
}

/// Whether `headers` carry gRPC status 16, `UNAUTHENTICATED` (the gRPC status codes:
/// <https://grpc.github.io/grpc/core/md_doc_statuscodes.html>).
fn is_grpc_unauthenticated(headers: &HeaderMap) -> bool {
    headers
        .get("grpc-status")
        .is_some_and(|status| status.as_bytes().trim_ascii() == b"16")
}

// Written by hand: the predicate is a closure, printed by its presence only, and URLs
// are printed without any `user:password@` part.
impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let api_origins: Vec<_> = self.api_origins.iter().map(|url| without_userinfo(url)).collect();
        let mut f = f.debug_struct("Provider");
        f.field("name", &self.name)
            .field("token_url", &without_userinfo(&self.token_url))
            .field("api_origins", &api_origins)
            .field("client_auth", &self.client_auth);
        #[cfg(feature = "jose")]
        f.field("assertion_audience", &self.assertion_audience);
        f.field("placement", &self.placement)
            .field("dead_token_statuses", &self.dead_token_statuses)
            .field("dead_token_when", &self.dead_token_when.as_ref().map(|_| ".."))
            .field("dead_token_body", &self.dead_token_body)
            .field("dead_token_body_limit", &self.dead_token_body_limit)
            .field("refused_grant_errors", &self.refused_grant_errors)
            .field("grpc", &self.grpc)
            .field("expires_in", &self.expires_in)
            .field("lifetimes", &self.lifetimes)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("encoding", &self.encoding)
            .field("refresh_tokens", &self.refresh_tokens)
            .field("scope_syntax", &self.scope_syntax)
            .field("default_scopes", &self.default_scopes)
            .field("revocation", &self.revocation)
            .field(
                "authorize_url",
                &self.authorize_url.as_deref().map(without_userinfo),
            )
            .field("code_delivery", &self.code_delivery)
            .field("pkce", &self.pkce)
            .field("repeat_authorization_params", &self.repeat_authorization_params)
            .field("metadata", &self.metadata.as_ref().map(|m| m.url()))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standard_provider_is_named_after_its_token_host() {
        assert_eq!(
            Provider::standard("https://a.example/token").name_ref(),
            "a.example"
        );
    }

    #[test]
    fn a_grpc_provider_counts_a_trailers_only_unauthenticated_as_a_dead_token() {
        let ok = StatusCode::OK;
        let grpc = |status: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("content-type", http::HeaderValue::from_static("application/grpc"));
            headers.insert("grpc-status", http::HeaderValue::from_static(status));
            headers
        };
        let plain = Provider::standard("https://auth.example/token");
        assert_ne!(
            plain.verdict(ok, &grpc("16")),
            Verdict::Dead,
            "only when the API is declared gRPC"
        );

        let provider = plain.clone().grpc(true);
        assert_eq!(provider.verdict(ok, &grpc("16")), Verdict::Dead);
        assert_eq!(provider.verdict(ok, &grpc(" 16 ")), Verdict::Dead);
        for other in ["0", "7", "160", "1", ""] {
            assert_ne!(
                provider.verdict(ok, &grpc(other)),
                Verdict::Dead,
                "grpc-status {other:?}"
            );
        }
        assert_ne!(provider.verdict(ok, &HeaderMap::new()), Verdict::Dead);
        // The other judgements still apply: 401 by default, and a predicate.
        assert_eq!(
            provider.verdict(StatusCode::UNAUTHORIZED, &HeaderMap::new()),
            Verdict::Dead
        );
        let with_predicate = provider
            .clone()
            .dead_token_statuses([])
            .dead_token_when(|status, _| status == StatusCode::FORBIDDEN);
        assert_eq!(
            with_predicate.verdict(StatusCode::FORBIDDEN, &HeaderMap::new()),
            Verdict::Dead
        );
        assert_eq!(with_predicate.verdict(ok, &grpc("16")), Verdict::Dead);
        assert_ne!(
            with_predicate.verdict(StatusCode::UNAUTHORIZED, &HeaderMap::new()),
            Verdict::Dead
        );

        // The layer's precomputed plan asks the provider, even with the single default
        // status or no status at all.
        for provider in [provider, provider_without_statuses()] {
            let plan = crate::protocol::Plan::of(&provider);
            assert_eq!(plan.verdict(ok, &grpc("16"), || &provider), Verdict::Dead);
            assert_eq!(plan.verdict(ok, &grpc("0"), || &provider), Verdict::Answer);
        }
    }

    fn provider_without_statuses() -> Provider {
        Provider::standard("https://auth.example/token")
            .dead_token_statuses([])
            .grpc(true)
    }
}
