//! What `CredentialRegistry::record_metrics` publishes, read back through metrics-util's
//! debugging recorder: real requests through the layer against the mock server on
//! 127.0.0.1, and the exporter task on paused time against in-process stand-ins.
#![cfg(all(feature = "hyper-transport", feature = "metrics"))]

mod support;

use support::steady_policy;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::future::join_all;
use http::Request;
use http_body_util::Full;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshot, Snapshotter};
use tower::{Layer, Service, ServiceExt};
use tower_oauth2::{
    secret::{ClientSecret, RefreshToken},
    store::{MemoryStore, StoredTokens, TokenStore},
    Credential, CredentialRegistry, Error, OAuth2, OAuth2Layer, Provider, Revoked, Subject,
    UserCredentialTemplate,
};
use tower_oauth2_mock::{Fault, MockServer};

type Http = Client<HttpConnector, Full<Bytes>>;

const SECRET: &str = "s3cr3t-never-labelled";
const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";

/// A series' labels, as (name, value) pairs.
type Labels = BTreeSet<(String, String)>;

/// What one recorder received: each series' name, labels and value.
struct Published(Vec<(String, Labels, DebugValue)>);

impl Published {
    /// Takes what was published since the last snapshot (the debugging recorder resets
    /// counters when it is read).
    fn take(snapshotter: &Snapshotter) -> Self {
        Self::from(snapshotter.snapshot())
    }

    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        let labels: Labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.0
            .iter()
            .find(|(n, l, _)| n == name && *l == labels)
            .map(|(_, _, value)| value)
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.find(name, labels) {
            Some(DebugValue::Counter(value)) => *value,
            other => panic!("{name} {labels:?}: {other:?}\n{:#?}", self.names()),
        }
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        match self.find(name, labels) {
            Some(DebugValue::Gauge(value)) => Some(value.into_inner()),
            None => None,
            other => panic!("{name} {labels:?}: {other:?}"),
        }
    }

    /// The label sets `name` was published with.
    fn series(&self, name: &str) -> BTreeSet<Vec<(String, String)>> {
        self.0
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, labels, _)| labels.iter().cloned().collect())
            .collect()
    }

    fn names(&self) -> Vec<(&str, &Labels)> {
        self.0.iter().map(|(n, l, _)| (n.as_str(), l)).collect()
    }

    fn label_values(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .flat_map(|(_, labels, _)| labels.iter().map(|(_, v)| v.as_str()))
    }
}

impl From<Snapshot> for Published {
    fn from(snapshot: Snapshot) -> Self {
        Self(
            snapshot
                .into_vec()
                .into_iter()
                .map(|(key, _, _, value)| {
                    let labels = key
                        .key()
                        .labels()
                        .map(|l| (l.key().to_owned(), l.value().to_owned()))
                        .collect();
                    (key.key().name().to_owned(), labels, value)
                })
                .collect(),
        )
    }
}

/// Calls `record_metrics` with a recorder of its own, installed on this thread only.
fn record(credentials: &CredentialRegistry) -> Published {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || credentials.record_metrics());
    Published::take(&snapshotter)
}

/// What the registry's one credential of the provider `mock` published.
struct AppCounters {
    published: Published,
    key: String,
}

impl AppCounters {
    fn record(credentials: &CredentialRegistry) -> Self {
        let key = credentials.keys()[0].to_string();
        AppCounters {
            published: record(credentials),
            key,
        }
    }

    fn labels(&self) -> [(&str, &str); 2] {
        [("provider", "mock"), ("credential", self.key.as_str())]
    }

    fn counter(&self, name: &str) -> u64 {
        self.published.counter(name, &self.labels())
    }

    fn client_credentials_requests(&self) -> u64 {
        let labels = grant(&self.labels(), "client_credentials");
        self.published.counter("oauth2_token_requests_total", &labels)
    }
}

fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

fn provider(server: &MockServer, name: &str) -> Provider {
    Provider::standard(server.token_url())
        .name(name)
        .api(server.base_url())
}

async fn server() -> MockServer {
    MockServer::builder()
        .client("client", SECRET)
        .start()
        .await
        .unwrap()
}

/// The application's own client-credentials credential at `server`, and a layered client.
fn app(server: &MockServer) -> (OAuth2<Http>, CredentialRegistry) {
    let credential = Credential::client_credentials(provider(server, "mock"), "client", SECRET)
        .refresh_policy(steady_policy());
    let credentials = CredentialRegistry::new(credential).unwrap();
    (OAuth2Layer::new(credentials.clone()).layer(http()), credentials)
}

fn get(server: &MockServer, subject: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = Request::get(server.api_url("/things"))
        .body(Full::default())
        .unwrap();
    if let Some(subject) = subject {
        request.extensions_mut().insert(Subject::new(subject));
    }
    request
}

async fn concurrently(client: &OAuth2<Http>, server: &MockServer, n: usize) -> Vec<u16> {
    let calls = (0..n).map(|_| {
        let request = client.clone().oneshot(get(server, None));
        tokio::spawn(async move { request.await.map(|r| r.status().as_u16()) })
    });
    join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect()
}

