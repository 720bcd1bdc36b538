//! The layer's behaviour on paused time, against in-process stand-ins.

mod support;

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http::{Request, Response};
use http_body_util::{Full, StreamBody};
use tokio::time::{advance, Instant};
use tower::{Layer, Service, ServiceExt};
use tower_oauth2::{body::ReplayBody, Error, OAuth2Layer, RefreshPolicy};

use support::*;

/// Lets spawned tasks (token requests, timers) run.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

async fn send_concurrently(
    client: &tower_oauth2::OAuth2<Api>,
    n: usize,
    prefix: &str,
) -> Vec<Result<Response<tower_oauth2::ResponseBody<Full<Bytes>>>, Error>> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let client = client.clone();
            let request = get(&format!("{prefix}-{i}"));
            tokio::spawn(async move { client.oneshot(request).await })
        })
        .collect();
    join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect()
}

#[tokio::test(start_paused = true)]
async fn in_the_refresh_window_requests_do_not_wait_for_a_hanging_endpoint() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(120));
    let api = Api::new();
    let client = OAuth2Layer::new(credentials(&endpoint)).layer(api.clone());
    client.clone().oneshot(get("first")).await.unwrap();

    // Refresh point: 120 s − 60 s margin.
    endpoint.set_mode(Mode::Hang);
    advance(Duration::from_secs(70)).await;
    settle().await;
    let started = Instant::now();
    let results = send_concurrently(&client, 200, "window").await;

    assert_eq!(Instant::now(), started, "no request waited");
    assert!(results
        .iter()
        .all(|r| r.as_ref().is_ok_and(|r| r.status() == 200)));
    assert_eq!(endpoint.requests(), 2, "exactly one early refresh");
    assert!(api
        .seen()
        .iter()
        .all(|s| s.authorization.as_deref() == Some("Bearer tok-1")));
}

#[tokio::test(start_paused = true)]
async fn a_401_for_an_already_replaced_token_is_retried_without_a_refresh() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(120));
    let (mock, mut handle) = tower_test::mock::pair::<Request<Full<Bytes>>, Response<Full<Bytes>>>();
    let mut client = OAuth2Layer::new(credentials(&endpoint)).layer(mock);

    // Request A carries tok-1 and is still in flight...
    client.ready().await.unwrap();
    let a = tokio::spawn(client.call(get("a")));
    let (req, respond_a) = handle.next_request().await.unwrap();
    assert_eq!(req.headers()["authorization"], "Bearer tok-1");

    // ...when tok-1 expires and request B brings tok-2.
    advance(Duration::from_secs(121)).await;
    settle().await;
    client.ready().await.unwrap();
    let b = tokio::spawn(client.call(get("b")));
    let (req, respond_b) = handle.next_request().await.unwrap();
    assert_eq!(req.headers()["authorization"], "Bearer tok-2");
    respond_b.send_response(Response::new(Full::default()));
    assert_eq!(b.await.unwrap().unwrap().status(), 200);
    assert_eq!(endpoint.requests(), 2);

    // A's 401 names tok-1, which is no longer current: A is retried with tok-2 at once.
    respond_a.send_response(Response::builder().status(401).body(Full::default()).unwrap());
    let (req, respond_a) = handle.next_request().await.unwrap();
    assert_eq!(req.headers()["authorization"], "Bearer tok-2");
    assert_eq!(req.headers()["x-request-id"], "a");
    respond_a.send_response(Response::new(Full::default()));
    assert_eq!(a.await.unwrap().unwrap().status(), 200);
    assert_eq!(endpoint.requests(), 2, "no refresh for a superseded token");
}

type Chunks = futures_util::stream::Iter<std::vec::IntoIter<Result<http_body::Frame<Bytes>, std::io::Error>>>;

fn streaming(total: usize) -> ReplayBody<StreamBody<Chunks>> {
    let frames: Vec<_> = (0..total / 1024)
        .map(|_| Ok(http_body::Frame::data(Bytes::from(vec![b'x'; 1024]))))
        .collect();
    ReplayBody::new(StreamBody::new(futures_util::stream::iter(frames)))
}

