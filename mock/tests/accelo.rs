//! The Accelo emulator over real HTTP: client credentials only, HTTP Basic
//! or parameter credentials, Accelo's scope syntax, `_bearer_token`.

mod support;

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;
use tower_oauth2_mock::{MockDialect, MockServer};

fn token(server: &MockServer, auth: Option<&str>, form: &str) -> Request<Full<bytes::Bytes>> {
    form_post(&server.token_url(), auth, form)
}

async fn access_token(server: &MockServer, client: &HttpClient) -> String {
    let answer = token_as_client(client, server, CLIENT_CREDENTIALS).await;
    answer.assert_token("bearer");
    answer.str_field("access_token")
}

#[tokio::test]
async fn urls_follow_the_document() {
    let server = started(MockServer::accelo()).await;
    let base = server.base_url();
    assert_endpoints(&server, MockDialect::Accelo, "token=/oauth2/v0/token");
    assert_eq!(
        server.api_url("/companies/1"),
        format!("{base}/api/v0/companies/1")
    );
}

#[tokio::test]
async fn client_credentials_with_basic() {
    // Refresh tokens are never part of Accelo's answer.
    let (server, client) =
        started_with_client(MockServer::accelo().refresh_tokens_for_client_credentials(true)).await;
    let auth = basic("client", "secret");

    for url in [server.token_url(), format!("{}.json", server.token_url())] {
        let answer = send(&client, form_post(&url, Some(&auth), CLIENT_CREDENTIALS)).await;
        let body = answer.assert_token("bearer");
        assert_eq!(body["expires_in"], 3600);
        assert_eq!(answer.fields(), ["access_token", "expires_in", "token_type"]);
    }

    // The document's scoped request is answered without a scope field.
    let answer = token_as_client(
        &client,
        &server,
        &format!(
            "grant_type=client_credentials&scope={}",
            encode("read(all),write(companies,contacts)")
        ),
    )
    .await;
    answer.assert_token("bearer");
    assert_eq!(answer.fields(), ["access_token", "expires_in", "token_type"]);
    let api = bearer_call(
        &client,
        &server,
        "/companies/1",
        &answer.str_field("access_token"),
    )
    .await;
    api.assert_described(serde_json::json!({
        "scope": "read(all),write(companies,contacts)",
        "subject": null,
        "client_id": "client",
        "placement": "authorization_bearer",
    }));

    assert_counts(&server, "token_requests=3 client_credentials_grants=3");

    assert_counts(&server, "token_errors=0 resource_calls_authorized=1");
}

#[tokio::test]
async fn parameter_credentials_in_the_body_or_query() {
    let (server, client) = started_with_client(MockServer::accelo()).await;
    let credentials = "client_id=client&client_secret=secret";

    let answer = token_request(
        &client,
        &server,
        None,
        &format!("grant_type=client_credentials&{credentials}"),
    )
    .await;
    answer.assert_token("bearer");

    let url = format!("{}?{credentials}", server.token_url());
    send(&client, form_post(&url, None, CLIENT_CREDENTIALS))
        .await
        .assert_token("bearer");
    let url = format!("{}.json?client_id=client", server.token_url());
    send(
        &client,
        form_post(&url, None, "grant_type=client_credentials&client_secret=secret"),
    )
    .await
    .assert_token("bearer");

    // Wrong secret, in the query.
    let url = format!("{}?client_id=client&client_secret=wrong", server.token_url());
    send(&client, form_post(&url, None, CLIENT_CREDENTIALS))
        .await
        .assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    // The same credential in the query and the body is a repeated parameter.
    let url = format!("{}?client_id=client", server.token_url());
    send(
        &client,
        form_post(
            &url,
            None,
            &format!("grant_type=client_credentials&{credentials}"),
        ),
    )
    .await
    .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");

    assert_counts(&server, "token_requests=5 token_errors=2");
    assert_eq!(server.active_access_tokens(), 3);
}

#[tokio::test]
async fn no_client_authentication_is_invalid_client() {
    let (server, client) = started_with_client(MockServer::accelo()).await;
    for form in [
        CLIENT_CREDENTIALS,
        "grant_type=client_credentials&client_id=client",
        "grant_type=client_credentials&client_id=nobody&client_secret=secret",
    ] {
        let answer = token_request(&client, &server, None, form).await;
        answer.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
        assert_eq!(answer.header(WWW_AUTHENTICATE), None);
    }
    let answer = token_request(&client, &server, Some(&wrong_basic()), CLIENT_CREDENTIALS).await;
    answer.assert_basic_challenge();
    let counters = server.counters();
    assert_eq!(counters.token_errors, 4);
    assert_eq!(server.active_access_tokens(), 0);
}

