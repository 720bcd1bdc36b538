//! Providers and the credentials obtained from them.
//!
//! A [`Provider`] is data, not a trait implementation per vendor: where its token endpoint
//! is, how a client authenticates there, where its APIs live, where an access token goes
//! on an API request, and which API answers mean "this token is dead". Every setting has
//! a setter, so a preset can be adjusted without forking it.
//!
//! A [`Credential`] is a provider plus a client and a grant: what to send to the token
//! endpoint to get a token. One [`CredentialRegistry`](crate::CredentialRegistry) registry holds any
//! number of them, routed by the providers' API origins.
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

use std::{fmt, sync::Arc, time::Duration};

use crate::dead_token::{ApiAnswer, BodyJudge, Verdict, DEFAULT_BODY_LIMIT};

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::{
    redact::{without_userinfo, write_escaped},
    secret::{AuthorizationCode, ClientSecret, PkceVerifier, RefreshToken},
    token::{ExpiresIn, Lifetimes},
};

/// How a client proves its identity to the token endpoint (RFC 6749 §2.3).
///
/// Where the parameters go (form body or request headers) is the provider's
/// [`ParameterEncoding`]; this only says which of them are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `Authorization: Basic` with the form-encoded client id and secret (§2.3.1).
    Basic,
    /// `client_id` and `client_secret` as request parameters (§2.3.1).
    RequestBody,
    /// A public client: `client_id` is sent as a parameter, no secret (§2.1, §3.2.1).
    PublicClient,
    /// Nothing identifies the client: token requests carry only the grant. The
    /// credential's client id is then a local label, used in keys and logs only.
    None,
}

/// How the parameters of a token request are carried.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParameterEncoding {
    /// An `application/x-www-form-urlencoded` body (RFC 6749 §4).
    Form,
    /// One request header per parameter and an empty body, as iOFFICE expects.
    Headers(HeaderParameters),
}

/// How each token request parameter is named when sent as a request header.
///
/// ```
/// use http::HeaderName;
/// use tower_oauth2::provider::HeaderParameters;
///
/// // iOFFICE: `x-grant-type`, `x-client-id`, ..., but the code goes in `x-auth-code`.
/// let names = HeaderParameters::prefixed("x-")
///     .rename("code", HeaderName::from_static("x-auth-code"));
/// # let _ = names;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderParameters {
    prefix: String,
    renamed: Vec<(String, HeaderName)>,
    content_type: HeaderValue,
}

impl HeaderParameters {
    /// Each parameter becomes the header `prefix` + its name with `_` turned into `-`
    /// (`grant_type` → `x-grant-type`). The request says `Content-Type: application/json`.
    pub fn prefixed(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into().to_ascii_lowercase(),
            renamed: Vec::new(),
            content_type: HeaderValue::from_static("application/json"),
        }
    }

    /// Sends parameter `param` in the header `header` instead.
    pub fn rename(mut self, param: impl Into<String>, header: HeaderName) -> Self {
        let param = param.into();
        self.renamed.retain(|(p, _)| *p != param);
        self.renamed.push((param, header));
        self
    }

    /// The request's `Content-Type` (default `application/json`).
    pub fn content_type(mut self, content_type: HeaderValue) -> Self {
        self.content_type = content_type;
        self
    }

    pub(crate) fn header_for(&self, param: &str) -> Option<HeaderName> {
        if let Some((_, header)) = self.renamed.iter().find(|(p, _)| p == param) {
            return Some(header.clone());
        }
        HeaderName::try_from(format!("{}{}", self.prefix, param.replace('_', "-"))).ok()
    }

    pub(crate) fn request_content_type(&self) -> &HeaderValue {
        &self.content_type
    }
}

/// What a provider does with refresh tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefreshTokens {
    /// RFC 6749 §6: a refresh answer may carry a new refresh token, which replaces the
    /// old one; an answer without one keeps the old one (Grindery never sends one).
    KeepWhenOmitted,
    /// Every refresh answer carries a new refresh token and the used one is dead at
    /// once (iOFFICE). An answer without one keeps the old one, with a warning: it is
    /// the only one left, even if it will probably be refused.
    Rotated,
    /// The provider issues none (Accelo's service applications): when a token
    /// expires, the grant is run again. Credentials that need a refresh token are a
    /// configuration error, and a refresh token in an answer is ignored.
    NotIssued,
}

