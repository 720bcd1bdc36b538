//! Million calls per second on two cores: a multi-thread runtime with 2 workers and 64
//! tasks, each driving its own clone of one layered service, while the token changes
//! every millisecond.
//!
//! Variants: the inner service alone (reference), tower-http's static header, the
//! `OAuth2` layer, and the two lock-based layers users write by hand. Each task calls
//! `ready()` and `call()` in a loop and yields to the scheduler every [`YIELD_EVERY`]
//! calls, so that the tasks interleave on both workers.
//!
//! Under contention, any write per request to memory the other core also writes (a lock
//! word, a shared reference count) moves a cache line between cores, so the results
//! follow the core-to-core hand-off latency, which on a VM changes between runs. It is
//! measured before and after the groups (two threads ping-ponging one atomic), printed,
//! and written to `<target>/criterion/handoff.txt`; the token swaps per second of each
//! variant during its timed runs go to `swaps.txt` beside it.

// The single-thread pieces (`drive`, the current-thread runtime, the warm stack with a
// fixed token) are not used here.
#[allow(dead_code)]
mod common;

use std::{
    convert::Infallible,
    fmt,
    future::{ready, Future},
    hint::{black_box, spin_loop},
    mem,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
    thread,
    time::Duration,
};

use bytes::Bytes;
use criterion::{criterion_group, measurement::WallTime, BenchmarkGroup, Criterion, Throughput};
use http::{Request, Response};
use http_body_util::Full;
use tokio::{
    runtime::Runtime,
    task::JoinHandle,
    time::{Instant, MissedTickBehavior},
};
use tower::{Layer, Service, ServiceExt};
use tower_oauth2::{
    token::Lifetimes, Credential, CredentialRegistry, CredentialStats, OAuth2, OAuth2Layer, Provider,
    TokenTransport,
};

use common::{
    locks::{StdLockAuth, Token, TokioLockAuth},
    request, static_header, write_note, Answer, ClonePerCall, API_URI,
};

/// Worker threads of the runtime: one per vCPU of the machine this is meant for.
const WORKERS: usize = 2;
/// Tasks calling at once, each with its own clone of the service.
const TASKS: u64 = 64;
/// Calls between two `yield_now()` of a task. A busy worker polls the timer driver only
/// every 61 task polls, so this also bounds how late the millisecond timers fire: with
/// 64, on a slow day of this VM (~500 ns per call), 20–35% of the `OAuth2` token requests
/// were waited for (the expiry fired before the background refresh had run); with 16,
/// none were.
const YIELD_EVERY: u64 = 16;
/// How often the lock variants' writer installs a new token.
const SWAP_EVERY: Duration = Duration::from_millis(1);
/// The `expires_in` the token endpoint answers with, in seconds: 1 ms, so that the token
/// changes every millisecond, as the lock variants' writer changes theirs. The refresh
/// point is at half the lifetime (the 60 s margin exceeds it), and tokio's timers round
/// up to the next whole millisecond: the refresh fires on the tick after the token
/// arrived and the expiry on the tick after that, so a new token comes every 1 ms (about
/// 1,000/s, as the check prints). Should a worker be late to fire the refresh by more
/// than half a millisecond, both land on one tick and callers wait for that token; the
/// check and the group print how many token requests were waited for. (With 0.002 the
/// token changed every 2 ms.)
const EXPIRES_IN: f64 = 0.001;
/// Round trips per hand-off measurement, and measurements of which the median is taken.
const HANDOFF_ROUND_TRIPS: u64 = 200_000;
const HANDOFF_REPS: usize = 5;

// -----------------------------------------------------------------------------
// Hand-off latency

/// Nanoseconds for one write on one core to be seen by a thread on another: two threads
/// take turns incrementing one atomic, each waiting for the other's value. The median of
/// [`HANDOFF_REPS`] runs of [`HANDOFF_ROUND_TRIPS`] round trips (two hand-offs each).
fn handoff_ns() -> f64 {
    let mut reps: Vec<f64> = (0..HANDOFF_REPS).map(|_| handoff_once()).collect();
    reps.sort_by(f64::total_cmp);
    reps[reps.len() / 2]
}

