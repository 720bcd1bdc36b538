//! Refreshes coordinated across processes that share a store: the contract, documented
//! on [`RefreshCoordination`].

use std::time::Duration;

use super::{BoxFuture, StoreError, StoredTokens};
use crate::CredentialKey;

/// One grant of a credential's refresh lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The fencing number: strictly greater than that of every lease granted before for
    /// the same credential.
    pub fence: u64,
}

/// How the credential core uses a [`RefreshCoordination`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaseSettings {
    /// How long a lease lasts unless released (a holder that dies blocks refreshes
    /// this long). It must be longer than the token request timeout
    /// ([`RefreshPolicy::timeout`](crate::RefreshPolicy::timeout)) of every credential
    /// that uses it: [`CredentialRegistryBuilder::build`](crate::CredentialRegistryBuilder::build)
    /// refuses a shorter one with [`Error::Config`](crate::Error::Config).
    pub ttl: Duration,
    /// The longest a request that needs a new token waits, in all, before failing with
    /// a typed error: one deadline over every read of the store, every attempt at the
    /// lease and every wait for another replica's refresh. A store operation still
    /// running at the deadline is given up, as a [`StoreErrorKind::Io`] error (the
    /// store is too slow), and a wait for another holder ends with
    /// [`StoreErrorKind::LeaseWaitExceeded`]. Only this replica's own token request,
    /// once sent, and the fenced save of its answer run past it (a rotated refresh
    /// token must reach the store), each within its own bound: the token request
    /// timeout and the store's.
    ///
    /// [`StoreErrorKind::Io`]: super::StoreErrorKind::Io
    /// [`StoreErrorKind::LeaseWaitExceeded`]: super::StoreErrorKind::LeaseWaitExceeded
    pub max_wait: Duration,
    /// Whether, when the coordination itself fails (the shared store is down), a
    /// credential whose refresh cannot harm other replicas (client credentials, or a
    /// provider that does not rotate refresh tokens) refreshes on its own, as a
    /// single process would. Rotating refresh tokens never do: two replicas presenting
    /// one refresh token is what the lease prevents.
    pub local_fallback: bool,
}

impl LeaseSettings {
    /// A lease of `ttl`, waited for at most `max_wait`, with the local fallback on.
    pub fn new(ttl: Duration, max_wait: Duration) -> Self {
        Self {
            ttl,
            max_wait,
            local_fallback: true,
        }
    }

    /// Whether to fall back to a local refresh when coordination fails (see the field).
    pub fn local_fallback(mut self, allowed: bool) -> Self {
        self.local_fallback = allowed;
        self
    }
}

impl Default for LeaseSettings {
    /// A 15 s lease, waited for at most 20 s, with the local fallback on.
    ///
    /// The lease outlasts the default token request timeout
    /// ([`RefreshPolicy::timeout`](crate::RefreshPolicy::timeout), 10 s) by 5 s, so that
    /// it cannot expire while its holder still waits for the provider; the registry
    /// refuses a lease that does not outlast the timeout. The wait outlasts the lease,
    /// so that a replica waiting behind a holder that died takes over when the dead
    /// holder's lease expires instead of failing at that moment.
    fn default() -> Self {
        Self::new(Duration::from_secs(15), Duration::from_secs(20))
    }
}

/// The lease operations of a store shared by several processes, with which they refresh
/// each credential once between them.
///
/// Several replicas of an application that share one credential through one store would
/// each refresh it on their own: N token requests per refresh, and with rotating refresh
/// tokens, N presentations of one refresh token, of which all but the first are refused
/// (and some servers then revoke the whole grant). A store that several processes share
/// can offer a `RefreshCoordination`, through
/// [`TokenStore::coordination`](super::TokenStore::coordination): a lease per credential, with a fencing number,
/// that one replica holds while it refreshes. The credential core then refreshes as
/// follows:
///
/// 1. read the store: tokens newer than the ones held (another replica refreshed) are
///    used, with no token request;
/// 2. take the lease; if another replica holds it, wait for the store to change (at most
///    [`LeaseSettings::max_wait`] in all) and start again;
/// 3. holding the lease, read the store once more (the previous holder may have finished
///    just now), refresh with the newest refresh token, and save with
///    [`save_fenced`](RefreshCoordination::save_fenced), which writes only if no lease
///    was granted after this one;
/// 4. release the lease.
///
/// A holder that dies leaves a lease that expires after [`LeaseSettings::ttl`]. A holder
/// that comes back after its lease expired and another was granted cannot overwrite the
/// newer tokens.
pub trait RefreshCoordination: Send + Sync {
    /// How the core should use this coordination.
    fn settings(&self) -> LeaseSettings;

    /// Takes `key`'s lease for [`LeaseSettings::ttl`]: `Some` with its fencing number,
    /// or `None` while another holder has it.
    fn try_lease<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Option<Lease>, StoreError>>;

    /// Saves `tokens` for `key` only if no lease of `key` was granted after `lease`
    /// (whether or not `lease` itself has expired): `Ok(false)` when a newer lease
    /// exists and nothing was written.
    fn save_fenced<'a>(
        &'a self,
        key: &'a CredentialKey,
        tokens: &'a StoredTokens,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;

    /// Releases `lease`, if it is still the one held; releasing an expired or replaced
    /// lease does nothing.
    fn release<'a>(
        &'a self,
        key: &'a CredentialKey,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Resolves when `key`'s tokens or lease may have changed (a notification, or a
    /// polling interval), and at the latest after `at_most`. Spurious wake-ups are
    /// allowed: the core reads the store again after each.
    fn changed<'a>(
        &'a self,
        key: &'a CredentialKey,
        at_most: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// A wrapping store's view of its inner store's coordination: every lease operation
/// forwarded as it is, or, when the inner store has none, answered as by a store without
/// coordination. The wrappers (encryption, change notifications) differ only in
/// `save_fenced`, and write just that.
#[derive(Clone, Copy)]
pub(crate) struct InnerLease<'a>(pub(crate) Option<&'a dyn RefreshCoordination>);

impl<'a> InnerLease<'a> {
    pub(crate) fn settings(self) -> LeaseSettings {
        self.0.map(|inner| inner.settings()).unwrap_or_default()
    }

    pub(crate) fn try_lease(
        self,
        key: &'a CredentialKey,
    ) -> BoxFuture<'a, Result<Option<Lease>, StoreError>> {
        match self.0 {
            Some(inner) => inner.try_lease(key),
            None => Box::pin(async { Ok(None) }),
        }
    }

    pub(crate) fn release(
        self,
        key: &'a CredentialKey,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        match self.0 {
            Some(inner) => inner.release(key, lease),
            None => Box::pin(async { Ok(()) }),
        }
    }

    pub(crate) fn changed(
        self,
        key: &'a CredentialKey,
        at_most: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        match self.0 {
            Some(inner) => inner.changed(key, at_most),
            None => Box::pin(async move {
                tokio::time::sleep(at_most).await;
                Ok(())
            }),
        }
    }
}
