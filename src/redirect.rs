//! Following redirects without sending tokens elsewhere (feature `follow-redirect`).
//!
//! tower-http's [`FollowRedirect`] sends each hop of a redirect chain with a copy of
//! the *first* request's headers, and its [`Standard`] policy removes only
//! `Authorization`, `Cookie` and `Proxy-Authorization`, only on a hop whose two ends
//! differ in origin. So when it sits *inside* [`OAuth2Layer`](crate::OAuth2Layer), a
//! token in a header of the provider's own (iOFFICE's `x-access-token`, see
//! [`TokenPlacement::Header`]) follows the redirect to any other origin, and a Bearer
//! token comes back from the second hop on: after `https://api/ → https://other/a →
//! https://other/b`, the last hop is "same origin" and gets the first request's
//! `Authorization` again; after `https://api/ → http://api/a → http://api/b`, over
//! plain http.
//!
//! # The safe arrangement: `FollowRedirect` outside the layer
//!
//! ```text
//! ServiceBuilder::new()
//!     .layer(FollowRedirectLayer::with_policy(redirect::policy(&credentials)))  // outside
//!     .layer(OAuth2Layer::new(credentials))                                      // inside
//!     .service(client)
//! ```
//!
//! or, in one call, [`ServiceBuilderExt::oauth2_follow_redirects`](crate::ServiceBuilderExt::oauth2_follow_redirects).
//! Every hop then goes through the layer, which routes it by its own origin like any
//! request: a hop to the token's origin gets the token, a hop anywhere else gets none.
//! [`RedirectPolicy`] is still the policy to give `FollowRedirect` there: tower-http
//! builds each hop as a new request without the first one's extensions, and the policy
//! puts back the two the layer reads, [`Subject`] (so that a user's request is not
//! continued with the application's token) and [`NoRetry`] (so that a request that must
//! not be repeated is not repeated on a later hop).
//!
//! # When `FollowRedirect` must sit inside
//!
//! Give it [`RedirectPolicy`]. It keeps what [`Standard`] does (at most 20 redirects,
//! [`Limited`]; [`FilterCredentials`] on each hop) and adds: once the chain has left the
//! origin of its first request, by a change of scheme (https to http included), host or
//! port, every request after that has, removed,
//!
//! - `Authorization`, `Cookie` and `Proxy-Authorization`,
//! - every header any provider of the registry puts its token in
//!   ([`TokenPlacement::Header`]),
//! - every query parameter any provider of the registry puts its token in
//!   ([`TokenPlacement::Query`]),
//!
//! for the rest of the chain, back on the first origin included. Hops within the first
//! origin keep the token. A token in the query is never carried over by tower-http
//! itself (each hop's URI is the `Location`); the parameters are removed all the same,
//! in case a server writes them into its `Location`.
//!
//! # Warning
//!
//! When `FollowRedirect` sits inside the layer, the layer sees tower-http's
//! [`RequestUri`] on the answer. If it names an origin of another credential, or none,
//! a redirect carried the request away after the token was attached: the layer logs a
//! `tracing` warning, once per credential, naming the origins (scheme, host and port
//! only), unless a [`RedirectPolicy`] was built from the same [`CredentialRegistry`], which is
//! then taken to be the `FollowRedirect`'s policy. Checking costs one lookup in the
//! answer's extensions, when it has any: counted with callgrind on the cached path
//! (`benches/instructions.rs`, `oauth2`), 10 instructions per call for an answer
//! without extensions and 34 for one with an extension (as hyper-util's client
//! answers carry), against about 1,060 the layer costs over a bare call. Without the
//! feature, nothing is checked.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{header::LOCATION, Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_http::follow_redirect::FollowRedirectLayer;
//! use tower_oauth2::{redirect, Credential, CredentialRegistry, OAuth2Layer, Provider, TokenPlacement, TokenTransport};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_oauth2::BoxError> {
//! # let token_endpoint = TokenTransport::new(tower::service_fn(|_req: Request<Full<Bytes>>| async {
//! #     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
//! #         br#"{"access_token":"abc","token_type":"Bearer","expires_in":3600}"#,
//! #     ))))
//! # }));
//! let provider = Provider::standard("https://auth.example.com/oauth/token")
//!     .api("https://api.example.com")
//!     .token_placement(TokenPlacement::Header(http::HeaderName::from_static("x-access-token")));
//! let credentials = CredentialRegistry::builder()
//!     .credential(Credential::client_credentials(provider, "client-id", "client-secret"))
//! #   .transport(token_endpoint)
//!     .build()?;
//!
//! // An API that moved its resource to another host.
//! let http_client = tower::service_fn(|req: Request<Full<Bytes>>| async move {
//!     let response = match req.uri().host() {
//!         Some("api.example.com") => Response::builder()
//!             .status(StatusCode::FOUND)
//!             .header(LOCATION, "https://files.example.net/report"),
//!         // The other host answers with whether it was sent the token.
//!         _ => Response::builder().header("got-token", req.headers().contains_key("x-access-token").to_string()),
//!     };
//!     Ok::<_, Infallible>(response.body(Full::<Bytes>::default()).unwrap())
//! });
//!
//! // Inside the layer, with the policy: the hop to the other host goes without the token.
//! let client = ServiceBuilder::new()
//!     .layer(OAuth2Layer::new(credentials.clone()))
//!     .layer(FollowRedirectLayer::with_policy(redirect::policy(&credentials)))
//!     .service(http_client);
//! let request = Request::get("https://api.example.com/v1/report").body(Full::default())?;
//! let response = client.oneshot(request).await?;
//! assert_eq!(response.headers()["got-token"], "false");
//! # Ok(())
//! # }
//! ```
//!
//! [`FollowRedirect`]: tower_http::follow_redirect::FollowRedirect
//! [`RequestUri`]: tower_http::follow_redirect::RequestUri
//! [`Standard`]: tower_http::follow_redirect::policy::Standard
//! [`Limited`]: tower_http::follow_redirect::policy::Limited
//! [`FilterCredentials`]: tower_http::follow_redirect::policy::FilterCredentials

