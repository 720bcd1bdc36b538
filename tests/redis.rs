//! `RedisStore` against real redis-server processes: records, keys and hash tags,
//! expiry, damaged values, the refresh lease and its fencing numbers, change
//! notifications, and a Redis that dies, pauses and comes back.
#![cfg(all(feature = "redis", unix))]

mod redis_support;

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use redis_support::{key, RedisServer};
use tokio::time::Instant;
use tower_oauth2::{
    secret::{AccessToken, RefreshToken},
    store::{
        Lease, LeaseSettings, RedisStore, RefreshCoordination, StoreErrorKind, StoreOperation, StoredTokens,
        TokenStore,
    },
    CredentialKey,
};

fn store(server: &RedisServer) -> RedisStore {
    RedisStore::new(server.url()).unwrap()
}

fn short_lease(server: &RedisServer, ttl_ms: u64) -> RedisStore {
    RedisStore::builder(server.url())
        .lease_settings(LeaseSettings::new(
            Duration::from_millis(ttl_ms),
            Duration::from_secs(5),
        ))
        .build()
        .unwrap()
}

/// Redis expires keys on the wall clock, so these tests read it.
#[allow(clippy::disallowed_methods)]
fn wall_now() -> SystemTime {
    SystemTime::now()
}

fn full_tokens(refresh: &str) -> StoredTokens {
    StoredTokens::new()
        .with_refresh_token(RefreshToken::new(refresh))
        .with_access_token(AccessToken::new(format!("at-of-{refresh}")))
        .with_expires_at(wall_now() + Duration::from_secs(3600))
        .with_scope("read")
}

async fn raw(server: &RedisServer) -> redis::aio::MultiplexedConnection {
    redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn pttl(server: &RedisServer, name: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(name)
        .query_async(&mut raw(server).await)
        .await
        .unwrap()
}

async fn set_raw(server: &RedisServer, name: &str, value: &[u8]) {
    let _: () = redis::cmd("SET")
        .arg(name)
        .arg(value)
        .query_async(&mut raw(server).await)
        .await
        .unwrap();
}

// =====================================================================================
// Records and keys
// =====================================================================================

#[tokio::test]
async fn tokens_round_trip_between_connections() {
    let server = RedisServer::start();
    let (writer, reader) = (store(&server), store(&server));
    let alice = key("alice");
    assert_eq!(reader.load(&alice).await.unwrap(), None);

    let tokens = full_tokens("rt-1");
    writer.save(&alice, &tokens).await.unwrap();
    assert_eq!(reader.load(&alice).await.unwrap(), Some(tokens.clone()));
    assert_eq!(reader.load(&key("bob")).await.unwrap(), None);

    let only_refresh = StoredTokens::new().with_refresh_token(RefreshToken::new("rt-2"));
    writer.save(&alice, &only_refresh).await.unwrap();
    assert_eq!(reader.load(&alice).await.unwrap(), Some(only_refresh));

    reader.delete(&alice).await.unwrap();
    assert_eq!(writer.load(&alice).await.unwrap(), None);
    writer.delete(&alice).await.unwrap();
}

#[tokio::test]
async fn prefixes_isolate_applications_on_one_redis() {
    let server = RedisServer::start();
    let one = RedisStore::builder(server.url()).prefix("one").build().unwrap();
    let two = RedisStore::builder(server.url()).prefix("two").build().unwrap();
    let default = store(&server);
    assert_eq!(default.prefix(), "tower-oauth2");
    let alice = key("alice");

    one.save(&alice, &full_tokens("rt-one")).await.unwrap();
    assert_eq!(two.load(&alice).await.unwrap(), None);
    assert_eq!(default.load(&alice).await.unwrap(), None);
    two.save(&alice, &full_tokens("rt-two")).await.unwrap();
    let loaded = one.load(&alice).await.unwrap().unwrap();
    assert_eq!(loaded.refresh_token.unwrap().secret(), "rt-one");

    // Leases too: one application's lease does not block the other's.
    assert!(one.try_lease(&alice).await.unwrap().is_some());
    assert!(two.try_lease(&alice).await.unwrap().is_some());
    assert!(one.try_lease(&alice).await.unwrap().is_none());
}

#[test]
fn prefixes_that_would_break_the_hash_tag_are_refused() {
    for prefix in ["", "a{b", "a}b"] {
        let err = RedisStore::builder("redis://127.0.0.1:1")
            .prefix(prefix)
            .build()
            .unwrap_err();
        assert_eq!(err.operation(), StoreOperation::Open);
        assert_eq!(err.kind(), StoreErrorKind::Other);
    }
    let err = RedisStore::new("http://127.0.0.1:1").unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Other);
    assert!(RedisStore::builder("redis://127.0.0.1:1")
        .command_timeout(Duration::ZERO)
        .build()
        .is_err());
}

