//! hyper-util's legacy client with rustls, wrapped by the layer.
//!
//! ```sh
//! cargo run --example hyper_client
//! ```
//!
//! The client is the one a production service would build (rustls with the ring
//! provider and the Mozilla roots); it is pointed at the built-in RFC 6749 emulator on
//! 127.0.0.1, so it also accepts plain http there. Tokens themselves only ever travel
//! over https, loopback excepted: the registry refuses anything else.

use bytes::Bytes;
use futures_util::future::join_all;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{ServiceBuilder, ServiceExt};
use tower_oauth2::{BoxError, Credential, Credentials, ServiceBuilderExt};
use tower_oauth2_mock::MockServer;

/// Your application's choice. ring builds lean, but rustls deprecates it for lacking
/// post-quantum key exchange; `rustls::crypto::aws_lc_rs::default_provider()` has it.
#[allow(deprecated)]
fn tls_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let server = MockServer::builder()
        .client("my-app", "my-secret")
        .start()
        .await?;

    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(tls_provider())?
        // In production: `.https_only()`. The emulator listens on plain http.
        .https_or_http()
        .enable_http1()
        .build();
    let hyper_client = Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(https);

    let credentials = Credentials::new(
        Credential::client_credentials(server.provider(), "my-app", "my-secret").scopes(["read"]),
    )?;
    let client = ServiceBuilder::new()
        .oauth2(credentials.clone())
        .service(hyper_client);

    let calls = (0..100).map(|i| {
        let client = client.clone();
        let url = server.api_url(&format!("/things/{i}"));
        async move {
            let response = client.oneshot(Request::get(url).body(Full::default())?).await?;
            let status = response.status();
            response.into_body().collect().await?;
            Ok::<_, BoxError>(status)
        }
    });
    let statuses = join_all(calls).await;
    let ok = statuses
        .iter()
        .filter(|s| matches!(s, Ok(s) if s.is_success()))
        .count();
    println!("{ok} of {} requests succeeded", statuses.len());
    for stats in credentials.stats() {
        println!("{stats:?}");
    }
    println!(
        "the token endpoint saw {} token request(s)",
        server.counters().token_requests
    );
    Ok(())
}
