//! Requests per second over loopback: hyper-util's legacy client sending to a local
//! hyper HTTP/1 server, bare and with the `OAuth2` layer (cached token), at several
//! concurrency levels.
//!
//! ```text
//! cargo bench --bench end_to_end
//! ```
//!
//! One multi-thread runtime (2 workers) runs the server, the token endpoint (the crate's
//! [`MockServer`]) and the client tasks. Each of the `c` tasks holds its own clone of
//! the client and sends its share of the sample's requests one after the other; the
//! sample's time is the wall time until the last task is done. Connections and the token
//! are warmed before anything is measured.
//!
//! Criterion runs one benchmark after the other, so the two variants of a level run back
//! to back in one group. Because a shared machine drifts over a run, `cargo bench` then
//! measures each level again in short rounds that alternate the variants, and prints
//! their requests per second, the ratio, and the process's CPU time per request
//! (`paired`), each task cloning its client for every request, as handlers do with a
//! client kept in an application's state. Those rounds add a third variant for
//! reference: the bare client under
//! tower-http's `SetRequestHeader` with the same token, a fixed header whose cost is that
//! of carrying the header alone.
//!
//! The server checks every request: through the layer or the fixed header each must
//! carry `Authorization: Bearer <the token the mock issued>`, bare none may carry an
//! `Authorization` header. The binary prints the tally at the end and exits with status
//! 1 on any violation, any non-200 answer or more than one token request.

use std::{
    convert::Infallible,
    net::SocketAddr,
    process::ExitCode,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, OnceLock,
    },
    time::Duration,
};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use http::{header::AUTHORIZATION, HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
};
use tokio::{net::TcpListener, runtime::Runtime, time::Instant};
use tower::{Layer, Service, ServiceExt};
use tower_http::set_header::SetRequestHeaderLayer;
use tower_oauth2::{Credential, Credentials, OAuth2Layer, Provider};
use tower_oauth2_mock::MockServer;

/// Concurrent client tasks per level.
const LEVELS: [usize; 3] = [1, 16, 64];

/// Paired rounds per level (every order of the three variants, three times), and
/// requests per variant in a round.
const PAIRED_ROUNDS: usize = 18;
const PAIRED_REQUESTS: u64 = 2_000;

const CLIENT_ID: &str = "bench-client";
const CLIENT_SECRET: &str = "bench-secret";

type Bare = Client<HttpConnector, Full<Bytes>>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Bare,
    /// `SetRequestHeader` with the token: only in the paired rounds.
    Static,
    Layer,
}

impl Variant {
    const ALL: [Variant; 3] = [Variant::Bare, Variant::Static, Variant::Layer];

    fn bearer(self) -> bool {
        self != Variant::Bare
    }
}

/// What the API server saw.
#[derive(Default)]
struct Tally {
    /// The token of the first request that carried one: every later one must match.
    token: OnceLock<Bytes>,
    /// Requests with `Authorization: Bearer <the token>`.
    bearer: AtomicU64,
    /// Requests without an `Authorization` header.
    none: AtomicU64,
    /// Requests with any other `Authorization` header.
    other: AtomicU64,
}

