//! Heap allocations per call: the inner service alone, a fixed header, and the `OAuth2`
//! layer with a cached token, with one service reused and with a clone per call; and per
//! clone of the service. Counted by a global allocator over 10,000 calls after a
//! warm-up; exits with status 1 if `OAuth2` allocates more per call than the fixed header
//! (either way) or at all per clone.

mod common;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    fmt,
    hint::black_box,
    mem,
    process::ExitCode,
    sync::atomic::{AtomicU64, Ordering},
};

use http::Request;
use tower::Service;

use common::{
    drive, request, runtime, static_header, warm_oauth2, Answer, ClonePerCall, API_URI, FOREIGN_URI,
};

const CALLS: u64 = 10_000;
const WARM_UP: u64 = 100;

/// The system allocator, counting allocations (and reallocations) and bytes asked for.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the
// counters are plain atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        System.alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        System.realloc(ptr, layout, new_size)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations and bytes per call, averaged over [`CALLS`].
#[derive(Clone, Copy)]
struct PerCall {
    allocations: f64,
    bytes: f64,
}

/// Calls `svc` [`WARM_UP`] times, then counts over [`CALLS`] calls to `uri`.
fn count<S>(svc: &mut S, uri: &str) -> PerCall
where
    S: Service<Request<()>>,
    S::Error: fmt::Debug,
{
    for _ in 0..WARM_UP {
        black_box(drive(svc, request(uri)));
    }
    let (allocations, bytes) = (ALLOCATIONS.load(Ordering::Relaxed), BYTES.load(Ordering::Relaxed));
    for _ in 0..CALLS {
        black_box(drive(svc, request(uri)));
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - allocations;
    let bytes = BYTES.load(Ordering::Relaxed) - bytes;
    PerCall {
        allocations: allocations as f64 / CALLS as f64,
        bytes: bytes as f64 / CALLS as f64,
    }
}

/// Allocations per `Clone` of `svc`, over [`CALLS`] clones, each dropped at once.
fn count_clones<S: Clone>(svc: &S) -> f64 {
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..CALLS {
        drop(black_box(svc.clone()));
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - allocations) as f64 / CALLS as f64
}

/// The size of `S`'s response future: what each call moves around.
fn future_size<S: Service<Request<()>>>(_svc: &S) -> usize {
    mem::size_of::<S::Future>()
}

fn main() -> ExitCode {
    let rt = runtime();
    let _context = rt.enter();

    let bare = count(&mut Answer, API_URI);
    let bare_foreign = count(&mut Answer, FOREIGN_URI);
    let fixed = count(&mut static_header(), API_URI);
    let mut oauth2 = warm_oauth2(&rt);
    let attached = count(&mut oauth2, API_URI);
    let passthrough = count(&mut oauth2, FOREIGN_URI);
    let fixed_cloned = count(&mut ClonePerCall(static_header()), API_URI);
    let oauth2_cloned = count(&mut ClonePerCall(oauth2.clone()), API_URI);
    let clone_fixed = count_clones(&static_header());
    let clone_oauth2 = count_clones(&oauth2);

    println!("allocations per call, over {CALLS} calls after {WARM_UP} warm-up calls");
    println!(
        "{:<22} {:>12} {:>12} {:>16}",
        "variant", "allocs/call", "bytes/call", "allocs - bare"
    );
    let rows = [
        ("bare", bare, bare),
        ("static_header", fixed, bare),
        ("oauth2", attached, bare),
        ("bare (foreign uri)", bare_foreign, bare_foreign),
        ("oauth2 (foreign uri)", passthrough, bare_foreign),
        ("static_header cloned", fixed_cloned, bare),
        ("oauth2 cloned", oauth2_cloned, bare),
    ];
    for (name, row, baseline) in rows {
        println!(
            "{name:<22} {:>12.2} {:>12.1} {:>+16.2}",
            row.allocations,
            row.bytes,
            row.allocations - baseline.allocations
        );
    }

    println!();
    println!("allocations per clone of the service (no call)");
    println!("{:<22} {:>12.2}", "static_header", clone_fixed);
    println!("{:<22} {:>12.2}", "oauth2", clone_oauth2);

    println!();
    println!("size of the response future returned to the caller, in bytes");
    println!("{:<22} {:>12}", "bare", future_size(&Answer));
    println!("{:<22} {:>12}", "static_header", future_size(&static_header()));
    println!("{:<22} {:>12}", "oauth2", future_size(&oauth2));

    if attached.allocations > fixed.allocations {
        eprintln!(
            "FAIL: oauth2 allocates {:.2} times per call, more than static_header ({:.2})",
            attached.allocations, fixed.allocations
        );
        return ExitCode::FAILURE;
    }
    if oauth2_cloned.allocations > fixed_cloned.allocations || clone_oauth2 > 0.0 {
        eprintln!(
            "FAIL: oauth2 cloned per call allocates {:.2} times per call (static_header: {:.2}), \
             and {clone_oauth2:.2} times per clone (must be 0)",
            oauth2_cloned.allocations, fixed_cloned.allocations
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
