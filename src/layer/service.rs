use std::{
    fmt, mem,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use arc_swap::{ArcSwapOption, Cache};
use http::{
    header::AUTHORIZATION, Extensions, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri,
    Version,
};
use tower_service::Service;

use super::{future::ResponseFuture, NoRetry, OAuth2Layer};
use crate::{
    body::ReplayableBody,
    cache::CachedToken,
    error::{BoxError, Error},
    provider::TokenPlacement,
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

    /// The current token for credential `index`, as this clone's own copy of its
    /// attachment. `None` when there is no usable token: the caller must wait.
    #[inline]
    fn cached(&mut self, index: usize) -> Option<(u64, &LocalCopy)> {
        // The credential states are only looked at off the hot path: to size the slots,
        // to start a slot, to refresh early and to rebuild the copy.
        let states = &self.shared.layer.credentials.registry.states;
        if index >= self.slots.len() {
            self.slots.resize_with(states.len().max(index + 1), || None);
        }
        let slot = self.slots[index].get_or_insert_with(|| LocalSlot {
            cache: Cache::new(Arc::clone(&states[index].current)),
            copy: None,
        });
        let token = slot.cache.load().as_ref()?;
        if !token.is_usable() {
            return None;
        }
        if token.wants_early_refresh() {
            states[index].refresh_early(token);
        }
        let generation = token.generation;
        if slot.copy.as_ref().map(|c| c.generation) != Some(generation) {
            slot.copy = Some(LocalCopy::of(
                token,
                &states[index].config.credential.provider.placement,
            ));
        }
        slot.copy.as_ref().map(|copy| (generation, copy))
    }
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

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let Some(index) = self.shared.layer.credentials.registry.route(req.uri()) else {
            return ResponseFuture::passthrough(self.inner.call(req));
        };
        let retry = self.shared.layer.retry && req.extensions().get::<NoRetry>().is_none();
        let replay_limit = self.shared.layer.replay_limit;
        let shared = Arc::clone(&self.shared);

        let Some((generation, copy)) = self.cached(index) else {
            // No usable token: wait for one inside the future. The inner service is ready
            // now, so take it and leave a clone (not yet ready) in its place.
            let clone = self.inner.clone();
            let ready = mem::replace(&mut self.inner, clone);
            let acquire = shared.layer.credentials.registry.states[index].acquire(None);
            return ResponseFuture::acquiring(shared, index, acquire, ready, req, retry);
        };

        let replay = if retry {
            prepare_replay(&mut req, replay_limit)
        } else {
            None
        };
        copy.attach(&mut req);
        ResponseFuture::sent(self.inner.call(req), shared, index, generation, replay)
    }
}

/// What is needed to send a request again: a copy taken before anything was attached.
pub(crate) struct ReplayCopy<B> {
    method: Method,
    uri: Uri,
    version: Version,
    /// `None` when the request had none: nothing to build now or drop later.
    headers: Option<Box<HeaderMap>>,
    /// Empty (nothing to build now or drop later) when the request had none.
    extensions: Extensions,
    pub(crate) body: B,
}

impl<B> ReplayCopy<B> {
    pub(crate) fn into_request(self) -> Request<B> {
        let mut req = Request::new(self.body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        if let Some(headers) = self.headers {
            *req.headers_mut() = *headers;
        }
        *req.extensions_mut() = self.extensions;
        req
    }
}

/// Copies what is needed to send `req` again, before anything is attached to it, or
/// `None` if its body cannot be replayed.
#[inline]
pub(crate) fn prepare_replay<B: ReplayableBody>(req: &mut Request<B>, limit: usize) -> Option<ReplayCopy<B>> {
    let body = req.body_mut().try_clone_for_replay(limit)?;
    Some(ReplayCopy {
        method: req.method().clone(),
        uri: req.uri().clone(),
        version: req.version(),
        // Boxed, to keep the response future small; a non-empty map's clone allocates
        // anyway.
        headers: (!req.headers().is_empty()).then(|| Box::new(req.headers().clone())),
        extensions: if req.extensions().is_empty() {
            Extensions::new()
        } else {
            req.extensions().clone()
        },
        body,
    })
}

/// One clone's view of one credential's token.
struct LocalSlot {
    cache: Cache<Arc<ArcSwapOption<CachedToken>>, Option<Arc<CachedToken>>>,
    copy: Option<LocalCopy>,
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
    fn of(token: &CachedToken, placement: &TokenPlacement) -> Self {
        // Built from bytes rather than cloned: a clone would share the reference count
        // of the one value every clone on every thread uses.
        let mut value =
            HeaderValue::from_bytes(token.value.as_bytes()).unwrap_or_else(|_| token.value.clone());
        value.set_sensitive(true);
        let placement = match placement {
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
