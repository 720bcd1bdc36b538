//! Subject routing: a request on behalf of a user carries that user's token, never
//! another's; each user's token is refreshed once, the users' in parallel; a request
//! without a subject carries the application's.

use crate::common::*;

both!(
    a_subject_without_a_grant_gets_the_error_and_nothing_is_sent,
    requests_without_a_subject_carry_the_applications_token,
);
both!(
    multi_thread:
    two_users_never_get_each_others_tokens,
    each_user_refreshes_once_and_users_refresh_in_parallel,
);

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};

pub(crate) const REDIRECT: &str = "https://app.example.com/callback";

/// The standard mock with a client and two users.
async fn server_with_users() -> MockServer {
    let mut server = MockServer::builder().client("client", "secret");
    for user in ["alice", "bob"] {
        server = server.user(user, format!("{user}-pw"));
    }
    server.start().await.unwrap()
}

fn users(server: &MockServer) -> UserCredentialTemplate {
    UserCredentialTemplate::new(server.provider(), "client", Some("secret".into()))
        .redirect_uri(REDIRECT)
        .refresh_policy(steady_policy())
}

/// `user` logs in: the authorization request, the provider's consent (signed in as
/// `user`), the callback's code, and the exchange.
pub(crate) async fn log_in(credentials: &CredentialRegistry, user: &str) {
    let pending = credentials
        .users("mock")
        .unwrap()
        .authorization(REDIRECT)
        .start()
        .unwrap();
    let authorize = format!("{}&login_hint={user}", pending.url());
    let consent = Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>()
        .request(http::Request::get(authorize).body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(consent.status(), 302);
    let callback = consent.headers()["location"].to_str().unwrap();
    let code = pending.complete(callback).unwrap();
    credentials.login("mock", user, code).await.unwrap();
}

/// Alice and Bob, logged in.
async fn two_users(kind: Kind) -> (MockServer, CredentialRegistry, Adapter) {
    let server = server_with_users().await;
    let credentials = CredentialRegistry::builder()
        .users(users(&server))
        .build()
        .unwrap();
    for user in ["alice", "bob"] {
        log_in(&credentials, user).await;
    }
    let adapter = Adapter::new(kind, &credentials);
    (server, credentials, adapter)
}

/// 1,000 calls, alternately for Alice and Bob; each answer names the user it was for.
async fn alternate(adapter: &Adapter, server: &MockServer) {
    let users = |i| if i % 2 == 0 { "alice" } else { "bob" };
    let calls = (0..1000).map(|i| Call::get(server.api_url("/me")).subject(users(i)));
    for (i, answer) in adapter.concurrently(calls).await.into_iter().enumerate() {
        let answer = answer.unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.json()["subject"],
            users(i),
            "request {i} got another user's token"
        );
    }
}

async fn a_subject_without_a_grant_gets_the_error_and_nothing_is_sent(kind: Kind) {
    let server = server_with_users().await;
    let credentials = CredentialRegistry::builder()
        .users(users(&server))
        .build()
        .unwrap();
    let adapter = Adapter::new(kind, &credentials);

    let err = adapter
        .send(Call::get(server.api_url("/me")).subject("alice"))
        .await
        .unwrap_err();

    match err {
        Error::NotAuthorized(e) => assert_eq!(e.subject(), Some("alice")),
        other => panic!("expected NotAuthorized, got {other:?}"),
    }
    let counters = server.counters();
    assert_eq!((counters.resource_calls, counters.token_requests), (0, 0));
}

async fn two_users_never_get_each_others_tokens(kind: Kind) {
    let (server, _, adapter) = two_users(kind).await;
    alternate(&adapter, &server).await;
    let counts = "authorization_code_grants=2 token_requests=2 resource_calls_authorized=1000";
    assert_counts(&server, counts);
}

async fn each_user_refreshes_once_and_users_refresh_in_parallel(kind: Kind) {
    let (server, credentials, adapter) = two_users(kind).await;
    server.set_token_latency(Duration::from_millis(50));
    credentials.invalidate_all();
    server.reset_counters();
    alternate(&adapter, &server).await;
    let counters = server.counters();
    assert_eq!(counters.refresh_token_grants, 2, "one refresh per user");
    assert_eq!(counters.token_requests, 2);
    assert_eq!(
        counters.max_concurrent_token_requests, 2,
        "the two users refreshed in parallel"
    );
}

async fn requests_without_a_subject_carry_the_applications_token(kind: Kind) {
    let server = server_with_users().await;
    let credentials = CredentialRegistry::builder()
        .credential(Credential::client_credentials(
            server.provider(),
            "client",
            "secret",
        ))
        .users(users(&server))
        .build()
        .unwrap();
    log_in(&credentials, "alice").await;
    let adapter = Adapter::new(kind, &credentials);

    let as_app = adapter.send(Call::get(server.api_url("/me"))).await.unwrap();
    let as_alice = adapter
        .send(Call::get(server.api_url("/me")).subject("alice"))
        .await
        .unwrap();
    assert_eq!((as_app.status, as_alice.status), (200, 200));
    assert_eq!(as_app.json()["subject"], Value::Null);
    assert_eq!(as_app.json()["client_id"], "client");
    assert_eq!(as_alice.json()["subject"], "alice");
    let counters = server.counters();
    assert_eq!(
        (
            counters.client_credentials_grants,
            counters.authorization_code_grants
        ),
        (1, 1)
    );
}
