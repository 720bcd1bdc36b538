//! The mock server, started in one line, and its counters asserted in one line of
//! `name=value` pairs.

use tower_oauth2_mock::{MockCounters, MockServer, MockServerBuilder};

/// The server `builder` describes, started on a free loopback port.
pub async fn started(builder: MockServerBuilder) -> MockServer {
    builder.start().await.expect("the mock server starts")
}

fn counter(counters: &MockCounters, name: &str) -> u64 {
    match name {
        "token_requests" => counters.token_requests,
        "client_credentials_grants" => counters.client_credentials_grants,
        "refresh_token_grants" => counters.refresh_token_grants,
        "authorization_code_grants" => counters.authorization_code_grants,
        "token_errors" => counters.token_errors,
        "max_concurrent_token_requests" => counters.max_concurrent_token_requests,
        "resource_calls" => counters.resource_calls,
        "resource_calls_authorized" => counters.resource_calls_authorized,
        "revocations" => counters.revocations,
        "authorizations" => counters.authorizations,
        other => panic!("the mock counts no `{other}`"),
    }
}

/// Asserts the counters named in `expected`, written `name=value` and separated by
/// spaces: `assert_counts(&server, "token_requests=1 token_errors=0")`.
#[track_caller]
pub fn assert_counts(server: &MockServer, expected: &str) {
    let counters = server.counters();
    for pair in expected.split_whitespace() {
        let (name, value) = pair.split_once('=').expect("name=value");
        let value: u64 = value.parse().expect("a count");
        assert_eq!(counter(&counters, name), value, "{name}, of {counters:?}");
    }
}
