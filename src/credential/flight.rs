//! Single flight: at most one token request per credential, however many callers need
//! a token.
//!
//! [`CredentialState::acquire`] and [`CredentialState::refresh_early`] are the two ways
//! in. A token request they start is spawned as its own task, so that it outlives any
//! caller that gives up, and its outcome is shared: every caller that needs a token
//! while it runs waits on the same [`OutcomeReceiver`]. The task owns an [`InFlight`]
//! guard that ends the request on every way out of the task, so that a panic or a dying
//! runtime can never leave the in-flight marker set.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{atomic::Ordering, Arc},
    task::{Context, Poll},
    time::Duration,
};

use futures_util::future::{FutureExt, Shared};
use tokio::{
    sync::oneshot,
    time::{timeout, Instant},
};
use tracing::Instrument;

use super::{
    decide::{decide, should_refresh_early, Action, Reason, Seen, TokenView},
    obtain::Attempt,
    CachedToken, CredentialState, Outcome, Slot,
};
use crate::{
    error::{Error, TimedOut, UnreachableError},
    token_endpoint::{GrantInput, PendingCode},
};

impl CredentialState {
    /// A usable token, now or after the one refresh in flight.
    ///
    /// `dead` is the generation an API answer declared dead: it is invalidated only if it
    /// is still the current one, so any number of such answers cause one refresh.
    pub(crate) fn acquire(self: &Arc<Self>, dead: Option<u64>) -> Acquire {
        let mut slot = self.lock();
        let current = self.current.load_full();
        let runtime = tokio::runtime::Handle::try_current().ok();
        let now = Instant::now();
        let seen = self.see(&slot, current.as_deref(), dead, runtime.is_some(), now);
        let decision = decide(&seen);
        if let (true, Some(token)) = (decision.expire_current, &current) {
            token.expire();
        }
        // `decide` never picks an action without what it needs (a token to use, a request
        // to join, a runtime to start one on); its tests check every input. So `None` here
        // means `NoRuntime`.
        let acquired = match decision.action {
            Action::Use => current.map(|token| Acquire::ready(Ok(token))),
            Action::Join => slot.inflight.clone().map(Acquire::wait),
            Action::Refuse => Some(Acquire::failed(self.backoff_error(&slot, now))),
            Action::NoRuntime => None,
            Action::Refresh(reason) => runtime.map(|runtime| {
                if reason == Reason::DeadToken {
                    self.stats.dead_token_refreshes.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(provider = %self.config.provider_name(), credential = %self.key, "API answer declared the token dead; refreshing");
                }
                Acquire::wait(self.start_refresh(&runtime, &mut slot, reason))
            }),
        };
        acquired.unwrap_or_else(|| {
            Acquire::failed(Error::config(
                "token requests run as Tokio tasks; call the service within a Tokio runtime",
            ))
        })
    }

    /// Starts the background refresh of a token in its refresh window, once.
    pub(crate) fn refresh_early(self: &Arc<Self>, token: &CachedToken) {
        if !token.claim_early_refresh() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut slot = self.lock();
        let seen = self.see(&slot, self.current.load().as_deref(), None, true, Instant::now());
        if !should_refresh_early(&seen, token.generation) {
            return;
        }
        self.stats.early_refreshes.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(provider = %self.config.provider_name(), credential = %self.key, "token in its refresh window; refreshing in the background");
        drop(self.start_refresh(&runtime, &mut slot, Reason::Early));
    }

    /// What a decision needs of the state, read under the slot's lock at `now`.
    fn see(
        &self,
        slot: &Slot,
        current: Option<&CachedToken>,
        dead: Option<u64>,
        runtime: bool,
        now: Instant,
    ) -> Seen {
        Seen {
            current: current.map(|token| TokenView {
                generation: token.generation,
                usable: token.is_usable(),
            }),
            dead,
            ignoring_dead_for_current: current
                .is_some_and(|token| slot.ignores_dead_answers_for(token.generation, now)),
            in_flight: slot.inflight.is_some(),
            backing_off: slot.backing_off(now),
            runtime,
        }
    }

