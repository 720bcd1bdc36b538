//! Exercises the mock OAuth 2.0 server over real HTTP on 127.0.0.1.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tower_oauth2_mock::{AcceptedClientAuth, Fault, MockCounters, MockServer};

use support::*;

async fn try_send(
    client: &HttpClient,
    request: Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
    client.request(request).await
}

fn form_request(server: &MockServer, auth: Option<&str>, form: &str) -> Request<Full<Bytes>> {
    let mut builder = Request::post(server.token_url()).header(CONTENT_TYPE, FORM);
    if let Some(auth) = auth {
        builder = builder.header(AUTHORIZATION, auth);
    }
    builder
        .body(Full::new(Bytes::from(form.to_owned())))
        .expect("request")
}

async fn client_credentials(server: &MockServer, client: &HttpClient) -> String {
    let answer = token_as_client(client, server, CLIENT_CREDENTIALS).await;
    answer.assert_token("Bearer");
    answer.str_field("access_token")
}

/// A standard server, a client, and an access token the default client got from it.
async fn with_a_token() -> (MockServer, HttpClient, String) {
    let (server, client) = started_with_client(MockServer::builder()).await;
    let token = client_credentials(&server, &client).await;
    (server, client, token)
}

fn api_request(server: &MockServer, path: &str, token: Option<&str>) -> http::request::Builder {
    let mut builder = Request::post(server.api_url(path));
    if let Some(token) = token {
        builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    builder
}

async fn call_api(server: &MockServer, client: &HttpClient, path: &str, token: Option<&str>) -> Answer {
    let request = api_request(server, path, token)
        .body(Full::default())
        .expect("request");
    send(client, request).await
}

/// The answer of a standard server, started for this request alone, to the default
/// client's token request of `form`.
async fn on_a_fresh_server(form: &str) -> Answer {
    let server = MockServer::start().await.unwrap();
    token_as_client(&http_client(), &server, form).await
}

#[test]
fn server_types_are_thread_safe() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>(_: &T) {}
    assert_send_sync::<MockServer>();
    assert_send_sync::<tower_oauth2_mock::MockServerBuilder>();
    assert_send(&MockServer::start());
    assert_send(&MockServer::builder().start());
}

