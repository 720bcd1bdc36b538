//! The same credentials for reqwest clients, as a [`reqwest_middleware::Middleware`]
//! (feature `reqwest`).
//!
//! [`OAuth2Middleware`] does for a [`reqwest_middleware::ClientWithMiddleware`] what
//! [`OAuth2Layer`](crate::OAuth2Layer) does for a tower service, over the same core: the
//! same routing by origin, the same cache, the same single token request for any number
//! of waiting callers, the same refresh ahead of expiry, and the same one retry after a
//! dead-token answer. A middleware and a layer built from clones of one [`CredentialRegistry`]
//! share their tokens.
//!
//! For every request it:
//!
//! 1. routes by the URL's origin (scheme, host, port) to a credential; a request for any
//!    other origin, or whose URL is not a valid `http::Uri`, passes through untouched;
//! 2. attaches the cached token where the provider wants it (a sensitive header value,
//!    or a query parameter), waiting for the one token request in flight if there is no
//!    usable token;
//! 3. when the answer says the token is dead (401 by default), refreshes the token (once,
//!    however many requests got that answer) and sends the request once more, if
//!    [`reqwest::Request::try_clone`] can copy it. A second dead-token answer is returned
//!    as it is.
//!
//! # Which requests are retried
//!
//! Those [`reqwest::Request::try_clone`] can copy: requests without a body, and bodies
//! built from bytes (`&str`, `String`, `Vec<u8>`, `Bytes`, `.json(..)`, `.form(..)`). A
//! streaming body ([`reqwest::Body::wrap`], `wrap_stream`, a file, a multipart form) is
//! sent once and a dead-token answer returned as it is; the token is still refreshed for
//! the requests that follow.
//!
//! # Extensions
//!
//! The middleware reads the request's middleware extensions, which
//! [`reqwest_middleware::RequestBuilder::with_extension`] sets:
//!
//! - [`NoRetry`]: send the request at most once;
//! - [`Subject`]: act for that user, with their token (see
//!   [`UserCredentialTemplate`](crate::UserCredentialTemplate)).
//!
//! # Errors
//!
//! An error of the credentials (no token could be had, a user who never logged in) is a
//! [`reqwest_middleware::Error::Middleware`] holding a [`crate::Error`], and the request
//! was not sent; errors of the client itself pass through unchanged.
//!
//! ```
//! # use std::convert::Infallible;
//! # use bytes::Bytes;
//! # use http::{Request, Response};
//! # use http_body_util::Full;
//! use tower_oauth2::{reqwest::OAuth2Middleware, CredentialRegistry, Provider, Subject, UserCredentialTemplate};
//! # use tower_oauth2::TokenTransport;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_oauth2::BoxError> {
//! # let token_endpoint = TokenTransport::new(tower::service_fn(|_req: Request<Full<Bytes>>| async {
//! #     Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
//! # }));
//! let provider = Provider::standard("https://auth.example.com/oauth/token").api("https://api.example.com");
//! let credentials = CredentialRegistry::builder()
//!     .users(UserCredentialTemplate::new(provider, "client-id", Some("client-secret".into())))
//! #   .transport(token_endpoint)
//!     .build()?;
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(OAuth2Middleware::new(credentials))
//!     .build();
//!
//! // Nobody logged in as user-42: the request is answered with an error, unsent.
//! let err = client
//!     .get("https://api.example.com/v1/me")
//!     .with_extension(Subject::new("user-42"))
//!     .send()
//!     .await
//!     .unwrap_err();
//! let reqwest_middleware::Error::Middleware(err) = err else { panic!("{err}") };
//! assert!(matches!(
//!     err.downcast_ref::<tower_oauth2::Error>(),
//!     Some(tower_oauth2::Error::NotAuthorized(_))
//! ));
//! # Ok(())
//! # }
//! ```
//!
//! # Tokens in URLs
//!
//! For a provider whose token goes in a query parameter, reqwest would show the token
//! wherever it shows the URL: the middleware takes it back out of the URL of the
//! response ([`reqwest::Response::url`]) and of a client error. Log lines of reqwest
//! itself may still show it; prefer a header where the provider allows one.
//!
//! # Redirects
//!
//! Build the client with [`redirect_policy`]:
//!
//! ```no_run
//! # fn run(credentials: tower_oauth2::CredentialRegistry) -> Result<(), tower_oauth2::BoxError> {
//! let http = reqwest::Client::builder()
//!     .redirect(tower_oauth2::reqwest::redirect_policy(&credentials))
//!     .build()?;
//! let client = reqwest_middleware::ClientBuilder::new(http)
//!     .with(tower_oauth2::reqwest::OAuth2Middleware::new(credentials))
//!     .build();
//! # let _ = client;
//! # Ok(())
//! # }
//! ```
//!
//! reqwest follows redirects inside the client, after the middleware has run: the
//! middleware sees the first request and the last answer, never the hops between. What
//! reqwest 0.12 does on a hop, read from its `redirect` module and `async_impl::client`:
//!
//! - its default policy follows up to 10 redirects, to any origin;
//! - each hop is sent with the headers of the *first* request (the token included);
//! - when a hop's host or port differs from the previous hop's, it removes
//!   `Authorization`, `Cookie`, `Cookie2`, `Proxy-Authorization` and `WWW-Authenticate`.
//!   Any other header stays: a token in a header of the provider's own (iOFFICE's
//!   `x-access-token`) goes to every host of the chain. The scheme is not compared,
//!   so `https://api:8443` to `http://api:8443` keeps `Authorization` over plain http;
//!   and as each hop starts again from the first request's headers, a second hop within
//!   the new host (`api → other/a → other/b`) gets `Authorization` back;
//! - with `ClientBuilder::referer(true)`, the default, each hop but an https-to-http
//!   one carries `Referer:` the previous URL, its query included: a token in the query
//!   (`access_token`, Accelo's `_bearer_token`) goes to the next host in that header.
//!
//! No policy can take a header off a hop (reqwest's policies only choose to follow or
//! not), so [`redirect_policy`] does not follow a hop that would carry a token away: in
//! a chain that started at, or went through, an API origin of the registry, a redirect
//! to another origin (scheme, host or port: https to http included) is not followed,
//! and its 3xx answer, `Location` and all, is what the request returns. Every other
//! redirect is followed as reqwest's default policy does, up to 10.
//!
//! When the answer's URL ([`reqwest::Response::url`]) shows that reqwest followed a
//! request carrying a token to another origin, the middleware logs a `tracing` warning,
//! once per credential, naming the two origins (scheme, host and port only).
//!
//! # Order
//!
//! Add the middleware after (inside) any middleware that retries transient failures,
//! such as reqwest-retry's, so that each of their attempts gets the current token.
//!
//! # Runtime
//!
//! Token requests run as Tokio tasks: send requests within a Tokio runtime.
//!
//! # Example
//!
//! ```no_run
//! use tower_oauth2::{reqwest::OAuth2Middleware, Credential, CredentialRegistry, NoRetry, Provider};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), tower_oauth2::BoxError> {
//! let provider = Provider::standard("https://auth.example.com/oauth/token").api("https://api.example.com");
//! let credentials = CredentialRegistry::new(Credential::client_credentials(provider, "client-id", "client-secret"))?;
//!
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(OAuth2Middleware::new(credentials))
//!     .build();
//!
//! let response = client.get("https://api.example.com/v1/things").send().await?;
//! println!("{}", response.status());
//!
//! // A call that must not be repeated: sent once, whatever the answer.
//! let response = client
//!     .post("https://api.example.com/v1/payments")
//!     .with_extension(NoRetry)
//!     .body(r#"{"amount":100}"#)
//!     .send()
//!     .await?;
//! println!("{}", response.status());
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;

