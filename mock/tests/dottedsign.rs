//! The DottedSign emulator over real HTTP: client credentials in the body
//! only, the authorize `redirect_uri` repeated at the exchange, `/v1/*`.

mod support;

use std::time::Duration;

use http::header::WWW_AUTHENTICATE;
use http::StatusCode;
use support::*;
use tower_oauth2_mock::{MockDialect, MockServer};

const REDIRECT: &str = "https://app.example/dottedsign";
const CREDENTIALS: &str = "client_id=client&client_secret=secret";

fn code_form(code: &str, redirect: &str) -> String {
    format!("{CREDENTIALS}&{}", exchange_form(code, Some(redirect)))
}

/// A refresh form with the client's credentials in it, as DottedSign wants them.
fn refresh_form_with_secret(refresh: &str) -> String {
    format!("{CREDENTIALS}&{}", refresh_form(refresh))
}

async fn sign_in(server: &MockServer, client: &HttpClient) -> String {
    sign_in_with(client, server, &code_request(REDIRECT, &[])).await
}

#[tokio::test]
async fn urls_follow_the_document() {
    let (server, client) = started_with_client(MockServer::dottedsign()).await;
    let base = server.base_url();
    let endpoints = "token=/v1/oauth/token authorize=/v1/oauth/authorize";
    assert_endpoints(&server, MockDialect::DottedSign, endpoints);
    assert_eq!(server.api_url("/tasks"), format!("{base}/v1/tasks"));

    // `/v1/oauth/*` is not the API.
    assert_not_found(
        &client,
        &server,
        &["/v1/oauth/revoke", "/v1/oauth", "/oauth/token"],
    )
    .await;
    assert_eq!(server.counters().resource_calls, 0);
}

#[tokio::test]
async fn code_exchange_refresh_and_api() {
    let (server, client) = started_with_client(MockServer::dottedsign()).await;
    let code = sign_in(&server, &client).await;

    let answer = token_request(&client, &server, None, &code_form(&code, REDIRECT)).await;
    let body = answer.assert_token("Bearer");
    assert_eq!(body["expires_in"], 3600);
    let refresh = answer.str_field("refresh_token");
    let api = bearer_call(&client, &server, "/tasks", &answer.str_field("access_token")).await;
    api.assert_described(serde_json::json!({"subject": "alice", "path": "/v1/tasks"}));

    // No rotation by default: no new refresh token, the old one still works.
    for _ in 0..2 {
        let answer = token_request(&client, &server, None, &refresh_form_with_secret(&refresh)).await;
        assert!(answer.assert_token("Bearer").get("refresh_token").is_none());
    }

    assert_counts(&server, "authorizations=1 authorization_code_grants=1");

    let counts = "refresh_token_grants=2 token_errors=0 resource_calls_authorized=1";
    assert_counts(&server, counts);
}

#[tokio::test]
async fn http_basic_is_invalid_client() {
    let (server, client) = started_with_client(MockServer::dottedsign()).await;
    let code = server.issue_authorization_code("client", REDIRECT, "");
    let form = exchange_form(&code, Some(REDIRECT));

    let answer = token_as_client(&client, &server, &form).await;
    answer.assert_basic_challenge();

    // The secret is required, and must be right.
    for credentials in ["client_id=client", "client_id=client&client_secret=wrong"] {
        token_request(&client, &server, None, &format!("{form}&{credentials}"))
            .await
            .assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    }
    token_request(&client, &server, None, &code_form(&code, REDIRECT))
        .await
        .assert_token("Bearer");
    assert_eq!(server.counters().token_errors, 3);
}

#[tokio::test]
async fn redirect_uri_must_match_the_authorize_one() {
    let (server, client) = started_with_client(MockServer::dottedsign()).await;
    let code = sign_in(&server, &client).await;

    token_request(
        &client,
        &server,
        None,
        &code_form(&code, "https://app.example/elsewhere"),
    )
    .await
    .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    token_request(
        &client,
        &server,
        None,
        &format!("{CREDENTIALS}&{}", exchange_form(&code, None)),
    )
    .await
    .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    token_request(&client, &server, None, &code_form(&code, REDIRECT))
        .await
        .assert_token("Bearer");
    token_request(&client, &server, None, &code_form(&code, REDIRECT))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn expired_tokens_are_401() {
    let (server, client) = started_with_client(MockServer::dottedsign().token_lifetime(Duration::ZERO)).await;
    let code = server.issue_authorization_code("client", REDIRECT, "");
    let answer = token_request(&client, &server, None, &code_form(&code, REDIRECT)).await;
    answer.assert_token("Bearer");
    let api = bearer_call(&client, &server, "/tasks", &answer.str_field("access_token")).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.header(WWW_AUTHENTICATE),
        Some(r#"Bearer realm="mock", error="invalid_token""#)
    );
    // The refresh token still gets a (here also short-lived) new one.
    let answer = token_request(
        &client,
        &server,
        None,
        &refresh_form_with_secret(&answer.str_field("refresh_token")),
    )
    .await;
    answer.assert_token("Bearer");
    let counters = server.counters();
    assert_eq!(counters.resource_calls_authorized, 0);
    assert_eq!(counters.resource_calls_by_status.get(&401), Some(&1));
}

#[tokio::test]
async fn rotation_can_be_turned_on() {
    let (server, client) = started_with_client(MockServer::dottedsign().rotate_refresh_tokens(true)).await;
    let refresh = server.issue_refresh_token("client", "");
    let answer = token_request(&client, &server, None, &refresh_form_with_secret(&refresh)).await;
    answer.assert_token("Bearer");
    assert_ne!(answer.str_field("refresh_token"), refresh);
    token_request(&client, &server, None, &refresh_form_with_secret(&refresh))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
}
