//! The token cache of one credential: lock-free reads, one refresh at a time.
//!
//! # How it works
//!
//! The current token lives in an [`ArcSwapOption`]. Readers load it without a lock; the
//! `Arc`'s identity, numbered by [`CachedToken::generation`], is the token's generation.
//!
//! Each token carries its own state, `FRESH`, then `STALE` from its refresh point, then
//! `EXPIRED` at its expiry (or when an API answer declared it dead). A timer task flips
//! those states at the right instants, so the request path never reads a clock: it loads
//! one atomic byte that changes twice in a token's life.
//!
//! Everything that is not a plain read goes through [`CredentialState::acquire`] or
//! [`CredentialState::refresh_early`], under a mutex that is never held across an
//! `.await`. There, at most one token request per credential is in flight: it is spawned
//! as its own task (so it outlives any caller that gives up) and bounded by a timeout;
//! every caller that needs it waits on the same shared outcome. A failed request never
//! replaces a token that is still valid, and further attempts are spaced by a jittered,
//! capped exponential backoff (see [`RefreshPolicy`](crate::RefreshPolicy)).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering},
        Arc, Mutex, MutexGuard, Weak,
    },
    task::{Context, Poll},
};

use arc_swap::ArcSwapOption;
use futures_util::future::{FutureExt, Shared};
use http::HeaderValue;
use tokio::{
    sync::oneshot,
    task::AbortHandle,
    time::{sleep_until, timeout, Instant},
};
use tracing::Instrument;

use crate::{
    error::{Error, NotAuthorized, ReauthorizationRequired, TimedOut, UnreachableError},
    grant::{GrantConfig, GrantInput, PendingCode},
    provider::{CredentialKey, Grant, TokenPlacement},
    secret::{Fingerprint, RefreshToken},
    stats::Stats,
    store::{wall_clock_now, StoredTokens, TokenStore},
    token::TokenSet,
    transport::TokenTransport,
};

const FRESH: u8 = 0;
const STALE: u8 = 1;
const EXPIRED: u8 = 2;

/// A token as the cache holds it: the token set, the value to attach, and its state.
pub(crate) struct CachedToken {
    pub(crate) generation: u64,
    /// What goes on the request: the header value (`Bearer …` or the bare token), or
    /// the `name=value` query pair, already encoded. Marked sensitive.
    pub(crate) value: HeaderValue,
    pub(crate) tokens: TokenSet,
    /// When the token enters its refresh window.
    pub(crate) refresh_at: Instant,
    state: AtomicU8,
    early_refresh_started: AtomicBool,
}

impl CachedToken {
    /// Whether the token may be attached (it is fresh or in its refresh window).
    #[inline]
    pub(crate) fn is_usable(&self) -> bool {
        self.state.load(Ordering::Acquire) != EXPIRED
    }

    /// Whether the token is before its refresh point (so neither in its refresh window nor
    /// expired): the one check of the hot path.
    #[inline]
    pub(crate) fn is_fresh(&self) -> bool {
        self.state.load(Ordering::Acquire) == FRESH
    }

    /// Whether the token is past its refresh point and no early refresh was started yet.
    #[inline]
    pub(crate) fn wants_early_refresh(&self) -> bool {
        self.state.load(Ordering::Relaxed) == STALE && !self.early_refresh_started.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedToken")
            .field("generation", &self.generation)
            .field("fingerprint", &self.tokens.access_token().fingerprint())
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

type Outcome = Result<Arc<CachedToken>, Error>;

/// Why a token request is made; shown in spans and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// No token yet, or the last one expired.
    Missing,
    /// The token is in its refresh window.
    Early,
    /// An API answer said the token is dead.
    DeadToken,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Early => "early",
            Reason::DeadToken => "dead_token",
        }
    }
}

