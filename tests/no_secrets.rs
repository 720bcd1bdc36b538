//! No secret ever reaches `Debug`, `Display` or `tracing` output.

mod support;

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::advance;
use tower::{Layer, ServiceExt};
use tower_oauth2::{secret::ClientSecret, ClientAuth, Credential, Credentials, OAuth2Layer, RefreshPolicy};

use support::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const REFRESH_SEED: &str = "refresh-seed-never-printed";

#[tokio::test(start_paused = true)]
async fn a_full_run_prints_no_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut printed = String::new();

    let endpoint = TokenEndpoint::new(Duration::from_secs(120));
    let api = Api::new();
    let policy = RefreshPolicy::default()
        .random(no_jitter)
        .timeout(Duration::from_secs(2));
    let credentials = Credentials::builder()
        .credential(
            Credential::client_credentials(provider(), "client-id", CLIENT_SECRET).refresh_policy(policy),
        )
        .credential(
            Credential::refresh_token(
                tower_oauth2::Provider::standard("https://auth2.example.com/token")
                    .name("user-provider")
                    .client_auth(ClientAuth::RequestBody)
                    .api("https://api2.example.com"),
                "client-2",
                Some(ClientSecret::new(CLIENT_SECRET)),
                REFRESH_SEED,
            )
            .refresh_policy(policy),
        )
        .transport(endpoint.transport())
        .build()
        .unwrap();
    let client = OAuth2Layer::new(credentials.clone()).layer(api.clone());

    // Cold start, a second credential, early refresh, dead-token retry, failures, timeout.
    client.clone().oneshot(get("cold")).await.unwrap();
    let other = http::Request::get("https://api2.example.com/me")
        .body(http_body_util::Full::<bytes::Bytes>::default())
        .unwrap();
    client.clone().oneshot(other).await.unwrap();
    advance(Duration::from_secs(61)).await;
    client.clone().oneshot(get("window")).await.unwrap();
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
    api.revoke_up_to(3);
    client.clone().oneshot(get("dead")).await.unwrap();
    endpoint.set_mode(Mode::ServerError);
    credentials.invalidate_all();
    let failure = client.clone().oneshot(get("failing")).await.unwrap_err();
    printed.push_str(&format!("{failure} {failure:?}\n"));
    advance(Duration::from_secs(60)).await;
    endpoint.set_mode(Mode::Hang);
    let timeout = client.clone().oneshot(get("hanging")).await.unwrap_err();
    printed.push_str(&format!("{timeout} {timeout:?}\n"));
    printed.push_str(&format!("{client:?} {credentials:?} {:?}\n", credentials.stats()));

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("token installed"), "the run was traced:\n{logs}");
    assert!(endpoint.requests() >= 4, "the run exercised refreshes");
    let bodies = endpoint.request_bodies().join("\n");
    assert!(bodies.contains(REFRESH_SEED), "the refresh token was really used");
    for output in [&logs, &printed] {
        for secret in [CLIENT_SECRET, REFRESH_SEED, "tok-", "refresh-1", "refresh-2"] {
            assert!(!output.contains(secret), "`{secret}` leaked into:\n{output}");
        }
    }
}

const CODE: &str = "authorization-code-never-printed";

#[tokio::test(start_paused = true)]
async fn a_code_exchange_in_the_header_dialect_and_a_logout_print_no_secret() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let api = Api::new();
    // iOFFICE's dialect (parameters as headers, header revocation) against the stand-in,
    // whose API reads the `Authorization` header.
    let provider = tower_oauth2::providers::ioffice("https://site.example.com")
        .api_origins([support::API])
        .token_placement(tower_oauth2::TokenPlacement::AuthorizationBearer);
    let credential = Credential::authorization_code(
        provider,
        "client-id",
        Some(ClientSecret::new(CLIENT_SECRET)),
        CODE,
        "https://app.example.com/cb",
    );
    let mut printed = format!("{credential:?}\n");
    let credentials = Credentials::builder()
        .credential(credential)
        .transport(endpoint.transport())
        .build()
        .unwrap();
    let client = OAuth2Layer::new(credentials.clone()).layer(api.clone());
    client.clone().oneshot(get("exchange")).await.unwrap();
    credentials.invalidate_all();
    client.clone().oneshot(get("refresh")).await.unwrap();
    let key = credentials.keys().remove(0);
    let revoked = credentials.revoke(&key).await;
    let after = client.clone().oneshot(get("after")).await.unwrap_err();
    printed.push_str(&format!(
        "{revoked:?} {after} {after:?} {key} {key:?} {credentials:?}\n"
    ));

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("token installed"), "the run was traced:\n{logs}");
    assert_eq!(endpoint.requests(), 2, "a code exchange and a refresh");
    assert_eq!(
        endpoint.revocations().len(),
        2,
        "the refresh and access tokens were revoked"
    );
    for output in [&logs, &printed] {
        for secret in [CLIENT_SECRET, CODE, "tok-", "refresh-1", "refresh-2"] {
            assert!(!output.contains(secret), "`{secret}` leaked into:\n{output}");
        }
    }
}
