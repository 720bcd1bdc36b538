//! Dead tokens that only the body declares, through both adapters: Grindery's JSON-RPC
//! API answers a token that no longer verifies with HTTP `400` and the JSON-RPC error
//! `-32602` "Invalid access token", the same status as every other JSON-RPC error. The
//! mock emulates it with `native_grindery_errors(true)`; the `grindery()` preset must
//! refresh once and retry for that error, and hand every other answer back byte for
//! byte.

#![cfg(all(feature = "hyper-transport", feature = "reqwest"))]

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::future::join_all;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
};
use reqwest_middleware::ClientWithMiddleware;
use serde_json::{json, Value};
use tower::{Layer, ServiceExt};
use tower_oauth2::{
    error::RefusedGrant, reqwest::OAuth2Middleware, Credential, CredentialRegistry, CredentialStats, Error,
    OAuth2, OAuth2Layer, Provider, Subject, UserCredentialTemplate,
};
use tower_oauth2_mock::MockServer;

type Api = Client<HttpConnector, Full<Bytes>>;

/// One of the two adapters, calling a URL with a JSON body.
#[derive(Clone)]
enum Adapter {
    Tower(Box<OAuth2<Api>>),
    Reqwest(ClientWithMiddleware),
}

impl Adapter {
    fn both(credentials: &CredentialRegistry) -> [Adapter; 2] {
        let hyper = Client::builder(TokioExecutor::new()).build_http();
        let reqwest = reqwest::Client::builder().no_proxy().build().unwrap();
        [
            Adapter::Tower(Box::new(OAuth2Layer::new(credentials.clone()).layer(hyper))),
            Adapter::Reqwest(
                reqwest_middleware::ClientBuilder::new(reqwest)
                    .with(OAuth2Middleware::new(credentials.clone()))
                    .build(),
            ),
        ]
    }

    fn name(&self) -> &'static str {
        match self {
            Adapter::Tower(_) => "tower",
            Adapter::Reqwest(_) => "reqwest",
        }
    }

    /// POSTs `body` to `url`: the status and the whole body, or the crate's error.
    async fn post(&self, url: &str, body: &str) -> Result<(StatusCode, Bytes), Error> {
        self.post_as(None, url, body).await
    }

    /// POSTs `body` to `url`, for the user `subject` when there is one.
    async fn post_as(
        &self,
        subject: Option<&str>,
        url: &str,
        body: &str,
    ) -> Result<(StatusCode, Bytes), Error> {
        match self {
            Adapter::Tower(client) => {
                let mut request = Request::post(url)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
                    .unwrap();
                if let Some(subject) = subject {
                    request.extensions_mut().insert(Subject::new(subject));
                }
                let response = (**client).clone().oneshot(request).await?;
                let status = response.status();
                Ok((status, response.into_body().collect().await.unwrap().to_bytes()))
            }
            Adapter::Reqwest(client) => {
                let mut builder = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body.to_owned());
                if let Some(subject) = subject {
                    builder = builder.with_extension(Subject::new(subject));
                }
                let sent = builder.send().await;
                let response = match sent {
                    Ok(response) => response,
                    Err(reqwest_middleware::Error::Middleware(err)) => {
                        return Err(err.downcast::<Error>().expect("the crate's error"))
                    }
                    Err(err) => panic!("reqwest failed: {err}"),
                };
                let status = response.status();
                Ok((status, response.bytes().await.unwrap()))
            }
        }
    }
}

async fn grindery() -> MockServer {
    MockServer::grindery()
        .native_grindery_errors(true)
        .start()
        .await
        .unwrap()
}

/// The application's Grindery credential: a refresh token issued by the emulator.
fn credentials(server: &MockServer) -> CredentialRegistry {
    let refresh_token = server.issue_refresh_token("", "");
    CredentialRegistry::new(Credential::refresh_token(
        server.provider(),
        "app",
        None,
        refresh_token,
    ))
    .unwrap()
}