/// The cold-path state, behind the mutex.
#[derive(Default)]
struct Slot {
    inflight: Option<Shared<Pending>>,
    failures: u32,
    not_before: Option<Instant>,
    last_error: Option<Error>,
    refresh_token: Option<RefreshToken>,
    /// An authorization code not exchanged yet, with its redirect URI.
    code: Option<PendingCode>,
    timer: Option<AbortHandle>,
    /// A token refused by the API right after it was fetched for a retry: until the
    /// instant, dead-token answers for it do not trigger refreshes.
    refused_when_fresh: Option<(u64, Instant)>,
    /// Whether the store was read yet: it may hold a newer refresh token (rotated before
    /// a restart) or a live access token.
    consulted_store: bool,
    /// A refresh token the provider refused: never sent again, even if a store has it.
    dead_refresh: Option<Fingerprint>,
}

impl Slot {
    fn ignores_dead_answers_for(&self, generation: u64) -> bool {
        self.refused_when_fresh
            .is_some_and(|(refused, until)| refused == generation && Instant::now() < until)
    }
}

/// Everything about one credential.
pub(crate) struct CredentialState {
    pub(crate) config: GrantConfig,
    /// The current token. Behind its own `Arc` so per-clone `arc_swap::Cache`s can hold it.
    pub(crate) current: Arc<ArcSwapOption<CachedToken>>,
    pub(crate) stats: Stats,
    credential_key: CredentialKey,
    key: String,
    transport: TokenTransport,
    store: Option<Arc<dyn TokenStore>>,
    /// A user's credential, created on demand: without a grant it is "not authorized"
    /// rather than "re-authorization required".
    for_user: bool,
    generations: AtomicU64,
    slot: Mutex<Slot>,
    // ===== For the users' table (src/credentials.rs), which alone reads and writes it.
    /// When this user was last used, in the table's ticks: see `LiveUsers::sweep`.
    pub(crate) last_used: AtomicU64,
}

