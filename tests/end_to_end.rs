//! The layer over real HTTP, against the strict mock server on 127.0.0.1.
#![cfg(feature = "hyper-transport")]

mod support;

use support::mock::started;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tower::{Layer, ServiceExt};
use tower_oauth2::{
    secret::ClientSecret, ClientAuth, Credential, CredentialRegistry, Error, OAuth2, OAuth2Layer, Provider,
    RefreshPolicy,
};
use tower_oauth2_mock::{AcceptedClientAuth, Fault, MockServer};

type Api = Client<HttpConnector, Full<Bytes>>;

fn api_client() -> Api {
    Client::builder(TokioExecutor::new()).build_http()
}

fn provider(server: &MockServer) -> Provider {
    Provider::standard(server.token_url())
        .name("mock")
        .api(server.base_url())
}

fn layered(credential: Credential) -> (OAuth2<Api>, CredentialRegistry) {
    let credentials = CredentialRegistry::new(credential).unwrap();
    (
        OAuth2Layer::new(credentials.clone()).layer(api_client()),
        credentials,
    )
}

fn get(server: &MockServer, id: &str) -> Request<Full<Bytes>> {
    Request::get(server.api_url("/things"))
        .header("x-request-id", id)
        .body(Full::default())
        .unwrap()
}

#[tokio::test]
async fn faults_of_the_token_endpoint_become_typed_errors() {
    let server = started(MockServer::builder().client("client", "secret")).await;
    let policy = RefreshPolicy::default()
        .timeout(Duration::from_millis(500))
        .backoff(Duration::ZERO, Duration::ZERO);
    let (client, _) =
        layered(Credential::client_credentials(provider(&server), "client", "secret").refresh_policy(policy));

    for fault in [
        Fault::ServerError,
        Fault::HtmlPage,
        Fault::MalformedJson,
        Fault::Reset,
        Fault::Hang,
    ] {
        server.fail_next_token_requests(1, fault);
        let err = client.clone().oneshot(get(&server, "x")).await.unwrap_err();
        let ok = match (fault, &err) {
            (Fault::ServerError, Error::Malformed(e)) => e.status() == 500,
            (Fault::HtmlPage, Error::Malformed(e)) => {
                e.status() == 502 && e.content_type().is_some_and(|c| c.starts_with("text/html"))
            }
            (Fault::MalformedJson, Error::Malformed(e)) => e.reason() == "the body is not JSON",
            (Fault::Reset, Error::Unreachable(_)) => true,
            (Fault::Hang, Error::TimedOut(e)) => e.after() == Duration::from_millis(500),
            _ => false,
        };
        assert!(ok, "{fault:?} gave {err:?}");
        assert_eq!(err.provider(), Some("mock"));
    }
    // The endpoint recovers: the next request gets a token.
    assert_eq!(
        client.clone().oneshot(get(&server, "y")).await.unwrap().status(),
        200
    );
    assert_eq!(server.counters().resource_calls, 1);
}