use ::reqwest::{Request, Response, ResponseBuilderExt, Url};
use http::{Extensions, HeaderMap, Uri};
use reqwest_middleware::{Middleware, Next};

use crate::{
    credential::CredentialState,
    dead_token::{ApiAnswer, ReadPrefix, ResponseBody, Verdict},
    layer::NoRetry,
    protocol::{self, AfterDead, AttachPoint, Plan, Route, Target},
    provider::Provider,
    registry::{CredentialRegistry, RoutingTable, Subject},
};

/// Attaches OAuth 2.0 credentials to the requests of a reqwest client, refreshing and
/// retrying as needed.
///
/// See the [module docs](crate::reqwest) for what it does and an example.
///
/// Cheap to clone. The cached token is read once per request, without a lock.
#[derive(Debug, Clone)]
pub struct OAuth2Middleware {
    credentials: CredentialRegistry,
    retry: bool,
    /// Per application credential, where its token goes and what a dead answer is.
    plans: Arc<[Plan]>,
}

impl OAuth2Middleware {
    /// A middleware attaching `credentials`.
    pub fn new(credentials: CredentialRegistry) -> Self {
        Self {
            plans: Plan::all(&credentials.routing),
            credentials,
            retry: true,
        }
    }

    /// Whether a request answered with a dead-token status is sent once more with a
    /// fresh token (default `true`). With `false`, the token is still refreshed for the
    /// requests that follow, and no request is ever sent twice or copied for a retry.
    /// [`NoRetry`] does the same for a single request.
    pub fn retry_dead_tokens(mut self, retry: bool) -> Self {
        self.retry = retry;
        self
    }