#[tokio::test]
async fn every_key_of_a_credential_shares_its_hash_tag() {
    let server = RedisServer::start();
    let store = store(&server);
    let alice = key("alice");
    let keys = store.keys(&alice);
    // The SHA-256 of `["acme","app","client_credentials",["read"],"alice"]`, the name a
    // FileStore gives the same key's file.
    assert_eq!(
        keys.tag,
        "{tower-oauth2:36b51cdab083d64d795a28851bc4d0be7a35e0150ffb7bd77fda311653d1a00e}"
    );

    store.save(&alice, &full_tokens("rt")).await.unwrap();
    let lease = store.try_lease(&alice).await.unwrap().unwrap();
    let names: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut raw(&server).await)
        .await
        .unwrap();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [keys.fence.clone(), keys.lease.clone(), keys.tokens.clone()],
        "{names:?}"
    );
    for name in names.iter().chain([&keys.channel]) {
        // Redis Cluster hashes the text between the first `{` and the next `}`.
        let tag = &name[name.find('{').unwrap()..=name.find('}').unwrap()];
        assert_eq!(tag, keys.tag, "{name}");
        assert!(name.starts_with(&keys.tag), "{name}");
    }
    store.release(&alice, &lease).await.unwrap();
}

#[tokio::test]
async fn entries_expire_with_their_grant() {
    let server = RedisServer::start();
    let store = store(&server);
    let alice = key("alice");
    let tokens_key = store.keys(&alice).tokens;

    // A refresh token: no expiry, whatever the access token's.
    store.save(&alice, &full_tokens("rt")).await.unwrap();
    assert_eq!(pttl(&server, &tokens_key).await, -1);

    // An access token alone: gone when it expires.
    let access_only = StoredTokens::new()
        .with_access_token(AccessToken::new("at"))
        .with_expires_at(wall_now() + Duration::from_secs(60));
    store.save(&alice, &access_only).await.unwrap();
    let left = pttl(&server, &tokens_key).await;
    assert!((58_000..=60_000).contains(&left), "{left}");

    // Back to a refresh token: the expiry is lifted.
    store.save(&alice, &full_tokens("rt")).await.unwrap();
    assert_eq!(pttl(&server, &tokens_key).await, -1);

    // An access token with no known expiry: kept.
    store
        .save(
            &alice,
            &StoredTokens::new().with_access_token(AccessToken::new("at")),
        )
        .await
        .unwrap();
    assert_eq!(pttl(&server, &tokens_key).await, -1);

    // Already expired: gone at once.
    let expired = StoredTokens::new()
        .with_access_token(AccessToken::new("at"))
        .with_expires_at(wall_now() - Duration::from_secs(5));
    store.save(&alice, &expired).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.load(&alice).await.unwrap(), None);

    // A fenced save follows the same rule, and the fence counter expires with the
    // record (never before a lease, 15 s by default).
    let fence_key = store.keys(&alice).fence;
    let short = StoredTokens::new()
        .with_access_token(AccessToken::new("at"))
        .with_expires_at(wall_now() + Duration::from_secs(30));
    let lease = store.try_lease(&alice).await.unwrap().unwrap();
    assert!(store.save_fenced(&alice, &short, &lease).await.unwrap());
    let left = pttl(&server, &tokens_key).await;
    assert!((28_000..=30_000).contains(&left), "{left}");
    let fence_left = pttl(&server, &fence_key).await;
    assert!((28_000..=30_000).contains(&fence_left), "{fence_left}");
    let lease_left = pttl(&server, &store.keys(&alice).lease).await;
    assert!(
        (14_000..=15_000).contains(&lease_left),
        "the default 15 s ttl: {lease_left}"
    );

    // A record that is kept keeps its counter; one shorter than a lease keeps the
    // counter for the lease.
    store.save(&alice, &full_tokens("rt")).await.unwrap();
    assert_eq!(pttl(&server, &fence_key).await, -1);
    let brief = StoredTokens::new()
        .with_access_token(AccessToken::new("at"))
        .with_expires_at(wall_now() + Duration::from_secs(2));
    store.save(&alice, &brief).await.unwrap();
    let fence_left = pttl(&server, &fence_key).await;
    assert!((14_000..=15_000).contains(&fence_left), "{fence_left}");

    // A delete takes the counter with the record.
    store.delete(&alice).await.unwrap();
    assert_eq!(pttl(&server, &fence_key).await, -2);
}

