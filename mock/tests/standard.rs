//! The standard mock's user flow over real HTTP: the authorization endpoint,
//! PKCE, RFC 7009 revocation, denials and the counters that go with them.

mod support;

use http::header::{ALLOW, CONTENT_TYPE, LOCATION};
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;
use tower_oauth2_mock::{MockDialect, MockServer};

const REDIRECT: &str = "https://app.example/cb";
/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn authorize(server: &MockServer, params: &[(&str, &str)]) -> String {
    with_query(
        &server.authorize_url().expect("an authorization endpoint"),
        params,
    )
}

/// Exchanges a code with HTTP Basic as `client`, with extra form fields.
async fn exchange(server: &MockServer, client: &HttpClient, code: &str, extra: &str) -> Answer {
    let form = format!("{}{extra}", exchange_form(code, Some(REDIRECT)));
    token_as_client(client, server, &form).await
}

/// Signs in at the authorization endpoint and returns the code.
async fn code_for(server: &MockServer, client: &HttpClient, extra: &[(&str, &str)]) -> String {
    sign_in_with(client, server, &code_request(REDIRECT, extra)).await
}

#[tokio::test]
async fn urls_and_dialect() {
    let server = MockServer::start().await.unwrap();
    let base = server.base_url();
    let endpoints = "token=/oauth/token authorize=/authorize revocation=/oauth/revoke";
    assert_endpoints(&server, MockDialect::Standard, endpoints);
    assert_eq!(server.api_url("/x"), format!("{base}/api/x"));
}

#[tokio::test]
async fn authorization_redirects_with_code_and_state() {
    let (server, client) = started_with_client(MockServer::builder()).await;
    let redirect = "https://app.example/cb?tab=1";
    let url = authorize(
        &server,
        &[
            ("response_type", "code"),
            ("client_id", "client"),
            ("redirect_uri", redirect),
            ("scope", "read"),
            ("state", "xyz 1"),
        ],
    );
    let answer = send(&client, get(&url)).await;
    let location = answer.location();
    assert!(
        location.starts_with("https://app.example/cb?tab=1&"),
        "{location}"
    );
    let params = query_of(&location);
    assert_eq!(params["tab"], "1");
    assert_eq!(params["state"], "xyz 1");
    let code = &params["code"];
    assert_eq!(code.len(), 40);
    assert_eq!(params.len(), 3, "{params:?}");

    let form = exchange_form(code, Some(redirect));
    let answer = token_as_client(&client, &server, &form).await;
    let body = answer.assert_token("Bearer");
    assert_eq!(body["scope"], "read");
    assert_eq!(answer.str_field("refresh_token").len(), 40);

    // The resource answer describes the token: whose it is and where it was found.
    let token = answer.str_field("access_token");
    let api = bearer_call(&client, &server, "/me", &token).await;
    assert_eq!(api.status, StatusCode::OK);
    assert_eq!(
        api.fields(),
        [
            "body_len",
            "client_id",
            "ok",
            "path",
            "placement",
            "scope",
            "subject"
        ]
    );

    assert_counts(&server, "authorizations=1 token_requests=1");

    let counts = "authorization_code_grants=1 token_errors=0 resource_calls=1 resource_calls_authorized=1";
    assert_counts(&server, counts);
}

