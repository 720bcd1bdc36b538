use std::{
    cell::RefCell,
    fmt, mem,
    sync::Arc,
    task::{Context, Poll},
};

use arc_swap::{ArcSwapOption, Cache};
use http::{HeaderValue, Request, Response};
use http_body::Body;
use tower_service::Service;

use super::{
    family::CloneFamily,
    future::{ResponseFuture, Watch},
    replay::prepare_replay,
    NoRetry, OAuth2Layer,
};
use crate::{
    body::ReplayableBody,
    credential::{CachedToken, CredentialState},
    dead_token::ResponseBody,
    error::{BoxError, Error},
    protocol::{self, AttachPoint, Route},
    registry::RouteRef,
    registry::Subject,
};

/// Attaches OAuth 2.0 credentials to requests, refreshing and retrying as needed.
///
/// See the [module docs](crate::layer) for what it does and an example.
///
/// # Clones
///
/// Cloning is cheap, and every way of using clones is fast. Cloning clones the inner
/// service and one reference count, and allocates nothing. A fresh clone reads the
/// token through its thread's view of it (an `arc_swap` cache: a pointer compared, no
/// lock, no atomic write) and attaches the thread's copy of its header, so a clone per
/// request (`svc.clone().oneshot(req)`, a client kept in axum state) never takes a slow
/// path and never writes a reference count another thread writes, but the one it was
/// cloned with. A clone that serves more than a few requests then keeps copies of its
/// own (its own reference count, its own copy of the header, refreshed when the token
/// changes), so that long-lived clones on different threads never write to memory
/// another thread writes.
///
/// Tokens are fetched by a spawned task: the service must be called within a Tokio
/// runtime.
pub struct OAuth2<S> {
    inner: S,
    /// The clone's parent's until the clone has served [`WARM_AFTER`] requests, then
    /// its own.
    pub(crate) family: Arc<CloneFamily<S>>,
    local: Local,
}

/// Requests a clone serves from the shared token before it builds copies of its own.
/// A copy costs a few allocations (its own `CloneFamily`, a header value, an `arc_swap`
/// cache per credential) and a clone of the inner service; past this many requests a
/// clone is long-lived, and the copies pay for themselves under contention.
const WARM_AFTER: u32 = 16;

/// What one clone keeps of its own.
struct Local {
    /// Requests served from the shared token, until [`WARM_AFTER`].
    served: u32,
    /// Per credential: the cached token and this clone's copy of its header. Empty (no
    /// allocation) until the clone is warm.
    slots: Vec<Option<LocalSlot>>,
}

impl Local {
    const fn cold() -> Self {
        Self {
            served: 0,
            slots: Vec::new(),
        }
    }

    #[inline]
    fn is_warm(&self) -> bool {
        !self.slots.is_empty()
    }
}

impl<S> OAuth2<S> {
    /// Wraps `inner`, attaching the credentials of `layer`.
    pub fn new(inner: S, layer: OAuth2Layer) -> Self
    where
        S: Clone,
    {
        let spare = inner.clone();
        Self {
            inner,
            family: Arc::new(CloneFamily::new(layer, spare)),
            local: Local::cold(),
        }
    }

    /// A layer wrapping services in `OAuth2`.
    pub fn layer(credentials: crate::CredentialRegistry) -> OAuth2Layer {
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
}

impl<S: Clone> OAuth2<S> {
    /// A request for credential `index` from a clone without copies of its own: the
    /// thread's copy of the token's header. Inlined into `call`: for a clone per
    /// request, this is the hot path.
    #[inline(always)]
    fn call_shared<B, T: Body>(
        &mut self,
        index: usize,
        route: RouteRef,
        mut req: Request<B>,
    ) -> ResponseFuture<S, B, T>
    where
        S: Service<Request<B>>,
        B: ReplayableBody,
    {
        let state = &self.family.layer.credentials.routing.states[index];
        let Some((generation, value)) = thread_copy(state) else {
            return self.call_slow(index, route, req);
        };
        let layer = &self.family.layer;
        let replay = if layer.retry && !has_no_retry(&req) {
            prepare_replay(&mut req, route, layer.replay_limit)
        } else {
            None
        };
        protocol::attach(&mut req, &layer.plans[index].placement, value);
        let fut = self.inner.call(req);
        self.local.served += 1;
        if self.local.served == WARM_AFTER {
            self.warm_up();
        }
        ResponseFuture::sent(fut, Arc::clone(&self.family), index, generation, replay)
    }

