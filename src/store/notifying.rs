//! A store wrapper that tells the application whenever tokens change.

use std::{any, fmt, sync::Arc, time::Duration};

use super::{
    BoxFuture, InnerLease, Lease, LeaseSettings, RefreshCoordination, StoreError, StoredTokens, TokenStore,
};
use crate::CredentialKey;

/// What happened to a credential's stored tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenChange {
    /// New tokens were saved (after a token request, a refresh, a rotation).
    Saved,
    /// The tokens were deleted (logout, a dead grant).
    Deleted,
}

type Callback = dyn Fn(&CredentialKey, TokenChange) + Send + Sync;

/// Wraps a store and calls `callback(key, change)` after every successful save or
/// delete, so an application can mirror tokens elsewhere, audit changes or wake other
/// processes.
///
/// The callback gets the key and what changed, never a token: to read the new tokens it
/// [`load`](TokenStore::load)s them from the store. It is not called when the operation
/// fails, nor for loads, and it runs inline on the task that saved, after the inner
/// store finished: keep it quick and send longer work to a channel or a task. A delete
/// of a key with no tokens succeeds, and so is reported too.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use tower_oauth2::{Credential, Provider, secret::RefreshToken};
/// use tower_oauth2::store::{MemoryStore, Notifying, StoredTokens, TokenChange, TokenStore};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_oauth2::BoxError> {
/// let changes = Arc::new(Mutex::new(Vec::new()));
/// let seen = changes.clone();
/// let store = Notifying::new(MemoryStore::new(), move |key, change| {
///     seen.lock().unwrap().push((key.to_string(), change));
/// });
///
/// let key = Credential::client_credentials(Provider::standard("https://auth.example.com/token"), "app", "s")
///     .subject("alice")
///     .key();
/// store.save(&key, &StoredTokens::new().with_refresh_token(RefreshToken::new("rt"))).await?;
/// store.delete(&key).await?;
/// assert_eq!(
///     *changes.lock().unwrap(),
///     [(key.to_string(), TokenChange::Saved), (key.to_string(), TokenChange::Deleted)]
/// );
/// # Ok(()) }
/// ```
pub struct Notifying<S> {
    inner: S,
    callback: Arc<Callback>,
    callback_name: &'static str,
}

impl<S> Notifying<S> {
    /// Wraps `inner`, calling `callback` after each successful save or delete.
    pub fn new<F>(inner: S, callback: F) -> Self
    where
        F: Fn(&CredentialKey, TokenChange) + Send + Sync + 'static,
    {
        Self {
            inner,
            callback: Arc::new(callback),
            callback_name: any::type_name::<F>(),
        }
    }

    /// The wrapped store.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped store, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped store, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for Notifying<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            callback: self.callback.clone(),
            callback_name: self.callback_name,
        }
    }
}

// Written by hand: a closure has no `Debug`, so its type name stands in for it.
impl<S: fmt::Debug> fmt::Debug for Notifying<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Notifying")
            .field("inner", &self.inner)
            .field("callback", &format_args!("{}", self.callback_name))
            .finish()
    }
}

impl<S: TokenStore> TokenStore for Notifying<S> {
    fn load<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Option<StoredTokens>, StoreError>> {
        self.inner.load(key)
    }

    fn save<'a>(
        &'a self,
        key: &'a CredentialKey,
        tokens: &'a StoredTokens,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.inner.save(key, tokens).await?;
            (self.callback)(key, TokenChange::Saved);
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.inner.delete(key).await?;
            (self.callback)(key, TokenChange::Deleted);
            Ok(())
        })
    }

    // The inner store's lease operations, with fenced saves reported like any other.
    fn coordination(&self) -> Option<&dyn RefreshCoordination> {
        self.inner
            .coordination()
            .map(|_| self as &dyn RefreshCoordination)
    }
}

impl<S: TokenStore> RefreshCoordination for Notifying<S> {
    fn settings(&self) -> LeaseSettings {
        InnerLease(self.inner.coordination()).settings()
    }

    fn try_lease<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Option<Lease>, StoreError>> {
        InnerLease(self.inner.coordination()).try_lease(key)
    }

    fn save_fenced<'a>(
        &'a self,
        key: &'a CredentialKey,
        tokens: &'a StoredTokens,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let Some(inner) = self.inner.coordination() else {
                return Ok(false);
            };
            let saved = inner.save_fenced(key, tokens, lease).await?;
            if saved {
                (self.callback)(key, TokenChange::Saved);
            }
            Ok(saved)
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a CredentialKey,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        InnerLease(self.inner.coordination()).release(key, lease)
    }

    fn changed<'a>(
        &'a self,
        key: &'a CredentialKey,
        at_most: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        InnerLease(self.inner.coordination()).changed(key, at_most)
    }
}
