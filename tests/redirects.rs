//! Redirects never take a token to another origin or to plain http, through both stacks:
//! tower-http's `FollowRedirect` around or inside `OAuth2Layer`, and reqwest's own
//! redirects under `OAuth2Middleware`. Real HTTP between two servers on 127.0.0.1 (two
//! ports are two origins); the https-to-http downgrade through a stand-in client, as the
//! tests have no TLS.
//!
//! Each hazard the crate's policies guard against is pinned by a test that shows the
//! default policy leaking: those tests document the defaults, and fail the day a
//! default stops leaking.
#![cfg(all(feature = "hyper-transport", feature = "follow-redirect", feature = "reqwest"))]

use std::{
    convert::Infallible,
    io::Write,
    sync::{Arc, Mutex},
};

use axum::{extract::Request as AxumRequest, response::IntoResponse, Router};
use bytes::Bytes;
use http::{
    header::{AUTHORIZATION, LOCATION},
    HeaderName, Request, Response, StatusCode,
};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tower::{ServiceBuilder, ServiceExt};
use tower_http::follow_redirect::FollowRedirectLayer;
use tower_oauth2::{
    redirect, secret::RefreshToken, store::StoredTokens, transport::TokenRequest, BoxError, Credential,
    Credentials, MemoryStore, OAuth2Layer, Provider, ServiceBuilderExt, Subject, TokenPlacement,
    TokenTransport, UserCredentials,
};

// ===== Servers that record what they were sent =====

/// A request as a server received it.
#[derive(Debug, Clone)]
struct Seen {
    /// Path and query.
    uri: String,
    headers: http::HeaderMap,
}

impl Seen {
    /// Whether any token of these tests is in the URI or in any header.
    fn carries_a_token(&self) -> bool {
        self.uri.contains(SECRET)
            || self
                .headers
                .values()
                .any(|value| String::from_utf8_lossy(value.as_bytes()).contains(SECRET))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|value| value.to_str().unwrap())
    }
}