#[tokio::test]
async fn a_refresh_token_lifetime_expires_the_record_and_its_fence_counter() {
    let server = RedisServer::start();
    let day = Duration::from_secs(24 * 3600);
    let store = RedisStore::builder(server.url())
        .refresh_token_lifetime(Some(30 * day))
        .build()
        .unwrap();
    let alice = key("alice");
    let keys = store.keys(&alice);
    let thirty_days = i64::try_from((30 * day).as_millis()).unwrap();
    let about_thirty_days = (thirty_days - 5_000)..=thirty_days;

    // A refresh token and an access token of an hour: 30 days after the save.
    store.save(&alice, &full_tokens("rt")).await.unwrap();
    let left = pttl(&server, &keys.tokens).await;
    assert!(about_thirty_days.contains(&left), "{left}");

    // Through the lease: the record and its counter alike.
    let lease = store.try_lease(&alice).await.unwrap().unwrap();
    let fence_left = pttl(&server, &keys.fence).await;
    assert!(about_thirty_days.contains(&fence_left), "{fence_left}");
    assert!(store
        .save_fenced(&alice, &full_tokens("rt-2"), &lease)
        .await
        .unwrap());
    let left = pttl(&server, &keys.tokens).await;
    let fence_left = pttl(&server, &keys.fence).await;
    assert!(about_thirty_days.contains(&left), "{left}");
    assert!(about_thirty_days.contains(&fence_left), "{fence_left}");

    // Never before the access token: one of 40 days keeps the record 40 days.
    let long = StoredTokens::new()
        .with_refresh_token(RefreshToken::new("rt-3"))
        .with_access_token(AccessToken::new("at"))
        .with_expires_at(wall_now() + 40 * day);
    store.save(&alice, &long).await.unwrap();
    let forty_days = i64::try_from((40 * day).as_millis()).unwrap();
    let left = pttl(&server, &keys.tokens).await;
    assert!(((forty_days - 5_000)..=forty_days).contains(&left), "{left}");

    // The default keeps it: no lifetime is guessed.
    store.delete(&alice).await.unwrap();
    let default = RedisStore::new(server.url()).unwrap();
    default.save(&alice, &full_tokens("rt")).await.unwrap();
    assert_eq!(pttl(&server, &keys.tokens).await, -1);

    let err = RedisStore::builder(server.url())
        .refresh_token_lifetime(Some(Duration::ZERO))
        .build()
        .unwrap_err();
    assert_eq!(err.operation(), StoreOperation::Open);
}

#[tokio::test]
async fn a_fence_counter_that_is_gone_starts_above_every_number_it_granted() {
    let server = RedisServer::start();
    let (paused, current) = (short_lease(&server, 100), short_lease(&server, 100));
    let alice = key("alice");
    let fence_key = current.keys(&alice).fence;
    let old = paused.try_lease(&alice).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;

    // The counter expired (or Redis lost it): the next number is still greater.
    let _: () = redis::cmd("DEL")
        .arg(&fence_key)
        .query_async(&mut raw(&server).await)
        .await
        .unwrap();
    let new = current.try_lease(&alice).await.unwrap().unwrap();
    assert!(new.fence > old.fence, "{new:?} after {old:?}");
    assert!(current
        .save_fenced(&alice, &full_tokens("rt-1"), &new)
        .await
        .unwrap());
    assert!(!paused
        .save_fenced(&alice, &full_tokens("rt-stale"), &old)
        .await
        .unwrap());
    let kept = current.load(&alice).await.unwrap().unwrap();
    assert_eq!(kept.refresh_token.unwrap().secret(), "rt-1");
}

