//! Where tokens live between restarts.
//!
//! A [`TokenStore`] keeps each credential's [`StoredTokens`] under its
//! [`CredentialKey`]: provider, client, grant, scopes and subject, so two users' (or two
//! scope sets') tokens are never confused. Refresh tokens are the reason a store exists:
//! a user's grant cannot be recovered without the user, and a provider that rotates
//! refresh tokens invalidates the old one on every refresh.
//!
//! - [`MemoryStore`], the default, keeps tokens for the life of the process.
//! - [`FileStore`] keeps one private file per credential, written atomically, so tokens
//!   survive restarts and crashes.
//! - `RedisStore` (feature `redis`) keeps tokens in Redis for an application's
//!   replicas, and offers them a refresh lease ([`RefreshCoordination`]) so that they
//!   refresh each credential once between them.
//! - [`Notifying`] wraps any store and calls back after every change, so an application
//!   can persist or audit elsewhere.
//! - `EncryptedStore` (feature `encryption`) wraps any store and encrypts the tokens
//!   before it sees them, with keys that can be rotated.
//! - Anything else (a database, a secrets manager) is an implementation of [`TokenStore`].
//!
//! Stores are used as `Arc<dyn TokenStore>`; every method returns a boxed future
//! ([`BoxFuture`]), which is fine on this cold path: a store is read at start-up and
//! written when tokens change, never on a request's way through the layer.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use tower_oauth2::{Credential, Provider, secret::RefreshToken};
//! use tower_oauth2::store::{MemoryStore, StoredTokens, TokenStore};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_oauth2::BoxError> {
//! let provider = Provider::standard("https://auth.example.com/token");
//! let alice = Credential::client_credentials(provider.clone(), "app", "s").subject("alice").key();
//! let bob = Credential::client_credentials(provider, "app", "s").subject("bob").key();
//!
//! let store: Arc<dyn TokenStore> = Arc::new(MemoryStore::new());
//! store.save(&alice, &StoredTokens::new().with_refresh_token(RefreshToken::new("rt-alice"))).await?;
//!
//! let loaded = store.load(&alice).await?.expect("saved above");
//! assert_eq!(loaded.refresh_token.unwrap().secret(), "rt-alice");
//! assert!(store.load(&bob).await?.is_none());
//!
//! store.delete(&alice).await?;
//! assert!(store.load(&alice).await?.is_none());
//! # Ok(()) }
//! ```
//!
//! # File format
//!
//! A [`FileStore`] directory holds one file per key. Its name is the lowercase hex
//! SHA-256 of the key's canonical encoding (the compact JSON array
//! `[provider, client_id, grant, [scopes…], subject or null]`) followed by `.json`; it
//! holds one JSON object:
//!
//! ```json
//! {
//!   "format": "tower-oauth2 token store",
//!   "version": 1,
//!   "key": {
//!     "provider": "acme",
//!     "client_id": "app",
//!     "grant": "authorization_code",
//!     "scopes": ["read"],
//!     "subject": "alice"
//!   },
//!   "refresh_token": "…",
//!   "access_token": null,
//!   "expires_at": { "secs": 1700000000, "nanos": 0 },
//!   "scope": "read"
//! }
//! ```
//!
//! Field order does not matter; absent values are `null`; `expires_at` is wall-clock
//! time since the Unix epoch. A load checks `format`, `version` and every field of
//! `key`, so a foreign, damaged or misplaced file is an error ([`StoreErrorKind`]), never
//! another credential's tokens. The name is not derived from the key's `Display`, which
//! joins fields with `/` and so prints some different keys alike (a URL scope and a
//! subject, say). A change to how names are derived would orphan every existing file
//! (they would no longer be found), so it comes with a new `version` and a migration.
//! Temporary files are named `<name>.json.<unique>.tmp`.
//!
//! # Writing a store
//!
//! Implement the three methods with `Box::pin(async move { … })`. This one keeps only
//! refresh tokens, whatever its inner store is, so access tokens never reach the disk:
//!
//! ```
//! use tower_oauth2::CredentialKey;
//! use tower_oauth2::store::{BoxFuture, StoreError, StoredTokens, TokenStore};
//!
//! #[derive(Debug)]
//! struct RefreshOnly<S>(S);
//!
//! impl<S: TokenStore> TokenStore for RefreshOnly<S> {
//!     fn load<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Option<StoredTokens>, StoreError>> {
//!         self.0.load(key)
//!     }
//!
//!     fn save<'a>(&'a self, key: &'a CredentialKey, tokens: &'a StoredTokens) -> BoxFuture<'a, Result<(), StoreError>> {
//!         Box::pin(async move {
//!             let mut kept = StoredTokens::new();
//!             kept.refresh_token = tokens.refresh_token.clone();
//!             kept.scope = tokens.scope.clone();
//!             self.0.save(key, &kept).await
//!         })
//!     }
//!
//!     fn delete<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<(), StoreError>> {
//!         self.0.delete(key)
//!     }
//! }
//! ```
//!
//! A store's errors are [`StoreError`]s: build them with [`StoreError::new`],
//! [`StoreError::io`] or [`StoreError::corrupt`], and keep tokens out of their causes.