impl CredentialState {
    /// A credential whose tokens are kept in `store`. A user's credential (`for_user`)
    /// starts from what the store holds, never from its grant's code.
    pub(crate) fn with_store(
        config: GrantConfig,
        transport: TokenTransport,
        store: Option<Arc<dyn TokenStore>>,
        for_user: bool,
    ) -> Self {
        let (refresh_token, code) = if for_user {
            (None, None)
        } else {
            config.initial_input()
        };
        let credential_key = config.credential.key();
        Self {
            key: credential_key.to_string(),
            credential_key,
            config,
            current: Arc::new(ArcSwapOption::empty()),
            stats: Stats::default(),
            transport,
            generations: AtomicU64::new(0),
            store,
            for_user,
            slot: Mutex::new(Slot {
                refresh_token,
                code,
                ..Slot::default()
            }),
            last_used: AtomicU64::new(0),
        }
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// This credential's counters, and how long until its token's refresh point.
    pub(crate) fn snapshot(&self) -> crate::stats::CredentialStats {
        let until_refresh = self
            .current
            .load()
            .as_ref()
            .filter(|token| token.is_usable())
            .map(|token| token.refresh_at.saturating_duration_since(Instant::now()));
        self.stats
            .snapshot(&self.key, self.config.provider_name(), until_refresh)
    }

    pub(crate) fn credential_key(&self) -> &CredentialKey {
        &self.credential_key
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        // The slot is only ever left in a consistent state, so a poisoned lock (a panic
        // elsewhere while it was held) can be used as it is.
        self.slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A usable token, now or after the one refresh in flight.
    ///
    /// `dead` is the generation an API answer declared dead: it is invalidated only if it
    /// is still the current one, so any number of such answers cause one refresh.
    pub(crate) fn acquire(self: &Arc<Self>, dead: Option<u64>) -> Acquire {
        let mut slot = self.lock();
        let mut reason = Reason::Missing;
        if let Some(token) = self.current.load_full() {
            if dead == Some(token.generation) && slot.ignores_dead_answers_for(token.generation) {
                return Acquire::ready(Ok(token));
            } else if dead == Some(token.generation) {
                token.state.store(EXPIRED, Ordering::Release);
                reason = Reason::DeadToken;
            } else if token.is_usable() {
                return Acquire::ready(Ok(token));
            }
        }
        if let Some(inflight) = &slot.inflight {
            return Acquire::wait(inflight.clone());
        }
        if let Some(err) = self.backing_off(&slot) {
            return Acquire::ready(Err(err));
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Acquire::ready(Err(Error::config(
                "token requests run as Tokio tasks; call the service within a Tokio runtime",
            )));
        };
        if reason == Reason::DeadToken {
            self.stats.dead_token_refreshes.fetch_add(1, Ordering::Relaxed);
            tracing::info!(provider = %self.config.provider_name(), credential = %self.key, "API answer declared the token dead; refreshing");
        }
        Acquire::wait(self.start_refresh(&runtime, &mut slot, reason))
    }

    /// Records that token `generation`, fetched to retry a request, was refused at once.
    ///
    /// Such a refusal is not about the token (a missing permission, another audience):
    /// refreshing again would only hammer the token endpoint once per request. For
    /// `backoff_max`, dead-token answers for this token are returned as they are.
    pub(crate) fn refused_when_fresh(&self, generation: u64) {
        let until = Instant::now() + self.config.credential.policy.backoff_max;
        self.lock().refused_when_fresh = Some((generation, until));
        tracing::warn!(
            provider = %self.config.provider_name(),
            credential = %self.key,
            "a freshly fetched token was refused; not refreshing on dead-token answers for a while"
        );
    }

    /// Starts the background refresh of a token in its refresh window, once.
    pub(crate) fn refresh_early(self: &Arc<Self>, token: &CachedToken) {
        if token.early_refresh_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut slot = self.lock();
        let is_current = self
            .current
            .load()
            .as_ref()
            .is_some_and(|c| c.generation == token.generation);
        if !is_current || slot.inflight.is_some() || self.backing_off(&slot).is_some() {
            return;
        }
        self.stats.early_refreshes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(provider = %self.config.provider_name(), credential = %self.key, "token in its refresh window; refreshing in the background");
        drop(self.start_refresh(&runtime, &mut slot, Reason::Early));
    }

    /// The error to answer with while failed attempts are being backed off from.
    fn backing_off(&self, slot: &Slot) -> Option<Error> {
        let not_before = slot.not_before?;
        let now = Instant::now();
        if now >= not_before {
            return None;
        }
        Some(slot.last_error.clone().unwrap_or_else(|| {
            Error::Unreachable(UnreachableError {
                provider: self.config.provider_name().clone(),
                backoff: Some(not_before - now),
                source: None,
            })
        }))
    }

    fn start_refresh(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        slot: &mut Slot,
        reason: Reason,
    ) -> Shared<Pending> {
        let (tx, rx) = oneshot::channel();
        let pending = Pending {
            rx,
            provider: self.config.provider_name().clone(),
        }
        .shared();
        slot.inflight = Some(pending.clone());
        let input = self.next_input(slot);
        let span = tracing::info_span!(
            "oauth2.token_request",
            provider = %self.config.provider_name(),
            credential = %self.key,
            subject = self.credential_key.subject().unwrap_or("-"),
            grant = input.as_ref().map_or("none", GrantInput::grant_type),
            reason = reason.as_str(),
        );
        // Made before the task is spawned and moved into it: however the task ends, even
        // if it is dropped before its first poll, the guard ends the request.
        let in_flight = InFlight {
            state: Arc::clone(self),
            tx: Some(tx),
        };
        runtime.spawn(run_refresh(in_flight, input).instrument(span));
        pending
    }

    /// What the next token request presents; `None` when only a new authorization helps.
    fn next_input(&self, slot: &mut Slot) -> Option<GrantInput> {
        if matches!(self.config.credential.grant, Grant::ClientCredentials) {
            // The grant is simply run again; a refresh token the server sent is not needed.
            return Some(GrantInput::ClientCredentials);
        }
        if let Some(refresh_token) = &slot.refresh_token {
            return Some(GrantInput::Refresh(refresh_token.clone()));
        }
        // A code is single-use: it is taken now, and given back only if the exchange
        // never reached the server.
        slot.code.take().map(GrantInput::Code)
    }

    /// Obtains tokens: from the store when it holds live ones, else from the provider,
    /// persisting what the provider returns before anyone uses it.
    async fn obtain(&self, mut input: Option<GrantInput>) -> Attempt {
        if let Some(store) = &self.store {
            let fresh_login = matches!(input, Some(GrantInput::Code(_)));
            let first_read = !std::mem::replace(&mut self.lock().consulted_store, true);
            if !fresh_login && (first_read || input.is_none()) {
                match store.load(&self.credential_key).await {
                    Err(err) => return Attempt::failed(Error::Store(err)),
                    Ok(Some(stored)) => {
                        let dead = self.lock().dead_refresh;
                        let refresh = stored
                            .refresh_token
                            .clone()
                            .filter(|rt| Some(rt.fingerprint()) != dead);
                        let at_least = std::time::Duration::from_secs(1);
                        if let Some(mut tokens) = stored.live_tokens(
                            Instant::now(),
                            wall_clock_now(),
                            at_least,
                            self.config.rules.lifetimes.max,
                        ) {
                            tracing::debug!("a live token was restored from the store");
                            tokens.set_refresh_token(refresh);
                            return Attempt::ok(tokens);
                        }
                        if let (Some(rt), false) = (refresh, self.runs_client_credentials()) {
                            input = Some(GrantInput::Refresh(rt));
                        }
                    }
                    Ok(None) => {}
                }
            }
        }
        let Some(mut input) = input else {
            let provider = self.config.provider_name().clone();
            return Attempt::failed(match self.for_user {
                true => Error::NotAuthorized(NotAuthorized {
                    provider,
                    subject: self.credential_key.subject().map(Into::into),
                }),
                // Never fall back to another grant: without a refresh token or a code,
                // only a new authorization helps.
                false => Error::ReauthorizationRequired(ReauthorizationRequired {
                    provider,
                    grant: None,
                    cause: None,
                }),
            });
        };
        self.stats.count_request(&input);
        let mut result = self.config.fetch(&self.transport, &input).await;
        if let (Err(Error::ReauthorizationRequired(_)), GrantInput::Refresh(used), Some(store)) =
            (&result, &input, &self.store)
        {
            // Another process sharing the store may have rotated the refresh token: read
            // the store once more before giving up.
            if let Ok(Some(stored)) = store.load(&self.credential_key).await {
                if let Some(newer) = stored.refresh_token.filter(|rt| rt != used) {
                    tracing::info!("the refresh token was refused; trying the one in the store");
                    input = GrantInput::Refresh(newer);
                    self.stats.count_request(&input);
                    result = self.config.fetch(&self.transport, &input).await;
                }
            }
        }
        match result {
            Ok(tokens) => match &self.store {
                Some(store) => {
                    let stored = StoredTokens::of(&tokens, Instant::now(), wall_clock_now());
                    match store.save(&self.credential_key, &stored).await {
                        Ok(()) => Attempt::ok(tokens),
                        // The access token is not handed out: it would live only in
                        // memory. A rotated refresh token is kept for the next attempt,
                        // as the one before it is dead.
                        Err(err) => Attempt {
                            result: Err(Error::Store(err)),
                            keep_refresh: tokens.refresh_token().cloned(),
                            dead_refresh: None,
                        },
                    }
                }
                None => Attempt::ok(tokens),
            },
            Err(err @ Error::ReauthorizationRequired(_)) => Attempt {
                result: Err(err),
                keep_refresh: None,
                dead_refresh: match &input {
                    GrantInput::Refresh(used) => Some(used.fingerprint()),
                    _ => None,
                },
            },
            Err(err) => Attempt::failed(err),
        }
    }

    fn runs_client_credentials(&self) -> bool {
        matches!(self.config.credential.grant, Grant::ClientCredentials)
    }

    /// Installs a new token, or records a failure, and ends the in-flight request.
    fn complete(self: &Arc<Self>, attempt: Attempt, code: Option<PendingCode>) -> Outcome {
        let mut slot = self.lock();
        slot.inflight = None;
        if let (Err(Error::Unreachable(_) | Error::TimedOut(_)), Some(code)) = (&attempt.result, code) {
            // The exchange may never have reached the server: the code may still be good.
            slot.code.get_or_insert(code);
        }
        if let Some(refresh_token) = attempt.keep_refresh {
            slot.refresh_token = Some(refresh_token);
        }
        if let Some(dead) = attempt.dead_refresh {
            slot.dead_refresh = Some(dead);
            slot.refresh_token = None;
        }
        let installed = attempt.result.and_then(|tokens| self.install(&mut slot, tokens));
        match &installed {
            Ok(token) => {
                tracing::info!(
                    generation = token.generation,
                    fingerprint = %token.tokens.access_token().fingerprint(),
                    expires_in_ms = token.tokens.expires_at().saturating_duration_since(Instant::now()).as_millis() as u64,
                    "token installed"
                );
                slot.failures = 0;
                slot.not_before = None;
                slot.last_error = None;
            }
            Err(err) => {
                slot.failures = slot.failures.saturating_add(1);
                let wait = self.config.credential.policy.backoff_after(slot.failures);
                slot.not_before = Some(Instant::now() + wait);
                slot.last_error = Some(err.clone());
                tracing::debug!(
                    failures = slot.failures,
                    backoff_ms = wait.as_millis() as u64,
                    "backing off"
                );
            }
        }
        installed
    }

    fn install(&self, slot: &mut Slot, tokens: TokenSet) -> Outcome {
        let value = attachment(&self.config.credential.provider.placement, &tokens).ok_or_else(|| {
            Error::Malformed(crate::error::MalformedResponse {
                provider: self.config.provider_name().clone(),
                status: http::StatusCode::OK,
                content_type: None,
                reason: "the access token cannot be carried in a header".into(),
            })
        })?;
        let now = Instant::now();
        let expires_at = tokens.expires_at();
        let refresh_at = self.config.credential.policy.refresh_point(now, expires_at);
        slot.refresh_token = tokens.refresh_token().cloned();
        let token = Arc::new(CachedToken {
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
            value,
            tokens,
            refresh_at,
            state: AtomicU8::new(if refresh_at <= now { STALE } else { FRESH }),
            early_refresh_started: AtomicBool::new(false),
        });
        if let Some(timer) = slot.timer.take() {
            timer.abort();
        }
        let watch = ExpiryWatch {
            token: Arc::downgrade(&token),
            expires_at,
            done: false,
        };
        slot.timer = Some(tokio::spawn(watch_expiry(watch, refresh_at)).abort_handle());
        self.current.store(Some(Arc::clone(&token)));
        Ok(token)
    }

    /// After a failure, lets the current token (if still valid) trigger an early refresh
    /// again once the backoff has passed.
    async fn rearm_early_refresh_after_backoff(&self) {
        let not_before = self.lock().not_before;
        let Some(not_before) = not_before else { return };
        let token = self.current.load_full().map(|t| Arc::downgrade(&t));
        sleep_until(not_before).await;
        if let Some(token) = token.and_then(|t| t.upgrade()) {
            token.early_refresh_started.store(false, Ordering::Release);
        }
    }

    /// Forgets every token of this credential and revokes them at the provider, if it
    /// has a revocation endpoint. Waits for a token request in flight to end first, so
    /// that a token it brings back is revoked too.
    pub(crate) async fn revoke(&self) -> Result<Revoked, Error> {
        let (access, refresh, unread) = loop {
            let pending = {
                let mut slot = self.lock();
                match &slot.inflight {
                    Some(pending) => pending.clone(),
                    None => {
                        if let Some(timer) = slot.timer.take() {
                            timer.abort();
                        }
                        slot.code = None;
                        let access = self.current.swap(None);
                        if let Some(token) = &access {
                            token.state.store(EXPIRED, Ordering::Release);
                        }
                        let access = access.map(|token| token.tokens.access_token().clone());
                        break (access, slot.refresh_token.take(), !slot.consulted_store);
                    }
                }
            };
            let _ = pending.await;
        };
        // ===== A state that never read the store (a user brought back after an eviction
        // or a restart, and logged out before any request): its tokens are only there.
        let (access, refresh) = match (&self.store, unread) {
            (Some(store), true) => match store.load(&self.credential_key).await.map_err(Error::Store)? {
                Some(stored) => (access.or(stored.access_token), refresh.or(stored.refresh_token)),
                None => (access, refresh),
            },
            _ => (access, refresh),
        };
        // =====
        if let Some(store) = &self.store {
            store.delete(&self.credential_key).await?;
        }
        let Some(revocation) = &self.config.credential.provider.revocation else {
            tracing::info!(provider = %self.config.provider_name(), credential = %self.key, "tokens forgotten; the provider has no revocation endpoint");
            return Ok(Revoked::LocallyOnly);
        };
        let mut revoked = 0;
        // The refresh token first: revoking it usually ends its access tokens too.
        let tokens = refresh
            .as_ref()
            .map(|rt| (rt.secret(), "refresh_token"))
            .into_iter()
            .chain(access.as_ref().map(|token| (token.secret(), "access_token")));
        for (token, hint) in tokens {
            self.config
                .revoke(&self.transport, revocation, token, hint)
                .await?;
            revoked += 1;
        }
        tracing::info!(provider = %self.config.provider_name(), credential = %self.key, revoked, "tokens revoked");
        Ok(Revoked::AtProvider { tokens: revoked })
    }

    /// Starts over from a new authorization: exchanges `code` (after any token request in
    /// flight ends) and installs and stores the result, whatever came before.
    pub(crate) async fn authorize(self: &Arc<Self>, code: PendingCode) -> Outcome {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(Error::config(
                "token requests run as Tokio tasks; call within a Tokio runtime",
            ));
        };
        let pending = loop {
            let pending = {
                let mut slot = self.lock();
                match &slot.inflight {
                    Some(pending) => pending.clone(),
                    None => {
                        slot.code = Some(code);
                        slot.refresh_token = None;
                        slot.dead_refresh = None;
                        slot.failures = 0;
                        slot.not_before = None;
                        slot.last_error = None;
                        break self.start_refresh(&runtime, &mut slot, Reason::Missing);
                    }
                }
            };
            let _ = pending.await;
        };
        pending.await
    }

    /// Forgets the current token; the next request fetches a new one.
    pub(crate) fn invalidate(&self) {
        if let Some(token) = self.current.load_full() {
            token.state.store(EXPIRED, Ordering::Release);
        }
    }
}

impl Drop for CredentialState {
    fn drop(&mut self) {
        // Nobody can read the token any more: its expiry timer has nothing left to do.
        if let Some(timer) = self.slot.get_mut().ok().and_then(|slot| slot.timer.take()) {
            timer.abort();
        }
    }
}

impl fmt::Debug for CredentialState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialState")
            .field("credential", &self.key)
            .field("current", &self.current.load().as_ref().map(|t| t.generation))
            .finish_non_exhaustive()
    }
}

