//! The default store: tokens in memory, gone when the process ends.

use std::{
    collections::HashMap,
    fmt,
    sync::{Mutex, PoisonError},
};

use super::{BoxFuture, StoreError, StoredTokens, TokenStore};
use crate::CredentialKey;

/// Tokens in a map in memory: the default store. Nothing survives the process; use
/// [`FileStore`](super::FileStore) or your own [`TokenStore`] for that.
///
/// Every operation completes on its first poll and never fails. The map's lock is held
/// only to copy a record in or out; there is no `.await` to hold it across.
///
/// `Debug` shows how many credentials have tokens, nothing else.
#[derive(Default)]
pub struct MemoryStore {
    tokens: Mutex<HashMap<CredentialKey, StoredTokens>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<CredentialKey, StoredTokens>> {
        // Every operation is one map call, so a panic elsewhere cannot leave it half done.
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("credentials", &self.map().len())
            .finish()
    }
}

impl TokenStore for MemoryStore {
    fn load<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Option<StoredTokens>, StoreError>> {
        Box::pin(async move { Ok(self.map().get(key).cloned()) })
    }

    fn save<'a>(
        &'a self,
        key: &'a CredentialKey,
        tokens: &'a StoredTokens,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.map().insert(key.clone(), tokens.clone());
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.map().remove(key);
            Ok(())
        })
    }
}