    /// The credentials, e.g. to read their [`stats`](CredentialRegistry::stats).
    pub fn credentials(&self) -> &CredentialRegistry {
        &self.credentials
    }
}

#[async_trait::async_trait]
impl Middleware for OAuth2Middleware {
    async fn handle(
        &self,
        req: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        // Routing reads only the scheme and the authority; reqwest itself turns the URL
        // into an `http::Uri` the same way, and fails the request if it cannot.
        let Ok(uri) = req.url().as_str().parse::<Uri>() else {
            return next.run(req, extensions).await;
        };
        let registry = &self.credentials.routing;
        let user_plan;
        let (state, plan) = match protocol::route(registry, &uri, extensions.get::<Subject>()) {
            Route::Pass => return next.run(req, extensions).await,
            // Not sent: a user without a grant, or a provider that serves no users.
            Route::Refuse(err) => return Err(reqwest_middleware::Error::middleware(err)),
            Route::App(index, _) => (Arc::clone(&registry.states[index]), &self.plans[index]),
            Route::User(state, _) => {
                user_plan = Plan::for_credential(&state.config);
                (state, &user_plan)
            }
        };
        let retry = self.retry && extensions.get::<NoRetry>().is_none();
        let response = send(&state, plan, req, extensions, next, retry).await?;
        check_followed(&state, registry, &uri, &response);
        Ok(response)
    }
}

/// A redirect policy for a reqwest client whose requests carry tokens of `credentials`:
/// a redirect that would take a token to another origin is not followed (see the
/// [module docs](crate::reqwest#redirects)).
///
/// In a chain whose first URL, or any URL followed since, is an API origin of
/// `credentials` (the application's or its users'), a redirect to an origin that is not
/// the current one (scheme, host or port; https to http included) is stopped: the
/// request returns the 3xx answer. Every other redirect is followed, up to 10 in a
/// chain as reqwest's default policy does; the request fails after that.
pub fn redirect_policy(credentials: &CredentialRegistry) -> ::reqwest::redirect::Policy {
    let credentials = credentials.clone();
    ::reqwest::redirect::Policy::custom(move |attempt| {
        match decide(&credentials.routing, attempt.url(), attempt.previous()) {
            Hop::Follow => attempt.follow(),
            Hop::Stop => attempt.stop(),
            Hop::TooMany => attempt.error(TooManyRedirects),
        }
    })
}

/// The most redirects [`redirect_policy`] follows in a chain: reqwest's default.
const MAX_REDIRECTS: usize = 10;

