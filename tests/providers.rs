//! Each preset provider, through the layer, against its strict emulator over real HTTP
//! on 127.0.0.1, and all five at once in one client.
//!
//! Time: the emulators and the cache both run on Tokio's clock. To reach a refresh
//! point without sleeping, a test pauses the clock, advances it, and resumes it before
//! any socket is used again.
#![cfg(feature = "hyper-transport")]

mod support;

use support::{
    advance, eventually,
    mock::{assert_counts, started},
    steady_policy,
};

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use futures_util::future::join_all;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use serde_json::Value;
use tower::{Layer, ServiceExt};
use tower_oauth2::{
    providers::accelo::AcceloScope, BoxError, Credential, CredentialRegistry, Error, OAuth2, OAuth2Layer,
    RefreshPolicy, Revoked, TokenPlacement, TokenTransport,
};
use tower_oauth2_mock::{MockCounters, MockServer};

const REDIRECT: &str = "https://app.example.com/callback";

type Http = Client<HttpConnector, Full<Bytes>>;

fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

fn policy() -> RefreshPolicy {
    steady_policy().backoff(Duration::from_millis(10), Duration::from_millis(100))
}

/// Token requests as the provider received them: headers and body, recorded by a
/// transport wrapped around a plain HTTP client.
#[derive(Clone, Default)]
struct Recorder {
    sent: Arc<Mutex<Vec<Request<Bytes>>>>,
}

impl Recorder {
    fn transport(&self) -> TokenTransport {
        let sent = Arc::clone(&self.sent);
        let client = http();
        TokenTransport::new(tower::service_fn(move |request: Request<Full<Bytes>>| {
            let sent = Arc::clone(&sent);
            let client = client.clone();
            async move {
                let (parts, body) = request.into_parts();
                let bytes = body.collect().await?.to_bytes();
                sent.lock()
                    .unwrap()
                    .push(Request::from_parts(parts.clone(), bytes.clone()));
                let response = client
                    .request(Request::from_parts(parts, Full::new(bytes)))
                    .await?;
                Ok::<_, BoxError>(response)
            }
        }))
    }

    fn header_values(&self, name: &str) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| r.headers().get(name).map(|v| v.to_str().unwrap().to_owned()))
            .collect()
    }

    fn form_values(&self, name: &str) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .filter_map(|r| {
                form_urlencoded::parse(r.body())
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
            })
            .collect()
    }
}

/// One provider's emulator and a layered client for it.
struct Case {
    server: MockServer,
    credentials: CredentialRegistry,
    client: OAuth2<Http>,
    recorder: Recorder,
}

impl Case {
    fn new(server: MockServer, credential: Credential) -> Self {
        let recorder = Recorder::default();
        let credentials = CredentialRegistry::builder()
            .credential(credential.refresh_policy(policy()))
            .transport(recorder.transport())
            .build()
            .unwrap();
        let client = OAuth2Layer::new(credentials.clone()).layer(http());
        Self {
            server,
            credentials,
            client,
            recorder,
        }
    }

    async fn get_owned(&self, id: String) -> Result<(StatusCode, Value), Error> {
        self.get(&id).await
    }

    async fn get(&self, id: &str) -> Result<(StatusCode, Value), Error> {
        let request = Request::get(self.server.api_url("/things"))
            .header("x-request-id", id)
            .body(Full::default())
            .unwrap();
        let response = self.client.clone().oneshot(request).await?;
        Ok(read(response).await)
    }

    /// A request that must succeed; returns the resource's description of it.
    async fn ok(&self, id: &str) -> Value {
        let (status, body) = self.get(id).await.unwrap();
        assert_eq!(status, 200, "{id}: {body}");
        body
    }

    fn counters(&self) -> MockCounters {
        self.server.counters()
    }

    fn token_grants(&self) -> u64 {
        let c = self.counters();
        c.client_credentials_grants + c.refresh_token_grants + c.authorization_code_grants
    }
}

