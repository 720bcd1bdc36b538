//! An axum application whose handlers call a provider's API through one layered client
//! kept in the app state, under concurrent incoming load.
//!
//! ```sh
//! cargo run --example axum_outbound --features axum
//! ```
//!
//! The provider is the built-in RFC 6749 emulator, issuing 3-second tokens so that the
//! run sees refreshes. 2,000 incoming requests arrive 64 at a time; each handler makes
//! one outbound call. The summary shows that the provider saw a handful of token
//! requests, not one per incoming request.

use std::{sync::Arc, time::Duration};

use axum::{extract::State, http::StatusCode, routing::get, Router};
use bytes::Bytes;
use futures_util::{stream, StreamExt};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tower::{ServiceBuilder, ServiceExt};
use tower_oauth2::{BoxError, Credential, Credentials, OAuth2, RefreshPolicy, ServiceBuilderExt};
use tower_oauth2_mock::MockServer;

type Http = Client<HttpConnector, Full<Bytes>>;

#[derive(Clone)]
struct AppState {
    /// One layered client for every handler: clones share the token cache.
    api: OAuth2<Http>,
    report_url: Arc<str>,
}

async fn report(State(state): State<AppState>) -> (StatusCode, String) {
    let request = Request::get(&*state.report_url).body(Full::default()).unwrap();
    match state.api.oneshot(request).await {
        Ok(response) => (response.status(), "report fetched".to_owned()),
        Err(err) => (StatusCode::BAD_GATEWAY, err.to_string()),
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let provider = MockServer::builder()
        .client("reporting-app", "s3cret")
        .token_lifetime(Duration::from_secs(3))
        .start()
        .await?;
    let credentials = Credentials::new(
        Credential::client_credentials(provider.provider(), "reporting-app", "s3cret")
            .refresh_policy(RefreshPolicy::default().margin(Duration::from_secs(1))),
    )?;
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let state = AppState {
        api: ServiceBuilder::new()
            .oauth2(credentials.clone())
            .service(http.clone()),
        report_url: provider.api_url("/reports/today").into(),
    };
    let app = Router::new().route("/report", get(report)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app_url = format!("http://{}/report", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    // Incoming load: 2,000 requests, 64 in flight, spread over about 5 seconds so that
    // tokens expire and are refreshed while the load runs.
    let started = tokio::time::Instant::now();
    let statuses: Vec<_> = stream::iter(0..2000u64)
        .map(|i| {
            let http = http.clone();
            let url = app_url.clone();
            async move {
                tokio::time::sleep_until(started + Duration::from_millis(i * 5 / 2)).await;
                let response = http.request(Request::get(url).body(Full::default())?).await?;
                let status = response.status();
                response.into_body().collect().await?;
                Ok::<_, BoxError>(status)
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let ok = statuses
        .iter()
        .filter(|s| matches!(s, Ok(s) if s.is_success()))
        .count();
    let stats = &credentials.stats()[0];
    println!("incoming requests:   {}", statuses.len());
    println!("answered 200:        {ok}");
    println!("outbound API calls:  {}", provider.counters().resource_calls);
    println!(
        "token requests:      {} ({} early refreshes, {} after a dead-token answer)",
        stats.token_requests, stats.early_refreshes, stats.dead_token_refreshes
    );
    println!("elapsed:             {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