/// What [`redirect_policy`] does with a redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    Follow,
    Stop,
    TooMany,
}

/// The redirect to `next`, after the chain `previous` (the first URL and each one
/// followed since, as reqwest passes them).
fn decide(registry: &RoutingTable, next: &Url, previous: &[Url]) -> Hop {
    // As reqwest's own limit: the first URL is not a redirect.
    if previous.len() > MAX_REDIRECTS {
        return Hop::TooMany;
    }
    let Some(current) = previous.last() else {
        return Hop::Follow;
    };
    // `Url::origin` fills in default ports; any scheme but http(s) has an opaque
    // origin, equal to no other.
    if current.origin() == next.origin() {
        return Hop::Follow;
    }
    let carries_tokens = previous
        .iter()
        .any(|url| url.as_str().parse::<Uri>().is_ok_and(|uri| registry.serves(&uri)));
    if carries_tokens {
        Hop::Stop
    } else {
        Hop::Follow
    }
}

/// The error of a chain longer than [`MAX_REDIRECTS`].
#[derive(Debug)]
struct TooManyRedirects;

impl std::fmt::Display for TooManyRedirects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "too many redirects (more than {MAX_REDIRECTS})")
    }
}

impl std::error::Error for TooManyRedirects {}

/// Whether reqwest followed `uri`, which carried `state`'s token, to another origin: the
/// answer's URL is the last one requested. Said once per credential.
fn check_followed(state: &CredentialState, registry: &RoutingTable, uri: &Uri, response: &Response) {
    let url = response.url();
    let default_port = |scheme: &str| match scheme {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    };
    let same = uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case(url.scheme()))
        && uri
            .host()
            .zip(url.host_str())
            .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
        && uri.port_u16().or_else(|| default_port(url.scheme())) == url.port_or_known_default();
    if !same {
        followed(state, registry, uri, url);
    }
}

#[cold]
#[inline(never)]
fn followed(state: &CredentialState, registry: &RoutingTable, uri: &Uri, url: &Url) {
    let Ok(to) = url.as_str().parse::<Uri>() else {
        return;
    };
    registry.crossings.warn_once(
        state,
        Some(uri),
        &to,
        "reqwest followed a redirect to another origin with the token attached: it sends \
         a token in a custom header along, and a token in the query in `Referer`. Build \
         the client with `.redirect(tower_oauth2::reqwest::redirect_policy(&credentials))`",
    );
}