#[tokio::test]
async fn client_credentials_with_basic_auth() {
    let (server, client) = started_with_client(MockServer::builder()).await;

    let answer = token_as_client(&client, &server, CLIENT_CREDENTIALS).await;
    let body = answer.assert_token("Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(body.get("scope").is_none());
    assert!(body.get("refresh_token").is_none());

    let token = answer.str_field("access_token");
    let api = call_api(&server, &client, "/things", Some(&token)).await;
    assert_eq!(api.status, StatusCode::OK);
    assert_eq!(api.header(CONTENT_TYPE), Some("application/json"));
    assert_eq!(
        api.json(),
        serde_json::json!({
            "ok": true,
            "client_id": "client",
            "subject": null,
            "scope": "",
            "placement": "authorization_bearer",
            "path": "/api/things",
            "body_len": 0
        })
    );

    let counters = server.counters();
    let counts = concat!(
        "token_requests=1 client_credentials_grants=1 refresh_token_grants=0 authorization_code_grants=0 ",
        "token_errors=0 max_concurrent_token_requests=1 resource_calls=1",
    );
    assert_counts(&server, counts);
    assert_eq!(counters.resource_calls_by_status, BTreeMap::from([(200, 1)]));
    assert_eq!(server.active_access_tokens(), 1);
}

#[tokio::test]
async fn client_credentials_with_body_credentials_and_scope() {
    let (server, client) = started_with_client(MockServer::builder()).await;

    let form = "grant_type=client_credentials&client_id=client&client_secret=secret&scope=read+write+read";
    let answer = token_request(&client, &server, None, form).await;
    let body = answer.assert_token("Bearer");
    assert_eq!(body["scope"], "read write");
    assert_eq!(server.counters().client_credentials_grants, 1);
}

#[tokio::test]
async fn basic_credentials_are_form_urlencoded() {
    let (id, secret) = ("my:app id", "p%ss+w:rd é");
    let server = MockServer::builder().client(id, secret).start().await.unwrap();
    let client = http_client();

    let answer = token_request(&client, &server, Some(&basic(id, secret)), CLIENT_CREDENTIALS).await;
    answer.assert_token("Bearer");

    // Sending the secret without encoding it is a client bug the mock catches.
    let raw = format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
    let answer = token_request(&client, &server, Some(&raw), CLIENT_CREDENTIALS).await;
    answer.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn wrong_secret_is_invalid_client() {
    let (server, client) = started_with_client(MockServer::builder()).await;

    let answer = token_request(&client, &server, Some(&wrong_basic()), CLIENT_CREDENTIALS).await;
    answer.assert_basic_challenge();

    // Body credentials get no Basic challenge.
    let form = "grant_type=client_credentials&client_id=client&client_secret=wrong";
    let answer = token_request(&client, &server, None, form).await;
    answer.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(answer.header(WWW_AUTHENTICATE), None);

    // Unknown client, and no credentials at all.
    for form in [
        "grant_type=client_credentials&client_id=nobody&client_secret=secret",
        CLIENT_CREDENTIALS,
    ] {
        let answer = token_request(&client, &server, None, form).await;
        answer.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }

    assert_counts(&server, "token_requests=4 client_credentials_grants=4");

    assert_counts(&server, "token_errors=4");
    assert_eq!(server.active_access_tokens(), 0);
}

#[tokio::test]
async fn two_authentication_methods_are_invalid_request() {
    let form = "grant_type=client_credentials&client_id=client&client_secret=secret";
    let answer = on_a_fresh_server(form).await;
    answer.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn client_id_may_repeat_the_basic_identity() {
    let (server, client) = started_with_client(MockServer::builder()).await;

    let answer = token_as_client(&client, &server, "grant_type=client_credentials&client_id=client").await;
    answer.assert_token("Bearer");

    let answer = token_as_client(&client, &server, "grant_type=client_credentials&client_id=other").await;
    answer.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn methods_outside_the_accepted_list_are_invalid_client() {
    let server = started(MockServer::builder().client_auth(&[AcceptedClientAuth::Basic])).await;
    let answer = token_request(
        &http_client(),
        &server,
        None,
        "grant_type=client_credentials&client_id=client&client_secret=secret",
    )
    .await;
    answer.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(answer.header(WWW_AUTHENTICATE), None);

    let server = started(MockServer::builder().client_auth(&[AcceptedClientAuth::Body])).await;
    let answer = token_as_client(&http_client(), &server, CLIENT_CREDENTIALS).await;
    answer.assert_basic_challenge();
}

#[tokio::test]
async fn registering_a_client_replaces_the_default_one() {
    let (server, client) = started_with_client(MockServer::builder().client("app", "s3cret")).await;
    let answer = token_as_client(&client, &server, CLIENT_CREDENTIALS).await;
    answer.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let answer = token_request(
        &client,
        &server,
        Some(&basic("app", "s3cret")),
        CLIENT_CREDENTIALS,
    )
    .await;
    answer.assert_token("Bearer");
}

#[tokio::test]
async fn only_post_is_allowed() {
    let server = MockServer::start().await.unwrap();
    let request = Request::get(server.token_url()).body(Full::default()).unwrap();
    let answer = send(&http_client(), request).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.header(ALLOW), Some("POST"));
    assert_counts(&server, "token_requests=1 token_errors=1");
}

#[tokio::test]
async fn content_type_must_be_form_urlencoded() {
    let (server, client) = started_with_client(MockServer::builder()).await;

    for content_type in [Some("application/json"), Some("text/plain"), None] {
        let mut builder = Request::post(server.token_url()).header(AUTHORIZATION, client_basic());
        if let Some(content_type) = content_type {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        let request = builder
            .body(Full::new(Bytes::from_static(b"grant_type=client_credentials")))
            .unwrap();
        send(&client, request)
            .await
            .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }

    // Parameters of the media type are fine.
    let request = Request::post(server.token_url())
        .header(AUTHORIZATION, client_basic())
        .header(CONTENT_TYPE, "Application/X-WWW-Form-Urlencoded; charset=UTF-8")
        .body(Full::new(Bytes::from_static(b"grant_type=client_credentials")))
        .unwrap();
    send(&client, request).await.assert_token("Bearer");
}

#[tokio::test]
async fn repeated_parameters_are_invalid_request() {
    let answer = on_a_fresh_server("grant_type=client_credentials&scope=read&scope=write").await;
    answer.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn grant_type_is_required_and_must_be_known() {
    let (server, client) = started_with_client(MockServer::builder()).await;

    token_as_client(&client, &server, "scope=read")
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    token_as_client(&client, &server, "grant_type=password")
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
}

#[tokio::test]
async fn scopes_outside_the_allowed_set_are_invalid_scope() {
    let (server, client) = started_with_client(MockServer::builder().allowed_scopes(&["read"])).await;

    for form in [
        "grant_type=client_credentials&scope=write",
        "grant_type=client_credentials&scope=read+admin",
        "grant_type=client_credentials&scope=read++read",
    ] {
        token_as_client(&client, &server, form)
            .await
            .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
    }
    // An empty value counts as an omitted parameter (RFC 6749 §3.1).
    let answer = token_as_client(&client, &server, "grant_type=client_credentials&scope=").await;
    assert!(answer.assert_token("Bearer").get("scope").is_none());
}

#[tokio::test]
async fn oversized_token_request_is_rejected() {
    let form = format!("grant_type=client_credentials&pad={}", "x".repeat(17 * 1024));
    let answer = on_a_fresh_server(&form).await;
    answer.assert_oauth_error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request");
}

#[tokio::test]
async fn refresh_tokens_rotate() {
    let (server, client) = started_with_client(MockServer::builder()).await;
    let first = server.issue_refresh_token("client", "read write");

    let answer = token_as_client(&client, &server, &refresh_form(&first)).await;
    let body = answer.assert_token("Bearer");
    assert_eq!(body["scope"], "read write");
    let second = answer.str_field("refresh_token");
    assert_eq!(second.len(), 40);
    assert_ne!(second, first);

    // The rotated-away token is dead.
    token_as_client(&client, &server, &refresh_form(&first))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");

    // The new one works, and may narrow the scope but not widen it.
    let answer = token_as_client(&client, &server, &(refresh_form(&second) + "&scope=read")).await;
    assert_eq!(answer.assert_token("Bearer")["scope"], "read");
    let third = answer.str_field("refresh_token");

    let narrow = server.issue_refresh_token("client", "read");
    token_as_client(&client, &server, &(refresh_form(&narrow) + "&scope=read+write"))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");

    // The third token kept the original scope.
    let answer = token_as_client(&client, &server, &(refresh_form(&third) + "&scope=write")).await;
    assert_eq!(answer.assert_token("Bearer")["scope"], "write");

    token_as_client(&client, &server, "grant_type=refresh_token")
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");

    assert_counts(&server, "refresh_token_grants=6 token_errors=3");
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_succeed_once() {
    let server = MockServer::start().await.unwrap();
    server.set_token_latency(Duration::from_millis(50));
    let client = http_client();
    let refresh = server.issue_refresh_token("client", "");
    let form = refresh_form(&refresh);

    let (a, b) = tokio::join!(
        token_as_client(&client, &server, &form),
        token_as_client(&client, &server, &form),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::BAD_REQUEST]);
}

#[tokio::test]
async fn refresh_token_of_another_client_is_invalid_grant() {
    let builder = MockServer::builder().client("a", "secret-a");
    let server = started(builder.client("b", "secret-b")).await;
    let form = refresh_form(&server.issue_refresh_token("a", "read"));
    let client = http_client();
    token_request(&client, &server, Some(&basic("b", "secret-b")), &form)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");

    // The failed attempt did not burn the token.
    token_request(&client, &server, Some(&basic("a", "secret-a")), &form)
        .await
        .assert_token("Bearer");
}

#[tokio::test]
async fn without_rotation_the_refresh_token_stays_valid() {
    let (server, client) = started_with_client(MockServer::builder().rotate_refresh_tokens(false)).await;
    let refresh = server.issue_refresh_token("client", "read");
    for _ in 0..2 {
        let answer = token_as_client(&client, &server, &refresh_form(&refresh)).await;
        let body = answer.assert_token("Bearer");
        assert!(body.get("refresh_token").is_none(), "body: {body}");
        assert_eq!(body["scope"], "read");
    }
    assert_eq!(server.active_access_tokens(), 2);
}

#[tokio::test]
async fn client_credentials_can_return_refresh_tokens() {
    let builder = MockServer::builder().omit_expires_in(true);
    let (server, client) = started_with_client(builder.refresh_tokens_for_client_credentials(true)).await;
    let answer = token_as_client(&client, &server, CLIENT_CREDENTIALS).await;
    let body = answer.assert_token("Bearer");
    assert!(body.get("expires_in").is_none());
    let refresh = answer.str_field("refresh_token");
    token_as_client(&client, &server, &refresh_form(&refresh))
        .await
        .assert_token("Bearer");
}

#[tokio::test]
async fn public_clients() {
    let builder = MockServer::builder().client("client", "secret");
    let (server, client) = started_with_client(builder.public_client("spa")).await;

    token_request(
        &client,
        &server,
        None,
        "grant_type=client_credentials&client_id=spa",
    )
    .await
    .assert_oauth_error(StatusCode::BAD_REQUEST, "unauthorized_client");

    let refresh = server.issue_refresh_token("spa", "read");
    let answer = token_request(
        &client,
        &server,
        None,
        &(refresh_form(&refresh) + "&client_id=spa"),
    )
    .await;
    answer.assert_token("Bearer");

    // A confidential client cannot skip its secret.
    let refresh = server.issue_refresh_token("client", "read");
    token_request(
        &client,
        &server,
        None,
        &(refresh_form(&refresh) + "&client_id=client"),
    )
    .await
    .assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
}

#[tokio::test]
async fn authorization_codes_are_single_use() {
    let (server, client) = started_with_client(MockServer::builder()).await;
    let redirect = "https://app.example/cb";
    let code = server.issue_authorization_code("client", redirect, "read");

    token_as_client(&client, &server, &exchange_form(&code, None))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    token_as_client(&client, &server, &exchange_form(&code, Some("https://evil")))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");

    let form = exchange_form(&code, Some(redirect));
    let answer = token_as_client(&client, &server, &form).await;
    let body = answer.assert_token("Bearer");
    assert_eq!(body["scope"], "read");
    assert_eq!(answer.str_field("refresh_token").len(), 40);

    token_as_client(&client, &server, &form)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(server.counters().authorization_code_grants, 4);
}

#[tokio::test]
async fn resource_requires_a_live_bearer_token() {
    let (server, client, token) = with_a_token().await;

    // Case-insensitive scheme.
    let request = Request::get(server.api_url("/x"))
        .header(AUTHORIZATION, format!("bearer {token}"))
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&client, request).await.status, StatusCode::OK);

    // No credentials: a challenge without an error code.
    let answer = call_api(&server, &client, "/x", None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.header(WWW_AUTHENTICATE), Some(r#"Bearer realm="mock""#));

    // A token in the query string is not looked at.
    let request = Request::get(server.api_url(&format!("/x?access_token={token}")))
        .body(Full::default())
        .unwrap();
    let answer = send(&client, request).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.header(WWW_AUTHENTICATE), Some(r#"Bearer realm="mock""#));

    let invalid = r#"Bearer realm="mock", error="invalid_token""#;
    let answer = call_api(&server, &client, "/x", Some("not-a-token")).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.header(WWW_AUTHENTICATE), Some(invalid));

    let request = Request::get(server.api_url("/x"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    let answer = send(&client, request).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.header(WWW_AUTHENTICATE), Some(invalid));

    server.revoke_all_access_tokens();
    assert_eq!(server.active_access_tokens(), 0);
    let answer = call_api(&server, &client, "/x", Some(&token)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.header(WWW_AUTHENTICATE), Some(invalid));

    // Tokens issued after the revocation work.
    let fresh = client_credentials(&server, &client).await;
    assert_eq!(
        call_api(&server, &client, "/x", Some(&fresh)).await.status,
        StatusCode::OK
    );

    let counters = server.counters();
    assert_eq!(counters.resource_calls, 7);
    assert_eq!(
        counters.resource_calls_by_status,
        BTreeMap::from([(200, 2), (401, 5)])
    );
}

#[tokio::test]
async fn access_tokens_expire() {
    let (server, client) =
        started_with_client(MockServer::builder().token_lifetime(Duration::from_millis(100))).await;
    let answer = token_as_client(&client, &server, CLIENT_CREDENTIALS).await;
    assert_eq!(answer.assert_token("Bearer")["expires_in"], 1);
    let token = answer.str_field("access_token");
    assert_eq!(
        call_api(&server, &client, "/x", Some(&token)).await.status,
        StatusCode::OK
    );

    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(server.active_access_tokens(), 0);
    let answer = call_api(&server, &client, "/x", Some(&token)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        answer.header(WWW_AUTHENTICATE),
        Some(r#"Bearer realm="mock", error="invalid_token""#)
    );
}

#[tokio::test]
async fn unknown_paths_are_not_found() {
    let (server, client) = started_with_client(MockServer::builder()).await;
    let paths = ["/", "/apis", "/oauth/token/extra", "/oauth/authorize"];
    assert_not_found(&client, &server, &paths).await;
    assert_eq!(server.counters(), MockCounters::default());
}

/// A standard server told to answer its next token request with `fault`, and its
/// answer to the default client's client credentials request.
async fn answer_with_fault(fault: Fault) -> (MockServer, Answer) {
    let server = MockServer::start().await.unwrap();
    server.fail_next_token_requests(1, fault);
    let answer = token_as_client(&http_client(), &server, CLIENT_CREDENTIALS).await;
    (server, answer)
}

#[tokio::test]
async fn server_error_fault() {
    let (server, answer) = answer_with_fault(Fault::ServerError).await;
    assert_eq!(answer.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(serde_json::from_slice::<Value>(&answer.body).is_err());
    assert!(answer.header(CONTENT_TYPE).unwrap().starts_with("text/plain"));

    client_credentials(&server, &http_client()).await;
    let counts = "token_requests=2 client_credentials_grants=2 token_errors=1";
    assert_counts(&server, counts);
}

#[tokio::test]
async fn malformed_json_fault() {
    let (server, answer) = answer_with_fault(Fault::MalformedJson).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header(CONTENT_TYPE), Some("application/json"));
    let error = serde_json::from_slice::<Value>(&answer.body).unwrap_err();
    assert!(error.is_eof(), "{error}");
    assert_eq!(server.counters().token_errors, 1);
}

#[tokio::test]
async fn html_page_fault() {
    let (_server, answer) = answer_with_fault(Fault::HtmlPage).await;
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert!(answer.header(CONTENT_TYPE).unwrap().starts_with("text/html"));
    assert!(std::str::from_utf8(&answer.body).unwrap().contains("<html>"));
}

#[tokio::test]
async fn reset_fault() {
    let server = MockServer::start().await.unwrap();
    server.fail_next_token_requests(1, Fault::Reset);
    let client = http_client();
    let request = form_post(&server.token_url(), Some(&client_basic()), CLIENT_CREDENTIALS);
    let error = try_send(&client, request).await.unwrap_err();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    let hyper_error = std::iter::from_fn(|| {
        let current = source?;
        source = current.source();
        Some(current)
    })
    .find_map(|e| e.downcast_ref::<hyper::Error>())
    .expect("a hyper error");
    assert!(hyper_error.is_incomplete_message(), "{hyper_error}");

    client_credentials(&server, &client).await;
    assert_eq!(server.counters().token_errors, 1);
}

#[tokio::test]
async fn hang_fault() {
    let server = MockServer::start().await.unwrap();
    server.fail_next_token_requests(1, Fault::Hang);
    let client = http_client();
    let attempt = tokio::time::timeout(
        Duration::from_millis(200),
        token_as_client(&client, &server, CLIENT_CREDENTIALS),
    )
    .await;
    assert!(attempt.is_err(), "the hung request was answered");

    client_credentials(&server, &client).await;
    assert_counts(&server, "token_requests=2 token_errors=1");
}

/// Sends a token request over a raw connection whose next answer hangs, and
/// waits until the server has read it.
async fn hung_connection(server: &MockServer) -> TcpStream {
    server.fail_next_token_requests(1, Fault::Hang);
    let form = "grant_type=client_credentials";
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    let request = format!(
        "POST /oauth/token HTTP/1.1\r\nHost: {}\r\nContent-Type: {FORM}\r\n\
         Content-Length: {}\r\n\r\n{form}",
        server.addr(),
        form.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    eventually(|| server.counters().token_errors == 1).await;
    stream
}

/// Polls `condition` for up to five seconds.
async fn eventually(mut condition: impl FnMut() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition not reached within five seconds");
}

#[tokio::test]
async fn hung_requests_end_when_the_client_disconnects() {
    let (server, client) = started_with_client(MockServer::builder()).await;
    let stream = hung_connection(&server).await;

    server.reset_counters();
    client_credentials(&server, &client).await;
    assert_eq!(server.counters().max_concurrent_token_requests, 2);

    drop(stream);
    let mut in_flight = 0;
    for _ in 0..500 {
        server.reset_counters();
        client_credentials(&server, &client).await;
        in_flight = server.counters().max_concurrent_token_requests;
        if in_flight == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(in_flight, 1, "the hung request is still in flight");
}

#[tokio::test]
async fn dropping_the_server_closes_hung_connections() {
    let server = MockServer::start().await.unwrap();
    let mut stream = hung_connection(&server).await;
    drop(server);
    let mut buf = [0; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("the connection stayed open after the server was dropped");
    // EOF or a reset, but never a response.
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn faults_queue_up_and_precede_validation() {
    let (server, client) = started_with_client(MockServer::builder()).await;
    server.fail_next_token_requests(2, Fault::ServerError);
    server.fail_next_token_requests(0, Fault::Reset);
    server.fail_next_token_requests(1, Fault::HtmlPage);

    let get = || Request::get(server.token_url()).body(Full::default()).unwrap();
    assert_eq!(
        send(&client, get()).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        send(&client, get()).await.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(send(&client, get()).await.status, StatusCode::BAD_GATEWAY);
    assert_eq!(send(&client, get()).await.status, StatusCode::METHOD_NOT_ALLOWED);
    client_credentials(&server, &client).await;

    assert_counts(&server, "token_requests=5 token_errors=4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_token_requests_are_tracked() {
    let server = MockServer::start().await.unwrap();
    server.set_token_latency(Duration::from_millis(300));
    let client = http_client();

    let mut requests = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let client = client.clone();
        let request = form_request(&server, Some(&basic("client", "secret")), CLIENT_CREDENTIALS);
        requests.spawn(async move { send(&client, request).await.status });
    }
    while let Some(status) = requests.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::OK);
    }

    assert_counts(&server, "token_requests=10 max_concurrent_token_requests=10");
    assert_eq!(server.active_access_tokens(), 10);

    server.reset_counters();
    server.set_token_latency(Duration::ZERO);
    client_credentials(&server, &client).await;
    assert_eq!(server.counters().max_concurrent_token_requests, 1);
}

#[tokio::test]
async fn resource_latency_delays_answers() {
    let (server, client, token) = with_a_token().await;
    server.set_resource_latency(Duration::from_millis(150));
    let started = tokio::time::Instant::now();
    assert_eq!(
        call_api(&server, &client, "/x", Some(&token)).await.status,
        StatusCode::OK
    );
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn request_ids_are_counted() {
    let (server, client, token) = with_a_token().await;

    for id in [Some("a"), Some("b"), Some("a"), None] {
        let mut builder = api_request(&server, "/items", Some(&token));
        if let Some(id) = id {
            builder = builder.header("x-request-id", id);
        }
        let answer = send(&client, builder.body(Full::default()).unwrap()).await;
        assert_eq!(answer.status, StatusCode::OK);
    }
    let counters = server.counters();
    assert_eq!(counters.resource_calls, 4);
    assert_eq!(
        counters.sends_by_request_id,
        BTreeMap::from([("a".to_owned(), 2), ("b".to_owned(), 1)])
    );
}

#[tokio::test]
async fn resource_bodies_are_recorded_verbatim() {
    let (server, client, token) = with_a_token().await;

    let bodies = [
        Bytes::from_static(b"\x00\xff\xfe binary \r\n"),
        Bytes::from_static(b"{\"name\":\"caf\xc3\xa9\"}"),
        Bytes::new(),
        Bytes::from(vec![b'z'; 256 * 1024]),
    ];
    for (i, body) in bodies.iter().enumerate() {
        // Bodies are recorded whether or not the call is authorized.
        let token = (i != 1).then_some(token.as_str());
        let request = Request::builder()
            .method(Method::PUT)
            .uri(server.api_url("/upload"))
            .header(
                AUTHORIZATION,
                token.map_or_else(|| "Basic eA==".to_owned(), |t| format!("Bearer {t}")),
            )
            .body(Full::new(body.clone()))
            .unwrap();
        let answer = send(&client, request).await;
        if token.is_some() {
            assert_eq!(answer.status, StatusCode::OK);
            assert_eq!(answer.json()["body_len"], body.len());
        } else {
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        }
    }
    assert_eq!(server.counters().bodies, bodies);
}

#[tokio::test]
async fn counters_reset() {
    let (server, client, token) = with_a_token().await;
    let request = api_request(&server, "/x", Some(&token))
        .header("x-request-id", "r")
        .body(Full::new(Bytes::from_static(b"body")))
        .unwrap();
    send(&client, request).await;
    assert_ne!(server.counters(), MockCounters::default());

    server.reset_counters();
    assert_eq!(server.counters(), MockCounters::default());
}

#[tokio::test]
async fn urls_and_debug_output() {
    let server = started(MockServer::builder().client("app", "hunter2-secret")).await;
    let base = format!("http://127.0.0.1:{}", server.addr().port());
    assert_eq!(server.base_url(), base);
    assert_eq!(server.token_url(), format!("{base}/oauth/token"));
    assert_eq!(server.api_url("/a/b?c=d"), format!("{base}/api/a/b?c=d"));

    let token = client_credentials_for(&server, "app", "hunter2-secret").await;
    let debug = format!("{server:?}");
    assert!(debug.contains("app"), "{debug}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(!debug.contains(&token), "{debug}");

    let builder = MockServer::builder()
        .client("app", "hunter2-secret")
        .public_client("spa");
    let debug = format!("{builder:?}");
    assert!(debug.contains("spa"), "{debug}");
    assert!(!debug.contains("hunter2"), "{debug}");
}

async fn client_credentials_for(server: &MockServer, id: &str, secret: &str) -> String {
    let answer = token_request(
        &http_client(),
        server,
        Some(&basic(id, secret)),
        CLIENT_CREDENTIALS,
    )
    .await;
    answer.assert_token("Bearer");
    answer.str_field("access_token")
}
