//! Token stores: round trips, isolation between keys, restarts, file modes, crashes
//! mid-write, concurrent saves, damaged files, redaction and the change hook.

mod support;

use support::{
    store::{tokens_with_scope, Hooked},
    tempdir::TempDir,
};

use std::{
    collections::HashSet,
    fs,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime},
};

use tower_oauth2::{
    secret::RefreshToken,
    store::{
        FileStore, MemoryStore, Notifying, StoreError, StoreErrorKind, StoreOperation, StoredTokens,
        TokenChange, TokenStore,
    },
    Credential, CredentialKey, Error, Provider,
};

// ===== helpers =====

fn provider() -> Provider {
    Provider::standard("https://auth.example.com/oauth/token").name("acme")
}

fn key(scopes: &[&str], subject: Option<&str>) -> CredentialKey {
    let mut credential =
        Credential::refresh_token(provider(), "app", None, "seed").scopes(scopes.iter().copied());
    if let Some(subject) = subject {
        credential = credential.subject(subject);
    }
    credential.key()
}

fn alice() -> CredentialKey {
    key(&["read"], Some("alice"))
}

fn tokens(tag: &str) -> StoredTokens {
    tokens_with_scope(tag, "read")
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn temp_files_in(dir: &Path) -> Vec<String> {
    files_in(dir)
        .into_iter()
        .filter(|name| name.ends_with(".tmp"))
        .collect()
}

// ===== behaviour every store shares =====

async fn round_trips(store: &dyn TokenStore) {
    let key = alice();
    assert_eq!(store.load(&key).await.unwrap(), None, "nothing saved yet");

    store.save(&key, &tokens("1")).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap(), Some(tokens("1")));

    store.save(&key, &tokens("2")).await.unwrap();
    assert_eq!(
        store.load(&key).await.unwrap(),
        Some(tokens("2")),
        "a save replaces"
    );

    let only_refresh = StoredTokens::new().with_refresh_token(RefreshToken::new("r"));
    store.save(&key, &only_refresh).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap(), Some(only_refresh));

    store.delete(&key).await.unwrap();
    assert_eq!(store.load(&key).await.unwrap(), None);
    store.delete(&key).await.unwrap();
}

async fn keeps_keys_apart(store: &dyn TokenStore) {
    let keys = [
        key(&["read"], Some("alice")),
        key(&["read"], Some("bob")),
        key(&["read"], None),
        key(&["read", "write"], Some("alice")),
        key(&[], Some("alice")),
        // These two print alike (`…/https://x/a/b`) but are different credentials.
        key(&["https://x/a"], Some("b")),
        key(&["https://x/a/b"], None),
    ];
    assert_eq!(keys[5].to_string(), keys[6].to_string());
    for (i, key) in keys.iter().enumerate() {
        store.save(key, &tokens(&i.to_string())).await.unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            store.load(key).await.unwrap(),
            Some(tokens(&i.to_string())),
            "{key}"
        );
    }
    store.delete(&keys[0]).await.unwrap();
    assert_eq!(store.load(&keys[0]).await.unwrap(), None);
    assert_eq!(store.load(&keys[1]).await.unwrap(), Some(tokens("1")));
    assert_eq!(store.load(&keys[3]).await.unwrap(), Some(tokens("3")));
}

#[tokio::test]
async fn memory_store_round_trips() {
    round_trips(&MemoryStore::new()).await;
}

#[tokio::test]
async fn file_store_round_trips() {
    let dir = TempDir::new("store-round-trip");
    round_trips(&FileStore::open(dir.path()).unwrap()).await;
    assert!(files_in(dir.path()).is_empty(), "delete removes the file");
}

#[tokio::test]
async fn memory_store_keeps_keys_apart() {
    keeps_keys_apart(&MemoryStore::new()).await;
}

