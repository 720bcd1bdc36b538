//! The one protocol between an adapter and the token core.
//!
//! Every request through the tower layer or the reqwest middleware takes the same steps,
//! and each step is one function here, so that the two adapters differ only in how they
//! hold a request and send it:
//!
//! 1. [`route`]: which credential, if any, the request's origin (and `Subject`) calls
//!    for; a request for no credential's origin passes through untouched;
//! 2. [`with_token`]: the cached token if it may be attached (starting the background
//!    refresh of a token in its refresh window), or the wait for the one token request;
//! 3. [`attach`]: the token where the provider wants it, the only place a
//!    [`AttachPoint`] is matched;
//! 4. [`Plan::verdict`]: whether the answer declares the token dead, or whether only
//!    the start of its body can tell (the adapter then reads it, and asks the
//!    provider's body test);
//! 5. [`after_dead`]: invalidate that token (only if it is still the current one, so any
//!    number of such answers cause one refresh) and join the refresh, or give the answer
//!    back when the refusal is not about the token;
//! 6. [`after_retry`]: the one retry's answer, counted, and remembered when even the
//!    fresh token was refused.
//!
//! The adapters own what differs: the reqwest middleware's `async` function; the tower
//! layer's response future, and its faster ways of taking step 2 on the cached path
//! (a long-lived clone's own copy of the header, a fresh clone's per-thread view of the
//! token), each falling back to [`with_token`] when the token is not fresh.

use std::sync::{atomic::Ordering, Arc};

use http::{header::AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};

use crate::{
    credential::{Acquire, CachedToken, CredentialState},
    dead_token::Verdict,
    error::Error,
    provider::{Provider, TokenPlacement},
    registry::{RouteRef, RoutingTable, Subject},
};

// ===== route =====

/// Where a request goes, as far as tokens are concerned.
pub(crate) enum Route {
    /// No credential serves the request's origin: it is sent as it is.
    Pass,
    /// The application's credential `index` of the registry, through the configured
    /// origin `RouteRef` names.
    App(usize, RouteRef),
    /// A user's credential (the request named a [`Subject`]), through the users' origin
    /// `RouteRef` names.
    User(Arc<CredentialState>, RouteRef),
    /// The request must not be sent: it is answered with this error (a user who never
    /// logged in, a provider that serves no users).
    Refuse(Error),
}

/// The credential `uri` calls for, acting for `subject` when there is one. The
/// application's credentials are routed in line (the hot path); users' out of line.
#[inline(always)]
pub(crate) fn route(registry: &RoutingTable, uri: &Uri, subject: Option<&Subject>) -> Route {
    match subject {
        None => match registry.route_ref(uri) {
            Some((index, route)) => Route::App(index, route),
            None => Route::Pass,
        },
        Some(subject) => route_user(registry, uri, subject),
    }
}

#[inline(never)]
fn route_user(registry: &RoutingTable, uri: &Uri, subject: &Subject) -> Route {
    match registry.route_user(uri, subject) {
        None => Route::Pass,
        Some((Ok(state), Some(route))) => Route::User(state, route),
        Some((Ok(_), None)) => Route::Pass,
        Some((Err(err), _)) => Route::Refuse(err),
    }
}

// ===== the token =====

/// Lends the credential's token to `use_token` if it may be attached now, or gives the
/// wait for one (the one token request in flight, or a new one). A token in its refresh
/// window is still lent, and its background refresh is started (once). The token is
/// read through an `arc_swap` guard: no reference count is written, so a token used
/// from every thread does not move between the cores on each request.
#[inline]
pub(crate) fn with_token<R>(
    state: &Arc<CredentialState>,
    use_token: impl FnOnce(&CachedToken) -> R,
) -> Result<R, Acquire> {
    let current = state.current.load();
    match current.as_ref().filter(|token| token.is_usable()) {
        Some(token) => {
            if token.wants_early_refresh() {
                state.refresh_early(token);
            }
            Ok(use_token(token))
        }
        None => {
            drop(current);
            Err(state.acquire(None))
        }
    }
}

/// [`with_token`] for a request that attaches the shared value: the token's generation
/// and its header value.
#[inline]
pub(crate) fn token_value(state: &Arc<CredentialState>) -> Result<(u64, HeaderValue), Acquire> {
    with_token(state, |token| (token.generation, token.value.clone()))
}

// ===== placement =====

/// Where a credential's token goes on a request: its provider's [`TokenPlacement`], in
/// the shape attaching needs. The value attached is the token's pre-built, sensitive
/// `HeaderValue`: `Bearer …`, the bare token, or the encoded `name=value` query pair.
#[derive(Debug, Clone)]
pub(crate) enum AttachPoint {
    /// `Authorization: Bearer …`.
    Authorization,
    /// A header of the provider's own, carrying the bare token.
    Header(HeaderName),
    /// A query parameter: the value is the encoded pair.
    Query,
    /// `Authorization: DPoP …` and a `DPoP` proof made for the request.
    #[cfg(feature = "jose")]
    Dpop(Arc<crate::dpop::DpopBinding>),
}