    /// Builds this clone's own copies: its own `CloneFamily` (a reference count nobody else
    /// writes on every request) and an empty slot per credential, filled on its next
    /// request for each.
    #[cold]
    #[inline(never)]
    fn warm_up(&mut self) {
        let credentials = self.family.layer.credentials.routing.states.len();
        self.family = Arc::new(self.family.sibling());
        self.local.slots = (0..credentials).map(|_| None).collect();
    }

    /// The slow side of [`call`](Service::call), for a request routed to credential
    /// `index` that did not find a fresh token with a current copy: a warm clone's first
    /// request for the credential or a new token (the copy is rebuilt), a token in its
    /// refresh window, or no usable token (the request waits for one in its future).
    #[cold]
    #[inline(never)]
    fn call_slow<B, T: Body>(
        &mut self,
        index: usize,
        route: RouteRef,
        mut req: Request<B>,
    ) -> ResponseFuture<S, B, T>
    where
        S: Service<Request<B>>,
        B: ReplayableBody,
    {
        let state = Arc::clone(&self.family.layer.credentials.routing.states[index]);
        let layer = &self.family.layer;
        let local = &mut self.local;
        let attached = protocol::with_token(&state, |token| {
            let value = if local.is_warm() {
                let placement = &layer.plans[index].placement;
                let slot = local.slots[index].get_or_insert_with(|| LocalSlot::new(&state, placement));
                if slot.copy.as_ref().map(|c| c.generation) != Some(token.generation) {
                    slot.copy = Some(LocalCopy::of(token));
                }
                let copy = slot.copy.as_ref().expect("built above");
                (slot.placement.clone(), copy.value.clone())
            } else {
                (layer.plans[index].placement.clone(), token.value.clone())
            };
            (token.generation, value)
        });
        let retry = layer.retry && !has_no_retry(&req);
        let (generation, (placement, value)) = match attached {
            Ok(attached) => attached,
            // No usable token: wait for one inside the future.
            Err(acquire) => return self.wait(Some(index), None, Some(route), acquire, req, retry),
        };
        let replay = match retry {
            true => prepare_replay(&mut req, route, layer.replay_limit),
            false => None,
        };
        protocol::attach(&mut req, &placement, value);
        let fut = self.inner.call(req);
        ResponseFuture::sent(fut, Arc::clone(&self.family), index, generation, replay)
    }

    /// A request not to be sent (a user who never logged in): its future answers with
    /// `err` at once.
    #[cold]
    #[inline(never)]
    fn refuse<B, T: Body>(&mut self, err: Error, req: Request<B>) -> ResponseFuture<S, B, T>
    where
        S: Service<Request<B>>,
    {
        self.wait(
            None,
            None,
            None,
            crate::credential::Acquire::failed(err),
            req,
            false,
        )
    }

    /// A request acting for a user: their credential's token, or the wait for it. Users'
    /// requests take the shared token value (no per-clone copy) and, when they must
    /// wait, the boxed slow path: the application's own requests stay on the fast one.
    #[cold]
    #[inline(never)]
    fn call_user<B, T: Body>(
        &mut self,
        state: Arc<CredentialState>,
        route: RouteRef,
        mut req: Request<B>,
    ) -> ResponseFuture<S, B, T>
    where
        S: Service<Request<B>>,
        B: ReplayableBody,
    {
        #[cfg(feature = "jose")]
        if state.config.rules.dpop {
            return self.call_dpop(0, Some(state), route, req);
        }
        let retry = self.family.layer.retry && !has_no_retry(&req);
        let (generation, value) = match protocol::token_value(&state) {
            Ok(attached) => attached,
            Err(acquire) => return self.wait(None, Some(state), Some(route), acquire, req, retry),
        };
        let replay = match retry {
            true => prepare_replay(&mut req, route, self.family.layer.replay_limit),
            false => None,
        };
        let placement = AttachPoint::for_credential(&state.config);
        protocol::attach(&mut req, &placement, value);
        let watch = Watch {
            family: Arc::clone(&self.family),
            index: 0,
            generation,
            user: Some(state),
            replay,
        };
        ResponseFuture::sent_watched(self.inner.call(req), watch)
    }