async fn read<B: http_body::Body>(response: Response<B>) -> (StatusCode, Value)
where
    B::Error: std::fmt::Debug,
{
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// What every provider must do through the layer: obtain a token in its dialect,
/// attach it where the provider wants it, refresh it before it expires while requests
/// keep flowing, and after a dead-token answer refresh once and retry once.
async fn life_cycle(case: &Case, placement: &str, first_grant: &str) {
    // Obtain, in the dialect, with 100 concurrent callers: one token request.
    let calls = (0..100).map(|i| case.get_owned(format!("first-{i}")));
    let answers = join_all(calls).await;
    for answer in &answers {
        let (status, body) = answer.as_ref().unwrap();
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["placement"], placement, "{body}");
    }
    assert_eq!(case.token_grants(), 1);
    assert_eq!(case.counters().token_errors, 0);
    let first = case.recorder.sent.lock().unwrap().len();
    assert_eq!(first, 1);
    assert_grant_type(case, 0, first_grant);

    // Into the refresh window (tokens live 120 s; the refresh point is 60 s before
    // expiry): the request uses the old token, and one refresh runs in the background.
    advance(Duration::from_secs(61)).await;
    case.ok("in-window").await;
    eventually("the early refresh", || case.token_grants() == 2).await;
    case.ok("after-early-refresh").await;
    assert_eq!(case.token_grants(), 2);
    assert_eq!(case.credentials.stats()[0].early_refreshes, 1);

    // A dead-token answer: one refresh, the request sent exactly twice.
    case.server.revoke_all_access_tokens();
    case.ok("dead").await;
    assert_eq!(case.counters().sends_by_request_id.get("dead"), Some(&2));
    assert_eq!(case.token_grants(), 3);
    assert_eq!(case.counters().token_errors, 0);
}

