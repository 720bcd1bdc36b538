//! Users' tokens end to end: login through the axum routes and each code-flow
//! provider's emulator (no browser), per-user tokens on outbound calls, stores across
//! restarts, rotation persisted before use, and the callback's failure modes.
#![cfg(all(feature = "hyper-transport", feature = "axum"))]

mod support;

use support::{jar::Jar, mock::started, no_jitter, store::Hooked};

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{body::Body, Router};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use serde_json::Value;
use tower::{Layer, ServiceExt};
use tower_oauth2::{
    axum::LoginRoutes,
    store::{FileStore, MemoryStore, StoreError, TokenStore},
    CredentialRegistry, Error, OAuth2, OAuth2Layer, RefreshPolicy, Subject, UserCredentialTemplate,
};
use tower_oauth2_mock::{MockDialect, MockServer};

type Http = Client<HttpConnector, Full<Bytes>>;

const APP: &str = "http://app.test/oauth";

fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn emulator(dialect: MockDialect) -> MockServer {
    let builder = match dialect {
        MockDialect::Agrello => MockServer::agrello().client("agrello-app", "agrello-secret"),
        MockDialect::Grindery => MockServer::grindery(),
        MockDialect::Ioffice => MockServer::ioffice().client("ioffice-app", "unused"),
        MockDialect::DottedSign => MockServer::dottedsign().client("ds-app", "ds-secret"),
        other => panic!("{other:?} has no user flow"),
    };
    builder
        .user("alice", "alice-pw")
        .user("bob", "bob-pw")
        .start()
        .await
        .unwrap()
}

fn users_of(server: &MockServer) -> UserCredentialTemplate {
    let provider = server.provider();
    let name = provider.name_ref().to_owned();
    let (client, secret) = match server.dialect() {
        MockDialect::Agrello => ("agrello-app", Some("agrello-secret")),
        MockDialect::Grindery => ("grindery-app", None),
        MockDialect::Ioffice => ("ioffice-app", None),
        _ => ("ds-app", Some("ds-secret")),
    };
    UserCredentialTemplate::new(provider, client, secret.map(Into::into))
        .redirect_uri(format!("{APP}/callback/{name}"))
        .refresh_policy(
            RefreshPolicy::default()
                .random(no_jitter)
                .timeout(Duration::from_secs(5))
                .backoff(Duration::from_millis(10), Duration::from_millis(50)),
        )
}

fn app(credentials: &CredentialRegistry) -> Router {
    let routes = LoginRoutes::new(credentials.clone(), APP, |parts| {
        parts
            .headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    })
    .after_login("/home")
    .into_router();
    Router::new().nest("/oauth", routes)
}

/// A request from a browser with no cookies.
async fn call_app(app: &Router, uri: &str, user: Option<&str>) -> Response<Body> {
    call_browser(app, uri, user, &mut Jar::new()).await
}

/// A request from the browser whose cookies are in `jar`, which keeps what the answer
/// sets: the login's cookie, which the callback wants back.
async fn call_browser(app: &Router, uri: &str, user: Option<&str>, jar: &mut Jar) -> Response<Body> {
    let mut request = Request::get(uri);
    if let Some(user) = user {
        request = request.header("x-user", user);
    }
    if let Some(cookies) = jar.header_for(uri) {
        request = request.header("cookie", cookies);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    jar.absorb(&response);
    response
}

fn location<B>(response: &Response<B>) -> String {
    response.headers()["location"].to_str().unwrap().to_owned()
}

/// The browser's part of a login: the app's login route, the provider's authorize
/// page (signing in as `provider_user`), and the redirect back. Returns what the
/// callback route answered.
async fn browser_login(app: &Router, server: &MockServer, user: &str, provider_user: &str) -> Response<Body> {
    let name = server.provider().name_ref().to_owned();
    let mut jar = Jar::new();
    let start = call_browser(app, &format!("/oauth/login/{name}"), Some(user), &mut jar).await;
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let authorize = format!("{}&login_hint={provider_user}", location(&start));
    assert!(authorize.starts_with(&server.base_url()), "{authorize}");
    let consent = http()
        .request(Request::get(authorize).body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(consent.status(), StatusCode::FOUND);
    let back = location(&consent);
    let callback = format!("/oauth/callback/{name}");
    let (path, params) = back
        .strip_prefix(APP)
        .unwrap()
        .split_at(callback.len() - "/oauth".len());
    assert_eq!(format!("/oauth{path}"), callback);
    if let Some(fragment) = params.strip_prefix('#') {
        // The code came back in the fragment: the callback page hands it over.
        let page = call_browser(app, &callback, Some(user), &mut jar).await;
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&html).contains("location.hash"));
        return call_browser(app, &format!("{callback}?{fragment}"), Some(user), &mut jar).await;
    }
    call_browser(app, &format!("{callback}{params}"), Some(user), &mut jar).await
}

