//! The crate used as another crate uses it: a test harness or an application wiring
//! its own clients, stores and login state, with nothing but the public API.
//!
//! Every test here talks to an emulator on 127.0.0.1 or to an in-process stand-in.
#![cfg(all(feature = "hyper-transport", feature = "axum"))]

mod support;

use support::mock::{assert_counts, started};

use std::{
    cell::Cell,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tower::{
    util::{BoxCloneService, BoxCloneSyncService},
    Layer, ServiceExt,
};
use tower_oauth2::{
    providers, BoxError, Credential, CredentialKey, CredentialRegistry, MemoryStore, OAuth2Layer, Provider,
    Subject, TokenStore, TokenTransport, UserCredentialTemplate,
};
use tower_oauth2_mock::MockServer;

type Http = Client<HttpConnector, Full<Bytes>>;

fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends `GET url` through the layer over `credentials`, and returns the status.
async fn get(credentials: &CredentialRegistry, url: &str) -> StatusCode {
    let client = OAuth2Layer::new(credentials.clone()).layer(http());
    let request = Request::get(url).body(Full::default()).unwrap();
    client.oneshot(request).await.unwrap().status()
}

// ===== a transport that is Send but not Sync =====

/// A token transport's inner client as a harness might write it: it keeps a per-clone
/// count in a `Cell`, so it is `Send` but not `Sync`.
#[derive(Clone)]
struct CountingClient {
    http: Http,
    sent_by_this_clone: Cell<u32>,
    sent: Arc<Mutex<u32>>,
}

impl tower::Service<Request<Full<Bytes>>> for CountingClient {
    type Response = Response<hyper::body::Incoming>;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        tower::Service::poll_ready(&mut self.http, cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        self.sent_by_this_clone.set(self.sent_by_this_clone.get() + 1);
        *self.sent.lock().unwrap() += 1;
        let future = self.http.request(request);
        Box::pin(async move { Ok(future.await?) })
    }
}

async fn a_transport_gets_a_token_and_authorizes(transport: TokenTransport, sent: &Arc<Mutex<u32>>) {
    let server = started(MockServer::builder().client("app", "s3cret")).await;
    let credentials = CredentialRegistry::builder()
        .credential(Credential::client_credentials(server.provider(), "app", "s3cret"))
        .transport(transport)
        .build()
        .unwrap();
    assert_eq!(
        get(&credentials, &server.api_url("/things")).await,
        StatusCode::OK
    );
    assert_eq!(
        get(&credentials, &server.api_url("/things")).await,
        StatusCode::OK
    );
    assert_counts(&server, "token_requests=1 resource_calls_authorized=2");
    assert_eq!(*sent.lock().unwrap(), 1);
}

#[tokio::test]
async fn a_box_clone_service_transport_works_end_to_end() {
    let sent = Arc::new(Mutex::new(0));
    let client = CountingClient {
        http: http(),
        sent_by_this_clone: Cell::new(0),
        sent: Arc::clone(&sent),
    };
    // Not `Sync`: `BoxCloneService` never is, and neither is the client.
    let boxed: BoxCloneService<Request<Full<Bytes>>, Response<hyper::body::Incoming>, BoxError> =
        BoxCloneService::new(client);
    a_transport_gets_a_token_and_authorizes(TokenTransport::new(boxed), &sent).await;
}

#[tokio::test]
async fn a_box_clone_sync_service_transport_works_end_to_end() {
    let sent = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&sent);
    let client = http();
    let service = tower::service_fn(move |request: Request<Full<Bytes>>| {
        *counted.lock().unwrap() += 1;
        let future = client.request(request);
        async move { Ok::<_, BoxError>(future.await?) }
    });
    let boxed: BoxCloneSyncService<Request<Full<Bytes>>, Response<hyper::body::Incoming>, BoxError> =
        BoxCloneSyncService::new(service);
    a_transport_gets_a_token_and_authorizes(TokenTransport::new(boxed), &sent).await;
}

// ===== a store per credential and per users' group =====

async fn holds(store: &MemoryStore, key: &CredentialKey) -> bool {
    store.load(key).await.unwrap().is_some()
}