/// Sends `req` with `state`'s token, and once more with a fresh one if the answer
/// declares the token dead and `retry` allows it: the protocol of
/// [`protocol`](crate::protocol), step by step, as the tower layer's response future
/// takes it.
async fn send(
    state: &Arc<CredentialState>,
    plan: &Plan,
    mut req: Request,
    extensions: &mut Extensions,
    next: Next<'_>,
    retry: bool,
) -> reqwest_middleware::Result<Response> {
    let provider = &state.config.credential.client.provider;
    let (generation, value) = token_value(state).await?;
    // Copied before the token is attached, so that the retry carries only the new one.
    let replay = if retry { req.try_clone() } else { None };
    #[cfg(feature = "jose")]
    let origin = plan
        .placement
        .is_dpop()
        .then(|| req.url().origin().ascii_serialization());
    protocol::attach(&mut req, &plan.placement, value.clone());
    let response = send_once(next.clone(), req, extensions, &value, &plan.placement).await?;
    #[cfg(feature = "jose")]
    match protocol::dpop_verdict(
        &plan.placement,
        origin.as_deref(),
        response.status(),
        response.headers(),
    ) {
        protocol::DpopVerdict::Judge => {}
        protocol::DpopVerdict::Answer => return Ok(response),
        protocol::DpopVerdict::Nonce => {
            let Some(replay) = replay else {
                return Ok(response);
            };
            drop(response);
            return send_with_nonce(state, plan, replay, origin.as_deref(), extensions, next).await;
        }
    }
    let response = match plan.verdict(response.status(), response.headers(), || provider) {
        Verdict::Answer => return Ok(response),
        Verdict::Dead => response,
        Verdict::ReadBody => match read_body(provider, response).await {
            (response, false) => return Ok(response),
            (response, true) => response,
        },
    };
    let acquire = match protocol::after_dead(state, generation, replay.is_some(), response.status()) {
        AfterDead::Return => return Ok(response),
        AfterDead::Retry(acquire) => acquire,
    };
    let Some(mut replay) = replay else {
        return Ok(response);
    };
    // NOTE: the dead answer's body is not read, so its connection is not reused.
    drop(response);
    let token = acquire.await.map_err(reqwest_middleware::Error::middleware)?;
    protocol::attach(&mut replay, &plan.placement, token.value.clone());
    protocol::retrying(state);
    let response = send_once(next, replay, extensions, &token.value, &plan.placement).await?;
    #[cfg(feature = "jose")]
    if protocol::dpop_verdict(
        &plan.placement,
        origin.as_deref(),
        response.status(),
        response.headers(),
    )
    .wants_nonce()
    {
        // The one retry is spent; a nonce demand says nothing of the fresh token.
        return Ok(response);
    }
    let (response, dead) = match protocol::verdict_of(state, response.status(), response.headers()) {
        Verdict::Answer => (response, false),
        Verdict::Dead => (response, true),
        Verdict::ReadBody => read_body(provider, response).await,
    };
    protocol::after_retry(state, token.generation, dead);
    Ok(response)
}

/// The one retry of a DPoP-bound request whose answer asked for a nonce: the same token
/// (or, if it expired meanwhile, the next), a new proof with the nonce. A dead answer to
/// it is about that token, which is then refreshed for the next request.
#[cfg(feature = "jose")]
#[cold]
async fn send_with_nonce(
    state: &Arc<CredentialState>,
    plan: &Plan,
    mut replay: Request,
    origin: Option<&str>,
    extensions: &mut Extensions,
    next: Next<'_>,
) -> reqwest_middleware::Result<Response> {
    tracing::debug!(
        provider = %state.config.provider_name(),
        "the API asked for a DPoP nonce; sending once more"
    );
    let (generation, value) = token_value(state).await?;
    protocol::attach(&mut replay, &plan.placement, value.clone());
    protocol::retrying(state);
    let response = send_once(next, replay, extensions, &value, &plan.placement).await?;
    if protocol::dpop_verdict(&plan.placement, origin, response.status(), response.headers()).wants_nonce() {
        // A second demand: the one retry is spent, and the token is not in question.
        return Ok(response);
    }
    let provider = &state.config.credential.client.provider;
    let (response, dead) = match protocol::verdict_of(state, response.status(), response.headers()) {
        Verdict::Answer => (response, false),
        Verdict::Dead => (response, true),
        Verdict::ReadBody => read_body(provider, response).await,
    };
    if dead {
        protocol::after_dead(state, generation, false, response.status());
    }
    Ok(response)
}

/// The token to attach: the cached one, or the one the wait brings.
async fn token_value(state: &Arc<CredentialState>) -> reqwest_middleware::Result<(u64, http::HeaderValue)> {
    match protocol::token_value(state) {
        Ok(attached) => Ok(attached),
        Err(acquire) => {
            let token = acquire.await.map_err(reqwest_middleware::Error::middleware)?;
            Ok((token.generation, token.value.clone()))
        }
    }
}

/// Reads the start of `response`'s body and asks `provider`'s body test whether it
/// declares the token dead. The response comes back with its body whole: the frames
/// read, then the rest, unread.
#[cold]
async fn read_body(provider: &Provider, response: Response) -> (Response, bool) {
    let url = response.url().clone();
    let limit = provider.dead_token_body_limit;
    let (parts, body) = http::Response::<::reqwest::Body>::from(response).into_parts();
    let (prefix, rest) = ReadPrefix::new(body, limit).await;
    let (bytes, complete) = prefix.bytes(limit);
    let dead = provider.is_dead_body(&ApiAnswer::new(parts.status, &parts.headers, &bytes, complete));
    let body = ::reqwest::Body::wrap(ResponseBody::prefixed(prefix, rest));
    (with_url(parts, body, url), dead)
}

