//! The iOFFICE emulator over real HTTP: parameters in headers, `expires_in`
//! in milliseconds, rotating refresh tokens, the code in the URL fragment,
//! the direct code request, its own token placements and revocation.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Request, StatusCode};
use http_body_util::Full;
use support::*;
use tower_oauth2_mock::{MockDialect, MockServer};

const REDIRECT: &str = "https://app.example/ioffice/code";
const SCOPE: &str = "email";

/// A token request the way the document writes it: JSON content type,
/// parameters in headers, no body.
fn headers_request(server: &MockServer, headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut builder = Request::post(server.token_url()).header(CONTENT_TYPE, JSON);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::default()).unwrap()
}

type Headers<'a> = Vec<(&'a str, &'a str)>;

/// The headers of the document's code exchange.
fn exchange_headers(code: &str) -> Headers<'_> {
    vec![
        ("x-grant-type", "authorization_code"),
        ("x-redirect-uri", REDIRECT),
        ("x-client-id", "client"),
        ("x-scope", SCOPE),
        ("x-auth-code", code),
    ]
}

/// The headers of the document's refresh request.
fn refresh_headers(refresh: &str) -> Headers<'_> {
    vec![
        ("x-grant-type", "refresh_token"),
        ("x-redirect-uri", REDIRECT),
        ("x-client-id", "client"),
        ("x-scope", SCOPE),
        ("x-refresh-token", refresh),
    ]
}

