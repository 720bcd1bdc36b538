//! A durable store: one file per credential in a directory.

use std::{
    borrow::Cow,
    collections::HashMap,
    fmt,
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::{
    format::{self, DecodeError},
    BoxFuture, StoreError, StoreErrorKind, StoreOperation, StoredTokens, TokenStore,
};
use crate::CredentialKey;

/// The most a record may weigh; a bigger file is not one of ours.
const MAX_RECORD: u64 = 1024 * 1024;

/// Tokens in files, one per credential, that survive a restart.
///
/// - **One file per key**, named by the SHA-256 of the key (64 hex digits and `.json`),
///   holding a versioned JSON record that also names the key, checked on every load. See
///   [`FileStore::file`] and the [module docs](super#file-format).
/// - **Atomic writes**: a save writes a new temporary file in the same directory, syncs
///   it to disk, renames it over the old file and syncs the directory. A crash leaves the
///   old record or the new one, never a mixture; a leftover temporary file is never read
///   and is removed by the next [`open`](FileStore::open).
/// - **Private files**: on Unix every file is created with mode 0600, before any secret
///   is written to it, and a directory that `open` creates gets mode 0700. An existing
///   directory keeps its permissions (a warning is logged if others can read it).
/// - **Concurrent use in one process**: saves and deletes of one key run one at a time,
///   in the order they got the key's lock, and each runs to its end even if its caller
///   gives up; saves of different keys run in parallel. Loads take no lock: the rename
///   makes them see one whole record.
///
/// Several processes may share a directory, as long as only one saves a given key at a
/// time; `open` removes every leftover temporary file, including one another process is
/// writing at that moment, whose save then fails (and leaves the old record in place).
///
/// File I/O runs on Tokio's blocking pool: use the store within a Tokio runtime.
/// [`open`](FileStore::open) itself blocks; call it at start-up.
///
/// `FileStore` is cheap to clone; clones share the directory and the locks. Open a
/// directory once and clone the store: two stores opened separately over one directory
/// have separate locks, so while each save still lands whole, the order of two
/// concurrent saves of one key through them is not defined.
///
/// ```no_run
/// use tower_oauth2::store::{FileStore, StoredTokens, TokenStore};
/// # use tower_oauth2::{Credential, Provider, secret::RefreshToken};
///
/// # #[tokio::main] async fn main() -> Result<(), tower_oauth2::BoxError> {
/// # let key = Credential::client_credentials(Provider::standard("https://a.example/t"), "id", "s").key();
/// let store = FileStore::open("/var/lib/my-app/tokens")?;
/// store.save(&key, &StoredTokens::new().with_refresh_token(RefreshToken::new("rt"))).await?;
/// // After a restart:
/// let store = FileStore::open("/var/lib/my-app/tokens")?;
/// assert!(store.load(&key).await?.is_some());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FileStore {
    dir: Arc<Path>,
    locks: Arc<LockMap>,
    crash_before_rename: bool,
}

