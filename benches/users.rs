//! Users at scale: requests acting for 1,000 distinct users against requests with the
//! application's own credential, on two cores; and the memory an idle user costs.
//!
//! - Throughput (criterion group `users`): a multi-thread runtime with 2 workers and 64
//!   tasks, each driving its own clone of one layered service over the same `Answer`
//!   inner service as `benches/contention.rs`. Variant `app`: requests without a
//!   `Subject`, the application's credential. Variant `app_tagged`: the same with one
//!   request extension of another type, so that the request is built at the cost of one
//!   carrying a `Subject` (an extension allocates its map). Variant `users_1000`: each
//!   task cycles through 1,000 subjects, starting at its own offset. Every user's token
//!   was read back from the store and every clone made its first calls before timing, so
//!   the cached path is what is measured. After the criterion group, paired rounds
//!   alternate the three variants in rotating order and take the ratios within each
//!   round, as the load of a shared machine drifts between criterion's long runs.
//! - Memory (measured first): a counting global allocator's live bytes on a
//!   current-thread runtime with a paused clock: at the start (registry built, the
//!   users' tokens already in the store), after 100,000 users made one request each
//!   (their tokens read back from the store, none fetched), divided per user; and after
//!   their time-to-idle passed and the sweeps evicted them, against the start.
//!
//! Results are printed as `name: value` lines and written to
//! `<target>/criterion/users.txt` for `scripts/bench_report.py`.

