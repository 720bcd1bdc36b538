//! The token as a credential holds it, and the timer that ages it.
//!
//! The request path never reads a clock: whether a token may be attached, or wants a
//! refresh in the background, is one atomic byte that a timer task moves from `FRESH` to
//! `STALE` at the token's refresh point and to `EXPIRED` at its expiry. Every write of
//! that byte is in this file, so the transitions can be read, and tested, in one place.
//! The value a request carries is built here too, once per token, marked sensitive.

use std::{
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicU8, Ordering},
        Arc, Weak,
    },
};

use http::HeaderValue;
use tokio::{
    task::AbortHandle,
    time::{sleep_until, Instant},
};

use crate::{provider::TokenPlacement, token::TokenSet};

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
    /// A token installed at `now`: fresh, or already in its refresh window if its refresh
    /// point is not after `now`.
    pub(super) fn new(
        generation: u64,
        value: HeaderValue,
        tokens: TokenSet,
        refresh_at: Instant,
        now: Instant,
    ) -> Self {
        Self {
            generation,
            value,
            tokens,
            refresh_at,
            state: AtomicU8::new(if refresh_at <= now { STALE } else { FRESH }),
            early_refresh_started: AtomicBool::new(false),
        }
    }

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

    /// Marks the token `EXPIRED`: it is never attached again.
    pub(super) fn expire(&self) {
        self.state.store(EXPIRED, Ordering::Release);
    }

    /// Claims the token's early refresh: `false` if it was claimed already.
    pub(super) fn claim_early_refresh(&self) -> bool {
        !self.early_refresh_started.swap(true, Ordering::AcqRel)
    }

    /// Lets the token's early refresh be claimed again (after a failed attempt's backoff).
    pub(super) fn rearm_early_refresh(&self) {
        self.early_refresh_started.store(false, Ordering::Release);
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

/// Starts the task that moves `token` to `STALE` at its refresh point and `EXPIRED` at
/// its expiry. Aborting the task moves the token on at once (see [`ExpiryWatch`]).
pub(super) fn start_expiry_timer(token: &Arc<CachedToken>) -> AbortHandle {
    let watch = ExpiryWatch {
        token: Arc::downgrade(token),
        expires_at: token.tokens.expires_at(),
        done: false,
    };
    tokio::spawn(watch_expiry(watch, token.refresh_at)).abort_handle()
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

/// Builds what goes on an API request for `tokens`, marked sensitive: for a DPoP-bound
/// token (`dpop`), `DPoP …` (the proof is made per request).
pub(crate) fn attachment(placement: &TokenPlacement, dpop: bool, tokens: &TokenSet) -> Option<HeaderValue> {
    let token = tokens.access_token().secret();
    let mut value = match placement {
        TokenPlacement::AuthorizationBearer if dpop => HeaderValue::try_from(format!("DPoP {token}")).ok()?,
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http::HeaderName;
    use tokio::time::advance;

    use super::*;
    use crate::secret::AccessToken;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    const TICK: Duration = Duration::from_millis(1);

    /// A token installed now, whose refresh point and expiry are that far away.
    fn installed(refresh_in: Duration, expires_in: Duration) -> Arc<CachedToken> {
        let now = Instant::now();
        let tokens = TokenSet::new(AccessToken::new("tok"), now + expires_in);
        let value = HeaderValue::from_static("Bearer tok");
        Arc::new(CachedToken::new(1, value, tokens, now + refresh_in, now))
    }

    fn watch(token: &Arc<CachedToken>) -> ExpiryWatch {
        ExpiryWatch {
            token: Arc::downgrade(token),
            expires_at: token.tokens.expires_at(),
            done: false,
        }
    }

    fn state(token: &CachedToken) -> u8 {
        token.state.load(Ordering::Acquire)
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_moves_a_token_to_stale_at_its_refresh_point_and_to_expired_at_its_expiry() {
        let start = Instant::now();
        let token = installed(secs(10), secs(20));
        let _timer = start_expiry_timer(&token);
        assert_eq!(state(&token), FRESH);
        assert!(token.is_fresh() && token.is_usable() && !token.wants_early_refresh());

        sleep_until(start + secs(10) - TICK).await;
        assert_eq!(state(&token), FRESH);
        sleep_until(start + secs(10) + TICK).await;
        assert_eq!(state(&token), STALE);
        assert!(!token.is_fresh() && token.is_usable() && token.wants_early_refresh());

        sleep_until(start + secs(20) - TICK).await;
        assert_eq!(state(&token), STALE);
        sleep_until(start + secs(20) + TICK).await;
        assert_eq!(state(&token), EXPIRED);
        assert!(!token.is_fresh() && !token.is_usable() && !token.wants_early_refresh());
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_installed_past_its_refresh_point_starts_stale() {
        let token = installed(Duration::ZERO, secs(20));
        assert_eq!(state(&token), STALE);
        assert!(token.wants_early_refresh());
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_expired_by_a_dead_token_answer_stays_expired_at_its_refresh_point() {
        let start = Instant::now();
        let token = installed(secs(10), secs(20));
        let _timer = start_expiry_timer(&token);
        token.expire();
        sleep_until(start + secs(10) + TICK).await;
        assert_eq!(state(&token), EXPIRED);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expiry_watch_dropped_before_the_expiry_moves_its_token_to_stale() {
        let token = installed(secs(10), secs(20));
        drop(watch(&token));
        assert_eq!(state(&token), STALE);

        // Past the refresh point too: stale, not expired, until the expiry itself.
        let token = installed(secs(10), secs(20));
        advance(secs(20) - TICK).await;
        drop(watch(&token));
        assert_eq!(state(&token), STALE);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expiry_watch_dropped_at_or_after_the_expiry_moves_its_token_to_expired() {
        let token = installed(secs(10), secs(20));
        advance(secs(20)).await;
        drop(watch(&token));
        assert_eq!(state(&token), EXPIRED);
    }

    #[tokio::test(start_paused = true)]
    async fn an_expiry_watch_that_finished_leaves_its_token_alone() {
        let token = installed(secs(10), secs(20));
        let mut finished = watch(&token);
        finished.done = true;
        drop(finished);
        assert_eq!(state(&token), FRESH);
    }

    #[tokio::test(start_paused = true)]
    async fn an_aborted_expiry_timer_moves_its_token_on_at_once() {
        let token = installed(secs(10), secs(20));
        let timer = start_expiry_timer(&token);
        advance(secs(1)).await;
        assert_eq!(state(&token), FRESH);
        timer.abort();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(state(&token), STALE);
    }

    #[test]
    fn a_tokens_early_refresh_is_claimed_once_until_rearmed() {
        let token = CachedToken::new(
            1,
            HeaderValue::from_static("Bearer tok"),
            TokenSet::new(AccessToken::new("tok"), Instant::now()),
            Instant::now(),
            Instant::now(),
        );
        assert!(token.wants_early_refresh());
        assert!(token.claim_early_refresh());
        assert!(!token.wants_early_refresh());
        assert!(!token.claim_early_refresh());
        token.rearm_early_refresh();
        assert!(token.wants_early_refresh());
        assert!(token.claim_early_refresh());
    }

    fn tokens(access_token: &str) -> TokenSet {
        TokenSet::new(AccessToken::new(access_token), Instant::now())
    }

    #[test]
    fn the_attachment_of_each_placement_is_marked_sensitive() {
        let header = TokenPlacement::Header(HeaderName::from_static("x-access-token"));
        let query = TokenPlacement::Query("access token".into());
        #[rustfmt::skip]
        let table: &[(&TokenPlacement, &str, &str)] = &[
            (&TokenPlacement::AuthorizationBearer, "tok-1", "Bearer tok-1"),
            (&header, "tok-1", "tok-1"),
            // The query pair is form-encoded, name and value.
            (&query, "a b&c=d/é", "access+token=a+b%26c%3Dd%2F%C3%A9"),
        ];
        for (placement, token, expected) in table {
            let value = attachment(placement, false, &tokens(token)).unwrap();
            assert_eq!(value.to_str().unwrap(), *expected, "{placement:?}");
            assert!(value.is_sensitive(), "{placement:?}");
        }
    }

    #[test]
    fn a_token_a_header_cannot_carry_has_no_attachment_but_in_a_query() {
        let tokens = tokens("tok\r\nx-injected: 1");
        assert!(attachment(&TokenPlacement::AuthorizationBearer, false, &tokens).is_none());
        let header = TokenPlacement::Header(HeaderName::from_static("x-access-token"));
        assert!(attachment(&header, false, &tokens).is_none());
        let query = attachment(&TokenPlacement::Query("t".into()), false, &tokens).unwrap();
        assert_eq!(query.to_str().unwrap(), "t=tok%0D%0Ax-injected%3A+1");
    }
}