    /// Spawns the token request's task and marks it in flight; the caller holds the lock.
    pub(super) fn start_refresh(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
        slot: &mut Slot,
        reason: Reason,
    ) -> PendingOutcome {
        let (tx, rx) = oneshot::channel();
        let pending = OutcomeReceiver {
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
            grant = input.as_ref().map_or("none", |input| input.grant_type().as_str()),
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
}

/// The body of a token request's task: obtain tokens within the time limit, install
/// them (or record the failure), and tell every waiting caller.
async fn run_refresh(in_flight: InFlight, input: Option<GrantInput>) {
    let state = Arc::clone(&in_flight.state);
    // Through a refresh lease, the wait for another process's refresh comes first.
    let limit = state.config.credential.client.policy.timeout
        + state
            .coordination(&input)
            .map_or(Duration::ZERO, |coordination| coordination.settings().max_wait);
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

/// The outcome of the token request in flight, as a future that every caller waiting on
/// it clones (futures-util's `Shared`), so that one request answers them all.
pub(super) type PendingOutcome = Shared<OutcomeReceiver>;

/// The receiving end of one token request's outcome.
pub(super) struct OutcomeReceiver {
    rx: oneshot::Receiver<Outcome>,
    provider: Arc<str>,
}

impl Future for OutcomeReceiver {
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
    Wait(PendingOutcome),
}

impl Acquire {
    fn ready(outcome: Outcome) -> Self {
        Self(AcquireInner::Ready(Some(outcome)))
    }

    /// An outcome known at once: the error a request is answered with, unsent.
    pub(crate) fn failed(err: Error) -> Self {
        Self::ready(Err(err))
    }

    fn wait(pending: PendingOutcome) -> Self {
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

#[cfg(test)]
mod tests {
    use std::{error::Error as _, sync::atomic::Ordering::SeqCst, time::Duration};

    use super::{super::testing, *};

    /// A request marked in flight the way `start_refresh` marks it, with its guard and
    /// the outcome its callers wait on; no task runs it.
    fn in_flight(state: &Arc<CredentialState>) -> (InFlight, PendingOutcome) {
        let (tx, rx) = oneshot::channel();
        let pending = OutcomeReceiver {
            rx,
            provider: state.config.provider_name().clone(),
        }
        .shared();
        state.lock().inflight = Some(pending.clone());
        let guard = InFlight {
            state: Arc::clone(state),
            tx: Some(tx),
        };
        (guard, pending)
    }

    fn interrupted(err: &Error) -> bool {
        matches!(err, Error::Unreachable(unreachable) if unreachable.backoff.is_none())
            && err.source().is_some_and(|source| source.is::<Interrupted>())
    }

    #[tokio::test(start_paused = true)]
    async fn a_guard_dropped_unfinished_clears_the_marker_counts_one_failure_answers_the_waiters_and_backs_off(
    ) {
        let (state, requests) = testing::credential();
        let (guard, waiter) = in_flight(&state);
        let other_waiter = waiter.clone();
        let dropped_at = Instant::now();
        drop(guard);

        {
            let slot = state.lock();
            assert!(slot.inflight.is_none(), "the in-flight marker is cleared");
            assert_eq!(slot.failures, 1);
            assert_eq!(slot.not_before, Some(dropped_at + Duration::from_millis(100)));
        }
        assert_eq!(state.stats.failures.load(SeqCst), 1);
        for outcome in [waiter.await, other_waiter.await] {
            let err = outcome.unwrap_err();
            assert!(interrupted(&err), "{err:?}");
        }

        // While it backs off, callers get that error and the endpoint is not asked.
        let err = state.acquire(None).await.unwrap_err();
        assert!(interrupted(&err), "{err:?}");
        assert_eq!(requests.load(SeqCst), 0);
        // After, the next caller's request is made, and its success forgets the failure.
        tokio::time::advance(Duration::from_millis(100)).await;
        let token = state.acquire(None).await.unwrap();
        assert_eq!(token.tokens.access_token().secret(), "tok-1");
        assert_eq!(requests.load(SeqCst), 1);
        assert_eq!(state.lock().failures, 0);
        assert_eq!(state.stats.failures.load(SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_guard_ends_its_request_once_with_the_attempts_own_outcome() {
        let (state, _) = testing::credential();
        let (guard, waiter) = in_flight(&state);
        let outcome = guard.finish(Attempt::failed(Error::config("the attempt's failure")), None);
        assert!(matches!(outcome, Err(Error::Config(_))), "{outcome:?}");
        assert!(matches!(waiter.await, Err(Error::Config(_))));
        assert_eq!(state.stats.failures.load(SeqCst), 1);
        assert_eq!(state.lock().failures, 1);
    }
}
