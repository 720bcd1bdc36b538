//! The Grindery emulator over real HTTP: no clients, a refresh answer
//! without a refresh token, and a refresh token that never rotates.

mod support;

use http::StatusCode;
use support::*;
use tower_oauth2_mock::{MockDialect, MockServer};

const REDIRECT: &str = "https://app.example/grindery/callback";

/// Grindery's sign-in names no client.
async fn sign_in(server: &MockServer, client: &HttpClient) -> String {
    let params = [("response_type", "code"), ("redirect_uri", REDIRECT)];
    sign_in_with(client, server, &params).await
}

#[tokio::test]
async fn urls_follow_the_document() {
    let server = started(MockServer::grindery()).await;
    let base = server.base_url();
    assert_endpoints(
        &server,
        MockDialect::Grindery,
        "token=/oauth/token authorize=/sign-in",
    );
    assert_eq!(server.api_url("/workflows"), format!("{base}/api/workflows"));
}

#[tokio::test]
async fn code_exchange_without_client() {
    let (server, client) = started_with_client(MockServer::grindery()).await;
    let code = sign_in(&server, &client).await;

    // Exactly the document's two body parameters.
    let answer = token_request(
        &client,
        &server,
        None,
        &format!("code={code}&grant_type=authorization_code"),
    )
    .await;
    let body = answer.assert_token("Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(
        answer.fields(),
        ["access_token", "expires_in", "refresh_token", "token_type"]
    );

    let api = bearer_call(&client, &server, "/workflows", &answer.str_field("access_token")).await;
    api.assert_described(serde_json::json!({
        "client_id": null,
        "subject": "alice",
        "placement": "authorization_bearer",
    }));

    assert_counts(&server, "authorizations=1 authorization_code_grants=1");

    assert_counts(&server, "token_errors=0 resource_calls_authorized=1");
}

#[tokio::test]
async fn refresh_omits_the_refresh_token_and_keeps_the_old_one() {
    // Grindery's document fixes this: the setting cannot turn rotation on.
    let (server, client) = started_with_client(MockServer::grindery().rotate_refresh_tokens(true)).await;
    let code = sign_in(&server, &client).await;
    let answer = token_request(&client, &server, None, &exchange_form(&code, None)).await;
    answer.assert_token("Bearer");
    let refresh = answer.str_field("refresh_token");
    let mut access_tokens = vec![answer.str_field("access_token")];

    for _ in 0..3 {
        let answer = token_request(
            &client,
            &server,
            None,
            &format!("refresh_token={refresh}&grant_type=refresh_token"),
        )
        .await;
        answer.assert_token("Bearer");
        assert_eq!(answer.fields(), ["access_token", "expires_in", "token_type"]);
        access_tokens.push(answer.str_field("access_token"));
    }
    access_tokens.sort();
    access_tokens.dedup();
    assert_eq!(access_tokens.len(), 4);
    for token in &access_tokens {
        let api = bearer_call(&client, &server, "/me", token).await;
        assert_eq!(api.status, StatusCode::OK);
    }

    assert_counts(&server, "refresh_token_grants=3 token_errors=0");
    assert_eq!(server.active_access_tokens(), 4);
}

#[tokio::test]
async fn client_credentials_are_refused_and_client_id_ignored() {
    let (server, client) = started_with_client(MockServer::grindery()).await;
    let refresh = server.issue_refresh_token("", "");
    let form = refresh_form(&refresh);

    token_request(&client, &server, None, &format!("{form}&client_id=anything"))
        .await
        .assert_token("Bearer");
    token_request(
        &client,
        &server,
        None,
        &format!("{form}&client_id=a&client_secret=b"),
    )
    .await
    .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    token_as_client(&client, &server, &form)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    token_request(&client, &server, None, CLIENT_CREDENTIALS)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    token_request(
        &client,
        &server,
        None,
        "grant_type=refresh_token&refresh_token=unknown",
    )
    .await
    .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");

    assert_counts(&server, "token_requests=5 token_errors=4");
}

