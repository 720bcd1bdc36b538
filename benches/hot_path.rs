//! Nanoseconds per call on one thread: the inner service alone, a fixed header, the
//! `OAuth2` layer with a cached token, and the two lock-based shapes users write by hand;
//! then the first three again with a clone of the service per call.
//!
//! Every variant wraps the same inner service ([`common::Answer`], ready at once) and
//! gets a request built inside the iteration. The response future is polled once with
//! a no-op waker; the `OAuth2` token is fetched before measuring.

mod common;

use std::{
    hint::black_box,
    sync::{Arc, RwLock},
};

use criterion::{criterion_group, criterion_main, Criterion};

use common::{
    drive,
    floor::Floor,
    locks::{StdLockAuth, Token, TokioLockAuth},
    oauth2_layer, request, runtime, static_header, warm_oauth2, warm_oauth2_layer, Answer, ClonePerCall,
    API_URI, FOREIGN_URI,
};

fn hot_path(c: &mut Criterion) {
    let rt = runtime();
    let _context = rt.enter();
    let mut group = c.benchmark_group("hot_path");

    let mut bare = Answer;
    group.bench_function("bare", |b| {
        b.iter(|| black_box(drive(&mut bare, request(API_URI))))
    });

    let mut fixed = static_header();
    group.bench_function("static_header", |b| {
        b.iter(|| black_box(drive(&mut fixed, request(API_URI))))
    });

    let mut oauth2 = warm_oauth2(&rt);
    group.bench_function("oauth2", |b| {
        b.iter(|| black_box(drive(&mut oauth2, request(API_URI))))
    });

    // The same layer with retries off: no replay copy is taken per request.
    let mut oauth2_no_retry = warm_oauth2_layer(&rt, oauth2_layer().retry_dead_tokens(false));
    group.bench_function("oauth2_no_retry", |b| {
        b.iter(|| black_box(drive(&mut oauth2_no_retry, request(API_URI))))
    });

    // A minimal hand-written layer with the same obligations (see `common::floor`).
    let mut floor = Floor::new(Answer, false);
    group.bench_function("floor", |b| {
        b.iter(|| black_box(drive(&mut floor, request(API_URI))))
    });
    let mut floor_retry = Floor::new(Answer, true);
    group.bench_function("floor_retry", |b| {
        b.iter(|| black_box(drive(&mut floor_retry, request(API_URI))))
    });

    let mut tokio_lock = TokioLockAuth {
        inner: Answer,
        token: Arc::new(tokio::sync::RwLock::new(Some(Token::new()))),
    };
    group.bench_function("tokio_rwlock", |b| {
        b.iter(|| black_box(drive(&mut tokio_lock, request(API_URI))))
    });

    let mut std_lock = StdLockAuth {
        inner: Answer,
        token: Arc::new(RwLock::new(Arc::new(Token::new()))),
    };
    group.bench_function("std_rwlock", |b| {
        b.iter(|| black_box(drive(&mut std_lock, request(API_URI))))
    });

    group.finish();
}

/// The pattern idiomatic tower code uses: a clone of the service per call
/// (`svc.clone().oneshot(req)`), against the static header cloned the same way.
fn cloned_per_call(c: &mut Criterion) {
    let rt = runtime();
    let _context = rt.enter();
    let mut group = c.benchmark_group("cloned_per_call");

    let mut bare = ClonePerCall(Answer);
    group.bench_function("bare", |b| {
        b.iter(|| black_box(drive(&mut bare, request(API_URI))))
    });

    let mut fixed = ClonePerCall(static_header());
    group.bench_function("static_header", |b| {
        b.iter(|| black_box(drive(&mut fixed, request(API_URI))))
    });

    let mut oauth2 = ClonePerCall(warm_oauth2(&rt));
    group.bench_function("oauth2", |b| {
        b.iter(|| black_box(drive(&mut oauth2, request(API_URI))))
    });

    group.finish();
}

fn passthrough(c: &mut Criterion) {
    let rt = runtime();
    let _context = rt.enter();
    let mut group = c.benchmark_group("passthrough");

    let mut bare = Answer;
    group.bench_function("bare", |b| {
        b.iter(|| black_box(drive(&mut bare, request(FOREIGN_URI))))
    });

    let mut oauth2 = warm_oauth2(&rt);
    group.bench_function("oauth2", |b| {
        b.iter(|| black_box(drive(&mut oauth2, request(FOREIGN_URI))))
    });

    group.finish();
}

criterion_group!(benches, hot_path, cloned_per_call, passthrough);
criterion_main!(benches);
