//! Dead tokens that only the body declares: Grindery's JSON-RPC API answers a token that
//! no longer verifies with HTTP `400` and the JSON-RPC error `-32602` "Invalid access
//! token", the same status as every other JSON-RPC error. The mock emulates it with
//! `native_grindery_errors(true)`; the `grindery()` preset must refresh once and retry
//! for that error, and hand every other answer back byte for byte.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tower_oauth2::error::RefusedGrant;

use crate::common::*;

both!(
    a_token_the_api_calls_invalid_in_the_body_is_refreshed_once_and_the_call_retried,
    ten_concurrent_callers_with_a_token_dead_in_the_body_cause_one_refresh,
    other_json_rpc_errors_are_answers_returned_unchanged,
    a_dead_refresh_token_answered_with_invalid_request_means_reauthorization,
    a_users_token_dead_in_the_body_is_refreshed_and_the_call_retried_as_that_user,
    a_huge_answer_that_looks_like_a_dead_token_is_delivered_whole,
    the_rest_routes_still_answer_a_dead_token_with_401,
);

const REDIRECT: &str = "https://app.example/grindery/callback";

async fn grindery() -> MockServer {
    started(MockServer::grindery().native_grindery_errors(true)).await
}

/// The application's Grindery credential: a refresh token issued by the emulator.
fn app_credentials(server: &MockServer) -> CredentialRegistry {
    refresh_token(server.provider(), &server.issue_refresh_token("", ""))
}

fn refresh_token(provider: Provider, token: &str) -> CredentialRegistry {
    CredentialRegistry::new(Credential::refresh_token(provider, "app", None, token)).unwrap()
}

/// The application's Grindery users.
fn users(server: &MockServer) -> CredentialRegistry {
    let users = UserCredentialTemplate::new(server.provider(), "app", None).redirect_uri(REDIRECT);
    CredentialRegistry::builder().users(users).build().unwrap()
}

/// Alice comes back from Grindery's consent with `code`, which is exchanged.
async fn alice_logs_in_with(credentials: &CredentialRegistry, code: &str) -> Result<(), Error> {
    let users = credentials.users("grindery").unwrap();
    let pending = users.authorization(REDIRECT).start().unwrap();
    let callback = format!("{REDIRECT}?code={code}&state={}", pending.state());
    let code = pending.complete(&callback).unwrap();
    credentials.login("grindery", "alice", code).await
}

fn rpc(server: &MockServer, method: &str) -> Call {
    let body = json!({"jsonrpc": "2.0", "method": method, "params": {}, "id": 7});
    Call::post(format!("{}/", server.base_url()), body.to_string()).header("content-type", "application/json")
}

async fn a_token_the_api_calls_invalid_in_the_body_is_refreshed_once_and_the_call_retried(kind: Kind) {
    let server = grindery().await;
    let credentials = app_credentials(&server);
    let adapter = Adapter::new(kind, &credentials);
    let answer = adapter.send(rpc(&server, "listWorkflows")).await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["result"]["method"], "listWorkflows");
    assert_eq!(server.counters().refresh_token_grants, 1);

    // The token dies at the server: the next call is answered `400 -32602`.
    server.revoke_all_access_tokens();
    assert_eq!(
        adapter
            .send(rpc(&server, "or_listWorkflows"))
            .await
            .unwrap()
            .status,
        200
    );
    let counters = server.counters();
    assert_eq!(counters.refresh_token_grants, 2);
    assert_eq!(counters.resource_calls_by_status.get(&400), Some(&1));
    assert_eq!(counters.resource_calls_by_status.get(&200), Some(&2));
    assert_eq!(refreshes_and_retries(&credentials), (1, 1));
    // The retry carried the same JSON-RPC request, byte for byte.
    let bodies = &counters.bodies;
    assert_eq!(bodies[bodies.len() - 1], bodies[bodies.len() - 2]);
}

async fn ten_concurrent_callers_with_a_token_dead_in_the_body_cause_one_refresh(kind: Kind) {
    let server = grindery().await;
    let credentials = app_credentials(&server);
    let adapter = Adapter::new(kind, &credentials);
    assert_eq!(
        adapter.send(rpc(&server, "listWorkflows")).await.unwrap().status,
        200
    );
    server.revoke_all_access_tokens();

    let calls = (0..10).map(|_| rpc(&server, "listWorkspaces"));
    assert_eq!(statuses(adapter.concurrently(calls).await), vec![200; 10]);
    let counters = server.counters();
    assert_eq!(counters.refresh_token_grants, 2, "one refresh for ten");
    assert_eq!(counters.resource_calls_authorized, 11);
    assert_eq!(refreshes_and_retries(&credentials), (1, 10));
}

