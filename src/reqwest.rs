//! The same credentials for reqwest clients, as a [`reqwest_middleware::Middleware`]
//! (feature `reqwest`).
//!
//! [`OAuth2Middleware`] does for a [`reqwest_middleware::ClientWithMiddleware`] what
//! [`OAuth2Layer`](crate::OAuth2Layer) does for a tower service, over the same core: the
//! same routing by origin, the same cache, the same single token request for any number
//! of waiting callers, the same refresh ahead of expiry, and the same one retry after a
//! dead-token answer. A middleware and a layer built from clones of one [`Credentials`]
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
//!   [`UserCredentials`](crate::UserCredentials)).
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
//! use tower_oauth2::{reqwest::OAuth2Middleware, Credentials, Provider, Subject, UserCredentials};
//! # use tower_oauth2::TokenTransport;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_oauth2::BoxError> {
//! # let token_endpoint = TokenTransport::new(tower::service_fn(|_req: Request<Full<Bytes>>| async {
//! #     Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
//! # }));
//! let provider = Provider::standard("https://auth.example.com/oauth/token").api("https://api.example.com");
//! let credentials = Credentials::builder()
//!     .users(UserCredentials::new(provider, "client-id", Some("client-secret".into())))
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
//! reqwest follows redirects after the middleware has run. On a redirect to another
//! host it drops `Authorization`, but not a token in another header or in the query. For
//! providers with such a [`TokenPlacement`], build the client with a redirect policy that
//! stays on the origin, or with [`reqwest::redirect::Policy::none`].
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
//! use tower_oauth2::{reqwest::OAuth2Middleware, Credential, Credentials, NoRetry, Provider};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), tower_oauth2::BoxError> {
//! let provider = Provider::standard("https://auth.example.com/oauth/token").api("https://api.example.com");
//! let credentials = Credentials::new(Credential::client_credentials(provider, "client-id", "client-secret"))?;
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

use std::sync::{atomic::Ordering, Arc};

use ::reqwest::{header::AUTHORIZATION, Request, Response, ResponseBuilderExt, Url};
use http::{Extensions, Uri};
use reqwest_middleware::{Middleware, Next};

use crate::{
    cache::{CachedToken, CredentialState},
    credentials::{Credentials, Subject},
    layer::NoRetry,
    provider::TokenPlacement,
};

/// Attaches OAuth 2.0 credentials to the requests of a reqwest client, refreshing and
/// retrying as needed.
///
/// See the [module docs](crate::reqwest) for what it does and an example.
///
/// Cheap to clone. The cached token is read once per request, without a lock.
#[derive(Debug, Clone)]
pub struct OAuth2Middleware {
    credentials: Credentials,
    retry: bool,
}

