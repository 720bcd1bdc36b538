//! Storms of 10,000 concurrent callers make exactly one token request: at cold start and
//! on a 401 storm. Counts only, no timing.
//!
//! The token endpoint is the mock server over HTTP; the API is in process (10,000
//! concurrent connections would run out of file descriptors).
#![cfg(feature = "hyper-transport")]

use std::{
    collections::HashSet,
    convert::Infallible,
    future::{ready, Future},
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, RwLock,
    },
    task::{Context, Poll},
    time::Duration,
};

use futures_util::future::join_all;
use http::{header::AUTHORIZATION, Request, Response, StatusCode};
use tokio::sync::watch;
use tower::{Layer, Service, ServiceExt};
use tower_oauth2::{Credential, Credentials, OAuth2, OAuth2Layer, Provider};
use tower_oauth2_mock::MockServer;

const CALLERS: usize = 10_000;

struct ApiState {
    revoked: RwLock<HashSet<String>>,
    last_accepted: Mutex<Option<String>>,
    refusals: AtomicUsize,
    /// Refusals are held back until this many have been made, so that every caller of
    /// a storm is sent with the revoked token whatever the scheduling.
    hold_refusals_until: AtomicUsize,
    all_refused: watch::Sender<bool>,
}

/// An API accepting `Bearer <t>` unless `t` was revoked.
#[derive(Clone)]
struct Api {
    state: Arc<ApiState>,
}

impl Api {
    fn new() -> Self {
        Self {
            state: Arc::new(ApiState {
                revoked: RwLock::default(),
                last_accepted: Mutex::default(),
                refusals: AtomicUsize::new(0),
                hold_refusals_until: AtomicUsize::new(0),
                all_refused: watch::Sender::new(true),
            }),
        }
    }

    /// Revokes the token last accepted, and answers no refusal before `n` were made.
    fn revoke_current_and_hold_refusals(&self, n: usize) {
        let current = self.state.last_accepted.lock().unwrap().take().unwrap();
        self.state.revoked.write().unwrap().insert(current);
        self.state.all_refused.send_replace(false);
        self.state.hold_refusals_until.store(n, Ordering::SeqCst);
    }

    fn refusals(&self) -> usize {
        self.state.refusals.load(Ordering::SeqCst)
    }
}

impl Service<Request<()>> for Api {
    type Response = Response<http_body_util::Empty<bytes::Bytes>>;
    type Error = Infallible;
    type Future = Pin<
        Box<dyn Future<Output = Result<Response<http_body_util::Empty<bytes::Bytes>>, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<()>) -> Self::Future {
        let token = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        let state = &self.state;
        let accepted = token
            .as_ref()
            .is_some_and(|t| !state.revoked.read().unwrap().contains(t));
        if accepted {
            *state.last_accepted.lock().unwrap() = token;
            return Box::pin(ready(Ok(Response::new(
                http_body_util::Empty::<bytes::Bytes>::new(),
            ))));
        }
        let refusals = state.refusals.fetch_add(1, Ordering::SeqCst) + 1;
        if refusals >= state.hold_refusals_until.load(Ordering::SeqCst) {
            state.all_refused.send_replace(true);
        }
        let mut all_refused = state.all_refused.subscribe();
        Box::pin(async move {
            let _ = all_refused.wait_for(|all| *all).await.map(drop);
            let mut response = Response::new(http_body_util::Empty::<bytes::Bytes>::new());
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            Ok(response)
        })
    }
}

async fn setup() -> (MockServer, Credentials, Api, OAuth2<Api>) {
    let server = MockServer::builder()
        .client("client", "secret")
        .start()
        .await
        .unwrap();
    server.set_token_latency(Duration::from_millis(5));
    let provider = Provider::standard(server.token_url()).api("https://api.example.com");
    let credentials = Credentials::new(Credential::client_credentials(provider, "client", "secret")).unwrap();
    let api = Api::new();
    let client = OAuth2Layer::new(credentials.clone()).layer(api.clone());
    (server, credentials, api, client)
}

fn get() -> Request<()> {
    Request::get("https://api.example.com/v1/things")
        .body(())
        .unwrap()
}

/// `CALLERS` concurrent callers, each with its own clone; how many got a 200.
async fn storm(client: &OAuth2<Api>) -> usize {
    let callers = (0..CALLERS).map(|_| {
        let caller = client.clone();
        tokio::spawn(async move { caller.oneshot(get()).await.map(|r| r.status()) })
    });
    let statuses = tokio::time::timeout(Duration::from_secs(60), join_all(callers))
        .await
        .expect("the storm ended");
    statuses
        .into_iter()
        .filter(|s| matches!(s, Ok(Ok(StatusCode::OK))))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_with_10_000_concurrent_callers_makes_one_token_request() {
    let (server, credentials, api, client) = setup().await;

    let successes = storm(&client).await;

    assert_eq!(successes, CALLERS);
    assert_eq!(server.counters().token_requests, 1);
    assert_eq!(server.counters().max_concurrent_token_requests, 1);
    assert_eq!(credentials.stats()[0].token_requests, 1);
    assert_eq!(api.refusals(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_storm_of_10_000_concurrent_callers_makes_one_token_request() {
    let (server, credentials, api, client) = setup().await;
    assert_eq!(
        client.clone().oneshot(get()).await.unwrap().status(),
        StatusCode::OK
    );
    api.revoke_current_and_hold_refusals(CALLERS);
    server.reset_counters();

    let successes = storm(&client).await;

    assert_eq!(successes, CALLERS);
    assert_eq!(
        api.refusals(),
        CALLERS,
        "every caller was sent with the revoked token"
    );
    assert_eq!(server.counters().token_requests, 1, "one refresh");
    let stats = &credentials.stats()[0];
    assert_eq!(stats.dead_token_refreshes, 1);
    assert_eq!(stats.retries, CALLERS as u64);
    assert_eq!(stats.token_requests, 2);
}