#[tokio::test]
async fn foreign_or_damaged_values_are_typed_errors_that_quote_nothing() {
    let server = RedisServer::start();
    let store = store(&server);
    let alice = key("alice");
    let name = store.keys(&alice).tokens;
    let another_record = {
        // Bob's record, put under Alice's key.
        store.save(&key("bob"), &full_tokens("rt-secret")).await.unwrap();
        let bytes: Vec<u8> = redis::cmd("GET")
            .arg(store.keys(&key("bob")).tokens)
            .query_async(&mut raw(&server).await)
            .await
            .unwrap();
        bytes
    };
    let newer = String::from_utf8(another_record.clone())
        .unwrap()
        .replace("\"version\": 1", "\"version\": 7")
        .replace("\"subject\": \"bob\"", "\"subject\": \"alice\"");
    let cases: Vec<(Vec<u8>, StoreErrorKind)> = vec![
        (b"rt-secret".to_vec(), StoreErrorKind::Corrupt),
        (
            b"{\"refresh_token\": \"rt-secret\"}".to_vec(),
            StoreErrorKind::Corrupt,
        ),
        (
            br#"{"format":"someone else's","version":1,"refresh_token":"rt-secret"}"#.to_vec(),
            StoreErrorKind::Corrupt,
        ),
        (vec![0xff, 0xfe, b'r', b't'], StoreErrorKind::Corrupt),
        (vec![b' '; 2 * 1024 * 1024], StoreErrorKind::Corrupt),
        (another_record, StoreErrorKind::KeyMismatch),
        (newer.into_bytes(), StoreErrorKind::UnsupportedVersion),
    ];
    for (value, kind) in cases {
        set_raw(&server, &name, &value).await;
        let err = store.load(&alice).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{err}");
        assert_eq!(err.operation(), StoreOperation::Load);
        let printed = format!("{err} {err:?} {:?}", std::error::Error::source(&err));
        assert!(!printed.contains("rt-secret"), "{printed}");
    }

    // Another kind of Redis value under the key.
    let _: () = redis::cmd("DEL")
        .arg(&name)
        .query_async(&mut raw(&server).await)
        .await
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(&name)
        .arg("refresh_token")
        .arg("rt-secret")
        .query_async(&mut raw(&server).await)
        .await
        .unwrap();
    let err = store.load(&alice).await.unwrap_err();
    assert_eq!(err.kind(), StoreErrorKind::Corrupt, "{err}");
    assert!(!format!("{err} {err:?}").contains("rt-secret"));
}

// =====================================================================================
// The lease
// =====================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_of_fifty_concurrent_leases_is_granted() {
    let server = RedisServer::start();
    let alice = key("alice");
    // Five processes' worth of connections, ten callers each.
    let stores: Vec<RedisStore> = (0..5).map(|_| store(&server)).collect();
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (store, barrier, key) = (stores[i % 5].clone(), barrier.clone(), alice.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            store.try_lease(&key).await.unwrap()
        }));
    }
    let mut granted = Vec::new();
    for task in tasks {
        granted.extend(task.await.unwrap());
    }
    assert_eq!(granted.len(), 1, "{granted:?}");
    // The refused 49 moved no fencing number: the holder's fenced save goes through.
    assert!(stores[3]
        .save_fenced(&alice, &full_tokens("rt"), &granted[0])
        .await
        .unwrap());
}