#[tokio::test(start_paused = true)]
async fn a_streaming_body_is_replayed_under_the_limit_and_sent_once_over_it() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let api = Api::new();
    let client = OAuth2Layer::new(credentials(&endpoint)).layer(api.clone());
    client
        .clone()
        .oneshot(Request::get(format!("{API}/warm")).body(streaming(0)).unwrap())
        .await
        .unwrap();

    api.revoke_up_to(1);
    let small = Request::post(format!("{API}/small"))
        .header("x-request-id", "small")
        .body(streaming(8 * 1024))
        .unwrap();
    assert_eq!(client.clone().oneshot(small).await.unwrap().status(), 200);
    assert_eq!(api.sends_of("small"), 2);
    let sends: Vec<_> = api
        .seen()
        .into_iter()
        .filter(|s| s.id.as_deref() == Some("small"))
        .collect();
    assert_eq!(sends[0].body, sends[1].body);
    assert_eq!(sends[1].body.len(), 8 * 1024);

    api.revoke_up_to(2);
    let large = Request::post(format!("{API}/large"))
        .header("x-request-id", "large")
        .body(streaming(100 * 1024))
        .unwrap();
    let response = client.clone().oneshot(large).await.unwrap();
    assert_eq!(response.status(), 401, "a body over the limit is not retried");
    assert_eq!(api.sends_of("large"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_caller_does_not_cancel_the_refresh() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    endpoint.set_delay(Duration::from_secs(1));
    let api = Api::new();
    let client = OAuth2Layer::new(credentials(&endpoint)).layer(api.clone());

    let caller = tokio::spawn(client.clone().oneshot(get("impatient")));
    settle().await;
    assert_eq!(endpoint.requests(), 1);
    caller.abort();
    assert!(caller.await.unwrap_err().is_cancelled());

    advance(Duration::from_secs(2)).await;
    settle().await;
    let response = client.clone().oneshot(get("next")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        endpoint.requests(),
        1,
        "the next caller found the token fetched for the dropped one"
    );
    assert_eq!(api.sends_of("impatient"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failed_refresh_never_replaces_a_valid_token() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(120));
    let api = Api::new();
    let client = OAuth2Layer::new(credentials(&endpoint)).layer(api.clone());
    client.clone().oneshot(get("first")).await.unwrap();

    endpoint.set_mode(Mode::ServerError);
    advance(Duration::from_secs(70)).await;
    settle().await;
    for i in 0..5 {
        let response = client.clone().oneshot(get(&format!("w{i}"))).await.unwrap();
        assert_eq!(response.status(), 200);
        settle().await;
    }
    assert_eq!(endpoint.requests(), 2, "one early refresh, which failed");
    assert!(api
        .seen()
        .iter()
        .all(|s| s.authorization.as_deref() == Some("Bearer tok-1")));

    // After the backoff, the window triggers another attempt.
    advance(Duration::from_secs(1)).await;
    settle().await;
    client.clone().oneshot(get("again")).await.unwrap();
    settle().await;
    assert_eq!(endpoint.requests(), 3);

    // Expired with the endpoint still failing: a typed error, no hang.
    advance(Duration::from_secs(60)).await;
    settle().await;
    match client.clone().oneshot(get("expired")).await {
        Err(Error::Malformed(err)) => {
            assert_eq!(err.status(), 500);
            assert_eq!(err.content_type(), Some("text/html"));
        }
        other => panic!("expected a malformed-answer error, got {other:?}"),
    }
    assert_eq!(api.sends_of("expired"), 0);
}

#[tokio::test(start_paused = true)]
async fn an_expired_token_and_a_hanging_endpoint_give_a_timeout_error_in_time() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    endpoint.set_mode(Mode::Hang);
    let api = Api::new();
    let policy = RefreshPolicy::default()
        .random(no_jitter)
        .timeout(Duration::from_secs(3));
    let client = OAuth2Layer::new(credentials_with(&endpoint, policy)).layer(api.clone());

    let started = Instant::now();
    match client.clone().oneshot(get("x")).await {
        Err(Error::TimedOut(err)) => assert_eq!(err.after(), Duration::from_secs(3)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_dead_endpoint_under_load_is_backed_off() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    endpoint.set_mode(Mode::ServerError);
    let api = Api::new();
    let client = OAuth2Layer::new(credentials_with(&endpoint, RefreshPolicy::default())).layer(api.clone());

    // 1 s of load: 10 requests every 10 ms.
    let mut failures = 0;
    for round in 0..100 {
        let results = send_concurrently(&client, 10, &format!("r{round}")).await;
        failures += results.iter().filter(|r| r.is_err()).count();
        advance(Duration::from_millis(10)).await;
    }
    assert_eq!(failures, 1000);
    // Backoff after n failures ≥ min(30 s, 200 ms × 2ⁿ⁻¹) / 2: attempts at 0 and no
    // sooner than 100, 300 and 700 ms, so at most 4 in the first second.
    let requests = endpoint.requests();
    assert!((2..=4).contains(&requests), "{requests} token requests in 1 s");
    assert_eq!(api.seen().len(), 0);
}

#[tokio::test(start_paused = true)]
async fn foreign_origins_and_plain_http_get_no_token() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let api = Api::new();
    let client = OAuth2Layer::new(credentials(&endpoint)).layer(api.clone());

    for uri in [
        "https://evil.example.net/steal",
        "http://api.example.com/v1/things",
        "https://api.example.com:8443/v1/things",
        "https://api.example.com.evil.test/",
    ] {
        let request = Request::get(uri).body(Full::<Bytes>::default()).unwrap();
        let response = client.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 401, "{uri}");
    }
    assert!(api.seen().iter().all(|s| s.authorization.is_none()));
    assert_eq!(endpoint.requests(), 0, "no token was even fetched");
}

#[tokio::test(start_paused = true)]
async fn headers_carrying_tokens_are_sensitive() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let (mock, mut handle) = tower_test::mock::pair::<Request<Full<Bytes>>, Response<Full<Bytes>>>();
    let mut client = OAuth2Layer::new(credentials(&endpoint)).layer(mock);
    for id in ["cold", "cached"] {
        client.ready().await.unwrap();
        let call = tokio::spawn(client.call(get(id)));
        let (req, respond) = handle.next_request().await.unwrap();
        assert!(req.headers()["authorization"].is_sensitive(), "{id}");
        respond.send_response(Response::new(Full::default()));
        call.await.unwrap().unwrap();
    }
}

