//! A `CredentialRegistry` over a `RedisStore` on a real redis-server, in one process:
//! the wait bound when Redis is paused or stopped while a token is expired, the local
//! fallback for each kind of provider, and an `EncryptedStore` around the `RedisStore`.
//! The token endpoint is the in-process one of `support`; the same flows with replicas
//! as separate processes are in `tests/replicas.rs`.
#![cfg(all(feature = "redis", unix))]
// Redis is a real process: the wait bound is measured on the real clock.
#![allow(clippy::disallowed_methods)]

mod redis_support;
mod support;

use std::time::Duration;

use redis_support::RedisServer;
use support::{get, no_jitter, Api, TokenEndpoint, CLIENT_SECRET};
use tower::{Layer, ServiceExt};
use tower_oauth2::{
    store::{LeaseSettings, RedisStore, StoreErrorKind, StoreOperation},
    Credential, CredentialRegistry, Error, OAuth2Layer, RefreshPolicy, RefreshToken, RefreshTokens,
};

/// The tokens' lifetime: long enough that no refresh window opens during a test's own
/// steps, which move the clock past it in one go.
const LIFETIME: Duration = Duration::from_secs(600);

fn policy() -> RefreshPolicy {
    RefreshPolicy::default()
        .random(no_jitter)
        .timeout(Duration::from_secs(5))
}

/// A store whose own operations may take 2 s + 2 s: longer than any `max_wait` here.
fn store(server: &RedisServer, settings: LeaseSettings) -> RedisStore {
    RedisStore::builder(server.url())
        .lease_settings(settings)
        .connect_timeout(Duration::from_secs(2))
        .command_timeout(Duration::from_secs(2))
        .build()
        .unwrap()
}

fn refresh_token_credential(refresh_tokens: RefreshTokens) -> Credential {
    let provider = support::provider().refresh_tokens(refresh_tokens);
    Credential::refresh_token(
        provider,
        "client-id",
        Some(CLIENT_SECRET.into()),
        RefreshToken::new("refresh-0"),
    )
    .refresh_policy(policy())
}

fn client_credentials() -> Credential {
    Credential::client_credentials(support::provider(), "client-id", CLIENT_SECRET).refresh_policy(policy())
}

fn registry(credential: Credential, store: RedisStore, endpoint: &TokenEndpoint) -> CredentialRegistry {
    CredentialRegistry::builder()
        .credential(credential)
        .store(store)
        .transport(endpoint.transport())
        .build()
        .unwrap()
}

/// One request through the registry: its status, or the error.
async fn call(credentials: &CredentialRegistry, id: &str) -> Result<u16, Error> {
    let client = OAuth2Layer::new(credentials.clone()).layer(Api::new());
    client.oneshot(get(id)).await.map(|r| r.status().as_u16())
}

/// A registry that got its token through Redis, whose token has then expired (Tokio's
/// clock moved past it): the next request needs a new one.
async fn expired(
    credential: Credential,
    server: &RedisServer,
    settings: LeaseSettings,
    endpoint: &TokenEndpoint,
) -> CredentialRegistry {
    let key = credential.key();
    let store = store(server, settings);
    let credentials = registry(credential, store.clone(), endpoint);
    assert_eq!(call(&credentials, "warm").await.unwrap(), 200);
    assert_eq!(endpoint.requests(), 1);
    // The lease is released in the background: let that land before the clock moves
    // and Redis is stopped.
    let lease = store.keys(&key).lease;
    let mut connection = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let released = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let held: bool = redis::cmd("EXISTS")
            .arg(&lease)
            .query_async(&mut connection)
            .await
            .unwrap();
        if !held {
            break;
        }
        assert!(std::time::Instant::now() < released, "the lease was not released");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    support::advance(LIFETIME + Duration::from_secs(1)).await;
    credentials
}

fn store_error(result: Result<u16, Error>) -> tower_oauth2::store::StoreError {
    match result {
        Err(Error::Store(err)) => err,
        other => panic!("expected a store error, got {other:?}"),
    }
}

// =====================================================================================
// The wait bound
// =====================================================================================

/// How long the wait-bound tests let a request wait for Redis.
const MAX_WAIT: Duration = Duration::from_millis(600);