/// The body of a token request's task: obtain tokens within the time limit, install
/// them (or record the failure), and tell every waiting caller.
async fn run_refresh(in_flight: InFlight, input: Option<GrantInput>) {
    let state = Arc::clone(&in_flight.state);
    let limit = state.config.credential.policy.timeout;
    let code = match &input {
        Some(GrantInput::Code(code)) => Some(code.clone()),
        _ => None,
    };
    // The whole attempt, store reads and writes included, is bounded.
    let attempt = match timeout(limit, state.obtain(input)).await {
        Ok(attempt) => attempt,
        Err(_) => Attempt::failed(Error::TimedOut(TimedOut {
            provider: state.config.provider_name().clone(),
            after: limit,
        })),
    };
    if in_flight.finish(attempt, code).is_err() {
        state.rearm_early_refresh_after_backoff().await;
    }
}

/// The token request in flight, owned by its task. Ending it clears the in-flight
/// marker, counts a failure and answers the waiting callers, on every way out of the
/// task: the attempt finished, or the task was dropped without finishing because
/// something in it panicked (a transport, a store, a change hook) or because the
/// runtime it ran on shut down. Without the guard, either of the last two would leave
/// the marker set forever: every later caller would wait on an outcome that never
/// changes and the token endpoint would never be asked again.
struct InFlight {
    state: Arc<CredentialState>,
    /// Taken when the request ends; still here in `drop` means it never did.
    tx: Option<oneshot::Sender<Outcome>>,
}