fn handoff_once() -> f64 {
    let turn = Arc::new(AtomicU64::new(0));
    // One round trip before the clock starts, so that both threads are running.
    let (first, last) = (2, 2 + 2 * HANDOFF_ROUND_TRIPS);
    let ponger = {
        let turn = Arc::clone(&turn);
        thread::spawn(move || {
            // Answers every odd value `i` with `i + 1`.
            let mut want = 1;
            while want < last {
                while turn.load(Ordering::Acquire) != want {
                    spin_loop();
                }
                turn.store(want + 1, Ordering::Release);
                want += 2;
            }
        })
    };
    let round_trip = |i: u64| {
        turn.store(i + 1, Ordering::Release);
        while turn.load(Ordering::Acquire) != i + 2 {
            spin_loop();
        }
    };
    round_trip(0);
    let start = Instant::now();
    for i in (first..last).step_by(2) {
        round_trip(i);
    }
    let elapsed = start.elapsed();
    ponger.join().expect("ponger thread");
    elapsed.as_nanos() as f64 / (last - first) as f64
}

// -----------------------------------------------------------------------------
// The callers

/// [`TASKS`] clones of one service, cloned once, each driven by a task of its own.
struct Callers<S> {
    services: Vec<S>,
}

impl<S> Callers<S>
where
    S: Service<Request<()>> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: fmt::Debug,
{
    fn new(service: &S) -> Self {
        Self {
            services: (0..TASKS).map(|_| service.clone()).collect(),
        }
    }

    /// Makes `calls` calls in all, split evenly over the tasks, and returns the wall time
    /// from spawning the first task to the last one finishing.
    fn run(&mut self, rt: &Runtime, calls: u64) -> Duration {
        let services = mem::take(&mut self.services);
        let (each, rest) = (calls / TASKS, calls % TASKS);
        let (elapsed, services) = rt.block_on(async move {
            let start = Instant::now();
            let tasks: Vec<JoinHandle<S>> = services
                .into_iter()
                .zip(0..)
                .map(|(service, i)| tokio::spawn(call_loop(service, each + u64::from(i < rest))))
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

async fn call_loop<S>(mut service: S, calls: u64) -> S
where
    S: Service<Request<()>>,
    S::Error: fmt::Debug,
{
    for i in 1..=calls {
        let ready = ServiceExt::<Request<()>>::ready(&mut service)
            .await
            .expect("ready");
        black_box(ready.call(request(API_URI)).await.expect("call"));
        if i % YIELD_EVERY == 0 {
            tokio::task::yield_now().await;
        }
    }
    service
}

/// Benchmarks `service` as variant `name`: [`TASKS`] clones, one call per iteration.
/// `swaps`, if given, counts the token changes so far; their rate during the timed runs
/// is printed after the variant.
fn bench_callers<S>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    rt: &Runtime,
    name: &str,
    service: &S,
    swaps: Option<&dyn Fn() -> u64>,
) -> Option<f64>
where
    S: Service<Request<()>> + Clone + Send + 'static,
    S::Future: Send,
    S::Response: Send,
    S::Error: fmt::Debug,
{
    let mut callers = Callers::new(service);
    // Every clone makes its first calls (and builds what it keeps) before any timing.
    callers.run(rt, 10 * TASKS);
    let (mut timed, mut swapped) = (Duration::ZERO, 0);
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let before = swaps.map(|count| count());
            let elapsed = callers.run(rt, iters);
            if let (Some(before), Some(count)) = (before, swaps) {
                swapped += count() - before;
            }
            timed += elapsed;
            elapsed
        })
    });
    if swaps.is_none() || timed.is_zero() {
        return None;
    }
    let rate = swapped as f64 / timed.as_secs_f64();
    println!(
        "{name}: {swapped} token swaps in {:.2} s of timed calls = {rate:.0}/s",
        timed.as_secs_f64(),
    );
    Some(rate)
}