use std::{fmt, sync::atomic::Ordering, sync::Arc};

use http::{
    header::{AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION},
    uri::PathAndQuery,
    HeaderName, Request, Response, Uri,
};
use tower_http::follow_redirect::{
    policy::{Action, Attempt, FilterCredentials, Limited, Policy, PolicyExt, Standard},
    RequestUri,
};

use crate::{
    credential::CredentialState,
    layer::NoRetry,
    origin::Origin,
    provider::TokenPlacement,
    registry::{CredentialRegistry, RoutingTable, Subject},
};

/// The most redirects a chain follows by default: tower-http's [`Limited`]'s default.
const DEFAULT_MAX_REDIRECTS: usize = 20;

/// The [`RedirectPolicy`] for `credentials`: the same as [`RedirectPolicy::new`].
pub fn policy(credentials: &CredentialRegistry) -> RedirectPolicy {
    RedirectPolicy::new(credentials)
}

/// A policy for tower-http's
/// [`FollowRedirect`](tower_http::follow_redirect::FollowRedirect) that never carries a
/// token of the registry away from the origin of a chain's first request.
///
/// See the [module docs](self) for where to put `FollowRedirect` and what this does.
///
/// `FollowRedirect` clones the policy for each request; a clone is a few reference
/// counts. `Debug` shows the header and parameter names it removes, never a value.
#[derive(Clone)]
pub struct RedirectPolicy {
    standard: Standard,
    max_redirects: usize,
    names: Arc<Names>,
    chain: Chain,
}

/// What is removed from a request once its chain has left its first origin.
struct Names {
    headers: Box<[HeaderName]>,
    query: Box<[Box<str>]>,
}