impl InFlight {
    /// Ends the request with the attempt's outcome.
    fn finish(mut self, attempt: Attempt, code: Option<PendingCode>) -> Outcome {
        self.end(attempt, code)
    }

    fn end(&mut self, attempt: Attempt, code: Option<PendingCode>) -> Outcome {
        let tx = self.tx.take();
        let outcome = self.state.complete(attempt, code);
        if let Err(err) = &outcome {
            self.state.stats.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %err, "token request failed");
        }
        // Nobody waiting is fine: the token is installed all the same.
        if let Some(tx) = tx {
            let _ = tx.send(outcome.clone());
        }
        outcome
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.tx.is_none() {
            return;
        }
        // The task is gone without an outcome. Its authorization code, if it carried
        // one, is not given back: the exchange may have reached the server.
        let err = Error::Unreachable(UnreachableError {
            provider: self.state.config.provider_name().clone(),
            backoff: None,
            source: Some(Arc::new(Interrupted)),
        });
        tracing::warn!(
            provider = %self.state.config.provider_name(),
            credential = %self.state.key,
            "the token request's task ended without an answer (a panic, or its runtime shut down)"
        );
        let _ = self.end(Attempt::failed(err), None);
    }
}

/// Why a token request ended without an answer.
#[derive(Debug)]
struct Interrupted;

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the token request was interrupted: its task panicked or its runtime shut down")
    }
}