/// A reqwest response of `parts` and `body` whose URL is `url`: reqwest sets a
/// response's URL only through the `http::Response` conversion, from an extension.
fn with_url(mut parts: http::response::Parts, body: ::reqwest::Body, url: Url) -> Response {
    if let Ok(carrier) = http::Response::builder().url(url).body(()) {
        parts.extensions.extend(carrier.into_parts().0.extensions);
    }
    Response::from(http::Response::from_parts(parts, body))
}

/// Sends `req`, which carries the token's `value`, down the rest of the chain, and takes
/// a token carried in the query back out of the URLs of the answer.
async fn send_once(
    next: Next<'_>,
    req: Request,
    extensions: &mut Extensions,
    value: &http::HeaderValue,
    placement: &AttachPoint,
) -> reqwest_middleware::Result<Response> {
    let result = next.run(req, extensions).await;
    let pair = match placement {
        AttachPoint::Query => value.to_str().ok(),
        _ => None,
    };
    let Some(pair) = pair else {
        return result;
    };
    match result {
        Ok(response) => Ok(without_pair_in_response(response, pair)),
        Err(mut err) => {
            if let Some(url) = err.url_mut() {
                remove_pair(url, pair);
            }
            Err(err)
        }
    }
}

impl Target for Request {
    fn headers_mut(&mut self) -> &mut HeaderMap {
        Request::headers_mut(self)
    }

    #[cfg(feature = "jose")]
    fn method_str(&self) -> &str {
        self.method().as_str()
    }

    #[cfg(feature = "jose")]
    fn proof_target(&self) -> Option<crate::dpop::ProofTarget> {
        let url = self.url();
        Some(crate::dpop::ProofTarget::of_parts(
            &url.origin().ascii_serialization(),
            url.path(),
        ))
    }

    fn append_query(&mut self, pair: &str) {
        let url = self.url_mut();
        let query = match url.query() {
            Some(query) if !query.is_empty() => format!("{query}&{pair}"),
            _ => pair.to_owned(),
        };
        url.set_query(Some(&query));
    }
}

/// `response`, with `pair` taken out of its URL if it is there. reqwest keeps a
/// response's URL where only its own `http::Response` conversion can set it, so the
/// response is taken apart and put back together: only for tokens in the query.
fn without_pair_in_response(response: Response, pair: &str) -> Response {
    let mut url = response.url().clone();
    if !remove_pair(&mut url, pair) {
        return response;
    }
    let (parts, body) = http::Response::<::reqwest::Body>::from(response).into_parts();
    with_url(parts, body, url)
}

/// Removes every `pair` parameter from `url`'s query; whether there was one.
fn remove_pair(url: &mut Url, pair: &str) -> bool {
    let Some(query) = url.query() else {
        return false;
    };
    if !query.split('&').any(|p| p == pair) {
        return false;
    }
    let rest = query
        .split('&')
        .filter(|p| *p != pair)
        .collect::<Vec<_>>()
        .join("&");
    url.set_query((!rest.is_empty()).then_some(rest.as_str()));
    true
}

#[cfg(test)]
mod tests {
    use super::{decide, remove_pair, Hop};
    use crate::{Credential, CredentialRegistry, Provider, TokenTransport, UserCredentialTemplate};
    use ::reqwest::Url;

    fn registry() -> CredentialRegistry {
        let transport =
            TokenTransport::new(tower::service_fn(|_req: crate::transport::TokenRequest| async {
                Err::<http::Response<http_body_util::Full<bytes::Bytes>>, crate::BoxError>("unused".into())
            }));
        let app = Provider::standard("https://auth.example.com/token").api("https://api.example.com");
        let users = Provider::standard("https://auth.users.test/token")
            .name("users")
            .api("https://users.test");
        CredentialRegistry::builder()
            .credential(Credential::client_credentials(app, "id", "secret"))
            .users(UserCredentialTemplate::new(users, "id", Some("secret".into())))
            .transport(transport)
            .build()
            .unwrap()
    }

