//! No token or secret ever reaches `Debug`, `Display` or `tracing` output, through a run
//! that obtains, refreshes early, retries a dead token and fails both ways.

use std::sync::Arc;

use tower_oauth2::{
    secret::ClientSecret,
    store::{MemoryStore, TokenStore},
};

use tower_oauth2_mock::Fault;

use crate::{common::*, support::logs::Captured};

both!(a_full_run_prints_no_secret,);

const SECRET: &str = "client-secret-never-printed";

/// Every token the store holds now.
async fn tokens_in(store: &MemoryStore, credentials: &CredentialRegistry) -> Vec<String> {
    let key = &credentials.keys()[0];
    let stored = store.load(key).await.unwrap().expect("the tokens were saved");
    let access = stored.access_token.map(|t| t.secret().to_owned());
    let refresh = stored.refresh_token.map(|t| t.secret().to_owned());
    access.into_iter().chain(refresh).collect()
}

async fn a_full_run_prints_no_secret(kind: Kind) {
    let (captured, _guard) = Captured::install();
    let builder = MockServer::builder().client("client", SECRET);
    let server = started(builder.token_lifetime(Duration::from_secs(120))).await;
    let seed = server.issue_refresh_token("client", "");
    let store = Arc::new(MemoryStore::new());
    let policy = steady_policy().timeout(Duration::from_millis(300));
    let credential = Credential::refresh_token(
        server.provider(),
        "client",
        Some(ClientSecret::new(SECRET)),
        seed.as_str(),
    )
    .refresh_policy(policy);
    let credentials = CredentialRegistry::builder()
        .credential(credential)
        .store(Arc::clone(&store))
        .build()
        .unwrap();
    let adapter = Adapter::new(kind, &credentials);
    let mut secrets = vec![SECRET.to_owned(), seed];
    let mut printed = String::new();

    // Cold start, early refresh, dead-token retry: each leaves tokens to look for.
    let cold = adapter.send(Call::get(server.api_url("/things"))).await.unwrap();
    secrets.extend(tokens_in(&store, &credentials).await);
    advance(Duration::from_secs(61)).await;
    let window = adapter.send(Call::get(server.api_url("/things"))).await.unwrap();
    eventually("the early refresh", || server.counters().token_requests == 2).await;
    secrets.extend(tokens_in(&store, &credentials).await);
    server.revoke_all_access_tokens();
    let retried = adapter.send(Call::get(server.api_url("/things"))).await.unwrap();
    secrets.extend(tokens_in(&store, &credentials).await);
    for answer in [&cold, &window, &retried] {
        assert_eq!(answer.status, 200);
        printed.push_str(&format!("{answer:?}\n"));
    }
    assert_eq!(refreshes_and_retries(&credentials), (1, 1));

    // A failing token endpoint, then a hanging one.
    server.fail_next_token_requests(1, Fault::ServerError);
    credentials.invalidate_all();
    let failure = adapter
        .send(Call::get(server.api_url("/things")))
        .await
        .unwrap_err();
    assert!(matches!(failure, Error::Malformed(_)), "{failure:?}");
    advance(Duration::from_secs(60)).await;
    server.fail_next_token_requests(1, Fault::Hang);
    let timeout = adapter
        .send(Call::get(server.api_url("/things")))
        .await
        .unwrap_err();
    assert!(matches!(timeout, Error::TimedOut(_)), "{timeout:?}");
    for err in [&failure, &timeout] {
        printed.push_str(&format!("{err} {err:?} {err:#?}\n"));
    }
    printed.push_str(&format!(
        "{adapter:?} {credentials:?} {:?}\n",
        credentials.stats()
    ));

    let logs = captured.text();
    assert!(logs.contains("token installed"), "the run was traced:\n{logs}");
    assert_eq!(server.counters().token_requests, 5, "the run exercised refreshes");
    assert!(secrets.len() >= 6, "{} secrets", secrets.len());
    for output in [&logs, &printed] {
        for secret in &secrets {
            assert!(
                !output.contains(secret.as_str()),
                "a secret leaked into:\n{output}"
            );
        }
    }
}
