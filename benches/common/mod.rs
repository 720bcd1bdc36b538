//! Pieces shared by the benchmark binaries: the inner service, the request, the
//! `OAuth2` stack with a warm token, a one-shot driver, and the hand-rolled lock layers.

// Not every benchmark binary compares against the lock-based layers.
#[allow(dead_code)]
pub mod locks;

// A minimal layer with the same obligations as `OAuth2`, for the single-thread benches.
#[allow(dead_code)]
pub mod floor;

use std::{
    convert::Infallible,
    fmt,
    future::{ready, Ready},
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::{task::noop_waker_ref, FutureExt};
use http::{header::AUTHORIZATION, HeaderValue, Request, Response};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};
use tower_http::set_header::{SetRequestHeader, SetRequestHeaderLayer};
use tower_oauth2::{Credential, CredentialRegistry, OAuth2, OAuth2Layer, Provider, TokenTransport};

/// A 40-character access token, as every variant attaches it.
pub const TOKEN: &str = "k3Jd9Qm2Xv7Lp0Zt5Rw8Yb1Nc4Hf6Gs2Ae9Ui3Oq";

/// The URI every measured request goes to (an origin the credential serves).
pub const API_URI: &str = "https://api.example.com/v1/x";

/// A URI no credential serves: requests to it pass through.
pub const FOREIGN_URI: &str = "https://elsewhere.example.org/v1/x";

/// The cheapest inner service: ready at once, answers at once, drops the request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Answer;

impl<B> Service<Request<B>> for Answer {
    type Response = Response<http_body_util::Empty<bytes::Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Response<http_body_util::Empty<bytes::Bytes>>, Infallible>>;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        drop(req);
        ready(Ok(Response::new(http_body_util::Empty::<bytes::Bytes>::new())))
    }
}

/// Clones the service it wraps for every call, as idiomatic tower code does: a client
/// kept in shared state and cloned per request, `svc.clone().oneshot(req)`.
#[derive(Clone, Debug)]
pub struct ClonePerCall<S>(pub S);

impl<S, B> Service<Request<B>> for ClonePerCall<S>
where
    S: Service<Request<B>> + Clone,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tower::util::Oneshot<S, Request<B>>;

    #[inline]
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        Poll::Ready(Ok(()))
    }

    #[inline]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.0.clone().oneshot(req)
    }
}

/// Builds the request the same way for every variant.
///
/// The URI is parsed once and cloned: a URI made from static bytes clones without
/// touching a reference count, so the request costs next to nothing to build and the
/// measurement is of the layers, not of URI parsing (which, at ~1,400 instructions,
/// would otherwise be most of every call).
#[inline]
pub fn request(uri: &str) -> Request<()> {
    static API: std::sync::OnceLock<http::Uri> = std::sync::OnceLock::new();
    static FOREIGN: std::sync::OnceLock<http::Uri> = std::sync::OnceLock::new();
    let parsed = match uri {
        API_URI => API.get_or_init(|| http::Uri::from_static(API_URI)),
        FOREIGN_URI => FOREIGN.get_or_init(|| http::Uri::from_static(FOREIGN_URI)),
        other => return Request::get(other).body(()).expect("valid request"),
    };
    let mut request = Request::new(());
    *request.uri_mut() = parsed.clone();
    request
}

/// `"Bearer <TOKEN>"`, marked sensitive.
pub fn bearer_value() -> HeaderValue {
    let mut value = HeaderValue::try_from(format!("Bearer {TOKEN}")).expect("valid header value");
    value.set_sensitive(true);
    value
}

/// The floor: tower-http's fixed-value header setter.
pub fn static_header() -> SetRequestHeader<Answer, HeaderValue> {
    SetRequestHeaderLayer::overriding(AUTHORIZATION, bearer_value()).layer(Answer)
}