// Written by hand: the lock map says nothing useful, and nothing here is secret.
impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl FileStore {
    /// Opens (creating it if needed, with mode 0700 on Unix) the directory `dir` as a
    /// store, and removes temporary files a crash left behind.
    ///
    /// This blocks on file I/O.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] of kind [`Io`](StoreErrorKind::Io) if the directory cannot be
    /// created or listed, or `dir` is not a directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<FileStore, StoreError> {
        let dir: Arc<Path> = Arc::from(dir.as_ref());
        let fail = |step: &'static str, err: io::Error| {
            StoreError::unkeyed(StoreOperation::Open, StoreErrorKind::Io)
                .with_detail(step)
                .with_path(Some(dir.clone()))
                .with_source(Arc::new(err))
        };

        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&dir)
            .map_err(|e| fail("creating the directory", e))?;
        let metadata = fs::metadata(&dir).map_err(|e| fail("reading the directory's metadata", e))?;
        if !metadata.is_dir() {
            let err = io::Error::other("not a directory");
            return Err(fail("opening the directory", err));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    dir = %dir.display(),
                    mode = format_args!("{mode:o}"),
                    "token store directory is open to other users; its files are not (0600)"
                );
            }
        }

        for entry in fs::read_dir(&dir).map_err(|e| fail("listing the directory", e))? {
            let entry = entry.map_err(|e| fail("listing the directory", e))?;
            let name = entry.file_name();
            if !name.to_str().is_some_and(format::is_temp_name) {
                continue;
            }
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::debug!(file = %entry.path().display(), "removed a leftover temporary token file")
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // Harmless: loads never read temporary files.
                Err(e) => tracing::warn!(
                    file = %entry.path().display(),
                    error = %e,
                    "could not remove a leftover temporary token file"
                ),
            }
        }

        Ok(FileStore {
            dir,
            locks: Arc::default(),
            crash_before_rename: false,
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds `key`'s tokens (whether or not it exists yet).
    pub fn file(&self, key: &CredentialKey) -> PathBuf {
        self.file_of(&format::file_stem(key))
    }

    /// Test hook: every later save of this handle stops after writing and syncing its
    /// temporary file, before the rename, as if the process died there, and returns an
    /// error. The temporary file is left behind.
    #[doc(hidden)]
    pub fn crash_before_rename(mut self) -> Self {
        self.crash_before_rename = true;
        self
    }

    fn file_of(&self, stem: &str) -> PathBuf {
        self.dir.join(format!("{stem}{}", format::EXTENSION))
    }

    /// Waits for `stem`'s lock. The returned guard is moved into the blocking task, so
    /// the lock is held until the file work is done, even if the caller's future is
    /// dropped first.
    async fn lock(&self, stem: String) -> KeyLock {
        let mutex = self
            .locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(stem.clone())
            .or_default()
            .clone();
        // Registered before the wait, so a caller that gives up while waiting still
        // removes an entry nobody else uses.
        let mut lock = KeyLock {
            locks: self.locks.clone(),
            stem,
            mutex,
            guard: None,
        };
        lock.guard = Some(lock.mutex.clone().lock_owned().await);
        lock
    }
}

impl TokenStore for FileStore {
    fn load<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Option<StoredTokens>, StoreError>> {
        Box::pin(async move {
            let path: Arc<Path> = self.file(key).into();
            let bytes = {
                let path = path.clone();
                blocking(move || read_record(&path)).await
            };
            let fail = |failure: Failure| failure.into_error(StoreOperation::Load, key, &path);
            let Some(bytes) = bytes.map_err(fail)? else {
                return Ok(None);
            };
            format::decode(key, &bytes)
                .map(Some)
                .map_err(|e| fail(Failure::decode(e)))
        })
    }

    fn save<'a>(
        &'a self,
        key: &'a CredentialKey,
        tokens: &'a StoredTokens,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let stem = format::file_stem(key);
            let path: Arc<Path> = self.file_of(&stem).into();
            let record = format::encode(key, tokens);
            let crash = self.crash_before_rename;
            let lock = self.lock(stem).await;
            let (dir, target) = (self.dir.clone(), path.clone());
            blocking(move || {
                let _lock = lock;
                write_atomically(&dir, &target, &record, crash)
            })
            .await
            .map_err(|failure| failure.into_error(StoreOperation::Save, key, &path))
        })
    }

    fn delete<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let stem = format::file_stem(key);
            let path: Arc<Path> = self.file_of(&stem).into();
            let lock = self.lock(stem).await;
            let (dir, target) = (self.dir.clone(), path.clone());
            blocking(move || {
                let _lock = lock;
                match fs::remove_file(&target) {
                    Ok(()) => sync_dir(&dir),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(Failure::io("removing the file", e)),
                }
            })
            .await
            .map_err(|failure| failure.into_error(StoreOperation::Delete, key, &path))
        })
    }
}

// ===== per-key locks =====

type LockMap = Mutex<HashMap<String, Arc<AsyncMutex<()>>>>;

/// One key's write lock. On drop it removes the key's entry from the map if no one else
/// holds or waits for it, so the map does not grow with every key ever saved.
struct KeyLock {
    locks: Arc<LockMap>,
    stem: String,
    mutex: Arc<AsyncMutex<()>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.lock().unwrap_or_else(PoisonError::into_inner);
        // Every holder or waiter owns one clone, taken under the map's lock: two (the
        // map's and ours) means nobody else.
        if Arc::strong_count(&self.mutex) == 2
            && map.get(&self.stem).is_some_and(|m| Arc::ptr_eq(m, &self.mutex))
        {
            map.remove(&self.stem);
        }
    }
}

// ===== blocking file work =====

/// A failure inside the blocking task, before it is tied to an operation and a key.
struct Failure {
    kind: StoreErrorKind,
    detail: Option<Cow<'static, str>>,
    source: Option<io::Error>,
}

impl Failure {
    fn io(step: &'static str, err: io::Error) -> Self {
        Self {
            kind: StoreErrorKind::Io,
            detail: Some(step.into()),
            source: Some(err),
        }
    }

    fn decode(err: DecodeError) -> Self {
        let (kind, detail) = match err {
            DecodeError::Corrupt(reason) => (StoreErrorKind::Corrupt, Some(reason)),
            DecodeError::KeyMismatch => (StoreErrorKind::KeyMismatch, None),
            DecodeError::UnsupportedVersion(version) => (
                StoreErrorKind::UnsupportedVersion,
                Some(version.to_string().into()),
            ),
        };
        Self {
            kind,
            detail,
            source: None,
        }
    }