#[test]
fn outside_a_tokio_runtime_the_call_fails_with_a_typed_error() {
    use futures_util::FutureExt;
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let mut client = OAuth2Layer::new(credentials(&endpoint)).layer(Api::new());
    let result = client
        .call(get("no-runtime"))
        .now_or_never()
        .expect("answers at once");
    match result {
        Err(Error::Config(e)) => assert!(e.message().contains("Tokio runtime"), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_provider_can_declare_403_with_invalid_token_a_dead_token() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let provider = provider().dead_token_when(|status, headers| {
        status == 403
            && headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("invalid_token"))
    });
    let credentials = tower_oauth2::CredentialRegistry::builder()
        .credential(tower_oauth2::Credential::client_credentials(
            provider,
            "client-id",
            CLIENT_SECRET,
        ))
        .transport(endpoint.transport())
        .build()
        .unwrap();
    let (mock, mut handle) = tower_test::mock::pair::<Request<Full<Bytes>>, Response<Full<Bytes>>>();
    let mut client = OAuth2Layer::new(credentials).layer(mock);

    client.ready().await.unwrap();
    let call = tokio::spawn(client.call(get("forbidden")));
    let (req, respond) = handle.next_request().await.unwrap();
    assert_eq!(req.headers()["authorization"], "Bearer tok-1");
    respond.send_response(
        Response::builder()
            .status(403)
            .header("www-authenticate", r#"Bearer error="invalid_token""#)
            .body(Full::default())
            .unwrap(),
    );
    let (req, respond) = handle.next_request().await.unwrap();
    assert_eq!(req.headers()["authorization"], "Bearer tok-2");
    respond.send_response(Response::new(Full::default()));
    assert_eq!(call.await.unwrap().unwrap().status(), 200);

    // A plain 403 (a permission problem) is not about the token.
    client.ready().await.unwrap();
    let call = tokio::spawn(client.call(get("plain-403")));
    let (_, respond) = handle.next_request().await.unwrap();
    respond.send_response(Response::builder().status(403).body(Full::default()).unwrap());
    assert_eq!(call.await.unwrap().unwrap().status(), 403);
    assert_eq!(endpoint.requests(), 2);
}

#[tokio::test(start_paused = true)]
async fn token_endpoint_redirects_are_not_followed() {
    let transport =
        tower_oauth2::TokenTransport::new(tower::service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, std::convert::Infallible>(
                Response::builder()
                    .status(302)
                    .header("location", "https://evil.example.net/token")
                    .body(Full::<Bytes>::default())
                    .unwrap(),
            )
        }));
    let credentials = tower_oauth2::CredentialRegistry::builder()
        .credential(tower_oauth2::Credential::client_credentials(
            provider(),
            "client-id",
            CLIENT_SECRET,
        ))
        .transport(transport)
        .build()
        .unwrap();
    let client = OAuth2Layer::new(credentials).layer(Api::new());
    match client.oneshot(get("x")).await {
        Err(Error::Malformed(e)) => {
            assert_eq!(e.status(), 302);
            assert_eq!(e.reason(), "redirects are not followed on token requests");
        }
        other => panic!("{other:?}"),
    }
}