    /// A request for a DPoP-bound credential (`index` of the application's, or `user`'s):
    /// its proof is made for it alone, and its answer may ask for a nonce, so it takes
    /// the response future's slow state, whatever the token's state. Signing the proof
    /// costs far more than that state's allocation.
    #[cfg(feature = "jose")]
    #[cold]
    #[inline(never)]
    fn call_dpop<B, T: Body>(
        &mut self,
        index: usize,
        user: Option<Arc<CredentialState>>,
        route: RouteRef,
        mut req: Request<B>,
    ) -> ResponseFuture<S, B, T>
    where
        S: Service<Request<B>>,
        B: ReplayableBody,
    {
        let layer = &self.family.layer;
        let retry = layer.retry && !has_no_retry(&req);
        let state = match &user {
            Some(user) => Arc::clone(user),
            None => Arc::clone(&layer.credentials.routing.states[index]),
        };
        let (generation, value) = match protocol::token_value(&state) {
            Ok(attached) => attached,
            Err(acquire) => {
                let index = user.is_none().then_some(index);
                return self.wait(index, user, Some(route), acquire, req, retry);
            }
        };
        let replay = match retry {
            true => prepare_replay(&mut req, route, layer.replay_limit),
            false => None,
        };
        let placement = match &user {
            Some(user) => AttachPoint::for_credential(&user.config),
            None => layer.plans[index].placement.clone(),
        };
        let origin = crate::dpop::ProofTarget::of_uri(req.uri()).map(|at| at.nonce_key().into());
        protocol::attach(&mut req, &placement, value);
        let family = Arc::clone(&self.family);
        let fut = self.inner.call(req);
        ResponseFuture::dpop_sent(family, index, user, origin, fut, generation, replay)
    }

    /// The request, answered when `acquire` brings a token: the inner service is ready
    /// now, so it is taken along and a clone (not yet ready) left in its place.
    #[allow(clippy::too_many_arguments)]
    fn wait<B, T: Body>(
        &mut self,
        index: Option<usize>,
        user: Option<Arc<CredentialState>>,
        route: Option<RouteRef>,
        acquire: crate::credential::Acquire,
        req: Request<B>,
        retry: bool,
    ) -> ResponseFuture<S, B, T>
    where
        S: Service<Request<B>>,
    {
        let clone = self.inner.clone();
        let ready = mem::replace(&mut self.inner, clone);
        let family = Arc::clone(&self.family);
        let retry = route.filter(|_| retry);
        ResponseFuture::acquiring(family, index.unwrap_or(0), user, acquire, ready, req, retry)
    }
}

/// This clone's copy of credential `index`'s token, if the clone is warm, the token is
/// fresh (not in its refresh window, not expired) and the copy is of it. The whole
/// token lookup of a warm clone: no lock, no clock, no write to memory shared with
/// other clones.
#[inline(always)]
fn fresh_copy(slots: &mut [Option<LocalSlot>], index: usize) -> Option<(&LocalCopy, &AttachPoint)> {
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
    Some((slot.copy.as_ref()?, &slot.placement))
}

/// How many cache hits a clone counts before adding them to the shared counter.
const HITS_BATCH: u32 = 1024;

/// How many hits of clones without copies of their own (a clone per request) a thread
/// counts for a credential before adding them to the credential's counter.
const COLD_HITS_BATCH: u32 = 64;

thread_local! {
    /// This thread's view of the tokens of the last credentials clones without copies of
    /// their own used here, and its copies of their headers: a clone per request reads
    /// the token without an atomic write (`arc_swap::Cache` compares a pointer) and
    /// clones a header value whose reference count only this thread writes.
    static THREAD_SLOTS: RefCell<[Option<ThreadSlot>; THREAD_SLOTS_LEN]> =
        const { RefCell::new([const { None }; THREAD_SLOTS_LEN]) };
}

/// How many credentials a thread keeps a view of; a credential's slot is chosen by its
/// address, so a few credentials used in turn rarely displace each other.
const THREAD_SLOTS_LEN: usize = 4;

/// One thread's view of one credential's token. The cache holds the credential's token
/// holder alive, so its address names it as long as the slot does: no other credential
/// can be mistaken for it.
struct ThreadSlot {
    cache: Cache<Arc<ArcSwapOption<CachedToken>>, Option<Arc<CachedToken>>>,
    copy: Option<LocalCopy>,
    /// Hits on this thread not yet added to the credential's counter: clones per
    /// request live for one request, so they are counted here rather than per clone,
    /// and added 64 at a time (a slot replaced loses fewer than 64).
    hits: u32,
}

/// The generation and a header value of `state`'s token, if the token is fresh (a
/// hit, counted): from this thread's slot, made on first use and updated when the
/// token changes.
#[inline(always)]
fn thread_copy(state: &CredentialState) -> Option<(u64, HeaderValue)> {
    let current = &state.current;
    let address = Arc::as_ptr(current);
    let index = (address as usize >> 6) % THREAD_SLOTS_LEN;
    THREAD_SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        let slot = match &mut slots[index] {
            Some(slot) if std::ptr::eq(slot.cache.arc_swap(), address) => slot,
            other => new_thread_slot(other, current),
        };
        let token = slot.cache.load().as_deref()?;
        if !token.is_fresh() {
            return None;
        }
        let generation = token.generation;
        if slot.copy.as_ref().map(|copy| copy.generation) != Some(generation) {
            slot.copy = Some(LocalCopy::of(token));
        }
        slot.hits += 1;
        if slot.hits == COLD_HITS_BATCH {
            slot.hits = 0;
            state
                .stats
                .cache_hits
                .fetch_add(u64::from(COLD_HITS_BATCH), std::sync::atomic::Ordering::Relaxed);
        }
        slot.copy.as_ref().map(|copy| (generation, copy.value.clone()))
    })
}

