//! The mock server, started in one line, and its counters asserted in one line of
//! `name=value` pairs.

use tower_oauth2_mock::{MockServer, MockServerBuilder};

/// The server `builder` describes, started on a free loopback port.
pub async fn started(builder: MockServerBuilder) -> MockServer {
    builder.start().await.expect("the mock server starts")
}

/// Asserts the counters named in `expected`, written `name=value` and separated by
/// spaces: `assert_counts(&server, "token_requests=1 token_errors=0")`.
#[track_caller]
pub fn assert_counts(server: &MockServer, expected: &str) {
    server.counters().assert(expected);
}