#[tokio::test]
async fn a_redirect_uri_is_optional_but_must_match() {
    let (server, client) = started_with_client(MockServer::grindery()).await;
    let code = server.issue_authorization_code("", REDIRECT, "");
    token_request(
        &client,
        &server,
        None,
        &exchange_form(&code, Some("https://evil.example/")),
    )
    .await
    .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    token_request(&client, &server, None, &exchange_form(&code, Some(REDIRECT)))
        .await
        .assert_token("Bearer");
    token_request(&client, &server, None, &exchange_form(&code, None))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn the_sign_in_page_needs_only_a_redirect_uri() {
    let (server, client) = started_with_client(MockServer::grindery()).await;
    let authorize = server.authorize_url().unwrap();

    let answer = send(
        &client,
        get(&with_query(&authorize, &[("response_type", "code")])),
    )
    .await;
    answer.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    let location = send(
        &client,
        get(&with_query(
            &authorize,
            &[("response_type", "token"), ("redirect_uri", REDIRECT)],
        )),
    )
    .await
    .location();
    assert_eq!(query_of(&location)["error"], "unsupported_response_type");
    // A client_id and a state are tolerated; the state comes back.
    let location = send(
        &client,
        get(&with_query(
            &authorize,
            &[
                ("response_type", "code"),
                ("redirect_uri", REDIRECT),
                ("client_id", "whatever"),
                ("state", "s"),
            ],
        )),
    )
    .await
    .location();
    let params = query_of(&location);
    assert_eq!(params["state"], "s");
    assert_eq!(params["code"].len(), 40);
    assert_eq!(server.counters().authorizations, 1);
}

#[tokio::test]
#[should_panic(expected = "has no client ids")]
async fn helpers_take_no_client_id() {
    let server = MockServer::grindery().start().await.unwrap();
    let _ = server.issue_refresh_token("client", "");
}

fn json_rpc(
    server: &MockServer,
    token: Option<&str>,
    body: &str,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let mut request =
        http::Request::post(format!("{}/", server.base_url())).header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request
        .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
            body.as_bytes(),
        )))
        .unwrap()
}

#[tokio::test]
async fn native_answers_put_dead_tokens_in_json_rpc_errors_and_refuse_grants_with_invalid_request() {
    let (server, client) = started_with_client(MockServer::grindery().native_grindery_errors(true)).await;
    let refresh = server.issue_refresh_token("", "");
    let answer = token_request(&client, &server, None, &refresh_form(&refresh)).await;
    let token = answer.str_field("access_token");
    let call = r#"{"jsonrpc":"2.0","method":"or_listWorkflows","params":{},"id":"a"}"#;

    let ok = send(&client, json_rpc(&server, Some(&token), call)).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.json()["result"]["method"], "listWorkflows");
    assert_eq!(ok.json()["id"], "a");

    let error = |answer: &Answer| {
        (
            answer.status,
            answer.json()["error"]["code"].clone(),
            answer.json()["error"]["message"].clone(),
        )
    };
    let dead = send(&client, json_rpc(&server, Some("not-a-live-token"), call)).await;
    assert_eq!(
        error(&dead),
        (
            StatusCode::BAD_REQUEST,
            (-32602).into(),
            "Invalid access token".into()
        )
    );
    let none = send(&client, json_rpc(&server, None, call)).await;
    assert_eq!(
        error(&none),
        (StatusCode::BAD_REQUEST, 1.into(), "Not authorized".into())
    );
    let unknown = r#"{"jsonrpc":"2.0","method":"dropTables","id":1}"#;
    let unknown = send(&client, json_rpc(&server, Some(&token), unknown)).await;
    assert_eq!(
        error(&unknown),
        (
            StatusCode::BAD_REQUEST,
            (-32601).into(),
            "Method not found".into()
        )
    );
    // Authentication comes first, as in the orchestrator: an unknown method with a dead
    // token is the token's error.
    let unknown = r#"{"jsonrpc":"2.0","method":"dropTables","id":1}"#;
    let unknown = send(&client, json_rpc(&server, Some("not-a-live-token"), unknown)).await;
    assert_eq!(error(&unknown).1, -32602);

    // REST routes keep RFC 6750's 401.
    let rest = bearer_call(&client, &server, "/me", "not-a-live-token").await;
    assert_eq!(rest.status, StatusCode::UNAUTHORIZED);

    for (form, description) in [
        (refresh_form("never-issued"), "Invalid or expired refresh token"),
        (exchange_form("never-issued", None), "Invalid code"),
    ] {
        let refused = token_request(&client, &server, None, &form).await;
        refused.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert_eq!(refused.json()["error_description"], description, "{form}");
    }
}

#[tokio::test]
async fn without_native_answers_the_emulator_follows_the_rfcs() {
    let (server, client) = started_with_client(MockServer::grindery()).await;
    let call = r#"{"jsonrpc":"2.0","method":"listWorkflows","id":1}"#;
    assert_eq!(
        send(&client, json_rpc(&server, Some("x"), call)).await.status,
        StatusCode::NOT_FOUND
    );
    token_request(
        &client,
        &server,
        None,
        "grant_type=refresh_token&refresh_token=never-issued",
    )
    .await
    .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
}