// -----------------------------------------------------------------------------
// Token swapping

/// A token endpoint that answers at once, with a new token each time, valid for
/// [`EXPIRES_IN`] seconds.
fn swapping_endpoint() -> TokenTransport {
    let issued = Arc::new(AtomicU64::new(0));
    TokenTransport::new(tower::service_fn(move |_req: Request<Full<Bytes>>| {
        let n = issued.fetch_add(1, Ordering::Relaxed) + 1;
        async move {
            let token = Token::numbered(n).access_token;
            let body =
                format!(r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{EXPIRES_IN}}}"#);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
        }
    }))
}

/// The layer over [`swapping_endpoint`], believing lifetimes down to 500 µs, so that the
/// token is refreshed in the background every few milliseconds while requests flow.
fn swapping_oauth2_layer() -> OAuth2Layer {
    let provider = Provider::standard("https://auth.example.com/token")
        .api("https://api.example.com")
        .lifetimes(Lifetimes {
            default: Duration::from_secs(3600),
            min: Duration::from_micros(500),
            max: Duration::from_secs(3600),
        });
    let credentials = CredentialRegistry::builder()
        .credential(Credential::client_credentials(
            provider,
            "bench-client",
            "bench-secret",
        ))
        .transport(swapping_endpoint())
        .build()
        .expect("valid credentials");
    OAuth2Layer::new(credentials)
}

fn stats(layer: &OAuth2Layer) -> CredentialStats {
    layer.credentials().stats().remove(0)
}

/// Checks, outside any timing, how often the token really changes while [`TASKS`]
/// callers keep calling for about a second, and that they do not wait for it: prints the
/// token requests per second, and how many of them were started because the token had
/// expired rather than in the background at its refresh point.
fn check_swapping(rt: &Runtime, layer: &OAuth2Layer, service: &OAuth2<Answer>) {
    let mut callers = Callers::new(service);
    // Fetches the first token; also finds how many calls take about a second.
    let probe = 200_000;
    let per_second = probe as f64 / callers.run(rt, probe).as_secs_f64();

    let before = stats(layer);
    let elapsed = callers.run(rt, (per_second as u64).max(TASKS)).as_secs_f64();
    let after = stats(layer);
    let requests = after.token_requests - before.token_requests;
    let early = after.early_refreshes - before.early_refreshes;
    println!(
        "oauth2 swap check: {requests} token requests in {elapsed:.3} s = {:.0}/s (one every \
         {:.2} ms); {early} refreshed in the background, {} waited for, {} failed",
        requests as f64 / elapsed,
        elapsed * 1e3 / requests.max(1) as f64,
        requests.saturating_sub(early),
        after.failures - before.failures,
    );
}

/// A task installing a new token every [`SWAP_EVERY`] through `install`, counting them.
struct Writer {
    task: JoinHandle<()>,
    swaps: Arc<AtomicU64>,
}

