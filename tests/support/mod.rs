//! In-process stand-ins for a token endpoint and an API, for tests on paused time.
#![allow(dead_code, unreachable_pub)]

pub mod jar;
pub mod logs;
pub mod mock;
pub mod store;
pub mod tempdir;

use std::{
    collections::HashSet,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower::Service;
use tower_oauth2::{Credential, CredentialRegistry, Provider, RefreshPolicy, TokenTransport};

pub const API: &str = "https://api.example.com";
pub const CLIENT_SECRET: &str = "client-secret-never-printed";

/// How the token endpoint answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Ok,
    ServerError,
    Hang,
    /// The transport fails: the request never reached a server.
    Unreachable,
    /// `400 invalid_grant`: the code or refresh token is dead.
    InvalidGrant,
    /// The transport panics (a bug in a user's client, say).
    Panic,
}

#[derive(Default)]
struct EndpointState {
    requests: AtomicUsize,
    issued: AtomicUsize,
    mode: Mutex<Option<Mode>>,
    delay: Mutex<Duration>,
    lifetime: Mutex<Duration>,
    bodies: Mutex<Vec<String>>,
    revocations: Mutex<Vec<String>>,
}

/// A token endpoint answering `tok-1`, `tok-2`, ... with a configurable lifetime.
#[derive(Clone, Default)]
pub struct TokenEndpoint {
    state: Arc<EndpointState>,
}

impl TokenEndpoint {
    pub fn new(lifetime: Duration) -> Self {
        let endpoint = Self::default();
        *endpoint.state.lifetime.lock().unwrap() = lifetime;
        *endpoint.state.mode.lock().unwrap() = Some(Mode::Ok);
        endpoint
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = Some(mode);
    }

    pub fn set_delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    pub fn request_bodies(&self) -> Vec<String> {
        self.state.bodies.lock().unwrap().clone()
    }

    /// Bodies of the requests to a path ending in `/revoke` (not counted as token requests).
    pub fn revocations(&self) -> Vec<String> {
        self.state.revocations.lock().unwrap().clone()
    }

    /// A registry of one client-credentials credential of `provider`, whose tokens
    /// come from this endpoint.
    pub fn registry_for(&self, provider: Provider) -> CredentialRegistry {
        CredentialRegistry::builder()
            .credential(Credential::client_credentials(
                provider,
                "client-id",
                "client-secret",
            ))
            .transport(self.transport())
            .build()
            .unwrap()
    }

    pub fn transport(&self) -> TokenTransport {
        let state = Arc::clone(&self.state);
        TokenTransport::new(tower::service_fn(move |req: Request<Full<Bytes>>| {
            let state = Arc::clone(&state);
            async move {
                let revoke = req.uri().path().ends_with("/revoke");
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let body = String::from_utf8_lossy(&body).into_owned();
                if revoke {
                    state.revocations.lock().unwrap().push(body);
                    return Ok(Response::new(Full::new(Bytes::new())));
                }
                state.requests.fetch_add(1, Ordering::SeqCst);
                state.bodies.lock().unwrap().push(body);
                let delay = *state.delay.lock().unwrap();
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                let mode = state.mode.lock().unwrap().unwrap_or(Mode::Ok);
                let response = match mode {
                    Mode::Hang => std::future::pending().await,
                    Mode::Panic => panic!("the token transport panicked (a test fault)"),
                    Mode::Unreachable => return Err(tower_oauth2::BoxError::from("connection refused")),
                    Mode::InvalidGrant => Response::builder()
                        .status(StatusCode::BAD_REQUEST)
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(br#"{"error":"invalid_grant"}"#)))
                        .unwrap(),
                    Mode::ServerError => Response::builder()
                        .status(StatusCode::INTERNAL_SERVER_ERROR)
                        .header("content-type", "text/html")
                        .body(Full::new(Bytes::from_static(b"<html>oops</html>")))
                        .unwrap(),
                    Mode::Ok => {
                        let n = state.issued.fetch_add(1, Ordering::SeqCst) + 1;
                        let lifetime = state.lifetime.lock().unwrap().as_secs();
                        let body = format!(
                            r#"{{"access_token":"tok-{n}","token_type":"Bearer","expires_in":{lifetime},"refresh_token":"refresh-{n}"}}"#
                        );
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap()
                    }
                };
                Ok::<_, tower_oauth2::BoxError>(response)
            }
        }))
    }
}

pub fn no_jitter() -> f64 {
    0.0
}

/// No jitter and a 5-second bound on each token request: the policy of the tests that
/// talk to an emulator over real HTTP.
pub fn steady_policy() -> RefreshPolicy {
    RefreshPolicy::default()
        .random(no_jitter)
        .timeout(Duration::from_secs(5))
}

/// Moves Tokio's clock forward without sleeping, and lets the timers that fire (a
/// token entering its refresh window) run before any socket is used again.
pub async fn advance(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tokio::time::resume();
}

/// Waits for something a background task does, for at most about 5 seconds.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..5_000 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!("gave up waiting for {what}");
}