/// An API whose clones are counted.
#[derive(Debug)]
struct Counted {
    api: Api,
    clones: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Clone for Counted {
    fn clone(&self) -> Self {
        self.clones.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self {
            api: self.api.clone(),
            clones: self.clones.clone(),
        }
    }
}

impl Service<Request<Full<Bytes>>> for Counted {
    type Response = Response<Full<Bytes>>;
    type Error = std::convert::Infallible;
    type Future = <Api as Service<Request<Full<Bytes>>>>::Future;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        Service::<Request<Full<Bytes>>>::poll_ready(&mut self.api, cx)
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        self.api.call(req)
    }
}

#[tokio::test(start_paused = true)]
async fn the_cached_path_never_clones_the_inner_service() {
    use std::sync::atomic::Ordering;
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let api = Api::new();
    let clones = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut client = OAuth2Layer::new(credentials(&endpoint)).layer(Counted {
        api: api.clone(),
        clones: clones.clone(),
    });
    client.ready().await.unwrap().call(get("cold")).await.unwrap();
    let before = clones.load(Ordering::SeqCst);
    for i in 0..100 {
        let response = client
            .ready()
            .await
            .unwrap()
            .call(get(&format!("warm-{i}")))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        clones.load(Ordering::SeqCst),
        before,
        "no clone per request, nor when the clone builds copies of its own"
    );

    // A retry takes exactly one clone, of the spare kept for retries.
    api.revoke_up_to(1);
    let response = client.ready().await.unwrap().call(get("retried")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(api.sends_of("retried"), 2);
    assert_eq!(clones.load(Ordering::SeqCst), before + 1);
}

#[tokio::test(start_paused = true)]
async fn an_oversized_token_answer_is_refused_unread() {
    let transport =
        tower_oauth2::TokenTransport::new(tower::service_fn(|_req: Request<Full<Bytes>>| async {
            let huge = format!(r#"{{"access_token":"{}"}}"#, "a".repeat(100 * 1024));
            Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(huge))))
        }));
    let credentials = tower_oauth2::CredentialRegistry::builder()
        .credential(tower_oauth2::Credential::client_credentials(
            provider(),
            "client-id",
            CLIENT_SECRET,
        ))
        .transport(transport)
        .build()
        .unwrap();
    let client = OAuth2Layer::new(credentials).layer(Api::new());
    match client.oneshot(get("x")).await {
        Err(Error::Malformed(e)) => assert_eq!(e.reason(), "the body is larger than 65536 bytes"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn cache_hits_are_counted_per_clone_and_published_in_batches() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let api = Api::new();
    let credentials = credentials(&endpoint);
    let mut client = OAuth2Layer::new(credentials.clone()).layer(api.clone());
    for i in 0..3000 {
        let ready = ServiceExt::<Request<Full<Bytes>>>::ready(&mut client)
            .await
            .unwrap();
        let response = ready.call(get(&format!("r{i}"))).await;
        assert_eq!(response.unwrap().status(), 200);
    }
    // The first request waited for the token. The next 16 were served from the shared
    // token, counted per thread (fewer than a batch of 64: not published yet); then the
    // clone built its own copy of the header, and the other 2,982 were hits of its own,
    // of which two batches of 1,024 are published so far.
    assert_eq!(credentials.stats()[0].cache_hits, 2048);
    drop(client);
    assert_eq!(credentials.stats()[0].cache_hits, 2982);
    assert_eq!(endpoint.requests(), 1);
}

/// A clone per request (`svc.clone().oneshot(req)`) never keeps copies of its own: its
/// hits are counted per thread and published 64 at a time.
#[tokio::test(start_paused = true)]
async fn hits_of_a_clone_per_request_are_counted_per_thread_in_batches() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let api = Api::new();
    let credentials = credentials(&endpoint);
    let client = OAuth2Layer::new(credentials.clone()).layer(api.clone());
    client.clone().oneshot(get("cold")).await.unwrap();
    for i in 0..1000 {
        let response = client.clone().oneshot(get(&format!("c{i}"))).await.unwrap();
        assert_eq!(response.status(), 200);
    }
    // 1,000 hits: 15 batches of 64 published, 40 still counted by this thread.
    assert_eq!(credentials.stats()[0].cache_hits, 960);
    assert_eq!(endpoint.requests(), 1);
    assert_eq!(api.seen().len(), 1001);
}
