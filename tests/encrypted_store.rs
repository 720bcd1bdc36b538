//! The encrypted store, through the public API: round trips over the memory and file
//! stores with no plaintext on disk, key rotation, tampered, moved and foreign values,
//! redaction, forwarded coordination, and a registry that restarts over it.
#![cfg(feature = "encryption")]

mod support;

use std::{
    fs,
    path::Path,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use support::{get, store::tokens_with_scope, tempdir::TempDir, Api, TokenEndpoint, CLIENT_SECRET};
use tower::{Layer, ServiceExt};
use tower_oauth2::{
    secret::{AccessToken, RefreshToken},
    store::{
        BoxFuture, EncryptedStore, EncryptionKey, EncryptionKeyError, FileStore, Keyring, Lease,
        LeaseSettings, MemoryStore, RefreshCoordination, StoreError, StoreErrorKind, StoredTokens,
        TokenStore,
    },
    Credential, CredentialKey, CredentialRegistry, Error, OAuth2Layer, Provider,
};

// ===== helpers =====

fn key_for(subject: &str) -> CredentialKey {
    let provider = Provider::standard("https://auth.example.com/oauth/token").name("acme");
    Credential::refresh_token(provider, "app", None, "seed")
        .scopes(["read"])
        .subject(subject)
        .key()
}

fn alice() -> CredentialKey {
    key_for("alice")
}

/// Bytes no test would find by chance in ciphertext or base64.
const K1: [u8; 32] = *b"K1-key-bytes-never-to-be-printed";
const K2: [u8; 32] = *b"K2-key-bytes-never-to-be-printed";

fn k1() -> EncryptionKey {
    EncryptionKey::from_bytes("k1", &K1).unwrap()
}

fn k2() -> EncryptionKey {
    EncryptionKey::from_bytes("k2", &K2).unwrap()
}

fn tokens(tag: &str) -> StoredTokens {
    tokens_with_scope(tag, "read profile:private")
}

/// What the inner store holds for `key`: the encrypted values.
async fn raw(store: &impl TokenStore, key: &CredentialKey) -> StoredTokens {
    store.load(key).await.unwrap().expect("something is stored")
}

async fn load_err(store: &impl TokenStore, key: &CredentialKey) -> StoreError {
    match store.load(key).await {
        Err(err) => err,
        Ok(found) => panic!("loaded {found:?}"),
    }
}

/// Everything in `dir`, as text.
fn read_all(dir: &Path) -> String {
    let mut all = String::new();
    for entry in fs::read_dir(dir).unwrap() {
        all.push_str(&fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    all
}

// ===== round trips =====

#[tokio::test]
async fn tokens_round_trip_over_a_memory_store_which_holds_only_ciphertext() {
    let store = EncryptedStore::new(MemoryStore::new(), Keyring::new(k1()));
    let saved = tokens("a");
    store.save(&alice(), &saved).await.unwrap();
    assert_eq!(store.load(&alice()).await.unwrap(), Some(saved.clone()));

    let inner = raw(store.get_ref(), &alice()).await;
    let values = [
        inner.refresh_token.unwrap().secret().to_owned(),
        inner.access_token.unwrap().secret().to_owned(),
        inner.scope.unwrap(),
    ];
    for value in &values {
        assert!(value.starts_with("v1.k1."), "{value}");
        assert!(!value.contains("secret") && !value.contains("read"), "{value}");
    }
    // The expiry stays in the clear (see the module docs), exactly.
    assert_eq!(inner.expires_at, saved.expires_at);

    // What is absent stays absent; a delete reaches the inner store.
    let only_refresh = StoredTokens::new().with_refresh_token(RefreshToken::new("rt"));
    store.save(&alice(), &only_refresh).await.unwrap();
    assert_eq!(store.load(&alice()).await.unwrap(), Some(only_refresh));
    assert_eq!(raw(store.get_ref(), &alice()).await.access_token, None);
    store.delete(&alice()).await.unwrap();
    assert_eq!(store.load(&alice()).await.unwrap(), None);
    assert_eq!(store.get_ref().load(&alice()).await.unwrap(), None);
}

#[tokio::test]
async fn a_file_store_under_encryption_holds_no_plaintext_on_disk_and_survives_a_restart() {
    let dir = TempDir::new("encrypted-disk");
    let secrets = ["refresh-secret-disk", "access-secret-disk", "profile:private"];
    {
        let store = EncryptedStore::new(FileStore::open(dir.path()).unwrap(), Keyring::new(k1()));
        store.save(&alice(), &tokens("disk")).await.unwrap();
        store.save(&key_for("bob"), &tokens("disk")).await.unwrap();
    }
    let on_disk = read_all(dir.path());
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    for secret in secrets {
        assert!(!on_disk.contains(secret), "{secret} is on disk:\n{on_disk}");
    }
    assert_eq!(on_disk.matches("\"v1.k1.").count(), 6, "{on_disk}");

    // A new process over the same directory and key.
    let store = EncryptedStore::new(FileStore::open(dir.path()).unwrap(), Keyring::new(k1()));
    assert_eq!(store.load(&alice()).await.unwrap(), Some(tokens("disk")));
    assert_eq!(store.load(&key_for("bob")).await.unwrap(), Some(tokens("disk")));
}

// ===== rotation =====

#[tokio::test]
async fn after_a_rotation_old_values_load_and_the_next_save_writes_the_new_key() {
    let inner = Arc::new(MemoryStore::new());
    EncryptedStore::new(Arc::clone(&inner), Keyring::new(k1()))
        .save(&alice(), &tokens("before"))
        .await
        .unwrap();

    let rotated = EncryptedStore::new(Arc::clone(&inner), Keyring::new(k2()).with_old_key(k1()).unwrap());
    assert_eq!(rotated.keyring().ids().collect::<Vec<_>>(), ["k2", "k1"]);
    assert_eq!(rotated.load(&alice()).await.unwrap(), Some(tokens("before")));
    // A load does not rewrite.
    let stored = raw(&inner, &alice()).await;
    assert!(stored.refresh_token.unwrap().secret().starts_with("v1.k1."));

    rotated.save(&alice(), &tokens("after")).await.unwrap();
    let stored = raw(&inner, &alice()).await;
    for value in [
        stored.refresh_token.unwrap().secret(),
        stored.access_token.unwrap().secret(),
        stored.scope.as_deref().unwrap(),
    ] {
        assert!(value.starts_with("v1.k2."), "{value}");
    }

    // k1 dropped: what k2 wrote still loads, and a value left under k1 is a typed error
    // naming the missing key.
    let bob = key_for("bob");
    EncryptedStore::new(Arc::clone(&inner), Keyring::new(k1()))
        .save(&bob, &tokens("bob"))
        .await
        .unwrap();
    let k2_only = EncryptedStore::new(Arc::clone(&inner), Keyring::new(k2()));
    assert_eq!(k2_only.load(&alice()).await.unwrap(), Some(tokens("after")));
    let err = load_err(&k2_only, &bob).await;
    assert_eq!(err.kind(), StoreErrorKind::UnknownEncryptionKey);
    assert_eq!(
        err.to_string(),
        "token store could not load the tokens of `acme/app/refresh_token/read/bob`: encrypted \
         under a key the keyring does not hold (refresh_token: encrypted with key id `k1`)"
    );
}

#[tokio::test]
async fn other_key_bytes_under_the_same_id_are_refused() {
    let inner = Arc::new(MemoryStore::new());
    EncryptedStore::new(Arc::clone(&inner), Keyring::new(k1()))
        .save(&alice(), &tokens("a"))
        .await
        .unwrap();
    let impostor = EncryptionKey::from_bytes("k1", &K2).unwrap();
    let err = load_err(&EncryptedStore::new(inner, Keyring::new(impostor)), &alice()).await;
    assert_eq!(err.kind(), StoreErrorKind::Corrupt);
    assert!(err.to_string().contains("failed authentication"), "{err}");
}

// ===== tampered, moved and foreign values =====

#[tokio::test]
async fn a_change_to_any_one_character_of_a_value_is_refused() {
    let inner = Arc::new(MemoryStore::new());
    let store = EncryptedStore::new(Arc::clone(&inner), Keyring::new(k1()));
    store.save(&alice(), &tokens("t")).await.unwrap();
    let good = raw(&inner, &alice()).await;
    let value = good.refresh_token.clone().unwrap().secret().to_owned();

    let mut refused = 0;
    for at in 0..value.len() {
        let mut bytes = value.clone().into_bytes();
        // Another character of the same class, so the value still looks well formed.
        bytes[at] = match bytes[at] {
            b'A' => b'B',
            b'0'..=b'8' => bytes[at] + 1,
            b'.' => b'-',
            _ => b'A',
        };
        let mut tampered = good.clone();
        tampered.refresh_token = Some(RefreshToken::new(String::from_utf8(bytes).unwrap()));
        inner.save(&alice(), &tampered).await.unwrap();
        let err = load_err(&store, &alice()).await;
        assert!(
            matches!(
                err.kind(),
                StoreErrorKind::Corrupt
                    | StoreErrorKind::UnknownEncryptionKey
                    | StoreErrorKind::UnsupportedVersion
            ),
            "{at}: {err}"
        );
        assert!(!err.to_string().contains("secret-t"), "{err}");
        refused += 1;
    }
    // `v1.k1.` and 75 characters of base64url: 24 bytes of nonce, 16 of token, 16 of tag.
    assert_eq!((refused, value.len()), (81, 81));
}

#[tokio::test]
async fn a_value_moved_to_another_credential_or_field_is_refused() {
    let inner = Arc::new(MemoryStore::new());
    let store = EncryptedStore::new(Arc::clone(&inner), Keyring::new(k1()));
    store.save(&alice(), &tokens("alice")).await.unwrap();
    let alices = raw(&inner, &alice()).await;
    let bob = key_for("bob");

    // Alice's whole record under Bob's key.
    inner.save(&bob, &alices).await.unwrap();
    let err = load_err(&store, &bob).await;
    assert_eq!(err.kind(), StoreErrorKind::Corrupt);
    assert!(err.to_string().contains("failed authentication"), "{err}");

    // The refresh token where the scope was, and the other way round: neither is bound
    // to the expiry, so only the field's name tells them apart.
    let mut swapped = alices.clone();
    swapped.scope = Some(alices.refresh_token.clone().unwrap().secret().to_owned());
    inner.save(&alice(), &swapped).await.unwrap();
    let err = load_err(&store, &alice()).await;
    assert!(err.to_string().contains("scope: failed authentication"), "{err}");
    let mut swapped = alices.clone();
    swapped.refresh_token = Some(RefreshToken::new(alices.scope.clone().unwrap()));
    inner.save(&alice(), &swapped).await.unwrap();
    let err = load_err(&store, &alice()).await;
    assert!(
        err.to_string().contains("refresh_token: failed authentication"),
        "{err}"
    );

    // The refresh token where the access token was, and the other way round.
    let mut swapped = alices.clone();
    swapped.access_token = Some(AccessToken::new(alices.refresh_token.clone().unwrap().secret()));
    inner.save(&alice(), &swapped).await.unwrap();
    assert_eq!(load_err(&store, &alice()).await.kind(), StoreErrorKind::Corrupt);
    let mut swapped = alices.clone();
    swapped.refresh_token = Some(RefreshToken::new(alices.access_token.clone().unwrap().secret()));
    inner.save(&alice(), &swapped).await.unwrap();
    assert_eq!(load_err(&store, &alice()).await.kind(), StoreErrorKind::Corrupt);

    // A later expiry next to the same access token.
    let mut extended = alices.clone();
    extended.expires_at = Some(alices.expires_at.unwrap() + Duration::from_secs(3600));
    inner.save(&alice(), &extended).await.unwrap();
    let err = load_err(&store, &alice()).await;
    assert!(
        err.to_string().contains("access_token: failed authentication"),
        "{err}"
    );

    // Untouched, it still loads.
    inner.save(&alice(), &alices).await.unwrap();
    assert_eq!(store.load(&alice()).await.unwrap(), Some(tokens("alice")));
}

#[tokio::test]
async fn plaintext_and_garbage_are_typed_errors_that_quote_nothing() {
    let inner = Arc::new(MemoryStore::new());
    let store = EncryptedStore::new(Arc::clone(&inner), Keyring::new(k1()));
    let cases: &[(&str, StoreErrorKind, &str)] = &[
        (
            "refresh-secret-plain",
            StoreErrorKind::Corrupt,
            "not an encrypted value",
        ),
        ("", StoreErrorKind::Corrupt, "not an encrypted value"),
        ("v1.k1.", StoreErrorKind::Corrupt, "too short"),
        (
            "v1.k1.refresh-secret-plain!",
            StoreErrorKind::Corrupt,
            "not unpadded base64url",
        ),
        (
            "v1.refresh-secret plain.AAAA",
            StoreErrorKind::Corrupt,
            "the key id is not one",
        ),
        (
            "v1.\u{0}\r\n.AAAA",
            StoreErrorKind::Corrupt,
            "the key id is not one",
        ),
        (
            "v7.k1.AAAA",
            StoreErrorKind::UnsupportedVersion,
            "another version",
        ),
        (
            "v1.k1.cmVmcmVzaC1zZWNyZXQtcGxhaW4tcmVmcmVzaC1zZWNyZXQtcGxhaW4tcmVmcmVzaC1zZWNyZXQ",
            StoreErrorKind::Corrupt,
            "failed authentication",
        ),
    ];
    for (value, kind, reason) in cases {
        inner
            .save(
                &alice(),
                &StoredTokens::new().with_refresh_token(RefreshToken::new(*value)),
            )
            .await
            .unwrap();
        let err = load_err(&store, &alice()).await;
        let message = err.to_string();
        assert_eq!(err.kind(), *kind, "{value:?}: {message}");
        assert!(message.contains("(refresh_token: "), "{message}");
        assert!(message.contains(reason), "{value:?}: {message}");
        assert!(!message.contains("secret"), "{message}");
        assert!(!message.contains('\r') && !message.contains('\0'), "{message:?}");
    }
    assert_eq!(cases.len(), 8);
}

// ===== keys and redaction =====

#[test]
fn keys_come_from_raw_bytes_or_base64_and_bad_ones_are_refused_without_quoting() {
    // `printf 'K1-key-bytes-never-to-be-printed' | base64`, and its URL-safe twin.
    let standard = "SzEta2V5LWJ5dGVzLW5ldmVyLXRvLWJlLXByaW50ZWQ=";
    for encoded in [
        standard,
        standard.trim_end_matches('='),
        "SzEta2V5LWJ5dGVzLW5ldmVyLXRvLWJlLXByaW50ZWQ\n",
        " SzEta2V5LWJ5dGVzLW5ldmVyLXRvLWJlLXByaW50ZWQ=\r\n",
    ] {
        assert_eq!(EncryptionKey::from_base64("k1", encoded).unwrap().id(), "k1");
    }
    let cases: &[(&str, &str, EncryptionKeyError)] = &[
        ("k1", "c2hvcnQ=", EncryptionKeyError::WrongLength(5)),
        (
            "k1",
            "SzEta2V5LWJ5dGVzLW5ldmVyLXRvLWJlLXByaW50ZWQ*",
            EncryptionKeyError::NotBase64,
        ),
        // The arguments swapped: the key is refused as an id, and not printed.
        (standard, "k1", EncryptionKeyError::InvalidId),
    ];
    for (id, encoded, expected) in cases {
        let err = EncryptionKey::from_base64(*id, encoded).unwrap_err();
        assert_eq!(&err, expected);
        let printed = format!("{err} {err:?}");
        assert!(!printed.contains("SzEta2V5"), "{printed}");
    }
    assert_eq!(
        EncryptionKey::from_bytes("k1", &[0; 31]).unwrap_err().to_string(),
        "an encryption key is 32 bytes, not 31"
    );
    assert_eq!(
        Keyring::new(k1())
            .with_old_key(EncryptionKey::from_bytes("k1", &K2).unwrap())
            .unwrap_err(),
        EncryptionKeyError::DuplicateId("k1".into())
    );
}

#[test]
fn debug_shows_key_ids_and_no_key_bytes() {
    let keyring = Keyring::new(k2()).with_old_key(k1()).unwrap();
    let store = EncryptedStore::new(MemoryStore::new(), keyring.clone());
    let printed = format!(
        "{:?} {:#?} {store:?} {store:#?} {:?}",
        k1(),
        keyring,
        k1().clone()
    );
    assert_eq!(format!("{:?}", k1()), r#"EncryptionKey { id: "k1", key: *** }"#);
    assert_eq!(
        format!("{keyring:?}"),
        r#"Keyring { current: "k2", old: ["k1"] }"#
    );
    for bytes in [K1, K2] {
        let as_text = String::from_utf8(bytes.to_vec()).unwrap();
        let as_list = format!("{:?}", bytes);
        let as_list = as_list
            .trim_start_matches('[')
            .split(',')
            .take(4)
            .collect::<Vec<_>>()
            .join(",");
        let as_hex: String = bytes[..8].iter().map(|b| format!("{b:02x}")).collect();
        for shown in [&as_text[..8], as_list.as_str(), &as_hex] {
            assert!(!printed.contains(shown), "{shown} in {printed}");
        }
    }
}

// ===== coordination =====

/// A memory store with the lease operations of a shared store: fences count up, and a
/// fenced save below the newest fence writes nothing.
#[derive(Default)]
struct Coordinated {
    inner: MemoryStore,
    fence: AtomicU64,
    fenced_saves: Mutex<Vec<StoredTokens>>,
}

impl TokenStore for Coordinated {
    fn load<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Option<StoredTokens>, StoreError>> {
        self.inner.load(key)
    }

    fn save<'a>(
        &'a self,
        key: &'a CredentialKey,
        tokens: &'a StoredTokens,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.save(key, tokens)
    }

    fn delete<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.delete(key)
    }

    fn coordination(&self) -> Option<&dyn RefreshCoordination> {
        Some(self)
    }
}

impl RefreshCoordination for Coordinated {
    fn settings(&self) -> LeaseSettings {
        LeaseSettings::new(Duration::from_secs(3), Duration::from_secs(4))
    }

    fn try_lease<'a>(&'a self, _: &'a CredentialKey) -> BoxFuture<'a, Result<Option<Lease>, StoreError>> {
        let fence = self.fence.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move { Ok(Some(Lease { fence })) })
    }

    fn save_fenced<'a>(
        &'a self,
        key: &'a CredentialKey,
        tokens: &'a StoredTokens,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            if lease.fence != self.fence.load(Ordering::SeqCst) {
                return Ok(false);
            }
            self.fenced_saves.lock().unwrap().push(tokens.clone());
            self.inner.save(key, tokens).await?;
            Ok(true)
        })
    }

    fn release<'a>(&'a self, _: &'a CredentialKey, _: &'a Lease) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }

    fn changed<'a>(&'a self, _: &'a CredentialKey, _: Duration) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}