impl OAuth2Middleware {
    /// A middleware attaching `credentials`.
    pub fn new(credentials: Credentials) -> Self {
        Self {
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

    /// The credentials, e.g. to read their [`stats`](Credentials::stats).
    pub fn credentials(&self) -> &Credentials {
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
        let registry = &self.credentials.registry;
        let user;
        let state = match extensions.get::<Subject>() {
            Some(subject) => match registry.route_user(&uri, subject) {
                None => return next.run(req, extensions).await,
                // Not sent: a user without a grant, or a provider that serves no users.
                Some(Err(err)) => return Err(reqwest_middleware::Error::middleware(err)),
                Some(Ok(state)) => {
                    user = state;
                    &user
                }
            },
            None => match registry.route(&uri) {
                None => return next.run(req, extensions).await,
                Some(index) => &registry.states[index],
            },
        };
        let retry = self.retry && extensions.get::<NoRetry>().is_none();
        send(state, req, extensions, next, retry).await
    }
}

/// Sends `req` with `state`'s token, and once more with a fresh one if the answer
/// declares the token dead and `retry` allows it: the control flow of the tower layer's
/// response future, over the same calls into the cache.
async fn send(
    state: &Arc<CredentialState>,
    mut req: Request,
    extensions: &mut Extensions,
    next: Next<'_>,
    retry: bool,
) -> reqwest_middleware::Result<Response> {
    let provider = &state.config.credential.provider;
    let token = match state.current.load_full().filter(|token| token.is_usable()) {
        Some(token) => {
            if token.wants_early_refresh() {
                state.refresh_early(&token);
            }
            token
        }
        None => state
            .acquire(None)
            .await
            .map_err(reqwest_middleware::Error::middleware)?,
    };
    // Copied before the token is attached, so that the retry carries only the new one.
    let replay = if retry { req.try_clone() } else { None };
    attach(&mut req, &token, &provider.placement);
    let response = send_once(next.clone(), req, extensions, &token, &provider.placement).await?;
    if !provider.is_dead_token(response.status(), response.headers()) {
        return Ok(response);
    }

    // A dead-token answer: invalidate the token (if still current) and start or join the
    // one refresh, whether or not this request is sent again.
    let acquire = state.acquire(Some(token.generation));
    if acquire.is_ready_with(token.generation) {
        // The token was refused right after it was fetched: the answer is not about the
        // token. Nothing to refresh, nothing to retry.
        return Ok(response);
    }
    let Some(mut replay) = replay else {
        return Ok(response);
    };
    tracing::debug!(provider = %provider.name, status = response.status().as_u16(), "dead-token answer; retrying once with a fresh token");
    // NOTE: the dead answer's body is not read, so its connection is not reused.
    drop(response);
    let token = acquire.await.map_err(reqwest_middleware::Error::middleware)?;
    attach(&mut replay, &token, &provider.placement);
    state.stats.retries.fetch_add(1, Ordering::Relaxed);
    let response = send_once(next, replay, extensions, &token, &provider.placement).await?;
    if provider.is_dead_token(response.status(), response.headers()) {
        state.refused_when_fresh(token.generation);
    }
    Ok(response)
}

/// Sends `req`, which carries `token`, down the rest of the chain, and takes a token
/// carried in the query back out of the URLs of the answer.
async fn send_once(
    next: Next<'_>,
    req: Request,
    extensions: &mut Extensions,
    token: &CachedToken,
    placement: &TokenPlacement,
) -> reqwest_middleware::Result<Response> {
    let result = next.run(req, extensions).await;
    let pair = match placement {
        TokenPlacement::Query(_) => query_pair(token),
        TokenPlacement::AuthorizationBearer | TokenPlacement::Header(_) => None,
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

/// Attaches `token` where `placement` says: the sensitive header value as it is, or the
/// encoded `name=value` pair appended to the query.
fn attach(req: &mut Request, token: &CachedToken, placement: &TokenPlacement) {
    match placement {
        TokenPlacement::AuthorizationBearer => {
            req.headers_mut().insert(AUTHORIZATION, token.value.clone());
        }
        TokenPlacement::Header(name) => {
            req.headers_mut().insert(name.clone(), token.value.clone());
        }
        TokenPlacement::Query(_) => {
            let Some(pair) = query_pair(token) else { return };
            let url = req.url_mut();
            let query = match url.query() {
                Some(query) if !query.is_empty() => format!("{query}&{pair}"),
                _ => pair.to_owned(),
            };
            url.set_query(Some(&query));
        }
    }
}

/// The `name=value` pair of a token carried in the query (form-encoded, so ASCII).
fn query_pair(token: &CachedToken) -> Option<&str> {
    token.value.to_str().ok()
}

/// `response`, with `pair` taken out of its URL if it is there. reqwest keeps a
/// response's URL where only its own `http::Response` conversion can set it, so the
/// response is taken apart and put back together: only for tokens in the query.
fn without_pair_in_response(response: Response, pair: &str) -> Response {
    let mut url = response.url().clone();
    if !remove_pair(&mut url, pair) {
        return response;
    }
    let Ok(carrier) = http::Response::builder().url(url).body(()) else {
        return response;
    };
    let (mut parts, body) = http::Response::<::reqwest::Body>::from(response).into_parts();
    parts.extensions.extend(carrier.into_parts().0.extensions);
    Response::from(http::Response::from_parts(parts, body))
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
    use super::remove_pair;
    use ::reqwest::Url;

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