fn assert_grant_type(case: &Case, index: usize, grant: &str) {
    let sent = case.recorder.sent.lock().unwrap();
    let request = &sent[index];
    let in_header = request
        .headers()
        .get("x-grant-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let in_form = form_urlencoded::parse(request.body())
        .find(|(k, _)| k == "grant_type")
        .map(|(_, v)| v.into_owned());
    assert_eq!(in_header.or(in_form).as_deref(), Some(grant));
}

// --- Agrello -----------------------------------------------------------------------

async fn agrello() -> Case {
    let builder = MockServer::agrello().client("agrello-app", "agrello-secret");
    let server = started(builder.token_lifetime(Duration::from_secs(120))).await;
    let code = server.issue_authorization_code("agrello-app", REDIRECT, "");
    let credential = Credential::authorization_code(
        server.provider(),
        "agrello-app",
        Some("agrello-secret".into()),
        code.as_str(),
        REDIRECT,
    );
    Case::new(server, credential)
}

#[tokio::test]
async fn agrello_code_exchange_with_basic_auth_then_refresh_and_retry() {
    let case = agrello().await;
    life_cycle(&case, "authorization_bearer", "authorization_code").await;
    // Every token request authenticated with Basic, never with body credentials.
    assert_eq!(case.recorder.header_values("authorization").len(), 3);
    assert!(case.recorder.form_values("client_secret").is_empty());
    assert_eq!(case.recorder.form_values("redirect_uri"), [REDIRECT]);
}

// --- Accelo ------------------------------------------------------------------------

async fn accelo(placement: Option<TokenPlacement>) -> Case {
    let builder = MockServer::accelo().client("accelo-app", "accelo-secret");
    let server = started(builder.token_lifetime(Duration::from_secs(120))).await;
    let mut provider = server.provider();
    if let Some(placement) = placement {
        provider = provider.token_placement(placement);
    }
    let scope = AcceloScope::read_all().and(AcceloScope::write(["companies", "contacts"]));
    let credential = Credential::client_credentials(provider, "accelo-app", "accelo-secret").scopes([scope]);
    Case::new(server, credential)
}

#[tokio::test]
async fn accelo_client_credentials_with_its_scope_syntax_rerun_at_expiry() {
    let case = accelo(None).await;
    life_cycle(&case, "authorization_bearer", "client_credentials").await;
    assert_eq!(
        case.recorder.form_values("scope")[0],
        "read(all),write(companies,contacts)"
    );
    // No refresh token is ever issued: past expiry the grant simply runs again.
    advance(Duration::from_secs(121)).await;
    case.ok("after-expiry").await;
    let counts = "refresh_token_grants=0 client_credentials_grants=4 token_errors=0";
    assert_counts(&case.server, counts);
}

#[tokio::test]
async fn accelo_bearer_token_query_parameter_and_body_credentials_fallback() {
    let case = accelo(Some(TokenPlacement::Query("_bearer_token".into()))).await;
    let body = case.ok("query").await;
    assert_eq!(body["placement"], "query:_bearer_token");

    let server = started(MockServer::accelo().client("app", "secret")).await;
    let provider = server
        .provider()
        .client_auth(tower_oauth2::ClientAuth::RequestBody);
    let case = Case::new(server, Credential::client_credentials(provider, "app", "secret"));
    case.ok("body-credentials").await;
    assert_eq!(case.recorder.form_values("client_id"), ["app"]);
    assert!(case.recorder.header_values("authorization").is_empty());
}

#[tokio::test]
async fn accelo_refuses_scopes_in_the_wrong_syntax() {
    let server = started(MockServer::accelo().client("app", "secret")).await;
    let credential =
        Credential::client_credentials(server.provider(), "app", "secret").scopes(["read", "write"]);
    let case = Case::new(server, credential);
    match case.get("bad-scope").await {
        Err(Error::OAuth(oauth)) => assert_eq!(oauth.error(), "invalid_scope"),
        other => panic!("expected invalid_scope, got {other:?}"),
    }
    assert_eq!(case.counters().resource_calls, 0);
}

// --- Grindery ----------------------------------------------------------------------

#[tokio::test]
async fn grindery_without_client_auth_keeps_its_refresh_token() {
    let server = started(MockServer::grindery().token_lifetime(Duration::from_secs(120))).await;
    let code = server.issue_authorization_code("", REDIRECT, "");
    let credential =
        Credential::authorization_code(server.provider(), "my-app", None, code.as_str(), REDIRECT);
    let case = Case::new(server, credential);
    life_cycle(&case, "authorization_bearer", "authorization_code").await;

    // Nothing identifies the client; both refreshes presented the refresh token the
    // code exchange returned, as the refresh answers carry none.
    assert!(case.recorder.header_values("authorization").is_empty());
    assert!(case.recorder.form_values("client_id").is_empty());
    let used = case.recorder.form_values("refresh_token");
    assert_eq!(used.len(), 2);
    assert_eq!(used[0], used[1]);
    case.credentials.invalidate_all();
    case.ok("third-refresh").await;
    assert_eq!(case.recorder.form_values("refresh_token")[2], used[0]);
    assert_eq!(case.counters().token_errors, 0);
}

// --- iOFFICE -----------------------------------------------------------------------

async fn ioffice(lifetime: Duration) -> Case {
    let builder = MockServer::ioffice().client("ioffice-app", "unused");
    let server = started(builder.token_lifetime(lifetime)).await;
    let code = server.issue_authorization_code("ioffice-app", REDIRECT, "email");
    let credential =
        Credential::authorization_code(server.provider(), "ioffice-app", None, code.as_str(), REDIRECT);
    Case::new(server, credential)
}

#[tokio::test]
async fn ioffice_header_dialect_with_millisecond_lifetimes() {
    // 120 s is announced as `expires_in: 120000`; read as seconds it would be clamped
    // to a day and the early refresh below would never happen.
    let case = ioffice(Duration::from_secs(120)).await;
    life_cycle(&case, "header:x-access-token", "authorization_code").await;
    let sent = case.recorder.sent.lock().unwrap();
    for request in sent.iter() {
        assert!(request.body().is_empty(), "parameters travel as headers only");
        assert_eq!(request.headers()["content-type"], "application/json");
        assert_eq!(request.headers()["x-client-id"], "ioffice-app");
        assert_eq!(request.headers()["x-scope"], "email");
        assert_eq!(request.headers()["x-redirect-uri"], REDIRECT);
    }
}

#[tokio::test]
async fn ioffice_three_rotations_each_kill_the_old_refresh_token() {
    let case = ioffice(Duration::from_secs(3600)).await;
    case.ok("exchange").await;
    let raw = http();
    for round in 0..3 {
        case.credentials.invalidate_all();
        case.ok(&format!("rotation-{round}")).await;
        // The refresh token just presented is dead now: presenting it again is refused.
        let used = case.recorder.header_values("x-refresh-token");
        assert_eq!(used.len(), round + 1);
        let replay = Request::post(case.server.token_url())
            .header("content-type", "application/json")
            .header("x-grant-type", "refresh_token")
            .header("x-redirect-uri", REDIRECT)
            .header("x-client-id", "ioffice-app")
            .header("x-scope", "email")
            .header("x-refresh-token", used[round].as_str())
            .body(Full::default())
            .unwrap();
        let (status, body) = read(raw.request(replay).await.unwrap()).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "invalid_grant");
    }
    let used = case.recorder.header_values("x-refresh-token");
    assert_eq!(used.len(), 3);
    assert!(used[0] != used[1] && used[1] != used[2] && used[0] != used[2]);
    // Three rotations, and the three refused replays.
    let counters = case.counters();
    assert_eq!((counters.refresh_token_grants, counters.token_errors), (6, 3));
}