#[tokio::test]
async fn coordination_is_forwarded_and_fenced_saves_are_encrypted() {
    assert!(EncryptedStore::new(MemoryStore::new(), Keyring::new(k1()))
        .coordination()
        .is_none());

    let inner = Arc::new(Coordinated::default());
    let store = EncryptedStore::new(Arc::clone(&inner), Keyring::new(k1()));
    let coordination = store.coordination().expect("forwarded");
    assert_eq!(coordination.settings(), inner.settings());

    let first = coordination.try_lease(&alice()).await.unwrap().unwrap();
    let second = coordination.try_lease(&alice()).await.unwrap().unwrap();
    assert_eq!((first.fence, second.fence), (1, 2));
    assert!(!coordination
        .save_fenced(&alice(), &tokens("stale"), &first)
        .await
        .unwrap());
    assert!(coordination
        .save_fenced(&alice(), &tokens("fresh"), &second)
        .await
        .unwrap());
    coordination.release(&alice(), &second).await.unwrap();

    let written = inner.fenced_saves.lock().unwrap().clone();
    assert_eq!(written.len(), 1);
    let refresh = written[0].refresh_token.as_ref().unwrap().secret();
    assert!(
        refresh.starts_with("v1.k1.") && !refresh.contains("fresh"),
        "{refresh}"
    );
    assert_eq!(store.load(&alice()).await.unwrap(), Some(tokens("fresh")));
}