/// How several scopes are joined into the `scope` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeSyntax {
    /// Space-delimited scope tokens (RFC 6749 §3.3): `read write`.
    SpaceDelimited,
    /// Comma-delimited (Accelo): `read(all),write(companies,contacts)`.
    CommaDelimited,
}

impl ScopeSyntax {
    pub(crate) fn join(self, scopes: &[String]) -> String {
        scopes.join(match self {
            ScopeSyntax::SpaceDelimited => " ",
            ScopeSyntax::CommaDelimited => ",",
        })
    }
}

/// How tokens are revoked at the provider.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revocation {
    /// RFC 7009: a form POST of `token` and `token_type_hint` to `url`, with the same
    /// client authentication as token requests.
    Rfc7009 {
        /// The revocation endpoint.
        url: String,
    },
    /// A POST to `url` carrying the token in the header `header` and nothing else
    /// (iOFFICE: `x-token`).
    Header {
        /// The revocation endpoint.
        url: String,
        /// The header that carries the token.
        header: HeaderName,
    },
}

// Written by hand: a URL may carry a password (`https://user:pass@…`), never printed.
impl fmt::Debug for Revocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revocation::Rfc7009 { url } => f
                .debug_struct("Rfc7009")
                .field("url", &without_userinfo(url))
                .finish(),
            Revocation::Header { url, header } => f
                .debug_struct("Header")
                .field("url", &without_userinfo(url))
                .field("header", header)
                .finish(),
        }
    }
}

/// Where an authorization server puts the code when it redirects back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodeDelivery {
    /// In the query of the redirect URI, readable by the server (RFC 6749 §4.1.2).
    Query,
    /// In the fragment (`#code=…`), which browsers never send to a server: a page
    /// script must read it and hand it to the backend (iOFFICE).
    Fragment,
}

/// Where an access token goes on an API request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenPlacement {
    /// `Authorization: Bearer <token>` (RFC 6750 §2.1).
    AuthorizationBearer,
    /// A named header carrying the bare token, e.g. `x-access-token: <token>`.
    Header(HeaderName),
    /// A named query parameter, e.g. `?access_token=<token>`. Prefer a header where the
    /// provider allows one: URLs end up in logs.
    Query(String),
}

type DeadTokenFn = dyn Fn(StatusCode, &HeaderMap) -> bool + Send + Sync;

/// An OAuth 2.0 provider: its token endpoint, its APIs, and its dialect.
#[derive(Clone)]
pub struct Provider {
    pub(crate) name: Arc<str>,
    pub(crate) token_url: String,
    pub(crate) api_origins: Vec<String>,
    pub(crate) client_auth: ClientAuth,
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

    /// The provider's name.
    pub fn name_ref(&self) -> &str {
        &self.name
    }

    /// The token endpoint URL.
    pub fn token_url_ref(&self) -> &str {
        &self.token_url
    }

    /// The authorization endpoint URL, if the provider has one.
    pub fn authorize_url_ref(&self) -> Option<&str> {
        self.authorize_url.as_deref()
    }

    /// The API origins tokens are attached for.
    pub fn api_origins_ref(&self) -> &[String] {
        &self.api_origins
    }

    /// How tokens are revoked, if they can be.
    pub fn revocation_ref(&self) -> Option<&Revocation> {
        self.revocation.as_ref()
    }

    /// Where the access token goes on API requests.
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
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("token_url", &without_userinfo(&self.token_url))
            .field("api_origins", &api_origins)
            .field("client_auth", &self.client_auth)
            .field("placement", &self.placement)
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
            .finish_non_exhaustive()
    }
}

/// The grant a credential uses to obtain tokens.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Grant {
    /// `client_credentials` (RFC 6749 §4.4): the client acts on its own behalf. When the
    /// token expires, the grant is simply run again.
    ClientCredentials,
    /// `refresh_token` (RFC 6749 §6), starting from a refresh token obtained elsewhere.
    /// A rotated refresh token replaces the old one; an answer without one keeps it.
    RefreshToken(RefreshToken),
    /// `authorization_code` (RFC 6749 §4.1.3): the code is exchanged once, and the
    /// refresh token that comes with it is used from then on.
    #[non_exhaustive]
    AuthorizationCode {
        /// The code the authorization server redirected back with.
        code: AuthorizationCode,
        /// The `redirect_uri` the code was issued for.
        redirect_uri: String,
        /// The PKCE verifier, if the authorization sent a challenge.
        pkce_verifier: Option<PkceVerifier>,
    },
}

