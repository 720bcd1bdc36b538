//! Keeping a credential from hammering its token endpoint.
//!
//! Two things space out token requests. After a failed request the slot counts the
//! failures in a row and the instant before which no request is made; until then callers
//! are answered with the last error (the delay is [`RefreshPolicy::backoff_after`]'s
//! jittered, capped exponential). And a token the API refused as soon as it was fetched
//! is not refreshed again on dead-token answers for `backoff_max`: such a refusal is not
//! about the token, and refreshing would cost one token request per API request.

use std::sync::Arc;

use tokio::time::{sleep_until, Instant};

use super::{CredentialState, Slot};
use crate::{
    error::{Error, UnreachableError},
    RefreshPolicy,
};

impl Slot {
    /// Whether further attempts wait, at `now`, for earlier failures' backoff.
    pub(super) fn backing_off(&self, now: Instant) -> bool {
        self.not_before.is_some_and(|not_before| now < not_before)
    }

    /// Whether dead-token answers for token `generation` are ignored at `now`, because it
    /// was refused as soon as it was fetched (see
    /// [`CredentialState::refused_when_fresh`]).
    pub(super) fn ignores_dead_answers_for(&self, generation: u64, now: Instant) -> bool {
        self.refused_when_fresh
            .is_some_and(|(refused, until)| refused == generation && now < until)
    }

    /// Records one more failure in a row: until the next attempt, callers are answered
    /// with `err`.
    pub(super) fn back_off(&mut self, err: &Error, policy: &RefreshPolicy) {
        self.failures = self.failures.saturating_add(1);
        let wait = policy.backoff_after(self.failures);
        self.not_before = Some(Instant::now() + wait);
        self.last_error = Some(err.clone());
        tracing::debug!(
            failures = self.failures,
            backoff_ms = wait.as_millis() as u64,
            "backing off"
        );
    }

    /// Forgets earlier failures: the next attempt may be made at once.
    pub(super) fn forget_failures(&mut self) {
        self.failures = 0;
        self.not_before = None;
        self.last_error = None;
    }
}

impl CredentialState {
    /// Records that token `generation`, fetched to retry a request, was refused at once.
    ///
    /// Such a refusal is not about the token (a missing permission, another audience):
    /// refreshing again would only hammer the token endpoint once per request. For
    /// `backoff_max`, dead-token answers for this token are returned as they are.
    pub(crate) fn refused_when_fresh(&self, generation: u64) {
        let until = Instant::now() + self.config.credential.client.policy.backoff_max;
        self.lock().refused_when_fresh = Some((generation, until));
        tracing::warn!(
            provider = %self.config.provider_name(),
            credential = %self.key,
            "a freshly fetched token was refused; not refreshing on dead-token answers for a while"
        );
    }

    /// The error to answer with, at `now`, while failed attempts are being backed off
    /// from: the last failure's, else the backoff itself.
    pub(super) fn backoff_error(&self, slot: &Slot, now: Instant) -> Error {
        slot.last_error.clone().unwrap_or_else(|| {
            Error::Unreachable(UnreachableError {
                provider: self.config.provider_name().clone(),
                backoff: slot
                    .not_before
                    .map(|not_before| not_before.saturating_duration_since(now)),
                source: None,
            })
        })
    }

    /// After a failure, lets the current token (if still valid) trigger an early refresh
    /// again once the backoff has passed.
    pub(super) async fn rearm_early_refresh_after_backoff(&self) {
        let not_before = self.lock().not_before;
        let Some(not_before) = not_before else { return };
        let token = self.current.load_full().map(|t| Arc::downgrade(&t));
        sleep_until(not_before).await;
        if let Some(token) = token.and_then(|t| t.upgrade()) {
            token.rearm_early_refresh();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::advance;

    use super::{super::testing, *};

    const TICK: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn dead_answers_for_a_token_refused_when_fresh_are_ignored_for_backoff_max_and_no_longer() {
        let (state, _) = testing::credential();
        let ignores = |generation| state.lock().ignores_dead_answers_for(generation, Instant::now());
        assert!(!ignores(3), "nothing was refused yet");

        state.refused_when_fresh(3);
        assert!(ignores(3));
        assert!(!ignores(2) && !ignores(4), "only for the token refused");
        advance(state.config.credential.client.policy.backoff_max - TICK).await;
        assert!(ignores(3), "until the end of the window");
        advance(TICK).await;
        assert!(!ignores(3), "not at its end");
    }

    #[tokio::test(start_paused = true)]
    async fn a_newer_refused_token_ends_the_window_of_the_one_before() {
        let (state, _) = testing::credential();
        state.refused_when_fresh(3);
        state.refused_when_fresh(4);
        let slot = state.lock();
        assert!(slot.ignores_dead_answers_for(4, Instant::now()));
        assert!(!slot.ignores_dead_answers_for(3, Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn each_failure_in_a_row_doubles_the_wait_and_a_success_forgets_them() {
        let (state, _) = testing::credential();
        let policy = testing::policy();
        let mut slot = Slot::default();
        assert!(!slot.backing_off(Instant::now()));
        for (failures, wait_ms) in [(1, 100), (2, 200), (3, 400)] {
            let err = Error::config(format!("failure {failures}"));
            slot.back_off(&err, &policy);
            let now = Instant::now();
            assert_eq!(slot.failures, failures);
            assert!(slot.backing_off(now + Duration::from_millis(wait_ms) - TICK));
            assert!(!slot.backing_off(now + Duration::from_millis(wait_ms)));
            // Meanwhile callers get the last failure's error.
            let answer = state.backoff_error(&slot, now).to_string();
            assert_eq!(answer, err.to_string());
        }
        slot.forget_failures();
        assert_eq!(slot.failures, 0);
        assert!(!slot.backing_off(Instant::now()));
        assert!(slot.last_error.is_none());
    }
}
