//! A strict, in-process OAuth 2.0 authorization server and protected resource.
//!
//! [`MockServer`] listens on `127.0.0.1` on a port picked by the operating
//! system and speaks real HTTP/1.1, so whatever sits between a client and the
//! network (connection pools, retries, timeouts, this crate's layers) is
//! exercised exactly as it would be against a production server.
//!
//! It serves two things on the same port:
//!
//! * **`POST /oauth/token`**, a token endpoint that follows RFC 6749 to the
//!   letter: form-encoded bodies only, no repeated parameters, client
//!   authentication with HTTP Basic, body credentials or (for public clients)
//!   just a `client_id`, and the `client_credentials`, `refresh_token` and
//!   `authorization_code` grants. Mistakes a client could make are answered
//!   with the error code a real server would use, so tests catch them.
//! * **`/api/*`**, a protected resource that accepts any method and checks
//!   the `Authorization: Bearer` header (RFC 6750) against the tokens the
//!   server issued.
//!
//! Tests steer the server while it runs: inject [faults](Fault) into the next
//! token requests, add latency, revoke every access token, mint refresh tokens
//! or authorization codes without a browser, and read [`MockCounters`] to
//! check what the client actually sent.
//!
//! # Runtime
//!
//! The server runs on the Tokio runtime that calls [`MockServerBuilder::start`]
//! and needs its I/O and time drivers (`#[tokio::test]` enables both).
//! Dropping the [`MockServer`] stops it: the accept loop and every open
//! connection are aborted, including requests that are hanging on purpose.
//!
//! Timing (token lifetimes, latency) uses [`tokio::time`]. Pausing the Tokio
//! clock is not recommended while real sockets are involved, because the
//! runtime advances a paused clock whenever it is waiting for I/O.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use tower_oauth2::mock::{Fault, MockServer};
//!
//! let server = MockServer::builder()
//!     .client("my-app", "s3cret")
//!     .allowed_scopes(&["read"])
//!     .start()
//!     .await?;
//!
//! // The next token request fails with a 500 and no JSON body.
//! server.fail_next_token_requests(1, Fault::ServerError);
//!
//! // ... run the client under test against `server.token_url()` and
//! // `server.api_url("/things")` ...
//!
//! let counters = server.counters();
//! assert_eq!(counters.token_errors, 1);
//! # Ok(())
//! # }
//! ```

mod body;
mod client_auth;
mod counters;
mod faults;
mod resource;
mod server;
mod state;
mod token;

pub use client_auth::ClientAuthMethod;
pub use counters::MockCounters;
pub use faults::Fault;
pub use server::{MockServer, MockServerBuilder};