impl AttachPoint {
    pub(crate) fn of(placement: &TokenPlacement) -> Self {
        match placement {
            TokenPlacement::AuthorizationBearer => AttachPoint::Authorization,
            TokenPlacement::Header(name) => AttachPoint::Header(name.clone()),
            TokenPlacement::Query(_) => AttachPoint::Query,
        }
    }

    /// Where `config`'s tokens go: its provider's placement, or DPoP for a DPoP-bound
    /// credential.
    pub(crate) fn for_credential(config: &crate::token_endpoint::CheckedCredential) -> Self {
        #[cfg(feature = "jose")]
        if let Some(key) = &config.credential.client.dpop {
            return AttachPoint::Dpop(Arc::clone(key.binding()));
        }
        Self::of(&config.credential.client.provider.placement)
    }

    /// Whether requests get a DPoP proof each.
    #[cfg(feature = "jose")]
    #[inline(always)]
    pub(crate) fn is_dpop(&self) -> bool {
        matches!(self, AttachPoint::Dpop(_))
    }

    /// A copy that shares no reference count with this one (a custom header name is
    /// reference-counted bytes): what a service clone keeps, so that clones on
    /// different threads never write the same count.
    pub(crate) fn own_copy(&self) -> Self {
        match self {
            AttachPoint::Header(name) => AttachPoint::Header(
                HeaderName::from_bytes(name.as_str().as_bytes()).unwrap_or_else(|_| name.clone()),
            ),
            other => other.clone(),
        }
    }
}

/// A request a token can be attached to: `http::Request` for the tower layer,
/// `reqwest::Request` for the middleware.
pub(crate) trait Target {
    fn headers_mut(&mut self) -> &mut HeaderMap;
    /// The method, as a DPoP proof's `htm` names it.
    #[cfg(feature = "jose")]
    fn method_str(&self) -> &str;
    /// The URL a DPoP proof's `htu` names.
    #[cfg(feature = "jose")]
    fn proof_target(&self) -> Option<crate::dpop::ProofTarget>;
    /// Appends `pair` (`name=value`, form-encoded, so ASCII) to the URL's query.
    fn append_query(&mut self, pair: &str);
}

/// Puts `value` on `target` where `placement` says.
#[inline(always)]
pub(crate) fn attach<T: Target>(target: &mut T, placement: &AttachPoint, value: HeaderValue) {
    match placement {
        AttachPoint::Authorization => {
            target.headers_mut().insert(AUTHORIZATION, value);
        }
        AttachPoint::Header(name) => {
            target.headers_mut().insert(name.clone(), value);
        }
        AttachPoint::Query => {
            // Encoded by `attachment`, so always ASCII.
            if let Ok(pair) = value.to_str() {
                target.append_query(pair);
            }
        }
        #[cfg(feature = "jose")]
        AttachPoint::Dpop(binding) => attach_dpop(target, binding, value),
    }
}

/// `Authorization: DPoP …` and a proof made for this request alone (a retry's copy
/// replaces the first proof with its own).
#[cfg(feature = "jose")]
#[cold]
#[inline(never)]
fn attach_dpop<T: Target>(target: &mut T, binding: &crate::dpop::DpopBinding, value: HeaderValue) {
    // `attachment` built `DPoP <token>`: the proof's `ath` is the token's hash.
    let token = value.as_bytes().get("DPoP ".len()..);
    let proof = target
        .proof_target()
        .and_then(|at| binding.proof(target.method_str(), &at, token));
    let headers = target.headers_mut();
    headers.insert(AUTHORIZATION, value);
    match proof {
        Some(proof) => headers.insert(crate::dpop::DPOP, proof),
        None => headers.remove(crate::dpop::DPOP),
    };
}

impl<B> Target for http::Request<B> {
    #[inline]
    fn headers_mut(&mut self) -> &mut HeaderMap {
        self.headers_mut()
    }

    #[cfg(feature = "jose")]
    fn method_str(&self) -> &str {
        self.method().as_str()
    }

    #[cfg(feature = "jose")]
    fn proof_target(&self) -> Option<crate::dpop::ProofTarget> {
        crate::dpop::ProofTarget::of_uri(self.uri())
    }