#[cfg(feature = "encryption")]
#[cfg_attr(docsrs, doc(cfg(feature = "encryption")))]
pub mod encrypted;
mod error;
mod file;
mod format;
mod lease;
mod memory;
mod notifying;
#[cfg(test)]
mod proptests;
#[cfg(feature = "redis")]
mod redis;
mod tokens;

use std::{future::Future, pin::Pin, sync::Arc};

#[cfg(feature = "encryption")]
#[doc(inline)]
pub use self::encrypted::{EncryptedStore, EncryptionKey, EncryptionKeyError, Keyring};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
#[doc(inline)]
pub use self::redis::{RedisKeys, RedisStore, RedisStoreBuilder};
#[doc(inline)]
pub use self::{
    error::{StoreError, StoreErrorKind, StoreOperation},
    file::FileStore,
    lease::{Lease, LeaseSettings, RefreshCoordination},
    memory::MemoryStore,
    notifying::{Notifying, TokenChange},
    tokens::StoredTokens,
};
pub(crate) use self::{lease::InnerLease, tokens::wall_clock_now};
use crate::CredentialKey;

/// A boxed future that can be sent between threads, as the methods of [`TokenStore`]
/// return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where tokens live between restarts: load, save and delete one credential's
/// [`StoredTokens`] by its [`CredentialKey`].
///
/// The trait is object safe and used as `Arc<dyn TokenStore>`. Implementations must be
/// safe to call concurrently: a `save` that returned `Ok` is what later `load`s return
/// (until the next `save` or `delete` of that key), and a `save` that failed must leave
/// the previous tokens loadable. See the [module docs](self#writing-a-store) for a worked
/// implementation.
pub trait TokenStore: Send + Sync + 'static {
    /// The tokens stored for `key`, or `None` if there are none.
    fn load<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Option<StoredTokens>, StoreError>>;

    /// Stores `tokens` for `key`, replacing whatever was there.
    fn save<'a>(
        &'a self,
        key: &'a CredentialKey,
        tokens: &'a StoredTokens,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Removes the tokens of `key`. Deleting a key with no tokens succeeds.
    fn delete<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<(), StoreError>>;

    /// The lease operations of a store shared by several processes, with which they
    /// refresh each credential once between them (see [`RefreshCoordination`]). `None`,
    /// the default, for a store of one process: each refreshes on its own.
    fn coordination(&self) -> Option<&dyn RefreshCoordination> {
        None
    }
}

/// A store as a credential or a users' group holds it: shared, and printed by its
/// presence only (a store need not implement `Debug`, and may hold tokens).
#[derive(Clone)]
pub(crate) struct StoreHandle(pub(crate) Arc<dyn TokenStore>);

impl StoreHandle {
    pub(crate) fn new(store: impl TokenStore) -> Self {
        Self(Arc::new(store))
    }
}

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenStore(..)")
    }
}

impl<T: TokenStore + ?Sized> TokenStore for Arc<T> {
    fn load<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Option<StoredTokens>, StoreError>> {
        (**self).load(key)
    }

    fn save<'a>(
        &'a self,
        key: &'a CredentialKey,
        tokens: &'a StoredTokens,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).save(key, tokens)
    }

    fn delete<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).delete(key)
    }

    fn coordination(&self) -> Option<&dyn RefreshCoordination> {
        (**self).coordination()
    }
}

impl<T: TokenStore + ?Sized> TokenStore for Box<T> {
    fn load<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Option<StoredTokens>, StoreError>> {
        (**self).load(key)
    }

    fn save<'a>(
        &'a self,
        key: &'a CredentialKey,
        tokens: &'a StoredTokens,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).save(key, tokens)
    }

    fn delete<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<(), StoreError>> {
        (**self).delete(key)
    }

    fn coordination(&self) -> Option<&dyn RefreshCoordination> {
        (**self).coordination()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Compiles only while the trait stays object safe and its objects shareable.
    #[allow(dead_code)]
    fn _object_safe(store: Arc<dyn TokenStore>) -> impl Send + Sync + 'static {
        let boxed: Box<dyn TokenStore> = Box::new(store.clone());
        (Notifying::new(store, |_, _| {}), boxed)
    }
}