#[cold]
#[inline(never)]
fn new_thread_slot<'s>(
    slot: &'s mut Option<ThreadSlot>,
    current: &Arc<ArcSwapOption<CachedToken>>,
) -> &'s mut ThreadSlot {
    slot.insert(ThreadSlot {
        cache: Cache::new(Arc::clone(current)),
        copy: None,
        hits: 0,
    })
}

/// Whether `req` carries [`NoRetry`]. Most requests carry no extensions at all, which is
/// checked in line first.
#[inline(always)]
fn has_no_retry<B>(req: &Request<B>) -> bool {
    !req.extensions().is_empty() && req.extensions().get::<NoRetry>().is_some()
}

impl<S: Clone> Clone for OAuth2<S> {
    /// The inner service's clone and one reference count: no allocation. The clone
    /// builds copies of its own once it has served enough requests to pay for them.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            family: Arc::clone(&self.family),
            local: Local::cold(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for OAuth2<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuth2")
            .field("inner", &self.inner)
            .field("credentials", &self.family.layer.credentials)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for OAuth2<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    ReqBody: ReplayableBody,
    ResBody: Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Error::inner)
    }

    #[inline]
    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // Most requests carry no extensions at all, which is checked in line first.
        let subject = match req.extensions().is_empty() {
            true => None,
            false => req.extensions().get::<Subject>(),
        };
        let (index, route) = match protocol::route(&self.family.layer.credentials.routing, req.uri(), subject)
        {
            Route::App(index, route) => (index, route),
            Route::Pass => return ResponseFuture::passthrough(self.inner.call(req)),
            Route::User(state, route) => return self.call_user(state, route, req),
            Route::Refuse(err) => return self.refuse(err, req),
        };
        #[cfg(feature = "jose")]
        if self.family.layer.plans[index].placement.is_dpop() {
            return self.call_dpop(index, None, route, req);
        }
        let Some((copy, placement)) = fresh_copy(&mut self.local.slots, index) else {
            return match self.local.is_warm() {
                true => self.call_slow(index, route, req),
                false => self.call_shared(index, route, req),
            };
        };
        let layer = &self.family.layer;
        let replay = if layer.retry && !has_no_retry(&req) {
            prepare_replay(&mut req, route, layer.replay_limit)
        } else {
            None
        };
        protocol::attach(&mut req, placement, copy.value.clone());
        let generation = copy.generation;
        ResponseFuture::sent(
            self.inner.call(req),
            Arc::clone(&self.family),
            index,
            generation,
            replay,
        )
    }
}

/// One warm clone's view of one credential's token.
struct LocalSlot {
    cache: Cache<Arc<ArcSwapOption<CachedToken>>, Option<Arc<CachedToken>>>,
    copy: Option<LocalCopy>,
    /// This clone's own copy of where the token goes (a custom header name is
    /// reference-counted).
    placement: AttachPoint,
    /// Cache hits not yet added to the credential's counter.
    hits: u32,
    state: Arc<CredentialState>,
}

impl LocalSlot {
    fn new(state: &Arc<CredentialState>, placement: &AttachPoint) -> Self {
        Self {
            cache: Cache::new(Arc::clone(&state.current)),
            copy: None,
            placement: placement.own_copy(),
            hits: 0,
            state: Arc::clone(state),
        }
    }

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

/// A warm clone's own copy of what a token puts on a request.
struct LocalCopy {
    generation: u64,
    value: HeaderValue,
}

impl LocalCopy {
    fn of(token: &CachedToken) -> Self {
        // Built from bytes rather than cloned: a clone would share the reference count
        // of the one value every clone on every thread uses.
        let mut value =
            HeaderValue::from_bytes(token.value.as_bytes()).unwrap_or_else(|_| token.value.clone());
        value.set_sensitive(true);
        // Kept as a clone of the value built: a fresh value's first clone converts its
        // bytes to shared ones, and every later clone of it checks whether that happened;
        // clones of a clone skip the check.
        let value = value.clone();
        Self {
            generation: token.generation,
            value,
        }
    }
}