impl Tally {
    fn count(&self, value: Option<&HeaderValue>) {
        let counter = match value {
            None => &self.none,
            Some(value) => match value.as_bytes().strip_prefix(b"Bearer ") {
                Some(token)
                    if !token.is_empty()
                        && self.token.get_or_init(|| Bytes::copy_from_slice(token)) == token =>
                {
                    &self.bearer
                }
                _ => &self.other,
            },
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> [u64; 3] {
        [&self.bearer, &self.none, &self.other].map(|n| n.load(Ordering::Relaxed))
    }
}

/// Results of the checks around each run.
#[derive(Default)]
struct Checks {
    /// Requests of a bearer variant that reached the server without the token.
    missing: AtomicU64,
    /// Bare requests that reached the server with an `Authorization` header.
    stray: AtomicU64,
    /// Answers other than 200.
    status: AtomicU64,
    /// Requests sent, per variant, to check against the server's count.
    sent: [AtomicU64; 3],
}

/// The API server: 200 and a small body for any request, after sorting it by its
/// `Authorization` header.
async fn serve(listener: TcpListener, tally: Arc<Tally>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tally = Arc::clone(&tally);
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                tally.count(req.headers().get(AUTHORIZATION));
                async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n")))) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Everything a run needs, set up once.
struct Bench {
    rt: Runtime,
    uri: Uri,
    /// One client, one connection pool, for all variants.
    client: Bare,
    layer: OAuth2Layer,
    tally: Arc<Tally>,
    checks: Checks,
    /// Keeps the token endpoint running.
    _mock: MockServer,
}

impl Bench {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let tally = Arc::new(Tally::default());
        let (addr, mock) = rt.block_on(async {
            let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .expect("bind the API server");
            let addr = listener.local_addr().expect("local address");
            tokio::spawn(serve(listener, Arc::clone(&tally)));
            let mock = MockServer::builder()
                .client(CLIENT_ID, CLIENT_SECRET)
                .token_lifetime(Duration::from_secs(24 * 3600))
                .start()
                .await
                .expect("start the token endpoint");
            (addr, mock)
        });

        let provider = Provider::standard(mock.token_url()).api(format!("http://127.0.0.1:{}", addr.port()));
        let credentials =
            Credentials::new(Credential::client_credentials(provider, CLIENT_ID, CLIENT_SECRET))
                .expect("valid credentials");
        let bench = Self {
            rt,
            uri: format!("http://{addr}/v1/items").parse().expect("valid URI"),
            client: Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>(),
            layer: OAuth2Layer::new(credentials),
            tally,
            checks: Checks::default(),
            _mock: mock,
        };
        // Warm-up: the token first (the server learns it), then as many pooled
        // connections as the highest level uses.
        let most = LEVELS.iter().copied().max().unwrap_or(1);
        bench.rt.block_on(async {
            bench.run(Variant::Layer, most, most as u64 * 4, false).await;
            bench.run(Variant::Bare, most, most as u64 * 4, false).await;
        });
        bench
    }

    /// Sends `requests` requests of `variant` from `tasks` tasks, each with its own
    /// clone of the client, which it clones again for every request when `per_request`
    /// (as a handler does with a client kept in an application's state); returns the
    /// wall time.
    async fn run(&self, variant: Variant, tasks: usize, requests: u64, per_request: bool) -> Duration {
        match variant {
            Variant::Bare => {
                let clients = (0..tasks).map(|_| self.client.clone());
                self.spread(clients, variant, requests, per_request).await
            }
            Variant::Layer => {
                let layered = self.layer.layer(self.client.clone());
                let clients = (0..tasks).map(|_| layered.clone());
                self.spread(clients, variant, requests, per_request).await
            }
            Variant::Static => {
                let token = self.tally.token.get().expect("the token is known after warm-up");
                let mut value =
                    HeaderValue::from_bytes(&[&b"Bearer "[..], token].concat()).expect("valid header value");
                value.set_sensitive(true);
                let fixed =
                    SetRequestHeaderLayer::overriding(AUTHORIZATION, value).layer(self.client.clone());
                let clients = (0..tasks).map(|_| fixed.clone());
                self.spread(clients, variant, requests, per_request).await
            }
        }
    }

    /// One task per client, `requests` spread over them; checks the server's tally of
    /// the run afterwards (runs never overlap, so every request the server saw meanwhile
    /// belongs to this one).
    async fn spread<S, RB>(
        &self,
        clients: impl Iterator<Item = S>,
        variant: Variant,
        requests: u64,
        per_request: bool,
    ) -> Duration
    where
        S: Service<Request<Full<Bytes>>, Response = Response<RB>> + Clone + Send + 'static,
        S::Error: std::fmt::Debug + Send,
        S::Future: Send,
        RB: http_body::Body + Send + 'static,
        RB::Data: Send,
        RB::Error: std::fmt::Debug,
    {
        let clients: Vec<S> = clients.collect();
        let tasks = clients.len() as u64;
        let before = self.tally.snapshot();
        let started = Instant::now();
        let handles: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(i, mut client)| {
                let share = requests / tasks + u64::from((i as u64) < requests % tasks);
                let uri = self.uri.clone();
                tokio::spawn(async move {
                    let mut bad_status = 0u64;
                    for _ in 0..share {
                        let req = Request::get(uri.clone())
                            .body(Full::new(Bytes::new()))
                            .expect("valid request");
                        let response = if per_request {
                            client.clone().oneshot(req).await
                        } else {
                            client.ready().await.expect("client ready").call(req).await
                        };
                        let response = response.expect("request failed");
                        bad_status += u64::from(response.status() != StatusCode::OK);
                        response.into_body().collect().await.expect("response body");
                    }
                    bad_status
                })
            })
            .collect();
        let mut bad_status = 0;
        for handle in handles {
            bad_status += handle.await.expect("client task panicked");
        }
        let elapsed = started.elapsed();

        let after = self.tally.snapshot();
        let [bearer, none, other] = [0, 1, 2].map(|i| after[i] - before[i]);
        let checks = &self.checks;
        if variant.bearer() {
            checks.missing.fetch_add(none + other, Ordering::Relaxed);
        } else {
            checks.stray.fetch_add(bearer + other, Ordering::Relaxed);
        }
        checks.status.fetch_add(bad_status, Ordering::Relaxed);
        checks.sent[variant as usize].fetch_add(requests, Ordering::Relaxed);
        elapsed
    }

    fn block_run(&self, variant: Variant, tasks: usize, requests: u64, per_request: bool) -> Duration {
        self.rt.block_on(self.run(variant, tasks, requests, per_request))
    }
}

fn criterion_benches(c: &mut Criterion, bench: &Bench) {
    for tasks in LEVELS {
        let mut group = c.benchmark_group(format!("e2e/http1_c{tasks}"));
        group
            .throughput(Throughput::Elements(1))
            .sample_size(20)
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(5));
        group.bench_function("bare", |b| {
            b.iter_custom(|iters| bench.block_run(Variant::Bare, tasks, iters, false))
        });
        group.bench_function("with_layer", |b| {
            b.iter_custom(|iters| bench.block_run(Variant::Layer, tasks, iters, false))
        });
        group.finish();
    }
}

