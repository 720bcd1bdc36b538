//! When a credential refreshes its token, and how it backs off from a failing token
//! endpoint.

use std::{fmt, time::Duration};

/// When to refresh, how long to wait for a token endpoint, and how to back off from a
/// failing one.
///
/// A token's *refresh point* is its expiry minus a lead of `margin` plus a random
/// jitter of up to `max_jitter`, the lead never exceeding half the token's lifetime.
/// Between the refresh point and expiry, requests keep using the token while one
/// background refresh runs.
///
/// After `n` consecutive failed token requests, the next one is sent no sooner than
/// `min(backoff_max, backoff_base × 2ⁿ⁻¹) × u` after the last, with `u` uniform in
/// `[0.5, 1]`. With the defaults (200 ms, 30 s) a dead endpoint sees at most 4
/// requests in its first second of failure, and at most one every 15 s after that.
#[derive(Clone, Copy)]
pub struct RefreshPolicy {
    pub(crate) margin: Duration,
    pub(crate) max_jitter: Duration,
    pub(crate) timeout: Duration,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) random: fn() -> f64,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            margin: Duration::from_secs(60),
            max_jitter: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            random: fastrand::f64,
        }
    }
}

impl RefreshPolicy {
    /// How long before expiry refreshing starts (default 60 s, at most half the lifetime).
    pub fn margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// The largest random addition to the margin (default 5 s), so that many processes
    /// holding tokens from the same moment do not refresh at the same instant.
    pub fn max_jitter(mut self, max_jitter: Duration) -> Self {
        self.max_jitter = max_jitter;
        self
    }

    /// How long one token request may take, connection included (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The first backoff step and its cap (defaults 200 ms and 30 s).
    pub fn backoff(mut self, base: Duration, max: Duration) -> Self {
        self.backoff_base = base;
        self.backoff_max = max;
        self
    }

    /// The source of randomness for jitter, returning values in `[0, 1)`. Tests pass
    /// `|| 0.0` for exact refresh points.
    pub fn random(mut self, random: fn() -> f64) -> Self {
        self.random = random;
        self
    }

    /// The refresh point of a token issued at `issued_at` that expires at `expires_at`.
    pub(crate) fn refresh_point(
        &self,
        issued_at: tokio::time::Instant,
        expires_at: tokio::time::Instant,
    ) -> tokio::time::Instant {
        let lifetime = expires_at.saturating_duration_since(issued_at);
        let jitter = self.max_jitter.mul_f64((self.random)().clamp(0.0, 1.0));
        let lead = self.margin.saturating_add(jitter).min(lifetime / 2);
        expires_at - lead
    }

    /// How long to wait before the next token request after `failures` in a row.
    pub(crate) fn backoff_after(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(20);
        let step = self
            .backoff_base
            .saturating_mul(1 << exponent)
            .min(self.backoff_max);
        step.mul_f64(0.5 + 0.5 * (self.random)().clamp(0.0, 1.0))
    }
}

impl fmt::Debug for RefreshPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshPolicy")
            .field("margin", &self.margin)
            .field("max_jitter", &self.max_jitter)
            .field("timeout", &self.timeout)
            .field("backoff_base", &self.backoff_base)
            .field("backoff_max", &self.backoff_max)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn no_jitter() -> f64 {
        0.0
    }

    fn full_jitter() -> f64 {
        1.0
    }

    #[test]
    fn refresh_point_is_expiry_minus_margin() {
        let policy = RefreshPolicy::default().random(no_jitter);
        let now = Instant::now();
        let expires = now + Duration::from_secs(3600);
        assert_eq!(
            policy.refresh_point(now, expires),
            expires - Duration::from_secs(60)
        );
    }

    #[test]
    fn refresh_point_never_before_half_the_lifetime() {
        let policy = RefreshPolicy::default().random(full_jitter);
        let now = Instant::now();
        let expires = now + Duration::from_secs(30);
        assert_eq!(policy.refresh_point(now, expires), now + Duration::from_secs(15));
    }

    #[test]
    fn jitter_widens_the_lead_up_to_its_maximum() {
        let policy = RefreshPolicy::default().random(full_jitter);
        let now = Instant::now();
        let expires = now + Duration::from_secs(3600);
        assert_eq!(
            policy.refresh_point(now, expires),
            expires - Duration::from_secs(65)
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RefreshPolicy::default().random(full_jitter);
        let steps: Vec<_> = (1..=10).map(|n| policy.backoff_after(n).as_millis()).collect();
        assert_eq!(
            steps,
            [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]
        );
        let low = RefreshPolicy::default().random(no_jitter);
        assert_eq!(low.backoff_after(1), Duration::from_millis(100));
        assert_eq!(low.backoff_after(u32::MAX), Duration::from_secs(15));
    }
}
