//! The Agrello emulator over real HTTP: authorization code flow, HTTP Basic
//! client authentication only, Bearer tokens on `/api/*`.

mod support;

use http::header::WWW_AUTHENTICATE;
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;
use tower_oauth2_mock::{MockDialect, MockServer};

const REDIRECT: &str = "http://myapp.io/auth/agrello";

async fn sign_in(server: &MockServer, client: &HttpClient, extra: &[(&str, &str)]) -> String {
    sign_in_with(client, server, &code_request(REDIRECT, extra)).await
}

fn code_form(code: &str) -> String {
    exchange_form(code, Some(REDIRECT))
}

#[tokio::test]
async fn urls_follow_the_document() {
    let (server, client) = started_with_client(MockServer::agrello()).await;
    let base = server.base_url();
    let endpoints = "token=/identity/auth/oauth/token authorize=/identity/auth/oauth/authorize";
    assert_endpoints(&server, MockDialect::Agrello, endpoints);
    assert_eq!(server.api_url("/documents"), format!("{base}/api/documents"));

    // The standard server's paths are not Agrello's.
    assert_not_found(&client, &server, &["/oauth/token", "/oauth/revoke", "/authorize"]).await;
}

#[tokio::test]
async fn code_exchange_and_refresh() {
    let (server, client) = started_with_client(MockServer::agrello()).await;

    // The document's authorize URL has no scope.
    let code = sign_in(&server, &client, &[]).await;
    let answer = token_as_client(&client, &server, &code_form(&code)).await;
    let body = answer.assert_token("Bearer");
    assert_eq!(body["expires_in"], 3600);
    let access = answer.str_field("access_token");
    let refresh = answer.str_field("refresh_token");

    let api = bearer_call(&client, &server, "/documents", &access).await;
    api.assert_described(serde_json::json!({
        "client_id": "client",
        "subject": "alice",
        "scope": "",
        "placement": "authorization_bearer",
        "path": "/api/documents",
    }));

    // A refresh answer carries a refresh token: a new one, by default.
    let refresh_form = refresh_form(&refresh);
    let answer = token_as_client(&client, &server, &refresh_form).await;
    answer.assert_token("Bearer");
    let rotated = answer.str_field("refresh_token");
    assert_ne!(rotated, refresh);
    token_as_client(&client, &server, &refresh_form)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    let api = bearer_call(&client, &server, "/x", &answer.str_field("access_token")).await;
    assert_eq!(api.status, StatusCode::OK);

    // The code is single-use.
    token_as_client(&client, &server, &code_form(&code))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");

    assert_counts(&server, "authorizations=1 token_requests=4");

    let counts =
        "authorization_code_grants=2 refresh_token_grants=2 token_errors=2 resource_calls_authorized=2";
    assert_counts(&server, counts);
}

#[tokio::test]
async fn only_http_basic_authenticates_clients() {
    let (server, client) = started_with_client(MockServer::agrello()).await;

    // Body credentials are not Agrello's way, even correct ones.
    let code = server.issue_authorization_code("client", REDIRECT, "");
    let form = format!("{}&client_id=client&client_secret=secret", code_form(&code));
    let answer = token_request(&client, &server, None, &form).await;
    answer.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(answer.header(WWW_AUTHENTICATE), None);

    let refresh = server.issue_refresh_token("client", "read");
    let form =
        format!("grant_type=refresh_token&refresh_token={refresh}&client_id=client&client_secret=secret");
    token_request(&client, &server, None, &form)
        .await
        .assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");

    // A wrong secret over Basic is challenged.
    let answer = token_request(&client, &server, Some(&wrong_basic()), &code_form(&code)).await;
    answer.assert_basic_challenge();

    // No credentials at all.
    token_request(&client, &server, None, &code_form(&code))
        .await
        .assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");

    // None of the failures used the code up.
    token_as_client(&client, &server, &code_form(&code))
        .await
        .assert_token("Bearer");
    assert_eq!(server.counters().token_errors, 4);
}

#[tokio::test]
async fn grants_and_redirect_uri_are_checked() {
    let (server, client) = started_with_client(MockServer::agrello()).await;
    let code = server.issue_authorization_code("client", REDIRECT, "read");

    token_as_client(&client, &server, CLIENT_CREDENTIALS)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    token_as_client(&client, &server, &exchange_form(&code, None))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    token_as_client(
        &client,
        &server,
        &exchange_form(&code, Some("http://myapp.io/other")),
    )
    .await
    .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    let answer = token_as_client(&client, &server, &code_form(&code)).await;
    assert_eq!(answer.assert_token("Bearer")["scope"], "read");
}

#[tokio::test]
async fn tokens_go_in_the_authorization_header_only() {
    let (server, client) = started_with_client(MockServer::agrello()).await;
    let code = server.issue_authorization_code("client", REDIRECT, "");
    let answer = token_as_client(&client, &server, &code_form(&code)).await;
    let token = answer.str_field("access_token");

    let query = send(&client, get(&server.api_url(&format!("/x?access_token={token}")))).await;
    assert_eq!(query.status, StatusCode::UNAUTHORIZED);
    let header = Request::get(server.api_url("/x"))
        .header("x-access-token", &token)
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&client, header).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        bearer_call(&client, &server, "/x", &token).await.status,
        StatusCode::OK
    );
    assert_counts(&server, "resource_calls=3 resource_calls_authorized=1");
}

#[tokio::test]
async fn users_and_rotation_settings() {
    let builder = MockServer::agrello().user("bob", "pw-b").user("carol", "pw-c");
    let (server, client) = started_with_client(builder.rotate_refresh_tokens(false)).await;

    for (hint, expected) in [(None, "bob"), (Some("carol"), "carol")] {
        let extra: Vec<(&str, &str)> = hint.map(|hint| ("login_hint", hint)).into_iter().collect();
        let code = sign_in(&server, &client, &extra).await;
        let answer = token_as_client(&client, &server, &code_form(&code)).await;
        answer.assert_token("Bearer");
        let api = bearer_call(&client, &server, "/me", &answer.str_field("access_token")).await;
        assert_eq!(api.json()["subject"], expected);
    }

    // Without rotation, the answer has no refresh token and the old one
    // keeps working.
    let refresh = server.issue_refresh_token("client", "");
    for _ in 0..2 {
        let answer = token_as_client(&client, &server, &refresh_form(&refresh)).await;
        assert!(answer.assert_token("Bearer").get("refresh_token").is_none());
    }
}