#[tokio::test]
async fn each_credential_keeps_its_tokens_in_its_own_store_across_a_restart() {
    let a = started(MockServer::builder().client("app-a", "secret-a")).await;
    let b = started(MockServer::builder().client("app-b", "secret-b")).await;
    let (store_a, store_b) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
    let registry_store = Arc::new(MemoryStore::new());
    let credential_a = Credential::client_credentials(a.provider().name("a"), "app-a", "secret-a");
    let credential_b = Credential::client_credentials(b.provider().name("b"), "app-b", "secret-b");
    let (key_a, key_b) = (credential_a.key(), credential_b.key());
    let registry = || {
        CredentialRegistry::builder()
            .credential(credential_a.clone().store(Arc::clone(&store_a)))
            .credential(credential_b.clone().store(Arc::clone(&store_b)))
            .store(Arc::clone(&registry_store))
            .build()
            .unwrap()
    };

    let first = registry();
    assert_eq!(get(&first, &a.api_url("/x")).await, StatusCode::OK);
    assert_eq!(get(&first, &b.api_url("/x")).await, StatusCode::OK);
    assert_eq!((a.counters().token_requests, b.counters().token_requests), (1, 1));
    assert!(holds(&store_a, &key_a).await && !holds(&store_a, &key_b).await);
    assert!(holds(&store_b, &key_b).await && !holds(&store_b, &key_a).await);
    assert!(!holds(&registry_store, &key_a).await && !holds(&registry_store, &key_b).await);
    drop(first);

    // A restart: a new registry over the same stores reads each token back from its own.
    let second = registry();
    assert_eq!(get(&second, &a.api_url("/x")).await, StatusCode::OK);
    assert_eq!(get(&second, &b.api_url("/x")).await, StatusCode::OK);
    assert_eq!((a.counters().token_requests, b.counters().token_requests), (1, 1));
    assert_eq!(
        (
            a.counters().resource_calls_authorized,
            b.counters().resource_calls_authorized
        ),
        (2, 2)
    );
}

#[tokio::test]
async fn a_users_group_keeps_its_tokens_in_its_own_store_across_a_restart() {
    const REDIRECT: &str = "https://app.example.com/callback/agrello";
    let server = started(MockServer::agrello().client("app", "s3cret")).await;
    let users_store = Arc::new(MemoryStore::new());
    let registry_store = Arc::new(MemoryStore::new());
    let registry = || {
        CredentialRegistry::builder()
            .users(
                UserCredentialTemplate::new(server.provider(), "app", Some("s3cret".into()))
                    .store(Arc::clone(&users_store)),
            )
            .store(Arc::clone(&registry_store))
            .build()
            .unwrap()
    };
    let as_alice = |credentials: &CredentialRegistry| {
        let client = OAuth2Layer::new(credentials.clone()).layer(http());
        let mut request = Request::get(server.api_url("/me")).body(Full::default()).unwrap();
        request.extensions_mut().insert(Subject::new("alice"));
        async move { client.oneshot(request).await.unwrap().status() }
    };

    let first = registry();
    let pending = first
        .users("agrello")
        .unwrap()
        .authorization(REDIRECT)
        .start()
        .unwrap();
    let code = server.issue_authorization_code("app", REDIRECT, "");
    let callback = format!("?code={code}&state={}", pending.state());
    first
        .login("agrello", "alice", pending.complete(&callback).unwrap())
        .await
        .unwrap();
    assert_eq!(as_alice(&first).await, StatusCode::OK);
    let key = first.user_key("agrello", "alice").unwrap();
    assert!(holds(&users_store, &key).await);
    assert!(!holds(&registry_store, &key).await);
    assert_eq!(server.counters().token_requests, 1);
    drop(first);

    let second = registry();
    assert_eq!(as_alice(&second).await, StatusCode::OK);
    assert_eq!(server.counters().token_requests, 1);
    assert_eq!(server.counters().resource_calls_authorized, 2);
}

// ===== public clients =====