    fn append_query(&mut self, pair: &str) {
        let uri = self.uri();
        let path = uri.path();
        let path_and_query = match uri.query() {
            Some(query) if !query.is_empty() => format!("{path}?{query}&{pair}"),
            _ => format!("{path}?{pair}"),
        };
        let mut parts = uri.clone().into_parts();
        if let Ok(pq) = path_and_query.parse() {
            parts.path_and_query = Some(pq);
            if let Ok(uri) = Uri::from_parts(parts) {
                *self.uri_mut() = uri;
            }
        }
    }
}

// ===== judging the answer =====

/// What an adapter needs to know of one of the application's credentials on every
/// request, computed once from its provider.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) placement: AttachPoint,
    dead: DeadCheck,
}

/// How to tell a dead-token answer.
#[derive(Debug, Clone, Copy)]
enum DeadCheck {
    /// The provider declares no answer a dead token.
    Never,
    /// Exactly one status, and no predicate (the default: 401).
    Only(StatusCode),
    /// Ask the provider (several statuses, a predicate on the answer, or a body test).
    Provider,
}

impl Plan {
    /// The plan of `config`'s credential: its provider's, with DPoP for a DPoP-bound one.
    pub(crate) fn for_credential(config: &crate::token_endpoint::CheckedCredential) -> Self {
        Self {
            placement: AttachPoint::for_credential(config),
            ..Self::of(&config.credential.client.provider)
        }
    }

    pub(crate) fn of(provider: &Provider) -> Self {
        let simple =
            provider.dead_token_when.is_none() && provider.dead_token_body.is_none() && !provider.grpc;
        let dead = match (&provider.dead_token_statuses[..], simple) {
            ([], true) => DeadCheck::Never,
            ([status], true) => DeadCheck::Only(*status),
            _ => DeadCheck::Provider,
        };
        Self {
            placement: AttachPoint::of(&provider.placement),
            dead,
        }
    }

    /// One plan per application credential of `registry`, in its order.
    pub(crate) fn all(registry: &RoutingTable) -> Arc<[Plan]> {
        registry
            .states
            .iter()
            .map(|state| Plan::for_credential(&state.config))
            .collect()
    }

    /// What an answer of `status` and `headers`, to a request that carried a token of
    /// the provider `provider` gives, says about the token. The provider is looked up
    /// only when the status alone does not tell (usually it does: "is it 401").
    #[inline(always)]
    pub(crate) fn verdict<'p>(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        provider: impl FnOnce() -> &'p Provider,
    ) -> Verdict {
        match self.dead {
            DeadCheck::Never => Verdict::Answer,
            DeadCheck::Only(dead) if status == dead => Verdict::Dead,
            DeadCheck::Only(_) => Verdict::Answer,
            DeadCheck::Provider => provider().verdict(status, headers),
        }
    }
}

/// What an answer of `status` and `headers` says about a token of `state`, for a
/// credential without a precomputed [`Plan`] (a user's) or a retry's answer.
pub(crate) fn verdict_of(state: &CredentialState, status: StatusCode, headers: &HeaderMap) -> Verdict {
    state.config.credential.client.provider.verdict(status, headers)
}

// ===== DPoP answers =====

/// What the answer to a DPoP-bound request says before any dead-token judgement.
#[cfg(feature = "jose")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DpopVerdict {
    /// Nothing about the proof: judge the answer as any other.
    Judge,
    /// The server wants a nonce and sent one: send the request once more, with the same
    /// token and a new proof (this is the request's one retry).
    Nonce,
    /// The server wants a nonce but sent none usable: give the answer back.
    Answer,
}

#[cfg(feature = "jose")]
impl DpopVerdict {
    /// Whether the answer asks for a nonce. Such an answer is about the proof, not the
    /// token: it is never judged a dead-token answer, so it neither refreshes a token
    /// nor counts against a fresh one.
    pub(crate) fn wants_nonce(self) -> bool {
        self != DpopVerdict::Judge
    }
}

/// Remembers the nonce an answer from `origin` carries (any answer, successes too), and
/// tells whether it asks for one. Requests that carry no proof are judged as usual.
#[cfg(feature = "jose")]
pub(crate) fn dpop_verdict(
    placement: &AttachPoint,
    origin: Option<&str>,
    status: StatusCode,
    headers: &HeaderMap,
) -> DpopVerdict {
    let AttachPoint::Dpop(binding) = placement else {
        return DpopVerdict::Judge;
    };
    let has_nonce = origin.is_some_and(|origin| binding.observe(origin, headers));
    match (crate::dpop::is_nonce_challenge(status, headers), has_nonce) {
        (false, _) => DpopVerdict::Judge,
        (true, true) => DpopVerdict::Nonce,
        (true, false) => DpopVerdict::Answer,
    }
}

// ===== after a dead answer =====

/// What to do with a dead-token answer.
pub(crate) enum AfterDead {
    /// Give the answer back: the request may not be retried, or the token was refused
    /// right after it was fetched (the refusal is not about the token).
    Return,
    /// Send the request again with the token this wait brings.
    Retry(Acquire),
}

