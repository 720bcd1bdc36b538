//! The tower layer: attach the credential, refresh it, retry once.
//!
//! [`OAuth2Layer`] wraps any `Service<http::Request<B>>`. For every request it:
//!
//! 1. routes by the request URI's origin (scheme, host, port) to a credential; a request
//!    for any other origin passes through untouched;
//! 2. attaches the cached token where the provider wants it, without a lock, a clock
//!    read or an allocation beyond the header map's own;
//! 3. when there is no usable token, waits for the one token request in flight;
//! 4. when the answer says the token is dead (401 by default; a trailers-only gRPC
//!    `UNAUTHENTICATED` too for a provider declared [`grpc`](crate::Provider::grpc)),
//!    refreshes the token (once, however many requests got that answer) and sends the
//!    request once more, if its body can be replayed (see [`body`](crate::body)). A
//!    second dead-token answer is returned as it is.
//!
//! Put [`NoRetry`] in a request's extensions to send it at most once (for calls that
//! must not be repeated).
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_oauth2::{Credential, CredentialRegistry, OAuth2Layer, Provider, TokenTransport};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_oauth2::BoxError> {
//! # let token_endpoint = TokenTransport::new(tower::service_fn(|_req: Request<Full<Bytes>>| async {
//! #     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
//! #         br#"{"access_token":"abc","token_type":"Bearer","expires_in":3600}"#,
//! #     ))))
//! # }));
//! # let http_client = tower::service_fn(|req: Request<Full<Bytes>>| async move {
//! #     assert_eq!(req.headers()["authorization"], "Bearer abc");
//! #     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
//! # });
//! let provider = Provider::standard("https://auth.example.com/oauth/token").api("https://api.example.com");
//! let credentials = CredentialRegistry::builder()
//!     .credential(Credential::client_credentials(provider, "client-id", "client-secret"))
//! #   .transport(token_endpoint)
//!     .build()?;
//!
//! let client = ServiceBuilder::new()
//!     .layer(OAuth2Layer::new(credentials))
//!     .service(http_client);
//!
//! let response = client
//!     .oneshot(Request::get("https://api.example.com/v1/me").body(Full::default())?)
//!     .await?;
//! assert_eq!(response.status(), 200);
//! # Ok(())
//! # }
//! ```

mod builder;
mod family;
mod future;
#[allow(clippy::module_inception)]
mod layer;
mod replay;
mod service;

pub use self::{builder::ServiceBuilderExt, future::ResponseFuture, layer::OAuth2Layer, service::OAuth2};

/// A request extension that turns off the retry after a dead-token answer.
///
/// The token is still refreshed for later requests; this request is sent once and its
/// answer returned as it is. Use it for calls that must not be repeated.
///
/// ```
/// let mut request = http::Request::post("https://api.example.com/payments").body(()).unwrap();
/// request.extensions_mut().insert(tower_oauth2::NoRetry);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoRetry;