#[tokio::test]
async fn a_public_client_sends_its_client_id_and_no_secret() {
    let forms = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = Arc::clone(&forms);
    let transport = TokenTransport::new(tower::service_fn(move |request: Request<Full<Bytes>>| {
        let seen = Arc::clone(&seen);
        async move {
            assert!(request.headers().get(http::header::AUTHORIZATION).is_none());
            let body = request.into_body().collect().await?.to_bytes();
            seen.lock().unwrap().push(String::from_utf8(body.to_vec())?);
            Ok::<_, BoxError>(Response::new(Full::new(Bytes::from_static(
                br#"{"access_token":"tok-1","token_type":"Bearer","expires_in":3600}"#,
            ))))
        }
    }));
    // Provider::standard authenticates with HTTP Basic, which needs a secret: the
    // credential says it has none.
    let provider = Provider::standard("https://auth.example.com/token").api("https://api.example.com");
    let credentials = CredentialRegistry::builder()
        .credential(Credential::client_credentials_public(provider, "device-17"))
        .transport(transport)
        .build()
        .unwrap();
    let api = tower::service_fn(|request: Request<Full<Bytes>>| async move {
        let authorized = request.headers().get(http::header::AUTHORIZATION)
            == Some(&http::HeaderValue::from_static("Bearer tok-1"));
        let status = if authorized {
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        };
        Ok::<_, BoxError>(
            Response::builder()
                .status(status)
                .body(Full::<Bytes>::default())
                .unwrap(),
        )
    });
    let client = OAuth2Layer::new(credentials).layer(api);
    let request = Request::get("https://api.example.com/v1/things")
        .body(Full::default())
        .unwrap();
    assert_eq!(client.oneshot(request).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        *forms.lock().unwrap(),
        ["grant_type=client_credentials&client_id=device-17"]
    );
}

// ===== presets pointed at a test server =====

const REDIRECT: &str = "https://app.example.com/callback";

/// One token request and one authorized API call, through the layer.
async fn one_token_one_call(server: &MockServer, credential: Credential) {
    let credentials = CredentialRegistry::new(credential).unwrap();
    assert_eq!(
        get(&credentials, &server.api_url("/things")).await,
        StatusCode::OK
    );
    assert_counts(server, "token_requests=1 resource_calls_authorized=1");
}

#[tokio::test]
async fn every_preset_takes_a_base_url_and_no_dummy_argument() {
    let server = MockServer::agrello().client("app", "s1").start().await.unwrap();
    let code = server.issue_authorization_code("app", REDIRECT, "");
    let provider = providers::agrello_at(&server.base_url());
    let credential = Credential::authorization_code(provider, "app", Some("s1".into()), code, REDIRECT);
    one_token_one_call(&server, credential).await;

    let server = MockServer::accelo().client("app", "s2").start().await.unwrap();
    let provider = providers::accelo_at(&server.base_url());
    one_token_one_call(&server, Credential::client_credentials(provider, "app", "s2")).await;

    let server = MockServer::grindery().start().await.unwrap();
    let code = server.issue_authorization_code("", REDIRECT, "");
    let provider = providers::grindery_at(&server.base_url());
    let credential = Credential::authorization_code(provider, "label", None, code, REDIRECT);
    one_token_one_call(&server, credential).await;

    let server = started(MockServer::ioffice().client("app", "unused")).await;
    let code = server.issue_authorization_code("app", REDIRECT, "email");
    let provider = providers::ioffice_at(&server.base_url());
    let credential = Credential::authorization_code(provider, "app", None, code, REDIRECT);
    one_token_one_call(&server, credential).await;

    let server = started(MockServer::dottedsign().client("app", "s5")).await;
    let code = server.issue_authorization_code("app", REDIRECT, "");
    let provider = providers::dottedsign_at(&server.base_url());
    let credential = Credential::authorization_code(provider, "app", Some("s5".into()), code, REDIRECT);
    one_token_one_call(&server, credential).await;
}

#[tokio::test]
async fn a_production_configuration_moves_to_a_test_server_with_at() {
    let server = started(MockServer::builder().client("app", "s3cret")).await;
    let production =
        Provider::standard("https://auth.example.com/oauth/token").api("https://api.example.com");
    let credential = Credential::client_credentials(production.at(&server.base_url()), "app", "s3cret");
    one_token_one_call(&server, credential).await;
}

// ===== one `use` for an ordinary configuration =====

/// Every kind of credential, configured with root paths only: this module names no
/// module of the crate but `providers`, whose functions are the presets.
mod root_paths {
    use std::{sync::Arc, time::Duration};