/// One chain's state. The layer's copy is never used; each request's clone starts
/// from it.
#[derive(Clone, Default)]
struct Chain {
    /// `on_request` has seen the chain's first request.
    started: bool,
    /// The first request's URI, kept from the first redirect on.
    start: Option<Uri>,
    /// The chain has been to another origin than its first request's.
    left: bool,
    /// The first request's extensions the layer reads, put back on every hop.
    subject: Option<Subject>,
    no_retry: bool,
}

impl RedirectPolicy {
    /// The policy for the token placements of every provider of `credentials`, the
    /// application's and its users'.
    pub fn new(credentials: &CredentialRegistry) -> Self {
        let registry = &credentials.routing;
        // A `FollowRedirect` seen inside the layer is taken to use this policy.
        registry.crossings.guarded.store(true, Ordering::Relaxed);
        let mut headers = vec![AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION];
        let mut query: Vec<Box<str>> = Vec::new();
        for placement in registry.placements() {
            match placement {
                TokenPlacement::AuthorizationBearer => {}
                TokenPlacement::Header(name) => {
                    if !headers.contains(name) {
                        headers.push(name.clone());
                    }
                }
                TokenPlacement::Query(name) => {
                    if !query.iter().any(|known| **known == **name) {
                        query.push(name.as_str().into());
                    }
                }
            }
        }
        Self {
            standard: Standard::default(),
            max_redirects: DEFAULT_MAX_REDIRECTS,
            names: Arc::new(Names {
                headers: headers.into(),
                query: query.into(),
            }),
            chain: Chain::default(),
        }
    }

    /// Follows at most `max` redirects in a chain (default 20, as tower-http's
    /// [`Standard`]); the answer to the one after is returned as it is.
    pub fn max_redirects(mut self, max: usize) -> Self {
        self.standard = Limited::new(max).and::<_, (), ()>(FilterCredentials::new());
        self.max_redirects = max;
        self
    }

    /// Removes every token placement from `request`.
    fn strip<B>(&self, request: &mut Request<B>) {
        let headers = request.headers_mut();
        for name in &*self.names.headers {
            headers.remove(name);
        }
        if !self.names.query.is_empty() {
            if let Some(uri) = without_parameters(request.uri(), &self.names.query) {
                *request.uri_mut() = uri;
            }
        }
    }
}

impl<B, E> Policy<B, E> for RedirectPolicy {
    fn redirect(&mut self, attempt: &Attempt<'_>) -> Result<Action, E> {
        let action = Policy::<B, E>::redirect(&mut self.standard, attempt)?;
        if action.is_follow() {
            let start = self.chain.start.get_or_insert_with(|| attempt.previous().clone());
            if !same_origin(start, attempt.location()) {
                self.chain.left = true;
            }
        }
        Ok(action)
    }

    fn on_request(&mut self, request: &mut Request<B>) {
        Policy::<B, E>::on_request(&mut self.standard, request);
        if !self.chain.started {
            self.chain.started = true;
            let extensions = request.extensions();
            if !extensions.is_empty() {
                self.chain.subject = extensions.get::<Subject>().cloned();
                self.chain.no_retry = extensions.get::<NoRetry>().is_some();
            }
            return;
        }
        if self.chain.left {
            self.strip(request);
        }
        if let Some(subject) = &self.chain.subject {
            request.extensions_mut().insert(subject.clone());
        }
        if self.chain.no_retry {
            request.extensions_mut().insert(NoRetry);
        }
    }
}

impl fmt::Debug for RedirectPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedirectPolicy")
            .field("max_redirects", &self.max_redirects)
            .field("headers", &self.names.headers)
            .field("query", &self.names.query)
            .field("left_origin", &self.chain.left)
            .finish()
    }
}

