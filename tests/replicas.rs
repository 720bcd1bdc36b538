//! Replicas as separate OS processes sharing one credential through a `RedisStore`,
//! against the mock token endpoint in this (the parent) process.
//!
//! Each replica is this test binary run again (`current_exe() --exact replica_process
//! --ignored`), with its configuration in `TOWER_OAUTH2_REPLICA`. It builds its own
//! `CredentialRegistry` over its own `RedisStore` and its own HTTP clients, then obeys one
//! command per line on stdin (`request N`, `load N`, `stop`, `quit`), answering each on
//! a stdout line that starts with `REPLY`; its token transport announces each token
//! request with an `EVENT` line, and can stop before sending one (a failpoint), so that
//! the parent can kill or pause it while it holds the lease.
//!
//! The parent counts token requests at the mock, reads Redis, and sends signals.
#![cfg(all(feature = "redis", feature = "hyper-transport", unix))]
// Processes, sockets and Redis live on the real clock.
#![allow(clippy::disallowed_methods)]

mod redis_support;

use std::{
    process::Stdio,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use redis_support::RedisServer;
use serde_json::{json, Value};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::mpsc,
    time::Instant,
};
use tower::{Layer, ServiceExt};
use tower_oauth2::{
    secret::{ClientSecret, RefreshToken},
    store::{LeaseSettings, RedisStore, StoredTokens, TokenStore},
    Credential, CredentialKey, CredentialRegistry, OAuth2Layer, Provider, RefreshPolicy, RefreshTokens,
    TokenRequest, TokenTransport,
};
use tower_oauth2_mock::MockServer;

const ROLE: &str = "TOWER_OAUTH2_REPLICA";
const PREFIX: &str = "replicas-test";

// =====================================================================================
// The replica
// =====================================================================================

/// What a replica is told by its parent.
#[derive(Debug, Clone)]
struct Config {
    redis_url: String,
    token_url: String,
    base_url: String,
    /// `None`: client credentials; `Some`: a refresh-token credential starting from it.
    refresh_token: Option<String>,
    rotating: bool,
    lease_ttl: Duration,
    max_wait: Duration,
    margin: Duration,
    /// `hang`: the first token request never leaves (the process is killed there);
    /// `hang_after_answer`: the first is sent and answered, and the answer never
    /// handed back (the process is killed after the provider rotated).
    failpoint: Option<String>,
}

impl Config {
    fn to_json(&self) -> String {
        json!({
            "redis_url": self.redis_url,
            "token_url": self.token_url,
            "base_url": self.base_url,
            "refresh_token": self.refresh_token,
            "rotating": self.rotating,
            "lease_ttl_ms": self.lease_ttl.as_millis() as u64,
            "max_wait_ms": self.max_wait.as_millis() as u64,
            "margin_ms": self.margin.as_millis() as u64,
            "failpoint": self.failpoint,
        })
        .to_string()
    }

    fn from_json(text: &str) -> Self {
        let v: Value = serde_json::from_str(text).expect("the parent's JSON");
        let ms = |field: &str| Duration::from_millis(v[field].as_u64().expect(field));
        Self {
            redis_url: v["redis_url"].as_str().unwrap().to_owned(),
            token_url: v["token_url"].as_str().unwrap().to_owned(),
            base_url: v["base_url"].as_str().unwrap().to_owned(),
            refresh_token: v["refresh_token"].as_str().map(str::to_owned),
            rotating: v["rotating"].as_bool().unwrap(),
            lease_ttl: ms("lease_ttl_ms"),
            max_wait: ms("max_wait_ms"),
            margin: ms("margin_ms"),
            failpoint: v["failpoint"].as_str().map(str::to_owned),
        }
    }

    fn provider(&self) -> Provider {
        let provider = Provider::standard(&self.token_url)
            .name("mock")
            .api(&self.base_url);
        if self.rotating {
            provider.refresh_tokens(RefreshTokens::Rotated)
        } else {
            provider
        }
    }

