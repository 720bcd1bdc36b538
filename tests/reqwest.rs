//! The reqwest middleware over real HTTP, against the strict mock server on 127.0.0.1:
//! the same counts as the tower layer's tests, through reqwest and reqwest-middleware.
#![cfg(all(feature = "hyper-transport", feature = "reqwest"))]

mod support;

use support::{advance, eventually, steady_policy};

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http_body::Frame;
use http_body_util::StreamBody;
use reqwest_middleware::{ClientBuilder, ClientWithMiddleware};
use serde_json::Value;
use tower_oauth2::{
    reqwest::OAuth2Middleware, Credential, CredentialRegistry, Error, NoRetry, Provider, Subject,
    TokenPlacement, UserCredentialTemplate,
};
use tower_oauth2_mock::MockServer;

const REDIRECT: &str = "https://app.example.com/callback";

fn http() -> reqwest::ClientBuilder {
    // No proxy from the environment: every request goes straight to 127.0.0.1.
    reqwest::Client::builder().no_proxy()
}

fn with(http: reqwest::ClientBuilder, middleware: OAuth2Middleware) -> ClientWithMiddleware {
    ClientBuilder::new(http.build().unwrap()).with(middleware).build()
}

async fn standard_server() -> MockServer {
    MockServer::builder()
        .client("client", "secret")
        .start()
        .await
        .unwrap()
}

/// The standard server's client credentials, routed to the server's own origin.
fn client_credentials(provider: Provider) -> CredentialRegistry {
    CredentialRegistry::new(
        Credential::client_credentials(provider, "client", "secret").refresh_policy(steady_policy()),
    )
    .unwrap()
}

fn client(server: &MockServer) -> (ClientWithMiddleware, CredentialRegistry) {
    let credentials = client_credentials(server.provider());
    let client = with(http(), OAuth2Middleware::new(credentials.clone()));
    (client, credentials)
}

async fn get(
    client: &ClientWithMiddleware,
    url: &str,
    id: &str,
) -> reqwest_middleware::Result<reqwest::Response> {
    client.get(url).header("x-request-id", id).send().await
}