impl std::error::Error for Interrupted {}

/// The result of one attempt at obtaining tokens, and what it teaches the slot.
struct Attempt {
    result: Result<TokenSet, Error>,
    /// A refresh token to hold even though the attempt failed (a rotated one that could
    /// not be saved).
    keep_refresh: Option<RefreshToken>,
    /// A refresh token the provider refused.
    dead_refresh: Option<Fingerprint>,
}

impl Attempt {
    fn ok(tokens: TokenSet) -> Self {
        Self {
            result: Ok(tokens),
            keep_refresh: None,
            dead_refresh: None,
        }
    }

    fn failed(err: Error) -> Self {
        Self {
            result: Err(err),
            keep_refresh: None,
            dead_refresh: None,
        }
    }
}

/// What [`Credentials::revoke`](crate::Credentials::revoke) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revoked {
    /// The provider was told: `tokens` tokens (access and refresh) were revoked there.
    AtProvider {
        /// How many tokens were revoked (0 when none was held).
        tokens: usize,
    },
    /// The provider has no revocation endpoint: the tokens were only forgotten here.
    LocallyOnly,
}

/// Moves a token to `STALE` at its refresh point and `EXPIRED` at its expiry.
async fn watch_expiry(mut watch: ExpiryWatch, refresh_at: Instant) {
    sleep_until(refresh_at).await;
    match watch.token.upgrade() {
        Some(t) => {
            let _ = t
                .state
                .compare_exchange(FRESH, STALE, Ordering::AcqRel, Ordering::Relaxed);
        }
        None => return,
    }
    sleep_until(watch.expires_at).await;
    if let Some(t) = watch.token.upgrade() {
        t.state.store(EXPIRED, Ordering::Release);
    }
    watch.done = true;
}

