//! The credential core's side of the refresh lease, on paused time: several registries
//! (standing in for replicas) share one store whose `RefreshCoordination` is written
//! here, in memory, from the public trait alone. The same flows against a real Redis,
//! with replicas as separate processes, are in `tests/replicas.rs`.

mod support;

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use futures_util::future::join_all;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use support::{no_jitter, API};
use tokio::{sync::Notify, time::Instant};
use tower::{Layer, ServiceExt};
use tower_oauth2::{
    store::{
        BoxFuture, Lease, LeaseSettings, RefreshCoordination, StoreError, StoreErrorKind, StoreOperation,
        StoredTokens, TokenStore,
    },
    ClientAuth, Credential, CredentialKey, CredentialRegistry, Error, OAuth2Layer, Provider, RefreshPolicy,
    RefreshTokens, TokenTransport,
};

// ===== a store shared by "replicas" =====

/// A key's fence counter, and the lease held (its fence and end).
type LeaseState = (u64, Option<(u64, Instant)>);

#[derive(Default)]
struct Shared {
    records: Mutex<HashMap<String, StoredTokens>>,
    leases: Mutex<HashMap<String, LeaseState>>,
    changes: Notify,
    down: AtomicBool,
    /// How long each operation takes before it answers, in ms (a slow store).
    delay_ms: AtomicU64,
    /// Extra delays of the next loads, in order.
    load_delays: Mutex<Vec<Duration>>,
    granted: AtomicUsize,
    refused_saves: AtomicUsize,
}

#[derive(Clone)]
struct SharedStore {
    shared: Arc<Shared>,
    settings: LeaseSettings,
}

impl SharedStore {
    fn new(settings: LeaseSettings) -> Self {
        Self {
            shared: Arc::default(),
            settings,
        }
    }

    /// Takes the store's delay, then fails if the store is down.
    async fn enter(&self, operation: StoreOperation, key: &CredentialKey) -> Result<(), StoreError> {
        let delay = self.shared.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.check(operation, key)
    }

    fn check(&self, operation: StoreOperation, key: &CredentialKey) -> Result<(), StoreError> {
        match self.shared.down.load(Ordering::SeqCst) {
            true => Err(StoreError::new(operation, key, "the shared store is down")),
            false => Ok(()),
        }
    }

    fn access_token(&self) -> Option<String> {
        let records = self.shared.records.lock().unwrap();
        let record = records.values().next()?;
        Some(record.access_token.as_ref()?.secret().to_owned())
    }
}

impl TokenStore for SharedStore {
    fn load<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Option<StoredTokens>, StoreError>> {
        Box::pin(async move {
            let delay = {
                let mut delays = self.shared.load_delays.lock().unwrap();
                (!delays.is_empty()).then(|| delays.remove(0))
            };
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            self.enter(StoreOperation::Load, key).await?;
            Ok(self.shared.records.lock().unwrap().get(&key.to_string()).cloned())
        })
    }

    fn save<'a>(
        &'a self,
        key: &'a CredentialKey,
        tokens: &'a StoredTokens,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.enter(StoreOperation::Save, key).await?;
            self.shared
                .records
                .lock()
                .unwrap()
                .insert(key.to_string(), tokens.clone());
            self.shared.changes.notify_waiters();
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.enter(StoreOperation::Delete, key).await?;
            self.shared.records.lock().unwrap().remove(&key.to_string());
            Ok(())
        })
    }

    fn coordination(&self) -> Option<&dyn RefreshCoordination> {
        Some(self)
    }
}

impl RefreshCoordination for SharedStore {
    fn settings(&self) -> LeaseSettings {
        self.settings
    }

    fn try_lease<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Option<Lease>, StoreError>> {
        Box::pin(async move {
            self.enter(StoreOperation::Lease, key).await?;
            let mut leases = self.shared.leases.lock().unwrap();
            let (fence, held) = leases.entry(key.to_string()).or_default();
            let now = Instant::now();
            if held.is_some_and(|(_, until)| until > now) {
                return Ok(None);
            }
            *fence += 1;
            *held = Some((*fence, now + self.settings.ttl));
            self.shared.granted.fetch_add(1, Ordering::SeqCst);
            Ok(Some(Lease { fence: *fence }))
        })
    }