#[tokio::test]
async fn unusable_client_or_redirect_uri_is_not_redirected() {
    let (server, client) = started_with_client(MockServer::builder()).await;
    for params in [
        vec![("response_type", "code"), ("redirect_uri", REDIRECT)],
        vec![
            ("response_type", "code"),
            ("client_id", "nobody"),
            ("redirect_uri", REDIRECT),
        ],
        vec![("response_type", "code"), ("client_id", "client")],
        vec![
            ("response_type", "code"),
            ("client_id", "client"),
            ("redirect_uri", "/cb"),
        ],
        vec![
            ("response_type", "code"),
            ("client_id", "client"),
            ("redirect_uri", "https://a.example/cb#f"),
        ],
        vec![
            ("client_id", "client"),
            ("client_id", "client"),
            ("redirect_uri", REDIRECT),
        ],
    ] {
        let answer = send(&client, get(&authorize(&server, &params))).await;
        answer.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
        assert_eq!(answer.header(LOCATION), None);
    }
    let answer = send(
        &client,
        form_post(&server.authorize_url().unwrap(), None, "response_type=code"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.header(ALLOW), Some("GET"));
    assert_eq!(server.counters().authorizations, 0);
}

#[tokio::test]
async fn request_errors_are_redirected_with_the_state() {
    let (server, client) = started_with_client(MockServer::builder().allowed_scopes(&["read"])).await;
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("response_type", "token")], "unsupported_response_type"),
        (&[], "invalid_request"),
        (&[("response_type", "code"), ("scope", "write")], "invalid_scope"),
        (
            &[("response_type", "code"), ("login_hint", "mallory")],
            "access_denied",
        ),
        (
            &[
                ("response_type", "code"),
                ("code_challenge", CHALLENGE),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
        ),
    ];
    for (extra, error) in cases {
        let mut params = vec![
            ("client_id", "client"),
            ("redirect_uri", REDIRECT),
            ("state", "s1"),
        ];
        params.extend_from_slice(extra);
        let location = send(&client, get(&authorize(&server, &params))).await.location();
        let params = query_of(&location);
        assert_eq!(params["error"], error, "{location}");
        assert_eq!(params["state"], "s1");
        assert!(!params.contains_key("code"));
    }
    assert_eq!(server.counters().authorizations, 0);
}

#[tokio::test]
async fn denied_authorizations_come_back_as_access_denied() {
    let (server, client) = started_with_client(MockServer::builder()).await;
    server.deny_next_authorizations(2);
    let url = authorize(
        &server,
        &[
            ("response_type", "code"),
            ("client_id", "client"),
            ("redirect_uri", REDIRECT),
            ("state", "abc"),
        ],
    );
    for _ in 0..2 {
        let params = query_of(&send(&client, get(&url)).await.location());
        assert_eq!(params["error"], "access_denied");
        assert_eq!(params["state"], "abc");
    }
    let params = query_of(&send(&client, get(&url)).await.location());
    assert_eq!(params["code"].len(), 40);
    assert_eq!(server.counters().authorizations, 1);
}

#[tokio::test]
async fn pkce_is_enforced_at_the_exchange() {
    let (server, client) = started_with_client(MockServer::builder()).await;
    let pkce = [("code_challenge", CHALLENGE), ("code_challenge_method", "S256")];

    let code = code_for(&server, &client, &pkce).await;
    exchange(&server, &client, &code, "")
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    let wrong = VERIFIER.replace('d', "e");
    exchange(&server, &client, &code, &format!("&code_verifier={wrong}"))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    // The failures did not burn the code.
    exchange(&server, &client, &code, &format!("&code_verifier={VERIFIER}"))
        .await
        .assert_token("Bearer");

    // A verifier for a code that had no challenge is refused too.
    let code = code_for(&server, &client, &[]).await;
    exchange(&server, &client, &code, &format!("&code_verifier={VERIFIER}"))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    exchange(&server, &client, &code, "").await.assert_token("Bearer");

    assert_counts(&server, "authorizations=2 authorization_code_grants=5");

    assert_counts(&server, "token_errors=3");
}

async fn revoke(server: &MockServer, client: &HttpClient, auth: Option<&str>, form: &str) -> Answer {
    send(client, form_post(&server.revocation_url().unwrap(), auth, form)).await
}