impl Writer {
    fn spawn<F, Fut>(rt: &Runtime, mut install: F) -> Self
    where
        F: FnMut(Token) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let swaps = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&swaps);
        let task = rt.spawn(async move {
            let mut tick = tokio::time::interval(SWAP_EVERY);
            tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
            for n in 1.. {
                tick.tick().await;
                install(Token::numbered(n)).await;
                // Written by this task alone, once a millisecond.
                counter.store(n, Ordering::Relaxed);
            }
        });
        Self { task, swaps }
    }

    fn swaps(&self) -> u64 {
        self.swaps.load(Ordering::Relaxed)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// -----------------------------------------------------------------------------
// The group

fn contention(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("runtime");

    let mut group = c.benchmark_group("contention");
    group.throughput(Throughput::Elements(1));

    bench_callers(&mut group, &rt, "bare", &Answer, None);

    // One `HeaderValue` shared by every clone, and no token to swap: the floor for any
    // header, and what the other variants are compared with.
    bench_callers(&mut group, &rt, "static_header", &static_header(), None);
    // The same, each call through a clone of the task's service: idiomatic tower code.
    bench_callers(
        &mut group,
        &rt,
        "static_header_cloned",
        &ClonePerCall(static_header()),
        None,
    );

    // What the report says about the token swaps of each variant, in the timed runs.
    let mut swaps = Vec::new();

    // A new token every 1 ms from the token endpoint, refreshed in the background.
    {
        let layer = swapping_oauth2_layer();
        let service = layer.layer(Answer);
        check_swapping(&rt, &layer, &service);
        let before = stats(&layer);
        let token_requests = || stats(&layer).token_requests;
        let rate = bench_callers(&mut group, &rt, "oauth2", &service, Some(&token_requests));
        let after = stats(&layer);
        let requests = after.token_requests - before.token_requests;
        let waited = requests.saturating_sub(after.early_refreshes - before.early_refreshes);
        println!(
            "oauth2: {waited} of {requests} token requests during the group were waited for; {} failed",
            after.failures - before.failures,
        );
        if let Some(rate) = rate {
            swaps.push(format!(
                "oauth2 {rate:.0}/s ({waited} of {requests} token requests waited for)"
            ));
        }

        // The same layer, each call through a clone of the task's service.
        let cloned = ClonePerCall(service.clone());
        let before = stats(&layer);
        let rate = bench_callers(&mut group, &rt, "oauth2_cloned", &cloned, Some(&token_requests));
        let after = stats(&layer);
        let requests = after.token_requests - before.token_requests;
        let waited = requests.saturating_sub(after.early_refreshes - before.early_refreshes);
        if let Some(rate) = rate {
            swaps.push(format!(
                "oauth2_cloned {rate:.0}/s ({waited} of {requests} token requests waited for)"
            ));
        }
    }

    // A writer task takes the write lock and installs a new token every 1 ms.
    {
        let token = Arc::new(tokio::sync::RwLock::new(Some(Token::new())));
        let shared = Arc::clone(&token);
        let writer = Writer::spawn(&rt, move |new| {
            let token = Arc::clone(&shared);
            async move {
                *token.write().await = Some(new);
            }
        });
        let service = TokioLockAuth { inner: Answer, token };
        let rate = bench_callers(
            &mut group,
            &rt,
            "tokio_rwlock",
            &service,
            Some(&|| writer.swaps()),
        );
        swaps.extend(rate.map(|rate| format!("tokio_rwlock {rate:.0}/s")));
    }

    {
        let token = Arc::new(RwLock::new(Arc::new(Token::new())));
        let shared = Arc::clone(&token);
        let writer = Writer::spawn(&rt, move |new| {
            *shared.write().expect("lock not poisoned") = Arc::new(new);
            ready(())
        });
        let service = StdLockAuth { inner: Answer, token };
        let rate = bench_callers(&mut group, &rt, "std_rwlock", &service, Some(&|| writer.swaps()));
        swaps.extend(rate.map(|rate| format!("std_rwlock {rate:.0}/s")));
    }

    group.finish();
    if !swaps.is_empty() {
        write_note("swaps.txt", &(swaps.join("; ") + "\n"), false);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20);
    targets = contention
}

fn main() {
    let before = handoff_ns();
    println!("handoff_ns: {before:.1}");
    write_note("handoff.txt", &format!("handoff_ns: {before:.1}\n"), false);

    benches();
    Criterion::default().configure_from_args().final_summary();

    let after = handoff_ns();
    println!("handoff_ns: {before:.1} before the groups, {after:.1} after");
    write_note(
        "handoff.txt",
        &format!("handoff_ns: {before:.1}\nhandoff_ns_after: {after:.1}\n"),
        false,
    );
}