/// CPU time used so far by all threads of this process (client, server and token
/// endpoint alike), from Linux's per-thread scheduler statistics; `None` elsewhere.
fn cpu_time() -> Option<Duration> {
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(entry.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// Short runs of the three variants in every order in turn, so that drift hits all
/// alike; prints requests per second, the layer's ratio to bare (overall, and its
/// quartiles over the rounds), and CPU time per request.
fn paired(bench: &Bench) {
    const ORDERS: [[usize; 3]; 6] = [[0, 1, 2], [2, 1, 0], [1, 2, 0], [0, 2, 1], [2, 0, 1], [1, 0, 2]];
    println!();
    println!(
        "paired: {PAIRED_ROUNDS} rounds of {PAIRED_REQUESTS} requests per variant, in rotating order, \
         a clone of the client per request; CPU is the whole process's (client and server) per request"
    );
    println!(
        "{:<10} {:>9} {:>9} {:>9} {:>7} {:>13} {:>9} {:>9} {:>9}",
        "req/s", "bare", "static", "layer", "l/bare", "rounds p25-75", "cpu bare", "static", "layer"
    );
    for tasks in LEVELS {
        let mut wall = [Duration::ZERO; 3];
        let mut cpu = [Some(Duration::ZERO); 3];
        let mut ratios = Vec::with_capacity(PAIRED_ROUNDS);
        for round in 0..PAIRED_ROUNDS {
            let mut round_wall = [Duration::ZERO; 3];
            for i in ORDERS[round % ORDERS.len()] {
                let cpu_before = cpu_time();
                round_wall[i] = bench.block_run(Variant::ALL[i], tasks, PAIRED_REQUESTS, true);
                cpu[i] = match (cpu[i], cpu_before, cpu_time()) {
                    (Some(sum), Some(before), Some(after)) => Some(sum + (after - before)),
                    _ => None,
                };
                wall[i] += round_wall[i];
            }
            ratios.push(round_wall[0].as_secs_f64() / round_wall[2].as_secs_f64());
        }
        ratios.sort_by(f64::total_cmp);
        let total = (PAIRED_ROUNDS as u64 * PAIRED_REQUESTS) as f64;
        let rate = wall.map(|w| total / w.as_secs_f64());
        let cpu = cpu.map(|c| {
            c.map_or_else(
                || "n/a".to_owned(),
                |d| format!("{:.2}µs", d.as_secs_f64() * 1e6 / total),
            )
        });
        println!(
            "{:<10} {:>9.0} {:>9.0} {:>9.0} {:>7.3} {:>6.3}-{:.3} {:>9} {:>9} {:>9}",
            format!("http1_c{tasks}"),
            rate[0],
            rate[1],
            rate[2],
            rate[2] / rate[0],
            ratios[PAIRED_ROUNDS / 4],
            ratios[PAIRED_ROUNDS * 3 / 4],
            cpu[0],
            cpu[1],
            cpu[2],
        );
    }
}

/// Prints what the server saw; `false` on any failed check.
fn report(bench: &Bench) -> bool {
    let checks = &bench.checks;
    let [bearer, none, other] = bench.tally.snapshot();
    let sent = checks.sent.each_ref().map(|n| n.load(Ordering::Relaxed));
    let missing = checks.missing.load(Ordering::Relaxed);
    let stray = checks.stray.load(Ordering::Relaxed);
    let status = checks.status.load(Ordering::Relaxed);
    let token_requests = bench.layer.credentials().stats()[0].token_requests;
    println!();
    println!(
        "server saw {bearer} requests with the bearer token, {none} without Authorization, {other} with another"
    );
    println!(
        "sent {} bare, {} with a fixed header, {} with the layer",
        sent[0], sent[1], sent[2]
    );
    println!(
        "requests missing the token: {missing}; bare requests with Authorization: {stray}; \
         non-200 answers: {status}; token requests: {token_requests}"
    );
    let ok = missing == 0
        && stray == 0
        && status == 0
        && token_requests == 1
        && bearer == sent[1] + sent[2]
        && none == sent[0];
    if !ok {
        eprintln!("end_to_end: FAILED checks (see above)");
    }
    ok
}

fn main() -> ExitCode {
    let mut c = Criterion::default().configure_from_args();
    let bench = Bench::new();
    criterion_benches(&mut c, &bench);
    // `cargo bench` passes `--bench`; `cargo test --benches` does not and only wants
    // each benchmark run once. Profiling one benchmark (`--profile-time`) skips them too.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|arg| arg == "--bench") && !args.iter().any(|arg| arg.starts_with("--profile-time")) {
        paired(&bench);
    }
    c.final_summary();
    if report(&bench) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