    fn save_fenced<'a>(
        &'a self,
        key: &'a CredentialKey,
        tokens: &'a StoredTokens,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            self.enter(StoreOperation::Save, key).await?;
            let current = self
                .shared
                .leases
                .lock()
                .unwrap()
                .get(&key.to_string())
                .map(|(fence, _)| *fence);
            if current != Some(lease.fence) {
                self.shared.refused_saves.fetch_add(1, Ordering::SeqCst);
                return Ok(false);
            }
            self.shared
                .records
                .lock()
                .unwrap()
                .insert(key.to_string(), tokens.clone());
            self.shared.changes.notify_waiters();
            Ok(true)
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a CredentialKey,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut leases = self.shared.leases.lock().unwrap();
            if let Some((_, held)) = leases.get_mut(&key.to_string()) {
                if held.is_some_and(|(fence, _)| fence == lease.fence) {
                    *held = None;
                }
            }
            self.shared.changes.notify_waiters();
            Ok(())
        })
    }

    fn changed<'a>(
        &'a self,
        key: &'a CredentialKey,
        at_most: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.enter(StoreOperation::Lease, key).await?;
            // A notification, or a poll every 100 ms (an expired lease sends none).
            let _ = tokio::time::timeout(
                at_most.min(Duration::from_millis(100)),
                self.shared.changes.notified(),
            )
            .await;
            Ok(())
        })
    }
}

// ===== a token endpoint that rotates refresh tokens =====

#[derive(Default)]
struct Endpoint {
    requests: AtomicUsize,
    refused: AtomicUsize,
    issued: AtomicU64,
    /// The refresh token that works now (`rt-0` at first).
    current_refresh: Mutex<String>,
    /// Delays of the next requests, in order.
    delays: Mutex<Vec<Duration>>,
    lifetime: u64,
}

fn endpoint(lifetime: u64) -> Arc<Endpoint> {
    let endpoint = Endpoint {
        lifetime,
        ..Endpoint::default()
    };
    *endpoint.current_refresh.lock().unwrap() = "rt-0".into();
    Arc::new(endpoint)
}

fn transport(endpoint: &Arc<Endpoint>) -> TokenTransport {
    let endpoint = Arc::clone(endpoint);
    TokenTransport::new(tower::service_fn(move |req: Request<Full<Bytes>>| {
        let endpoint = Arc::clone(&endpoint);
        async move {
            endpoint.requests.fetch_add(1, Ordering::SeqCst);
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
            let delay = {
                let mut delays = endpoint.delays.lock().unwrap();
                (!delays.is_empty()).then(|| delays.remove(0))
            };
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            if form["grant_type"] == "refresh_token" {
                let mut current = endpoint.current_refresh.lock().unwrap();
                if form["refresh_token"] != *current {
                    endpoint.refused.fetch_add(1, Ordering::SeqCst);
                    let refused = Response::builder()
                        .status(StatusCode::BAD_REQUEST)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(br#"{"error":"invalid_grant"}"#)))
                        .unwrap();
                    return Ok::<_, Infallible>(refused);
                }
                let n = endpoint.issued.fetch_add(1, Ordering::SeqCst) + 1;
                *current = format!("rt-{n}");
            } else {
                endpoint.issued.fetch_add(1, Ordering::SeqCst);
            }
            let n = endpoint.issued.load(Ordering::SeqCst);
            let body = format!(
                r#"{{"access_token":"at-{n}","token_type":"Bearer","expires_in":{},"refresh_token":"rt-{n}"}}"#,
                endpoint.lifetime
            );
            Ok(Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(body)))
                .unwrap())
        }
    }))
}

// ===== replicas =====

/// A token request timeout shorter than every lease here (the registry refuses a
/// lease that does not outlast it).
fn policy() -> RefreshPolicy {
    RefreshPolicy::default()
        .random(no_jitter)
        .timeout(Duration::from_secs(4))
}

fn rotating() -> Credential {
    let provider = Provider::standard("https://auth.example.com/token")
        .api(API)
        .client_auth(ClientAuth::None)
        .refresh_tokens(RefreshTokens::Rotated);
    Credential::refresh_token(provider, "app", None, "rt-0").refresh_policy(policy())
}

fn client_credentials() -> Credential {
    let provider = Provider::standard("https://auth.example.com/token").api(API);
    Credential::client_credentials(provider, "app", "secret").refresh_policy(policy())
}

fn replica(credential: Credential, store: &SharedStore, endpoint: &Arc<Endpoint>) -> CredentialRegistry {
    CredentialRegistry::builder()
        .credential(credential)
        .store(store.clone())
        .transport(transport(endpoint))
        .build()
        .unwrap()
}