// The single-thread pieces and the lock layers are not used here.
#[allow(dead_code)]
mod common;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    convert::Infallible,
    fmt,
    hint::black_box,
    mem,
    sync::{
        atomic::{AtomicBool, AtomicI64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use criterion::{criterion_group, measurement::WallTime, BenchmarkGroup, Criterion, Throughput};
use http::{Request, Response};
use http_body_util::Full;
use tokio::{runtime::Runtime, task::JoinHandle, time::Instant};
use tower::{Layer, Service, ServiceExt};
use tower_oauth2::{
    secret::{AccessToken, RefreshToken},
    store::{StoredTokens, TokenStore},
    Credential, CredentialRegistry, MemoryStore, OAuth2Layer, Provider, Subject, TokenTransport,
    UserCredentialTemplate,
};

use common::{criterion_dir, request, write_note, Answer, API_URI, TOKEN};

/// Worker threads of the runtime: one per vCPU of the machine this is meant for.
const WORKERS: usize = 2;
/// Tasks calling at once, each with its own clone of the service.
const TASKS: u64 = 64;
/// Calls between two `yield_now()` of a task, as in `benches/contention.rs`.
const YIELD_EVERY: u64 = 16;
/// Distinct users of the throughput group.
const SUBJECTS: usize = 1_000;
/// Users of the memory measurement.
const IDLE_USERS: usize = 100_000;
/// Their time-to-idle.
const IDLE_AFTER: Duration = Duration::from_secs(600);

// -----------------------------------------------------------------------------
// Live bytes

/// The system allocator, counting live bytes while [`COUNTING`] is on: from the start of
/// the process to the end of the memory measurement, which runs first. Off during the
/// throughput group: a counter every thread writes would be the very contention
/// measured there.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(true);
static LIVE: AtomicI64 = AtomicI64::new(0);

fn count(bytes: usize, sign: i64) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE.fetch_add(sign * bytes as i64, Ordering::Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counters are plain atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size(), 1);
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size, 1);
        count(layout.size(), -1);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(layout.size(), -1);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live_bytes() -> i64 {
    LIVE.load(Ordering::Relaxed)
}

// -----------------------------------------------------------------------------
// The registry

fn subject(i: usize) -> Subject {
    Subject::new(format!("user-{i:06}"))
}

/// A token endpoint that answers at once with [`TOKEN`], for the application's
/// credential (users' tokens come from the store).
fn token_endpoint() -> TokenTransport {
    TokenTransport::new(tower::service_fn(|_req: Request<Full<Bytes>>| async {
        let body = format!(r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":3600}}"#);
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
    }))
}

/// One provider at `https://api.example.com`, with the application's credential and
/// `users` users whose tokens (an access token live for an hour) are in the store.
async fn registry(users: usize, max_users: usize) -> CredentialRegistry {
    let provider = Provider::standard("https://auth.example.com/token").api("https://api.example.com");
    let template = UserCredentialTemplate::new(provider.clone(), "bench-client", Some("bench-secret".into()))
        .max_users(max_users)
        .idle_after(IDLE_AFTER);
    let store = Arc::new(MemoryStore::new());
    // A stored expiry is on the wall clock, which the crate itself never reads directly.
    #[allow(clippy::disallowed_methods)]
    let expires_at = SystemTime::now() + Duration::from_secs(3600);
    for i in 0..users {
        let tokens = StoredTokens::new()
            .with_access_token(AccessToken::new(format!("{TOKEN}-{i}")))
            .with_refresh_token(RefreshToken::new(format!("refresh-{i}")))
            .with_expires_at(expires_at);
        let key = template.key_for(subject(i).as_str());
        store.save(&key, &tokens).await.expect("memory store");
    }
    CredentialRegistry::builder()
        .credential(Credential::client_credentials(
            provider,
            "bench-client",
            "bench-secret",
        ))
        .users(template)
        .store(store)
        .transport(token_endpoint())
        .build()
        .expect("valid credentials")
}

/// How a task builds its requests.
#[derive(Clone)]
enum Requests {
    /// The application's credential.
    App,
    /// The application's credential, the request carrying one extension (not a subject).
    AppTagged,
    /// Cycling through these users.
    Users(Arc<Vec<Subject>>),
}

/// An extension of no meaning to the layer.
#[derive(Clone, Copy)]
struct Tag;

impl Requests {
    #[inline]
    fn make(&self, task: u64, i: u64) -> Request<()> {
        let mut req = request(API_URI);
        match self {
            Requests::App => {}
            Requests::AppTagged => {
                req.extensions_mut().insert(Tag);
            }
            Requests::Users(subjects) => {
                // Each task starts at its own offset, so tasks are on different users.
                let n = subjects.len() as u64;
                let at = (task * (n / TASKS) + i) % n;
                req.extensions_mut().insert(subjects[at as usize].clone());
            }
        }
        req
    }
}

// -----------------------------------------------------------------------------
// The callers

/// [`TASKS`] clones of one service, each driven by a task of its own.
struct Callers<S> {
    services: Vec<S>,
    requests: Requests,
}

impl<S> Callers<S>
where
    S: Service<Request<()>> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: fmt::Debug,
{
    fn new(service: &S, requests: Requests) -> Self {
        Self {
            services: (0..TASKS).map(|_| service.clone()).collect(),
            requests,
        }
    }

    /// Makes `calls` calls in all, split evenly over the tasks, and returns the wall time
    /// from spawning the first task to the last one finishing.
    fn run(&mut self, rt: &Runtime, calls: u64) -> Duration {
        let services = mem::take(&mut self.services);
        let (each, rest) = (calls / TASKS, calls % TASKS);
        let requests = self.requests.clone();
        let (elapsed, services) = rt.block_on(async move {
            let start = Instant::now();
            let tasks: Vec<JoinHandle<S>> = services
                .into_iter()
                .zip(0..)
                .map(|(service, task)| {
                    let calls = each + u64::from(task < rest);
                    tokio::spawn(call_loop(service, requests.clone(), task, calls))
                })
                .collect();
            let mut services = Vec::with_capacity(tasks.len());
            for task in tasks {
                services.push(task.await.expect("caller task"));
            }
            (start.elapsed(), services)
        });
        self.services = services;
        elapsed
    }
}

async fn call_loop<S>(mut service: S, requests: Requests, task: u64, calls: u64) -> S
where
    S: Service<Request<()>>,
    S::Error: fmt::Debug,
{
    for i in 1..=calls {
        let ready = ServiceExt::<Request<()>>::ready(&mut service)
            .await
            .expect("ready");
        black_box(ready.call(requests.make(task, i)).await.expect("call"));
        if i % YIELD_EVERY == 0 {
            tokio::task::yield_now().await;
        }
    }
    service
}

/// Benchmarks `callers` as variant `name`, one call per iteration.
fn bench_callers<S>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    callers: &mut Callers<S>,
) where
    S: Service<Request<()>> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: fmt::Debug,
{
    // Every clone makes its first calls (and every user is read back) before any timing.
    callers.run(rt, 2 * SUBJECTS as u64 * TASKS);
    group.bench_function(name, |b| b.iter_custom(|iters| callers.run(rt, iters)));
}

fn users(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("runtime");
    // The default bound (10,000): every user stays in memory.
    let credentials = rt.block_on(registry(SUBJECTS, 10_000));
    let service = OAuth2Layer::new(credentials.clone()).layer(Answer);
    let subjects: Arc<Vec<Subject>> = Arc::new((0..SUBJECTS).map(subject).collect());

    let mut group = c.benchmark_group("users");
    group.throughput(Throughput::Elements(1));
    let variants = [
        ("app", Requests::App),
        ("app_tagged", Requests::AppTagged),
        ("users_1000", Requests::Users(subjects)),
    ];
    let mut callers: Vec<_> = variants
        .iter()
        .map(|(_, requests)| Callers::new(&service, requests.clone()))
        .collect();
    for ((name, _), callers) in variants.iter().zip(&mut callers) {
        bench_callers(&mut group, &rt, name, callers);
    }
    group.finish();

    // Every user's token came from the store: not one token request for users, and every
    // user still in memory.
    let stats = credentials.stats();
    let user_token_requests: u64 = stats[1..].iter().map(|s| s.token_requests).sum();
    assert_eq!(stats[0].token_requests, 1, "the application's one token request");
    assert_eq!(user_token_requests, 0, "users' tokens were read from the store");
    assert_eq!(stats.len(), 1 + SUBJECTS + 1, "every user stayed in memory");

    // Criterion runs one variant for seconds, then the next: on a shared machine the load
    // changes in between. Paired rounds alternate them, in rotating order, and the ratio
    // is taken within each round.
    let mut ratios = (Vec::new(), Vec::new());
    let mut rates = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..ROUNDS {
        let mut rate = [0.0; 3];
        for k in 0..3 {
            let v = (round + k) % 3;
            rate[v] = ROUND_CALLS as f64 / callers[v].run(&rt, ROUND_CALLS).as_secs_f64();
        }
        ratios.0.push(rate[2] / rate[0]);
        ratios.1.push(rate[2] / rate[1]);
        for v in 0..3 {
            rates[v].push(rate[v]);
        }
    }
    let [app, tagged, users] = rates.map(|mut r| median(&mut r));
    let (vs_app, vs_tagged) = (median(&mut ratios.0), median(&mut ratios.1));
    let text = format!(
        "paired_rounds: {ROUNDS} x {ROUND_CALLS} calls per variant\n\
         users_1000_calls_per_s: {users:.0}\napp_calls_per_s: {app:.0}\napp_tagged_calls_per_s: {tagged:.0}\n\
         users_vs_app: {vs_app:.3} (p25-p75 {})\nusers_vs_app_tagged: {vs_tagged:.3} (p25-p75 {})\n",
        spread(&ratios.0),
        spread(&ratios.1),
    );
    print!("{text}");
    write_note("users.txt", &text, true);
}

/// Paired rounds, and calls per variant in each.
const ROUNDS: usize = 10;
const ROUND_CALLS: u64 = 1_000_000;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The 25th to the 75th percentile of sorted `values`.
fn spread(values: &[f64]) -> String {
    let n = values.len();
    format!("{:.3}-{:.3}", values[n / 4], values[3 * n / 4])
}

// -----------------------------------------------------------------------------
// Memory per idle user

/// Lets every task that is ready run (the sweep, aborted timers being dropped).
async fn settle() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}

