//! Helpers shared by the emulator tests (`tests/<provider>.rs`): a plain hyper
//! client over 127.0.0.1 and assertions on RFC 6749 answers.
#![allow(dead_code)]

use std::collections::HashMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tower_oauth2_mock::{MockDialect, MockServer, MockServerBuilder};

/// The server `builder` describes, started on a free loopback port.
pub async fn started(builder: MockServerBuilder) -> MockServer {
    builder.start().await.expect("the mock server starts")
}

/// The server `builder` describes, started, and a client to call it with.
pub async fn started_with_client(builder: MockServerBuilder) -> (MockServer, HttpClient) {
    (started(builder).await, http_client())
}

/// Asserts the counters named in `expected` (`"token_requests=1 token_errors=0"`).
#[track_caller]
pub fn assert_counts(server: &MockServer, expected: &str) {
    server.counters().assert(expected);
}

/// Asserts the dialect `server` speaks and its endpoints, each named in `expected` with
/// its path under the server's base URL (`"token=/oauth/token authorize=/authorize"`):
/// `token`, `authorize`, `revocation` and `direct_code`. Those not named must be absent.
#[track_caller]
pub fn assert_endpoints(server: &MockServer, dialect: MockDialect, expected: &str) {
    assert_eq!(server.dialect(), dialect);
    let base = server.base_url();
    let mut named: HashMap<&str, String> = HashMap::new();
    for pair in expected.split_whitespace() {
        let (name, path) = pair.split_once('=').expect("`name=path`");
        let known = ["token", "authorize", "revocation", "direct_code"];
        assert!(known.contains(&name), "unknown endpoint {name:?}");
        named.insert(name, format!("{base}{path}"));
    }
    assert_eq!(Some(server.token_url()), named.remove("token"), "token");
    assert_eq!(server.authorize_url(), named.remove("authorize"), "authorize");
    assert_eq!(server.revocation_url(), named.remove("revocation"), "revocation");
    assert_eq!(
        server.direct_code_url(),
        named.remove("direct_code"),
        "direct_code"
    );
}

/// Asserts that `GET` of each of `paths` under the server's base URL is `404 Not Found`.
pub async fn assert_not_found(client: &HttpClient, server: &MockServer, paths: &[&str]) {
    for path in paths {
        let answer = send(client, get(&format!("{}{path}", server.base_url()))).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
    }
}

pub const FORM: &str = "application/x-www-form-urlencoded";
pub const JSON: &str = "application/json";

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers
            .get(name)
            .map(|value| value.to_str().expect("ASCII header"))
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("a JSON body, got {:?}", self.body))
    }

    pub fn str_field(&self, name: &str) -> String {
        match &self.json()[name] {
            Value::String(value) => value.clone(),
            other => panic!("field {name:?} is not a string: {other:?}"),
        }
    }

    /// The names of the fields of a JSON object body, sorted.
    pub fn fields(&self) -> Vec<String> {
        let mut fields: Vec<String> = self
            .json()
            .as_object()
            .expect("a JSON object")
            .keys()
            .cloned()
            .collect();
        fields.sort();
        fields
    }

    /// Checks an RFC 6749 §5.2 error answer.
    #[track_caller]
    pub fn assert_oauth_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "body: {:?}", self.body);
        assert_eq!(self.header(CONTENT_TYPE), Some("application/json"));
        assert_eq!(self.header(CACHE_CONTROL), Some("no-store"));
        let body = self.json();
        assert_eq!(body["error"], code, "body: {body}");
        assert!(body["error_description"].is_string(), "body: {body}");
    }

    /// Checks an `invalid_client` error that challenges HTTP Basic: RFC 6749 §5.2's `401`
    /// with a `WWW-Authenticate` of the scheme the client tried.
    #[track_caller]
    pub fn assert_basic_challenge(&self) {
        self.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
        assert_eq!(self.header(WWW_AUTHENTICATE), Some(r#"Basic realm="mock""#));
    }

    /// Checks an RFC 6749 §5.1 success answer with this `token_type`, and
    /// returns its body.
    #[track_caller]
    pub fn assert_token(&self, token_type: &str) -> Value {
        assert_eq!(self.status, StatusCode::OK, "body: {:?}", self.body);
        assert_eq!(self.header(CONTENT_TYPE), Some("application/json"));
        assert_eq!(self.header(CACHE_CONTROL), Some("no-store"));
        let body = self.json();
        assert_eq!(body["token_type"], token_type, "body: {body}");
        let token = body["access_token"].as_str().expect("access_token");
        assert_eq!(token.len(), 40);
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()));
        body
    }

    /// Checks a `200` answer of the protected resource whose description of the token
    /// has each field of `expected` (an object) with its value.
    #[track_caller]
    pub fn assert_described(&self, expected: Value) {
        assert_eq!(self.status, StatusCode::OK, "body: {:?}", self.body);
        let description = self.json();
        for (field, value) in expected.as_object().expect("an object of fields") {
            assert_eq!(&description[field], value, "{field} in {description}");
        }
    }

    /// The `Location` of a `302` answer.
    #[track_caller]
    pub fn location(&self) -> String {
        assert_eq!(self.status, StatusCode::FOUND, "body: {:?}", self.body);
        self.header(LOCATION).expect("a Location header").to_owned()
    }
}