impl Grant {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::RefreshToken(_) => "refresh_token",
            Grant::AuthorizationCode { .. } => "authorization_code",
        }
    }
}

/// When to refresh, how long to wait for a token endpoint, and how to back off from a
/// failing one.
///
/// A token's *refresh point* is its expiry minus a lead of `margin` plus a random
/// jitter of up to `max_jitter`, the lead never exceeding half the token's lifetime.
/// Between the refresh point and expiry, requests keep using the token while one
/// background refresh runs.
///
/// After `n` consecutive failed token requests, the next one is sent no sooner than
/// `min(backoff_max, backoff_base × 2ⁿ⁻¹) × u` after the last, with `u` uniform in
/// `[0.5, 1]`. With the defaults (200 ms, 30 s) a dead endpoint sees at most 4
/// requests in its first second of failure, and at most one every 15 s after that.
#[derive(Clone, Copy)]
pub struct RefreshPolicy {
    pub(crate) margin: Duration,
    pub(crate) max_jitter: Duration,
    pub(crate) timeout: Duration,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) random: fn() -> f64,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            margin: Duration::from_secs(60),
            max_jitter: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            random: fastrand::f64,
        }
    }
}

impl RefreshPolicy {
    /// How long before expiry refreshing starts (default 60 s, at most half the lifetime).
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// The largest random addition to the margin (default 5 s), so that many processes
    /// holding tokens from the same moment do not refresh at the same instant.
    pub fn max_jitter(mut self, max_jitter: Duration) -> Self {
        self.max_jitter = max_jitter;
        self
    }

    /// How long one token request may take, connection included (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The first backoff step and its cap (defaults 200 ms and 30 s).
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }

    /// The source of randomness for jitter, returning values in `[0, 1)`. Tests pass
    /// `|| 0.0` for exact refresh points.
    pub fn random(mut self, random: fn() -> f64) -> Self {
        self.random = random;
        self
    }

    /// The refresh point of a token issued at `issued_at` that expires at `expires_at`.
    pub(crate) fn refresh_point(
        &self,
        issued_at: tokio::time::Instant,
        expires_at: tokio::time::Instant,
    ) -> tokio::time::Instant {
        let lifetime = expires_at.saturating_duration_since(issued_at);
        let jitter = self.max_jitter.mul_f64((self.random)().clamp(0.0, 1.0));
        let lead = self.margin.saturating_add(jitter).min(lifetime / 2);
        expires_at - lead
    }

    /// How long to wait before the next token request after `failures` in a row.
    pub(crate) fn backoff_after(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(20);
        let step = self
            .backoff_base
            .saturating_mul(1 << exponent)
            .min(self.backoff_max);
        step.mul_f64(0.5 + 0.5 * (self.random)().clamp(0.0, 1.0))
    }
}

impl fmt::Debug for RefreshPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshPolicy")
            .field("margin", &self.margin)
            .field("max_jitter", &self.max_jitter)
            .field("timeout", &self.timeout)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_max", &self.backoff_max)
            .finish_non_exhaustive()
    }
}

/// A provider, a client registered with it, and the grant that yields tokens.
#[derive(Clone)]
pub struct Credential {
    pub(crate) provider: Provider,
    pub(crate) client_id: String,
    pub(crate) client_secret: Option<ClientSecret>,
    pub(crate) grant: Grant,
    pub(crate) scopes: Option<Vec<String>>,
    pub(crate) redirect_uri: Option<String>,
    pub(crate) subject: Option<String>,
    pub(crate) policy: RefreshPolicy,
    pub(crate) store: Option<crate::store::StoreHandle>,
}

impl Credential {
    fn with_grant(
        provider: Provider,
        client_id: String,
        client_secret: Option<ClientSecret>,
        grant: Grant,
    ) -> Self {
        Self {
            provider,
            client_id,
            client_secret,
            grant,
            scopes: None,
            redirect_uri: None,
            subject: None,
            policy: RefreshPolicy::default(),
            store: None,
        }
    }

    /// A confidential client using the `client_credentials` grant.
    pub fn client_credentials(
        provider: Provider,
        client_id: impl Into<String>,
        client_secret: impl Into<ClientSecret>,
    ) -> Self {
        Self::with_grant(
            provider,
            client_id.into(),
            Some(client_secret.into()),
            Grant::ClientCredentials,
        )
    }