#[tokio::test]
async fn ioffice_access_token_query_parameter() {
    let server = started(MockServer::ioffice().client("app", "unused")).await;
    let code = server.issue_authorization_code("app", REDIRECT, "email");
    let provider = server
        .provider()
        .token_placement(TokenPlacement::Query("access_token".into()));
    let case = Case::new(
        server,
        Credential::authorization_code(provider, "app", None, code.as_str(), REDIRECT),
    );
    assert_eq!(case.ok("query").await["placement"], "query:access_token");
}

#[tokio::test]
async fn ioffice_revocation_with_the_x_token_header() {
    let case = ioffice(Duration::from_secs(3600)).await;
    case.ok("before").await;
    let key = case.credentials.keys().remove(0);
    assert_eq!(
        case.credentials.revoke(&key).await.unwrap(),
        Revoked::AtProvider { tokens: 2 }
    );
    assert_eq!(case.counters().revocations, 2);
    // Logged out: the next request needs a new authorization and is not sent.
    assert!(matches!(
        case.get("after").await,
        Err(Error::ReauthorizationRequired(_))
    ));
    assert_eq!(case.counters().resource_calls, 1);
}

// --- DottedSign --------------------------------------------------------------------

#[tokio::test]
async fn dottedsign_body_credentials_and_redirect_uri_on_the_exchange() {
    let builder = MockServer::dottedsign().client("ds-app", "ds-secret");
    let server = started(builder.token_lifetime(Duration::from_secs(120))).await;
    let code = server.issue_authorization_code("ds-app", REDIRECT, "");
    let credential = Credential::authorization_code(
        server.provider(),
        "ds-app",
        Some("ds-secret".into()),
        code.as_str(),
        REDIRECT,
    );
    let case = Case::new(server, credential);
    life_cycle(&case, "authorization_bearer", "authorization_code").await;
    assert_eq!(case.recorder.form_values("client_secret").len(), 3);
    assert!(case.recorder.header_values("authorization").is_empty());
    assert_eq!(case.recorder.form_values("redirect_uri"), [REDIRECT]);
}

#[tokio::test]
async fn dottedsign_with_basic_auth_is_refused_as_the_provider_would() {
    let server = started(MockServer::dottedsign().client("ds-app", "ds-secret")).await;
    let code = server.issue_authorization_code("ds-app", REDIRECT, "");
    let provider = server.provider().client_auth(tower_oauth2::ClientAuth::Basic);
    let case = Case::new(
        server,
        Credential::authorization_code(
            provider,
            "ds-app",
            Some("ds-secret".into()),
            code.as_str(),
            REDIRECT,
        ),
    );
    match case.get("basic").await {
        Err(Error::OAuth(oauth)) => assert_eq!(oauth.error(), "invalid_client"),
        other => panic!("expected invalid_client, got {other:?}"),
    }
}

#[tokio::test]
async fn providers_without_a_revocation_endpoint_forget_tokens_locally() {
    let case = agrello().await;
    case.ok("before").await;
    let key = case.credentials.keys().remove(0);
    assert_eq!(case.credentials.revoke(&key).await.unwrap(), Revoked::LocallyOnly);
    assert_eq!(case.counters().revocations, 0);
}

// --- All five in one client --------------------------------------------------------

