//! The login routes against the attacks on them: a login completed in another browser
//! (login CSRF), a flood of logins by one user, provider prose and markup on error
//! pages, hostile `Cookie` headers, and log lines forged through the subject.
//!
//! The browser side goes through the axum `Router` with `oneshot`, with a cookie jar;
//! the provider is the crate's emulator on 127.0.0.1 where a real consent matters, and
//! an in-process token endpoint where its answer is the point.
#![cfg(all(feature = "hyper-transport", feature = "axum"))]

mod support;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use axum::{body::Body, Router};
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use support::{
    jar::Jar,
    logs::Captured,
    mock::{assert_counts, started},
    no_jitter,
};
use tower::ServiceExt;
use tower_oauth2::{
    axum::LoginRoutes,
    store::{MemoryStore, TokenStore},
    CodeDelivery, CredentialRegistry, Provider, RefreshPolicy, TokenTransport, UserCredentialTemplate,
};
use tower_oauth2_mock::MockServer;

const APP: &str = "http://app.test/oauth";

// ===== the application and its browsers =====

/// The application: its session is the `x-user` header (`%0A` decoded, so a test can
/// hand it a subject with a newline).
fn app_with(credentials: &CredentialRegistry, routes: impl FnOnce(LoginRoutes) -> LoginRoutes) -> Router {
    let login = LoginRoutes::new(credentials.clone(), APP, |parts| {
        parts
            .headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .map(|user| user.replace("%0A", "\n"))
    })
    .after_login("/home");
    Router::new().nest("/oauth", routes(login).into_router())
}

fn app(credentials: &CredentialRegistry) -> Router {
    app_with(credentials, |routes| routes)
}