fn idle_memory() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    rt.block_on(async {
        // The bound is kept per shard of the table and hashing spreads users unevenly: a
        // tenth more room keeps them all.
        let credentials = registry(IDLE_USERS, IDLE_USERS + IDLE_USERS / 10).await;
        let mut service = OAuth2Layer::new(credentials.clone()).layer(Answer);
        let subjects: Vec<Subject> = (0..IDLE_USERS).map(subject).collect();
        // The application's token and the service's first call, outside the count.
        ServiceExt::<Request<()>>::ready(&mut service)
            .await
            .expect("ready");
        service.call(request(API_URI)).await.expect("app call");
        settle().await;

        let start = live_bytes();
        for subject in &subjects {
            let mut req = request(API_URI);
            req.extensions_mut().insert(subject.clone());
            ServiceExt::<Request<()>>::ready(&mut service)
                .await
                .expect("ready");
            service.call(req).await.expect("user call");
        }
        settle().await;
        let loaded = live_bytes();
        let stats = credentials.stats();
        assert_eq!(stats.len(), 1 + IDLE_USERS + 1, "every user in memory");
        assert_eq!(
            stats[1..].iter().map(|s| s.token_requests).sum::<u64>(),
            0,
            "users' tokens were read from the store"
        );
        drop(stats);

        // The time-to-idle, and the sweep that comes at most half of it later: slept
        // through on the paused clock, which moves from one timer to the next, so every
        // sweep on the way runs in its turn.
        tokio::time::sleep(IDLE_AFTER + IDLE_AFTER / 2 + Duration::from_secs(1)).await;
        settle().await;
        let idle = live_bytes();
        let in_memory = credentials.stats().len() - 2;
        COUNTING.store(false, Ordering::Relaxed);

        let per_user = (loaded - start) as f64 / IDLE_USERS as f64;
        let after = (idle - start) as f64 / start as f64;
        let text = format!(
            "idle_users: {IDLE_USERS}\nlive_bytes_start: {start}\nlive_bytes_loaded: {loaded}\n\
             bytes_per_idle_user: {per_user:.0}\nlive_bytes_after_idle: {idle}\n\
             after_idle_vs_start: {:+.2}%\nbytes_left_per_user_after_idle: {:.1}\n\
             users_in_memory_after_idle: {in_memory}\n",
            after * 100.0,
            (idle - start) as f64 / IDLE_USERS as f64,
        );
        print!("{text}");
        write_note("users.txt", &text, true);
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    targets = users
}

fn main() {
    let _ = std::fs::remove_file(criterion_dir().join("users.txt"));
    // First, while the allocator counts every live byte since the process started.
    idle_memory();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
