//! A memory store that asks a hook before each operation, for tests that count, record
//! or inject failures and panics in a store.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, UNIX_EPOCH},
};

use tower_oauth2::{
    secret::{AccessToken, RefreshToken},
    store::{BoxFuture, StoreError, StoreOperation, StoredTokens, TokenStore},
    CredentialKey, MemoryStore,
};

type Hook =
    dyn Fn(StoreOperation, &CredentialKey, Option<&StoredTokens>) -> Result<(), StoreError> + Send + Sync;

/// Keeps tokens in memory; before each load, save and delete, counts it and calls the
/// hook (with the tokens, for a save), which may fail it with an error or panic. The
/// hook runs when the operation is called, before its future is polled.
pub struct Hooked {
    inner: MemoryStore,
    hook: Box<Hook>,
    calls: Arc<Mutex<HashMap<StoreOperation, usize>>>,
}

impl Default for Hooked {
    fn default() -> Self {
        Self::new(|_, _, _| Ok(()))
    }
}

impl Hooked {
    pub fn new(
        hook: impl Fn(StoreOperation, &CredentialKey, Option<&StoredTokens>) -> Result<(), StoreError>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        Self {
            inner: MemoryStore::new(),
            hook: Box::new(hook),
            calls: Arc::default(),
        }
    }

    /// How many times `operation` was called.
    pub fn calls(&self, operation: StoreOperation) -> usize {
        self.calls.lock().unwrap().get(&operation).copied().unwrap_or(0)
    }

    pub fn loads(&self) -> usize {
        self.calls(StoreOperation::Load)
    }

    fn before<'a, T: Send + 'a>(
        &self,
        operation: StoreOperation,
        key: &CredentialKey,
        tokens: Option<&StoredTokens>,
    ) -> Result<(), BoxFuture<'a, Result<T, StoreError>>> {
        *self.calls.lock().unwrap().entry(operation).or_default() += 1;
        (self.hook)(operation, key, tokens)
            .map_err(|err| -> BoxFuture<'a, _> { Box::pin(async move { Err(err) }) })
    }
}

impl TokenStore for Hooked {
    fn load<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Option<StoredTokens>, StoreError>> {
        match self.before(StoreOperation::Load, key, None) {
            Ok(()) => self.inner.load(key),
            Err(failed) => failed,
        }
    }

    fn save<'a>(
        &'a self,
        key: &'a CredentialKey,
        tokens: &'a StoredTokens,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        match self.before(StoreOperation::Save, key, Some(tokens)) {
            Ok(()) => self.inner.save(key, tokens),
            Err(failed) => failed,
        }
    }

    fn delete<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<(), StoreError>> {
        match self.before(StoreOperation::Delete, key, None) {
            Ok(()) => self.inner.delete(key),
            Err(failed) => failed,
        }
    }
}

/// Tokens of every kind, their values tagged with `tag`, and `scope`.
pub fn tokens_with_scope(tag: &str, scope: &str) -> StoredTokens {
    StoredTokens::new()
        .with_refresh_token(RefreshToken::new(format!("refresh-secret-{tag}")))
        .with_access_token(AccessToken::new(format!("access-secret-{tag}")))
        .with_expires_at(UNIX_EPOCH + Duration::new(1_900_000_000, 987_654_321))
        .with_scope(scope)
}