fn grant<'a>(labels: &[(&'a str, &'a str)], grant: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut labels = labels.to_vec();
    labels.push(("grant", grant));
    labels
}

#[tokio::test]
async fn a_cold_start_publishes_one_token_request_and_the_hits_of_dropped_clones() {
    let server = server().await;
    let (client, credentials) = app(&server);

    let statuses = concurrently(&client, &server, 50).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // One clone, 40 requests: the first 16 are served from the shared token (counted per
    // thread, fewer than a batch of 64: not published), the 17th builds the clone's copy
    // of the header, and the other 23 find it.
    let mut clone = client.clone();
    for _ in 0..40 {
        let response = ServiceExt::<Request<Full<Bytes>>>::ready(&mut clone)
            .await
            .unwrap()
            .call(get(&server, None))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    let key = credentials.keys()[0].to_string();
    assert_eq!(key, "mock/client/client_credentials/");
    let labels = [("provider", "mock"), ("credential", key.as_str())];
    let before_drop = record(&credentials);
    assert_eq!(before_drop.counter("oauth2_cache_hits_total", &labels), 0);

    drop(clone);
    let published = record(&credentials);
    assert_eq!(published.counter("oauth2_cache_hits_total", &labels), 23);
    assert_eq!(server.counters().token_requests, 1);
    for (name, expected) in [
        ("client_credentials", 1),
        ("refresh_token", 0),
        ("authorization_code", 0),
    ] {
        assert_eq!(
            published.counter("oauth2_token_requests_total", &grant(&labels, name)),
            expected,
            "{name}"
        );
    }
    for name in [
        "oauth2_early_refreshes_total",
        "oauth2_dead_token_refreshes_total",
        "oauth2_retries_total",
        "oauth2_failures_total",
    ] {
        assert_eq!(published.counter(name, &labels), 0, "{name}");
    }
    // A one-hour token, refreshed 60 s before it expires (no jitter), fetched just now.
    let until_refresh = published.gauge("oauth2_seconds_until_refresh", &labels).unwrap();
    assert!((3480.0..=3540.0).contains(&until_refresh), "{until_refresh}");
    assert!(published.label_values().all(|v| !v.contains(SECRET)));
}

#[tokio::test]
async fn dead_token_answers_publish_one_refresh_and_each_retry() {
    let server = server().await;
    let (client, credentials) = app(&server);
    assert_eq!(concurrently(&client, &server, 1).await, [200]);

    server.revoke_all_access_tokens();
    let statuses = concurrently(&client, &server, 20).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");

    let app = AppCounters::record(&credentials);
    assert_eq!(app.counter("oauth2_dead_token_refreshes_total"), 1);
    assert_eq!(app.client_credentials_requests(), 2);
    // Every request was sent with the revoked token, and again with the new one.
    assert_eq!(app.counter("oauth2_retries_total"), 20);
    assert_eq!(server.counters().resource_calls, 1 + 2 * 20);
    assert_eq!(app.counter("oauth2_failures_total"), 0);
}

#[tokio::test]
async fn a_failed_token_request_is_published_and_leaves_no_refresh_gauge() {
    let server = server().await;
    let (client, credentials) = app(&server);
    server.fail_next_token_requests(1, Fault::ServerError);

    let err = client.oneshot(get(&server, None)).await.unwrap_err();
    assert!(matches!(err, Error::Malformed(_)), "{err:?}");

    let app = AppCounters::record(&credentials);
    assert_eq!(app.counter("oauth2_failures_total"), 1);
    assert_eq!(app.client_credentials_requests(), 1);
    assert_eq!(
        app.published.gauge("oauth2_seconds_until_refresh", &app.labels()),
        None
    );
}

#[tokio::test]
async fn users_are_summed_per_provider_and_never_named_in_a_label() {
    let (alpha, beta) = (server().await, server().await);
    let store = Arc::new(MemoryStore::new());
    let users = |server: &MockServer, name: &str| {
        UserCredentialTemplate::new(provider(server, name), "client", Some(ClientSecret::new(SECRET)))
            .refresh_policy(steady_policy())
    };
    let credentials = CredentialRegistry::builder()
        .credential(
            Credential::client_credentials(provider(&alpha, "alpha"), "client", SECRET)
                .refresh_policy(steady_policy()),
        )
        .users(users(&alpha, "alpha"))
        .users(users(&beta, "beta"))
        .store(Arc::clone(&store))
        .build()
        .unwrap();
    // Each user has authorized the application at each provider before.
    for (server, name) in [(&alpha, "alpha"), (&beta, "beta")] {
        for subject in [ALICE, BOB] {
            let refresh = RefreshToken::new(server.issue_refresh_token("client", ""));
            let key = credentials.user_key(name, subject).unwrap();
            let tokens = StoredTokens::new().with_refresh_token(refresh);
            store.save(&key, &tokens).await.unwrap();
        }
    }
    let client = OAuth2Layer::new(credentials.clone()).layer(http());
    for (server, subject, times) in [
        (&alpha, Some(ALICE), 3),
        (&alpha, Some(BOB), 1),
        (&alpha, None, 1),
        (&beta, Some(ALICE), 1),
        (&beta, Some(BOB), 2),
    ] {
        for _ in 0..times {
            let response = client.clone().oneshot(get(server, subject)).await.unwrap();
            assert_eq!(response.status(), 200, "{subject:?}");
        }
    }

    let published = record(&credentials);
    let app_key = credentials.keys()[0].to_string();
    let app = [("provider", "alpha"), ("credential", app_key.as_str())];
    let alpha_users = [("provider", "alpha"), ("credential", "users")];
    let beta_users = [("provider", "beta"), ("credential", "users")];
    let series = |labels: &[(&str, &str)]| -> Vec<(String, String)> {
        let mut labels: Vec<_> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        labels
    };
    assert_eq!(
        published.series("oauth2_failures_total"),
        BTreeSet::from([series(&app), series(&alpha_users), series(&beta_users)]),
        "one series per provider for its users, one for the application's credential"
    );
    for users in [&alpha_users, &beta_users] {
        assert_eq!(
            published.counter("oauth2_token_requests_total", &grant(users, "refresh_token")),
            2,
            "one refresh per user: {users:?}"
        );
        assert_eq!(
            published.counter("oauth2_token_requests_total", &grant(users, "client_credentials")),
            0
        );
        assert_eq!(published.counter("oauth2_failures_total", users), 0);
        assert!(published.gauge("oauth2_seconds_until_refresh", users).is_some());
    }
    assert_eq!(
        published.counter("oauth2_token_requests_total", &grant(&app, "client_credentials")),
        1
    );
    assert_eq!(alpha.counters().refresh_token_grants, 2);
    for value in published.label_values() {
        assert!(
            !value.contains("alice") && !value.contains("bob") && !value.contains(SECRET),
            "{value}"
        );
    }

    // A logout forgets Alice's credential; her token request still counts.
    let revoked = credentials.logout("alpha", ALICE).await.unwrap();
    assert!(matches!(revoked, Revoked::LocallyOnly), "{revoked:?}");
    let response = client.clone().oneshot(get(&alpha, Some(BOB))).await.unwrap();
    assert_eq!(response.status(), 200);
    let published = record(&credentials);
    assert_eq!(
        published.counter(
            "oauth2_token_requests_total",
            &grant(&alpha_users, "refresh_token")
        ),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn the_exporter_publishes_every_period_and_ends_with_the_credentials() {
    // The only test here with a global recorder: the exporter's task publishes outside
    // any `with_local_recorder` scope. Its provider name is its own.
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let endpoint = support::TokenEndpoint::new(Duration::from_secs(3600));
    let credentials = support::credentials(&endpoint);
    let client = OAuth2Layer::new(credentials.clone()).layer(support::Api::new());
    let key = credentials.keys()[0].to_string();
    let labels = [("provider", "example"), ("credential", key.as_str())];
    let requests = grant(&labels, "client_credentials");

    let exporter = credentials
        .spawn_metrics_exporter(Duration::from_secs(10))
        .unwrap();
    settle().await;
    // The first tick is at once, before any request.
    let published = Published::take(&snapshotter);
    assert_eq!(published.counter("oauth2_token_requests_total", &requests), 0);

    let response = client.clone().oneshot(support::get("a")).await.unwrap();
    assert_eq!(response.status(), 200);
    settle().await;
    let published = Published::take(&snapshotter);
    assert_eq!(
        published.counter("oauth2_token_requests_total", &requests),
        0,
        "nothing is published between ticks"
    );

    tokio::time::sleep(Duration::from_secs(10)).await;
    settle().await;
    let published = Published::take(&snapshotter);
    assert_eq!(published.counter("oauth2_token_requests_total", &requests), 1);
    // Fetched at the first tick's instant, refreshed 60 s before its expiry.
    assert_eq!(
        published.gauge("oauth2_seconds_until_refresh", &labels),
        Some(3530.0)
    );

    drop((client, credentials));
    tokio::time::timeout(Duration::from_secs(11), exporter)
        .await
        .expect("the exporter ends once the credentials are gone")
        .unwrap();
}

#[test]
fn the_exporter_needs_a_runtime_and_a_period() {
    let endpoint = support::TokenEndpoint::new(Duration::from_secs(3600));
    let credentials = support::credentials(&endpoint);
    match credentials.spawn_metrics_exporter(Duration::from_secs(10)) {
        Err(Error::Config(e)) => assert!(e.message().contains("Tokio runtime"), "{e}"),
        other => panic!("{other:?}"),
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        match credentials.spawn_metrics_exporter(Duration::ZERO) {
            Err(Error::Config(e)) => assert!(e.message().contains("zero"), "{e}"),
            other => panic!("{other:?}"),
        }
    });
}

/// Lets spawned tasks (the exporter, token requests) run.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}
