//! What only the reqwest middleware has: reqwest's `Response` and errors name a URL, which
//! must be the one the caller asked for, never the one carrying a token in its query.
//! Everything both adapters do is in the conformance suite (`tests/conformance`).
#![cfg(all(feature = "hyper-transport", feature = "reqwest"))]

use reqwest_middleware::ClientBuilder;
use serde_json::Value;
use tower_oauth2::{reqwest::OAuth2Middleware, Credential, CredentialRegistry, TokenPlacement};
use tower_oauth2_mock::MockServer;

const REDIRECT: &str = "https://app.example.com/callback";

#[tokio::test]
async fn the_token_goes_in_the_query_when_the_provider_says_so_and_stays_out_of_urls() {
    // iOFFICE's emulator reads a token from the query too.
    let server = MockServer::ioffice().client("app", "unused");
    let server = server.start().await.unwrap();
    let in_query = TokenPlacement::Query("access_token".into());
    let provider = server.provider().token_placement(in_query);
    let code = server.issue_authorization_code("app", REDIRECT, "email");
    let credential = Credential::authorization_code(provider, "app", None, code, REDIRECT);
    let credentials = CredentialRegistry::new(credential).unwrap();
    // No proxy from the environment: every request goes straight to 127.0.0.1.
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let client = ClientBuilder::new(http)
        .with(OAuth2Middleware::new(credentials))
        .build();

    let url = server.api_url("/things?page=2");
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // The caller sees the URL it asked for, not the one carrying the token.
    assert_eq!(response.url().as_str(), url);
    assert!(!format!("{response:?}").contains("access_token"));
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(body["placement"], "query:access_token", "{body}");

    // A client error names the URL without the token too.
    drop(server);
    let err = client.get(&url).send().await.unwrap_err();
    assert!(matches!(err, reqwest_middleware::Error::Reqwest(_)), "{err}");
    assert_eq!(err.url().map(reqwest::Url::as_str), Some(url.as_str()));
    assert!(!format!("{err} {err:?}").contains("access_token"), "{err:?}");
}
