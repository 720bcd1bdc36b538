//! OAuth 2.0 credentials for any tower HTTP client: attached, refreshed before they
//! expire, refreshed once after a dead-token answer, and never leaked.
//!
//! # Overview
//!
//! [`OAuth2Layer`] wraps any `tower::Service<http::Request<B>>` (a hyper client, the
//! outbound client of an axum app, a tonic `Channel`, a `ServiceBuilder` stack). For each
//! request it picks
//! the credential of the provider the request goes to, attaches the cached token, and:
//!
//! - refreshes the token before it expires, in the background, while requests keep
//!   using the still-valid one;
//! - when there is no usable token, makes one token request for any number of
//!   concurrent callers, in a task of its own that outlives callers that give up;
//! - when the API answers that the token is dead (401 by default; gRPC's
//!   `UNAUTHENTICATED` with [`Provider::grpc`]), refreshes it once and sends the request
//!   once more, if its body can be replayed (see [`body`]);
//! - backs off from a failing token endpoint instead of hammering it.
//!
//! Reading the cached token takes no lock, reads no clock, and writes no memory another
//! thread writes: each service clone keeps its own copy of the current header.
//!
//! Tokens go only to the origins (scheme, host, port) configured for their provider, and
//! only over https (plain http is allowed to `localhost` and loopback IP literals, for
//! tests). Secrets never appear in `Debug`, `Display`, errors or `tracing` output, even
//! when an authorization server quotes them back: its text is redacted, escaped and
//! capped before an error keeps it (see [`error`]). The README's "Security" section
//! lists what the crate promises and what the application must do.
//!
//! # Example client
//!
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::{client::legacy::Client, rt::TokioExecutor};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_oauth2::{Credential, CredentialRegistry, OAuth2Layer, Provider};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), tower_oauth2::BoxError> {
//! let provider = Provider::standard("https://auth.example.com/oauth/token")
//!     .api("https://api.example.com");
//! let credentials = CredentialRegistry::new(
//!     Credential::client_credentials(provider, "client-id", "client-secret").scopes(["read"]),
//! )?;
//!
//! let https = hyper_rustls::HttpsConnectorBuilder::new()
//!     .with_webpki_roots()
//!     .https_only()
//!     .enable_http1()
//!     .build();
//! let client = ServiceBuilder::new()
//!     .layer(OAuth2Layer::new(credentials))
//!     .service(Client::builder(TokioExecutor::new()).build::<_, Full<Bytes>>(https));
//!
//! let request = http::Request::get("https://api.example.com/v1/things").body(Full::default())?;
//! let response = client.oneshot(request).await?;
//! println!("{}", response.status());
//! # Ok(())
//! # }
//! ```
//!
//! # Providers
//!
//! A [`Provider`] is data: endpoints, client authentication, how parameters are carried,
//! the unit of `expires_in`, refresh-token behaviour, where the token goes, scope
//! syntax, revocation and what counts as a dead token. [`providers`] has presets for
//! Agrello, Accelo, Grindery, iOFFICE and DottedSign, filled in from their documents;
//! [`Provider::standard`] covers any RFC 6749 server. One [`CredentialRegistry`] holds
//! credentials for any number of providers, routed by API origin.
//!
//! # Users
//!
//! A [`UserCredentialTemplate`] serves a provider's users: each user's credential is built
//! from it, and a request carrying a [`Subject`] gets that user's token. [`authorize`]
//! builds the authorization URL and checks the callback; [`CredentialRegistry::login`]
//! exchanges the code and keeps the tokens in the registry's [`store`] (in memory, or a
//! [`store::FileStore`] that survives restarts).
//!
//! # Feature flags
//!
//! - `hyper-transport` (default): the default token transport, hyper-util's client with
//!   rustls (ring, or the provider the application installed) and the Mozilla roots.
//! - `aws-lc-rs`: that transport's TLS over aws-lc-rs, with post-quantum key exchange.
//! - `axum`: [`axum::LoginRoutes`], the login and callback
//!   routes of users' authorization-code flows.
//! - `reqwest`: [`reqwest::OAuth2Middleware`], the same credentials for reqwest clients
//!   through reqwest-middleware.
//! - `follow-redirect`: [`redirect::RedirectPolicy`] and
//!   [`ServiceBuilderExt::oauth2_follow_redirects`], tower-http's `FollowRedirect`
//!   without tokens leaving their origin; see [`redirect`] (and, for reqwest,
//!   [`reqwest::redirect_policy`]).
//! - `encryption`: [`store::EncryptedStore`], tokens encrypted at rest (XChaCha20-Poly1305)
//!   around any store, with keys that can be rotated.
//! - `metrics`: [`CredentialRegistry::record_metrics`] and
//!   [`CredentialRegistry::spawn_metrics_exporter`], the counters of
//!   [`CredentialRegistry::stats`] published through the `metrics` facade (see
//!   [`metrics`]).
//! - `redis`: [`store::RedisStore`], tokens in Redis shared by an application's
//!   replicas, which refresh each credential once between them through a lease.
//!
//! # Testing
//!
//! The `tower-oauth2-mock` crate (in this repository's `mock/`, a dev-dependency) runs
//! strict emulators of RFC 6749 and of each preset's provider on 127.0.0.1, with a
//! protected resource, fault injection and counters; its `tower-oauth2` feature adds
//! `MockServer::provider`, the preset pointed at the emulator.
//!
//! # Runtime
//!
//! Token requests and expiry timers run as Tokio tasks: call the service within a Tokio
//! runtime. Building the layer does not spawn anything.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]
#![deny(unreachable_pub)]
#![warn(clippy::await_holding_lock, clippy::dbg_macro, clippy::todo)]

pub mod authorize;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
pub mod body;
mod credential;
#[cfg(any(feature = "follow-redirect", feature = "reqwest"))]
mod crossing;
pub mod dead_token;
pub mod discovery;
#[cfg(feature = "jose")]
#[cfg_attr(docsrs, doc(cfg(feature = "jose")))]
pub mod dpop;
pub mod error;
mod grant;
#[cfg(feature = "jose")]
#[cfg_attr(docsrs, doc(cfg(feature = "jose")))]
pub mod jose;
pub mod layer;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod origin;
mod protocol;
pub mod provider;
pub mod providers;
mod redact;
#[cfg(feature = "follow-redirect")]
#[cfg_attr(docsrs, doc(cfg(feature = "follow-redirect")))]
pub mod redirect;
mod refresh_policy;
mod registry;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
pub mod secret;
mod stats;
pub mod store;
pub mod token;
mod token_endpoint;
pub mod transport;

// What the parsers must hold to for any input, checked by the property tests and by the
// fuzz targets.
#[cfg(any(test, fuzzing))]
mod invariants;
#[cfg(test)]
mod proptests;

/// Entry points of the fuzz targets in `fuzz/`. Compiled only under `--cfg fuzzing`
/// (which `cargo fuzz` sets), and no part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod __fuzz {
    /// Reads `data` as a token endpoint's answer (status, flags, content type and body;
    /// the layout is in `src/invariants.rs`), parses it, and panics if an invariant of
    /// the parser does not hold.
    pub fn token_response(data: &[u8]) {
        crate::invariants::check_token_response_bytes(data);
    }
}