/// A rotating credential whose token has expired, over `server`, waiting at most
/// [`MAX_WAIT`] for Redis; and its token endpoint.
async fn expired_rotating(server: &RedisServer) -> (CredentialRegistry, TokenEndpoint) {
    let settings = LeaseSettings::new(Duration::from_secs(10), MAX_WAIT);
    let endpoint = TokenEndpoint::new(LIFETIME);
    let credential = refresh_token_credential(RefreshTokens::Rotated);
    (expired(credential, server, settings, &endpoint).await, endpoint)
}

/// A request made while Redis cannot answer: its error, a failed load, and how long it
/// took.
async fn a_failed_load(
    credentials: &CredentialRegistry,
    id: &str,
) -> (tower_oauth2::store::StoreError, Duration) {
    let started = std::time::Instant::now();
    let err = store_error(call(credentials, id).await);
    let waited = started.elapsed();
    eprintln!("{id}: {err} after {waited:?}");
    assert_eq!(
        (err.kind(), err.operation()),
        (StoreErrorKind::Io, StoreOperation::Load)
    );
    (err, waited)
}

#[tokio::test]
async fn a_paused_redis_gives_a_typed_error_within_max_wait_when_the_token_has_expired() {
    let server = RedisServer::start();
    let (credentials, endpoint) = expired_rotating(&server).await;

    server.signal("STOP");
    let (_, waited) = a_failed_load(&credentials, "paused").await;
    server.signal("CONT");
    // Each Redis operation alone may take 4 s: the deadline, not the store's bound, ended
    // the wait. The slack covers a loaded machine, not another operation.
    assert!(
        waited >= MAX_WAIT && waited <= MAX_WAIT + Duration::from_millis(400),
        "waited {waited:?} for a max_wait of {MAX_WAIT:?}"
    );
    assert_eq!(endpoint.requests(), 1, "no token request without the lease");

    // Redis back, and the failure's backoff over: the same registry refreshes through it.
    support::advance(Duration::from_secs(1)).await;
    assert_eq!(call(&credentials, "resumed").await.unwrap(), 200);
    assert_eq!(endpoint.requests(), 2);
}

#[tokio::test]
async fn a_stopped_redis_gives_a_typed_error_within_max_wait_when_the_token_has_expired() {
    let mut server = RedisServer::start();
    let (credentials, endpoint) = expired_rotating(&server).await;

    server.stop();
    let (_, waited) = a_failed_load(&credentials, "stopped").await;
    assert!(
        waited <= MAX_WAIT + Duration::from_millis(400),
        "waited {waited:?}"
    );
    assert_eq!(endpoint.requests(), 1);
}

// =====================================================================================
// The local fallback
// =====================================================================================

/// Redis stopped while the token of `credential` is expired: the result of one request,
/// and the token requests it made.
async fn with_redis_stopped(credential: Credential, fallback: bool) -> (Result<u16, Error>, usize) {
    let mut server = RedisServer::start();
    let settings =
        LeaseSettings::new(Duration::from_secs(10), Duration::from_secs(2)).local_fallback(fallback);
    let endpoint = TokenEndpoint::new(LIFETIME);
    let credentials = expired(credential, &server, settings, &endpoint).await;
    server.stop();
    let result = call(&credentials, "after").await;
    (result, endpoint.requests() - 1)
}

#[tokio::test]
async fn refresh_tokens_that_do_not_rotate_fall_back_to_a_local_refresh_when_allowed() {
    for kind in [RefreshTokens::KeepWhenOmitted] {
        let (result, requests) = with_redis_stopped(refresh_token_credential(kind), true).await;
        assert_eq!(result.unwrap(), 200, "{kind:?}");
        assert_eq!(requests, 1, "{kind:?}: one local refresh");
    }
    // Client credentials, whatever the provider does with refresh tokens.
    for kind in [RefreshTokens::KeepWhenOmitted, RefreshTokens::NotIssued] {
        let credential = Credential::client_credentials(
            support::provider().refresh_tokens(kind),
            "client-id",
            CLIENT_SECRET,
        )
        .refresh_policy(policy());
        let (result, requests) = with_redis_stopped(credential, true).await;
        assert_eq!(result.unwrap(), 200, "{kind:?}");
        assert_eq!(requests, 1, "{kind:?}: one local token request");
    }
}