/// Same scheme, host and port (default ports filled in); anything but http(s) is
/// another origin.
fn same_origin(a: &Uri, b: &Uri) -> bool {
    match (Origin::of(a), Origin::of(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// `uri` without the query parameters named in `names` (compared decoded), or `None`
/// when it has none of them. The other parameters are kept as they were written.
fn without_parameters(uri: &Uri, names: &[Box<str>]) -> Option<Uri> {
    let query = uri.query()?;
    let named = |pair: &str| {
        form_urlencoded::parse(pair.as_bytes())
            .next()
            .is_some_and(|(name, _)| names.iter().any(|n| **n == *name))
    };
    if !query.split('&').any(named) {
        return None;
    }
    let kept: Vec<&str> = query.split('&').filter(|pair| !named(pair)).collect();
    let path_and_query = match kept.is_empty() {
        true => uri.path().to_owned(),
        false => format!("{}?{}", uri.path(), kept.join("&")),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(parts).ok()
}

// ===== The layer's side: a redirect followed inside it =====

/// Looks at an answer to a request that carried a token of credential `index` (or of
/// `user`): if tower-http's `FollowRedirect` inside the layer followed a redirect to an
/// origin that is not the credential's, says so once. Costs an emptiness check of the
/// answer's extensions, and a lookup when it has any.
#[inline(always)]
pub(crate) fn check_followed<T>(
    registry: &RoutingTable,
    index: usize,
    user: Option<&CredentialState>,
    response: &Response<T>,
) {
    let extensions = response.extensions();
    if extensions.is_empty() {
        return;
    }
    if let Some(RequestUri(uri)) = extensions.get::<RequestUri>() {
        followed(registry, index, user, uri);
    }
}

#[cold]
#[inline(never)]
fn followed(registry: &RoutingTable, index: usize, user: Option<&CredentialState>, uri: &Uri) {
    if registry.crossings.guarded.load(Ordering::Relaxed) || registry.is_origin_of(uri, index, user) {
        return;
    }
    let state = match user {
        Some(state) => state,
        None => &registry.states[index],
    };
    registry.crossings.warn_once(
        state,
        None,
        uri,
        "a redirect was followed to another origin inside OAuth2Layer, with the token \
         attached to the first request: tower-http's standard policy sends a token in a \
         custom header along, and `Authorization` again from the second hop on. Put \
         FollowRedirect outside the layer, or give it tower_oauth2::redirect::policy",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_parameters_are_removed() {
        let names: Vec<Box<str>> = vec!["access_token".into(), "_bearer_token".into()];
        for (before, after) in [
            ("https://a.test/p?access_token=t", Some("https://a.test/p")),
            (
                "https://a.test/p?x=1&access_token=t&y=%20",
                Some("https://a.test/p?x=1&y=%20"),
            ),
            (
                "https://a.test/p?_bearer_token=t&access_token=u",
                Some("https://a.test/p"),
            ),
            // Compared decoded: `%5F` is `_`.
            ("https://a.test/p?%5Fbearer_token=t&z", Some("https://a.test/p?z")),
            ("https://a.test/p?access_token", Some("https://a.test/p")),
            ("https://a.test/p?xaccess_token=t&access_tokens=u", None),
            ("https://a.test/p", None),
            ("https://a.test/p?", None),
        ] {
            let uri: Uri = before.parse().unwrap();
            let stripped = without_parameters(&uri, &names);
            assert_eq!(
                stripped.as_ref().map(Uri::to_string).as_deref(),
                after,
                "{before}"
            );
        }
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        for (a, b, same) in [
            ("https://api.test/a", "https://API.test:443/b?c", true),
            ("https://api.test/a", "http://api.test/a", false),
            ("https://api.test/a", "https://api.test:8443/a", false),
            ("https://api.test/a", "https://other.test/a", false),
            ("http://127.0.0.1:1/", "http://127.0.0.1:2/", false),
            ("https://api.test/a", "ftp://api.test/a", false),
        ] {
            assert_eq!(
                same_origin(&a.parse().unwrap(), &b.parse().unwrap()),
                same,
                "{a} {b}"
            );
        }
    }
}
