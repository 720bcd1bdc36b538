//! The two lock-based layers users write by hand, shared by the benchmark binaries that
//! compare against them.

use std::{
    convert::Infallible,
    future::Future,
    mem,
    pin::Pin,
    sync::{Arc, RwLock},
    task::{Context, Poll},
};

use http::{header::AUTHORIZATION, HeaderValue, Request, Response};
use tower::Service;

use super::{bearer_value, TOKEN};

/// The token as the hand-rolled layers keep it.
pub struct Token {
    pub access_token: String,
    /// Built once per token (used by the `std::sync::RwLock` variant).
    pub header: HeaderValue,
}

impl Token {
    /// The token every single-thread variant attaches: [`TOKEN`].
    pub fn new() -> Self {
        Self {
            access_token: TOKEN.to_owned(),
            header: bearer_value(),
        }
    }

    /// Token number `n`, as long as [`TOKEN`] and different for every `n < 10⁸`: what a
    /// writer installs to replace the current one.
    pub fn numbered(n: u64) -> Self {
        let access_token = format!("{}{:08}", &TOKEN[..TOKEN.len() - 8], n % 100_000_000);
        let mut header = HeaderValue::try_from(format!("Bearer {access_token}")).expect("valid header value");
        header.set_sensitive(true);
        Self { access_token, header }
    }
}

/// What users write today: an async lock read in a boxed future, the header formatted
/// per request.
#[derive(Clone)]
pub struct TokioLockAuth<S> {
    pub inner: S,
    pub token: Arc<tokio::sync::RwLock<Option<Token>>>,
}

impl<S> Service<Request<()>> for TokioLockAuth<S>
where
    S: Service<Request<()>, Response = Response<http_body_util::Empty<bytes::Bytes>>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<http_body_util::Empty<bytes::Bytes>>;
    type Error = Infallible;
    type Future = Pin<
        Box<dyn Future<Output = Result<Response<http_body_util::Empty<bytes::Bytes>>, Infallible>> + Send>,
    >;

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
pub struct StdLockAuth<S> {
    pub inner: S,
    pub token: Arc<RwLock<Arc<Token>>>,
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
