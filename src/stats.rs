//! Counters of what the cache did, cheap to read at run time.
//!
//! Cold-path events are counted where they happen (token requests, refreshes, retries,
//! failures). Cache hits happen on the hot path, where a shared write per request is the
//! very cost this crate is built to avoid: each service clone counts them in its own
//! memory and publishes them in batches.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use crate::grant::GrantType;

/// Live counters of one credential.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) cache_hits: AtomicU64,
    pub(crate) token_requests: AtomicU64,
    client_credentials: AtomicU64,
    refresh_token: AtomicU64,
    authorization_code: AtomicU64,
    pub(crate) early_refreshes: AtomicU64,
    pub(crate) dead_token_refreshes: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) failures: AtomicU64,
}

impl Stats {
    /// Counts a token request about to be sent with a grant of type `grant`.
    pub(crate) fn count_request(&self, grant: GrantType) {
        self.token_requests.fetch_add(1, Ordering::Relaxed);
        let by_grant = match grant {
            GrantType::ClientCredentials => &self.client_credentials,
            GrantType::RefreshToken => &self.refresh_token,
            GrantType::AuthorizationCode => &self.authorization_code,
        };
        by_grant.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `other`'s counts to these.
    pub(crate) fn add(&self, other: &Stats) {
        let pairs = [
            (&self.cache_hits, &other.cache_hits),
            (&self.token_requests, &other.token_requests),
            (&self.client_credentials, &other.client_credentials),
            (&self.refresh_token, &other.refresh_token),
            (&self.authorization_code, &other.authorization_code),
            (&self.early_refreshes, &other.early_refreshes),
            (&self.dead_token_refreshes, &other.dead_token_refreshes),
            (&self.retries, &other.retries),
            (&self.failures, &other.failures),
        ];
        for (total, count) in pairs {
            total.fetch_add(count.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(
        &self,
        key: &str,
        provider: &str,
        until_refresh: Option<Duration>,
    ) -> CredentialStats {
        CredentialStats {
            provider: provider.to_owned(),
            credential: key.to_owned(),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
            token_requests: self.token_requests.load(Ordering::Relaxed),
            client_credentials_requests: self.client_credentials.load(Ordering::Relaxed),
            refresh_token_requests: self.refresh_token.load(Ordering::Relaxed),
            authorization_code_requests: self.authorization_code.load(Ordering::Relaxed),
            until_refresh,
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
    /// Requests of the application's own credentials that found a fresh token and were
    /// sent at once. Counted without writing shared memory on each request: a long-lived
    /// service clone counts in its own memory and adds its count here every 1,024 hits
    /// and when it is dropped; clones too young to keep copies of their own (a clone per
    /// request) are counted per thread and credential and added 64 at a time. So the last
    /// few hits of live clones and threads are not included yet.
    pub cache_hits: u64,
    /// Token requests sent (successful or not).
    pub token_requests: u64,
    /// Of those, `client_credentials` grants.
    pub client_credentials_requests: u64,
    /// Of those, `refresh_token` grants.
    pub refresh_token_requests: u64,
    /// Of those, `authorization_code` exchanges.
    pub authorization_code_requests: u64,
    /// How long until the current token enters its refresh window: zero when it is in
    /// it, `None` when there is no usable token.
    pub until_refresh: Option<Duration>,
    /// Refreshes started because a token entered its refresh window.
    pub early_refreshes: u64,
    /// Refreshes started because an API answer declared the token dead.
    pub dead_token_refreshes: u64,
    /// Requests sent a second time after a dead-token answer.
    pub retries: u64,
    /// Token requests that failed.
    pub failures: u64,
}
