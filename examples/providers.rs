//! All five preset providers in one client, each against its emulator on 127.0.0.1.
//!
//! ```sh
//! cargo run --example providers
//! ```
//!
//! In production the same credentials are built from the presets themselves,
//! `providers::agrello()`, `providers::accelo("your-deployment")`,
//! `providers::grindery()`, `providers::ioffice("https://your-site")` and
//! `providers::dottedsign("https://api.dottedsign.com")`; here `MockServer::provider`
//! returns each preset pointed at its emulator, and everything else is unchanged.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{ServiceBuilder, ServiceExt};
use tower_oauth2::{
    providers::accelo::AcceloScope, BoxError, Credential, Credentials, OAuth2Layer, TokenPlacement,
};
use tower_oauth2_mock::MockServer;

const REDIRECT: &str = "https://app.example.com/callback";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let lifetime = Duration::from_secs(3600);
    let agrello = MockServer::agrello()
        .client("agrello-app", "agrello-secret")
        .token_lifetime(lifetime)
        .start()
        .await?;
    let accelo = MockServer::accelo()
        .client("accelo-app", "accelo-secret")
        .token_lifetime(lifetime)
        .start()
        .await?;
    let grindery = MockServer::grindery().token_lifetime(lifetime).start().await?;
    let ioffice = MockServer::ioffice()
        .client("ioffice-app", "unused")
        .token_lifetime(lifetime)
        .start()
        .await?;
    let dottedsign = MockServer::dottedsign()
        .client("ds-app", "ds-secret")
        .token_lifetime(lifetime)
        .start()
        .await?;

    // The user-facing providers hand out codes after a login; the emulators mint them
    // without a browser.
    let credentials = Credentials::builder()
        .credential(Credential::authorization_code(
            agrello.provider(),
            "agrello-app",
            Some("agrello-secret".into()),
            agrello.issue_authorization_code("agrello-app", REDIRECT, ""),
            REDIRECT,
        ))
        .credential(
            Credential::client_credentials(accelo.provider(), "accelo-app", "accelo-secret")
                .scopes([AcceloScope::read_all().and(AcceloScope::write(["companies", "contacts"]))]),
        )
        .credential(Credential::authorization_code(
            grindery.provider(),
            "my-app",
            None,
            grindery.issue_authorization_code("", REDIRECT, ""),
            REDIRECT,
        ))
        .credential(Credential::authorization_code(
            ioffice
                .provider()
                .token_placement(TokenPlacement::Query("access_token".into())),
            "ioffice-app",
            None,
            ioffice.issue_authorization_code("ioffice-app", REDIRECT, "email"),
            REDIRECT,
        ))
        .credential(Credential::authorization_code(
            dottedsign.provider(),
            "ds-app",
            Some("ds-secret".into()),
            dottedsign.issue_authorization_code("ds-app", REDIRECT, ""),
            REDIRECT,
        ))
        .build()?;

    let client = ServiceBuilder::new()
        .layer(OAuth2Layer::new(credentials.clone()))
        .service(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());

    let servers = [&agrello, &accelo, &grindery, &ioffice, &dottedsign];
    let calls = (0..500).map(|i| {
        let url = servers[i % servers.len()].api_url("/things");
        let client = client.clone();
        async move {
            let response = client.oneshot(Request::get(url).body(Full::default())?).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            let body: serde_json::Value = serde_json::from_slice(&body)?;
            Ok::<_, BoxError>((status, body["placement"].as_str().unwrap_or("-").to_owned()))
        }
    });
    let answers = join_all(calls).await;

    println!(
        "{:<12} {:>9} {:>8} {:>15}  token placement",
        "provider", "requests", "ok", "token requests"
    );
    for (index, server) in servers.iter().enumerate() {
        let mine: Vec<_> = answers.iter().skip(index).step_by(servers.len()).collect();
        let ok = mine
            .iter()
            .filter(|a| matches!(a, Ok((s, _)) if s.is_success()))
            .count();
        let placement = mine
            .iter()
            .find_map(|a| a.as_ref().ok().map(|(_, p)| p.clone()))
            .unwrap_or_default();
        println!(
            "{:<12} {:>9} {:>8} {:>15}  {placement}",
            format!("{:?}", server.dialect()),
            mine.len(),
            ok,
            server.counters().token_requests,
        );
    }

    // Log the iOFFICE user out: its dialect revokes with the `x-token` header.
    let key = credentials
        .keys()
        .into_iter()
        .find(|k| k.provider() == "ioffice")
        .ok_or("no iOFFICE credential")?;
    let revoked = credentials.revoke(&key).await?;
    println!("\nlogged out of {key}: {revoked:?}");
    Ok(())
}
