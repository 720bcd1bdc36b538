//! Refresh storms: 10,000 concurrent callers at cold start, right after the token
//! expired, and on a 401 storm, with the mock token endpoint answering after 5 ms.
//!
//! For each scenario: the token requests the mock server received (must be exactly 1),
//! the callers that got a 200 (must be all of them), and the callers' latency from
//! spawn to response (p50, p99, max). Runs on a 2-worker multi-thread runtime.
//!
//! The token endpoint is the real [`MockServer`] over HTTP on 127.0.0.1. The API is an
//! in-process service behind an https origin: 10,000 concurrent connections would run
//! into file descriptor limits and measure the socket layer, not the cache. It accepts
//! `Bearer <t>` at once unless `t` was revoked, and answers a revoked token with a 401
//! after [`REFUSAL_DELAY`], and not before all callers of the storm have been refused:
//! every one of them is in flight with the old token before the first refusal comes
//! back, however slowly a loaded machine spawns them (a plain 20 ms delay let about a
//! third of the callers start after the refresh, on a machine at load 8).
//!
//! Prints a table and writes one JSON object per scenario to
//! `target/criterion/refresh_storm.json`. Exits non-zero if a scenario made any number
//! of token requests other than 1, or if a caller failed.
//!
//! ```text
//! cargo bench --bench refresh_storm
//! ```

mod latency;

use std::{
    collections::HashSet,
    convert::Infallible,
    future::{ready, Future},
    pin::Pin,
    process::ExitCode,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, RwLock,
    },
    task::{Context, Poll},
    time::Duration,
};

use http::{header::AUTHORIZATION, Request, Response, StatusCode};
use tokio::{
    sync::watch,
    time::{sleep, Instant},
};
use tower::{Layer, Service, ServiceExt};
use tower_oauth2::{Credential, Credentials, OAuth2, OAuth2Layer, Provider, RefreshPolicy};
use tower_oauth2_mock::MockServer;

use latency::{load_average, ms, write_json_lines, Summary};

const CALLERS: usize = 10_000;
/// How long the mock token endpoint takes to answer.
const TOKEN_LATENCY: Duration = Duration::from_millis(5);
/// How long the API takes at least to refuse a revoked token.
const REFUSAL_DELAY: Duration = Duration::from_millis(20);
/// Token lifetime in the expiry scenario.
const SHORT_LIFETIME: Duration = Duration::from_secs(2);
const API_ORIGIN: &str = "https://api.example.com";
const API_URI: &str = "https://api.example.com/v1/things";
const CLIENT_ID: &str = "storm-client";
const CLIENT_SECRET: &str = "storm-secret";

struct ApiState {
    revoked: RwLock<HashSet<String>>,
    /// The token of the last accepted request: the one to revoke.
    last_accepted: Mutex<Option<String>>,
    /// Requests answered with a 401.
    refusals: AtomicU64,
    /// No 401 is answered before this many were made.
    hold_refusals_until: AtomicU64,
    /// Flips to `true` when the refusals held back may go.
    all_refused: watch::Sender<bool>,
}

impl Default for ApiState {
    fn default() -> Self {
        Self {
            revoked: RwLock::default(),
            last_accepted: Mutex::default(),
            refusals: AtomicU64::new(0),
            hold_refusals_until: AtomicU64::new(0),
            all_refused: watch::Sender::new(true),
        }
    }
}

/// The API, in process: accepts `Bearer <t>` at once unless `t` was revoked.
#[derive(Clone, Default)]
struct Api {
    state: Arc<ApiState>,
}

impl Api {
    /// Revokes the token the API last accepted, and answers no refusal before `n`
    /// were made.
    fn revoke_current_and_hold_refusals(&self, n: u64) {
        let current = self
            .state
            .last_accepted
            .lock()
            .unwrap()
            .take()
            .expect("a token was accepted before");
        self.state.revoked.write().unwrap().insert(current);
        self.state.all_refused.send_replace(false);
        self.state.hold_refusals_until.store(n, Ordering::SeqCst);
    }

    fn refusals(&self) -> u64 {
        self.state.refusals.load(Ordering::SeqCst)
    }

    fn accepts(&self, token: Option<&str>) -> bool {
        let Some(token) = token else { return false };
        if self.state.revoked.read().unwrap().contains(token) {
            return false;
        }
        let mut last = self.state.last_accepted.lock().unwrap();
        if last.as_deref() != Some(token) {
            *last = Some(token.to_owned());
        }
        true
    }
}

type ApiFuture =
    Pin<Box<dyn Future<Output = Result<Response<http_body_util::Empty<bytes::Bytes>>, Infallible>> + Send>>;

impl Service<Request<()>> for Api {
    type Response = Response<http_body_util::Empty<bytes::Bytes>>;
    type Error = Infallible;
    type Future = ApiFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<()>) -> ApiFuture {
        let token = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if self.accepts(token) {
            return Box::pin(ready(Ok(Response::new(
                http_body_util::Empty::<bytes::Bytes>::new(),
            ))));
        }
        let refusals = self.state.refusals.fetch_add(1, Ordering::SeqCst) + 1;
        if refusals >= self.state.hold_refusals_until.load(Ordering::SeqCst) {
            self.state.all_refused.send_replace(true);
        }
        let mut all_refused = self.state.all_refused.subscribe();
        Box::pin(async move {
            sleep(REFUSAL_DELAY).await;
            let _ = all_refused.wait_for(|all| *all).await.map(drop);
            let mut response = Response::new(http_body_util::Empty::<bytes::Bytes>::new());
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            Ok(response)
        })
    }
}

fn request() -> Request<()> {
    Request::get(API_URI).body(()).expect("valid request")
}