/// The token an expiry timer watches. The request path never reads a clock, so a
/// token whose timer is gone would stay fresh forever: when the timer's task is dropped
/// before it is done (its runtime shut down, while the registry lives on in another
/// runtime), the token is moved on at once, to `EXPIRED` if its time is up and else to
/// `STALE`, so that the next request refreshes it and a new timer starts on a live
/// runtime. A timer aborted because a newer token replaced this one does the same to a
/// token nobody uses any more.
struct ExpiryWatch {
    token: Weak<CachedToken>,
    expires_at: Instant,
    done: bool,
}

impl Drop for ExpiryWatch {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(t) = self.token.upgrade() {
            if Instant::now() >= self.expires_at {
                t.state.store(EXPIRED, Ordering::Release);
            } else {
                let _ = t
                    .state
                    .compare_exchange(FRESH, STALE, Ordering::AcqRel, Ordering::Relaxed);
            }
        }
    }
}

/// Builds what goes on an API request for `tokens`, marked sensitive.
pub(crate) fn attachment(placement: &TokenPlacement, tokens: &TokenSet) -> Option<HeaderValue> {
    let token = tokens.access_token().secret();
    let mut value = match placement {
        TokenPlacement::AuthorizationBearer => HeaderValue::try_from(format!("Bearer {token}")).ok()?,
        TokenPlacement::Header(_) => HeaderValue::try_from(token).ok()?,
        TokenPlacement::Query(name) => {
            let pair = form_urlencoded::Serializer::new(String::new())
                .append_pair(name, token)
                .finish();
            HeaderValue::try_from(pair).ok()?
        }
    };
    value.set_sensitive(true);
    Some(value)
}