#[tokio::test]
async fn a_wrong_secret_is_an_oauth_error_naming_the_provider() {
    let server = started(MockServer::builder().client("client", "secret")).await;
    let (client, _) = layered(Credential::client_credentials(
        provider(&server),
        "client",
        "wrong",
    ));
    match client.oneshot(get(&server, "x")).await {
        Err(Error::OAuth(e)) => {
            assert_eq!((e.status().as_u16(), e.error()), (401, "invalid_client"));
            assert!(e.to_string().contains("`mock`"));
            assert!(!e.to_string().contains("wrong"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn client_secret_in_the_body_when_the_server_wants_it() {
    let builder = MockServer::builder().client("client", "secret");
    let server = started(builder.client_auth(&[AcceptedClientAuth::Body])).await;
    let basic = Credential::client_credentials(provider(&server), "client", "secret");
    let (client, _) = layered(basic);
    assert!(
        matches!(client.oneshot(get(&server, "basic")).await, Err(Error::OAuth(e)) if e.error() == "invalid_client")
    );

    let body = Credential::client_credentials(
        provider(&server).client_auth(ClientAuth::RequestBody),
        "client",
        "secret",
    );
    let (client, _) = layered(body);
    assert_eq!(client.oneshot(get(&server, "body")).await.unwrap().status(), 200);
}

/// A refresh-token credential with a refresh token the server just issued, and the token.
fn refresh_token(server: &MockServer) -> (Credential, String) {
    let seed = server.issue_refresh_token("client", "read");
    let secret = Some(ClientSecret::new("secret"));
    (
        Credential::refresh_token(provider(server), "client", secret, seed.as_str()),
        seed,
    )
}

/// Three refreshes in a row through a refresh-token credential; the server's counters.
async fn three_refreshes(rotate: bool) -> tower_oauth2_mock::MockCounters {
    let builder = MockServer::builder().client("client", "secret");
    let server = started(builder.rotate_refresh_tokens(rotate)).await;
    let (client, credentials) = layered(refresh_token(&server).0);
    for round in 0..3 {
        let response = client
            .clone()
            .oneshot(get(&server, &format!("r{round}")))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "round {round}");
        credentials.invalidate_all();
    }
    server.counters()
}

#[tokio::test]
async fn rotated_refresh_tokens_are_followed_and_a_dead_one_requires_reauthorization() {
    let counters = three_refreshes(true).await;
    assert_eq!(
        (counters.refresh_token_grants, counters.token_errors),
        (3, 0),
        "each refresh used the rotated token"
    );

    // Someone else used up the grant: the layer reports that a new login is needed.
    let server2 = started(MockServer::builder().client("client", "secret")).await;
    let (credential, dead) = refresh_token(&server2);
    let (client, _) = layered(credential);
    let mut spend = form_urlencoded::Serializer::new(String::new());
    spend
        .append_pair("grant_type", "refresh_token")
        .append_pair("refresh_token", &dead);
    spend
        .append_pair("client_id", "client")
        .append_pair("client_secret", "secret");
    let spent = api_client()
        .request(
            Request::post(server2.token_url())
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from(spend.finish())))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(spent.status(), 200);
    match client.oneshot(get(&server2, "x")).await {
        Err(Error::ReauthorizationRequired(e)) => assert_eq!(e.provider(), "mock"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn without_rotation_the_refresh_token_in_hand_is_kept() {
    let counters = three_refreshes(false).await;
    assert_eq!((counters.refresh_token_grants, counters.token_errors), (3, 0));
}

#[tokio::test]
async fn basic_credentials_with_reserved_characters_are_form_encoded_for_a_strict_server() {
    let (id, secret) = ("my app:v2", "p@ss w%rd+/=:é");
    let server = MockServer::builder().client(id, secret).start().await.unwrap();
    let (client, _) = layered(Credential::client_credentials(provider(&server), id, secret));
    assert_eq!(client.oneshot(get(&server, "x")).await.unwrap().status(), 200);
    assert_eq!(server.counters().client_credentials_grants, 1);
}

#[test]
fn the_layered_hyper_client_and_its_future_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<OAuth2<Api>>();
    send_sync::<OAuth2Layer>();
    send::<tower_oauth2::layer::ResponseFuture<Api, Full<Bytes>, hyper::body::Incoming>>();
    send_sync::<tower_oauth2::ResponseBody<hyper::body::Incoming>>();
    send_sync::<Error>();
    // An inner service that is `Send` but not `Sync`, like tower's `BoxCloneService`.
    type Boxed = tower::util::BoxCloneService<Request<Full<Bytes>>, http::Response<Full<Bytes>>, Error>;
    send::<OAuth2<Boxed>>();
    send::<tower_oauth2::layer::ResponseFuture<Boxed, Full<Bytes>, Full<Bytes>>>();
}