/// A server on 127.0.0.1 that records every request, and answers a request with a
/// `to` query parameter with a redirect there (`302`, or the status in `code`).
#[derive(Clone)]
struct Server {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    async fn start() -> Self {
        capture_logs();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = Arc::clone(&seen);
        let app = Router::new().fallback(move |req: AxumRequest| {
            let record = Arc::clone(&record);
            async move { answer(&record, req) }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { base, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A URL of this server that redirects to `to`.
    fn redirect(&self, path: &str, to: &str) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("to", to)
            .finish();
        format!("{}{path}?{query}", self.base)
    }

    /// [`redirect`](Self::redirect) with another status than 302.
    fn redirect_with(&self, code: u16, path: &str, to: &str) -> String {
        format!("{}&code={code}", self.redirect(path, to))
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The request this server received for `path`.
    fn seen_at(&self, path: &str) -> Seen {
        let seen = self.seen();
        let mut matching = seen
            .iter()
            .filter(|s| s.uri == path || s.uri.starts_with(&format!("{path}?")));
        let found = matching
            .next()
            .unwrap_or_else(|| panic!("no request for {path}: {seen:?}"));
        assert!(matching.next().is_none(), "two requests for {path}: {seen:?}");
        found.clone()
    }
}

fn answer(record: &Mutex<Vec<Seen>>, req: AxumRequest) -> axum::response::Response {
    let uri = req
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_default();
    record.lock().unwrap().push(Seen {
        uri,
        headers: req.headers().clone(),
    });
    let query = req.uri().query().unwrap_or_default();
    let param = |name: &str| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    match param("to") {
        Some(to) => {
            let code = param("code").and_then(|code| code.parse().ok()).unwrap_or(302);
            (StatusCode::from_u16(code).unwrap(), [(LOCATION, to)]).into_response()
        }
        None => "ok".into_response(),
    }
}

// ===== Credentials =====

/// Every token of these tests contains this.
const SECRET: &str = "SECRET";
const APP_TOKEN: &str = "app-SECRET-token";
const USER_TOKEN: &str = "user-SECRET-token";

const X_ACCESS_TOKEN: HeaderName = HeaderName::from_static("x-access-token");

/// A token endpoint that answers the application's grant with [`APP_TOKEN`] and a
/// refresh (a user's) with [`USER_TOKEN`].
fn token_endpoint() -> TokenTransport {
    capture_logs();
    TokenTransport::new(tower::service_fn(|req: TokenRequest| async move {
        let body = req.into_body().collect().await?.to_bytes();
        let token = match String::from_utf8_lossy(&body).contains("grant_type=refresh_token") {
            true => USER_TOKEN,
            false => APP_TOKEN,
        };
        let json = format!(r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":3600}}"#);
        Ok::<_, BoxError>(Response::new(Full::new(Bytes::from(json))))
    }))
}

/// The placements of the providers: `Authorization: Bearer`, iOFFICE's header, and
/// the two query parameters of Accelo and RFC 6750.
fn placements() -> Vec<TokenPlacement> {
    vec![
        TokenPlacement::AuthorizationBearer,
        TokenPlacement::Header(X_ACCESS_TOKEN),
        TokenPlacement::Query("access_token".into()),
        TokenPlacement::Query("_bearer_token".into()),
    ]
}

/// A provider of a name no other test uses: warnings are told apart by it (a port of
/// one test's server may be another's later).
fn provider(api: &Server, placement: &TokenPlacement) -> Provider {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Provider::standard("http://127.0.0.1:9/token")
        .name(format!("provider-{n}"))
        .api(api.base.clone())
        .token_placement(placement.clone())
}

fn app_credentials(api: &Server, placement: &TokenPlacement) -> Credentials {
    Credentials::builder()
        .credential(Credential::client_credentials(
            provider(api, placement),
            "client",
            "secret",
        ))
        .transport(token_endpoint())
        .build()
        .unwrap()
}

/// Where `placement` puts [`APP_TOKEN`], as the server sees it: present or not.
fn has_app_token(seen: &Seen, placement: &TokenPlacement) -> bool {
    match placement {
        TokenPlacement::AuthorizationBearer => {
            seen.header("authorization") == Some(&format!("Bearer {APP_TOKEN}")[..])
        }
        TokenPlacement::Header(name) => seen.header(name.as_str()) == Some(APP_TOKEN),
        TokenPlacement::Query(name) => seen.uri.contains(&format!("{name}={APP_TOKEN}")),
        _ => unreachable!(),
    }
}

/// No token, and none of the headers or parameters a token is carried in.
fn assert_no_token(seen: &Seen, what: &str) {
    assert!(!seen.carries_a_token(), "{what}: {seen:?}");
    assert!(seen.header("authorization").is_none(), "{what}: {seen:?}");
    assert!(seen.header("x-access-token").is_none(), "{what}: {seen:?}");
    assert!(!seen.uri.contains("access_token="), "{what}: {seen:?}");
    assert!(!seen.uri.contains("_bearer_token="), "{what}: {seen:?}");
    if let Some(referer) = seen.header("referer") {
        assert!(!referer.contains("access_token="), "{what}: {seen:?}");
    }
}

// ===== The tower stack =====

type Hyper = Client<HttpConnector, Full<Bytes>>;

fn hyper() -> Hyper {
    Client::builder(TokioExecutor::new()).build_http()
}

fn get(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::default()).unwrap()
}

/// Sends `req` through `FollowRedirect` with `policy` *inside* the layer.
async fn tower_inside<P>(credentials: &Credentials, policy: P, req: Request<Full<Bytes>>) -> StatusCode
where
    P: tower_http::follow_redirect::policy::Policy<Full<Bytes>, hyper_util::client::legacy::Error>
        + Clone
        + Send
        + 'static,
{
    let client = ServiceBuilder::new()
        .layer(OAuth2Layer::new(credentials.clone()))
        .layer(FollowRedirectLayer::with_policy(policy))
        .service(hyper());
    client.oneshot(req).await.unwrap().status()
}

#[tokio::test]
async fn tower_standard_policy_inside_the_layer_sends_a_header_token_to_another_origin() {
    // The hazard, as tower-http's defaults have it.
    let (api, other) = (Server::start().await, Server::start().await);
    let placement = TokenPlacement::Header(X_ACCESS_TOKEN);
    let credentials = app_credentials(&api, &placement);
    let standard = tower_http::follow_redirect::policy::Standard::default();
    let status = tower_inside(
        &credentials,
        standard,
        get(&api.redirect("/moved", &other.url("/land"))),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(other.seen_at("/land").header("x-access-token"), Some(APP_TOKEN));
}

#[tokio::test]
async fn tower_standard_policy_inside_the_layer_sends_authorization_again_from_the_second_hop() {
    // `FilterCredentials` compares each hop with the one before, on headers copied from
    // the first request: `api → other/a → other/b` sends the token to other/b.
    let (api, other) = (Server::start().await, Server::start().await);
    let placement = TokenPlacement::AuthorizationBearer;
    let credentials = app_credentials(&api, &placement);
    let chain = api.redirect("/moved", &other.redirect("/a", &other.url("/b")));
    let standard = tower_http::follow_redirect::policy::Standard::default();
    assert_eq!(tower_inside(&credentials, standard, get(&chain)).await, 200);
    assert!(other.seen_at("/a").header("authorization").is_none());
    assert_eq!(
        other.seen_at("/b").header("authorization"),
        Some(&format!("Bearer {APP_TOKEN}")[..])
    );
}

#[tokio::test]
async fn tower_policy_inside_the_layer_keeps_every_placement_off_other_origins() {
    for placement in placements() {
        let (api, other) = (Server::start().await, Server::start().await);
        let credentials = app_credentials(&api, &placement);
        // api → other/a (307) → other/b → api/back: two hops at the other origin, then
        // back where the chain started.
        let chain = api.redirect_with(
            307,
            "/moved",
            &other.redirect("/a", &other.redirect("/b", &api.url("/back"))),
        );
        let policy = redirect::policy(&credentials);
        assert_eq!(
            tower_inside(&credentials, policy, get(&chain)).await,
            200,
            "{placement:?}"
        );
        assert!(has_app_token(&api.seen_at("/moved"), &placement), "{placement:?}");
        assert_eq!(other.seen().len(), 2, "{placement:?}");
        for seen in other.seen() {
            assert_no_token(&seen, &format!("{placement:?} at the other origin"));
        }
        // Once the chain has left, the token stays off for the rest of it.
        assert_no_token(&api.seen_at("/back"), &format!("{placement:?} back"));
    }
}

#[tokio::test]
async fn tower_policy_removes_token_parameters_a_location_carries_to_another_origin() {
    let (api, other) = (Server::start().await, Server::start().await);
    let placement = TokenPlacement::Query("access_token".into());
    let credentials = app_credentials(&api, &placement);
    let location = format!(
        "{}?keep=1&access_token={APP_TOKEN}&_bearer_token=x",
        other.url("/land")
    );
    let status = tower_inside(
        &credentials,
        redirect::policy(&credentials),
        get(&api.redirect("/moved", &location)),
    )
    .await;
    assert_eq!(status, 200);
    // `access_token` is the registry's parameter; `_bearer_token` is no provider's here.
    assert_eq!(other.seen_at("/land").uri, "/land?keep=1&_bearer_token=x");
}

#[tokio::test]
async fn tower_policy_inside_the_layer_keeps_the_token_on_same_origin_hops() {
    for placement in [
        TokenPlacement::AuthorizationBearer,
        TokenPlacement::Header(X_ACCESS_TOKEN),
    ] {
        let api = Server::start().await;
        let credentials = app_credentials(&api, &placement);
        let chain = api.redirect("/moved", &api.url("/land"));
        let status = tower_inside(&credentials, redirect::policy(&credentials), get(&chain)).await;
        assert_eq!(status, 200);
        assert!(has_app_token(&api.seen_at("/land"), &placement), "{placement:?}");
    }
}

#[tokio::test]
async fn tower_follow_redirect_outside_the_layer_attaches_only_on_the_token_origin() {
    for placement in placements() {
        let (api, other) = (Server::start().await, Server::start().await);
        let credentials = app_credentials(&api, &placement);
        let client = ServiceBuilder::new()
            .oauth2_follow_redirects(credentials.clone())
            .service(hyper());
        // api → api/next → other/a → api/back: each hop through the layer.
        let chain = api.redirect(
            "/moved",
            &api.redirect("/next", &other.redirect("/a", &api.url("/back"))),
        );
        let response = client.oneshot(get(&chain)).await.unwrap();
        assert_eq!(response.status(), 200, "{placement:?}");
        for path in ["/moved", "/next", "/back"] {
            assert!(
                has_app_token(&api.seen_at(path), &placement),
                "{placement:?} {path}"
            );
        }
        assert_no_token(&other.seen_at("/a"), &format!("{placement:?}"));
    }
}

#[tokio::test]
async fn tower_follow_redirect_outside_the_layer_goes_on_acting_for_the_user() {
    let api = Server::start().await;
    let placement = TokenPlacement::AuthorizationBearer;
    let store = Arc::new(MemoryStore::new());
    let credentials = Credentials::builder()
        .credential(Credential::client_credentials(
            provider(&api, &placement),
            "client",
            "secret",
        ))
        .users(UserCredentials::new(
            provider(&api, &placement).name("users"),
            "client",
            Some("secret".into()),
        ))
        .store(Arc::clone(&store))
        .transport(token_endpoint())
        .build()
        .unwrap();
    let key = credentials.user_key("users", "alice").unwrap();
    let stored = StoredTokens::new().with_refresh_token(RefreshToken::new("alice-refresh"));
    tower_oauth2::TokenStore::save(&*store, &key, &stored)
        .await
        .unwrap();
    let bearer = |token: &str| format!("Bearer {token}");

    let as_alice = |url: &str| {
        let mut req = get(url);
        req.extensions_mut().insert(Subject::new("alice"));
        req
    };
    // tower-http's standard policy: the hop is a new request without the `Subject`,
    // so the layer gives it the application's token.
    let client = ServiceBuilder::new()
        .layer(FollowRedirectLayer::new())
        .oauth2(credentials.clone())
        .service(hyper());
    let response = client
        .oneshot(as_alice(&api.redirect("/s/moved", &api.url("/s/land"))))
        .await;
    assert_eq!(response.unwrap().status(), 200);
    assert_eq!(
        api.seen_at("/s/moved").header("authorization"),
        Some(&bearer(USER_TOKEN)[..])
    );
    assert_eq!(
        api.seen_at("/s/land").header("authorization"),
        Some(&bearer(APP_TOKEN)[..])
    );

    // The crate's policy puts the `Subject` back on each hop.
    let client = ServiceBuilder::new()
        .oauth2_follow_redirects(credentials.clone())
        .service(hyper());
    let response = client
        .oneshot(as_alice(&api.redirect("/p/moved", &api.url("/p/land"))))
        .await;
    assert_eq!(response.unwrap().status(), 200);
    assert_eq!(
        api.seen_at("/p/moved").header("authorization"),
        Some(&bearer(USER_TOKEN)[..])
    );
    assert_eq!(
        api.seen_at("/p/land").header("authorization"),
        Some(&bearer(USER_TOKEN)[..])
    );
}

/// A stand-in for an https client: `https://api.example.com/moved` redirects to
/// `http://api.example.com/a`, which redirects to `http://api.example.com/b`.
#[derive(Clone, Default)]
struct Downgrading {
    seen: Arc<Mutex<Vec<(String, bool)>>>,
}

impl tower::Service<Request<Full<Bytes>>> for Downgrading {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Full<Bytes>>) -> Self::Future {
        let uri = req.uri().to_string();
        self.seen
            .lock()
            .unwrap()
            .push((uri.clone(), req.headers().contains_key(AUTHORIZATION)));
        let next = match uri.as_str() {
            "https://api.example.com/moved" => Some("http://api.example.com/a"),
            "http://api.example.com/a" => Some("http://api.example.com/b"),
            _ => None,
        };
        let response = match next {
            Some(next) => Response::builder().status(302).header(LOCATION, next),
            None => Response::builder(),
        };
        std::future::ready(Ok(response.body(Full::default()).unwrap()))
    }
}

#[tokio::test]
async fn tower_policy_inside_the_layer_never_sends_the_token_over_a_downgrade() {
    let provider = Provider::standard("https://auth.example.com/token").api("https://api.example.com");
    let credentials = Credentials::builder()
        .credential(Credential::client_credentials(provider, "client", "secret"))
        .transport(token_endpoint())
        .build()
        .unwrap();
    let run = |policy_is_ours: bool| {
        let credentials = credentials.clone();
        async move {
            let inner = Downgrading::default();
            let req = get("https://api.example.com/moved");
            let response = match policy_is_ours {
                false => ServiceBuilder::new()
                    .layer(OAuth2Layer::new(credentials.clone()))
                    .layer(FollowRedirectLayer::new())
                    .service(inner.clone())
                    .oneshot(req)
                    .await
                    .unwrap(),
                true => ServiceBuilder::new()
                    .layer(OAuth2Layer::new(credentials.clone()))
                    .layer(FollowRedirectLayer::with_policy(redirect::policy(&credentials)))
                    .service(inner.clone())
                    .oneshot(req)
                    .await
                    .unwrap(),
            };
            assert_eq!(response.status(), 200);
            let seen = inner.seen.lock().unwrap().clone();
            seen
        }
    };
    let expected = |b_has_token: bool| {
        vec![
            ("https://api.example.com/moved".to_owned(), true),
            ("http://api.example.com/a".to_owned(), false),
            ("http://api.example.com/b".to_owned(), b_has_token),
        ]
    };
    // tower-http's standard policy: plain http gets the token on the second hop.
    assert_eq!(run(false).await, expected(true));
    assert_eq!(run(true).await, expected(false));
}

// ===== The reqwest stack =====

fn reqwest_client(
    credentials: &Credentials,
    http: reqwest::ClientBuilder,
) -> reqwest_middleware::ClientWithMiddleware {
    // No proxy from the environment: every request goes straight to 127.0.0.1.
    let http = http.no_proxy().build().unwrap();
    reqwest_middleware::ClientBuilder::new(http)
        .with(tower_oauth2::reqwest::OAuth2Middleware::new(credentials.clone()))
        .build()
}

fn with_policy(credentials: &Credentials) -> reqwest_middleware::ClientWithMiddleware {
    let http = reqwest::Client::builder().redirect(tower_oauth2::reqwest::redirect_policy(credentials));
    reqwest_client(credentials, http)
}

fn reqwest_default(credentials: &Credentials) -> reqwest_middleware::ClientWithMiddleware {
    reqwest_client(credentials, reqwest::Client::builder())
}

#[tokio::test]
async fn reqwest_default_policy_sends_a_header_token_to_another_origin() {
    let (api, other) = (Server::start().await, Server::start().await);
    let credentials = app_credentials(&api, &TokenPlacement::Header(X_ACCESS_TOKEN));
    let url = api.redirect("/moved", &other.url("/land"));
    let response = reqwest_default(&credentials).get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(other.seen_at("/land").header("x-access-token"), Some(APP_TOKEN));
}

#[tokio::test]
async fn reqwest_default_policy_sends_a_query_token_to_another_origin_in_the_referer() {
    for name in ["access_token", "_bearer_token"] {
        let (api, other) = (Server::start().await, Server::start().await);
        let credentials = app_credentials(&api, &TokenPlacement::Query(name.into()));
        let url = api.redirect("/moved", &other.url("/land"));
        let response = reqwest_default(&credentials).get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let referer = other.seen_at("/land").header("referer").unwrap().to_owned();
        assert!(referer.contains(&format!("{name}={APP_TOKEN}")), "{referer}");
    }
}

#[tokio::test]
async fn reqwest_default_policy_sends_authorization_again_from_the_second_hop() {
    let (api, other) = (Server::start().await, Server::start().await);
    let credentials = app_credentials(&api, &TokenPlacement::AuthorizationBearer);
    let chain = api.redirect("/moved", &other.redirect("/a", &other.url("/b")));
    let response = reqwest_default(&credentials).get(&chain).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(other.seen_at("/a").header("authorization").is_none());
    assert_eq!(
        other.seen_at("/b").header("authorization"),
        Some(&format!("Bearer {APP_TOKEN}")[..])
    );
}

#[tokio::test]
async fn reqwest_policy_returns_the_redirect_instead_of_leaving_the_token_origin() {
    for placement in placements() {
        for code in [302, 307] {
            let (api, other) = (Server::start().await, Server::start().await);
            let credentials = app_credentials(&api, &placement);
            let client = with_policy(&credentials);
            // A hop within the origin first, then one to the other origin.
            let land = other.url("/land");
            let chain = api.redirect("/moved", &api.redirect_with(code, "/next", &land));
            let response = client.get(&chain).send().await.unwrap();
            assert_eq!(response.status().as_u16(), code, "{placement:?}");
            assert_eq!(response.headers()[LOCATION], land, "{placement:?}");
            assert!(other.seen().is_empty(), "{placement:?}: {:?}", other.seen());
            assert_eq!(api.seen().len(), 2, "{placement:?}");
            assert!(has_app_token(&api.seen_at("/moved"), &placement), "{placement:?}");
        }
    }
}

#[tokio::test]
async fn reqwest_policy_follows_redirects_within_the_token_origin() {
    for placement in placements() {
        let api = Server::start().await;
        let credentials = app_credentials(&api, &placement);
        let chain = api.redirect("/moved", &api.url("/land"));
        let response = with_policy(&credentials).get(&chain).send().await.unwrap();
        assert_eq!(response.status(), 200, "{placement:?}");
        assert_eq!(response.text().await.unwrap(), "ok");
        let land = api.seen_at("/land");
        match placement {
            // reqwest sends the hop with the first request's headers.
            TokenPlacement::AuthorizationBearer | TokenPlacement::Header(_) => {
                assert!(has_app_token(&land, &placement), "{placement:?}");
            }
            // The hop's URL is the `Location`; the token went in the first URL only.
            _ => assert!(!land.uri.contains(SECRET), "{placement:?}"),
        }
    }
}

#[tokio::test]
async fn reqwest_policy_follows_redirects_of_requests_without_tokens() {
    let (api, other, third) = (
        Server::start().await,
        Server::start().await,
        Server::start().await,
    );
    let credentials = app_credentials(&api, &TokenPlacement::AuthorizationBearer);
    let chain = other.redirect("/moved", &third.url("/land"));
    let response = with_policy(&credentials).get(&chain).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(third.seen().len(), 1);
    assert!(api.seen().is_empty());
}

// ===== Warnings =====

/// Everything logged at `WARN` or above by any test of this file.
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Logs;

impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the one subscriber of this file, before any test sends a request (every
/// test builds its credentials first). One global subscriber rather than one per test:
/// `tracing` caches whether a log line is wanted per call site, across threads, and a
/// per-thread subscriber of one test can miss a line whose call site another test's
/// thread saw first.
fn capture_logs() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(|| Logs)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

/// The lines logged so far about `credentials` (by their provider's name, which no
/// other test uses) that mention `origin`.
fn warnings_about(credentials: &Credentials, origin: &str) -> Vec<String> {
    let provider = format!("credential={}/", credentials.keys()[0].provider());
    let logs = String::from_utf8(LOGS.lock().unwrap().clone()).unwrap();
    logs.lines()
        .filter(|line| line.contains(&provider) && line.contains(origin))
        .map(str::to_owned)
        .collect()
}

fn assert_names_only_origins(warning: &str, other: &Server) {
    assert!(warning.contains(&other.base), "{warning}");
    assert!(!warning.contains(SECRET), "{warning}");
    assert!(!warning.contains("/land"), "{warning}");
    assert!(!warning.contains("access_token"), "{warning}");
}

#[tokio::test]
async fn tower_layer_warns_once_when_a_redirect_inside_it_left_the_token_origin() {
    let (api, other) = (Server::start().await, Server::start().await);
    let credentials = app_credentials(&api, &TokenPlacement::Query("access_token".into()));
    let standard = tower_http::follow_redirect::policy::Standard::default();
    for _ in 0..3 {
        let url = api.redirect("/moved", &other.url("/land"));
        assert_eq!(tower_inside(&credentials, standard.clone(), get(&url)).await, 200);
    }
    // Same-origin redirects are not reported.
    let url = api.redirect("/moved", &api.url("/here"));
    assert_eq!(tower_inside(&credentials, standard.clone(), get(&url)).await, 200);
    let warnings = warnings_about(&credentials, &other.base);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("WARN"), "{warnings:?}");
    assert!(warnings[0].contains("inside OAuth2Layer"), "{warnings:?}");
    assert_names_only_origins(&warnings[0], &other);
    assert_eq!(
        warnings_about(&credentials, &format!("{}/here", api.base)),
        Vec::<String>::new()
    );

    // With the crate's policy built for the credentials: no warning.
    let (api, other) = (Server::start().await, Server::start().await);
    let credentials = app_credentials(&api, &TokenPlacement::Header(X_ACCESS_TOKEN));
    let policy = redirect::policy(&credentials);
    let url = api.redirect("/moved", &other.url("/land"));
    assert_eq!(tower_inside(&credentials, policy, get(&url)).await, 200);
    assert_eq!(warnings_about(&credentials, &other.base), Vec::<String>::new());
}

#[tokio::test]
async fn reqwest_middleware_warns_once_when_reqwest_followed_the_token_away() {
    let (api, other) = (Server::start().await, Server::start().await);
    let credentials = app_credentials(&api, &TokenPlacement::Query("access_token".into()));
    let client = reqwest_default(&credentials);
    for _ in 0..3 {
        let url = api.redirect("/moved", &other.url("/land"));
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    }
    let url = api.redirect("/moved", &api.url("/here"));
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let warnings = warnings_about(&credentials, &other.base);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("reqwest followed a redirect"),
        "{warnings:?}"
    );
    assert!(
        warnings[0].contains(&format!("from={}", api.base)),
        "{warnings:?}"
    );
    assert_names_only_origins(&warnings[0], &other);
    assert_eq!(warnings_about(&credentials, &api.base).len(), 1);

    let (api, other) = (Server::start().await, Server::start().await);
    let credentials = app_credentials(&api, &TokenPlacement::Query("access_token".into()));
    let url = api.redirect("/moved", &other.url("/land"));
    let response = with_policy(&credentials).get(&url).send().await.unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(warnings_about(&credentials, &other.base), Vec::<String>::new());
}

#[test]
fn the_policy_debug_names_what_it_removes_and_no_secret() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let _context = rt.enter();
    let api = Server {
        base: "http://127.0.0.1:1".into(),
        seen: Arc::default(),
    };
    let credentials = Credentials::builder()
        .credential(Credential::client_credentials(
            provider(&api, &TokenPlacement::Header(X_ACCESS_TOKEN)),
            "client",
            "secret-SECRET",
        ))
        .users(UserCredentials::new(
            provider(&api, &TokenPlacement::Query("_bearer_token".into())).name("users"),
            "client",
            Some("secret-SECRET".into()),
        ))
        .transport(token_endpoint())
        .build()
        .unwrap();
    let debug = format!("{:?}", redirect::policy(&credentials).max_redirects(5));
    assert_eq!(
        debug,
        r#"RedirectPolicy { max_redirects: 5, headers: ["authorization", "cookie", "proxy-authorization", "x-access-token"], query: ["_bearer_token"], left_origin: false }"#
    );
}
