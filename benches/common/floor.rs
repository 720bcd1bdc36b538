//! A minimal layer with this crate's obligations on the cached path, written out by hand
//! the plain way and with nothing else: what those obligations cost before any of our
//! design choices, to measure `OAuth2` against.
//!
//! On every request such a layer must
//! 1. send the token only to its origin: compare the request's scheme and authority;
//! 2. not attach an expired token: read one shared flag (no clock);
//! 3. attach the header: a per-clone copy of one `HeaderValue`, as `OAuth2` does;
//! 4. notice a dead-token answer, to refresh: wrap the inner future and look at the
//!    status, holding a reference-counted handle to the credential (a `'static`
//!    future can reach it no other way);
//! 5. to retry that answer once, keep what is needed to send the request again (the
//!    inner service consumes the request): its URI, method and version.
//!
//! It does no more: one origin, one credential, no refresh, no retry (a dead answer only
//! clears the flag), no counters, no users. `floor` does 1–4, `floor_retry` 1–5.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{ready, Context, Poll},
};

use http::{header::AUTHORIZATION, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use tower::Service;

use super::bearer_value;

/// The credential's shared part: what the future's handle reaches.
pub struct FloorCredential {
    authority: &'static str,
    fresh: AtomicBool,
}

/// See the module docs.
pub struct Floor<S> {
    inner: S,
    credential: Arc<FloorCredential>,
    header: HeaderValue,
    retry: bool,
}

impl<S> Floor<S> {
    /// For `https://api.example.com`, with a fresh token; `retry` takes the copy of step 5.
    pub fn new(inner: S, retry: bool) -> Self {
        let mut header = HeaderValue::from_bytes(bearer_value().as_bytes()).expect("valid header value");
        header.set_sensitive(true);
        Self {
            inner,
            credential: Arc::new(FloorCredential {
                authority: "api.example.com",
                fresh: AtomicBool::new(true),
            }),
            // A clone, as `OAuth2` keeps it: later clones of a clone skip a check.
            header: header.clone(),
            retry,
        }
    }
}

/// What a retry would send again.
pub struct Replay {
    pub uri: Uri,
    pub method: Method,
    pub version: Version,
}

impl<S, B> Service<Request<B>> for Floor<S>
where
    S: Service<Request<B>, Response = Response<http_body_util::Empty<bytes::Bytes>>>,
{
    type Response = Response<http_body_util::Empty<bytes::Bytes>>;
    type Error = S::Error;
    type Future = FloorFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let ours = req.uri().scheme_str() == Some("https")
            && req.uri().authority().map(|a| a.as_str()) == Some(self.credential.authority)
            && self.credential.fresh.load(Ordering::Relaxed);
        if !ours {
            return FloorFuture {
                fut: self.inner.call(req),
                watch: None,
            };
        }
        let replay = self.retry.then(|| Replay {
            uri: req.uri().clone(),
            method: req.method().clone(),
            version: req.version(),
        });
        req.headers_mut().insert(AUTHORIZATION, self.header.clone());
        FloorFuture {
            fut: self.inner.call(req),
            watch: Some((Arc::clone(&self.credential), replay)),
        }
    }
}

/// The inner future, and the handle and copy a dead-token answer would need.
#[pin_project::pin_project]
pub struct FloorFuture<F> {
    #[pin]
    fut: F,
    watch: Option<(Arc<FloorCredential>, Option<Replay>)>,
}

impl<F, E> Future for FloorFuture<F>
where
    F: Future<Output = Result<Response<http_body_util::Empty<bytes::Bytes>>, E>>,
{
    type Output = Result<Response<http_body_util::Empty<bytes::Bytes>>, E>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = ready!(this.fut.poll(cx))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            if let Some((credential, _replay)) = this.watch.take() {
                credential.fresh.store(false, Ordering::Relaxed);
            }
        }
        Poll::Ready(Ok(response))
    }
}
