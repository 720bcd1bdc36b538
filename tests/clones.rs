//! A clone of the service per request is how tower code is written: cloning costs the
//! inner service's clone and nothing else, and a fresh clone's first request takes the
//! fast path.

mod support;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};
use tower_oauth2::OAuth2Layer;

use support::*;

// ===== allocations, counted per thread =====

/// The system allocator, counting the allocations of the thread that asks while
/// [`COUNTING`] is set on it (other tests' threads do not count).
struct PerThread;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every method forwards to `System` unchanged; the counters are thread-locals
// with const initializers, which never allocate.
unsafe impl GlobalAlloc for PerThread {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

fn count() {
    let _ = COUNTING.try_with(|counting| {
        if counting.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

#[global_allocator]
static GLOBAL: PerThread = PerThread;

/// The allocations `f` makes on this thread.
fn allocations_of<T>(f: impl FnOnce() -> T) -> (usize, T) {
    ALLOCATIONS.with(|n| n.set(0));
    COUNTING.with(|c| c.set(true));
    let out = f();
    COUNTING.with(|c| c.set(false));
    (ALLOCATIONS.with(Cell::get), out)
}

// ===== an inner service whose clones are counted =====

/// The [`Api`], counting its clones.
struct Counted {
    api: Api,
    clones: Arc<AtomicUsize>,
}

impl Counted {
    fn new(api: &Api) -> Self {
        Self {
            api: api.clone(),
            clones: Arc::default(),
        }
    }
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, Ordering::SeqCst);
        Self {
            api: self.api.clone(),
            clones: Arc::clone(&self.clones),
        }
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl Service<Request<Full<Bytes>>> for Counted {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Service::<Request<Full<Bytes>>>::poll_ready(&mut self.api, cx)
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        self.api.call(req)
    }
}

/// A clone of `client` that sent 40 requests itself, and so keeps copies of its own.
async fn warmed<S>(client: &S) -> S
where
    S: Service<Request<Full<Bytes>>> + Clone,
    S::Error: std::fmt::Debug,
{
    let mut warm = client.clone();
    for i in 0..40 {
        let ready = ServiceExt::<Request<Full<Bytes>>>::ready(&mut warm)
            .await
            .unwrap();
        ready.call(get(&format!("w{i}"))).await.unwrap();
    }
    warm
}

// ===== tests =====

#[tokio::test(start_paused = true)]
async fn cloning_allocates_nothing() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let api = Api::new();
    let client = OAuth2Layer::new(credentials(&endpoint)).layer(api.clone());
    client.clone().oneshot(get("cold")).await.unwrap();
    // A warm client too: its clones start cold again, without copying its copies.
    let warm = warmed(&client).await;
    for service in [&client, &warm] {
        let (allocations, clones) = allocations_of(|| (0..1000).map(|_| service.clone()).collect::<Vec<_>>());
        // The `Vec` holding them is the one allocation.
        assert_eq!(allocations, 1);
        drop(clones);
    }
}

#[tokio::test(start_paused = true)]
async fn a_clone_per_request_clones_the_inner_service_once_per_clone_and_never_waits() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let api = Api::new();
    let counted = Counted::new(&api);
    let probe = Arc::clone(&counted.clones);
    let client = OAuth2Layer::new(credentials(&endpoint)).layer(counted);
    client.clone().oneshot(get("cold")).await.unwrap();
    let clones = || probe.load(Ordering::SeqCst);
    let before = clones();
    for i in 0..100 {
        let response = client.clone().oneshot(get(&format!("c{i}"))).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    // One clone of the inner service per clone of the layer: none for a spare, none to
    // wait for a token (each request found it at once).
    assert_eq!(clones(), before + 100);
    assert_eq!(endpoint.requests(), 1);

    // The one allocation a fresh clone's request makes beyond the inner service's own
    // (the header map, as for any header) is measured by the allocations bench; here,
    // that a fresh clone's first request is as cheap as a warm clone's.
    let warm_allocations = {
        let mut warm = warmed(&client).await;
        let req = get("measured-warm");
        let (n, fut) = allocations_of(|| warm.call(req));
        fut.await.unwrap();
        n
    };
    let mut fresh = client.clone();
    ServiceExt::<Request<Full<Bytes>>>::ready(&mut fresh)
        .await
        .unwrap();
    let req = get("measured-fresh");
    let (fresh_allocations, fut) = allocations_of(|| fresh.call(req));
    fut.await.unwrap();
    assert_eq!(fresh_allocations, warm_allocations);
}

#[tokio::test(start_paused = true)]
async fn a_clone_per_request_still_refreshes_once_and_retries_once() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let api = Api::new();
    let credentials = credentials(&endpoint);
    let client = OAuth2Layer::new(credentials.clone()).layer(Counted::new(&api));
    client.clone().oneshot(get("first")).await.unwrap();
    api.revoke_up_to(1);
    // Every first send is in flight before any answer comes back: all 50 carry the dead
    // token.
    api.set_latency(Duration::from_millis(10));
    let calls: Vec<_> = (0..50)
        .map(|i| tokio::spawn(client.clone().oneshot(get(&format!("r{i}")))))
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(endpoint.requests(), 2, "one refresh for 50 dead-token answers");
    for i in 0..50 {
        assert_eq!(api.sends_of(&format!("r{i}")), 2, "r{i} sent twice");
    }
    assert_eq!(credentials.stats()[0].retries, 50);
}

/// Clones made from a warm clone start cold, and share the warm clone's own handle
/// until they warm up themselves: long-lived clones on different threads each end up
/// with their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_lived_clones_on_several_threads_each_serve_their_requests() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let api = Api::new();
    let credentials = credentials(&endpoint);
    let client = OAuth2Layer::new(credentials.clone()).layer(api.clone());
    client.clone().oneshot(get("first")).await.unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let mut clone = client.clone();
            tokio::spawn(async move {
                for i in 0..200 {
                    let response = ServiceExt::<Request<Full<Bytes>>>::ready(&mut clone)
                        .await
                        .unwrap()
                        .call(get(&format!("t{t}-{i}")))
                        .await
                        .unwrap();
                    assert_eq!(response.status(), 200);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(api.seen().len(), 1 + 8 * 200);
    assert!(api
        .seen()
        .iter()
        .all(|s| s.authorization.as_deref() == Some("Bearer tok-1")));
    assert_eq!(endpoint.requests(), 1);
}
