//! Providers and the credentials obtained from them.
//!
//! A [`Provider`] is data, not a trait implementation per vendor: where its token endpoint
//! is, how a client authenticates there, where its APIs live, where an access token goes
//! on an API request, and which API answers mean "this token is dead". Every setting has
//! a setter, so a preset can be adjusted without forking it.
//!
//! A [`Credential`] is a provider plus a client and a grant: what to send to the token
//! endpoint to get a token. One [`Credentials`](crate::Credentials) registry holds any
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

use http::{HeaderMap, HeaderName, StatusCode};

use crate::{
    secret::{ClientSecret, RefreshToken},
    token::{ExpiresIn, Lifetimes},
};

/// How a client proves its identity to the token endpoint (RFC 6749 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `Authorization: Basic` with the form-encoded client id and secret (§2.3.1).
    Basic,
    /// `client_id` and `client_secret` as parameters of the request body.
    RequestBody,
    /// No client authentication; `client_id` is sent as a parameter (public clients).
    None,
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
    pub(crate) expires_in: ExpiresIn,
    pub(crate) lifetimes: Lifetimes,
    pub(crate) max_response_bytes: usize,
}

impl Provider {
    /// A standard RFC 6749 authorization server with its token endpoint at `token_url`.
    ///
    /// Defaults: named after the token URL's host, HTTP Basic client authentication,
    /// `Authorization: Bearer` on API requests, 401 means a dead token, `expires_in` in
    /// seconds (1 hour when absent), answers up to 64 KiB. Add the API origins the
    /// tokens are for with [`api`](Self::api): without one, no request gets a token.
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
            expires_in: ExpiresIn::Seconds,
            lifetimes: Lifetimes::default(),
            max_response_bytes: 64 * 1024,
        }
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
    /// The body is never read for this: that would mean buffering every error response.
    pub fn dead_token_when<F>(mut self, predicate: F) -> Self
    where
        F: Fn(StatusCode, &HeaderMap) -> bool + Send + Sync + 'static,
    {
        self.dead_token_when = Some(Arc::new(predicate));
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

    /// The provider's name.
    pub fn get_name(&self) -> &str {
        &self.name
    }

    pub(crate) fn is_dead_token(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        self.dead_token_statuses.contains(&status)
            || self
                .dead_token_when
                .as_ref()
                .is_some_and(|when| when(status, headers))
    }
}

// Written by hand: the predicate is a closure, printed by its presence only.
impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("token_url", &self.token_url)
            .field("api_origins", &self.api_origins)
            .field("client_auth", &self.client_auth)
            .field("placement", &self.placement)
            .field("dead_token_statuses", &self.dead_token_statuses)
            .field("dead_token_when", &self.dead_token_when.as_ref().map(|_| ".."))
            .field("expires_in", &self.expires_in)
            .field("lifetimes", &self.lifetimes)
            .field("max_response_bytes", &self.max_response_bytes)
            .finish()
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
}

impl Grant {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::RefreshToken(_) => "refresh_token",
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
    pub(crate) scopes: Vec<String>,
    pub(crate) policy: RefreshPolicy,
}

impl Credential {
    /// A confidential client using the `client_credentials` grant.
    pub fn client_credentials(
        provider: Provider,
        client_id: impl Into<String>,
        client_secret: impl Into<ClientSecret>,
    ) -> Self {
        Self {
            provider,
            client_id: client_id.into(),
            client_secret: Some(client_secret.into()),
            grant: Grant::ClientCredentials,
            scopes: Vec::new(),
            policy: RefreshPolicy::default(),
        }
    }

    /// A client holding a refresh token. `client_secret` is `None` for public clients
    /// (use [`ClientAuth::None`] on the provider then).
    pub fn refresh_token(
        provider: Provider,
        client_id: impl Into<String>,
        client_secret: Option<ClientSecret>,
        refresh_token: impl Into<RefreshToken>,
    ) -> Self {
        Self {
            provider,
            client_id: client_id.into(),
            client_secret,
            grant: Grant::RefreshToken(refresh_token.into()),
            scopes: Vec::new(),
            policy: RefreshPolicy::default(),
        }
    }

    /// The scopes to request. Order and duplicates do not matter.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self.scopes.sort();
        self.scopes.dedup();
        self
    }

    /// When to refresh and how to back off.
    pub fn refresh_policy(mut self, policy: RefreshPolicy) -> Self {
        self.policy = policy;
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

    /// A readable key naming this credential in logs: provider, client, grant, scopes.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.provider.name,
            self.client_id,
            self.grant.kind(),
            self.scopes.join(" ")
        )
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
            .field("policy", &self.policy)
            .finish()
    }
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
            Provider::standard("https://a.example/token").get_name(),
            "a.example"
        );
    }
}