async fn outbound(
    client: &OAuth2<Http>,
    server: &MockServer,
    subject: Option<&str>,
) -> Result<(u16, Value), Error> {
    let mut request = Request::get(server.api_url("/me")).body(Full::default()).unwrap();
    if let Some(subject) = subject {
        request.extensions_mut().insert(Subject::new(subject));
    }
    let response = client.clone().oneshot(request).await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}

#[tokio::test]
async fn every_code_flow_provider_logs_in_without_a_browser_and_calls_as_the_user() {
    for dialect in [
        MockDialect::Agrello,
        MockDialect::Grindery,
        MockDialect::Ioffice,
        MockDialect::DottedSign,
    ] {
        let server = emulator(dialect).await;
        let credentials = CredentialRegistry::builder()
            .users(users_of(&server))
            .build()
            .unwrap();
        let app = app(&credentials);
        let client = OAuth2Layer::new(credentials.clone()).layer(http());

        // Before logging in: a typed error, and nothing is sent.
        match outbound(&client, &server, Some("alice")).await {
            Err(Error::NotAuthorized(e)) => assert_eq!(e.subject(), Some("alice")),
            other => panic!("{dialect:?}: expected NotAuthorized, got {other:?}"),
        }
        assert_eq!(server.counters().resource_calls, 0, "{dialect:?}");

        let done = browser_login(&app, &server, "alice", "alice").await;
        assert_eq!(done.status(), StatusCode::SEE_OTHER, "{dialect:?}");
        assert_eq!(location(&done), "/home");
        assert_eq!(server.counters().authorization_code_grants, 1, "{dialect:?}");

        let (status, body) = outbound(&client, &server, Some("alice")).await.unwrap();
        assert_eq!(
            (status, body["subject"].as_str()),
            (200, Some("alice")),
            "{dialect:?}: {body}"
        );
        assert_eq!(
            server.counters().token_requests,
            1,
            "{dialect:?}: the stored token was used"
        );
    }
}