    /// A public client (RFC 6749 §2.1) using the `client_credentials` grant: token
    /// requests carry its `client_id` as a parameter and no secret, whatever client
    /// authentication the provider names ([`ClientAuth::PublicClient`] for this
    /// credential).
    ///
    /// RFC 6749 §4.4 reserves the grant for confidential clients; use this for servers
    /// that accept it anyway (development servers, device fleets behind mutual TLS).
    ///
    /// ```
    /// use tower_oauth2::{Credential, Provider};
    ///
    /// let provider = Provider::standard("https://auth.example.com/token").api("https://api.example.com");
    /// let credential = Credential::client_credentials_public(provider, "device-17");
    /// # let _ = credential;
    /// ```
    pub fn client_credentials_public(provider: Provider, client_id: impl Into<String>) -> Self {
        Self::with_grant(provider, client_id.into(), None, Grant::ClientCredentials)
            .client_auth(ClientAuth::PublicClient)
    }

    /// A client holding a refresh token. `client_secret` is `None` for public clients
    /// (use [`ClientAuth::PublicClient`] or [`ClientAuth::None`] on the provider then).
    pub fn refresh_token(
        provider: Provider,
        client_id: impl Into<String>,
        client_secret: Option<ClientSecret>,
        refresh_token: impl Into<RefreshToken>,
    ) -> Self {
        Self::with_grant(
            provider,
            client_id.into(),
            client_secret,
            Grant::RefreshToken(refresh_token.into()),
        )
    }

    /// A client that has just received an authorization `code` for `redirect_uri`.
    ///
    /// The first token request exchanges the code; later ones use the refresh token
    /// that came with it. A code is single-use: if the exchange is refused, requests
    /// fail with [`Error::ReauthorizationRequired`](crate::Error::ReauthorizationRequired).
    pub fn authorization_code(
        provider: Provider,
        client_id: impl Into<String>,
        client_secret: Option<ClientSecret>,
        code: impl Into<AuthorizationCode>,
        redirect_uri: impl Into<String>,
    ) -> Self {
        let redirect_uri = redirect_uri.into();
        let mut credential = Self::with_grant(
            provider,
            client_id.into(),
            client_secret,
            Grant::AuthorizationCode {
                code: code.into(),
                redirect_uri: redirect_uri.clone(),
                pkce_verifier: None,
            },
        );
        credential.redirect_uri = Some(redirect_uri);
        credential
    }

    /// The scopes to request, instead of the provider's default ones. Order and
    /// duplicates do not matter.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = Some(crate::provider::scope_set(scopes));
        self
    }

    /// The redirect URI registered for this client, for providers that want it on
    /// refresh requests too (see [`Provider::repeat_authorization_params`]).
    pub fn redirect_uri(mut self, redirect_uri: impl Into<String>) -> Self {
        self.redirect_uri = Some(redirect_uri.into());
        self
    }

    /// The user on whose behalf this credential acts. Part of the credential's key, so
    /// two users' tokens are never confused.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// When to refresh and how to back off.
    pub fn refresh_policy(mut self, policy: RefreshPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How this client authenticates at the token endpoint, instead of the way its
    /// provider names (see [`Provider::client_auth`]): for one client registered
    /// differently from the others, such as a public client among confidential ones.
    /// Building the registry refuses [`ClientAuth::Basic`] and
    /// [`ClientAuth::RequestBody`] without a secret.
    pub fn client_auth(mut self, client_auth: ClientAuth) -> Self {
        self.provider.client_auth = client_auth;
        self
    }

    /// Where this credential's tokens are kept between restarts, instead of the
    /// registry's [store](crate::CredentialRegistryBuilder::store). Pass an `Arc` of a store to
    /// share it with other credentials.
    ///
    /// ```
    /// use tower_oauth2::{Credential, MemoryStore, Provider};
    ///
    /// let provider = Provider::standard("https://auth.example.com/token").api("https://api.example.com");
    /// let credential = Credential::client_credentials(provider, "app", "secret").store(MemoryStore::new());
    /// # let _ = credential;
    /// ```
    pub fn store(mut self, store: impl crate::store::TokenStore) -> Self {
        self.store = Some(crate::store::StoreHandle::new(store));
        self
    }

    /// The provider.
    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The scopes requested: the credential's own, or else the provider's defaults,
    /// sorted and without duplicates.
    pub fn requested_scopes(&self) -> Vec<String> {
        match &self.scopes {
            Some(scopes) => scopes.clone(),
            None => scope_set(self.provider.default_scopes.iter().cloned()),
        }
    }

    /// The key that identifies this credential's tokens: provider, client, grant,
    /// scopes and subject. Two credentials with equal keys would share tokens, so a
    /// registry refuses them.
    pub fn key(&self) -> CredentialKey {
        CredentialKey {
            provider: self.provider.name.clone(),
            client_id: self.client_id.as_str().into(),
            grant: self.grant.kind(),
            scopes: self.requested_scopes().into(),
            subject: self.subject.as_deref().map(Into::into),
        }
    }
}

