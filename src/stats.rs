//! Counters of what the cache did, cheap to read at run time.
//!
//! Only cold-path events are counted (token requests, refreshes, retries, failures): a
//! counter bumped on every request would be a shared write on the hot path, the very
//! cost this crate is built to avoid.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters of one credential.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) token_requests: AtomicU64,
    pub(crate) early_refreshes: AtomicU64,
    pub(crate) dead_token_refreshes: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) failures: AtomicU64,
}

impl Stats {
    pub(crate) fn snapshot(&self, key: &str, provider: &str) -> CredentialStats {
        CredentialStats {
            provider: provider.to_owned(),
            credential: key.to_owned(),
            token_requests: self.token_requests.load(Ordering::Relaxed),
            early_refreshes: self.early_refreshes.load(Ordering::Relaxed),
            dead_token_refreshes: self.dead_token_refreshes.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// A snapshot of one credential's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CredentialStats {
    /// The provider's name.
    pub provider: String,
    /// The credential's key (provider, client id, grant, scopes).
    pub credential: String,
    /// Token requests sent (successful or not).
    pub token_requests: u64,
    /// Refreshes started because a token entered its refresh window.
    pub early_refreshes: u64,
    /// Refreshes started because an API answer declared the token dead.
    pub dead_token_refreshes: u64,
    /// Requests sent a second time after a dead-token answer.
    pub retries: u64,
    /// Token requests that failed.
    pub failures: u64,
}
