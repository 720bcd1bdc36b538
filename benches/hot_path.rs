//! Nanoseconds per call on one thread: the inner service alone, a fixed header, the
//! `OAuth2` layer with a cached token, and the two lock-based shapes users write by hand.
//!
//! Every variant wraps the same inner service ([`common::Answer`], ready at once) and
//! gets a request built inside the iteration. The response future is polled once with
//! a no-op waker; the `OAuth2` token is fetched before measuring.

mod common;

use std::{
    convert::Infallible,
    future::Future,
    hint::black_box,
    mem,
    pin::Pin,
    sync::{Arc, RwLock},
    task::{Context, Poll},
};

use criterion::{criterion_group, criterion_main, Criterion};
use http::{header::AUTHORIZATION, HeaderValue, Request, Response};
use tower::Service;

use common::{
    bearer_value, drive, oauth2_layer, request, runtime, static_header, warm_oauth2, warm_oauth2_layer,
    Answer, API_URI, FOREIGN_URI, TOKEN,
};

/// The token as the hand-rolled layers keep it.
struct Token {
    access_token: String,
    /// Built once per token (used by the `std::sync::RwLock` variant).
    header: HeaderValue,
}

impl Token {
    fn new() -> Self {
        Self {
            access_token: TOKEN.to_owned(),
            header: bearer_value(),
        }
    }
}

/// What users write today: an async lock read in a boxed future, the header formatted
/// per request.
#[derive(Clone)]
struct TokioLockAuth<S> {
    inner: S,
    token: Arc<tokio::sync::RwLock<Option<Token>>>,
}

impl<S> Service<Request<()>> for TokioLockAuth<S>
where
    S: Service<Request<()>, Response = Response<()>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<()>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<()>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<()>) -> Self::Future {
        let token = Arc::clone(&self.token);
        let clone = self.inner.clone();
        let mut inner = mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let value = {
                let guard = token.read().await;
                let token = guard.as_ref().expect("token present");
                let mut value = HeaderValue::try_from(format!("Bearer {}", token.access_token))
                    .expect("valid header value");
                value.set_sensitive(true);
                value
            };
            req.headers_mut().insert(AUTHORIZATION, value);
            inner.call(req).await
        })
    }
}

/// A blocking lock around the current token, a pre-built header cloned per request,
/// and the inner future returned as it is.
#[derive(Clone)]
struct StdLockAuth<S> {
    inner: S,
    token: Arc<RwLock<Arc<Token>>>,
}

impl<S> Service<Request<()>> for StdLockAuth<S>
where
    S: Service<Request<()>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<()>) -> Self::Future {
        let value = self.token.read().expect("lock not poisoned").header.clone();
        req.headers_mut().insert(AUTHORIZATION, value);
        self.inner.call(req)
    }
}

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

criterion_group!(benches, hot_path, passthrough);
criterion_main!(benches);