/// Sends `n` concurrent requests through `credentials`; the access tokens they carried.
async fn call(credentials: &CredentialRegistry, n: usize) -> Vec<Result<String, Error>> {
    let api = tower::service_fn(|req: Request<Full<Bytes>>| async move {
        let token = req.headers()["authorization"]
            .to_str()
            .unwrap()
            .trim_start_matches("Bearer ")
            .to_owned();
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(token))))
    });
    let client = OAuth2Layer::new(credentials.clone()).layer(api);
    let calls = (0..n).map(|_| {
        let client = client.clone();
        tokio::spawn(async move {
            let request = Request::get(format!("{API}/x")).body(Full::default()).unwrap();
            let response = client.oneshot(request).await?;
            let body = response.into_body().collect().await.unwrap().to_bytes();
            Ok(String::from_utf8(body.to_vec()).unwrap())
        })
    });
    join_all(calls).await.into_iter().map(Result::unwrap).collect()
}

async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn four_replicas_of_250_callers_make_one_token_request_per_refresh() {
    let store = SharedStore::new(LeaseSettings::default());
    let endpoint = endpoint(100);
    let replicas: Vec<_> = (0..4)
        .map(|_| replica(client_credentials(), &store, &endpoint))
        .collect();

    // A cold start of all four at once.
    let results = join_all(replicas.iter().map(|r| call(r, 250))).await;
    assert!(results
        .iter()
        .flatten()
        .all(|r| r.as_deref().ok() == Some("at-1")));
    assert_eq!(
        endpoint.requests.load(Ordering::SeqCst),
        1,
        "one token request for 1,000 callers"
    );

    // Through the refresh point (half of a 100 s lifetime), then past the expiry.
    for (round, expected) in [(1, "at-2"), (2, "at-3")] {
        tokio::time::advance(Duration::from_secs(51)).await;
        settle().await;
        let _ = join_all(replicas.iter().map(|r| call(r, 250))).await;
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
        let results = join_all(replicas.iter().map(|r| call(r, 250))).await;
        assert!(
            results
                .iter()
                .flatten()
                .all(|r| r.as_deref().ok() == Some(expected)),
            "round {round}: every replica on the newest token"
        );
        assert_eq!(
            endpoint.requests.load(Ordering::SeqCst),
            1 + round,
            "round {round}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn replicas_sharing_a_rotating_refresh_token_never_present_a_used_one() {
    let store = SharedStore::new(LeaseSettings::default());
    let endpoint = endpoint(100);
    let replicas: Vec<_> = (0..4).map(|_| replica(rotating(), &store, &endpoint)).collect();
    let _ = join_all(replicas.iter().map(|r| call(r, 50))).await;
    for rotation in 1..=50 {
        tokio::time::advance(Duration::from_secs(51)).await;
        settle().await;
        let results = join_all(replicas.iter().map(|r| call(r, 50))).await;
        assert!(results.iter().flatten().all(Result::is_ok), "rotation {rotation}");
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
        let newest = format!("at-{}", rotation + 1);
        let results = join_all(replicas.iter().map(|r| call(r, 50))).await;
        assert!(
            results
                .iter()
                .flatten()
                .all(|r| r.as_deref().ok() == Some(newest.as_str())),
            "rotation {rotation}: every replica on {newest}"
        );
    }
    assert_eq!(
        endpoint.refused.load(Ordering::SeqCst),
        0,
        "no refresh token presented twice"
    );
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 51);
    assert_eq!(*endpoint.current_refresh.lock().unwrap(), "rt-51");
}

#[tokio::test(start_paused = true)]
async fn a_lease_left_by_a_dead_holder_delays_the_refresh_by_its_ttl_only() {
    let settings = LeaseSettings::new(Duration::from_secs(5), Duration::from_secs(15));
    let store = SharedStore::new(settings);
    let endpoint = endpoint(100);
    let credentials = replica(rotating(), &store, &endpoint);
    // A holder that took the lease and died.
    let key = credentials.keys().remove(0);
    let lease = store.try_lease(&key).await.unwrap();
    assert_eq!(lease, Some(Lease { fence: 1 }));

    let started = Instant::now();
    let results = call(&credentials, 10).await;
    assert!(results.iter().all(|r| r.as_deref().ok() == Some("at-1")));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(5) && waited <= Duration::from_secs(6),
        "{waited:?}"
    );
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 1);
    assert_eq!(endpoint.refused.load(Ordering::SeqCst), 0, "rt-0 used once");
}