pub fn provider() -> Provider {
    Provider::standard("https://auth.example.com/oauth/token")
        .name("example")
        .api(API)
}

pub fn credentials(endpoint: &TokenEndpoint) -> CredentialRegistry {
    credentials_with(endpoint, RefreshPolicy::default().random(no_jitter))
}

pub fn credentials_with(endpoint: &TokenEndpoint, policy: RefreshPolicy) -> CredentialRegistry {
    CredentialRegistry::builder()
        .credential(
            Credential::client_credentials(provider(), "client-id", CLIENT_SECRET).refresh_policy(policy),
        )
        .transport(endpoint.transport())
        .build()
        .unwrap()
}

/// One request as the API saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub id: Option<String>,
    pub authorization: Option<String>,
    pub uri: String,
    pub body: Bytes,
    pub status: u16,
}

#[derive(Default)]
struct ApiState {
    revoked: Mutex<HashSet<String>>,
    revoke_all_below: AtomicUsize,
    reject_everything: std::sync::atomic::AtomicBool,
    seen: Mutex<Vec<Seen>>,
    latency: Mutex<Duration>,
}

/// An API accepting `Bearer tok-N` unless revoked; records every request it sees.
#[derive(Clone, Default)]
pub struct Api {
    state: Arc<ApiState>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Api")
    }
}

impl Api {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every token issued so far (numbers up to `n`) is now refused.
    pub fn revoke_up_to(&self, n: usize) {
        self.state.revoke_all_below.store(n, Ordering::SeqCst);
    }

    /// How long the API takes to answer.
    pub fn set_latency(&self, latency: Duration) {
        *self.state.latency.lock().unwrap() = latency;
    }

    pub fn reject_everything(&self) {
        self.state.reject_everything.store(true, Ordering::SeqCst);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn sends_of(&self, id: &str) -> usize {
        self.seen().iter().filter(|s| s.id.as_deref() == Some(id)).count()
    }

    fn accepts(&self, authorization: Option<&str>) -> bool {
        if self.state.reject_everything.load(Ordering::SeqCst) {
            return false;
        }
        let Some(n) = authorization
            .and_then(|a| a.strip_prefix("Bearer tok-"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            return false;
        };
        n > self.state.revoke_all_below.load(Ordering::SeqCst)
    }
}

impl<B> Service<Request<B>> for Api
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Debug,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let api = self.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            let authorization = parts
                .headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned());
            let status = if api.accepts(authorization.as_deref()) {
                200
            } else {
                401
            };
            let latency = *api.state.latency.lock().unwrap();
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            api.state.seen.lock().unwrap().push(Seen {
                id: parts
                    .headers
                    .get("x-request-id")
                    .map(|v| v.to_str().unwrap().to_owned()),
                authorization,
                uri: parts.uri.to_string(),
                body,
                status,
            });
            Ok(Response::builder()
                .status(status)
                .body(Full::new(Bytes::from_static(b"{}")))
                .unwrap())
        })
    }
}

pub fn get(id: &str) -> Request<Full<Bytes>> {
    Request::get(format!("{API}/v1/things"))
        .header("x-request-id", id)
        .body(Full::default())
        .unwrap()
}