// Written by hand so that the secret and the refresh token can never be printed.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("provider", &self.provider.name)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field("grant", &self.grant)
            .field("scopes", &self.scopes)
            .field("redirect_uri", &self.redirect_uri)
            .field("subject", &self.subject)
            .field("policy", &self.policy)
            .field("store", &self.store)
            .finish()
    }
}

/// What identifies a credential's tokens: provider, client id, grant, sorted scopes and
/// subject. A token is only ever attached for the key it was requested under.
///
/// `Display` prints `provider/client/grant/scopes` and `/subject` when there is one,
/// with control characters escaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialKey {
    provider: Arc<str>,
    client_id: Arc<str>,
    grant: &'static str,
    scopes: Arc<[String]>,
    subject: Option<Arc<str>>,
}

impl CredentialKey {
    /// The provider's name.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The grant's name (`client_credentials`, `refresh_token`, `authorization_code`).
    pub fn grant(&self) -> &str {
        self.grant
    }

    /// The scopes, sorted.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The subject, if the credential acts for a user.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// This key with no subject: what may name the credential where a user's id must
    /// not appear (metric labels, warnings, the entry of evicted users in stats).
    pub(crate) fn without_subject(&self) -> Self {
        Self {
            subject: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for CredentialKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Escaped: the subject is a user's id, and keys are printed in log lines.
        write_escaped(
            f,
            format_args!(
                "{}/{}/{}/{}",
                self.provider,
                self.client_id,
                self.grant,
                self.scopes.join(" ")
            ),
        )?;
        if let Some(subject) = &self.subject {
            write_escaped(f, format_args!("/{subject}"))?;
        }
        Ok(())
    }
}

/// Scopes as a set: sorted and without duplicates, so that the order a caller lists them
/// in never makes two credentials (or two cache keys) differ.
pub(crate) fn scope_set<I, S>(scopes: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
    scopes.sort();
    scopes.dedup();
    scopes
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn no_jitter() -> f64 {
        0.0
    }

    fn full_jitter() -> f64 {
        1.0
    }

    #[test]
    fn refresh_point_is_expiry_minus_margin() {
        let policy = RefreshPolicy::default().random(no_jitter);
        let now = Instant::now();
        let expires = now + Duration::from_secs(3600);
        assert_eq!(
            policy.refresh_point(now, expires),
            expires - Duration::from_secs(60)
        );
    }

    #[test]
    fn refresh_point_never_before_half_the_lifetime() {
        let policy = RefreshPolicy::default().random(full_jitter);
        let now = Instant::now();
        let expires = now + Duration::from_secs(30);
        assert_eq!(policy.refresh_point(now, expires), now + Duration::from_secs(15));
    }

    #[test]
    fn jitter_widens_the_lead_up_to_its_maximum() {
        let policy = RefreshPolicy::default().random(full_jitter);
        let now = Instant::now();
        let expires = now + Duration::from_secs(3600);
        assert_eq!(
            policy.refresh_point(now, expires),
            expires - Duration::from_secs(65)
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RefreshPolicy::default().random(full_jitter);
        let steps: Vec<_> = (1..=10).map(|n| policy.backoff_after(n).as_millis()).collect();
        assert_eq!(
            steps,
            [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]
        );
        let low = RefreshPolicy::default().random(no_jitter);
        assert_eq!(low.backoff_after(1), Duration::from_millis(100));
        assert_eq!(low.backoff_after(u32::MAX), Duration::from_secs(15));
    }

    #[test]
    fn debug_hides_secrets() {
        let cred = Credential::refresh_token(
            Provider::standard("https://a.example/token"),
            "id",
            Some(ClientSecret::new("top-secret")),
            "refresh-secret",
        );
        let printed = format!("{cred:?}");
        assert!(
            !printed.contains("top-secret") && !printed.contains("refresh-secret"),
            "{printed}"
        );
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