/// `poll_ready`, `call`, and one poll of the response future, which must be ready.
///
/// Never inlined, the same for every variant: one instance per service type is an
/// anchor for profilers (its inclusive cost per call is the cost of the variant).
#[inline(never)]
pub fn drive<S>(svc: &mut S, req: Request<()>) -> S::Response
where
    S: Service<Request<()>>,
    S::Error: fmt::Debug,
{
    let mut cx = Context::from_waker(noop_waker_ref());
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(err)) => panic!("inner service failed: {err:?}"),
        Poll::Pending => panic!("inner service not ready"),
    }
    svc.call(req)
        .now_or_never()
        .expect("response future pending: is the token cached?")
        .expect("service error")
}

/// A token endpoint that answers at once with [`TOKEN`].
fn token_endpoint() -> TokenTransport {
    TokenTransport::new(tower::service_fn(|_req: Request<Full<Bytes>>| async {
        let body = format!(r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":3600}}"#);
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
    }))
}

/// The layer with one client-credentials credential for `https://api.example.com`.
pub fn oauth2_layer() -> OAuth2Layer {
    let provider = Provider::standard("https://auth.example.com/token").api("https://api.example.com");
    let credentials = CredentialRegistry::builder()
        .credential(Credential::client_credentials(
            provider,
            "bench-client",
            "bench-secret",
        ))
        .transport(token_endpoint())
        .build()
        .expect("valid credentials");
    OAuth2Layer::new(credentials)
}

/// `OAuth2<Answer>` with its token fetched and its header copy built, so that the next
/// call takes the cached path. Checks on the way that the header is attached.
pub fn warm_oauth2(rt: &tokio::runtime::Runtime) -> OAuth2<Answer> {
    warm_oauth2_layer(rt, oauth2_layer())
}

/// [`warm_oauth2`] for a given layer (e.g. with retries turned off).
pub fn warm_oauth2_layer(rt: &tokio::runtime::Runtime, layer: OAuth2Layer) -> OAuth2<Answer> {
    let expected = bearer_value();
    warm_checked(rt, layer, move |req| {
        req.headers().get(AUTHORIZATION) == Some(&expected)
    })
}

/// `OAuth2<Answer>` over `layer`, its token fetched through a first call whose request
/// must pass `attached`, then called once so that its own copies exist.
pub fn warm_checked(
    rt: &tokio::runtime::Runtime,
    layer: OAuth2Layer,
    attached: impl Fn(&Request<()>) -> bool + Clone + Send + 'static,
) -> OAuth2<Answer> {
    rt.block_on(async {
        let check = tower::service_fn(move |req: Request<()>| {
            let ok = attached(&req);
            async move {
                assert!(ok, "the token was not attached as expected");
                Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
            }
        });
        layer
            .layer(check)
            .oneshot(request(API_URI))
            .await
            .expect("first call");
        let mut svc = layer.layer(Answer);
        ServiceExt::<Request<()>>::ready(&mut svc).await.expect("ready");
        svc.call(request(API_URI)).await.expect("warm-up call");
        assert_eq!(
            layer.credentials().stats()[0].token_requests,
            1,
            "one token request"
        );
        svc
    })
}

/// Where criterion writes its reports: `$CRITERION_HOME`, `$CARGO_TARGET_DIR/criterion`,
/// or `target/criterion` (benches run in the package's directory).
#[allow(dead_code)]
pub fn criterion_dir() -> std::path::PathBuf {
    use std::path::PathBuf;
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from("target"), PathBuf::from)
        .join("criterion")
}

/// Writes `text` to `<criterion dir>/<name>` for `scripts/bench_report.py`, replacing
/// what was there, or after it when `append`.
#[allow(dead_code)]
pub fn write_note(name: &str, text: &str, append: bool) {
    use std::io::Write;
    let dir = criterion_dir();
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(dir.join(name))?
            .write_all(text.as_bytes())
    });
    if let Err(err) = written {
        eprintln!("could not write {}: {err}", dir.join(name).display());
    }
}

/// A current-thread runtime, built once per binary.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}
