//! What the suite's tests share: the standard mock server, a client-credentials
//! registry for it, and the counts the mock keeps.

pub use std::time::Duration;

pub use bytes::Bytes;
pub use serde_json::{json, Value};
pub use tower_oauth2::{
    Credential, CredentialRegistry, Error, Provider, TokenPlacement, UserCredentialTemplate,
};
pub use tower_oauth2_mock::MockServer;

pub use crate::{
    adapter::{Adapter, Answer, Call, Kind},
    support::{
        advance, eventually,
        mock::{assert_counts, started},
        steady_policy,
    },
};

/// The standard (RFC 6749) mock, with one confidential client.
pub async fn standard_server() -> MockServer {
    standard_with_lifetime(Duration::from_secs(3600)).await
}

/// The standard mock with a token lifetime of its own.
pub async fn standard_with_lifetime(lifetime: Duration) -> MockServer {
    let builder = MockServer::builder().client("client", "secret");
    started(builder.token_lifetime(lifetime)).await
}

/// The standard server's client credentials, for `provider`.
pub fn client_credentials(provider: Provider) -> CredentialRegistry {
    CredentialRegistry::new(
        Credential::client_credentials(provider, "client", "secret").refresh_policy(steady_policy()),
    )
    .unwrap()
}

/// A standard server, its client credentials, and the adapter of `kind` over them.
pub async fn standard_setup(kind: Kind) -> (MockServer, CredentialRegistry, Adapter) {
    let server = standard_server().await;
    let credentials = client_credentials(server.provider());
    let adapter = Adapter::new(kind, &credentials);
    (server, credentials, adapter)
}

/// `n` GETs of the API, named `prefix-0`, `prefix-1`, ...
pub fn things(server: &MockServer, prefix: &str, n: usize) -> Vec<Call> {
    (0..n)
        .map(|i| Call::get(server.api_url("/things")).id(format!("{prefix}-{i}")))
        .collect()
}

/// One GET of the API, named `id`: its status.
pub async fn status(adapter: &Adapter, server: &MockServer, id: &str) -> u16 {
    adapter
        .send(Call::get(server.api_url("/things")).id(id))
        .await
        .unwrap()
        .status
}

/// The statuses of answers that all came.
pub fn statuses(answers: Vec<Result<Answer, Error>>) -> Vec<u16> {
    answers.into_iter().map(|a| a.unwrap().status).collect()
}

/// How many times the server saw the request named `id`.
pub fn sends(server: &MockServer, id: &str) -> u64 {
    server
        .counters()
        .sends_by_request_id
        .get(id)
        .copied()
        .unwrap_or(0)
}

/// The one credential's (dead-token refreshes, retries).
pub fn refreshes_and_retries(credentials: &CredentialRegistry) -> (u64, u64) {
    let stats = &credentials.stats()[0];
    (stats.dead_token_refreshes, stats.retries)
}