#[tokio::test(start_paused = true)]
async fn a_lease_held_too_long_gives_a_typed_error_within_the_bound() {
    let settings = LeaseSettings::new(Duration::from_secs(600), Duration::from_secs(2));
    let store = SharedStore::new(settings);
    let endpoint = endpoint(100);
    let credentials = replica(rotating(), &store, &endpoint);
    let key = credentials.keys().remove(0);
    store.try_lease(&key).await.unwrap().unwrap();

    let started = Instant::now();
    let results = call(&credentials, 3).await;
    for result in results {
        let Err(Error::Store(err)) = result else {
            panic!("expected a store error, got {result:?}");
        };
        assert_eq!(err.kind(), StoreErrorKind::LeaseWaitExceeded);
        assert_eq!(err.operation(), StoreOperation::Lease);
    }
    assert!(
        started.elapsed() <= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_holder_that_outlives_its_lease_cannot_overwrite_newer_tokens() {
    let settings = LeaseSettings::new(Duration::from_secs(5), Duration::from_secs(15));
    let store = SharedStore::new(settings);
    let endpoint = endpoint(100);
    // The first holder's read under the lease takes 2 s and its token request 3.5 s
    // (within the 4 s timeout): it outlives its 5 s lease. The second's are immediate.
    store
        .shared
        .load_delays
        .lock()
        .unwrap()
        .extend([Duration::ZERO, Duration::from_secs(2)]);
    endpoint.delays.lock().unwrap().push(Duration::from_millis(3500));
    let slow = replica(client_credentials(), &store, &endpoint);
    let fast = replica(client_credentials(), &store, &endpoint);

    let slow_call = tokio::spawn({
        let slow = slow.clone();
        async move { call(&slow, 1).await }
    });
    settle().await;
    tokio::time::advance(Duration::from_millis(5200)).await;
    // The lease expired: the second replica takes the next one and refreshes (its
    // answer comes first, so it is `at-1`).
    assert_eq!(call(&fast, 1).await[0].as_deref().unwrap(), "at-1");
    assert_eq!(store.access_token().as_deref(), Some("at-1"));

    tokio::time::advance(Duration::from_secs(1)).await;
    // The first holder's answer comes: valid, used by its own replica, but not written.
    let slow_token = slow_call.await.unwrap().remove(0).unwrap();
    assert_eq!(slow_token, "at-2");
    assert_eq!(store.shared.refused_saves.load(Ordering::SeqCst), 1);
    assert_eq!(
        store.access_token().as_deref(),
        Some("at-1"),
        "the newer lease's tokens stay"
    );
    assert_eq!(store.shared.granted.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn with_the_store_down_a_valid_token_serves_and_only_harmless_refreshes_go_alone() {
    let store = SharedStore::new(LeaseSettings::default());
    let endpoint = endpoint(100);
    let replica_cc = replica(client_credentials(), &store, &endpoint);
    assert_eq!(call(&replica_cc, 1).await[0].as_deref().unwrap(), "at-1");
    store.shared.down.store(true, Ordering::SeqCst);

    // In the refresh window: the background refresh fails, the valid token still serves.
    tokio::time::advance(Duration::from_secs(60)).await;
    settle().await;
    let results = call(&replica_cc, 20).await;
    assert!(
        results.iter().all(|r| r.is_ok()),
        "0 failed requests while a token is valid"
    );

    // Client credentials refresh alone once the store fails (the fallback is on).
    tokio::time::advance(Duration::from_secs(45)).await;
    settle().await;
    let results = call(&replica_cc, 5).await;
    assert!(
        results.iter().all(|r| r.as_ref().is_ok_and(|t| t != "at-1")),
        "{results:?}"
    );

    // A rotating refresh token never refreshes without the lease: a typed error.
    let replica_rt = replica(rotating(), &store, &endpoint);
    let before = endpoint.requests.load(Ordering::SeqCst);
    let results = call(&replica_rt, 3).await;
    assert!(results
        .iter()
        .all(|r| matches!(r, Err(Error::Store(err)) if err.operation() == StoreOperation::Load)));
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), before);

    // Back up: the same registries carry on.
    store.shared.down.store(false, Ordering::SeqCst);
    tokio::time::advance(Duration::from_secs(5)).await;
    let results = call(&replica_rt, 3).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(endpoint.refused.load(Ordering::SeqCst), 0);
}

// ===== one deadline, however slow the store =====

/// Calls through `credentials` with each store operation taking `delay`; every result,
/// and how long the calls took on the paused clock.
async fn call_slowly(
    credentials: &CredentialRegistry,
    store: &SharedStore,
    delay: Duration,
) -> (Vec<Result<String, Error>>, Duration) {
    store
        .shared
        .delay_ms
        .store(delay.as_millis() as u64, Ordering::SeqCst);
    let started = Instant::now();
    let results = call(credentials, 3).await;
    (results, started.elapsed())
}

fn assert_at_max_wait(elapsed: Duration, max_wait: Duration) {
    // The timer wheel counts whole milliseconds.
    assert!(
        elapsed >= max_wait && elapsed <= max_wait + Duration::from_millis(1),
        "{elapsed:?} for a max_wait of {max_wait:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_store_cannot_stretch_the_wait_for_a_holder_past_max_wait() {
    let max_wait = Duration::from_secs(1);
    let store = SharedStore::new(LeaseSettings::new(Duration::from_secs(600), max_wait));
    let endpoint = endpoint(100);
    let credentials = replica(rotating(), &store, &endpoint);
    let key = credentials.keys().remove(0);
    store.try_lease(&key).await.unwrap().unwrap();

    // 400 ms per operation: a read, a refused lease, then a wait that the deadline ends
    // (before, the read and the lease ran again after it: 2.1 s in all).
    let (results, elapsed) = call_slowly(&credentials, &store, Duration::from_millis(400)).await;
    for result in results {
        let Err(Error::Store(err)) = result else {
            panic!("expected a store error, got {result:?}");
        };
        assert_eq!(err.kind(), StoreErrorKind::LeaseWaitExceeded);
        assert_eq!(err.operation(), StoreOperation::Lease);
    }
    assert_at_max_wait(elapsed, max_wait);
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn a_slow_store_ends_a_refresh_at_max_wait_even_under_the_lease() {
    let max_wait = Duration::from_secs(1);
    let store = SharedStore::new(LeaseSettings::new(Duration::from_secs(10), max_wait));
    let endpoint = endpoint(100);
    let credentials = replica(rotating(), &store, &endpoint);

    // A read (0.4 s), the lease (0.8 s), and the read under the lease, which the
    // deadline cuts at 1 s: a store error, and no token request.
    let (results, elapsed) = call_slowly(&credentials, &store, Duration::from_millis(400)).await;
    for result in results {
        let Err(Error::Store(err)) = result else {
            panic!("expected a store error, got {result:?}");
        };
        assert_eq!(err.kind(), StoreErrorKind::Io);
        assert_eq!(err.operation(), StoreOperation::Load);
    }
    assert_at_max_wait(elapsed, max_wait);
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 0);
    assert_eq!(store.shared.granted.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_store_that_never_answers_is_given_up_at_max_wait() {
    let max_wait = Duration::from_millis(1500);
    let settings = LeaseSettings::new(Duration::from_secs(10), max_wait);
    let endpoint = endpoint(100);
    let forever = Duration::from_secs(3600);

    // A rotating refresh token: a typed error at max_wait, no token request.
    let store = SharedStore::new(settings);
    let credentials = replica(rotating(), &store, &endpoint);
    let (results, elapsed) = call_slowly(&credentials, &store, forever).await;
    for result in results {
        let Err(Error::Store(err)) = result else {
            panic!("expected a store error, got {result:?}");
        };
        assert_eq!(
            (err.kind(), err.operation()),
            (StoreErrorKind::Io, StoreOperation::Load)
        );
    }
    assert_at_max_wait(elapsed, max_wait);
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 0);

    // Client credentials with the fallback on: at max_wait, one token request alone.
    let store = SharedStore::new(settings);
    let credentials = replica(client_credentials(), &store, &endpoint);
    let (results, elapsed) = call_slowly(&credentials, &store, forever).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_at_max_wait(elapsed, max_wait);
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_lease_granted_after_the_deadline_is_released_at_once() {
    let max_wait = Duration::from_secs(1);
    let store = SharedStore::new(LeaseSettings::new(Duration::from_secs(10), max_wait));
    let endpoint = endpoint(100);
    let credentials = replica(rotating(), &store, &endpoint);
    let key = credentials.keys().remove(0);

    // 600 ms per operation: the read ends at 0.6 s, and the lease, asked for then, is
    // given up at 1 s but granted at 1.2 s.
    let (results, elapsed) = call_slowly(&credentials, &store, Duration::from_millis(600)).await;
    for result in results {
        let Err(Error::Store(err)) = result else {
            panic!("expected a store error, got {result:?}");
        };
        assert_eq!(
            (err.kind(), err.operation()),
            (StoreErrorKind::Io, StoreOperation::Lease)
        );
    }
    assert_at_max_wait(elapsed, max_wait);

    // The late lease was released as soon as it came, not left to block everyone for
    // its 10 s.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.shared.granted.load(Ordering::SeqCst), 1);
    store.shared.delay_ms.store(0, Ordering::SeqCst);
    assert!(
        store.try_lease(&key).await.unwrap().is_some(),
        "the late lease is still held"
    );
    assert_eq!(endpoint.requests.load(Ordering::SeqCst), 0);
}
