//! Discovery (RFC 8414, OpenID Connect Discovery): against the mock's metadata document
//! over loopback, and against canned answers for what the mock does not serve (other
//! locations, malformed or hostile documents, silence).

mod support;

use std::{
    collections::VecDeque,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use support::mock::{assert_counts, started};
use tower::{Layer, ServiceExt};
use tower_oauth2::{
    discovery::Discovery,
    error::{DiscoveryError, DiscoveryErrorKind},
    ClientAuth, Credential, CredentialRegistry, Error, OAuth2Layer, Provider, Revocation, TokenRequest,
    TokenTransport,
};
use tower_oauth2_mock::{AcceptedClientAuth, MockServer};

type Http = Client<HttpConnector, Full<Bytes>>;

fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A plain hyper client as the transport: discovery needs no default transport.
fn transport() -> TokenTransport {
    TokenTransport::new(http())
}

fn discovery_error(result: Result<Provider, Error>) -> DiscoveryError {
    match result {
        Err(Error::Discovery(e)) => e,
        other => panic!("expected a discovery error, got {other:?}"),
    }
}

#[tokio::test]
async fn discovery_fills_every_endpoint_and_a_token_request_then_works() {
    let server = started(MockServer::builder().client("app", "s3cret")).await;
    let issuer = server.base_url();
    let provider = Provider::discover(&issuer, &transport()).await.unwrap();

    assert_eq!(provider.name_ref(), "127.0.0.1");
    assert_eq!(provider.token_url_ref(), server.token_url());
    assert_eq!(provider.authorize_url_ref(), server.authorize_url().as_deref());
    assert_eq!(
        provider.revocation_ref(),
        Some(&Revocation::Rfc7009 {
            url: server.revocation_url().unwrap()
        })
    );
    assert_eq!(provider.client_auth_ref(), ClientAuth::Basic);
    assert!(provider.pkce_ref());
    let metadata = provider.metadata_ref().unwrap();
    assert_eq!(metadata.issuer(), issuer);
    assert_eq!(Some(metadata.url()), server.metadata_url().as_deref());
    assert_eq!(
        metadata.token_endpoint_auth_methods_supported(),
        Some(&["client_secret_basic".to_owned(), "client_secret_post".to_owned()][..])
    );
    assert_eq!(metadata.code_challenge_methods_supported(), ["S256"]);
    assert_eq!(metadata.dpop_signing_alg_values_supported(), [] as [String; 0]);
    assert_counts(&server, "token_requests=0");

    assert_one_call_works(provider, &server).await;
}

#[tokio::test]
async fn a_server_taking_body_credentials_only_gets_them_in_the_body() {
    let server = started(
        MockServer::builder()
            .client("app", "s3cret")
            .client_auth(&[AcceptedClientAuth::Body]),
    )
    .await;
    let provider = Provider::discover(&server.base_url(), &transport())
        .await
        .unwrap();
    assert_eq!(provider.client_auth_ref(), ClientAuth::RequestBody);

    assert_one_call_works(provider, &server).await;
}

/// A client-credentials call through the layer, with the discovered `provider` pointed
/// at the server's API: answered 200 after exactly one token request.
async fn assert_one_call_works(provider: Provider, server: &MockServer) {
    let credentials = CredentialRegistry::builder()
        .credential(Credential::client_credentials(
            provider.api(server.base_url()),
            "app",
            "s3cret",
        ))
        .transport(transport())
        .build()
        .unwrap();
    let client = OAuth2Layer::new(credentials).layer(http());
    let request = Request::get(server.api_url("/things"))
        .body(Full::default())
        .unwrap();
    assert_eq!(client.oneshot(request).await.unwrap().status(), StatusCode::OK);
    assert_counts(server, "token_requests=1 token_errors=0");
}

#[tokio::test]
async fn metadata_naming_another_issuer_is_refused() {
    let server = started(MockServer::builder().metadata_issuer("https://evil.example\n")).await;
    let result = Provider::discover(&server.base_url(), &transport()).await;
    let whole = result.as_ref().unwrap_err();
    assert!(!whole.is_token_error(), "no token was involved");
    assert_eq!(whole.provider(), None);
    let err = discovery_error(result);
    assert_eq!(err.kind(), DiscoveryErrorKind::IssuerMismatch);
    assert_eq!(err.issuer(), server.base_url());
    assert_eq!(Some(err.url()), server.metadata_url().as_deref());
    // The server's text, escaped.
    assert_eq!(err.detail(), Some("https://evil.example\\n"));
    assert_eq!(
        err.to_string(),
        format!(
            "discovery of `{0}`: `{0}/.well-known/oauth-authorization-server` answered with the metadata \
             of another issuer: https://evil.example\\n",
            server.base_url()
        )
    );
    assert_counts(&server, "token_requests=0");
}

#[tokio::test]
async fn no_document_at_either_location_is_a_404() {
    let server = started(MockServer::builder().serve_metadata(false)).await;
    let err = discovery_error(Provider::discover(&server.base_url(), &transport()).await);
    assert_eq!(err.kind(), DiscoveryErrorKind::Status);
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    assert_eq!(
        err.url(),
        format!("{}/.well-known/openid-configuration", server.base_url())
    );
    assert_counts(&server, "token_requests=0");
}

#[tokio::test]
async fn an_unreachable_server_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = discovery_error(Provider::discover(&issuer, &transport()).await);
    assert_eq!(err.kind(), DiscoveryErrorKind::Unreachable);
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn a_silent_server_is_bounded_by_the_timeout() {
    // Accepts connections and never answers. Real time: the default transport's sockets
    // would let a paused clock jump ahead; the paused version is below.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let started = tokio::time::Instant::now();
    let err = discovery_error(
        Discovery::new(&issuer, transport())
            .timeout(Duration::from_millis(300))
            .fetch()
            .await,
    );
    let elapsed = started.elapsed();
    assert_eq!(err.kind(), DiscoveryErrorKind::TimedOut);
    assert_eq!(err.after(), Some(Duration::from_millis(300)));
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
    held.abort();
}

// ===== canned answers =====

/// A transport answering each request with the next canned answer, recording the URLs
/// asked for.
#[derive(Clone, Default)]
struct Canned {
    answers: Arc<Mutex<VecDeque<Response<Full<Bytes>>>>>,
    asked: Arc<Mutex<Vec<String>>>,
}

impl Canned {
    fn answer(self, status: u16, body: impl Into<Bytes>) -> Self {
        let mut response = Response::new(Full::new(body.into()));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        response
            .headers_mut()
            .insert("content-type", http::HeaderValue::from_static("application/json"));
        self.answers.lock().unwrap().push_back(response);
        self
    }

    fn redirect(self, to: &'static str) -> Self {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = StatusCode::FOUND;
        response
            .headers_mut()
            .insert("location", http::HeaderValue::from_static(to));
        self.answers.lock().unwrap().push_back(response);
        self
    }

    fn transport(&self) -> TokenTransport {
        let canned = self.clone();
        TokenTransport::new(tower::service_fn(move |request: TokenRequest| {
            let canned = canned.clone();
            async move {
                canned.asked.lock().unwrap().push(request.uri().to_string());
                let answer = canned
                    .answers
                    .lock()
                    .unwrap()
                    .pop_front()
                    .expect("an answer left");
                Ok::<_, Infallible>(answer)
            }
        }))
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

const ISSUER: &str = "https://as.example";
const RFC8414: &str = "https://as.example/.well-known/oauth-authorization-server";

fn document(issuer: &str, extra: &str) -> String {
    format!(r#"{{"issuer":"{issuer}","token_endpoint":"https://as.example/token"{extra}}}"#)
}

async fn canned_error(canned: &Canned, issuer: &str) -> DiscoveryError {
    discovery_error(Provider::discover(issuer, &canned.transport()).await)
}

#[tokio::test]
async fn the_document_is_read_as_announced() {
    let canned = Canned::default().answer(
        200,
        document(
            ISSUER,
            r#","token_endpoint_auth_methods_supported":["private_key_jwt","client_secret_post"],
               "token_endpoint_auth_signing_alg_values_supported":["ES256","bad alg","x\n","RS256"],
               "dpop_signing_alg_values_supported":["ES256","EdDSA"],
               "code_challenge_methods_supported":["plain"],
               "grant_types_supported":["client_credentials"],
               "unknown_field":{"ignored":true}"#,
        ),
    );
    let provider = Provider::discover(ISSUER, &canned.transport()).await.unwrap();
    assert_eq!(canned.asked(), [RFC8414]);
    assert_eq!(provider.name_ref(), "as.example");
    assert_eq!(provider.token_url_ref(), "https://as.example/token");
    assert_eq!(provider.authorize_url_ref(), None);
    assert_eq!(provider.revocation_ref(), None);
    assert_eq!(provider.client_auth_ref(), ClientAuth::RequestBody);
    assert!(!provider.pkce_ref(), "plain only is no S256");
    let metadata = provider.metadata_ref().unwrap();
    // Entries that are not plain tokens are dropped.
    assert_eq!(
        metadata.token_endpoint_auth_signing_alg_values_supported(),
        ["ES256", "RS256"]
    );
    assert_eq!(metadata.dpop_signing_alg_values_supported(), ["ES256", "EdDSA"]);
    assert_eq!(
        metadata.grant_types_supported(),
        Some(&["client_credentials".to_owned()][..])
    );
}

#[tokio::test]
async fn an_issuer_with_a_path_is_looked_up_with_the_well_known_path_inserted_then_appended() {
    let issuer = "https://as.example/tenant/7";
    let canned = Canned::default()
        .answer(404, "")
        .answer(200, document(issuer, ""));
    let provider = Provider::discover(issuer, &canned.transport()).await.unwrap();
    assert_eq!(
        canned.asked(),
        [
            "https://as.example/.well-known/oauth-authorization-server/tenant/7",
            "https://as.example/tenant/7/.well-known/openid-configuration",
        ]
    );
    assert_eq!(
        provider.metadata_ref().unwrap().url(),
        "https://as.example/tenant/7/.well-known/openid-configuration"
    );

    // Found at RFC 8414's location: no second request.
    let canned = Canned::default().answer(200, document(issuer, ""));
    Provider::discover(issuer, &canned.transport()).await.unwrap();
    assert_eq!(
        canned.asked(),
        ["https://as.example/.well-known/oauth-authorization-server/tenant/7"]
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_malformed() {
    let canned = Canned::default().answer(200, "<html>hello</html>");
    let err = canned_error(&canned, ISSUER).await;
    assert_eq!(err.kind(), DiscoveryErrorKind::Malformed);
    assert_eq!(err.detail(), Some("the body is not JSON"));
    assert_eq!(canned.asked(), [RFC8414]);

    for (body, detail) in [
        ("[]", "the document is not a JSON object"),
        (
            r#"{"token_endpoint":"https://as.example/t"}"#,
            "`issuer` is missing",
        ),
        (
            r#"{"issuer":"https://as.example"}"#,
            "`token_endpoint` is missing",
        ),
        (r#"{"issuer":7}"#, "`issuer` is not a string"),
        (
            r#"{"issuer":"https://as.example","token_endpoint":"/token"}"#,
            "`token_endpoint` is not an absolute URL: /token",
        ),
        (
            &document(ISSUER, r#","scopes_supported":"read""#),
            "`scopes_supported` is not an array of strings",
        ),
    ] {
        let canned = Canned::default().answer(200, body.to_owned());
        let err = canned_error(&canned, ISSUER).await;
        assert_eq!(err.kind(), DiscoveryErrorKind::Malformed, "{body}");
        assert_eq!(err.detail(), Some(detail), "{body}");
    }
}

#[tokio::test]
async fn an_oversized_document_is_refused() {
    let padding = "x".repeat(64 * 1024);
    let canned = Canned::default().answer(200, document(ISSUER, &format!(r#","pad":"{padding}""#)));
    let err = canned_error(&canned, ISSUER).await;
    assert_eq!(err.kind(), DiscoveryErrorKind::TooLarge);
    assert_eq!(err.detail(), Some("larger than 65536 bytes"));

    // The bound is adjustable.
    let canned = Canned::default().answer(200, document(ISSUER, ""));
    let err = discovery_error(
        Discovery::new(ISSUER, canned.transport())
            .max_bytes(16)
            .fetch()
            .await,
    );
    assert_eq!(err.kind(), DiscoveryErrorKind::TooLarge);
}

/// A redirect is not followed, and neither it nor a server error is passed over for the
/// second location: each is reported as the first location answered it.
#[tokio::test]
async fn a_redirect_or_a_server_error_is_reported_without_trying_elsewhere() {
    let cases = [
        (
            Canned::default().redirect("https://elsewhere.example/.well-known/oauth-authorization-server"),
            DiscoveryErrorKind::Redirected,
            StatusCode::FOUND,
        ),
        (
            Canned::default().answer(500, ""),
            DiscoveryErrorKind::Status,
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
    ];
    for (canned, kind, status) in cases {
        let err = canned_error(&canned, ISSUER).await;
        assert_eq!((err.kind(), err.status()), (kind, Some(status)));
        assert_eq!(canned.asked(), [RFC8414]);
    }
}

#[tokio::test]
async fn an_endpoint_over_plain_http_or_another_scheme_is_refused() {
    for (extra, detail) in [
        (
            r#","authorization_endpoint":"http://as.example/authorize""#,
            "`authorization_endpoint` is http://as.example/authorize",
        ),
        (
            r#","revocation_endpoint":"ftp://as.example/revoke""#,
            "`revocation_endpoint` is ftp://as.example/revoke",
        ),
    ] {
        let canned = Canned::default().answer(200, document(ISSUER, extra));
        let err = canned_error(&canned, ISSUER).await;
        assert_eq!(err.kind(), DiscoveryErrorKind::InsecureEndpoint, "{extra}");
        assert_eq!(err.detail(), Some(detail));
    }
    let canned = Canned::default().answer(
        200,
        r#"{"issuer":"https://as.example","token_endpoint":"http://as.example/token"}"#,
    );
    let err = canned_error(&canned, ISSUER).await;
    assert_eq!(err.kind(), DiscoveryErrorKind::InsecureEndpoint);
    assert_eq!(err.detail(), Some("`token_endpoint` is http://as.example/token"));
}

#[tokio::test]
async fn an_issuer_that_cannot_be_discovered_safely_is_a_configuration_error() {
    let canned = Canned::default();
    for issuer in ["http://as.example", "https://as.example?tenant=1"] {
        let result = Provider::discover(issuer, &canned.transport()).await;
        assert!(matches!(result, Err(Error::Config(_))), "{issuer}: {result:?}");
    }
    assert_eq!(canned.asked(), [] as [String; 0]);
}

#[tokio::test(start_paused = true)]
async fn a_request_that_never_ends_times_out_exactly() {
    let transport = TokenTransport::new(tower::service_fn(|_: TokenRequest| {
        std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>()
    }));
    let started = tokio::time::Instant::now();
    let err = discovery_error(
        Discovery::new(ISSUER, transport)
            .timeout(Duration::from_secs(3))
            .fetch()
            .await,
    );
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(err.kind(), DiscoveryErrorKind::TimedOut);
    assert_eq!(err.after(), Some(Duration::from_secs(3)));
    assert_eq!(err.url(), RFC8414);
}

#[tokio::test]
async fn refresh_replaces_the_endpoints_and_keeps_the_applications_settings() {
    let canned = Canned::default()
        .answer(
            200,
            document(ISSUER, r#","revocation_endpoint":"https://as.example/revoke""#),
        )
        .answer(
            200,
            r#"{"issuer":"https://as.example","token_endpoint":"https://as.example/v2/token",
                "authorization_endpoint":"https://as.example/v2/authorize"}"#,
        );
    let discovery = Discovery::new(ISSUER, canned.transport());
    let provider = discovery
        .fetch()
        .await
        .unwrap()
        .name("as")
        .api("https://api.example")
        .client_auth(ClientAuth::RequestBody);
    let refreshed = discovery.refresh(&provider).await.unwrap();
    assert_eq!(refreshed.token_url_ref(), "https://as.example/v2/token");
    assert_eq!(
        refreshed.authorize_url_ref(),
        Some("https://as.example/v2/authorize")
    );
    assert_eq!(refreshed.revocation_ref(), None);
    assert_eq!(refreshed.name_ref(), "as");
    assert_eq!(refreshed.api_origins_ref(), ["https://api.example"]);
    assert_eq!(refreshed.client_auth_ref(), ClientAuth::RequestBody);
    assert_eq!(canned.asked(), [RFC8414, RFC8414]);
}

/// A watch refreshes once per period: an unchanged document publishes nothing, a failed
/// refresh keeps the last provider and is counted, a changed one is published with the
/// application's settings kept, and dropping the watch stops the refreshes.
#[tokio::test(start_paused = true)]
async fn a_watch_publishes_moves_keeps_the_last_provider_on_failure_and_stops_when_dropped() {
    const DAY: Duration = Duration::from_secs(24 * 3600);
    let moved = r#"{"issuer":"https://as.example","token_endpoint":"https://as.example/v2/token"}"#;
    let canned = Canned::default()
        .answer(200, document(ISSUER, ""))
        .answer(200, document(ISSUER, ""))
        .answer(500, "down")
        .answer(200, moved);
    let discovery = Discovery::new(ISSUER, canned.transport());
    // The first fetch, spawned: discovery's futures are `Send`.
    let first = tokio::spawn({
        let discovery = discovery.clone();
        async move { discovery.fetch().await }
    });
    let provider = first.await.unwrap().unwrap().api("https://api.example");
    let mut watch = discovery.watch(provider, DAY);

    // Day 1: the same document, nothing published. Day 2: the server fails.
    for day in 1..=2 {
        tokio::time::sleep(DAY).await;
        support::eventually("the refresh", || canned.asked().len() == 1 + day).await;
    }
    assert_eq!(watch.failures(), 1);
    assert_eq!(watch.current().token_url_ref(), "https://as.example/token");

    // Day 3: the token endpoint moved.
    let published = tokio::time::timeout(DAY + Duration::from_secs(1), watch.changed())
        .await
        .expect("published within the day")
        .expect("the watch lives");
    assert_eq!(published.token_url_ref(), "https://as.example/v2/token");
    assert_eq!(published.api_origins_ref(), ["https://api.example"]);
    assert_eq!(watch.current().token_url_ref(), "https://as.example/v2/token");
    assert_eq!(canned.asked().len(), 4);

    // Dropped: no more requests (the canned transport has no answer left to give one).
    drop(watch);
    tokio::time::sleep(DAY * 3).await;
    assert_eq!(canned.asked().len(), 4);
}