async fn status(client: &ClientWithMiddleware, server: &MockServer, id: &str) -> u16 {
    get(client, &server.api_url("/things"), id)
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn concurrently(
    client: &ClientWithMiddleware,
    server: &MockServer,
    n: usize,
    prefix: &str,
) -> Vec<u16> {
    let calls = (0..n).map(|i| {
        let client = client.clone();
        let url = server.api_url("/things");
        let id = format!("{prefix}-{i}");
        tokio::spawn(async move { get(&client, &url, &id).await.map(|r| r.status().as_u16()) })
    });
    join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect()
}

fn sends(server: &MockServer, id: &str) -> u64 {
    server
        .counters()
        .sends_by_request_id
        .get(id)
        .copied()
        .unwrap_or(0)
}

fn downcast(err: &reqwest_middleware::Error) -> &Error {
    match err {
        reqwest_middleware::Error::Middleware(err) => {
            err.downcast_ref::<Error>().expect("a tower_oauth2::Error")
        }
        other => panic!("expected the middleware's error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_1000_concurrent_requests_make_exactly_one_token_request() {
    let server = standard_server().await;
    server.set_token_latency(Duration::from_millis(20));
    let (client, credentials) = client(&server);

    let statuses = concurrently(&client, &server, 1000, "cold").await;

    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1000);
    let counters = server.counters();
    assert_eq!(counters.token_requests, 1);
    assert_eq!(counters.max_concurrent_token_requests, 1);
    assert_eq!(counters.resource_calls_by_status.get(&200), Some(&1000));
    assert_eq!(credentials.stats()[0].token_requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_storm_causes_one_refresh_and_two_sends_each() {
    let server = standard_server().await;
    let (client, credentials) = client(&server);
    // Open 1,000 pooled connections, so that the storm does not wait for handshakes.
    let warm = concurrently(&client, &server, 1000, "warm").await;
    assert!(warm.iter().all(|s| *s == 200));

    server.revoke_all_access_tokens();
    // Every request reaches the resource with the revoked token before any answer returns.
    server.set_resource_latency(Duration::from_millis(1000));
    server.reset_counters();
    let statuses = concurrently(&client, &server, 1000, "storm").await;

    assert!(statuses.iter().all(|s| *s == 200));
    let counters = server.counters();
    assert_eq!(counters.token_requests, 1, "one refresh");
    assert_eq!(counters.resource_calls_by_status.get(&401), Some(&1000));
    assert_eq!(counters.resource_calls_by_status.get(&200), Some(&1000));
    for i in 0..1000 {
        let id = format!("storm-{i}");
        assert_eq!(counters.sends_by_request_id.get(&id), Some(&2), "{id}");
    }
    let stats = &credentials.stats()[0];
    assert_eq!((stats.dead_token_refreshes, stats.retries), (1, 1000));
}

#[tokio::test]
async fn a_second_401_is_returned_as_it_is_after_exactly_two_sends() {
    let server = standard_server().await;
    // The server never looks in this header: every request is refused, with any token.
    let provider = server
        .provider()
        .token_placement(TokenPlacement::Header("x-not-read".parse().unwrap()));
    let credentials = client_credentials(provider);
    let client = with(http(), OAuth2Middleware::new(credentials.clone()));

    let response = get(&client, &server.api_url("/things"), "doomed").await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(sends(&server, "doomed"), 2);
    assert_eq!(
        server.counters().token_requests,
        2,
        "the first token, then one refresh"
    );

    // The fresh token was refused too, so the refusal is not about the token: the next
    // requests are answered as they are, without hammering the token endpoint.
    for i in 0..5 {
        let id = format!("next-{i}");
        assert_eq!(status(&client, &server, &id).await, 401);
        assert_eq!(sends(&server, &id), 1, "{id}");
    }
    assert_eq!(server.counters().token_requests, 2);
    assert_eq!(credentials.stats()[0].retries, 1);
}

#[tokio::test]
async fn a_streaming_body_is_sent_once_and_its_401_returned_yet_the_token_is_refreshed() {
    let server = standard_server().await;
    let (client, credentials) = client(&server);
    assert_eq!(status(&client, &server, "warm").await, 200);
    server.revoke_all_access_tokens();
    server.reset_counters();

    let chunks =
        ["a streamed ", "body"].map(|chunk| Ok::<_, std::io::Error>(Frame::data(Bytes::from(chunk))));
    let body = reqwest::Body::wrap(StreamBody::new(futures_util::stream::iter(chunks)));
    let response = client
        .post(server.api_url("/upload"))
        .header("x-request-id", "streamed")
        .body(body)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 401);
    assert_eq!(sends(&server, "streamed"), 1);
    assert_eq!(
        server.counters().bodies,
        vec![Bytes::from_static(b"a streamed body")]
    );
    // The dead answer still refreshed the token: the next request carries the new one.
    eventually("the refresh", || server.counters().token_requests == 1).await;
    assert_eq!(status(&client, &server, "after").await, 200);
    assert_eq!(sends(&server, "after"), 1);
    assert_eq!(server.counters().token_requests, 1);
    let stats = &credentials.stats()[0];
    assert_eq!((stats.dead_token_refreshes, stats.retries), (1, 0));
}

#[tokio::test]
async fn a_body_of_bytes_is_retried_byte_identical() {
    let server = standard_server().await;
    let (client, _) = client(&server);
    assert_eq!(status(&client, &server, "warm").await, 200);
    server.revoke_all_access_tokens();
    server.reset_counters();

    let payload = Bytes::from((0..50_000u32).map(|i| (i % 253) as u8).collect::<Vec<_>>());
    let response = client
        .post(server.api_url("/upload"))
        .header("x-request-id", "upload")
        .body(payload.clone())
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(sends(&server, "upload"), 2);
    assert_eq!(server.counters().bodies, vec![payload.clone(), payload]);
}

#[tokio::test]
async fn no_retry_in_the_extensions_sends_once_but_still_refreshes() {
    let server = standard_server().await;
    let (client, credentials) = client(&server);
    let never = with(
        http(),
        OAuth2Middleware::new(credentials.clone()).retry_dead_tokens(false),
    );
    assert_eq!(status(&client, &server, "warm").await, 200);

    server.revoke_all_access_tokens();
    let response = client
        .get(server.api_url("/things"))
        .header("x-request-id", "once")
        .with_extension(NoRetry)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(sends(&server, "once"), 1);
    eventually("the refresh", || server.counters().token_requests == 2).await;
    assert_eq!(status(&client, &server, "later").await, 200);
    assert_eq!(sends(&server, "later"), 1);

    // The same for every request of a middleware built with `retry_dead_tokens(false)`.
    server.revoke_all_access_tokens();
    assert_eq!(status(&never, &server, "never").await, 401);
    assert_eq!(sends(&server, "never"), 1);
    eventually("the refresh", || server.counters().token_requests == 3).await;
    assert_eq!(status(&never, &server, "never-later").await, 200);
    assert_eq!(credentials.stats()[0].retries, 0);
}

#[tokio::test]
async fn foreign_origins_and_plain_http_to_other_hosts_get_no_token() {
    let server = standard_server().await;
    let port = server.addr().port();
    // The server's token is also the token of `https://api.example.test:PORT`: routed
    // over https only.
    let provider = server.provider().api(format!("https://api.example.test:{port}"));
    let credentials = client_credentials(provider);
    // Other names for the server's own address: any token sent there would be accepted.
    let client = with(
        http()
            .resolve("localhost", server.addr())
            .resolve("api.example.test", server.addr()),
        OAuth2Middleware::new(credentials),
    );

    for (id, url) in [
        // The same address under another origin.
        ("other-origin", format!("http://localhost:{port}/api/things")),
        // Plain http to a host whose token goes over https only.
        ("plain-http", format!("http://api.example.test:{port}/api/things")),
    ] {
        let response = get(&client, &url, id).await.unwrap();
        assert_eq!(response.status(), 401, "{url}");
        assert_eq!(sends(&server, id), 1, "{url}");
    }
    let counters = server.counters();
    assert_eq!(counters.resource_calls_authorized, 0);
    assert_eq!(counters.token_requests, 0, "no token was even fetched");

    // The registry refuses a plain http origin that is not loopback in the first place.
    let provider = server.provider().api(format!("http://api.example.test:{port}"));
    let err =
        CredentialRegistry::new(Credential::client_credentials(provider, "client", "secret")).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");

    // The server's own origin does get the token.
    let client = with(
        http(),
        OAuth2Middleware::new(client_credentials(server.provider())),
    );
    assert_eq!(status(&client, &server, "own").await, 200);
}

#[tokio::test]
async fn a_subject_without_a_grant_gets_the_error_and_nothing_is_sent() {
    let server = standard_server().await;
    let users = UserCredentialTemplate::new(server.provider(), "client", Some("secret".into()))
        .refresh_policy(steady_policy());
    let credentials = CredentialRegistry::builder().users(users).build().unwrap();
    let client = with(http(), OAuth2Middleware::new(credentials));

    let err = client
        .get(server.api_url("/me"))
        .with_extension(Subject::new("alice"))
        .send()
        .await
        .unwrap_err();

    match downcast(&err) {
        Error::NotAuthorized(e) => assert_eq!(e.subject(), Some("alice")),
        other => panic!("expected NotAuthorized, got {other:?}"),
    }
    let counters = server.counters();
    assert_eq!((counters.resource_calls, counters.token_requests), (0, 0));
}

#[tokio::test]
async fn the_token_goes_in_the_query_when_the_provider_says_so_and_stays_out_of_urls() {
    let server = MockServer::ioffice()
        .client("app", "unused")
        .start()
        .await
        .unwrap();
    let code = server.issue_authorization_code("app", REDIRECT, "email");
    let provider = server
        .provider()
        .token_placement(TokenPlacement::Query("access_token".into()));
    let credentials = CredentialRegistry::new(Credential::authorization_code(
        provider,
        "app",
        None,
        code.as_str(),
        REDIRECT,
    ))
    .unwrap();
    let client = with(http(), OAuth2Middleware::new(credentials));

    let url = server.api_url("/things?page=2");
    let response = get(&client, &url, "query").await.unwrap();
    assert_eq!(response.status(), 200);
    // The caller sees the URL it asked for, not the one carrying the token.
    assert_eq!(response.url().as_str(), url);
    assert!(!format!("{response:?}").contains("access_token"));
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["placement"], "query:access_token", "{body}");

    // A client error names the URL without the token too.
    drop(server);
    let err = get(&client, &url, "gone").await.unwrap_err();
    assert!(matches!(err, reqwest_middleware::Error::Reqwest(_)), "{err}");
    assert_eq!(err.url().map(reqwest::Url::as_str), Some(url.as_str()));
    assert!(!format!("{err} {err:?}").contains("access_token"), "{err:?}");
}

#[tokio::test]
async fn a_token_in_its_refresh_window_is_used_while_one_refresh_runs() {
    let server = MockServer::builder()
        .client("client", "secret")
        .token_lifetime(Duration::from_secs(120))
        .start()
        .await
        .unwrap();
    let (client, credentials) = client(&server);
    assert_eq!(status(&client, &server, "first").await, 200);

    // Into the refresh window (the refresh point is 60 s before expiry).
    advance(Duration::from_secs(61)).await;
    assert_eq!(status(&client, &server, "in-window").await, 200);
    assert_eq!(sends(&server, "in-window"), 1);
    eventually("the early refresh", || server.counters().token_requests == 2).await;
    assert_eq!(status(&client, &server, "after").await, 200);
    assert_eq!(server.counters().token_requests, 2);
    assert_eq!(credentials.stats()[0].early_refreshes, 1);
}