#[tokio::test]
async fn fencing_numbers_strictly_increase() {
    let server = RedisServer::start();
    let store = short_lease(&server, 100);
    let alice = key("alice");
    let mut fences = Vec::new();
    for round in 0..6 {
        let lease = store.try_lease(&alice).await.unwrap().unwrap();
        fences.push(lease.fence);
        if round % 2 == 0 {
            store.release(&alice, &lease).await.unwrap();
        } else {
            // Left to expire.
            assert_eq!(store.try_lease(&alice).await.unwrap(), None);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
    // One apart: the counter counts grants. It starts from Redis's clock in
    // microseconds, past 2026-01-01 here.
    let first = fences[0];
    assert_eq!(fences, (first..first + 6).collect::<Vec<_>>());
    assert!(first > 1_767_225_600_000_000, "{first}");
    // Another credential counts on its own.
    let bob = store.try_lease(&key("bob")).await.unwrap().unwrap();
    let alice_next = store.try_lease(&alice).await.unwrap().unwrap();
    assert_eq!(alice_next.fence, first + 6, "bob's lease moved alice's counter");
    assert!(bob.fence > 1_767_225_600_000_000, "{bob:?}");
}

#[tokio::test]
async fn a_stale_holder_cannot_save_after_a_newer_lease() {
    let server = RedisServer::start();
    let (paused, current) = (short_lease(&server, 100), short_lease(&server, 100));
    let alice = key("alice");
    current.save(&alice, &full_tokens("rt-0")).await.unwrap();

    let old = paused.try_lease(&alice).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let new = current.try_lease(&alice).await.unwrap().unwrap();
    assert!(new.fence > old.fence);

    assert!(!paused
        .save_fenced(&alice, &full_tokens("rt-stale"), &old)
        .await
        .unwrap());
    let kept = current.load(&alice).await.unwrap().unwrap();
    assert_eq!(kept.refresh_token.unwrap().secret(), "rt-0");

    assert!(current
        .save_fenced(&alice, &full_tokens("rt-1"), &new)
        .await
        .unwrap());
    // Still refused once the newer lease is released: a newer one was granted.
    current.release(&alice, &new).await.unwrap();
    assert!(!paused
        .save_fenced(&alice, &full_tokens("rt-stale"), &old)
        .await
        .unwrap());
    let kept = paused.load(&alice).await.unwrap().unwrap();
    assert_eq!(kept.refresh_token.unwrap().secret(), "rt-1");

    // The last lease, expired and not replaced, still saves: nobody else refreshed.
    let last = current.try_lease(&alice).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(current
        .save_fenced(&alice, &full_tokens("rt-2"), &last)
        .await
        .unwrap());
}

#[tokio::test]
async fn a_stale_release_leaves_the_current_lease_alone() {
    let server = RedisServer::start();
    let (stale, holder, third) = (
        short_lease(&server, 100),
        short_lease(&server, 5_000),
        short_lease(&server, 5_000),
    );
    let alice = key("alice");
    let old = stale.try_lease(&alice).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let held = holder.try_lease(&alice).await.unwrap().unwrap();

    stale.release(&alice, &old).await.unwrap();
    assert_eq!(third.try_lease(&alice).await.unwrap(), None, "still held");
    holder.release(&alice, &held).await.unwrap();
    assert_eq!(
        third.try_lease(&alice).await.unwrap(),
        Some(Lease {
            fence: held.fence + 1
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_save_by_another_connection_wakes_a_waiter_at_once() {
    let server = RedisServer::start();
    let holder = store(&server);
    // Polling every 30 s: only the notification can wake it in time.
    let waiter = RedisStore::builder(server.url())
        .poll_interval(Duration::from_secs(30))
        .build()
        .unwrap();
    let alice = key("alice");
    let lease = holder.try_lease(&alice).await.unwrap().unwrap();

    let waiting = {
        let (waiter, alice) = (waiter.clone(), alice.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            waiter.changed(&alice, Duration::from_secs(10)).await.unwrap();
            started.elapsed()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "woke with the lease still held and nothing saved"
    );
    let saved_at = Instant::now();
    assert!(holder
        .save_fenced(&alice, &full_tokens("rt-1"), &lease)
        .await
        .unwrap());
    let waited = waiting.await.unwrap();
    let after_save = saved_at.elapsed();
    assert!(
        after_save < Duration::from_millis(500),
        "{after_save:?} after the save"
    );
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    holder.release(&alice, &lease).await.unwrap();

    // A release wakes too; nothing at all wakes at `at_most`.
    let lease = holder.try_lease(&alice).await.unwrap().unwrap();
    let started = Instant::now();
    let (release, wait) = tokio::join!(
        async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            holder.release(&alice, &lease).await.unwrap();
        },
        waiter.changed(&alice, Duration::from_secs(10))
    );
    let _: () = release;
    wait.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );

    let _held = holder.try_lease(&alice).await.unwrap().unwrap();
    let started = Instant::now();
    waiter.changed(&alice, Duration::from_millis(400)).await.unwrap();
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(400)..Duration::from_millis(700)).contains(&waited),
        "{waited:?}"
    );
}

#[tokio::test]
async fn a_waiter_sees_a_lease_that_expired_by_polling() {
    let server = RedisServer::start();
    let dead_holder = short_lease(&server, 300);
    let waiter = RedisStore::builder(server.url())
        .poll_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let alice = key("alice");
    dead_holder.try_lease(&alice).await.unwrap().unwrap();
    let started = Instant::now();
    waiter.changed(&alice, Duration::from_secs(10)).await.unwrap();
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(250)..Duration::from_millis(600)).contains(&waited),
        "{waited:?}"
    );
    assert!(waiter.try_lease(&alice).await.unwrap().is_some());
}

// =====================================================================================
// Redis down, paused, back
// =====================================================================================

fn bounded(server: &RedisServer) -> RedisStore {
    RedisStore::builder(server.url())
        .connect_timeout(Duration::from_millis(200))
        .command_timeout(Duration::from_millis(200))
        .build()
        .unwrap()
}

/// `operation` fails with an I/O error within `bound`.
async fn fails_within<T: std::fmt::Debug>(
    name: &str,
    operation: StoreOperation,
    bound: Duration,
    work: impl std::future::Future<Output = Result<T, tower_oauth2::store::StoreError>>,
) {
    let started = Instant::now();
    let err = work.await.expect_err(name);
    let took = started.elapsed();
    assert_eq!(err.kind(), StoreErrorKind::Io, "{name}: {err}");
    assert_eq!(err.operation(), operation, "{name}");
    assert!(took <= bound, "{name} took {took:?}");
}

/// Every operation of `store` on `key` fails with an I/O error within `bound`.
async fn every_operation_fails_within(store: &RedisStore, key: &CredentialKey, bound: Duration) {
    use StoreOperation::{Delete, Load, Save};
    let tokens = full_tokens("rt");
    let lease = Lease { fence: 1 };
    fails_within("load", Load, bound, store.load(key)).await;
    fails_within("save", Save, bound, store.save(key, &tokens)).await;
    fails_within("delete", Delete, bound, store.delete(key)).await;
    fails_within("try_lease", StoreOperation::Lease, bound, store.try_lease(key)).await;
    fails_within(
        "save_fenced",
        Save,
        bound,
        store.save_fenced(key, &tokens, &lease),
    )
    .await;
    fails_within(
        "release",
        StoreOperation::Lease,
        bound,
        store.release(key, &lease),
    )
    .await;
    let changed = store.changed(key, Duration::from_secs(30));
    fails_within("changed", StoreOperation::Lease, bound, changed).await;
}

#[tokio::test]
async fn a_stopped_redis_is_a_typed_error_within_the_bound() {
    let mut server = RedisServer::start();
    let store = bounded(&server);
    let alice = key("alice");
    store.save(&alice, &full_tokens("rt")).await.unwrap();
    server.stop();
    // The bound is 200 ms + 200 ms; 100 ms of slack for a busy machine.
    every_operation_fails_within(&store, &alice, Duration::from_millis(500)).await;
}

#[tokio::test]
async fn a_paused_redis_is_a_typed_error_within_the_bound() {
    let server = RedisServer::start();
    let store = bounded(&server);
    let alice = key("alice");
    store.save(&alice, &full_tokens("rt")).await.unwrap();
    // Connections are accepted by the kernel, and nothing answers.
    server.signal("STOP");
    every_operation_fails_within(&store, &alice, Duration::from_millis(500)).await;
    server.signal("CONT");
}

#[tokio::test]
async fn the_same_store_works_again_after_redis_restarts() {
    let mut server = RedisServer::start_persistent();
    let store = bounded(&server);
    let alice = key("alice");
    store.save(&alice, &full_tokens("rt-1")).await.unwrap();
    server.stop();
    assert!(store.load(&alice).await.is_err());
    server.restart();

    // The connection manager reconnects in the background; the first command after the
    // restart may still meet the dead connection.
    let started = Instant::now();
    let mut failures = 0;
    let loaded = loop {
        match store.load(&alice).await {
            Ok(loaded) => break loaded,
            Err(err) => {
                assert_eq!(err.kind(), StoreErrorKind::Io, "{err}");
                failures += 1;
                assert!(
                    started.elapsed() < Duration::from_secs(3),
                    "{failures} failures: {err}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert!(failures <= 2, "{failures}");
    assert_eq!(loaded.unwrap().refresh_token.unwrap().secret(), "rt-1");
    store.save(&alice, &full_tokens("rt-2")).await.unwrap();
    let lease = store.try_lease(&alice).await.unwrap().unwrap();
    assert!(store
        .save_fenced(&alice, &full_tokens("rt-3"), &lease)
        .await
        .unwrap());
}

#[tokio::test]
async fn a_password_in_the_url_is_never_printed() {
    let server = RedisServer::start();
    // A password the server does not expect: authentication fails.
    let url = format!("redis://:hunter2-secret@127.0.0.1:{}", server.port());
    let store = RedisStore::builder(&url)
        .connect_timeout(Duration::from_millis(300))
        .command_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let printed = format!("{store:?} {:?}", RedisStore::builder(&url));
    assert!(
        printed.contains(&format!("127.0.0.1:{}", server.port())),
        "{printed}"
    );
    let err = store.load(&key("alice")).await.unwrap_err();
    let mut printed = format!("{printed} {err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        printed.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    assert!(!printed.contains("hunter2"), "{printed}");
}