/// A dead-token answer to a request that carried token `generation`: invalidates that
/// token if it is still the current one and starts or joins the one refresh, whether or
/// not the request is sent again (`retry`).
pub(crate) fn after_dead(
    state: &Arc<CredentialState>,
    generation: u64,
    retry: bool,
    status: StatusCode,
) -> AfterDead {
    let acquire = state.acquire(Some(generation));
    if !retry || acquire.is_ready_with(generation) {
        return AfterDead::Return;
    }
    tracing::debug!(
        provider = %state.config.provider_name(),
        status = status.as_u16(),
        "dead-token answer; retrying once with a fresh token"
    );
    AfterDead::Retry(acquire)
}

/// Counts the retry about to be sent.
pub(crate) fn retrying(state: &CredentialState) {
    state.stats.retries.fetch_add(1, Ordering::Relaxed);
}

/// The retry's answer: if it declares even the fresh token dead, the refusal is not
/// about the token, and dead-token answers for it stop causing refreshes for a while.
pub(crate) fn after_retry(state: &CredentialState, generation: u64, dead: bool) {
    if dead {
        state.refused_when_fresh(generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_checks_follow_the_provider() {
        let standard = Provider::standard("https://auth.example/token");
        let plan = Plan::of(&standard);
        let none = HeaderMap::new();
        let status = |code: u16| StatusCode::from_u16(code).unwrap();
        let dead = |plan: &Plan, code, headers: &HeaderMap, provider: &Provider| {
            plan.verdict(status(code), headers, || provider)
        };
        assert_eq!(dead(&plan, 401, &none, &standard), Verdict::Dead);
        assert_eq!(dead(&plan, 403, &none, &standard), Verdict::Answer);

        let never = standard.clone().dead_token_statuses([]);
        assert_eq!(dead(&Plan::of(&never), 401, &none, &never), Verdict::Answer);

        let predicate = standard
            .clone()
            .dead_token_when(|status, headers| status == 403 && headers.contains_key("www-authenticate"));
        let plan = Plan::of(&predicate);
        assert_eq!(dead(&plan, 401, &none, &predicate), Verdict::Dead);
        assert_eq!(dead(&plan, 403, &none, &predicate), Verdict::Answer);
        let mut challenged = HeaderMap::new();
        challenged.insert(
            "www-authenticate",
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        assert_eq!(dead(&plan, 403, &challenged, &predicate), Verdict::Dead);

        // A body test: its statuses ask for the body, others do not; statuses and
        // predicates still decide without it.
        let body = predicate.dead_token_in_body([StatusCode::BAD_REQUEST], |answer| answer.body() == b"dead");
        let plan = Plan::of(&body);
        assert_eq!(dead(&plan, 400, &none, &body), Verdict::ReadBody);
        assert_eq!(dead(&plan, 401, &none, &body), Verdict::Dead);
        assert_eq!(dead(&plan, 403, &challenged, &body), Verdict::Dead);
        assert_eq!(dead(&plan, 200, &none, &body), Verdict::Answer);
        assert_eq!(dead(&plan, 500, &none, &body), Verdict::Answer);
        let answer =
            |bytes: &'static [u8]| body.is_dead_body(&crate::ApiAnswer::new(status(400), &none, bytes, true));
        assert!(answer(b"dead"));
        assert!(!answer(b"alive"));
    }

    #[test]
    fn attaching_puts_the_value_where_the_placement_says() {
        let value = HeaderValue::from_static("Bearer abc");
        let mut req = http::Request::get("https://api.example/x?a=1").body(()).unwrap();
        attach(&mut req, &AttachPoint::Authorization, value.clone());
        assert_eq!(req.headers()["authorization"], "Bearer abc");

        let name = HeaderName::from_static("x-access-token");
        let mut req = http::Request::get("https://api.example/x").body(()).unwrap();
        attach(
            &mut req,
            &AttachPoint::Header(name).own_copy(),
            HeaderValue::from_static("abc"),
        );
        assert_eq!(req.headers()["x-access-token"], "abc");

        for (uri, expected) in [
            (
                "https://api.example/x?a=1",
                "https://api.example/x?a=1&access_token=abc",
            ),
            ("https://api.example/x", "https://api.example/x?access_token=abc"),
            ("https://api.example/x?", "https://api.example/x?access_token=abc"),
        ] {
            let mut req = http::Request::get(uri).body(()).unwrap();
            attach(
                &mut req,
                &AttachPoint::Query,
                HeaderValue::from_static("access_token=abc"),
            );
            assert_eq!(req.uri(), expected);
            assert!(req.headers().is_empty());
        }
    }
}