/// A mock token endpoint (5 ms) issuing tokens that live `lifetime`, and the layer over
/// the in-process API with a client-credentials credential for it.
async fn setup(lifetime: Duration) -> (MockServer, Credentials, Api, OAuth2<Api>) {
    let server = MockServer::builder()
        .client(CLIENT_ID, CLIENT_SECRET)
        .token_lifetime(lifetime)
        .start()
        .await
        .expect("mock server");
    server.set_token_latency(TOKEN_LATENCY);
    let provider = Provider::standard(server.token_url()).api(API_ORIGIN);
    let credential = Credential::client_credentials(provider, CLIENT_ID, CLIENT_SECRET)
        .refresh_policy(RefreshPolicy::default().random(|| 0.0));
    let credentials = Credentials::new(credential).expect("credentials");
    let api = Api::default();
    let client = OAuth2Layer::new(credentials.clone()).layer(api.clone());
    (server, credentials, api, client)
}

/// One call, to have a token in the cache.
async fn warm_up(client: &OAuth2<Api>) {
    let response = client.clone().oneshot(request()).await.expect("warm-up call");
    assert_eq!(response.status(), StatusCode::OK, "warm-up call");
}

/// `CALLERS` tasks, each with its own clone of the client, spawned at once. Returns
/// each caller's latency from its spawn to its response, and how many got a 200.
async fn storm(client: &OAuth2<Api>) -> (Vec<Duration>, usize) {
    let mut callers = Vec::with_capacity(CALLERS);
    for _ in 0..CALLERS {
        let caller = client.clone();
        let spawned = Instant::now();
        callers.push(tokio::spawn(async move {
            let ok = matches!(caller.oneshot(request()).await, Ok(r) if r.status() == StatusCode::OK);
            (spawned.elapsed(), ok)
        }));
    }
    let mut latencies = Vec::with_capacity(CALLERS);
    let mut successes = 0;
    for caller in callers {
        let (latency, ok) = caller.await.expect("caller task");
        latencies.push(latency);
        successes += usize::from(ok);
    }
    (latencies, successes)
}

struct Row {
    scenario: &'static str,
    token_requests: u64,
    successes: usize,
    latency: Summary,
    /// Requests the API refused (401 storm: sent with the revoked token).
    refusals: u64,
    /// Requests the layer sent a second time.
    retries: u64,
}

impl Row {
    fn ok(&self) -> bool {
        self.token_requests == 1 && self.successes == CALLERS
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "scenario": self.scenario,
            "token_requests": self.token_requests,
            "successes": self.successes,
            "p50_ms": ms(self.latency.p50),
            "p99_ms": ms(self.latency.p99),
            "max_ms": ms(self.latency.max),
        })
    }
}

/// Runs the storm and reads what it cost.
async fn measure(
    scenario: &'static str,
    server: &MockServer,
    credentials: &Credentials,
    api: &Api,
    client: &OAuth2<Api>,
) -> Row {
    let token_requests = server.counters().token_requests;
    let refusals = api.refusals();
    let retries = credentials.stats()[0].retries;
    let (latencies, successes) = storm(client).await;
    Row {
        scenario,
        token_requests: server.counters().token_requests - token_requests,
        successes,
        latency: Summary::of(latencies),
        refusals: api.refusals() - refusals,
        retries: credentials.stats()[0].retries - retries,
    }
}

async fn cold_start() -> Row {
    let (server, credentials, api, client) = setup(Duration::from_secs(3600)).await;
    measure("cold_start", &server, &credentials, &api, &client).await
}

async fn expiry() -> Row {
    let (server, credentials, api, client) = setup(SHORT_LIFETIME).await;
    warm_up(&client).await;
    // Nobody calls in the refresh window, so no early refresh starts: the storm finds
    // the token expired.
    sleep(SHORT_LIFETIME + Duration::from_millis(500)).await;
    measure("expiry", &server, &credentials, &api, &client).await
}

async fn dead_token_storm() -> Row {
    let (server, credentials, api, client) = setup(Duration::from_secs(3600)).await;
    warm_up(&client).await;
    api.revoke_current_and_hold_refusals(CALLERS as u64);
    measure("401_storm", &server, &credentials, &api, &client).await
}

fn main() -> ExitCode {
    let load = load_average();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let rows = rt.block_on(async { vec![cold_start().await, expiry().await, dead_token_storm().await] });

    println!(
        "refresh storm: {CALLERS} concurrent callers, token endpoint {} ms, 2 workers, load average {load}",
        TOKEN_LATENCY.as_millis()
    );
    println!(
        "{:<12} {:>8} {:>14} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "scenario", "callers", "token requests", "successes", "p50 ms", "p99 ms", "max ms", "401s", "retries"
    );
    for row in &rows {
        println!(
            "{:<12} {:>8} {:>14} {:>10} {:>9.3} {:>9.3} {:>9.3} {:>9} {:>9}",
            row.scenario,
            row.latency.count,
            row.token_requests,
            row.successes,
            ms(row.latency.p50),
            ms(row.latency.p99),
            ms(row.latency.max),
            row.refusals,
            row.retries,
        );
    }
    let lines: Vec<_> = rows.iter().map(Row::json).collect();
    match write_json_lines("refresh_storm", &lines) {
        Ok(path) => println!("wrote {}", path.display()),
        Err(err) => eprintln!("could not write the JSON report: {err}"),
    }

    let mut ok = true;
    for row in rows.iter().filter(|row| !row.ok()) {
        ok = false;
        eprintln!(
            "FAIL {}: {} token requests (want 1), {} of {CALLERS} callers succeeded",
            row.scenario, row.token_requests, row.successes
        );
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