    use http::HeaderName;
    use tower_oauth2::{
        AcceloScope, AuthorizationCode, AuthorizedCode, ClientAuth, ClientSecret, CodeDelivery, Credential,
        CredentialRegistry, Error, ExpiresIn, FileStore, HeaderParameters, Lifetimes, MemoryStore, Notifying,
        ParameterEncoding, Password, PendingAuthorization, Provider, RefreshPolicy, RefreshToken, Revocation,
        StoreError, StoreErrorKind, StoreOperation, TokenChange, TokenPlacement, TokenRequest,
        TokenTransport, UserCredentialTemplate,
    };

    fn provider(name: &str) -> Provider {
        Provider::standard(format!("https://{name}.example.com/oauth/token"))
            .name(name)
            .api(format!("https://api.{name}.example.com"))
    }

    /// What an application matches on when a store fails.
    fn describe(error: &StoreError) -> String {
        match (error.operation(), error.kind()) {
            (StoreOperation::Save, StoreErrorKind::Io) => "disk".to_owned(),
            (operation, kind) => format!("{operation:?} {kind:?}"),
        }
    }

    pub(super) fn configure(dir: &std::path::Path) -> Result<CredentialRegistry, Error> {
        let transport = TokenTransport::new(tower::service_fn(|_: TokenRequest| async {
            Err::<http::Response<http_body_util::Full<bytes::Bytes>>, _>(tower_oauth2::BoxError::from(
                "unused",
            ))
        }));
        let header_encoded = provider("headers")
            .parameter_encoding(ParameterEncoding::Headers(HeaderParameters::prefixed("x-")))
            .expires_in_unit(ExpiresIn::Milliseconds)
            .lifetimes(Lifetimes {
                default: Duration::from_secs(600),
                ..Lifetimes::default()
            })
            .token_placement(TokenPlacement::Header(HeaderName::from_static("x-access-token")))
            .revocation(Revocation::Header {
                url: "https://headers.example.com/revoke".into(),
                header: HeaderName::from_static("x-token"),
            });
        let users = provider("users")
            .authorize_url("https://users.example.com/authorize")
            .code_delivery(CodeDelivery::Query);
        let pending: PendingAuthorization = users
            .authorization("app", "https://app.example.com/cb")
            .state_data("tenant-7")
            .start()?;
        let callback = format!("?code=c0de&state={}", pending.state());
        let code: AuthorizedCode = pending.complete(&callback)?;
        assert_eq!(code.state_data(), Some("tenant-7"));
        let _password = Password::new("only for iOFFICE's direct code request");
        let notifying = Notifying::new(MemoryStore::new(), |_key, change: TokenChange| {
            let _ = change;
        });

        CredentialRegistry::builder()
            .credential(
                Credential::client_credentials(tower_oauth2::providers::accelo("acme"), "app", "secret")
                    .scopes([AcceloScope::read_all().and(AcceloScope::write(["contacts"]))])
                    .refresh_policy(RefreshPolicy::default().margin(Duration::from_secs(30))),
            )
            .credential(Credential::client_credentials_public(
                provider("public"),
                "device",
            ))
            .credential(
                Credential::client_credentials(provider("body"), "app", ClientSecret::new("s"))
                    .client_auth(ClientAuth::RequestBody)
                    .store(Arc::new(MemoryStore::new())),
            )
            .credential(
                Credential::refresh_token(
                    header_encoded,
                    "app",
                    Some(ClientSecret::new("s")),
                    RefreshToken::new("rt"),
                )
                .store(notifying),
            )
            .credential(Credential::authorization_code(
                provider("code"),
                "app",
                Some(ClientSecret::new("s")),
                AuthorizationCode::new("c"),
                "https://app.example.com/cb",
            ))
            .credential(
                code.into_credential(
                    users
                        .clone()
                        .name("users-app")
                        .api_origins(["https://other.users.example.com"]),
                    "app",
                    Some(ClientSecret::new("s")),
                ),
            )
            .users(UserCredentialTemplate::new(users, "app", Some("s".into())).store(
                FileStore::open(dir).map_err(|e| {
                    let _ = describe(&e);
                    Error::Store(e)
                })?,
            ))
            .transport(transport)
            .build()
    }
}

#[test]
fn every_kind_of_credential_is_configured_from_the_crate_root() {
    let dir = std::env::temp_dir().join(format!("tower-oauth2-root-paths-{}", std::process::id()));
    let credentials = root_paths::configure(&dir).unwrap();
    assert_eq!(credentials.keys().len(), 6);
    assert!(credentials.users("users").is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