/// Where a request carried credentials: `(authorization, x-access-token, query keys)`.
type Carried = (Option<String>, Option<String>, Vec<String>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_five_providers_1000_requests_each_with_only_its_own_credential() {
    let agrello = started(MockServer::agrello().client("agrello-app", "s1")).await;
    let accelo = started(MockServer::accelo().client("accelo-app", "s2")).await;
    let grindery = MockServer::grindery().start().await.unwrap();
    let ioffice = started(MockServer::ioffice().client("ioffice-app", "unused")).await;
    let dottedsign = started(MockServer::dottedsign().client("ds-app", "s5")).await;

    let code = |server: &MockServer, client: &str, scope: &str| {
        server.issue_authorization_code(client, REDIRECT, scope)
    };
    let credentials = CredentialRegistry::builder()
        .credential(Credential::authorization_code(
            agrello.provider(),
            "agrello-app",
            Some("s1".into()),
            code(&agrello, "agrello-app", "").as_str(),
            REDIRECT,
        ))
        .credential(
            Credential::client_credentials(
                accelo
                    .provider()
                    .token_placement(TokenPlacement::Query("_bearer_token".into())),
                "accelo-app",
                "s2",
            )
            .scopes([AcceloScope::read_all()]),
        )
        .credential(Credential::authorization_code(
            grindery.provider(),
            "grindery-app",
            None,
            code(&grindery, "", "").as_str(),
            REDIRECT,
        ))
        .credential(Credential::authorization_code(
            ioffice.provider(),
            "ioffice-app",
            None,
            code(&ioffice, "ioffice-app", "email").as_str(),
            REDIRECT,
        ))
        .credential(Credential::authorization_code(
            dottedsign.provider(),
            "ds-app",
            Some("s5".into()),
            code(&dottedsign, "ds-app", "").as_str(),
            REDIRECT,
        ))
        .build()
        .unwrap();

    // The inner service records what each outgoing API request carried.
    let carried: Arc<Mutex<BTreeMap<String, Carried>>> = Arc::default();
    let recorder = Arc::clone(&carried);
    let inner = http();
    let inner = tower::service_fn(move |request: Request<Full<Bytes>>| {
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let query: Vec<String> = form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .map(|(k, _)| k.into_owned())
            .filter(|k| k != "n")
            .collect();
        let id = header("x-request-id").unwrap();
        recorder
            .lock()
            .unwrap()
            .insert(id, (header("authorization"), header("x-access-token"), query));
        inner.request(request)
    });
    let client = OAuth2Layer::new(credentials).layer(inner);

    let servers = [&agrello, &accelo, &grindery, &ioffice, &dottedsign];
    let calls = (0..1000).map(|i| {
        let server = servers[i % 5];
        let request = Request::get(server.api_url(&format!("/things?n={i}")))
            .header("x-request-id", format!("{i}"))
            .body(Full::default())
            .unwrap();
        let client = client.clone();
        tokio::spawn(async move { read(client.oneshot(request).await.unwrap()).await })
    });
    let answers: Vec<_> = join_all(calls).await.into_iter().map(Result::unwrap).collect();

    let expected = [
        ("agrello-app", "authorization_bearer"),
        ("accelo-app", "query:_bearer_token"),
        ("grindery", "authorization_bearer"),
        ("ioffice-app", "header:x-access-token"),
        ("ds-app", "authorization_bearer"),
    ];
    let carried = carried.lock().unwrap();
    for (i, (status, body)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "request {i}: {body}");
        let (client_id, placement) = expected[i % 5];
        assert_eq!(body["placement"], placement, "request {i}: {body}");
        if client_id != "grindery" {
            assert_eq!(body["client_id"], client_id, "request {i}: {body}");
        }
        let (authorization, access_header, query) = &carried[&i.to_string()];
        let credentials_carried =
            usize::from(authorization.is_some()) + usize::from(access_header.is_some()) + query.len();
        assert_eq!(
            credentials_carried, 1,
            "request {i} carried {credentials_carried} credentials"
        );
    }
    for server in servers {
        let counters = server.counters();
        assert_eq!(counters.token_requests, 1, "{:?}", server.dialect());
        assert_eq!(counters.resource_calls_authorized, 200, "{:?}", server.dialect());
        assert_eq!(counters.resource_calls, 200, "{:?}", server.dialect());
    }
}