#[tokio::test]
async fn scope_syntax_is_checked() {
    // Accelo checks syntax, not a list of allowed scopes.
    let (server, client) = started_with_client(MockServer::accelo().allowed_scopes(&["read"])).await;
    let auth = basic("client", "secret");
    let request = |scope: &str| {
        token(
            &server,
            Some(&auth),
            &format!("grant_type=client_credentials&scope={}", encode(scope)),
        )
    };

    let good = [
        "read(all)",
        "write(all)",
        "read(companies)",
        "read(all),write(companies,contacts)",
        "write(contacts,issues)",
    ];
    for scope in good {
        send(&client, request(scope)).await.assert_token("bearer");
    }
    let bad = [
        "read write",
        "read",
        "read()",
        "admin(all)",
        "read(all) write(all)",
        "read(all);write(all)",
        "read(Companies)",
        "read(all,companies)",
        "read(all),",
    ];
    for scope in bad {
        let answer = send(&client, request(scope)).await;
        answer.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
    }
    // Absent (or empty) is fine.
    token_as_client(&client, &server, "grant_type=client_credentials&scope=")
        .await
        .assert_token("bearer");

    let counters = server.counters();
    assert_eq!(counters.token_requests, (good.len() + bad.len() + 1) as u64);
    assert_eq!(counters.token_errors, bad.len() as u64);
}

#[tokio::test]
async fn only_the_client_credentials_grant_exists() {
    let (server, client) = started_with_client(MockServer::accelo()).await;
    for form in [
        "grant_type=refresh_token&refresh_token=abc",
        "grant_type=authorization_code&code=abc&redirect_uri=https%3A%2F%2Fa.example%2F",
        "grant_type=password&username=a&password=b",
    ] {
        token_as_client(&client, &server, form)
            .await
            .assert_oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let counts =
        "refresh_token_grants=1 authorization_code_grants=1 client_credentials_grants=0 token_errors=3";
    assert_counts(&server, counts);

    // Neither is there an authorization endpoint.
    assert_not_found(&client, &server, &["/oauth2/v0/authorize"]).await;
}

#[tokio::test]
#[should_panic(expected = "issues no refresh tokens")]
async fn no_refresh_tokens_to_mint() {
    let server = MockServer::accelo().start().await.unwrap();
    let _ = server.issue_refresh_token("client", "");
}

#[tokio::test]
#[should_panic(expected = "has no authorization codes")]
async fn no_codes_to_mint() {
    let server = MockServer::accelo().start().await.unwrap();
    let _ = server.issue_authorization_code("client", "https://a.example/cb", "");
}

#[tokio::test]
async fn tokens_go_in_the_header_or_bearer_token_query() {
    let (server, client) = started_with_client(MockServer::accelo()).await;
    let token = access_token(&server, &client).await;
    let base = server.base_url();

    // The document's two samples.
    let answer = send(
        &client,
        get(&format!("{base}/api/v0/companies/1?_bearer_token={token}")),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["placement"], "query:_bearer_token");
    let answer = send(
        &client,
        bearer_get(&format!("{base}/public_api/v0/companies/1"), &token),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["placement"], "authorization_bearer");
    assert_eq!(answer.json()["path"], "/public_api/v0/companies/1");

    // Other placements are not Accelo's; two at once is a bad request.
    let answer = send(&client, get(&server.api_url(&format!("/x?access_token={token}")))).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let both = Request::get(server.api_url(&format!("/x?_bearer_token={token}")))
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    let answer = send(&client, both).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer.header(WWW_AUTHENTICATE),
        Some(r#"Bearer realm="mock", error="invalid_request""#)
    );
    let answer = send(&client, get(&server.api_url("/x?_bearer_token=not-issued"))).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    // Outside the API prefixes.
    let answer = send(&client, bearer_get(&format!("{base}/api/v1/companies"), &token)).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);

    assert_counts(&server, "resource_calls=5 resource_calls_authorized=2");
}
