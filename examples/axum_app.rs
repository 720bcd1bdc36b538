//! An axum application whose users log in to a provider and whose handlers then call
//! that provider's API on their behalf, entirely on the built-in emulators.
//!
//! ```sh
//! cargo run --example axum_app --features axum
//! ```
//!
//! The application knows its users by a `user` cookie (standing in for its own
//! session). `/oauth/login/agrello` sends a user to the provider; the provider sends
//! them back to `/oauth/callback/agrello`; `/documents` then calls the provider's API
//! with that user's token, through one `OAuth2Layer` client shared in the app state.
//!
//! There is no browser here: after starting, the example plays two browsers (alice and
//! bob) through the redirects with a plain HTTP client and prints what each saw. Like a
//! browser, each keeps the cookie `/oauth/login/agrello` sets and sends it back to the
//! callback: a login only completes in the browser that started it. Last, bob follows
//! a login link alice started, and is refused.

use std::{net::SocketAddr, sync::Mutex};

use axum::{
    extract::State,
    http::{header, request::Parts, HeaderMap, StatusCode},
    response::IntoResponse,
    routing::get,
    Router,
};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tower::{Layer, ServiceExt};
use tower_oauth2::{
    axum::LoginRoutes, store::MemoryStore, BoxError, Credentials, OAuth2, OAuth2Layer, Subject,
    UserCredentials,
};
use tower_oauth2_mock::MockServer;

type Http = Client<HttpConnector, Full<Bytes>>;

#[derive(Clone)]
struct AppState {
    /// The outbound client: one layered client for every handler and every user.
    api: OAuth2<Http>,
    documents_url: String,
}

/// The application's own notion of who is logged in: a `user` cookie.
fn user_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("user=").map(str::to_owned))
}

async fn documents(State(state): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    let Some(user) = user_of(&headers) else {
        return (StatusCode::UNAUTHORIZED, "no session".to_owned());
    };
    let mut request = Request::get(&state.documents_url).body(Full::default()).unwrap();
    request.extensions_mut().insert(Subject::new(user));
    match state.api.clone().oneshot(request).await {
        Ok(response) => {
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        // Not logged in to the provider yet, or the grant is dead: send them to log in.
        Err(err) => (
            StatusCode::FORBIDDEN,
            format!("{err}; visit /oauth/login/agrello"),
        ),
    }
}

/// A browser, as far as this example needs one: its user's `user` cookie, and the
/// cookies the app sets (the login's), sent back on every request to the app.
struct Browser {
    http: Http,
    app: String,
    cookies: Mutex<Vec<String>>,
}

impl Browser {
    fn new(http: &Http, app: &str, user: &str) -> Self {
        Self {
            http: http.clone(),
            app: app.to_owned(),
            cookies: Mutex::new(vec![format!("user={user}")]),
        }
    }

    /// The status, the `Location` and the body of a GET.
    async fn get(&self, url: String) -> Result<(StatusCode, Option<String>, String), BoxError> {
        let mut request = Request::get(&url);
        if url.starts_with(&self.app) {
            request = request.header(header::COOKIE, self.cookies.lock().unwrap().join("; "));
        }
        let response = self.http.request(request.body(Full::default())?).await?;
        for set in response.headers().get_all(header::SET_COOKIE) {
            // `name=value; Path=...; Max-Age=...`: keep `name=value`, drop it at Max-Age=0.
            // (Paths are not checked here: a real browser sends it to the callback only.)
            let set = set.to_str()?;
            let pair = set.split(';').next().unwrap_or_default().to_owned();
            let name = pair.split('=').next().unwrap_or_default().to_owned();
            let mut cookies = self.cookies.lock().unwrap();
            cookies.retain(|c| c.split('=').next() != Some(name.as_str()));
            if !set.contains("Max-Age=0") {
                cookies.push(pair);
            }
        }
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, location, String::from_utf8_lossy(&body).into_owned()))
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let provider = MockServer::agrello()
        .client("my-app", "my-app-secret")
        .user("alice", "alice-pw")
        .user("bob", "bob-pw")
        .start()
        .await?;

    // The app listens first, so that its callback URL is known.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app_addr: SocketAddr = listener.local_addr()?;
    let public_base = format!("http://{app_addr}/oauth");

    let credentials = Credentials::builder()
        .users(UserCredentials::new(
            provider.provider(),
            "my-app",
            Some("my-app-secret".into()),
        ))
        .store(MemoryStore::new())
        .build()?;
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let state = AppState {
        api: OAuth2Layer::new(credentials.clone()).layer(http.clone()),
        documents_url: provider.api_url("/documents"),
    };
    let login = LoginRoutes::new(credentials, public_base, |parts: &Parts| user_of(&parts.headers))
        .after_login("/documents")
        .into_router();
    let app = Router::new()
        .nest("/oauth", login)
        .route("/documents", get(documents))
        .with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let app_url = |path: &str| format!("http://{app_addr}{path}");
    let mut alice_link = None;
    for user in ["alice", "bob"] {
        let browser = Browser::new(&http, &app_url("/"), user);
        let (_, _, before) = browser.get(app_url("/documents")).await?;
        println!("{user} before logging in: {before}");
        let (_, to_provider, _) = browser.get(app_url("/oauth/login/agrello")).await?;
        // At the provider, the user signs in (the emulator's login_hint picks who).
        let authorize = format!("{}&login_hint={user}", to_provider.ok_or("no redirect")?);
        let (_, back_to_app, _) = browser.get(authorize).await?;
        let (_, after_login, _) = browser.get(back_to_app.ok_or("no callback")?).await?;
        let (status, _, documents) = browser.get(app_url(&after_login.ok_or("no redirect")?)).await?;
        println!("{user} after logging in: {status} {documents}");
        if user == "alice" {
            // Alice starts another login, and sends its link to bob.
            let (_, link, _) = browser.get(app_url("/oauth/login/agrello")).await?;
            alice_link = link;
        }
    }
    // Bob follows it and signs in at the provider; the callback reaches his browser,
    // which has no cookie of that login: refused, nothing exchanged or stored.
    let bob = Browser::new(&http, &app_url("/"), "bob");
    let authorize = format!("{}&login_hint=bob", alice_link.ok_or("no redirect")?);
    let (_, back_to_app, _) = bob.get(authorize).await?;
    let (status, _, _) = bob.get(back_to_app.ok_or("no callback")?).await?;
    println!("bob completing a login alice started: {status}");
    let counters = provider.counters();
    println!(
        "\nthe provider saw {} code exchanges and {} API calls",
        counters.authorization_code_grants, counters.resource_calls
    );
    Ok(())
}