fn rpc(method: &str) -> String {
    json!({"jsonrpc": "2.0", "method": method, "params": {}, "id": 7}).to_string()
}

fn stats(credentials: &CredentialRegistry) -> CredentialStats {
    credentials.stats().into_iter().next().unwrap()
}

#[tokio::test]
async fn a_token_the_api_calls_invalid_in_the_body_is_refreshed_once_and_the_call_retried() {
    for which in 0..2 {
        let server = grindery().await;
        let credentials = credentials(&server);
        let adapter = Adapter::both(&credentials)[which].clone();
        let url = format!("{}/", server.base_url());
        let (status, body) = adapter.post(&url, &rpc("listWorkflows")).await.unwrap();
        assert_eq!(status, 200, "{}", adapter.name());
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["result"]["method"], "listWorkflows");
        assert_eq!(server.counters().refresh_token_grants, 1);

        // The token dies at the server: the next call is answered `400 -32602`.
        server.revoke_all_access_tokens();
        let (status, _) = adapter.post(&url, &rpc("or_listWorkflows")).await.unwrap();
        assert_eq!(status, 200, "{}", adapter.name());
        let counters = server.counters();
        assert_eq!(counters.refresh_token_grants, 2, "{}", adapter.name());
        assert_eq!(counters.resource_calls_by_status.get(&400), Some(&1));
        assert_eq!(counters.resource_calls_by_status.get(&200), Some(&2));
        let stats = stats(&credentials);
        assert_eq!(
            (stats.dead_token_refreshes, stats.retries),
            (1, 1),
            "{}",
            adapter.name()
        );
        // The retry carried the same JSON-RPC request, byte for byte.
        let bodies = &counters.bodies;
        assert_eq!(bodies[bodies.len() - 1], bodies[bodies.len() - 2]);
    }
}

#[tokio::test]
async fn ten_concurrent_callers_with_a_dead_token_cause_one_refresh() {
    for which in 0..2 {
        let server = grindery().await;
        let credentials = credentials(&server);
        let adapter = Adapter::both(&credentials)[which].clone();
        let url = format!("{}/", server.base_url());
        assert_eq!(adapter.post(&url, &rpc("listWorkflows")).await.unwrap().0, 200);
        server.revoke_all_access_tokens();

        let calls = (0..10).map(|_| {
            let (adapter, url) = (adapter.clone(), url.clone());
            tokio::spawn(async move { adapter.post(&url, &rpc("listWorkspaces")).await.unwrap().0 })
        });
        let statuses: Vec<_> = join_all(calls).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(statuses, vec![StatusCode::OK; 10], "{}", adapter.name());
        let counters = server.counters();
        assert_eq!(
            counters.refresh_token_grants,
            2,
            "{}: one refresh for ten",
            adapter.name()
        );
        assert_eq!(counters.resource_calls_authorized, 11);
        assert_eq!(stats(&credentials).dead_token_refreshes, 1);
    }
}