#[tokio::test]
async fn rfc7009_revocation() {
    let builder = MockServer::builder().client("client", "secret");
    let builder = builder.client("other", "other-secret");
    let (server, client) = started_with_client(builder.rotate_refresh_tokens(false)).await;
    let auth = basic("client", "secret");
    let code = code_for(&server, &client, &[]).await;
    let answer = exchange(&server, &client, &code, "").await;
    answer.assert_token("Bearer");
    let (first_access, refresh) = (
        answer.str_field("access_token"),
        answer.str_field("refresh_token"),
    );
    let refreshed = token_as_client(&client, &server, &refresh_form(&refresh)).await;
    refreshed.assert_token("Bearer");
    let second_access = refreshed.str_field("access_token");
    let unrelated = server.issue_refresh_token("client", "read");
    let api = |token: String| {
        let client = client.clone();
        let url = server.api_url("/x");
        async move { send(&client, bearer_get(&url, &token)).await.status }
    };

    // Client authentication is required, and tokens of other clients are
    // not theirs to revoke.
    revoke(&server, &client, None, &format!("token={first_access}"))
        .await
        .assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let answer = revoke(
        &server,
        &client,
        Some(&wrong_basic()),
        &format!("token={first_access}"),
    )
    .await;
    answer.assert_basic_challenge();
    revoke(
        &server,
        &client,
        Some(&basic("other", "other-secret")),
        &format!("token={first_access}"),
    )
    .await
    .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    revoke(&server, &client, Some(&auth), "token_type_hint=access_token")
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    let form = format!("token={first_access}&token_type_hint=id_token");
    revoke(&server, &client, Some(&auth), &form)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "unsupported_token_type");
    assert_eq!(api(first_access.clone()).await, StatusCode::OK);

    // Revoking an access token kills that token only.
    let form = format!("token={first_access}&token_type_hint=access_token");
    let answer = revoke(&server, &client, Some(&auth), &form).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(api(first_access.clone()).await, StatusCode::UNAUTHORIZED);
    assert_eq!(api(second_access.clone()).await, StatusCode::OK);

    // Revoking the refresh token kills it and the access tokens of its
    // grant, whatever the hint says; other grants are untouched.
    let form = format!("token={refresh}&token_type_hint=access_token");
    let answer = revoke(&server, &client, Some(&auth), &form).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(api(second_access).await, StatusCode::UNAUTHORIZED);
    token_as_client(&client, &server, &refresh_form(&refresh))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    token_as_client(&client, &server, &refresh_form(&unrelated))
        .await
        .assert_token("Bearer");

    // Unknown (and already revoked) tokens are fine (RFC 7009 §2.2), with
    // body credentials too.
    for token in ["never-issued", refresh.as_str()] {
        let answer = revoke(
            &server,
            &client,
            None,
            &format!("token={token}&client_id=client&client_secret=secret"),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
    }

    let counters = server.counters();
    assert_eq!(counters.revocations, 4);
    assert_eq!(server.active_access_tokens(), 1);
}

#[tokio::test]
async fn the_revocation_endpoint_only_takes_post() {
    let server = MockServer::start().await.unwrap();
    let answer = send(&http_client(), get(&server.revocation_url().unwrap())).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer.header(ALLOW), Some("POST"));
    assert_eq!(server.counters().revocations, 0);
}

#[tokio::test]
async fn the_metadata_document_names_the_servers_own_endpoints() {
    let server = started(MockServer::builder().client("app", "s3cret").public_client("spa")).await;
    let base = server.base_url();
    let url = server
        .metadata_url()
        .expect("the standard server serves metadata");
    assert_eq!(url, format!("{base}/.well-known/oauth-authorization-server"));
    let client = http_client();
    let answer = send(&client, Request::get(&url).body(Full::default()).unwrap()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.header(CONTENT_TYPE), Some(JSON));
    assert_eq!(
        answer.json(),
        serde_json::json!({
            "issuer": base,
            "token_endpoint": server.token_url(),
            "authorization_endpoint": server.authorize_url().unwrap(),
            "revocation_endpoint": server.revocation_url().unwrap(),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["read", "write"],
        })
    );
    let post = send(&client, Request::post(&url).body(Full::default()).unwrap()).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.header(ALLOW), Some("GET, HEAD"));
    assert_counts(&server, "token_requests=0");
}

#[tokio::test]
async fn the_metadata_document_can_name_another_issuer_or_be_absent() {
    let wrong = started(MockServer::builder().metadata_issuer("https://evil.example")).await;
    let client = http_client();
    let url = wrong.metadata_url().unwrap();
    let answer = send(&client, Request::get(&url).body(Full::default()).unwrap()).await;
    assert_eq!(answer.str_field("issuer"), "https://evil.example");
    assert_eq!(answer.str_field("token_endpoint"), wrong.token_url());

    let hidden = started(MockServer::builder().serve_metadata(false)).await;
    assert_eq!(hidden.metadata_url(), None);
    let metadata_path = "/.well-known/oauth-authorization-server";
    assert_not_found(&client, &hidden, &[metadata_path]).await;

    // The emulators' providers publish no metadata.
    let agrello = started(MockServer::agrello()).await;
    assert_eq!(agrello.metadata_url(), None);
    assert_not_found(&client, &agrello, &[metadata_path]).await;
}