#[tokio::test]
async fn file_store_keeps_keys_apart() {
    let dir = TempDir::new("store-apart");
    keeps_keys_apart(&FileStore::open(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn stores_work_behind_arc_dyn() {
    let dir = TempDir::new("store-dyn");
    let stores: [Arc<dyn TokenStore>; 2] = [
        Arc::new(MemoryStore::new()),
        Arc::new(FileStore::open(dir.path()).unwrap()),
    ];
    for store in stores {
        let notifying = Notifying::new(store.clone(), |_, _| {});
        notifying.save(&alice(), &tokens("dyn")).await.unwrap();
        assert_eq!(store.load(&alice()).await.unwrap(), Some(tokens("dyn")));
    }
}

// ===== the file store on disk =====

#[tokio::test]
async fn a_new_file_store_over_the_same_directory_loads_what_the_first_saved() {
    let dir = TempDir::new("store-restart");
    let first = FileStore::open(dir.path()).unwrap();
    first.save(&alice(), &tokens("before-restart")).await.unwrap();
    first
        .save(&key(&["read"], Some("bob")), &tokens("bob"))
        .await
        .unwrap();
    drop(first);

    let second = FileStore::open(dir.path()).unwrap();
    assert_eq!(
        second.load(&alice()).await.unwrap(),
        Some(tokens("before-restart"))
    );
    assert_eq!(
        second.load(&key(&["read"], Some("bob"))).await.unwrap(),
        Some(tokens("bob"))
    );
    assert_eq!(second.load(&key(&["read"], Some("carol"))).await.unwrap(), None);
}

#[tokio::test]
async fn one_file_per_key_named_by_hash_holding_a_versioned_record() {
    let dir = TempDir::new("store-format");
    let store = FileStore::open(dir.path()).unwrap();
    store.save(&alice(), &tokens("f")).await.unwrap();

    let path = store.file(&alice());
    assert_eq!(path.parent(), Some(dir.path()));
    let name = path.file_name().unwrap().to_str().unwrap();
    assert_eq!(files_in(dir.path()), [name]);
    assert_eq!(name.len(), 64 + ".json".len());
    assert!(name[..64]
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));

    let record: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(record["format"], "tower-oauth2 token store");
    assert_eq!(record["version"], 1);
    assert_eq!(
        record["key"],
        serde_json::json!({
            "provider": "acme", "client_id": "app", "grant": "refresh_token",
            "scopes": ["read"], "subject": "alice",
        })
    );
    assert_eq!(record["refresh_token"], "refresh-secret-f");
    assert_eq!(
        record["expires_at"],
        serde_json::json!({"secs": 1_900_000_000u64, "nanos": 987_654_321})
    );
}

#[cfg(unix)]
#[tokio::test]
async fn files_are_0600_and_a_created_directory_is_0700() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;

    let root = TempDir::new("store-modes");
    let dir = root.path().join("nested").join("tokens");
    let store = FileStore::open(&dir).unwrap();
    assert_eq!(mode(&dir), 0o700);
    store.save(&alice(), &tokens("m")).await.unwrap();
    assert_eq!(mode(&store.file(&alice())), 0o600);

    // The temporary file is private too: a crash must not leave a readable secret.
    let crashing = FileStore::open(&dir).unwrap().crash_before_rename();
    crashing.save(&alice(), &tokens("crash")).await.unwrap_err();
    let temps = temp_files_in(&dir);
    assert_eq!(temps.len(), 1);
    assert_eq!(mode(&dir.join(&temps[0])), 0o600);
}

#[tokio::test]
async fn a_crash_mid_write_leaves_the_previous_record_and_open_cleans_up() {
    let dir = TempDir::new("store-crash");
    let store = FileStore::open(dir.path()).unwrap();
    store.save(&alice(), &tokens("old")).await.unwrap();
    let before = fs::read(store.file(&alice())).unwrap();

    let crashing = FileStore::open(dir.path()).unwrap().crash_before_rename();
    let err = crashing.save(&alice(), &tokens("new")).await.unwrap_err();
    assert_eq!(err.operation(), StoreOperation::Save);
    assert_eq!(err.key(), Some(alice().to_string().as_str()));

    // The new record sits, complete, in a temporary file that nothing reads.
    let temps = temp_files_in(dir.path());
    assert_eq!(temps.len(), 1, "{:?}", files_in(dir.path()));
    let temp = fs::read(dir.path().join(&temps[0])).unwrap();
    assert!(String::from_utf8(temp).unwrap().contains("refresh-secret-new"));

    assert_eq!(
        fs::read(store.file(&alice())).unwrap(),
        before,
        "the old file is untouched"
    );
    assert_eq!(store.load(&alice()).await.unwrap(), Some(tokens("old")));
    assert_eq!(crashing.load(&alice()).await.unwrap(), Some(tokens("old")));

    // The next start removes the leftover and still loads the old record.
    let restarted = FileStore::open(dir.path()).unwrap();
    assert!(temp_files_in(dir.path()).is_empty());
    assert_eq!(files_in(dir.path()).len(), 1);
    assert_eq!(restarted.load(&alice()).await.unwrap(), Some(tokens("old")));
}

#[tokio::test]
async fn open_leaves_files_that_are_not_its_temporaries_alone() {
    let dir = TempDir::new("store-foreign");
    fs::create_dir_all(dir.path()).unwrap();
    for name in ["notes.tmp", "backup.json.1.tmp", "README"] {
        fs::write(dir.path().join(name), "keep me").unwrap();
    }
    FileStore::open(dir.path()).unwrap();
    assert_eq!(files_in(dir.path()), ["README", "backup.json.1.tmp", "notes.tmp"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_saves_of_one_key_leave_one_complete_record() {
    let dir = TempDir::new("store-concurrent");
    let store = Arc::new(FileStore::open(dir.path()).unwrap());
    store.save(&alice(), &tokens("initial")).await.unwrap();
    let writes: Vec<StoredTokens> = (0..100).map(|i| tokens(&i.to_string())).collect();

    // Readers run alongside: every load sees one whole record, never a torn one.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (store, stop) = (store.clone(), stop.clone());
            tokio::spawn(async move {
                let mut loads = 0;
                while !stop.load(Ordering::Relaxed) {
                    let loaded = store.load(&alice()).await.expect("a load never fails mid-write");
                    assert!(loaded.is_some());
                    loads += 1;
                }
                loads
            })
        })
        .collect();

    let writers: Vec<_> = writes
        .iter()
        .cloned()
        .map(|tokens| {
            let store = store.clone();
            tokio::spawn(async move { store.save(&alice(), &tokens).await })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        assert!(reader.await.unwrap() > 0);
    }

    let last = store.load(&alice()).await.unwrap().unwrap();
    assert!(writes.contains(&last), "{last:?}");
    let on_disk: serde_json::Value =
        serde_json::from_slice(&fs::read(store.file(&alice())).unwrap()).unwrap();
    assert_eq!(
        on_disk["refresh_token"],
        last.refresh_token.as_ref().unwrap().secret()
    );
    assert_eq!(
        files_in(dir.path()),
        [store.file(&alice()).file_name().unwrap().to_str().unwrap()]
    );
    assert!(temp_files_in(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn saves_of_one_key_land_in_the_order_they_return() {
    // Each save starts after the previous returned: the file always holds the last.
    let dir = TempDir::new("store-order");
    let store = Arc::new(FileStore::open(dir.path()).unwrap());
    let tasks: Vec<_> = (0..8)
        .map(|subject| {
            let store = store.clone();
            tokio::spawn(async move {
                let key = key(&["read"], Some(&format!("user-{subject}")));
                for i in 0..10 {
                    store
                        .save(&key, &tokens(&format!("{subject}-{i}")))
                        .await
                        .unwrap();
                    assert_eq!(
                        store.load(&key).await.unwrap(),
                        Some(tokens(&format!("{subject}-{i}")))
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(files_in(dir.path()).len(), 8);
}

// ===== damaged and foreign files =====

#[tokio::test]
async fn a_corrupt_file_is_a_typed_error_that_quotes_nothing() {
    let dir = TempDir::new("store-corrupt");
    let store = FileStore::open(dir.path()).unwrap();
    let path = store.file(&alice());
    let cases: [(&[u8], StoreErrorKind); 6] = [
        (b"", StoreErrorKind::Corrupt),
        (
            b"{\"refresh_token\": \"refresh-secret-torn",
            StoreErrorKind::Corrupt,
        ),
        (b"\xff\xfe not utf-8", StoreErrorKind::Corrupt),
        (
            br#"{"refresh_token": "refresh-secret-foreign"}"#,
            StoreErrorKind::Corrupt,
        ),
        (
            br#"{"format": "tower-oauth2 token store", "version": 9, "refresh_token": "refresh-secret-v9"}"#,
            StoreErrorKind::UnsupportedVersion,
        ),
        (&[b' '; 2 * 1024 * 1024], StoreErrorKind::Corrupt),
    ];
    for (bytes, kind) in cases {
        fs::write(&path, bytes).unwrap();
        let err = store.load(&alice()).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        assert_eq!(err.operation(), StoreOperation::Load);
        assert_eq!(err.provider(), Some("acme"));
        assert_eq!(err.file(), Some(path.as_path()));
        let printed = format!("{err} {err:?} {}", Error::from(err.clone()));
        assert!(!printed.contains("secret"), "{printed}");
    }

    // A save replaces a damaged file.
    store.save(&alice(), &tokens("repaired")).await.unwrap();
    assert_eq!(store.load(&alice()).await.unwrap(), Some(tokens("repaired")));
}

#[tokio::test]
async fn a_file_holding_another_keys_record_is_refused() {
    let dir = TempDir::new("store-mismatch");
    let store = FileStore::open(dir.path()).unwrap();
    let bob = key(&["read"], Some("bob"));
    store.save(&alice(), &tokens("alice")).await.unwrap();
    // Alice's file, copied (or renamed by hand) under Bob's name.
    fs::copy(store.file(&alice()), store.file(&bob)).unwrap();

    let err = store.load(&bob).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::KeyMismatch);
    assert_eq!(err.key(), Some(bob.to_string().as_str()));
    let printed = format!("{err} {err:?}");
    assert!(!printed.contains("secret"), "{printed}");
    assert!(
        !printed.contains("alice"),
        "the other key is not named: {printed}"
    );
}

/// A FIFO where a record belongs: opening it for reading would wait for a writer
/// forever, pinning a blocking thread per load. It is refused at once, typed. The bound
/// is real time (the blocking pool is not driven by a paused clock), and only a bound:
/// the load answers in microseconds.
#[cfg(unix)]
#[tokio::test]
async fn a_fifo_where_a_record_belongs_is_refused_without_blocking() {
    let dir = TempDir::new("store-fifo");
    let store = FileStore::open(dir.path()).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(store.file(&alice()))
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
    let alice = alice();
    for _ in 0..3 {
        let load = tokio::time::timeout(Duration::from_secs(10), store.load(&alice));
        let err = load.await.expect("a load never waits for a writer").unwrap_err();
        assert_eq!(err.operation(), StoreOperation::Load);
        assert_eq!(err.kind(), StoreErrorKind::Corrupt);
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
    // A directory in its place is refused the same way.
    let bob = key(&["read"], Some("bob"));
    fs::create_dir(store.file(&bob)).unwrap();
    let err = store.load(&bob).await.unwrap_err();
    assert!(
        matches!(err.kind(), StoreErrorKind::Corrupt | StoreErrorKind::Io),
        "{err}"
    );
}

#[tokio::test]
async fn opening_a_file_as_a_directory_is_a_typed_error() {
    let dir = TempDir::new("store-not-a-dir");
    fs::create_dir_all(dir.path()).unwrap();
    let file = dir.path().join("file");
    fs::write(&file, "x").unwrap();
    let err = FileStore::open(&file).unwrap_err();
    assert_eq!(err.operation(), StoreOperation::Open);
    assert_eq!(err.kind(), StoreErrorKind::Io);
    assert_eq!(err.key(), None);
    assert_eq!(Error::from(err).provider(), None);
}

// ===== redaction =====

#[tokio::test]
async fn debug_output_holds_no_token() {
    let dir = TempDir::new("store-debug");
    let store = FileStore::open(dir.path()).unwrap();
    store.save(&alice(), &tokens("dbg")).await.unwrap();
    let memory = MemoryStore::new();
    memory.save(&alice(), &tokens("dbg")).await.unwrap();
    let notifying = Notifying::new(MemoryStore::new(), |_, _| {});

    let loaded = store.load(&alice()).await.unwrap().unwrap();
    let errors = [
        StoreError::io(StoreOperation::Save, &alice(), std::io::Error::other("disk full")),
        StoreError::corrupt(StoreOperation::Load, &alice(), "bad field"),
        StoreError::new(StoreOperation::Delete, &alice(), "backend down"),
    ];
    let printed = format!(
        "{loaded:?} {loaded:#?} {store:?} {memory:?} {notifying:?} {errors:?} {}",
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    assert!(!printed.contains("secret-dbg"), "{printed}");
    assert!(printed.contains("Some(***)"), "{printed}");
    assert!(printed.contains("MemoryStore { credentials: 1 }"), "{printed}");
}

// ===== the change hook =====

type Log = Arc<Mutex<Vec<(String, TokenChange)>>>;

fn recording<S>(inner: S) -> (Notifying<S>, Log) {
    let log = Log::default();
    let seen = log.clone();
    let store = Notifying::new(inner, move |key: &CredentialKey, change| {
        seen.lock().unwrap().push((key.to_string(), change));
    });
    (store, log)
}

#[tokio::test]
async fn the_hook_fires_once_per_successful_change_and_never_on_failure() {
    // Saves and deletes fail while `failing` is set.
    let failing = Arc::new(AtomicBool::new(false));
    let down = Arc::clone(&failing);
    let flaky = Hooked::new(move |operation, key, _| match operation {
        StoreOperation::Save | StoreOperation::Delete if down.load(Ordering::Relaxed) => {
            Err(StoreError::new(operation, key, "backend down"))
        }
        _ => Ok(()),
    });
    let (store, log) = recording(flaky);
    let (a, b) = (alice(), key(&["read"], Some("bob")));

    store.save(&a, &tokens("1")).await.unwrap();
    store.save(&b, &tokens("2")).await.unwrap();
    store.load(&a).await.unwrap();
    store.delete(&a).await.unwrap();
    assert_eq!(
        *log.lock().unwrap(),
        [
            (a.to_string(), TokenChange::Saved),
            (b.to_string(), TokenChange::Saved),
            (a.to_string(), TokenChange::Deleted),
        ]
    );

    failing.store(true, Ordering::Relaxed);
    let err = store.save(&b, &tokens("3")).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Other);
    store.delete(&b).await.unwrap_err();
    assert_eq!(log.lock().unwrap().len(), 3, "failures are not reported");

    failing.store(false, Ordering::Relaxed);
    store.delete(&b).await.unwrap();
    assert_eq!(
        log.lock().unwrap().last(),
        Some(&(b.to_string(), TokenChange::Deleted))
    );
    assert_eq!(log.lock().unwrap().len(), 4);
}

#[tokio::test]
async fn the_hook_stays_silent_when_a_file_save_crashes() {
    let dir = TempDir::new("store-hook-crash");
    let (store, log) = recording(FileStore::open(dir.path()).unwrap().crash_before_rename());
    store.save(&alice(), &tokens("x")).await.unwrap_err();
    assert!(log.lock().unwrap().is_empty());

    let (store, log) = recording(FileStore::open(dir.path()).unwrap());
    store.save(&alice(), &tokens("x")).await.unwrap();
    store.delete(&alice()).await.unwrap();
    let changes: HashSet<TokenChange> = log.lock().unwrap().iter().map(|(_, change)| *change).collect();
    assert_eq!(changes, HashSet::from([TokenChange::Saved, TokenChange::Deleted]));
    assert_eq!(log.lock().unwrap().len(), 2);
}

#[test]
fn stored_tokens_carry_wall_clock_expiry() {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(5);
    let tokens = StoredTokens::new().with_expires_at(at);
    assert_eq!(tokens.expires_at, Some(at));
    assert_eq!(StoredTokens::new(), StoredTokens::default());
}