/// The receiving end of one token request's outcome.
pub(crate) struct Pending {
    rx: oneshot::Receiver<Outcome>,
    provider: Arc<str>,
}

impl Future for Pending {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let this = &mut *self;
        Pin::new(&mut this.rx).poll(cx).map(|received| {
            received.unwrap_or_else(|_| {
                // The refresh task ended without answering: the runtime is shutting down.
                Err(Error::Unreachable(UnreachableError {
                    provider: this.provider.clone(),
                    backoff: None,
                    source: None,
                }))
            })
        })
    }
}

/// A token, now or later.
pub(crate) struct Acquire(AcquireInner);

enum AcquireInner {
    Ready(Option<Outcome>),
    Wait(Shared<Pending>),
}

impl Acquire {
    fn ready(outcome: Outcome) -> Self {
        Self(AcquireInner::Ready(Some(outcome)))
    }

    /// An outcome known at once: the error a request is answered with, unsent.
    pub(crate) fn failed(err: Error) -> Self {
        Self::ready(Err(err))
    }

    fn wait(pending: Shared<Pending>) -> Self {
        Self(AcquireInner::Wait(pending))
    }

    /// Whether this already holds token `generation`, i.e. nothing newer is coming.
    pub(crate) fn is_ready_with(&self, generation: u64) -> bool {
        matches!(&self.0, AcquireInner::Ready(Some(Ok(token))) if token.generation == generation)
    }
}

impl Future for Acquire {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        match &mut self.0 {
            AcquireInner::Ready(outcome) => Poll::Ready(
                outcome
                    .take()
                    .unwrap_or_else(|| Err(Error::config("token future polled after completion"))),
            ),
            AcquireInner::Wait(pending) => Pin::new(pending).poll(cx),
        }
    }
}

impl fmt::Debug for Acquire {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Acquire(..)")
    }
}