// ===== a registry over it =====

fn credentials_over(endpoint: &TokenEndpoint, store: impl TokenStore) -> CredentialRegistry {
    CredentialRegistry::builder()
        .credential(Credential::client_credentials(
            support::provider(),
            "client-id",
            CLIENT_SECRET,
        ))
        .store(store)
        .transport(endpoint.transport())
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_registry_restarts_over_an_encrypted_file_store_and_a_missing_key_is_a_store_error() {
    let dir = TempDir::new("encrypted-registry");
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let encrypted = |keyring: Keyring| EncryptedStore::new(FileStore::open(dir.path()).unwrap(), keyring);
    {
        let credentials = credentials_over(&endpoint, encrypted(Keyring::new(k1())));
        let client = OAuth2Layer::new(credentials).layer(Api::new());
        assert_eq!(client.oneshot(get("a")).await.unwrap().status(), 200);
    }
    assert_eq!(endpoint.requests(), 1);
    let on_disk = read_all(dir.path());
    assert!(
        !on_disk.contains("tok-1") && !on_disk.contains("refresh-1"),
        "{on_disk}"
    );

    // Restarted with the key rotated: the stored token serves, no token request.
    let rotated = Keyring::new(k2()).with_old_key(k1()).unwrap();
    let credentials = credentials_over(&endpoint, encrypted(rotated));
    let client = OAuth2Layer::new(credentials).layer(Api::new());
    assert_eq!(client.oneshot(get("b")).await.unwrap().status(), 200);
    assert_eq!(endpoint.requests(), 1);

    // Restarted without the key the record was written with.
    let credentials = credentials_over(&endpoint, encrypted(Keyring::new(k2())));
    let client = OAuth2Layer::new(credentials).layer(Api::new());
    match client.oneshot(get("c")).await {
        Err(Error::Store(err)) => assert_eq!(err.kind(), StoreErrorKind::UnknownEncryptionKey),
        other => panic!("{other:?}"),
    }
    assert_eq!(endpoint.requests(), 1);
}