#[tokio::test]
async fn without_the_fallback_a_stopped_redis_is_a_typed_error_for_every_provider() {
    for credential in [
        refresh_token_credential(RefreshTokens::KeepWhenOmitted),
        refresh_token_credential(RefreshTokens::Rotated),
        client_credentials(),
    ] {
        let (result, requests) = with_redis_stopped(credential, false).await;
        let err = store_error(result);
        assert_eq!(
            (err.kind(), err.operation()),
            (StoreErrorKind::Io, StoreOperation::Load)
        );
        assert_eq!(requests, 0);
    }
}

#[tokio::test]
async fn a_rotating_refresh_token_never_falls_back_even_when_allowed() {
    let (result, requests) = with_redis_stopped(refresh_token_credential(RefreshTokens::Rotated), true).await;
    let err = store_error(result);
    assert_eq!(
        (err.kind(), err.operation()),
        (StoreErrorKind::Io, StoreOperation::Load)
    );
    assert_eq!(
        requests, 0,
        "a rotating refresh token was presented without the lease"
    );
}

// =====================================================================================
// Encrypted at rest in Redis
// =====================================================================================

#[cfg(feature = "encryption")]
mod encrypted {
    use tower_oauth2::{
        secret::{AccessToken, RefreshToken},
        store::{EncryptedStore, EncryptionKey, Keyring, StoredTokens, TokenStore},
        CredentialKey, Provider,
    };

    use super::*;

    const K1: [u8; 32] = *b"K1-key-bytes-never-to-be-printed";
    const K1_OTHER: [u8; 32] = *b"K1-other-bytes-under-the-same-id";
    const K2: [u8; 32] = *b"K2-key-bytes-never-to-be-printed";

    fn keyring(id: &str, bytes: &[u8; 32]) -> Keyring {
        Keyring::new(EncryptionKey::from_bytes(id, bytes).unwrap())
    }

    fn key() -> CredentialKey {
        let provider = Provider::standard("https://auth.example.com/token").name("acme");
        Credential::refresh_token(provider, "app", None, "seed")
            .scopes(["read"])
            .subject("alice")
            .key()
    }

    fn tokens() -> StoredTokens {
        #[allow(clippy::disallowed_methods)]
        let now = std::time::SystemTime::now();
        StoredTokens::new()
            .with_refresh_token(RefreshToken::new("refresh-secret-r1"))
            .with_access_token(AccessToken::new("access-secret-a1"))
            .with_expires_at(now + Duration::from_secs(3600))
            .with_scope("read profile:private")
    }

