//! Strict, in-process OAuth 2.0 authorization servers and protected
//! resources: a standard RFC 6749 server, and emulators of the providers
//! [tower-oauth2](https://docs.rs/tower-oauth2) has presets for. Take it as a
//! dev-dependency to test an OAuth 2.0 client against real HTTP.
//!
//! [`MockServer`] listens on `127.0.0.1` on a port picked by the operating
//! system and speaks real HTTP/1.1, so whatever sits between a client and the
//! network (connection pools, retries, timeouts, this crate's layers) is
//! exercised exactly as it would be against a production server.
//!
//! # The standard server
//!
//! [`MockServer::builder`] (or [`MockServer::start`]) serves, on one port:
//!
//! * **`POST /oauth/token`**, a token endpoint that follows RFC 6749 to the
//!   letter: form-encoded bodies only, no repeated parameters, client
//!   authentication with HTTP Basic, body credentials, (for public clients)
//!   just a `client_id`, or a JWT client assertion (`private_key_jwt` with a key
//!   registered by [`client_public_key`](MockServerBuilder::client_public_key), or
//!   `client_secret_jwt`; RFC 7523 §2.2, every claim checked and `jti` replays
//!   refused), and the `client_credentials`, `refresh_token` and
//!   `authorization_code` grants. Mistakes a client could make are answered
//!   with the error code a real server would use, so tests catch them.
//! * **`GET /authorize`**, an authorization endpoint (RFC 6749 §4.1.1) that
//!   approves at once as the default user and redirects to
//!   `redirect_uri?code=…&state=…`. It accepts PKCE (RFC 7636, `S256` only),
//!   and the code exchange then requires the matching `code_verifier`.
//! * **`POST /oauth/revoke`**, RFC 7009 revocation: a form `token` (and an
//!   optional `token_type_hint`), authenticated like a token request,
//!   answered `200` even for unknown tokens. Revoking a refresh token also
//!   revokes the access tokens issued from the same grant.
//! * **`GET /.well-known/oauth-authorization-server`**, the server's metadata
//!   (RFC 8414): its issuer (the server's origin), endpoints, accepted client
//!   authentication methods, grants, scopes and PKCE `S256`. Builder options serve
//!   another issuer ([`metadata_issuer`](MockServerBuilder::metadata_issuer)), for
//!   mix-up tests, or none ([`serve_metadata`](MockServerBuilder::serve_metadata)).
//!   The emulators serve no metadata.
//! * **`/api/*`**, a protected resource that accepts any method and checks
//!   the `Authorization: Bearer` header (RFC 6750) against the tokens the
//!   server issued (or, with [DPoP](#dpop) on, `Authorization: DPoP` and a proof).
//!
//! # DPoP
//!
//! With [`dpop(true)`](MockServerBuilder::dpop) the standard server requires DPoP
//! (RFC 9449) and checks it strictly: every token request needs one valid `DPoP`
//! proof (`400 invalid_dpop_proof` for a bad or replayed one, `400 invalid_grant`
//! without one, in both cases before the code or refresh token is used up), access
//! tokens come with `token_type` `DPoP` and are bound to the RFC 7638 thumbprint of
//! the proof's key, and the resource takes them only as `Authorization: DPoP <token>`
//! with a proof for that request (`htm`, `htu`, `ath`) signed by that key, answering
//! `401` with a `DPoP` challenge otherwise. Refresh tokens are not bound: the access
//! token of a refresh is bound to the key of that refresh's proof.
//! [`dpop_nonces(true)`](MockServerBuilder::dpop_nonces) adds server nonces at both
//! places (`use_dpop_nonce`, `DPoP-Nonce`), and
//! [`MockServer::rotate_dpop_nonces`] forces a new round of the nonce dance;
//! [`rotate_dpop_nonces_on_success(true)`](MockServerBuilder::rotate_dpop_nonces_on_success)
//! moves a nonce on every success and announces the new one in it, and
//! [`MockServer::fail_next_resource_requests`] with a [`ResourceFault`] refuses the
//! next resource requests with a nonce demand or a dead-token answer
//! ([`Fault::DemandDpopNonce`] does the former at the token endpoint). The resource's
//! `200` answer names the key a DPoP-bound token is bound to in `cnf.jkt`. The
//! `dpop_*` fields of [`MockCounters`] count accepted, refused and replayed proofs,
//! nonce demands and distinct `jti`s. Proof signatures are checked with the
//! `jsonwebtoken` crate over RustCrypto; nothing of tower-oauth2 takes part.
//!
//! Without it, `DPoP` headers are ignored, as by a server that does not know DPoP.
//!
//! # Provider emulators
//!
//! Each emulator speaks exactly its provider's documented dialect, and
//! rejects what that provider would reject. Where a document is silent, the
//! emulator picks the conventional value and its constructor says so.
//!
//! | constructor | token endpoint | user flow | client authentication | token placement | resource |
//! | --- | --- | --- | --- | --- | --- |
//! | [`agrello`](MockServer::agrello) | `POST /identity/auth/oauth/token`, form | authorize, code in the query | HTTP Basic only | `Authorization: Bearer` | `/api/*` |
//! | [`accelo`](MockServer::accelo) | `POST /oauth2/v0/token[.json]`, form, `client_credentials` only | none | HTTP Basic, or `client_id`/`client_secret` in the body or query | `Authorization: Bearer`, `?_bearer_token=` | `/api/v0/*`, `/public_api/v0/*` |
//! | [`grindery`](MockServer::grindery) | `POST /oauth/token`, form | authorize, code in the query | none | `Authorization: Bearer` | `/api/*`; with [`native_grindery_errors`](MockServerBuilder::native_grindery_errors), also JSON-RPC at `POST /` |
//! | [`ioffice`](MockServer::ioffice) | `POST /external/api/oauth2/token`, parameters in `x-…` headers | `/login.html`, code in the fragment; direct code request | `x-client-id` | `x-access-token`, `?access_token=` | `/external/api/rest/*` |
//! | [`dottedsign`](MockServer::dottedsign) | `POST /v1/oauth/token`, form | authorize, code in the query | `client_id`/`client_secret` in the body only | `Authorization: Bearer` | `/v1/*` |
//!
//! Whatever the dialect, errors are RFC 6749 §5.2 JSON, `{"error": …,
//! "error_description": …}`, with the status a real server would use
//! (`401` and `WWW-Authenticate: Basic` when HTTP Basic client
//! authentication fails). Access tokens are random; the protected resource
//! answers `200` with a JSON description of the token it found (its
//! `client_id`, and on the emulators its `subject`, `scope` and
//! `placement`), `401` for a missing or dead token, and `400` for a token
//! sent in two places. [`MockServer::dialect`] tells which dialect a server
//! speaks, and its `*_url` methods give the endpoints' URLs.
//!
//! # Steering
//!
//! Tests steer the server while it runs: inject [faults](Fault) into the next
//! token requests, add latency, revoke every access token, deny the next
//! authorization requests, mint refresh tokens or authorization codes without
//! a browser, and read [`MockCounters`] to check what the client actually
//! sent. All of it works the same on every dialect.
//!
//! # An independent oracle
//!
//! The emulators are written from the providers' documents alone: no code of
//! tower-oauth2 runs to answer a request, so a misreading of a document in
//! the client shows up as a failing test instead of being agreed with.
//!
//! # Features
//!
//! - `tower-oauth2` (off by default): `MockServer::provider`, the
//!   tower-oauth2 preset of the emulated provider pointed at the emulator, to
//!   configure credentials in a test as production code does. It wires presets
//!   to URLs and nothing more.
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
//! use tower_oauth2_mock::{Fault, MockServer};
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
//!
//! ## Example: an emulator
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use std::time::Duration;
//! use tower_oauth2_mock::{MockDialect, MockServer};
//!
//! let server = MockServer::ioffice()
//!     .client("my-app", "unused-secret")
//!     .user("bob", "hunter2")
//!     .token_lifetime(Duration::from_secs(60))
//!     .start()
//!     .await?;
//! assert_eq!(server.dialect(), MockDialect::Ioffice);
//!
//! // A code as if bob had signed in at `server.authorize_url()`; exchange it
//! // at `server.token_url()` with iOFFICE's x-… headers, then call
//! // `server.api_url("/v2/users/me")` with the token in `x-access-token`.
//! let code = server.issue_authorization_code("my-app", "https://my-app.example/cb", "email");
//! # let _ = code;
//! # Ok(())
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![deny(unreachable_pub)]
#![warn(clippy::await_holding_lock, clippy::dbg_macro, clippy::todo)]

mod authorize;
mod body;
mod builder;
mod client_assertion;
mod client_auth;
mod clients;
mod counters;
mod dialect;
mod dpop;
mod emulators;
mod error;
mod faults;
mod json_rpc;
mod listener;
mod metadata;
mod params;
#[cfg(feature = "tower-oauth2")]
mod preset;
mod random;
mod resource;
mod revoke;
mod routing;
mod scope;
mod server;
mod state;
mod steering;
mod sync;
mod token;

pub use builder::MockServerBuilder;
pub use clients::AcceptedAssertionAudience;
pub use counters::MockCounters;
pub use dialect::{AcceptedClientAuth, MockDialect};
pub use faults::{Fault, ResourceFault};
pub use server::MockServer;