    /// The credential, without its store: the parent computes its key the same way.
    fn credential(&self) -> Credential {
        let policy = RefreshPolicy::default()
            .margin(self.margin)
            .max_jitter(Duration::ZERO)
            // Shorter than the lease, as the registry requires.
            .timeout(self.lease_ttl - Duration::from_millis(200))
            .backoff(Duration::from_millis(50), Duration::from_millis(200));
        let credential = match &self.refresh_token {
            None => Credential::client_credentials(self.provider(), "client", "secret"),
            Some(rt) => Credential::refresh_token(
                self.provider(),
                "client",
                Some(ClientSecret::new("secret")),
                RefreshToken::new(rt.clone()),
            ),
        };
        credential.refresh_policy(policy)
    }

    fn store(&self) -> RedisStore {
        RedisStore::builder(&self.redis_url)
            .prefix(PREFIX)
            .lease_settings(LeaseSettings::new(self.lease_ttl, self.max_wait).local_fallback(false))
            .connect_timeout(Duration::from_millis(300))
            .command_timeout(Duration::from_millis(300))
            .poll_interval(Duration::from_millis(50))
            .build()
            .unwrap()
    }
}

type Api = Client<HttpConnector, Full<Bytes>>;

/// The token transport: hyper's client, announcing each token request on stdout, and
/// never sending the first one under the `hang` failpoint.
fn transport(failpoint: Option<String>) -> TokenTransport {
    let client: Api = Client::builder(TokioExecutor::new()).build_http();
    let before = Arc::new(AtomicBool::new(failpoint.as_deref() == Some("hang")));
    let after = Arc::new(AtomicBool::new(failpoint.as_deref() == Some("hang_after_answer")));
    TokenTransport::new(tower::service_fn(move |request: TokenRequest| {
        let (client, before, after) = (client.clone(), before.clone(), after.clone());
        async move {
            if before.swap(false, Ordering::SeqCst) {
                println!("EVENT holding");
                std::future::pending::<()>().await;
            }
            println!("EVENT sending");
            let response = client.request(request).await?;
            if after.swap(false, Ordering::SeqCst) {
                // Read whole: the provider's answer is in this process, and lost with it.
                let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                println!("EVENT answered");
                std::future::pending::<()>().await;
                unreachable!();
            }
            Ok::<_, hyper_util::client::legacy::Error>(response)
        }
    }))
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

impl Tally {
    fn record(&self, outcome: Result<u16, String>) {
        match outcome {
            Ok(200) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_failure.lock().unwrap();
                first.get_or_insert_with(|| format!("{other:?}"));
            }
        }
    }

    fn reply(&self) -> String {
        let first = self.first_failure.lock().unwrap().take();
        format!(
            "REPLY ok {} failed {} {}",
            self.ok.swap(0, Ordering::Relaxed),
            self.failed.swap(0, Ordering::Relaxed),
            first.unwrap_or_default()
        )
    }
}

async fn replica(config: Config) {
    let credentials = CredentialRegistry::builder()
        .credential(config.credential().store(config.store()))
        .transport(transport(config.failpoint.clone()))
        .build()
        .unwrap();
    let api: Api = Client::builder(TokioExecutor::new()).build_http();
    let client = OAuth2Layer::new(credentials.clone()).layer(api);
    let url = format!("{}/api/things", config.base_url);
    let call = {
        let (client, url) = (client.clone(), url.clone());
        move || {
            let request = Request::get(&url).body(Full::default()).unwrap();
            let client = client.clone();
            async move {
                client
                    .oneshot(request)
                    .await
                    .map(|r| r.status().as_u16())
                    .map_err(|e| e.to_string())
            }
        }
    };

    let tally = Arc::new(Tally::default());
    let running = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.unwrap() {
        let mut words = line.split_whitespace();
        let (command, n) = (
            words.next().unwrap_or(""),
            words.next().and_then(|w| w.parse().ok()),
        );
        match (command, n) {
            ("request", Some(n)) => {
                let calls: Vec<_> = (0..n).map(|_| tokio::spawn(call())).collect();
                for outcome in futures_util::future::join_all(calls).await {
                    tally.record(outcome.unwrap());
                }
                println!("{}", tally.reply());
            }
            ("load", Some(n)) => {
                running.store(true, Ordering::SeqCst);
                for _ in 0..n {
                    let (call, tally, running) = (call.clone(), tally.clone(), running.clone());
                    loops.push(tokio::spawn(async move {
                        while running.load(Ordering::SeqCst) {
                            tally.record(call().await);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }));
                }
                println!("REPLY started");
            }
            ("stop", _) => {
                running.store(false, Ordering::SeqCst);
                for task in loops.drain(..) {
                    task.await.unwrap();
                }
                println!("{}", tally.reply());
            }
            ("quit", _) => break,
            _ => panic!("unknown command {line:?}"),
        }
    }
}

/// The entry point of a replica process; see the module docs. Ignored in ordinary runs:
/// the tests below run it in child processes, with its configuration in `ROLE`.
#[test]
#[ignore = "a replica's entry point: the other tests of this file run it as a child process"]
fn replica_process() {
    let Ok(config) = std::env::var(ROLE) else {
        return;
    };
    let config = Config::from_json(&config);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(replica(config));
}

// =====================================================================================
// The parent's side
// =====================================================================================

/// A replica process, killed when dropped.
struct Replica {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
}

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    ok: u64,
    failed: u64,
    first_failure: String,
}