// The README's examples compile. They use the optional integrations, so they are
// checked with every feature on, as CI tests.
#[cfg(all(
    doctest,
    feature = "reqwest",
    feature = "axum",
    feature = "hyper-transport",
    feature = "follow-redirect",
    feature = "tonic",
    feature = "redis",
    feature = "jose"
))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[doc(inline)]
pub use self::{
    credential::{Credential, CredentialKey, Revoked, UserCredentialTemplate},
    dead_token::{ApiAnswer, ResponseBody},
    error::{BoxError, Error},
    grant::Grant,
    layer::{NoRetry, OAuth2, OAuth2Layer, ServiceBuilderExt},
    provider::{
        ClientAuth, CodeDelivery, ParameterEncoding, Provider, RefreshTokens, Revocation, ScopeSyntax,
        TokenPlacement,
    },
    refresh_policy::RefreshPolicy,
    registry::{CredentialRegistry, CredentialRegistryBuilder, Subject},
    stats::CredentialStats,
    store::{FileStore, MemoryStore, StoredTokens, TokenStore},
    token::TokenSet,
    transport::TokenTransport,
};

// What an ordinary configuration names, at the root too, so that it needs one `use`:
// token lifetimes, Accelo's scopes, the secrets a credential is built from, header-
// encoded parameters, the login types, the store's errors and change hook, and the
// request type a custom transport receives.
#[doc(no_inline)]
pub use self::{
    authorize::{AuthorizationRequest, AuthorizedCode, PendingAuthorization},
    provider::HeaderParameters,
    providers::accelo::AcceloScope,
    secret::{AccessToken, AuthorizationCode, ClientSecret, Password, PkceVerifier, RefreshToken},
    store::{Notifying, StoreError, StoreErrorKind, StoreOperation, TokenChange},
    token::{ExpiresIn, Lifetimes},
    transport::TokenRequest,
};

// The encrypted store and its keys, at the root too.
#[cfg(feature = "encryption")]
#[doc(no_inline)]
pub use self::store::{EncryptedStore, EncryptionKey, Keyring};