    fn other(detail: &'static str) -> Self {
        Self {
            kind: StoreErrorKind::Other,
            detail: Some(detail.into()),
            source: None,
        }
    }

    fn into_error(self, operation: StoreOperation, key: &CredentialKey, path: &Arc<Path>) -> StoreError {
        let mut err = StoreError::keyed(operation, self.kind, key).with_path(Some(path.clone()));
        if let Some(detail) = self.detail {
            err = err.with_detail(detail);
        }
        if let Some(source) = self.source {
            err = err.with_source(Arc::new(source));
        }
        err
    }
}

async fn blocking<T, F>(work: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Failure> + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join) if join.is_panic() => Err(Failure::other("the file task panicked")),
        Err(_) => Err(Failure::other(
            "the file task was cancelled; is the runtime shutting down?",
        )),
    }
}

/// The record's bytes, or `None` if there is no file.
///
/// Only a regular file is read. The file is opened without blocking, so that a FIFO
/// (or a device) put where a record belongs cannot pin a blocking thread in `open`
/// forever waiting for a writer; then anything that is not a regular file is refused.
fn read_record(path: &Path) -> Result<Option<Vec<u8>>, Failure> {
    let mut options = OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Failure::io("opening the file", e)),
    };
    let metadata = file
        .metadata()
        .map_err(|e| Failure::io("reading the file's metadata", e))?;
    if !metadata.is_file() {
        return Err(Failure::decode(DecodeError::Corrupt("not a regular file".into())));
    }
    let mut bytes = Vec::new();
    file.take(MAX_RECORD + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Failure::io("reading the file", e))?;
    if bytes.len() as u64 > MAX_RECORD {
        return Err(Failure::decode(DecodeError::Corrupt("larger than 1 MiB".into())));
    }
    Ok(Some(bytes))
}

/// Replaces `target` with `record`: temporary file, write, fsync, rename, fsync the
/// directory. On failure the old file is untouched and the temporary file removed
/// (except under the crash hook, which leaves it as a crash would).
fn write_atomically(
    dir: &Path,
    target: &Path,
    record: &[u8],
    crash_before_rename: bool,
) -> Result<(), Failure> {
    let (temp, mut file) = create_temp(target)?;
    let written = file
        .write_all(record)
        .map_err(|e| Failure::io("writing the temporary file", e))
        .and_then(|()| {
            file.sync_all()
                .map_err(|e| Failure::io("syncing the temporary file", e))
        });
    drop(file);
    if crash_before_rename && written.is_ok() {
        return Err(Failure::other("simulated crash before the rename, a test hook"));
    }
    let renamed = written.and_then(|()| {
        fs::rename(&temp, target).map_err(|e| Failure::io("renaming the temporary file over the file", e))
    });
    if let Err(failure) = renamed {
        let _ = fs::remove_file(&temp);
        return Err(failure);
    }
    sync_dir(dir)
}

/// Creates a new, empty temporary file next to `target`, readable by its owner only.
fn create_temp(target: &Path) -> Result<(PathBuf, File), Failure> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut attempts = 0;
    loop {
        let unique = format!(
            ".{}-{}-{:08x}{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..),
            format::TEMP_SUFFIX
        );
        let mut name = target.as_os_str().to_owned();
        name.push(unique);
        let temp = PathBuf::from(name);

        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        // The mode applies when the file is created, so no secret is ever in a file
        // others may read.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 8 => attempts += 1,
            Err(e) => return Err(Failure::io("creating the temporary file", e)),
        }
    }
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), Failure> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Failure::io("syncing the directory", e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Credential, Provider};

    fn key(subject: &str) -> CredentialKey {
        Credential::client_credentials(Provider::standard("https://auth.example.com/token"), "app", "s")
            .subject(subject)
            .key()
    }

    #[tokio::test]
    async fn the_lock_map_forgets_keys_nobody_holds() {
        let dir = tempdir("lock-map");
        let store = FileStore::open(&dir).unwrap();
        let tokens = StoredTokens::new().with_scope("read");
        store.save(&key("a"), &tokens).await.unwrap();
        store.delete(&key("b")).await.unwrap();
        assert!(store.locks.lock().unwrap().is_empty());

        // A caller that gives up while waiting leaves nothing behind either.
        let held = store.lock("x".into()).await;
        let mut waiting = tokio_test::task::spawn(store.lock("x".into()));
        assert!(waiting.poll().is_pending());
        drop(held);
        assert_eq!(
            store.locks.lock().unwrap().len(),
            1,
            "the waiter still needs the entry"
        );
        drop(waiting);
        assert!(store.locks.lock().unwrap().is_empty());
        fs::remove_dir_all(dir).unwrap();
    }

    fn tempdir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tower-oauth2-unit-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }
}