    fn urls(urls: &[&str]) -> Vec<Url> {
        urls.iter().map(|url| Url::parse(url).unwrap()).collect()
    }

    #[test]
    fn a_chain_with_tokens_stops_where_it_would_leave_its_origin() {
        let credentials = registry();
        let registry = &credentials.routing;
        for (previous, next, expected) in [
            // Within the token's origin: followed.
            (
                &["https://api.example.com/a"][..],
                "https://api.example.com/b?c=1",
                Hop::Follow,
            ),
            (
                &["https://api.example.com/a"],
                "https://API.example.com:443/b",
                Hop::Follow,
            ),
            // Another scheme (a downgrade), port or host: stopped.
            (
                &["https://api.example.com/a"],
                "http://api.example.com/a",
                Hop::Stop,
            ),
            (
                &["https://api.example.com/a"],
                "https://api.example.com:8443/a",
                Hop::Stop,
            ),
            (
                &["https://api.example.com/a"],
                "https://files.example.net/a",
                Hop::Stop,
            ),
            (
                &["https://api.example.com/a"],
                "ftp://api.example.com/a",
                Hop::Stop,
            ),
            // A users' origin counts too.
            (&["https://users.test/me"], "https://elsewhere.test/", Hop::Stop),
            // Through the token's origin on the way: stopped when leaving the current one.
            (
                &["https://api.example.com/a", "https://api.example.com/b"],
                "https://files.example.net/",
                Hop::Stop,
            ),
            (
                &["https://start.test/", "https://api.example.com/b"],
                "https://files.example.net/",
                Hop::Stop,
            ),
            // Chains that never met an origin of the registry: reqwest's default.
            (&["https://start.test/"], "http://elsewhere.test/", Hop::Follow),
            (&["https://start.test/"], "https://api.example.com/", Hop::Follow),
        ] {
            let previous = urls(previous);
            let next = Url::parse(next).unwrap();
            assert_eq!(
                decide(registry, &next, &previous),
                expected,
                "{previous:?} -> {next}"
            );
        }
    }

    #[test]
    fn a_chain_follows_ten_redirects_and_no_more() {
        let credentials = registry();
        let next = Url::parse("https://api.example.com/next").unwrap();
        let chain = |n: usize| {
            (0..n)
                .map(|i| Url::parse(&format!("https://api.example.com/{i}")).unwrap())
                .collect::<Vec<_>>()
        };
        // The first URL and ten redirects followed: the eleventh is one too many.
        assert_eq!(decide(&credentials.routing, &next, &chain(10)), Hop::Follow);
        assert_eq!(decide(&credentials.routing, &next, &chain(11)), Hop::TooMany);
    }

    #[test]
    fn removing_the_pair_keeps_the_other_parameters() {
        for (before, after) in [
            ("https://a.test/p?access_token=t", "https://a.test/p"),
            ("https://a.test/p?x=1&access_token=t", "https://a.test/p?x=1"),
            (
                "https://a.test/p?access_token=t&x=1&y=2",
                "https://a.test/p?x=1&y=2",
            ),
        ] {
            let mut url = Url::parse(before).unwrap();
            assert!(remove_pair(&mut url, "access_token=t"), "{before}");
            assert_eq!(url.as_str(), after);
        }
        for untouched in [
            "https://a.test/p",
            "https://a.test/p?access_token=other",
            "https://a.test/p?xaccess_token=t",
        ] {
            let mut url = Url::parse(untouched).unwrap();
            assert!(!remove_pair(&mut url, "access_token=t"), "{untouched}");
            assert_eq!(url.as_str(), untouched);
        }
    }
}