#[tokio::test]
async fn other_json_rpc_errors_are_answers_returned_unchanged() {
    for which in 0..2 {
        let server = grindery().await;
        let credentials = credentials(&server);
        let adapter = Adapter::both(&credentials)[which].clone();
        let url = format!("{}/", server.base_url());
        let error = |code: i64, message: &str| {
            json!({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": 7}).to_string()
        };

        // An unknown method: -32601.
        let (status, body) = adapter.post(&url, &rpc("noSuchMethod")).await.unwrap();
        assert_eq!(status, 400);
        assert_eq!(body, error(-32601, "Method not found"), "{}", adapter.name());

        // Invalid params of another kind share the code -32602: not a dead token.
        let array_params = json!({"jsonrpc": "2.0", "method": "listWorkflows", "params": [1], "id": 7});
        let (status, body) = adapter.post(&url, &array_params.to_string()).await.unwrap();
        assert_eq!(status, 400);
        assert_eq!(
            body,
            error(-32602, "params must be an object"),
            "{}",
            adapter.name()
        );

        // Not JSON-RPC at all.
        let (status, body) = adapter.post(&url, "{not json").await.unwrap();
        assert_eq!(status, 400);
        let parse_error =
            json!({"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null});
        assert_eq!(body, parse_error.to_string());

        let counters = server.counters();
        assert_eq!(counters.refresh_token_grants, 1, "{}: no refresh", adapter.name());
        assert_eq!(counters.resource_calls, 3, "{}: no retry", adapter.name());
        let stats = stats(&credentials);
        assert_eq!((stats.dead_token_refreshes, stats.retries), (0, 0));
    }
}

#[tokio::test]
async fn a_dead_refresh_token_answered_with_invalid_request_means_reauthorization() {
    for which in 0..2 {
        let server = grindery().await;
        let credentials = CredentialRegistry::new(Credential::refresh_token(
            server.provider(),
            "app",
            None,
            "a-refresh-token-grindery-never-issued",
        ))
        .unwrap();
        let adapter = Adapter::both(&credentials)[which].clone();
        let err = adapter
            .post(&format!("{}/", server.base_url()), &rpc("listWorkflows"))
            .await
            .unwrap_err();
        let Error::ReauthorizationRequired(reauthorize) = &err else {
            panic!(
                "{}: expected ReauthorizationRequired, got {err:?}",
                adapter.name()
            );
        };
        assert_eq!(reauthorize.refused(), Some(RefusedGrant::RefreshToken));
        let cause = reauthorize.cause().expect("the server's answer");
        assert_eq!(cause.error(), "invalid_request");
        assert_eq!(
            server.counters().resource_calls,
            0,
            "nothing is sent without a token"
        );
    }
}

#[tokio::test]
async fn a_refused_code_answered_with_invalid_request_means_reauthorization() {
    let server = grindery().await;
    let redirect = "https://app.example/grindery/callback";
    let credentials = CredentialRegistry::builder()
        .users(UserCredentialTemplate::new(server.provider(), "app", None).redirect_uri(redirect))
        .build()
        .unwrap();
    let pending = credentials
        .users("grindery")
        .unwrap()
        .authorization(redirect)
        .start()
        .unwrap();
    let callback = format!("{redirect}?code=not-a-code&state={}", pending.state());
    let code = pending.complete(&callback).unwrap();
    let err = credentials.login("grindery", "alice", code).await.unwrap_err();
    let Error::ReauthorizationRequired(reauthorize) = &err else {
        panic!("expected ReauthorizationRequired, got {err:?}");
    };
    assert_eq!(reauthorize.refused(), Some(RefusedGrant::AuthorizationCode));
    assert_eq!(server.counters().authorization_code_grants, 1);
}

#[tokio::test]
async fn a_users_token_dead_in_the_body_is_refreshed_and_the_call_retried_as_that_user() {
    for which in 0..2 {
        let server = grindery().await;
        let redirect = "https://app.example/grindery/callback";
        let credentials = CredentialRegistry::builder()
            .users(UserCredentialTemplate::new(server.provider(), "app", None).redirect_uri(redirect))
            .build()
            .unwrap();
        let pending = credentials
            .users("grindery")
            .unwrap()
            .authorization(redirect)
            .start()
            .unwrap();
        let code = server.issue_authorization_code("", redirect, "");
        let callback = format!("{redirect}?code={code}&state={}", pending.state());
        let code = pending.complete(&callback).unwrap();
        credentials.login("grindery", "alice", code).await.unwrap();

        let adapter = Adapter::both(&credentials)[which].clone();
        let url = format!("{}/", server.base_url());
        server.revoke_all_access_tokens();
        let (status, body) = adapter
            .post_as(Some("alice"), &url, &rpc("listWorkflows"))
            .await
            .unwrap();
        assert_eq!(status, 200, "{}", adapter.name());
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            body["result"]["subject"], "alice",
            "the retry acted for the same user"
        );
        let counters = server.counters();
        assert_eq!(counters.refresh_token_grants, 1, "{}", adapter.name());
        assert_eq!(counters.resource_calls_by_status.get(&400), Some(&1));
    }
}

#[tokio::test]
async fn the_rest_routes_still_answer_a_dead_token_with_401() {
    let server = grindery().await;
    let credentials = credentials(&server);
    let adapter = Adapter::both(&credentials)[0].clone();
    let Adapter::Tower(client) = adapter else {
        unreachable!()
    };
    let get = || {
        Request::get(server.api_url("/workflows"))
            .body(Full::default())
            .unwrap()
    };
    assert_eq!((*client).clone().oneshot(get()).await.unwrap().status(), 200);
    server.revoke_all_access_tokens();
    assert_eq!((*client).clone().oneshot(get()).await.unwrap().status(), 200);
    assert_eq!(server.counters().refresh_token_grants, 2);
    assert_eq!(stats(&credentials).retries, 1);
}

// ===== huge bodies =====

/// A `400` body of `frames` frames of `size` bytes, made as they are polled, counting
/// how many were.
struct Counted {
    left: usize,
    size: usize,
    first: &'static [u8],
    polled: Arc<AtomicUsize>,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let index = this.polled.fetch_add(1, Ordering::SeqCst);
        this.left -= 1;
        let mut chunk = vec![b'a' + (index % 26) as u8; this.size];
        if index == 0 {
            chunk[..this.first.len()].copy_from_slice(this.first);
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}

/// A token endpoint that hands out `t1`, `t2`, ... and counts its requests.
fn token_endpoint(issued: Arc<AtomicUsize>) -> tower_oauth2::TokenTransport {
    tower_oauth2::TokenTransport::new(tower::service_fn(move |_req: Request<Full<Bytes>>| {
        let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            let body = format!(r#"{{"access_token":"t{n}","token_type":"Bearer","expires_in":3600}}"#);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
        }
    }))
}

type HugeBody = http_body_util::Either<Counted, Full<Bytes>>;

/// An API that answers 400 with a 1 MiB body (256 frames of 4 KiB), starting with
/// `first`, to any token but `t2`, which gets `200 ok`.
fn huge_api(
    polled: Arc<AtomicUsize>,
    first: &'static [u8],
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<HugeBody>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<HugeBody>, Infallible>>,
> + Clone {
    tower::service_fn(move |req: Request<Full<Bytes>>| {
        let fresh = req.headers()["authorization"] == "Bearer t2";
        let body = if fresh {
            http_body_util::Either::Right(Full::new(Bytes::from_static(b"ok")))
        } else {
            http_body_util::Either::Left(Counted {
                left: 256,
                size: 4096,
                first,
                polled: Arc::clone(&polled),
            })
        };
        let mut response = Response::new(body);
        if !fresh {
            *response.status_mut() = StatusCode::BAD_REQUEST;
        }
        std::future::ready(Ok(response))
    })
}

fn huge_provider() -> Provider {
    Provider::standard("https://auth.example.com/token")
        .api("https://api.example.com")
        .dead_token_in_body([StatusCode::BAD_REQUEST], |answer| {
            answer.body().starts_with(br#"{"error":"token_expired""#)
        })
}

#[tokio::test]
async fn a_huge_answer_is_judged_on_its_prefix_and_delivered_whole() {
    let issued = Arc::new(AtomicUsize::new(0));
    let credentials = CredentialRegistry::builder()
        .credential(Credential::client_credentials(huge_provider(), "app", "secret"))
        .transport(token_endpoint(Arc::clone(&issued)))
        .build()
        .unwrap();
    let polled = Arc::new(AtomicUsize::new(0));
    let api =
        OAuth2Layer::new(credentials.clone()).layer(huge_api(Arc::clone(&polled), b"{\"error\":\"other\"}"));

    let request = Request::get("https://api.example.com/x")
        .body(Full::default())
        .unwrap();
    let response = api.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 400);
    // The judgement read one 4 KiB frame (the limit), no more.
    assert_eq!(polled.load(Ordering::SeqCst), 1);
    assert_eq!(response.body().size_hint().lower(), 4096);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(polled.load(Ordering::SeqCst), 256);
    assert_eq!(body.len(), 1024 * 1024);
    assert!(body.starts_with(b"{\"error\":\"other\"}"));
    for (i, chunk) in body.chunks(4096).enumerate().skip(1) {
        assert!(
            chunk.iter().all(|&b| b == b'a' + (i % 26) as u8),
            "chunk {i} intact"
        );
    }
    assert_eq!(issued.load(Ordering::SeqCst), 1, "no refresh");
}

#[tokio::test]
async fn a_huge_dead_token_answer_is_judged_on_its_prefix_and_the_call_retried() {
    let issued = Arc::new(AtomicUsize::new(0));
    let credentials = CredentialRegistry::builder()
        .credential(Credential::client_credentials(huge_provider(), "app", "secret"))
        .transport(token_endpoint(Arc::clone(&issued)))
        .build()
        .unwrap();
    let polled = Arc::new(AtomicUsize::new(0));
    let api = OAuth2Layer::new(credentials.clone())
        .layer(huge_api(Arc::clone(&polled), b"{\"error\":\"token_expired\"}"));

    let request = Request::get("https://api.example.com/x")
        .body(Full::default())
        .unwrap();
    let response = api.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "ok");
    assert_eq!(
        polled.load(Ordering::SeqCst),
        1,
        "one frame read, the rest dropped unread"
    );
    assert_eq!(issued.load(Ordering::SeqCst), 2, "one refresh");
    assert_eq!(stats(&credentials).retries, 1);
}

#[tokio::test]
async fn successes_are_never_read() {
    // A body judgement on 400 only: a 200 whose body never ends is handed over at once.
    let credentials = CredentialRegistry::builder()
        .credential(Credential::client_credentials(huge_provider(), "app", "secret"))
        .transport(token_endpoint(Arc::new(AtomicUsize::new(0))))
        .build()
        .unwrap();
    let endless = tower::service_fn(|_req: Request<Full<Bytes>>| async {
        let body = http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, Infallible>,
        >());
        Ok::<_, Infallible>(Response::new(body))
    });
    let api = OAuth2Layer::new(credentials).layer(endless);
    let request = Request::get("https://api.example.com/x")
        .body(Full::default())
        .unwrap();
    let response = tokio::time::timeout(std::time::Duration::from_secs(5), api.oneshot(request))
        .await
        .expect("the answer is handed over without reading its body")
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// The same huge answer over loopback, through reqwest: a hyper server answering
/// `400` with 1 MiB of JSON-RPC-looking text to every request.
#[tokio::test]
async fn a_huge_answer_through_reqwest_is_delivered_whole() {
    let server = grindery().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let huge: Bytes = {
        let mut text =
            br#"{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid access token"},"pad":""#.to_vec();
        text.resize(1024 * 1024 - 2, b'x');
        text.extend_from_slice(b"\"}");
        text.into()
    };
    let served = huge.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let body = served.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let body = body.clone();
                    async move {
                        let mut response = Response::new(Full::new(body));
                        *response.status_mut() = StatusCode::BAD_REQUEST;
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    let refresh_token = server.issue_refresh_token("", "");
    let provider = server.provider().api(format!("http://{addr}"));
    let credentials =
        CredentialRegistry::new(Credential::refresh_token(provider, "app", None, refresh_token)).unwrap();
    let [_, reqwest] = Adapter::both(&credentials);
    let (status, body) = reqwest
        .post(&format!("http://{addr}/"), &rpc("listWorkflows"))
        .await
        .unwrap();
    assert_eq!(status, 400);
    // Too long to be judged whole (a JSON document cut at 4 KiB does not parse): an
    // answer, delivered byte for byte, and no refresh.
    assert_eq!(body, huge);
    assert_eq!(server.counters().refresh_token_grants, 1);
    assert_eq!(stats(&credentials).dead_token_refreshes, 0);
}