#[tokio::test]
async fn a_restart_over_the_same_file_store_needs_no_new_login() {
    let dir = tempdir("restart");
    let server = emulator(MockDialect::Ioffice).await;
    {
        let credentials = CredentialRegistry::builder()
            .users(users_of(&server))
            .store(FileStore::open(&dir).unwrap())
            .build()
            .unwrap();
        assert_eq!(
            browser_login(&app(&credentials), &server, "alice", "alice")
                .await
                .status(),
            StatusCode::SEE_OTHER
        );
    }
    // A new process: a new registry over the same directory.
    let credentials = CredentialRegistry::builder()
        .users(users_of(&server))
        .store(FileStore::open(&dir).unwrap())
        .build()
        .unwrap();
    let client = OAuth2Layer::new(credentials.clone()).layer(http());
    let (status, body) = outbound(&client, &server, Some("alice")).await.unwrap();
    assert_eq!((status, body["subject"].as_str()), (200, Some("alice")));
    // The stored access token was still live: no token request at all after the restart.
    assert_eq!(server.counters().token_requests, 1);

    // Once it is not, the stored (rotating) refresh token takes over.
    credentials.invalidate_all();
    assert_eq!(outbound(&client, &server, Some("alice")).await.unwrap().0, 200);
    assert_eq!(server.counters().refresh_token_grants, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A store that records, at every save, the refresh token saved and how many API calls
/// the emulator had seen, and can be told to fail its next saves.
#[derive(Clone)]
struct Watching {
    store: Arc<Hooked>,
    saves: Arc<Mutex<Vec<(String, u64)>>>,
    fail_next: Arc<Mutex<usize>>,
}

async fn watched_ioffice() -> (Arc<MockServer>, CredentialRegistry, Watching) {
    let server = Arc::new(emulator(MockDialect::Ioffice).await);
    let counted = Arc::clone(&server);
    let (saves, fail_next) = (Arc::<Mutex<Vec<_>>>::default(), Arc::<Mutex<usize>>::default());
    let (seen, fail) = (Arc::clone(&saves), Arc::clone(&fail_next));
    let hooked = Hooked::new(move |operation, key, tokens| {
        let Some(tokens) = tokens else { return Ok(()) };
        let mut fail = fail.lock().unwrap();
        if *fail > 0 {
            *fail -= 1;
            return Err(StoreError::new(operation, key, "disk full (injected)"));
        }
        let refresh = tokens.refresh_token.as_ref().unwrap().secret().to_owned();
        seen.lock()
            .unwrap()
            .push((refresh, counted.counters().resource_calls));
        Ok(())
    });
    let store = Watching {
        store: Arc::new(hooked),
        saves,
        fail_next,
    };
    let credentials = CredentialRegistry::builder()
        .users(users_of(&server))
        .store(Arc::clone(&store.store))
        .build()
        .unwrap();
    assert_eq!(
        browser_login(&app(&credentials), &server, "alice", "alice")
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    (server, credentials, store)
}

#[tokio::test]
async fn three_rotations_in_a_row_are_each_saved_before_the_new_token_is_used() {
    let (server, credentials, store) = watched_ioffice().await;
    let client = OAuth2Layer::new(credentials.clone()).layer(http());
    for round in 0..3u64 {
        credentials.invalidate_all();
        assert_eq!(outbound(&client, &server, Some("alice")).await.unwrap().0, 200);
        let saves = store.saves.lock().unwrap().clone();
        // The login's save, then one per rotation, each before the call that used it.
        assert_eq!(saves.len() as u64, round + 2);
        assert_eq!(saves.last().unwrap().1, round, "saved after the API call");
    }
    let saves = store.saves.lock().unwrap().clone();
    let mut distinct: Vec<_> = saves.iter().map(|(rt, _)| rt.clone()).collect();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "every rotation stored a new refresh token");
    assert_eq!(server.counters().refresh_token_grants, 3);
}

#[tokio::test]
async fn a_failed_save_fails_loudly_and_the_grant_survives() {
    let (server, credentials, store) = watched_ioffice().await;
    let client = OAuth2Layer::new(credentials.clone()).layer(http());
    *store.fail_next.lock().unwrap() = 1;
    credentials.invalidate_all();
    // The provider rotated, the save failed: the new access token is not used.
    match outbound(&client, &server, Some("alice")).await {
        Err(Error::Store(_)) => {}
        other => panic!("expected a store error, got {other:?}"),
    }
    assert_eq!(server.counters().resource_calls, 0);
    // The rotated refresh token was kept for the next attempt, which saves and succeeds
    // once the backoff (5 ms here) has passed.
    tokio::time::pause();
    tokio::time::advance(Duration::from_millis(20)).await;
    tokio::time::resume();
    assert_eq!(outbound(&client, &server, Some("alice")).await.unwrap().0, 200);
    let stored = store
        .store
        .load(&credentials.user_key("ioffice", "alice").unwrap())
        .await
        .unwrap()
        .unwrap();
    let refresh = stored.refresh_token.unwrap();
    // What the store holds still works at the provider.
    let raw = Request::post(server.token_url())
        .header("content-type", "application/json")
        .header("x-grant-type", "refresh_token")
        .header("x-redirect-uri", format!("{APP}/callback/ioffice"))
        .header("x-client-id", "ioffice-app")
        .header("x-scope", "email")
        .header("x-refresh-token", refresh.secret())
        .body(Full::default())
        .unwrap();
    assert_eq!(http().request(raw).await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_process_that_died_before_saving_gets_a_clear_reauthorization_error() {
    let (server, credentials, store) = watched_ioffice().await;
    let client = OAuth2Layer::new(credentials.clone()).layer(http());
    *store.fail_next.lock().unwrap() = 1;
    credentials.invalidate_all();
    assert!(matches!(
        outbound(&client, &server, Some("alice")).await,
        Err(Error::Store(_))
    ));
    // The process dies here; a new one finds the pre-rotation refresh token, now dead.
    let restarted = CredentialRegistry::builder()
        .users(users_of(&server))
        .store(Arc::clone(&store.store))
        .build()
        .unwrap();
    restarted.invalidate_all();
    let client = OAuth2Layer::new(restarted).layer(http());
    // The stored access token was issued before the rotation and is still live; once it
    // is revoked, the dead grant shows.
    server.revoke_all_access_tokens();
    match outbound(&client, &server, Some("alice")).await {
        Err(Error::ReauthorizationRequired(_)) => {}
        other => panic!("expected ReauthorizationRequired, got {other:?}"),
    }
}

#[tokio::test]
async fn callback_failures_are_typed_and_nothing_is_stored() {
    let server = emulator(MockDialect::Agrello).await;
    let credentials = CredentialRegistry::builder()
        .users(users_of(&server))
        .build()
        .unwrap();
    let app = app(&credentials);
    let body_of = |response: Response<Body>| async move {
        String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    };

    // A forged state.
    let forged = call_app(&app, "/oauth/callback/agrello?code=x&state=forged", Some("alice")).await;
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);

    // The user says no at the provider.
    server.deny_next_authorizations(1);
    let denied = browser_login(&app, &server, "alice", "alice").await;
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    assert!(body_of(denied).await.contains("access_denied"));

    // Another user's browser finishing alice's login.
    let start = call_app(&app, "/oauth/login/agrello", Some("alice")).await;
    let consent = http()
        .request(Request::get(location(&start)).body(Full::default()).unwrap())
        .await
        .unwrap();
    let back = location(&consent);
    let query = back.split_once('?').unwrap().1.to_owned();
    let hijack = call_app(&app, &format!("/oauth/callback/agrello?{query}"), Some("mallory")).await;
    assert_eq!(hijack.status(), StatusCode::FORBIDDEN);
    // And the state is spent: replaying the callback, even by alice, is refused.
    let replay = call_app(&app, &format!("/oauth/callback/agrello?{query}"), Some("alice")).await;
    assert_eq!(replay.status(), StatusCode::BAD_REQUEST);
    assert_eq!(server.counters().authorization_code_grants, 0);

    // A code exchanged twice: the second exchange is refused by the provider, typed.
    let code = server.issue_authorization_code("agrello-app", &format!("{APP}/callback/agrello"), "");
    let users = credentials.users("agrello").unwrap();
    for attempt in 0..2 {
        let pending = users
            .authorization(format!("{APP}/callback/agrello"))
            .start()
            .unwrap();
        let callback = format!("?code={code}&state={}", pending.state());
        let result = credentials
            .login("agrello", "alice", pending.complete(&callback).unwrap())
            .await;
        match (attempt, result) {
            (0, Ok(())) => {}
            (1, Err(Error::ReauthorizationRequired(_))) => {}
            (attempt, other) => panic!("attempt {attempt}: {other:?}"),
        }
    }

    // Unknown provider and nobody logged in to the app.
    assert_eq!(
        call_app(&app, "/oauth/login/nope", Some("alice")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call_app(&app, "/oauth/login/agrello", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn logout_revokes_in_the_dialect_deletes_and_stops_sending() {
    let server = emulator(MockDialect::Ioffice).await;
    let store = Arc::new(MemoryStore::new());
    let credentials = CredentialRegistry::builder()
        .users(users_of(&server))
        .store(Arc::clone(&store))
        .build()
        .unwrap();
    assert_eq!(
        browser_login(&app(&credentials), &server, "alice", "alice")
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    let client = OAuth2Layer::new(credentials.clone()).layer(http());
    assert_eq!(outbound(&client, &server, Some("alice")).await.unwrap().0, 200);

    let revoked = credentials.logout("ioffice", "alice").await.unwrap();
    assert_eq!(revoked, tower_oauth2::Revoked::AtProvider { tokens: 2 });
    assert_eq!(server.counters().revocations, 2);
    let key = credentials.user_key("ioffice", "alice").unwrap();
    assert!(store.load(&key).await.unwrap().is_none());
    assert!(matches!(
        outbound(&client, &server, Some("alice")).await,
        Err(Error::NotAuthorized(_))
    ));
    assert_eq!(server.counters().resource_calls, 1);
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tower-oauth2-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn one_layer_serves_the_app_and_its_users_and_pkce_goes_with_the_code() {
    let builder = MockServer::builder().client("app", "app-secret");
    let server = started(builder.user("alice", "alice-pw")).await;
    let provider = server.provider().pkce(true);
    let credentials = CredentialRegistry::builder()
        .credential(tower_oauth2::Credential::client_credentials(
            provider.clone(),
            "app",
            "app-secret",
        ))
        .users(UserCredentialTemplate::new(
            provider,
            "app",
            Some("app-secret".into()),
        ))
        .build()
        .unwrap();
    let app = app(&credentials);
    let mut jar = Jar::new();
    let start = call_browser(&app, "/oauth/login/mock", Some("alice"), &mut jar).await;
    assert!(location(&start).contains("code_challenge_method=S256"));
    let consent = http()
        .request(Request::get(location(&start)).body(Full::default()).unwrap())
        .await
        .unwrap();
    let query = location(&consent).split_once('?').unwrap().1.to_owned();
    let done = call_browser(
        &app,
        &format!("/oauth/callback/mock?{query}"),
        Some("alice"),
        &mut jar,
    )
    .await;
    // The standard emulator refuses the exchange of a challenged code without its verifier.
    assert_eq!(done.status(), StatusCode::SEE_OTHER);

    let client = OAuth2Layer::new(credentials).layer(http());
    let (_, as_app) = outbound(&client, &server, None).await.unwrap();
    let (_, as_alice) = outbound(&client, &server, Some("alice")).await.unwrap();
    assert_eq!(as_app["subject"], Value::Null);
    assert_eq!(as_alice["subject"], "alice");
    let counters = server.counters();
    assert_eq!(
        (
            counters.client_credentials_grants,
            counters.authorization_code_grants
        ),
        (1, 1)
    );
}

#[tokio::test]
async fn a_refresh_token_rotated_by_another_process_is_read_back_from_the_store() {
    let server = Arc::new(emulator(MockDialect::Ioffice).await);
    let store = Arc::new(MemoryStore::new());
    let registry = || {
        CredentialRegistry::builder()
            .users(users_of(&server))
            .store(Arc::clone(&store))
            .build()
            .unwrap()
    };
    let (first, second) = (registry(), registry());
    assert_eq!(
        browser_login(&app(&first), &server, "alice", "alice")
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    let one = OAuth2Layer::new(first.clone()).layer(http());
    let two = OAuth2Layer::new(second.clone()).layer(http());
    // The second process loads alice's tokens from the store.
    assert_eq!(outbound(&two, &server, Some("alice")).await.unwrap().0, 200);
    // The first rotates the refresh token; the second still holds the old one.
    first.invalidate_all();
    assert_eq!(outbound(&one, &server, Some("alice")).await.unwrap().0, 200);
    second.invalidate_all();
    // The old one is refused; the second process reads the store and succeeds.
    assert_eq!(outbound(&two, &server, Some("alice")).await.unwrap().0, 200);
    let counters = server.counters();
    assert_eq!(
        counters.refresh_token_grants, 3,
        "rotation, refused old token, retry"
    );
    assert_eq!(counters.token_errors, 1);
}