#[tokio::test]
async fn two_deployments_of_one_provider_never_share_tokens() {
    let east = started(MockServer::accelo().client("east-app", "s-east")).await;
    let west = started(MockServer::accelo().client("west-app", "s-west")).await;
    let credentials = CredentialRegistry::builder()
        .credential(
            Credential::client_credentials(east.provider(), "east-app", "s-east")
                .scopes([AcceloScope::read_all()]),
        )
        .credential(
            Credential::client_credentials(west.provider(), "west-app", "s-west")
                .scopes([AcceloScope::write(["contacts"])]),
        )
        .build()
        .unwrap();
    let keys = credentials.keys();
    assert_ne!(keys[0], keys[1]);
    let client = OAuth2Layer::new(credentials).layer(http());
    let calls = (0..200).map(|i| {
        let server = if i % 2 == 0 { &east } else { &west };
        let request = Request::get(server.api_url("/things"))
            .body(Full::default())
            .unwrap();
        let client = client.clone();
        async move { read(client.oneshot(request).await.unwrap()).await }
    });
    for (i, (status, body)) in join_all(calls).await.into_iter().enumerate() {
        assert_eq!(status, 200, "{body}");
        let (client_id, scope) = if i % 2 == 0 {
            ("east-app", "read(all)")
        } else {
            ("west-app", "write(contacts)")
        };
        assert_eq!(body["client_id"], client_id, "{body}");
        assert_eq!(body["scope"], scope, "{body}");
    }
    assert_eq!(east.counters().token_requests, 1);
    assert_eq!(west.counters().token_requests, 1);
}

#[tokio::test]
async fn ioffice_direct_code_request_for_server_side_use() {
    let builder = MockServer::ioffice().client("svc-app", "unused");
    let server = started(builder.user("svc-user", "svc-password")).await;
    let transport = TokenTransport::new(http());
    let site = server.base_url();
    let wrong = tower_oauth2::providers::ioffice::request_code(
        &transport,
        &site,
        "svc-app",
        "svc-user",
        &tower_oauth2::secret::Password::new("nope"),
    )
    .await;
    match wrong {
        Err(Error::OAuth(oauth)) => {
            assert_eq!((oauth.status().as_u16(), oauth.error()), (401, "access_denied"));
            assert!(!oauth.to_string().contains("nope"));
        }
        other => panic!("expected access_denied, got {other:?}"),
    }
    let code = tower_oauth2::providers::ioffice::request_code(
        &transport,
        &site,
        "svc-app",
        "svc-user",
        &tower_oauth2::secret::Password::new("svc-password"),
    )
    .await
    .unwrap();
    let credential = Credential::authorization_code(server.provider(), "svc-app", None, code, REDIRECT);
    let case = Case::new(server, credential);
    let body = case.ok("direct").await;
    assert_eq!(body["subject"], "svc-user");
    assert_eq!(case.counters().authorization_code_grants, 1);
}

/// `*.localhost` names may be sent to DNS by a resolver, where anyone can answer them:
/// plain http goes only to `localhost` itself and loopback IP literals.
#[test]
fn plain_http_is_refused_to_localhost_subdomains() {
    let build = |api: &str| {
        let provider = tower_oauth2::Provider::standard("https://auth.example.com/token").api(api);
        CredentialRegistry::builder()
            .credential(Credential::client_credentials(provider, "id", "secret"))
            .transport(TokenTransport::new(tower::service_fn(
                |_req: Request<Full<Bytes>>| async {
                    Ok::<_, std::convert::Infallible>(Response::new(Full::<Bytes>::default()))
                },
            )))
            .build()
    };
    for refused in [
        "http://api.localhost:8080",
        "http://tenant.app.localhost",
        "http://localhost.evil.example",
    ] {
        match build(refused) {
            Err(Error::Config(e)) => assert!(e.message().contains("plain http"), "{refused}: {e}"),
            other => panic!("{refused}: {other:?}"),
        }
    }
    for allowed in [
        "http://localhost:8080",
        "http://127.0.0.1:1",
        "http://[::1]:1",
        "https://api.localhost",
    ] {
        assert!(build(allowed).is_ok(), "{allowed}");
    }
}
