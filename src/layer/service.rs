use std::{
    fmt, mem,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use arc_swap::{ArcSwapOption, Cache};
use http::{
    header::AUTHORIZATION,
    uri::{self, Authority, PathAndQuery, Scheme},
    Extensions, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri, Version,
};
use tower_service::Service;

use super::{
    future::{ResponseFuture, Watch},
    NoRetry, OAuth2Layer,
};
use crate::credentials::Subject;
use crate::{
    body::ReplayableBody,
    credential::CachedToken,
    error::{BoxError, Error},
    provider::{Provider, TokenPlacement},
};

/// Attaches OAuth 2.0 credentials to requests, refreshing and retrying as needed.
///
/// See the [module docs](crate::layer) for what it does and an example.
///
/// Each clone keeps its own copy of the current token's header value, refreshed only
/// when the token changes, so clones on different threads never write to a shared
/// cache line on the hot path. Keep one clone per task rather than cloning per request.
///
/// Tokens are fetched by a spawned task: the service must be called within a Tokio
/// runtime.
pub struct OAuth2<S> {
    inner: S,
    /// Per clone: its own `Arc`, so that the reference count futures take is not
    /// shared with other clones.
    pub(crate) shared: Arc<Shared<S>>,
    /// Per clone, per credential: the cached token and this clone's copy of its header.
    slots: Vec<Option<LocalSlot>>,
}

pub(crate) struct Shared<S> {
    pub(crate) layer: OAuth2Layer,
    /// A clone of the inner service kept for retries. Retries are rare, so rather than
    /// cloning the inner service on every request (for a hyper client, reference counts
    /// every thread writes), a retry clones this one and polls it ready. Behind a mutex
    /// so that the future stays `Send` for inner services that are not `Sync`.
    spare: Mutex<S>,
}

impl<S: Clone> Shared<S> {
    pub(crate) fn spare_service(&self) -> S {
        self.spare
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl<S> OAuth2<S> {
    /// Wraps `inner`, attaching the credentials of `layer`.
    pub fn new(inner: S, layer: OAuth2Layer) -> Self
    where
        S: Clone,
    {
        let spare = Mutex::new(inner.clone());
        Self {
            inner,
            shared: Arc::new(Shared { layer, spare }),
            slots: Vec::new(),
        }
    }

    /// A layer wrapping services in `OAuth2`.
    pub fn layer(credentials: crate::Credentials) -> OAuth2Layer {
        OAuth2Layer::new(credentials)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The slow side of [`call`](Service::call), for a request routed to credential
    /// `index` that did not find a fresh token with a current copy: the clone's first
    /// request for the credential, a token in its refresh window, a new token (the copy
    /// is rebuilt), or no usable token (the request waits for one in its future).
    #[cold]
    #[inline(never)]
    fn call_slow<ReqBody>(&mut self, index: usize, req: Request<ReqBody>) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>> + Clone,
        ReqBody: ReplayableBody,
    {
        let states = &self.shared.layer.credentials.registry.states;
        if index >= self.slots.len() {
            self.slots.resize_with(states.len().max(index + 1), || None);
        }
        let state = &states[index];
        let slot = self.slots[index].get_or_insert_with(|| LocalSlot {
            cache: Cache::new(Arc::clone(&state.current)),
            copy: None,
            hits: 0,
            state: Arc::clone(state),
        });
        let usable = slot.cache.load().as_ref().filter(|token| token.is_usable());
        let Some(token) = usable else {
            // No usable token: wait for one inside the future. The inner service is ready
            // now, so take it and leave a clone (not yet ready) in its place.
            let retry = self.shared.layer.retry && !has_no_retry(&req);
            let clone = self.inner.clone();
            let ready = mem::replace(&mut self.inner, clone);
            let acquire = state.acquire(None);
            return ResponseFuture::acquiring(
                Arc::clone(&self.shared),
                index,
                None,
                acquire,
                ready,
                req,
                retry,
            );
        };
        if token.wants_early_refresh() {
            state.refresh_early(token);
        }
        if slot.copy.as_ref().map(|c| c.generation) != Some(token.generation) {
            slot.copy = Some(LocalCopy::of(token, &state.config.credential.provider));
        }
        let copy = slot.copy.as_ref().expect("built above");
        send(&mut self.inner, &self.shared, index, copy, req)
    }
}

impl<S: Clone> OAuth2<S> {
    /// A request acting for a user: their credential, created on first use. Users'
    /// requests take the shared token value (no per-clone copy) and, when they must
    /// wait, the boxed slow path: the application's own requests stay on the fast one.
    #[cold]
    #[inline(never)]
    fn call_user<ReqBody>(
        &mut self,
        subject: &Subject,
        mut req: Request<ReqBody>,
    ) -> ResponseFuture<S, ReqBody>
    where
        S: Service<Request<ReqBody>>,
        ReqBody: ReplayableBody,
    {
        let registry = &self.shared.layer.credentials.registry;
        let routed = match registry.route_user(req.uri(), subject) {
            None => return ResponseFuture::passthrough(self.inner.call(req)),
            Some(routed) => routed,
        };
        let retry = self.shared.layer.retry && !has_no_retry(&req);
        let (state, acquire) = match routed {
            Ok(state) => {
                let current = state.current.load_full().filter(|token| token.is_usable());
                if let Some(token) = current {
                    if token.wants_early_refresh() {
                        state.refresh_early(&token);
                    }
                    let replay = if retry {
                        prepare_replay(&mut req, self.shared.layer.replay_limit)
                    } else {
                        None
                    };
                    attach_token(&mut req, &token, &state.config.credential.provider.placement);
                    let watch = Watch {
                        shared: Arc::clone(&self.shared),
                        index: 0,
                        generation: token.generation,
                        user: Some(state),
                        replay,
                    };
                    return ResponseFuture::sent_watched(self.inner.call(req), watch);
                }
                let acquire = state.acquire(None);
                (Some(state), acquire)
            }
            // Not sent: the future answers with the error at once.
            Err(err) => (None, crate::credential::Acquire::failed(err)),
        };
        let clone = self.inner.clone();
        let ready = mem::replace(&mut self.inner, clone);
        match state {
            Some(state) => ResponseFuture::acquiring(
                Arc::clone(&self.shared),
                0,
                Some(state),
                acquire,
                ready,
                req,
                retry,
            ),
            None => ResponseFuture::acquiring(Arc::clone(&self.shared), 0, None, acquire, ready, req, retry),
        }
    }
}

/// This clone's copy of credential `index`'s token, if the token is fresh (not in its
/// refresh window, not expired) and the copy is of it. The whole token lookup of the hot
/// path: no lock, no clock, no write to memory shared with other clones.
#[inline(always)]
fn fresh_copy(slots: &mut [Option<LocalSlot>], index: usize) -> Option<&LocalCopy> {
    let slot = slots.get_mut(index)?.as_mut()?;
    let token = slot.cache.load().as_deref()?;
    let (fresh, generation) = (token.is_fresh(), token.generation);
    if !fresh || slot.copy.as_ref()?.generation != generation {
        return None;
    }
    // Counted in the clone's own memory, published in batches.
    slot.hits += 1;
    if slot.hits == HITS_BATCH {
        slot.publish_hits();
    }
    slot.copy.as_ref()
}

/// How many cache hits a clone counts before adding them to the shared counter.
const HITS_BATCH: u32 = 1024;

/// Whether `req` carries [`NoRetry`]. Most requests carry no extensions at all, which is
/// checked in line first.
#[inline(always)]
fn has_no_retry<B>(req: &Request<B>) -> bool {
    !req.extensions().is_empty() && req.extensions().get::<NoRetry>().is_some()
}

/// Sends `req` with `copy` attached, keeping what is needed to judge the answer and, if
/// the request may be retried, to send it again.
#[inline(always)]
fn send<S, B>(
    inner: &mut S,
    shared: &Arc<Shared<S>>,
    index: usize,
    copy: &LocalCopy,
    mut req: Request<B>,
) -> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
    B: ReplayableBody,
{
    let layer = &shared.layer;
    let replay = if layer.retry && !has_no_retry(&req) {
        prepare_replay(&mut req, layer.replay_limit)
    } else {
        None
    };
    copy.attach(&mut req);
    ResponseFuture::sent(
        inner.call(req),
        Arc::clone(shared),
        index,
        copy.generation,
        replay,
    )
}

impl<S: Clone> Clone for OAuth2<S> {
    fn clone(&self) -> Self {
        // A fresh `Arc` and no token copies: the clone builds its own on first use,
        // rather than sharing reference counts with this one.
        Self::new(self.inner.clone(), self.shared.layer.clone())
    }
}

impl<S: fmt::Debug> fmt::Debug for OAuth2<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2")
            .field("inner", &self.inner)
            .field("credentials", &self.shared.layer.credentials)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for OAuth2<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    ReqBody: ReplayableBody,
{
    type Response = Response<ResBody>;
    type Error = Error;
    type Future = ResponseFuture<S, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::inner)
    }

    #[inline]
    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        if !req.extensions().is_empty() {
            if let Some(subject) = req.extensions().get::<Subject>() {
                let subject = subject.clone();
                return self.call_user(&subject, req);
            }
        }
        let Some(index) = self.shared.layer.credentials.registry.route(req.uri()) else {
            return ResponseFuture::passthrough(self.inner.call(req));
        };
        let Some(copy) = fresh_copy(&mut self.slots, index) else {
            return self.call_slow(index, req);
        };
        send(&mut self.inner, &self.shared, index, copy, req)
    }
}

/// What is needed to send a request again: a copy taken before anything was attached.
///
/// Kept small, because it lives in the response future of every request that may be
/// retried: the URI, the method as a byte and the version inline; the headers, the
/// extensions and a non-standard method boxed together, only when the request had any
/// (a non-empty header map's clone allocates anyway).
pub(crate) struct ReplayCopy<B> {
    /// The URI's parts but its scheme, which is http or https (the request was routed):
    /// cloning and dropping a `Scheme` costs more than a flag.
    authority: Authority,
    path_and_query: PathAndQuery,
    extras: Option<Box<Extras>>,
    https: bool,
    method: MethodCode,
    version: Version,
    pub(crate) body: B,
}

struct Extras {
    method: Method,
    headers: HeaderMap,
    extensions: Extensions,
}

/// A standard method, or `Extras` (the method is in the boxed extras).
#[derive(Clone, Copy, PartialEq, Eq)]
enum MethodCode {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Connect,
    Trace,
    Extras,
}

impl MethodCode {
    #[inline]
    fn of(method: &Method) -> Self {
        match *method {
            Method::GET => MethodCode::Get,
            Method::HEAD => MethodCode::Head,
            Method::POST => MethodCode::Post,
            Method::PUT => MethodCode::Put,
            Method::DELETE => MethodCode::Delete,
            Method::OPTIONS => MethodCode::Options,
            Method::PATCH => MethodCode::Patch,
            Method::CONNECT => MethodCode::Connect,
            Method::TRACE => MethodCode::Trace,
            _ => MethodCode::Extras,
        }
    }

    fn method(self) -> Option<Method> {
        Some(match self {
            MethodCode::Get => Method::GET,
            MethodCode::Head => Method::HEAD,
            MethodCode::Post => Method::POST,
            MethodCode::Put => Method::PUT,
            MethodCode::Delete => Method::DELETE,
            MethodCode::Options => Method::OPTIONS,
            MethodCode::Patch => Method::PATCH,
            MethodCode::Connect => Method::CONNECT,
            MethodCode::Trace => Method::TRACE,
            MethodCode::Extras => return None,
        })
    }
}

impl<B> ReplayCopy<B> {
    /// The request to send again, or `None` if its URI cannot be put back together
    /// (never: only absolute http(s) URIs are copied).
    pub(crate) fn into_request(self) -> Option<Request<B>> {
        let mut uri = uri::Parts::default();
        uri.scheme = Some(if self.https { Scheme::HTTPS } else { Scheme::HTTP });
        uri.authority = Some(self.authority);
        uri.path_and_query = Some(self.path_and_query);
        let mut req = Request::new(self.body);
        *req.uri_mut() = Uri::from_parts(uri).ok()?;
        *req.version_mut() = self.version;
        if let Some(method) = self.method.method() {
            *req.method_mut() = method;
        }
        if let Some(extras) = self.extras {
            let Extras {
                method,
                headers,
                extensions,
            } = *extras;
            *req.method_mut() = method;
            *req.headers_mut() = headers;
            *req.extensions_mut() = extensions;
        }
        Some(req)
    }
}

/// Copies what is needed to send `req` again, before anything is attached to it, or
/// `None` if its body cannot be replayed.
#[inline]
pub(crate) fn prepare_replay<B: ReplayableBody>(req: &mut Request<B>, limit: usize) -> Option<ReplayCopy<B>> {
    let body = req.body_mut().try_clone_for_replay(limit)?;
    let uri = req.uri();
    let (authority, path_and_query) = (uri.authority()?.clone(), uri.path_and_query()?.clone());
    // Routed, so `http` or `https`: the length tells which, without comparing bytes.
    let https = uri.scheme_str().map(str::len) == Some("https".len());
    let method = MethodCode::of(req.method());
    let extras = (method == MethodCode::Extras || !req.headers().is_empty() || !req.extensions().is_empty())
        .then(|| {
            Box::new(Extras {
                method: req.method().clone(),
                headers: req.headers().clone(),
                extensions: req.extensions().clone(),
            })
        });
    Some(ReplayCopy {
        authority,
        path_and_query,
        extras,
        https,
        method,
        version: req.version(),
        body,
    })
}

/// One clone's view of one credential's token.
struct LocalSlot {
    cache: Cache<Arc<ArcSwapOption<CachedToken>>, Option<Arc<CachedToken>>>,
    copy: Option<LocalCopy>,
    /// Cache hits not yet added to the credential's counter.
    hits: u32,
    state: Arc<crate::credential::CredentialState>,
}

impl LocalSlot {
    #[cold]
    fn publish_hits(&mut self) {
        let hits = mem::take(&mut self.hits);
        self.state
            .stats
            .cache_hits
            .fetch_add(u64::from(hits), std::sync::atomic::Ordering::Relaxed);
    }
}

impl Drop for LocalSlot {
    fn drop(&mut self) {
        if self.hits > 0 {
            self.publish_hits();
        }
    }
}

/// This clone's own copy of what a token puts on a request.
pub(crate) struct LocalCopy {
    generation: u64,
    value: HeaderValue,
    placement: LocalPlacement,
}

enum LocalPlacement {
    Authorization,
    Header(HeaderName),
    Query,
}

impl LocalCopy {
    fn of(token: &CachedToken, provider: &Provider) -> Self {
        // Built from bytes rather than cloned: a clone would share the reference count
        // of the one value every clone on every thread uses.
        let mut value =
            HeaderValue::from_bytes(token.value.as_bytes()).unwrap_or_else(|_| token.value.clone());
        value.set_sensitive(true);
        // Kept as a clone of the value built: a fresh value's first clone converts its
        // bytes to shared ones, and every later clone of it checks whether that happened;
        // clones of a clone skip the check.
        let value = value.clone();
        let placement = match &provider.placement {
            TokenPlacement::AuthorizationBearer => LocalPlacement::Authorization,
            TokenPlacement::Header(name) => LocalPlacement::Header(
                HeaderName::from_bytes(name.as_str().as_bytes()).unwrap_or_else(|_| name.clone()),
            ),
            TokenPlacement::Query(_) => LocalPlacement::Query,
        };
        Self {
            generation: token.generation,
            value,
            placement,
        }
    }

    #[inline]
    fn attach<B>(&self, req: &mut Request<B>) {
        match &self.placement {
            LocalPlacement::Authorization => {
                req.headers_mut().insert(AUTHORIZATION, self.value.clone());
            }
            LocalPlacement::Header(name) => {
                req.headers_mut().insert(name.clone(), self.value.clone());
            }
            LocalPlacement::Query => append_query(req, self.value.as_bytes()),
        }
    }
}

/// Attaches a freshly fetched token (cold path: after waiting, or for a retry).
pub(crate) fn attach_token<B>(req: &mut Request<B>, token: &CachedToken, placement: &TokenPlacement) {
    match placement {
        TokenPlacement::AuthorizationBearer => {
            req.headers_mut().insert(AUTHORIZATION, token.value.clone());
        }
        TokenPlacement::Header(name) => {
            req.headers_mut().insert(name.clone(), token.value.clone());
        }
        TokenPlacement::Query(_) => append_query(req, token.value.as_bytes()),
    }
}

fn append_query<B>(req: &mut Request<B>, pair: &[u8]) {
    let pair = String::from_utf8_lossy(pair);
    let uri = req.uri();
    let path = uri.path();
    let path_and_query = match uri.query() {
        Some(query) if !query.is_empty() => format!("{path}?{query}&{pair}"),
        _ => format!("{path}?{pair}"),
    };
    let mut parts = uri.clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Tag(u32);

    fn round_trip(mut req: Request<String>) -> (Request<String>, Request<String>) {
        let copy = prepare_replay(&mut req, 1024).expect("a replayable request");
        (req, copy.into_request().expect("the URI is put back together"))
    }

    #[test]
    fn the_replay_copy_reproduces_the_request() {
        let custom = Method::from_bytes(b"PROPFIND").unwrap();
        let methods = [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
            Method::PATCH,
            Method::CONNECT,
            Method::TRACE,
            custom,
        ];
        let uris = [
            "https://api.example.com/v1/items?page=2&q=a%20b",
            "https://api.example.com",
            "http://127.0.0.1:8080/x",
            "https://API.example.com:443/",
        ];
        for method in methods {
            for uri in uris {
                for version in [Version::HTTP_11, Version::HTTP_2] {
                    let req = Request::builder()
                        .method(method.clone())
                        .uri(uri)
                        .version(version)
                        .body(String::from("payload"))
                        .unwrap();
                    let (original, replayed) = round_trip(req);
                    assert_eq!(replayed.method(), original.method());
                    assert_eq!(replayed.uri(), original.uri());
                    assert_eq!(replayed.uri().to_string(), original.uri().to_string());
                    assert_eq!(replayed.version(), original.version());
                    assert!(replayed.headers().is_empty());
                    assert!(replayed.extensions().is_empty());
                    assert_eq!(replayed.body(), "payload");
                }
            }
        }
    }

    #[test]
    fn the_replay_copy_keeps_headers_and_extensions() {
        let mut req = Request::put("https://api.example.com/v1/items/7")
            .header("content-type", "application/json")
            .header("x-trace", "a")
            .header("x-trace", "b")
            .body(String::from("{}"))
            .unwrap();
        req.extensions_mut().insert(Tag(7));
        let (original, replayed) = round_trip(req);
        assert_eq!(replayed.headers(), original.headers());
        assert_eq!(replayed.headers().get_all("x-trace").iter().count(), 2);
        assert_eq!(replayed.extensions().get::<Tag>(), Some(&Tag(7)));
        assert_eq!(replayed.method(), Method::PUT);
    }

    #[test]
    fn a_body_over_the_limit_gives_no_replay_copy() {
        let mut req = Request::post("https://api.example.com/")
            .body("x".repeat(2048))
            .unwrap();
        assert!(prepare_replay(&mut req, 1024).is_none());
    }
}