impl Replica {
    fn spawn(config: &Config) -> Replica {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "replica_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ROLE, config.to_json())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let (sender, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                // The harness's own `test replica_process ... ` may precede the first.
                if let Some(at) = line.find("REPLY ").or_else(|| line.find("EVENT ")) {
                    let _ = sender.send(line[at..].to_owned());
                }
            }
        });
        Replica { child, stdin, lines }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("a running replica")
    }

    async fn send(&mut self, command: &str) {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    /// The next line starting with `prefix`, skipping others; panics after `within`.
    async fn next(&mut self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("no {prefix:?} within {within:?}"))
                .unwrap_or_else(|| panic!("the replica exited before {prefix:?}"));
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    async fn outcome(&mut self) -> Outcome {
        let line = self.next("REPLY ok", Duration::from_secs(60)).await;
        let words: Vec<&str> = line.splitn(6, ' ').collect();
        Outcome {
            ok: words[2].parse().unwrap(),
            failed: words[4].parse().unwrap(),
            first_failure: words.get(5).unwrap_or(&"").to_string(),
        }
    }

    async fn request(&mut self, n: usize) -> Outcome {
        self.send(&format!("request {n}")).await;
        self.outcome().await
    }

    async fn load(&mut self, callers: usize) {
        self.send(&format!("load {callers}")).await;
        self.next("REPLY started", Duration::from_secs(10)).await;
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

struct Setup {
    redis: RedisServer,
    mock: MockServer,
    config: Config,
}

impl Setup {
    async fn new(lifetime: Duration, rotating: bool, refresh_token: bool) -> Setup {
        let redis = RedisServer::start();
        let mock = MockServer::builder()
            .client("client", "secret")
            .token_lifetime(lifetime)
            .rotate_refresh_tokens(rotating)
            .start()
            .await
            .unwrap();
        let refresh_token = refresh_token.then(|| mock.issue_refresh_token("client", "read"));
        let config = Config {
            redis_url: redis.url(),
            token_url: mock.token_url(),
            base_url: mock.base_url(),
            refresh_token,
            rotating,
            lease_ttl: Duration::from_secs(2),
            max_wait: Duration::from_secs(6),
            margin: Duration::from_secs(1),
            failpoint: None,
        };
        Setup { redis, mock, config }
    }

    fn key(&self) -> CredentialKey {
        self.config.credential().key()
    }

    /// The parent's own view of the store.
    fn store(&self) -> RedisStore {
        self.config.store()
    }

    /// Puts the refresh token in the store, as a login would have.
    async fn seed(&self) {
        let rt = self.config.refresh_token.clone().unwrap();
        self.store()
            .save(
                &self.key(),
                &StoredTokens::new().with_refresh_token(RefreshToken::new(rt)),
            )
            .await
            .unwrap();
    }

    fn replicas(&self, n: usize) -> Vec<Replica> {
        (0..n).map(|_| Replica::spawn(&self.config)).collect()
    }
}

async fn all_request(replicas: &mut [Replica], n: usize) -> Vec<Outcome> {
    for replica in replicas.iter_mut() {
        replica.send(&format!("request {n}")).await;
    }
    let mut outcomes = Vec::new();
    for replica in replicas.iter_mut() {
        outcomes.push(replica.outcome().await);
    }
    outcomes
}

async fn all_stop(replicas: &mut [Replica]) -> Vec<Outcome> {
    for replica in replicas.iter_mut() {
        replica.send("stop").await;
    }
    let mut outcomes = Vec::new();
    for replica in replicas.iter_mut() {
        outcomes.push(replica.outcome().await);
    }
    outcomes
}

fn assert_all_ok(outcomes: &[Outcome]) -> u64 {
    for (i, outcome) in outcomes.iter().enumerate() {
        assert_eq!(outcome.failed, 0, "replica {i}: {outcome:?}");
    }
    outcomes.iter().map(|o| o.ok).sum()
}

// =====================================================================================
// The tests
// =====================================================================================

/// `count` replicas of `callers` callers each make one token request at cold start and
/// one when the token expires, with the callers running through the expiry itself.
///
/// Counted: every request the mock's token endpoint received, from any replica, in each
/// phase (its `token_requests` counter, reset between the phases).
async fn one_token_request_per_expiry(count: usize, callers: usize) {
    let mut setup = Setup::new(Duration::from_secs(3), false, false).await;
    // No early refresh: the token is refreshed when it expires, with the callers there,
    // not in the background a margin before.
    setup.config.margin = Duration::ZERO;
    let mut replicas = setup.replicas(count);

    // Cold start: one token request for all of them.
    let outcomes = all_request(&mut replicas, 10).await;
    let warm = Instant::now();
    assert_eq!(assert_all_ok(&outcomes), 10 * count as u64);
    assert_eq!(setup.mock.counters().token_requests, 1, "cold start");
    setup.mock.reset_counters();

    // The token expires 3 s after it was issued (before `warm`); the next one would
    // expire 3 s after that. The callers run from before the first expiry to 1 s past it.
    for replica in &mut replicas {
        replica.load(callers).await;
    }
    tokio::time::sleep_until(warm + Duration::from_secs(4)).await;
    let outcomes = all_stop(&mut replicas).await;
    let served = assert_all_ok(&outcomes);
    let counters = setup.mock.counters();
    eprintln!(
        "{count} × {callers}: {served} requests served; token requests {}, errors {}",
        counters.token_requests, counters.token_errors
    );
    assert_eq!(
        counters.token_requests, 1,
        "one refresh for {count} × {callers} callers through the expiry"
    );
    assert_eq!(counters.token_errors, 0);
    assert!(served > (count * callers) as u64, "{served}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_replicas_of_250_callers_make_one_token_request_per_expiry() {
    one_token_request_per_expiry(4, 250).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_make_one_token_request_per_expiry() {
    one_token_request_per_expiry(2, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_replicas_make_one_token_request_per_expiry() {
    one_token_request_per_expiry(8, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_rotations_under_load_refuse_no_refresh_token() {
    // Tokens that outlive the test: every refresh is a revocation's doing.
    let setup = Setup::new(Duration::from_secs(120), true, true).await;
    setup.seed().await;
    let mut replicas = setup.replicas(4);
    let outcomes = all_request(&mut replicas, 5).await;
    assert_all_ok(&outcomes);
    assert_eq!(setup.mock.counters().refresh_token_grants, 1);
    setup.mock.reset_counters();

    for replica in &mut replicas {
        replica.load(10).await;
    }
    for rotation in 1..=50u64 {
        setup.mock.revoke_all_access_tokens();
        let deadline = Instant::now() + Duration::from_secs(10);
        while setup.mock.counters().refresh_token_grants < rotation {
            assert!(Instant::now() < deadline, "rotation {rotation} did not happen");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Every replica reaches the new token before the next revocation.
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(setup.mock.counters().refresh_token_grants, rotation);
    }
    let outcomes = all_stop(&mut replicas).await;
    let served = assert_all_ok(&outcomes);
    let counters = setup.mock.counters();
    eprintln!(
        "{served} requests served; token requests {}, errors {}, 401s {:?}",
        counters.token_requests,
        counters.token_errors,
        counters.resource_calls_by_status.get(&401)
    );
    assert_eq!(counters.refresh_token_grants, 50);
    assert_eq!(counters.token_errors, 0, "a refused refresh token");

    // Each replica in turn refreshes first, with the newest refresh token; the others
    // take its tokens from the store.
    for first in 0..replicas.len() {
        setup.mock.revoke_all_access_tokens();
        let order = std::iter::once(first).chain((0..replicas.len()).filter(|i| *i != first));
        for i in order {
            let outcome = replicas[i].request(1).await;
            assert_eq!((outcome.ok, outcome.failed), (1, 0), "replica {i}: {outcome:?}");
        }
        let counters = setup.mock.counters();
        assert_eq!(
            counters.refresh_token_grants,
            51 + first as u64,
            "replica {first}"
        );
        assert_eq!(counters.token_errors, 0, "replica {first}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_before_its_token_request_delays_the_others_by_the_lease_at_most() {
    let mut setup = Setup::new(Duration::from_secs(60), true, true).await;
    setup.seed().await;
    let ttl = Duration::from_millis(1500);
    setup.config.lease_ttl = ttl;
    let mut doomed = Replica::spawn(&Config {
        failpoint: Some("hang".into()),
        ..setup.config.clone()
    });
    doomed.send("request 1").await;
    doomed.next("EVENT holding", Duration::from_secs(10)).await;
    let holding_since = Instant::now();

    let mut others = setup.replicas(3);
    for replica in &mut others {
        replica.send("request 5").await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    doomed.signal("KILL");
    for (i, replica) in others.iter_mut().enumerate() {
        let outcome = replica.outcome().await;
        let waited = holding_since.elapsed();
        assert_eq!((outcome.ok, outcome.failed), (5, 0), "replica {i}: {outcome:?}");
        assert!(
            waited <= ttl + Duration::from_secs(1),
            "replica {i} waited {waited:?}"
        );
        // And not much less: the dead holder's lease was respected until it expired.
        assert!(
            waited >= ttl - Duration::from_millis(300),
            "replica {i} refreshed after {waited:?}, under the lease"
        );
        eprintln!("replica {i} served after {waited:?}");
    }
    let counters = setup.mock.counters();
    assert_eq!(counters.token_requests, 1, "the dead holder sent nothing");
    assert_eq!(counters.refresh_token_grants, 1, "the refresh token used once");
    assert_eq!(counters.token_errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_killed_after_the_provider_rotated_leaves_a_typed_error_and_nothing_worse() {
    let mut setup = Setup::new(Duration::from_secs(60), true, true).await;
    setup.seed().await;
    let ttl = Duration::from_millis(1000);
    setup.config.lease_ttl = ttl;
    setup.config.max_wait = Duration::from_secs(3);
    let mut doomed = Replica::spawn(&Config {
        failpoint: Some("hang_after_answer".into()),
        ..setup.config.clone()
    });
    doomed.send("request 1").await;
    doomed.next("EVENT answered", Duration::from_secs(10)).await;
    doomed.signal("KILL");
    let killed_at = Instant::now();
    // The provider rotated the stored refresh token; its successor died with the holder.
    assert_eq!(setup.mock.counters().refresh_token_grants, 1);

    let mut others = setup.replicas(3);
    for replica in &mut others {
        replica.send("request 5").await;
    }
    for (i, replica) in others.iter_mut().enumerate() {
        let outcome = replica.outcome().await;
        let waited = killed_at.elapsed();
        eprintln!("replica {i} after {waited:?}: {outcome:?}");
        assert_eq!((outcome.ok, outcome.failed), (0, 5), "replica {i}: {outcome:?}");
        assert!(
            outcome.first_failure.contains("re-authorization required"),
            "replica {i}: {outcome:?}"
        );
        // The README's promise: the error once the dead holder's lease expires.
        assert!(
            waited <= ttl + Duration::from_secs(1),
            "replica {i} waited {waited:?} for a lease of {ttl:?}"
        );
    }
    let counters = setup.mock.counters();
    eprintln!(
        "after the holder died: {} refresh grants, {} refused",
        counters.refresh_token_grants, counters.token_errors
    );
    // Each survivor presents the dead refresh token once at most, then remembers it.
    assert!(counters.token_errors <= 3, "{counters:?}");
    assert_eq!(counters.refresh_token_grants, 1 + counters.token_errors);
    for replica in &mut others {
        let outcome = replica.request(1).await;
        assert_eq!(outcome.failed, 1);
    }
    let later = setup.mock.counters();
    assert_eq!(
        later.token_errors, counters.token_errors,
        "the dead token presented again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_paused_past_its_lease_cannot_overwrite_the_newer_tokens() {
    // Refresh tokens that do not rotate: the second holder's refresh succeeds, and the
    // paused holder's answer, read late, is the stale one.
    let mut setup = Setup::new(Duration::from_secs(60), false, true).await;
    setup.seed().await;
    let ttl = Duration::from_millis(1000);
    setup.config.lease_ttl = ttl;
    setup.mock.set_token_latency(Duration::from_millis(300));

    let mut paused = Replica::spawn(&setup.config);
    paused.send("request 1").await;
    paused.next("EVENT sending", Duration::from_secs(10)).await;
    paused.signal("STOP");
    let store = setup.store();
    let key = setup.key();
    let first: u64 = setup.redis.get(&store.keys(&key).fence).await;

    // Past the lease, another replica refreshes and saves.
    tokio::time::sleep(ttl).await;
    let mut other = Replica::spawn(&setup.config);
    let outcome = other.request(1).await;
    assert_eq!((outcome.ok, outcome.failed), (1, 0), "{outcome:?}");
    let newer = store.load(&key).await.unwrap().unwrap();
    assert!(newer.access_token.is_some());
    let fence: u64 = setup.redis.get(&store.keys(&key).fence).await;
    assert_eq!(fence, first + 1, "the second lease");

    // The paused holder wakes, reads its answer and tries to save it.
    setup.mock.set_token_latency(Duration::ZERO);
    paused.signal("CONT");
    let outcome = paused.outcome().await;
    eprintln!("the resumed holder: {outcome:?}");
    assert_eq!(setup.mock.counters().refresh_token_grants, 2);
    let kept = store.load(&key).await.unwrap().unwrap();
    assert_eq!(kept, newer, "the stale holder's tokens overwrote the newer ones");
    drop(setup.redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_fails_no_request_while_the_token_lives_and_refreshes_resume() {
    // 4 s tokens refreshed 1.5 s before expiry: Redis is down from 0.5 s to 1.7 s, and
    // the refresh at 2.5 s goes through the restarted Redis.
    let mut setup = Setup::new(Duration::from_secs(4), false, false).await;
    setup.config.margin = Duration::from_millis(1500);
    let mut replicas = setup.replicas(4);
    let started = Instant::now();
    assert_all_ok(&all_request(&mut replicas, 5).await);
    assert_eq!(setup.mock.counters().token_requests, 1);
    setup.mock.reset_counters();
    for replica in &mut replicas {
        replica.load(20).await;
    }

    tokio::time::sleep_until(started + Duration::from_millis(500)).await;
    setup.redis.stop();
    tokio::time::sleep_until(started + Duration::from_millis(1700)).await;
    setup.redis.restart();
    tokio::time::sleep_until(started + Duration::from_millis(3600)).await;
    let outcomes = all_stop(&mut replicas).await;
    let served = assert_all_ok(&outcomes);
    let counters = setup.mock.counters();
    eprintln!(
        "{served} requests served; token requests {}, errors {}, 401s {:?}",
        counters.token_requests,
        counters.token_errors,
        counters.resource_calls_by_status.get(&401)
    );
    assert_eq!(counters.token_requests, 1, "the refresh after the restart, once");
    assert_eq!(counters.token_errors, 0);
    let stored = setup.store().load(&setup.key()).await.unwrap();
    assert!(
        stored.is_some(),
        "the refreshed tokens were saved to the restarted Redis"
    );
}