/// `headers` with each of `changes` made: `(name, Some(value))` sets the value of the
/// header `name`, `(name, None)` drops it.
fn edited<'a>(mut headers: Headers<'a>, changes: &[(&str, Option<&'a str>)]) -> Headers<'a> {
    for (name, value) in changes {
        let at = headers
            .iter()
            .position(|(header, _)| header == name)
            .expect("a header");
        match value {
            Some(value) => headers[at].1 = value,
            None => {
                headers.remove(at);
            }
        }
    }
    headers
}

fn exchange_request(server: &MockServer, code: &str) -> Request<Full<Bytes>> {
    headers_request(server, &exchange_headers(code))
}

fn refresh_request(server: &MockServer, refresh: &str) -> Request<Full<Bytes>> {
    headers_request(server, &refresh_headers(refresh))
}

fn login_params() -> Vec<(&'static str, &'static str)> {
    vec![
        ("response_type", "code"),
        ("client_id", "client"),
        ("redirect_uri", REDIRECT),
        ("scope", SCOPE),
        ("state", "st-1"),
    ]
}

/// Exchanges a fresh code and returns `(access, refresh)`.
async fn tokens(server: &MockServer, client: &HttpClient) -> (String, String) {
    let code = server.issue_authorization_code("client", REDIRECT, SCOPE);
    let answer = send(client, exchange_request(server, &code)).await;
    answer.assert_token("Bearer");
    (
        answer.str_field("access_token"),
        answer.str_field("refresh_token"),
    )
}

fn with_header(url: &str, name: &str, value: &str) -> Request<Full<Bytes>> {
    Request::get(url)
        .header(name, value)
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn urls_follow_the_document() {
    let server = started(MockServer::ioffice()).await;
    let base = server.base_url();
    let endpoints = concat!(
        "token=/external/api/oauth2/token authorize=/login.html ",
        "revocation=/external/api/oauth2/revoke direct_code=/external/api/oauth2/auth",
    );
    assert_endpoints(&server, MockDialect::Ioffice, endpoints);
    assert_eq!(
        server.api_url("/v2/users/me"),
        format!("{base}/external/api/rest/v2/users/me")
    );
}

#[tokio::test]
async fn login_redirects_with_the_code_in_the_fragment() {
    let (server, client) = started_with_client(MockServer::ioffice()).await;
    let url = with_query(&server.authorize_url().unwrap(), &login_params());
    let location = send(&client, get(&url)).await.location();

    assert!(location.starts_with(&format!("{REDIRECT}#code=")), "{location}");
    assert!(query_of(&location).is_empty(), "{location}");
    let fragment = fragment_of(&location);
    assert_eq!(fragment.len(), 3, "{fragment:?}");
    assert_eq!(fragment["state"], "st-1");
    assert!(!fragment["appCode"].is_empty());
    let code = &fragment["code"];
    assert_eq!(code.len(), 40);

    // The documented exchange, headers only.
    let answer = send(&client, exchange_request(&server, code)).await;
    answer.assert_token("Bearer");
    assert_eq!(
        answer.fields(),
        ["access_token", "expires_in", "refresh_token", "token_type"]
    );
    // One hour, in milliseconds.
    assert_eq!(answer.json()["expires_in"], 3_600_000);

    assert_counts(&server, "authorizations=1 authorization_code_grants=1");

    assert_counts(&server, "token_errors=0");
}

#[tokio::test]
async fn login_needs_all_five_parameters() {
    let (server, client) = started_with_client(MockServer::ioffice()).await;
    let all = login_params();
    for left_out in ["response_type", "client_id", "redirect_uri", "scope", "state"] {
        let params: Vec<_> = all
            .iter()
            .copied()
            .filter(|(name, _)| *name != left_out)
            .collect();
        let url = with_query(&server.authorize_url().unwrap(), &params);
        let answer = send(&client, get(&url)).await;
        answer.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    assert_eq!(server.counters().authorizations, 0);

    // Denials come back in the fragment too.
    server.deny_next_authorizations(1);
    let url = with_query(&server.authorize_url().unwrap(), &all);
    let fragment = fragment_of(&send(&client, get(&url)).await.location());
    assert_eq!(fragment["error"], "access_denied");
    assert_eq!(fragment["state"], "st-1");
    assert!(!fragment.contains_key("code"));
}

#[tokio::test]
async fn expires_in_is_in_milliseconds() {
    let builder = MockServer::ioffice();
    let (server, client) = started_with_client(builder.token_lifetime(Duration::from_millis(1500))).await;
    let code = server.issue_authorization_code("client", REDIRECT, SCOPE);
    let answer = send(&client, exchange_request(&server, &code)).await;
    assert_eq!(answer.assert_token("Bearer")["expires_in"], 1500);
}

#[tokio::test]
async fn form_bodies_and_body_parameters_are_rejected() {
    let (server, client) = started_with_client(MockServer::ioffice()).await;
    let code = server.issue_authorization_code("client", REDIRECT, SCOPE);
    let form = format!(
        "grant_type=authorization_code&redirect_uri={}&client_id=client&scope={SCOPE}&code={code}",
        encode(REDIRECT)
    );

    // An RFC 6749 form request.
    token_request(&client, &server, None, &form)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    // The right headers, but a form content type.
    let mut request = exchange_request(&server, &code);
    request.headers_mut().insert(CONTENT_TYPE, FORM.parse().unwrap());
    send(&client, request)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    // No content type at all.
    let mut request = exchange_request(&server, &code);
    request.headers_mut().remove(CONTENT_TYPE);
    send(&client, request)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    // Parameters in a JSON body instead of headers.
    let json = serde_json::json!({
        "x-grant-type": "authorization_code",
        "x-redirect-uri": REDIRECT,
        "x-client-id": "client",
        "x-scope": SCOPE,
        "x-auth-code": code,
    });
    let request = Request::post(server.token_url())
        .header(CONTENT_TYPE, JSON)
        .body(Full::new(Bytes::from(json.to_string())))
        .unwrap();
    send(&client, request)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    // The right headers with a form body alongside.
    let (mut parts, _) = exchange_request(&server, &code).into_parts();
    parts.headers.insert(CONTENT_TYPE, JSON.parse().unwrap());
    let request = Request::from_parts(parts, Full::new(Bytes::from(form.clone())));
    send(&client, request)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");

    // The code survived all of it; an empty JSON object is no parameter.
    let (parts, _) = exchange_request(&server, &code).into_parts();
    let request = Request::from_parts(parts, Full::new(Bytes::from_static(b"{}")));
    send(&client, request).await.assert_token("Bearer");

    // Grants are counted from x-grant-type only: not the form's grant_type,
    // nor the JSON body's.
    let counts = "token_requests=6 authorization_code_grants=4 token_errors=5";
    assert_counts(&server, counts);
}

#[tokio::test]
async fn refresh_tokens_rotate_three_times_in_a_row() {
    // iOFFICE's document fixes rotation: this cannot turn it off.
    let (server, client) = started_with_client(MockServer::ioffice().rotate_refresh_tokens(false)).await;
    let (_, mut refresh) = tokens(&server, &client).await;
    let mut seen = vec![refresh.clone()];

    for _ in 0..3 {
        let answer = send(&client, refresh_request(&server, &refresh)).await;
        answer.assert_token("Bearer");
        assert_eq!(answer.json()["expires_in"], 3_600_000);
        let next = answer.str_field("refresh_token");
        assert!(!seen.contains(&next));
        // The one just used is dead.
        send(&client, refresh_request(&server, &refresh))
            .await
            .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
        seen.push(next.clone());
        refresh = next;
    }

    assert_counts(&server, "authorization_code_grants=1 refresh_token_grants=6");

    assert_counts(&server, "token_errors=3");
    assert_eq!(server.active_access_tokens(), 4);
}

#[tokio::test]
async fn refresh_repeats_scope_redirect_uri_and_client() {
    let builder = MockServer::ioffice().client("client", "ignored-secret");
    let (server, client) = started_with_client(builder.client("other", "x")).await;
    let (_, refresh) = tokens(&server, &client).await;
    let headers = |scope: &str, redirect: &str, client_id: &str| {
        let changes = [
            ("x-redirect-uri", Some(redirect)),
            ("x-client-id", Some(client_id)),
            ("x-scope", Some(scope)),
        ];
        headers_request(&server, &edited(refresh_headers(&refresh), &changes))
    };
    send(&client, headers("profile", REDIRECT, "client"))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
    send(&client, headers(SCOPE, "https://app.example/other", "client"))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    send(&client, headers(SCOPE, REDIRECT, "other"))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    send(&client, headers(SCOPE, REDIRECT, "nobody"))
        .await
        .assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let missing = edited(refresh_headers(&refresh), &[("x-client-id", None)]);
    let missing = headers_request(&server, &missing);
    send(&client, missing)
        .await
        .assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let missing = edited(refresh_headers(&refresh), &[("x-redirect-uri", None)]);
    let missing = headers_request(&server, &missing);
    send(&client, missing)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");

    // No failure burnt the token; the secret is never asked for.
    send(&client, headers(SCOPE, REDIRECT, "client"))
        .await
        .assert_token("Bearer");
    assert_eq!(server.counters().token_errors, 6);
}

#[tokio::test]
async fn codes_are_single_use_and_bound_to_their_scope() {
    let (server, client) = started_with_client(MockServer::ioffice()).await;
    let code = server.issue_authorization_code("client", REDIRECT, SCOPE);
    let wrong_scope = edited(exchange_headers(&code), &[("x-scope", Some("everything"))]);
    let wrong_scope = headers_request(&server, &wrong_scope);
    send(&client, wrong_scope)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_scope");
    send(&client, exchange_request(&server, &code))
        .await
        .assert_token("Bearer");
    send(&client, exchange_request(&server, &code))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

#[tokio::test]
async fn codes_expire() {
    // Control: the default five minutes are plenty.
    let (server, client) = started_with_client(MockServer::ioffice()).await;
    let code = server.issue_authorization_code("client", REDIRECT, SCOPE);
    send(&client, exchange_request(&server, &code))
        .await
        .assert_token("Bearer");

    // A code that outlived its lifetime (zero here) is invalid_grant.
    let builder = MockServer::ioffice();
    let server = started(builder.authorization_code_lifetime(Duration::ZERO)).await;
    let code = server.issue_authorization_code("client", REDIRECT, SCOPE);
    let answer = send(&client, exchange_request(&server, &code)).await;
    answer.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(answer.json()["error_description"]
        .as_str()
        .unwrap()
        .contains("expired"));

    let url = with_query(&server.authorize_url().unwrap(), &login_params());
    let location = send(&client, get(&url)).await.location();
    let code = fragment_of(&location)["code"].clone();
    send(&client, exchange_request(&server, &code))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
}

fn direct_request(
    server: &MockServer,
    username: &str,
    password: &str,
    client_id: &str,
) -> Request<Full<Bytes>> {
    Request::post(server.direct_code_url().unwrap())
        .header(CONTENT_TYPE, JSON)
        .header("x-auth-username", username)
        .header("x-auth-password", password)
        .header("x-client-id", client_id)
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn direct_code_request() {
    let (server, client) = started_with_client(MockServer::ioffice().user("jdoe", "correct horse")).await;

    let answer = send(&client, direct_request(&server, "jdoe", "wrong", "client")).await;
    answer.assert_oauth_error(StatusCode::UNAUTHORIZED, "access_denied");
    let answer = send(
        &client,
        direct_request(&server, "alice", "alice-password", "client"),
    )
    .await;
    answer.assert_oauth_error(StatusCode::UNAUTHORIZED, "access_denied");
    let answer = send(
        &client,
        direct_request(&server, "jdoe", "correct horse", "nobody"),
    )
    .await;
    answer.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    let mut form = direct_request(&server, "jdoe", "correct horse", "client");
    form.headers_mut().insert(CONTENT_TYPE, FORM.parse().unwrap());
    send(&client, form)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(server.counters().authorizations, 0);

    let answer = send(
        &client,
        direct_request(&server, "jdoe", "correct horse", "client"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.fields(), ["code"]);
    let code = answer.str_field("code");

    // The exchange fixes the scope (and redirect URI) of such a code ...
    let answer = send(&client, exchange_request(&server, &code)).await;
    answer.assert_token("Bearer");
    let (access, refresh) = (
        answer.str_field("access_token"),
        answer.str_field("refresh_token"),
    );
    let api = send(
        &client,
        with_header(&server.api_url("/v2/users/me"), "x-access-token", &access),
    )
    .await;
    api.assert_described(serde_json::json!({"subject": "jdoe", "scope": SCOPE}));
    // ... and its refreshes must repeat them.
    let elsewhere = [("x-redirect-uri", Some("https://elsewhere.example/"))];
    let other_redirect = headers_request(&server, &edited(refresh_headers(&refresh), &elsewhere));
    send(&client, other_redirect)
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    send(&client, refresh_request(&server, &refresh))
        .await
        .assert_token("Bearer");

    assert_eq!(server.counters().authorizations, 1);
}

#[tokio::test]
async fn tokens_go_in_x_access_token_or_the_access_token_query() {
    let (server, client) = started_with_client(MockServer::ioffice()).await;
    let (access, _) = tokens(&server, &client).await;
    let url = server.api_url("/v2/users/me");

    let answer = send(&client, with_header(&url, "x-access-token", &access)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["placement"], "header:x-access-token");
    assert_eq!(answer.json()["client_id"], "client");
    let answer = send(&client, get(&format!("{url}?access_token={access}"))).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["placement"], "query:access_token");

    // Bearer is refused, even with a live token, even alongside a good one.
    let answer = send(&client, bearer_get(&url, &access)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let request = Request::get(&url)
        .header("x-access-token", &access)
        .header(AUTHORIZATION, format!("Bearer {access}"))
        .body(Full::default())
        .unwrap();
    assert_eq!(send(&client, request).await.status, StatusCode::UNAUTHORIZED);
    // Both placements at once is a bad request.
    let request = with_header(&format!("{url}?access_token={access}"), "x-access-token", &access);
    assert_eq!(send(&client, request).await.status, StatusCode::BAD_REQUEST);

    let counters = server.counters();
    assert_counts(&server, "resource_calls=5 resource_calls_authorized=2");
    assert_eq!(counters.resource_calls_by_status.get(&401), Some(&2));
}

fn revoke_request(server: &MockServer, token: Option<&str>) -> Request<Full<Bytes>> {
    let mut builder = Request::post(server.revocation_url().unwrap());
    if let Some(token) = token {
        builder = builder.header("x-token", token);
    }
    builder.body(Full::default()).unwrap()
}

#[tokio::test]
async fn revocation_with_x_token() {
    let (server, client) = started_with_client(MockServer::ioffice()).await;
    let url = server.api_url("/v2/users/me");
    let (first, refresh) = tokens(&server, &client).await;
    let (second, _) = tokens(&server, &client).await;

    // An access token.
    assert_eq!(
        send(&client, revoke_request(&server, Some(&first))).await.status,
        StatusCode::OK
    );
    let answer = send(&client, with_header(&url, "x-access-token", &first)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = send(&client, with_header(&url, "x-access-token", &second)).await;
    assert_eq!(answer.status, StatusCode::OK);

    // A refresh token: dead afterwards, and so are its grant's access tokens.
    let answer = send(&client, refresh_request(&server, &refresh)).await;
    answer.assert_token("Bearer");
    let (from_refresh, rotated) = (
        answer.str_field("access_token"),
        answer.str_field("refresh_token"),
    );
    assert_eq!(
        send(&client, revoke_request(&server, Some(&rotated)))
            .await
            .status,
        StatusCode::OK
    );
    send(&client, refresh_request(&server, &rotated))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    let answer = send(&client, with_header(&url, "x-access-token", &from_refresh)).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = send(&client, with_header(&url, "x-access-token", &second)).await;
    assert_eq!(answer.status, StatusCode::OK);

    // Unknown tokens are fine; no token is not.
    assert_eq!(
        send(&client, revoke_request(&server, Some("never-issued")))
            .await
            .status,
        StatusCode::OK
    );
    send(&client, revoke_request(&server, None))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");

    assert_eq!(server.counters().revocations, 3);
    assert_eq!(server.active_access_tokens(), 1);
}