/// A GET from a browser whose cookies are `jar` (which keeps what the answer sets),
/// logged in to the application as `user`.
async fn browse(app: &Router, uri: &str, user: Option<&str>, jar: &mut Jar) -> Response<Body> {
    let mut request = Request::get(uri);
    if let Some(user) = user {
        request = request.header("x-user", user);
    }
    if let Some(cookies) = jar.header_for(uri) {
        request = request.header(header::COOKIE, cookies);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    jar.absorb(&response);
    response
}

/// A GET with exactly these `Cookie` headers.
async fn with_cookies(app: &Router, uri: &str, user: &str, cookies: Vec<HeaderValue>) -> Response<Body> {
    let mut request = Request::get(uri).header("x-user", user);
    for cookie in cookies {
        request = request.header(header::COOKIE, cookie);
    }
    app.clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

fn location<B>(response: &Response<B>) -> String {
    response.headers()[header::LOCATION].to_str().unwrap().to_owned()
}

fn param(url: &str, name: &str) -> String {
    let query = url.split_once(['?', '#']).unwrap().1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

async fn body(response: Response<Body>) -> String {
    String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

fn http() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

// ===== the emulator: a real consent =====

async fn agrello() -> MockServer {
    let builder = MockServer::agrello().client("agrello-app", "agrello-secret");
    started(builder.user("alice", "alice-pw").user("mallory", "mallory-pw")).await
}

fn agrello_users(server: &MockServer) -> UserCredentialTemplate {
    UserCredentialTemplate::new(server.provider(), "agrello-app", Some("agrello-secret".into()))
        .redirect_uri(format!("{APP}/callback/agrello"))
        .refresh_policy(
            RefreshPolicy::default()
                .random(no_jitter)
                .timeout(Duration::from_secs(5)),
        )
}

/// The provider's authorize page, signed in as `provider_user`: the callback URL it
/// redirects the browser to, as a path of the app (`/oauth/callback/...?code=...`).
async fn consent(authorization_url: &str, provider_user: &str) -> String {
    let authorize = format!("{authorization_url}&login_hint={provider_user}");
    let answer = http()
        .request(Request::get(authorize).body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FOUND);
    let back = location(&answer);
    format!("/oauth{}", back.strip_prefix(APP).unwrap())
}

async fn stored(store: &MemoryStore, credentials: &CredentialRegistry, subject: &str) -> bool {
    let key = credentials.user_key("agrello", subject).unwrap();
    store.load(&key).await.unwrap().is_some()
}

// ===== the in-process provider: its answers are the point =====

/// A token endpoint answering every code exchange with `answer` (status, JSON body),
/// counting them.
#[derive(Clone)]
struct Endpoint {
    exchanges: Arc<AtomicUsize>,
    answer: Arc<Mutex<(StatusCode, String)>>,
}

impl Endpoint {
    fn issuing_tokens() -> Self {
        Self {
            exchanges: Arc::default(),
            answer: Arc::new(Mutex::new((
                StatusCode::OK,
                r#"{"access_token":"at-1","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-1"}"#
                    .to_owned(),
            ))),
        }
    }

    fn answering(&self, status: StatusCode, body: &str) {
        *self.answer.lock().unwrap() = (status, body.to_owned());
    }

    fn exchanges(&self) -> usize {
        self.exchanges.load(Ordering::SeqCst)
    }

    fn transport(&self) -> TokenTransport {
        let endpoint = self.clone();
        TokenTransport::new(tower::service_fn(move |_: Request<Full<Bytes>>| {
            let endpoint = endpoint.clone();
            async move {
                endpoint.exchanges.fetch_add(1, Ordering::SeqCst);
                let (status, body) = endpoint.answer.lock().unwrap().clone();
                Ok::<_, std::convert::Infallible>(
                    Response::builder()
                        .status(status)
                        .header(header::CONTENT_TYPE, "application/json")
                        .body(Full::new(Bytes::from(body)))
                        .unwrap(),
                )
            }
        }))
    }

    fn credentials(&self, delivery: CodeDelivery) -> CredentialRegistry {
        let provider = Provider::standard("https://idp.example.com/token")
            .name("idp")
            .authorize_url("https://idp.example.com/authorize")
            .code_delivery(delivery)
            .api("https://api.example.com");
        CredentialRegistry::builder()
            .users(UserCredentialTemplate::new(
                provider,
                "app",
                Some("app-secret".into()),
            ))
            .transport(self.transport())
            .build()
            .unwrap()
    }
}

/// Starts a login at the in-process provider in `jar`'s browser: its `state`.
async fn start(app: &Router, user: &str, jar: &mut Jar) -> String {
    let started = browse(app, "/oauth/login/idp", Some(user), jar).await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    param(&location(&started), "state")
}

// ===== the login belongs to the browser that started it =====

#[tokio::test]
async fn the_browser_that_started_a_login_completes_it_and_its_cookie_is_cleared() {
    let server = agrello().await;
    let store = Arc::new(MemoryStore::new());
    let credentials = CredentialRegistry::builder()
        .users(agrello_users(&server))
        .store(Arc::clone(&store))
        .build()
        .unwrap();
    let app = app(&credentials);
    let mut jar = Jar::new();

    let started = browse(&app, "/oauth/login/agrello", Some("alice"), &mut jar).await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    assert_eq!(started.headers()[header::CACHE_CONTROL], "no-store");
    let cookie = match jar.cookies() {
        [cookie] => cookie.clone(),
        other => panic!("one login cookie expected: {other:?}"),
    };
    assert_eq!(cookie.path, "/oauth/callback/agrello");
    assert_eq!(
        cookie.attributes,
        ["Max-Age=600", "HttpOnly", "SameSite=Lax"],
        "http public base: not Secure"
    );
    assert_eq!(cookie.value.len(), 43, "32 random bytes, base64url");
    let state = param(&location(&started), "state");
    assert!(!cookie.name.contains(&state) && !cookie.value.contains(&state));

    let callback = consent(&location(&started), "alice").await;
    let done = browse(&app, &callback, Some("alice"), &mut jar).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&done), "/home");
    assert_eq!(done.headers()[header::CACHE_CONTROL], "no-store");
    assert!(jar.is_empty(), "the callback clears the cookie: {jar:?}");
    assert_eq!(server.counters().authorization_code_grants, 1);
    assert!(stored(&store, &credentials, "alice").await);
}

#[tokio::test]
async fn login_csrf_a_link_completed_in_another_browser_is_refused_and_nothing_is_exchanged() {
    let server = agrello().await;
    let store = Arc::new(MemoryStore::new());
    let credentials = CredentialRegistry::builder()
        .users(agrello_users(&server))
        .store(Arc::clone(&store))
        .build()
        .unwrap();
    let app = app(&credentials);

    // The victim follows the attacker's link with no session, then with their own.
    for victim_session in [None, Some("alice")] {
        // Mallory starts a login in her browser, with her session, and sends the link.
        let mut mallory = Jar::new();
        let started = browse(&app, "/oauth/login/agrello", Some("mallory"), &mut mallory).await;
        assert_eq!(started.status(), StatusCode::SEE_OTHER);
        // Alice signs in at the provider and is sent back, in her own browser.
        let callback = consent(&location(&started), "alice").await;
        let mut alice = Jar::new();
        let refused = browse(&app, &callback, victim_session, &mut alice).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{victim_session:?}");
        // Were alice's code to leak to mallory, it is too late: the login is spent.
        let replayed = browse(&app, &callback, Some("mallory"), &mut mallory).await;
        assert_eq!(replayed.status(), StatusCode::BAD_REQUEST, "{victim_session:?}");
    }
    assert_counts(&server, "authorization_code_grants=0 token_requests=0");
    assert!(!stored(&store, &credentials, "mallory").await);
    assert!(!stored(&store, &credentials, "alice").await);
}

#[tokio::test]
async fn a_missing_or_wrong_nonce_is_refused() {
    let server = agrello().await;
    let credentials = CredentialRegistry::builder()
        .users(agrello_users(&server))
        .build()
        .unwrap();
    let app = app(&credentials);

    // Each case starts its own login in alice's browser, then sends its callback with
    // the cookies the case says.
    type Tamper = fn(&mut Jar, &str);
    let cases: [(&str, Tamper); 4] = [
        ("missing", |jar, _| *jar = Jar::new()),
        ("wrong value", |jar, _| {
            let name = jar.cookies()[0].name.clone();
            *jar = Jar::new();
            jar.insert(&name, &"A".repeat(43), "/oauth/callback/agrello");
        }),
        ("another login's cookie name", |jar, _| {
            let nonce = jar.cookies()[0].value.clone();
            *jar = Jar::new();
            jar.insert("oauth2_login_AAAAAAAAAAAAAAAA", &nonce, "/oauth/callback/agrello");
        }),
        ("another login's cookie", |jar, other| {
            // A second tab's login: its cookie is valid, but not for this state.
            let keep: Vec<_> = jar
                .cookies()
                .iter()
                .filter(|c| c.name == other)
                .cloned()
                .collect();
            *jar = Jar::new();
            for c in keep {
                jar.insert(&c.name, &c.value, &c.path);
            }
        }),
    ];
    for (case, tamper) in cases {
        let mut jar = Jar::new();
        let started = browse(&app, "/oauth/login/agrello", Some("alice"), &mut jar).await;
        let first = jar.cookies()[0].name.clone();
        let _second_tab = browse(&app, "/oauth/login/agrello", Some("alice"), &mut jar).await;
        let other = jar
            .cookies()
            .iter()
            .find(|c| c.name != first)
            .unwrap()
            .name
            .clone();
        let callback = consent(&location(&started), "alice").await;
        tamper(&mut jar, &other);
        let refused = browse(&app, &callback, Some("alice"), &mut jar).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{case}");
        assert!(body(refused).await.contains("another browser"), "{case}");
    }
    assert_eq!(server.counters().authorization_code_grants, 0);
    assert_eq!(server.counters().token_requests, 0);
}

#[tokio::test]
async fn the_right_browser_without_the_users_session_is_refused() {
    let server = agrello().await;
    let credentials = CredentialRegistry::builder()
        .users(agrello_users(&server))
        .build()
        .unwrap();
    let app = app(&credentials);
    for session in [None, Some("mallory")] {
        let mut jar = Jar::new();
        let started = browse(&app, "/oauth/login/agrello", Some("alice"), &mut jar).await;
        let callback = consent(&location(&started), "alice").await;
        let refused = browse(&app, &callback, session, &mut jar).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{session:?}");
        assert!(jar.is_empty(), "cleared on refusal too");
    }
    assert_eq!(server.counters().authorization_code_grants, 0);
    assert_eq!(server.counters().token_requests, 0);
}

#[tokio::test]
async fn two_tabs_and_two_providers_each_keep_their_own_login() {
    let agrello = agrello().await;
    let builder = MockServer::dottedsign().client("ds-app", "ds-secret");
    let dottedsign = started(builder.user("alice", "alice-pw")).await;
    let credentials = CredentialRegistry::builder()
        .users(agrello_users(&agrello))
        .users(
            UserCredentialTemplate::new(dottedsign.provider(), "ds-app", Some("ds-secret".into()))
                .redirect_uri(format!("{APP}/callback/dottedsign")),
        )
        .build()
        .unwrap();
    let app = app(&credentials);
    let mut jar = Jar::new();
    let mut links = Vec::new();
    for provider in ["agrello", "agrello", "dottedsign"] {
        let started = browse(&app, &format!("/oauth/login/{provider}"), Some("alice"), &mut jar).await;
        links.push(location(&started));
    }
    assert_eq!(jar.cookies().len(), 3);
    // Finished in another order than started: each finds its own cookie.
    for i in [2, 0, 1] {
        let callback = consent(&links[i], "alice").await;
        let done = browse(&app, &callback, Some("alice"), &mut jar).await;
        assert_eq!(done.status(), StatusCode::SEE_OTHER, "tab {i}");
    }
    assert!(jar.is_empty());
    assert_eq!(agrello.counters().authorization_code_grants, 2);
    assert_eq!(dottedsign.counters().authorization_code_grants, 1);
}

// ===== the application's data through the login =====

fn return_to(parts: &http::request::Parts) -> Option<String> {
    form_urlencoded::parse(parts.uri.query()?.as_bytes())
        .find(|(k, _)| k == "return_to")
        .map(|(_, v)| v.into_owned())
}

#[tokio::test]
async fn the_applications_state_data_comes_back_and_a_forged_or_replayed_state_is_refused() {
    let endpoint = Endpoint::issuing_tokens();
    let app = app_with(&endpoint.credentials(CodeDelivery::Query), |routes| {
        routes.state_data(return_to).after_login_with(|done| {
            let back = done.state_data().unwrap_or("/");
            format!("{back}?from={}&user={}", done.provider(), done.subject())
        })
    });
    let mut jar = Jar::new();
    let started = browse(
        &app,
        "/oauth/login/idp?return_to=%2Fdocs%2F42",
        Some("alice"),
        &mut jar,
    )
    .await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    let state = param(&location(&started), "state");
    let (random, data) = state.split_once('.').unwrap();
    assert_eq!((random.len(), data), (32, "/docs/42"));
    let cookies = jar.header_for("/oauth/callback/idp").unwrap();
    let callback = |state: &str| {
        let mut query = form_urlencoded::Serializer::new(String::from("/oauth/callback/idp?code=c&"));
        query.append_pair("state", state);
        query.finish()
    };

    // The random part with other data: not a login this server started.
    let forged = callback(&format!("{random}./admin"));
    let refused = with_cookies(&app, &forged, "alice", vec![cookies.clone()]).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert_eq!(endpoint.exchanges(), 0);

    // The real one is still waiting, and hands its data back.
    let done = with_cookies(&app, &callback(&state), "alice", vec![cookies.clone()]).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&done), "/docs/42?from=idp&user=alice");
    assert_eq!(endpoint.exchanges(), 1);

    // Single use: the same callback, cookie and session again.
    let replayed = with_cookies(&app, &callback(&state), "alice", vec![cookies]).await;
    assert_eq!(replayed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(endpoint.exchanges(), 1);
}

#[tokio::test]
async fn state_data_that_cannot_travel_refuses_the_login_before_it_starts() {
    let endpoint = Endpoint::issuing_tokens();
    let app = app_with(&endpoint.credentials(CodeDelivery::Query), |routes| {
        routes.state_data(return_to)
    });
    let mut jar = Jar::new();
    let long = format!("/oauth/login/idp?return_to={}", "x".repeat(1025));
    let refused = browse(&app, &long, Some("alice"), &mut jar).await;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(refused.headers().get(header::LOCATION).is_none());
    assert!(jar.is_empty());
    let fits = format!("/oauth/login/idp?return_to={}", "x".repeat(1024));
    let started = browse(&app, &fits, Some("alice"), &mut jar).await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    assert_eq!(jar.cookies().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_expired_login_is_refused_and_its_cookie_cleared() {
    let endpoint = Endpoint::issuing_tokens();
    let app = app(&endpoint.credentials(CodeDelivery::Query));
    let mut jar = Jar::new();
    let state = start(&app, "alice", &mut jar).await;
    assert_eq!(jar.cookies().len(), 1);
    tokio::time::advance(Duration::from_secs(600)).await;
    let late = browse(
        &app,
        &format!("/oauth/callback/idp?code=c&state={state}"),
        Some("alice"),
        &mut jar,
    )
    .await;
    assert_eq!(late.status(), StatusCode::BAD_REQUEST);
    assert!(jar.is_empty());
    assert_eq!(endpoint.exchanges(), 0);
}

#[tokio::test]
async fn secure_follows_the_public_base_unless_told() {
    let endpoint = Endpoint::issuing_tokens();
    let credentials = endpoint.credentials(CodeDelivery::Query);
    let set_cookie = |base: &'static str, secure: Option<bool>| {
        let credentials = credentials.clone();
        async move {
            let mut routes = LoginRoutes::new(credentials, base, |_| Some("alice".to_owned()));
            if let Some(secure) = secure {
                routes = routes.cookie_secure(secure);
            }
            let app: Router = Router::new().nest("/oauth", routes.into_router());
            let started = app
                .oneshot(Request::get("/oauth/login/idp").body(Body::empty()).unwrap())
                .await
                .unwrap();
            started.headers()[header::SET_COOKIE].to_str().unwrap().to_owned()
        }
    };
    let secure = |cookie: &str| cookie.split("; ").any(|a| a == "Secure");
    assert!(secure(&set_cookie("https://app.example.com/oauth", None).await));
    assert!(secure(&set_cookie("HTTPS://app.example.com/oauth", None).await));
    assert!(!secure(&set_cookie("http://127.0.0.1:8080/oauth", None).await));
    assert!(secure(
        &set_cookie("http://127.0.0.1:8080/oauth", Some(true)).await
    ));
    assert!(!secure(
        &set_cookie("https://app.example.com/oauth", Some(false)).await
    ));
    let at_root = set_cookie("https://app.example.com/", None).await;
    assert!(at_root.contains("; Path=/callback/idp;"), "{at_root}");
}

// ===== one user cannot lock everyone out =====

#[tokio::test]
async fn one_user_asking_for_logins_in_a_loop_locks_nobody_out() {
    let server = agrello().await;
    let credentials = CredentialRegistry::builder()
        .users(agrello_users(&server))
        .build()
        .unwrap();
    let app = app(&credentials);

    let mut states = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        // A script: it keeps no cookies.
        let started = browse(&app, "/oauth/login/agrello", Some("mallory"), &mut Jar::new()).await;
        assert_eq!(started.status(), StatusCode::SEE_OTHER);
        states.push(param(&location(&started), "state"));
    }

    // Alice still logs in.
    let mut jar = Jar::new();
    let started = browse(&app, "/oauth/login/agrello", Some("alice"), &mut jar).await;
    assert_eq!(started.status(), StatusCode::SEE_OTHER);
    assert!(location(&started).starts_with(&server.base_url()));
    let callback = consent(&location(&started), "alice").await;
    assert_eq!(
        browse(&app, &callback, Some("alice"), &mut jar).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(server.counters().authorization_code_grants, 1);

    // Mallory holds her last five logins and no more: a callback of any other is an
    // unknown login (400), one of those five is a login from another browser (403).
    let mut live = Vec::new();
    for (i, state) in states.iter().enumerate() {
        let uri = format!("/oauth/callback/agrello?code=x&state={state}");
        match browse(&app, &uri, Some("mallory"), &mut Jar::new())
            .await
            .status()
        {
            StatusCode::BAD_REQUEST => {}
            StatusCode::FORBIDDEN => live.push(i),
            other => panic!("login {i}: {other}"),
        }
    }
    assert_eq!(live, [9_995, 9_996, 9_997, 9_998, 9_999]);
    assert_eq!(server.counters().token_requests, 1);
}

#[tokio::test]
async fn past_ten_thousand_waiting_logins_the_oldest_goes_and_new_ones_start() {
    let endpoint = Endpoint::issuing_tokens();
    let app = app(&endpoint.credentials(CodeDelivery::Query));
    let mut states = Vec::new();
    for i in 0..10_001 {
        states.push(start(&app, &format!("user-{i}"), &mut Jar::new()).await);
    }
    let status = |i: usize| {
        let app = app.clone();
        let uri = format!("/oauth/callback/idp?code=x&state={}", states[i]);
        async move {
            let user = format!("user-{i}");
            browse(&app, &uri, Some(&user), &mut Jar::new()).await.status()
        }
    };
    // The first was evicted by the 10,001st; the second still waits.
    assert_eq!(status(0).await, StatusCode::BAD_REQUEST);
    assert_eq!(status(1).await, StatusCode::FORBIDDEN);
    assert_eq!(status(10_000).await, StatusCode::FORBIDDEN);
    assert_eq!(endpoint.exchanges(), 0);
}

// ===== error pages show our message and the OAuth error code only =====

fn assert_hardened_html(headers: &http::HeaderMap) {
    assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
}

/// A token endpoint's refusal whose description quotes markup and secrets.
fn hostile(error: &str) -> String {
    format!(
        r#"{{"error":"{error}","error_description":"<script>alert(1)</script> code=THE-CODE secret=THE-SECRET"}}"#
    )
}

/// Follows `uri` in alice's browser and checks the error page it gets: `status`, hardened
/// headers, the OAuth error code shown as `<code>{shown}</code>`, and none of `absent`.
async fn assert_error_page(
    app: &Router,
    uri: &str,
    jar: &mut Jar,
    status: StatusCode,
    shown: &str,
    absent: &[&str],
) {
    let answer = browse(app, uri, Some("alice"), jar).await;
    assert_eq!(answer.status(), status, "{uri}");
    assert_hardened_html(answer.headers());
    let page = body(answer).await;
    for hostile in absent {
        assert!(!page.contains(hostile), "{hostile} in {page}");
    }
    assert!(page.contains(&format!("<code>{shown}</code>")), "{page}");
}

#[tokio::test]
async fn a_refused_code_exchange_shows_the_error_code_and_not_the_description() {
    let endpoint = Endpoint::issuing_tokens();
    let app = app(&endpoint.credentials(CodeDelivery::Query));
    // `invalid_grant` becomes `ReauthorizationRequired`, with the answer as its cause;
    // any other code stays an `OAuth` error whose message quotes the description.
    for error in ["unauthorized_client", "invalid_grant"] {
        endpoint.answering(StatusCode::BAD_REQUEST, &hostile(error));
        let mut jar = Jar::new();
        let state = start(&app, "alice", &mut jar).await;
        let uri = format!("/oauth/callback/idp?code=THE-CODE&state={state}");
        let absent = ["THE-CODE", "THE-SECRET", "<script>", "alert", &state];
        assert_error_page(&app, &uri, &mut jar, StatusCode::BAD_GATEWAY, error, &absent).await;
    }
    assert_eq!(endpoint.exchanges(), 2);
}

#[tokio::test]
async fn an_authorization_error_shows_its_code_escaped_and_not_the_description() {
    let endpoint = Endpoint::issuing_tokens();
    let app = app(&endpoint.credentials(CodeDelivery::Query));
    let cases = [
        ("%3Cb%3Ex%3C%2Fb%3E", "&lt;b&gt;x&lt;/b&gt;"),
        // `"`, `\`, a newline and a non-ASCII letter are not error-code characters. The
        // newline reaches the page already escaped by the error (`\n`), whose `\` goes.
        ("a%22b%5Cc%0Ad%C3%A9", "a?b?c?nd?"),
        ("%27%26", "&#39;&amp;"),
    ];
    for (error, shown) in cases {
        let mut jar = Jar::new();
        let state = start(&app, "alice", &mut jar).await;
        let uri = format!(
            "/oauth/callback/idp?error={error}&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E+\
             secret%3DTHE-SECRET&state={state}"
        );
        let absent = ["<b>", "<script>", "alert", "THE-SECRET", "\"", "\\"];
        assert_error_page(&app, &uri, &mut jar, StatusCode::FORBIDDEN, shown, &absent).await;
    }
    assert_eq!(endpoint.exchanges(), 0);
}

#[tokio::test]
async fn every_refusal_and_the_fragment_page_are_hardened() {
    let endpoint = Endpoint::issuing_tokens();
    let app = app(&endpoint.credentials(CodeDelivery::Fragment));
    let mut jar = Jar::new();
    for (uri, user, status) in [
        ("/oauth/login/idp", None, StatusCode::UNAUTHORIZED),
        ("/oauth/login/nope", Some("alice"), StatusCode::NOT_FOUND),
        (
            "/oauth/callback/idp?state=forged&code=x",
            Some("alice"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/oauth/callback/idp?code=x",
            Some("alice"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let refused = browse(&app, uri, user, &mut jar).await;
        assert_eq!(refused.status(), status, "{uri}");
        assert_hardened_html(refused.headers());
    }
    let bridge = browse(&app, "/oauth/callback/idp", Some("alice"), &mut jar).await;
    assert_eq!(bridge.status(), StatusCode::OK);
    assert_hardened_html(bridge.headers());
    assert!(body(bridge).await.contains("location.hash"));

    // The bridge page leaves the cookie for the request it makes.
    let state = start(&app, "alice", &mut jar).await;
    let bridge = browse(&app, "/oauth/callback/idp", Some("alice"), &mut jar).await;
    assert!(bridge.headers().get(header::SET_COOKIE).is_none());
    let uri = format!("/oauth/callback/idp?code=c&state={state}");
    assert_eq!(
        browse(&app, &uri, Some("alice"), &mut jar).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(endpoint.exchanges(), 1);
}

// ===== hostile Cookie headers =====

#[tokio::test]
async fn hostile_cookie_headers_neither_panic_nor_pass() {
    let endpoint = Endpoint::issuing_tokens();
    let app = app(&endpoint.credentials(CodeDelivery::Query));
    let many: String = (0..10_000).map(|i| format!("c{i}=v{i}; ")).collect();
    let huge = "x".repeat(1 << 20);
    type Hostile = fn(&str, &str, &str, &str) -> Vec<Vec<u8>>;
    let cases: [(&str, Hostile); 8] = [
        ("10,000 cookies", |_, _, many, _| vec![many.as_bytes().to_vec()]),
        ("10,000 Cookie headers", |_, _, _, _| {
            (0..10_000).map(|i| format!("c{i}=v").into_bytes()).collect()
        }),
        ("a 1 MiB value under the name", |name, _, _, huge| {
            vec![format!("{name}={huge}").into_bytes()]
        }),
        ("the nonce with 1 MiB after it", |name, nonce, _, huge| {
            vec![format!("{name}={nonce}{huge}").into_bytes()]
        }),
        ("bytes that are not UTF-8", |name, _, _, _| {
            vec![
                [name.as_bytes(), b"=\xff\xfe\x80".as_slice()].concat(),
                b"\xc3\x28=\xa0\xa1; ;;=;==".to_vec(),
            ]
        }),
        ("the nonce quoted", |name, nonce, _, _| {
            vec![format!("{name}=\"{nonce}\"").into_bytes()]
        }),
        ("the nonce under a longer name", |name, nonce, _, _| {
            vec![format!("x{name}={nonce}").into_bytes()]
        }),
        ("no value at all", |name, _, _, _| vec![name.as_bytes().to_vec()]),
    ];
    for (case, hostile) in cases {
        let mut jar = Jar::new();
        let state = start(&app, "alice", &mut jar).await;
        let (name, nonce) = (jar.cookies()[0].name.clone(), jar.cookies()[0].value.clone());
        let cookies = hostile(&name, &nonce, &many, &huge)
            .into_iter()
            .map(|bytes| HeaderValue::from_bytes(&bytes).unwrap())
            .collect();
        let uri = format!("/oauth/callback/idp?code=c&state={state}");
        let refused = with_cookies(&app, &uri, "alice", cookies).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{case}");
    }
    assert_eq!(endpoint.exchanges(), 0);

    // The right cookie still counts behind 10,000 others and a wrong duplicate.
    let mut jar = Jar::new();
    let state = start(&app, "alice", &mut jar).await;
    let (name, nonce) = (jar.cookies()[0].name.clone(), jar.cookies()[0].value.clone());
    let wrong = "B".repeat(43);
    let cookies = vec![
        HeaderValue::from_str(&format!("{many}{name}={wrong}")).unwrap(),
        HeaderValue::from_bytes(b"\xff=\xff").unwrap(),
        HeaderValue::from_str(&format!(" {name} = {nonce} ;z=1")).unwrap(),
    ];
    let uri = format!("/oauth/callback/idp?code=c&state={state}");
    assert_eq!(
        with_cookies(&app, &uri, "alice", cookies).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(endpoint.exchanges(), 1);
}

// ===== log lines =====

#[tokio::test]
async fn a_newline_in_the_subject_forges_no_log_line() {
    let (captured, _guard) = Captured::install_at(tracing::Level::WARN);

    let endpoint = Endpoint::issuing_tokens();
    endpoint.answering(StatusCode::BAD_REQUEST, r#"{"error":"invalid_grant"}"#);
    let app = app(&endpoint.credentials(CodeDelivery::Query));
    let evil = "mallory%0AFORGED level=INFO everything is fine";
    // The login fails at the provider, then one is refused for another user's session.
    let mut jar = Jar::new();
    let state = start(&app, evil, &mut jar).await;
    let uri = format!("/oauth/callback/idp?code=c&state={state}");
    assert_eq!(
        browse(&app, &uri, Some(evil), &mut jar).await.status(),
        StatusCode::BAD_GATEWAY
    );
    let state = start(&app, evil, &mut jar).await;
    let uri = format!("/oauth/callback/idp?code=c&state={state}");
    assert_eq!(
        browse(&app, &uri, Some("alice"), &mut jar).await.status(),
        StatusCode::FORBIDDEN
    );

    let printed = captured.text();
    let lines: Vec<&str> = printed.lines().collect();
    // Every line is an event of its own: none was started by the subject.
    assert!(lines.iter().all(|line| line.contains(" WARN ")), "{printed}");
    let ours = lines.iter().filter(|line| line.contains("tower_oauth2::axum:"));
    assert_eq!(ours.count(), 2, "{printed}");
    assert!(!lines.iter().any(|line| line.starts_with("FORGED")), "{printed}");
    assert_eq!(
        lines
            .iter()
            .filter(|line| line.contains(r"mallory\nFORGED"))
            .count(),
        2,
        "{printed}"
    );
}