async fn other_json_rpc_errors_are_answers_returned_unchanged(kind: Kind) {
    let server = grindery().await;
    let credentials = app_credentials(&server);
    let adapter = Adapter::new(kind, &credentials);
    let error = |code: i64, message: &str| {
        json!({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": 7}).to_string()
    };
    let url = format!("{}/", server.base_url());
    let array_params = json!({"jsonrpc": "2.0", "method": "listWorkflows", "params": [1], "id": 7});
    let parse_error =
        json!({"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null});
    for (call, expected) in [
        // An unknown method: -32601.
        (rpc(&server, "noSuchMethod"), error(-32601, "Method not found")),
        // Invalid params of another kind share the code -32602: not a dead token.
        (
            Call::post(&url, array_params.to_string()),
            error(-32602, "params must be an object"),
        ),
        // Not JSON-RPC at all.
        (Call::post(&url, "{not json"), parse_error.to_string()),
    ] {
        let answer = adapter.send(call).await.unwrap();
        assert_eq!((answer.status, answer.body), (400, Bytes::from(expected)));
    }

    let counters = server.counters();
    assert_eq!(counters.refresh_token_grants, 1, "no refresh");
    assert_eq!(counters.resource_calls, 3, "no retry");
    assert_eq!(refreshes_and_retries(&credentials), (0, 0));
}

async fn a_dead_refresh_token_answered_with_invalid_request_means_reauthorization(kind: Kind) {
    let server = grindery().await;
    let credentials = refresh_token(server.provider(), "a-refresh-token-grindery-never-issued");
    let adapter = Adapter::new(kind, &credentials);
    let err = adapter.send(rpc(&server, "listWorkflows")).await.unwrap_err();
    let Error::ReauthorizationRequired(reauthorize) = &err else {
        panic!("expected ReauthorizationRequired, got {err:?}");
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

async fn a_users_token_dead_in_the_body_is_refreshed_and_the_call_retried_as_that_user(kind: Kind) {
    let server = grindery().await;
    let credentials = users(&server);
    let code = server.issue_authorization_code("", REDIRECT, "");
    alice_logs_in_with(&credentials, &code).await.unwrap();

    let adapter = Adapter::new(kind, &credentials);
    server.revoke_all_access_tokens();
    let answer = adapter
        .send(rpc(&server, "listWorkflows").subject("alice"))
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json()["result"]["subject"],
        "alice",
        "the retry acted for the same user"
    );
    let counters = server.counters();
    assert_eq!(counters.refresh_token_grants, 1);
    assert_eq!(counters.resource_calls_by_status.get(&400), Some(&1));
}

/// Not an adapter's: the code exchange, answered Grindery's way.
#[tokio::test]
async fn a_refused_code_answered_with_invalid_request_means_reauthorization() {
    let server = grindery().await;
    let credentials = users(&server);
    let err = alice_logs_in_with(&credentials, "not-a-code").await.unwrap_err();
    let Error::ReauthorizationRequired(reauthorize) = &err else {
        panic!("expected ReauthorizationRequired, got {err:?}");
    };
    assert_eq!(reauthorize.refused(), Some(RefusedGrant::AuthorizationCode));
    assert_eq!(server.counters().authorization_code_grants, 1);
}

/// Serves `body` with `400` to every request, on a loopback port of its own.
async fn answering_400(body: Bytes) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let body = body.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_req| {
                    let mut response = Response::new(Full::new(body.clone()));
                    *response.status_mut() = StatusCode::BAD_REQUEST;
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn a_huge_answer_that_looks_like_a_dead_token_is_delivered_whole(kind: Kind) {
    let server = grindery().await;
    let huge: Bytes = {
        let mut text =
            br#"{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid access token"},"pad":""#.to_vec();
        text.resize(1024 * 1024 - 2, b'x');
        text.extend_from_slice(b"\"}");
        text.into()
    };
    let addr = answering_400(huge.clone()).await;
    let provider = server.provider().api(format!("http://{addr}"));
    let credentials = refresh_token(provider, &server.issue_refresh_token("", ""));
    let adapter = Adapter::new(kind, &credentials);
    let body = json!({"jsonrpc": "2.0", "method": "listWorkflows", "params": {}, "id": 7});
    let answer = adapter
        .send(Call::post(format!("http://{addr}/"), body.to_string()))
        .await
        .unwrap();
    // Too long to be judged whole (a JSON document cut at 4 KiB does not parse): an
    // answer, delivered byte for byte, and no refresh.
    assert_eq!((answer.status, answer.body), (400, huge));
    assert_eq!(server.counters().refresh_token_grants, 1);
    assert_eq!(refreshes_and_retries(&credentials), (0, 0));
}

async fn the_rest_routes_still_answer_a_dead_token_with_401(kind: Kind) {
    let server = grindery().await;
    let credentials = app_credentials(&server);
    let adapter = Adapter::new(kind, &credentials);
    let workflows = || Call::get(server.api_url("/workflows"));
    assert_eq!(adapter.send(workflows()).await.unwrap().status, 200);
    server.revoke_all_access_tokens();
    assert_eq!(adapter.send(workflows()).await.unwrap().status, 200);
    let counters = server.counters();
    assert_eq!(counters.refresh_token_grants, 2);
    assert_eq!(counters.resource_calls_by_status.get(&401), Some(&1));
    assert_eq!(refreshes_and_retries(&credentials), (1, 1));
}
