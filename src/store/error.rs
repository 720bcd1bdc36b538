//! The error of a token store.

use std::{borrow::Cow, error::Error as StdError, fmt, io, path::Path, sync::Arc};

use crate::{error::BoxError, CredentialKey};

/// A token store failed to open, load, save or delete.
///
/// It says which operation failed, for which credential (the key's `Display`, which
/// holds no secret) and why, with the cause behind [`source`](StdError::source). It never
/// contains a token, nor any content read from a file.
///
/// `StoreError` is `Clone` (the cause is shared behind an `Arc`), like
/// [`Error`](crate::Error), which wraps it as [`Error::Store`](crate::Error::Store).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StoreError {
    operation: StoreOperation,
    kind: StoreErrorKind,
    key: Option<Arc<str>>,
    provider: Option<Arc<str>>,
    path: Option<Arc<Path>>,
    // Our own words (a step, a reason), never content read from a file.
    detail: Option<Cow<'static, str>>,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

/// The store operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreOperation {
    /// Opening the store (e.g. creating the directory of a [`FileStore`](super::FileStore)).
    Open,
    /// [`TokenStore::load`](super::TokenStore::load).
    Load,
    /// [`TokenStore::save`](super::TokenStore::save).
    Save,
    /// [`TokenStore::delete`](super::TokenStore::delete).
    Delete,
    /// Taking, awaiting or releasing a refresh lease
    /// ([`RefreshCoordination`](super::RefreshCoordination)).
    Lease,
}

impl fmt::Display for StoreOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            StoreOperation::Open => "open",
            StoreOperation::Load => "load",
            StoreOperation::Save => "save",
            StoreOperation::Delete => "delete",
            StoreOperation::Lease => "lease",
        })
    }
}

/// What kind of failure a [`StoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// Reading or writing failed; the `io::Error` is the [`source`](StdError::source).
    Io,
    /// What the store holds for the key is not a valid record: damaged, truncated, or
    /// not written by this crate.
    Corrupt,
    /// The record found under the key's name belongs to another credential.
    KeyMismatch,
    /// The record was written in a format version this crate does not read.
    UnsupportedVersion,
    /// Another process held the credential's refresh lease, and no new tokens came,
    /// for longer than [`LeaseSettings::max_wait`](super::LeaseSettings::max_wait).
    LeaseWaitExceeded,
    /// Anything else, e.g. the failure of a custom store (see [`StoreError::new`]).
    Other,
}

impl StoreError {
    /// A failure of a custom store, with its cause.
    ///
    /// The cause's `Display` and `Debug` become part of this error's output: they must
    /// not contain a token.
    pub fn new(operation: StoreOperation, key: &CredentialKey, cause: impl Into<BoxError>) -> Self {
        Self::keyed(operation, StoreErrorKind::Other, key).with_source(Arc::from(cause.into()))
    }

    /// An I/O failure of a custom store.
    pub fn io(operation: StoreOperation, key: &CredentialKey, err: io::Error) -> Self {
        Self::keyed(operation, StoreErrorKind::Io, key).with_source(Arc::new(err))
    }

    /// A custom store found something it cannot read under `key`. `reason` is in the
    /// store's own words and must not quote what it read.
    pub fn corrupt(operation: StoreOperation, key: &CredentialKey, reason: impl Into<String>) -> Self {
        Self::keyed(operation, StoreErrorKind::Corrupt, key).with_detail(reason.into())
    }

    pub(crate) fn keyed(operation: StoreOperation, kind: StoreErrorKind, key: &CredentialKey) -> Self {
        Self {
            operation,
            kind,
            key: Some(key.to_string().into()),
            provider: Some(key.provider().into()),
            path: None,
            detail: None,
            source: None,
        }
    }

    pub(crate) fn unkeyed(operation: StoreOperation, kind: StoreErrorKind) -> Self {
        Self {
            operation,
            kind,
            key: None,
            provider: None,
            path: None,
            detail: None,
            source: None,
        }
    }

    pub(crate) fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub(crate) fn with_path(mut self, path: Option<Arc<Path>>) -> Self {
        self.path = path;
        self
    }

    pub(crate) fn with_source(mut self, source: Arc<dyn StdError + Send + Sync>) -> Self {
        self.source = Some(source);
        self
    }

    /// The operation that failed.
    pub fn operation(&self) -> StoreOperation {
        self.operation
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// The credential key involved, as its `Display` prints it; `None` for
    /// [`StoreOperation::Open`].
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The provider of the credential involved; `None` for [`StoreOperation::Open`].
    pub fn provider(&self) -> Option<&str> {
        self.provider.as_deref()
    }

    /// The file involved, for a [`FileStore`](super::FileStore).
    pub fn file(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.key, &self.path) {
            (Some(key), _) => write!(
                f,
                "token store could not {} the tokens of `{key}`",
                self.operation
            )?,
            (None, Some(path)) => write!(f, "token store could not {} `{}`", self.operation, path.display())?,
            (None, None) => write!(f, "token store could not {}", self.operation)?,
        }
        let what = match self.kind {
            StoreErrorKind::Io => "I/O error",
            StoreErrorKind::Corrupt => "not a valid token record",
            StoreErrorKind::KeyMismatch => "the record belongs to another credential",
            StoreErrorKind::UnsupportedVersion => "unsupported format version",
            StoreErrorKind::LeaseWaitExceeded => "another process held the refresh lease too long",
            StoreErrorKind::Other => "store failure",
        };
        write!(f, ": {what}")?;
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn StdError + 'static))
    }
}