    async fn raw_set(server: &RedisServer, name: &str, value: &[u8]) {
        let mut connection = redis::Client::open(server.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg(name)
            .arg(value)
            .query_async(&mut connection)
            .await
            .unwrap();
    }

    fn encrypted(server: &RedisServer, keyring: Keyring) -> EncryptedStore<RedisStore> {
        EncryptedStore::new(RedisStore::new(server.url()).unwrap(), keyring)
    }

    fn load_kind(result: Result<Option<StoredTokens>, tower_oauth2::store::StoreError>) -> StoreErrorKind {
        match result {
            Err(err) => {
                let text = format!("{err} {err:?}");
                assert!(!text.contains("secret"), "{text}");
                err.kind()
            }
            Ok(found) => panic!("loaded {found:?}"),
        }
    }

    #[tokio::test]
    async fn an_encrypted_redis_store_round_trips_and_redis_holds_no_plaintext() {
        let server = RedisServer::start();
        let store = encrypted(&server, keyring("k1", &K1));
        let saved = tokens();
        store.save(&key(), &saved).await.unwrap();
        assert_eq!(store.load(&key()).await.unwrap(), Some(saved.clone()));

        // Read the raw record with a connection of our own.
        let name = store.get_ref().keys(&key()).tokens;
        let raw = String::from_utf8(server.get::<Option<Vec<u8>>>(&name).await.unwrap()).unwrap();
        for plain in ["refresh-secret-r1", "access-secret-a1", "profile:private"] {
            assert!(!raw.contains(plain), "{plain} in Redis: {raw}");
        }
        assert!(raw.contains("\"v1.k1."), "{raw}");

        // Leases go through to Redis: the wrapper coordinates as the inner store does.
        let coordination = store.coordination().expect("the Redis lease");
        let lease = coordination.try_lease(&key()).await.unwrap().unwrap();
        assert!(coordination.try_lease(&key()).await.unwrap().is_none());
        assert!(coordination.save_fenced(&key(), &saved, &lease).await.unwrap());
        let raw = String::from_utf8(server.get::<Option<Vec<u8>>>(&name).await.unwrap()).unwrap();
        assert!(!raw.contains("refresh-secret-r1"), "{raw}");

        store.delete(&key()).await.unwrap();
        assert_eq!(server.get::<Option<Vec<u8>>>(&name).await, None);
    }

    #[tokio::test]
    async fn a_record_under_another_key_or_garbage_in_redis_is_a_typed_error() {
        let server = RedisServer::start();
        let name = RedisStore::new(server.url()).unwrap().keys(&key()).tokens;

        // Written under key id k2, read by a keyring that holds only k1.
        encrypted(&server, keyring("k2", &K2))
            .save(&key(), &tokens())
            .await
            .unwrap();
        let k1 = encrypted(&server, keyring("k1", &K1));
        assert_eq!(
            load_kind(k1.load(&key()).await),
            StoreErrorKind::UnknownEncryptionKey
        );

        // Written under id k1 with other key bytes: the AEAD refuses it.
        encrypted(&server, keyring("k1", &K1_OTHER))
            .save(&key(), &tokens())
            .await
            .unwrap();
        assert_eq!(load_kind(k1.load(&key()).await), StoreErrorKind::Corrupt);

        // A plaintext record, as a RedisStore without encryption writes it.
        RedisStore::new(server.url())
            .unwrap()
            .save(&key(), &tokens())
            .await
            .unwrap();
        assert_eq!(load_kind(k1.load(&key()).await), StoreErrorKind::Corrupt);

        // Garbage in the key.
        for garbage in [&b"\x00\xffnot json"[..], b"{}", b"v1.k1.AAAA", b""] {
            raw_set(&server, &name, garbage).await;
            assert_eq!(
                load_kind(k1.load(&key()).await),
                StoreErrorKind::Corrupt,
                "{:?}",
                String::from_utf8_lossy(garbage)
            );
        }
    }
}

// =====================================================================================
// The lease's ttl against the token request timeout
// =====================================================================================

fn build_with(ttl: Duration, policy: RefreshPolicy, users: bool) -> Result<CredentialRegistry, Error> {
    let store = RedisStore::builder("redis://127.0.0.1:1")
        .lease_settings(LeaseSettings::new(ttl, Duration::from_secs(30)))
        .build()
        .unwrap();
    let builder = CredentialRegistry::builder()
        .store(store)
        .transport(TokenEndpoint::new(LIFETIME).transport());
    match users {
        false => builder.credential(client_credentials().refresh_policy(policy)),
        true => builder.users(
            tower_oauth2::UserCredentialTemplate::new(
                support::provider(),
                "client-id",
                Some(CLIENT_SECRET.into()),
            )
            .redirect_uri("https://app.example.com/callback")
            .refresh_policy(policy),
        ),
    }
    .build()
}

#[test]
fn a_lease_that_does_not_outlast_the_token_request_timeout_is_refused_at_build() {
    let timeout = Duration::from_secs(10);
    let policy = RefreshPolicy::default().timeout(timeout);
    for users in [false, true] {
        for ttl in [Duration::from_secs(5), timeout] {
            match build_with(ttl, policy, users) {
                Err(Error::Config(err)) => {
                    let text = err.to_string();
                    assert!(
                        text.contains("the refresh lease's ttl") && text.contains("RefreshPolicy::timeout"),
                        "{text}"
                    );
                }
                other => panic!("ttl {ttl:?}, users {users}: {other:?}"),
            }
        }
        build_with(timeout + Duration::from_millis(1), policy, users).unwrap();
    }

    // The defaults agree with each other: a 15 s lease, a 10 s token request timeout.
    assert_eq!(LeaseSettings::default().ttl, Duration::from_secs(15));
    CredentialRegistry::builder()
        .store(RedisStore::new("redis://127.0.0.1:1").unwrap())
        .credential(Credential::client_credentials(
            support::provider(),
            "client-id",
            CLIENT_SECRET,
        ))
        .transport(TokenEndpoint::new(LIFETIME).transport())
        .build()
        .unwrap();
}