pub async fn send(client: &HttpClient, request: Request<Full<Bytes>>) -> Answer {
    let response = client.request(request).await.expect("HTTP exchange");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A form-encoded `POST` to the server's token endpoint, and its answer.
pub async fn token_request(
    client: &HttpClient,
    server: &MockServer,
    auth: Option<&str>,
    form: &str,
) -> Answer {
    send(client, form_post(&server.token_url(), auth, form)).await
}

/// The default client's authorization request parameters (RFC 6749 §4.1.1) for
/// `redirect_uri`, then `extra`.
pub fn code_request<'a>(redirect_uri: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", "client"),
        ("redirect_uri", redirect_uri),
    ];
    params.extend_from_slice(extra);
    params
}

/// Signs in at the server's authorization endpoint with `params`, checks that the
/// redirect goes back to their `redirect_uri` with the code first in the query, and
/// returns the code.
pub async fn sign_in_with(client: &HttpClient, server: &MockServer, params: &[(&str, &str)]) -> String {
    let authorize = server.authorize_url().expect("an authorization endpoint");
    let location = send(client, get(&with_query(&authorize, params)))
        .await
        .location();
    let (_, redirect_uri) = params
        .iter()
        .find(|(name, _)| *name == "redirect_uri")
        .expect("a redirect_uri");
    assert!(
        location.starts_with(&format!("{redirect_uri}?code=")),
        "{location}"
    );
    query_of(&location)["code"].clone()
}

/// The grant of the default client's plain token request.
pub const CLIENT_CREDENTIALS: &str = "grant_type=client_credentials";

/// A refresh token grant's form (RFC 6749 §6).
pub fn refresh_form(refresh_token: &str) -> String {
    format!("grant_type=refresh_token&refresh_token={refresh_token}")
}

/// An authorization code grant's form (RFC 6749 §4.1.3), with `redirect_uri` if given.
pub fn exchange_form(code: &str, redirect_uri: Option<&str>) -> String {
    let form = format!("grant_type=authorization_code&code={code}");
    match redirect_uri {
        Some(uri) => format!("{form}&redirect_uri={}", encode(uri)),
        None => form,
    }
}

/// `Authorization: Basic` for the client every server registers by default.
pub fn client_basic() -> String {
    basic("client", "secret")
}

/// `Authorization: Basic` for the default client with a wrong secret.
pub fn wrong_basic() -> String {
    basic("client", "wrong")
}

/// A token request of `form`, authenticated as the default client with HTTP Basic.
pub async fn token_as_client(client: &HttpClient, server: &MockServer, form: &str) -> Answer {
    token_request(client, server, Some(&client_basic()), form).await
}

/// `GET` of the resource at `path` with `Authorization: Bearer token`.
pub async fn bearer_call(client: &HttpClient, server: &MockServer, path: &str, token: &str) -> Answer {
    send(client, bearer_get(&server.api_url(path), token)).await
}

/// `Authorization: Basic` as RFC 6749 §2.3.1 wants it.
pub fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", encode(id), encode(secret)))
    )
}

/// One form-urlencoded component.
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A form-encoded `POST`, with an optional `Authorization` header.
pub fn form_post(url: &str, auth: Option<&str>, form: &str) -> Request<Full<Bytes>> {
    let mut builder = Request::post(url).header(CONTENT_TYPE, FORM);
    if let Some(auth) = auth {
        builder = builder.header(AUTHORIZATION, auth);
    }
    builder
        .body(Full::new(Bytes::from(form.to_owned())))
        .expect("request")
}

pub fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::default()).expect("request")
}

/// `GET url` with `Authorization: Bearer token`.
pub fn bearer_get(url: &str, token: &str) -> Request<Full<Bytes>> {
    Request::get(url)
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::default())
        .expect("request")
}

/// `url` with `params` as its query, form-urlencoded.
pub fn with_query(url: &str, params: &[(&str, &str)]) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("{url}?{query}")
}

fn decode_pairs(encoded: &str) -> HashMap<String, String> {
    form_urlencoded::parse(encoded.as_bytes())
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// The query parameters of a URL (none if it has no query), ignoring any
/// fragment.
pub fn query_of(url: &str) -> HashMap<String, String> {
    let without_fragment = url.split('#').next().unwrap_or_default();
    without_fragment
        .split_once('?')
        .map(|(_, query)| decode_pairs(query))
        .unwrap_or_default()
}

/// The parameters in a URL's fragment (none if it has none).
pub fn fragment_of(url: &str) -> HashMap<String, String> {
    url.split_once('#')
        .map(|(_, fragment)| decode_pairs(fragment))
        .unwrap_or_default()
}
