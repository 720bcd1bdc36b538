//! How token requests reach the token endpoint.
//!
//! A [`TokenTransport`] is a cloneable tower service from `http::Request<Full<Bytes>>` to
//! an HTTP response. The default, [`TokenTransport::https`], is a hyper-util client with
//! rustls and the Mozilla root certificates (feature `hyper-transport`, on by default).
//! Any other client fits through [`TokenTransport::new`]: a client with a proxy, custom
//! roots, a `tower::service_fn` in tests, or a stack already erased into tower's
//! `BoxCloneService` or `BoxCloneSyncService`.
//!
//! The service need not be `Sync`. The transport keeps one copy of it, the prototype,
//! behind a `std::sync::Mutex` held only while the prototype is cloned, and each token
//! request runs on its own clone. A registry is shared by every thread, so something has
//! to make a `Send`-only service shareable; a lock taken once per token request (a few
//! per hour per credential, never per API request) costs nothing measurable, where the
//! alternatives would make every caller wrap their client or give up `BoxCloneService`.
//!
//! The layer never follows redirects on token requests: a 3xx answer is an error. The
//! hyper client does not follow them either, and a custom transport should not.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use tower_oauth2::TokenTransport;
//!
//! // A stand-in token endpoint, as a test would use.
//! let transport = TokenTransport::new(tower::service_fn(|_req: http::Request<Full<Bytes>>| async {
//!     Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from_static(
//!         br#"{"access_token":"t","token_type":"Bearer","expires_in":3600}"#,
//!     ))))
//! }));
//! # let _ = transport;
//! ```

use std::{
    fmt,
    sync::{Arc, Mutex, PoisonError},
};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use tower::{util::BoxCloneService, ServiceExt};
use tower_service::Service;

use crate::error::BoxError;

/// The request type token requests are sent as.
pub type TokenRequest = Request<Full<Bytes>>;

type TransportBody = UnsyncBoxBody<Bytes, BoxError>;

type Erased = BoxCloneService<TokenRequest, Response<TransportBody>, BoxError>;

/// A cloneable, type-erased HTTP client for token requests.
///
/// Clones share one prototype of the service; see the [module documentation](self).
#[derive(Clone)]
pub struct TokenTransport {
    // `BoxCloneService` is `Send` but not `Sync`: the mutex makes it shareable, and is
    // held only to clone it.
    prototype: Arc<Mutex<Erased>>,
}

impl TokenTransport {
    /// Wraps any cloneable tower service that sends HTTP requests. It must be `Send`,
    /// not `Sync`: tower's `BoxCloneService` fits, as does `BoxCloneSyncService`.
    pub fn new<S, B>(service: S) -> Self
    where
        S: Service<TokenRequest, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let service = service
            .map_response(|res: Response<B>| res.map(|body| body.map_err(Into::into).boxed_unsync()))
            .map_err(Into::into);
        Self {
            prototype: Arc::new(Mutex::new(BoxCloneService::new(service))),
        }
    }

    /// The default transport: hyper-util's client over rustls with the Mozilla roots,
    /// HTTP/1.1, https and plain http (the layer refuses plain http token URLs unless
    /// they point at loopback).
    ///
    /// Its cryptography is the application's process-wide rustls provider when one is
    /// installed (`CryptoProvider::install_default`); otherwise aws-lc-rs with feature
    /// `aws-lc-rs`, whose key exchange includes the post-quantum X25519MLKEM768 (client
    /// secrets and refresh tokens travel in token requests, and outlive them); otherwise
    /// ring, which has no post-quantum key exchange but builds without a C toolchain
    /// beyond a compiler.
    #[cfg(feature = "hyper-transport")]
    #[cfg_attr(docsrs, doc(cfg(feature = "hyper-transport")))]
    pub fn https() -> Result<Self, crate::Error> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(tls_provider())
            .map_err(|e| crate::Error::config(format!("TLS setup failed: {e}")))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build::<_, Full<Bytes>>(connector);
        Ok(Self::new(client))
    }

    pub(crate) async fn send(&self, request: TokenRequest) -> Result<Response<TransportBody>, BoxError> {
        let service = self
            .prototype
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        service.oneshot(request).await
    }
}

/// The rustls provider of [`TokenTransport::https`], in the order its docs give.
#[cfg(feature = "hyper-transport")]
fn tls_provider() -> rustls::crypto::CryptoProvider {
    if let Some(installed) = rustls::crypto::CryptoProvider::get_default() {
        return installed.as_ref().clone();
    }
    #[cfg(feature = "aws-lc-rs")]
    return rustls::crypto::aws_lc_rs::default_provider();
    // Deprecated by rustls 0.23.48 for its lack of post-quantum key exchange: still the
    // lean default here, and the `aws-lc-rs` feature is the way out.
    #[cfg(not(feature = "aws-lc-rs"))]
    #[allow(deprecated)]
    rustls::crypto::ring::default_provider()
}

impl fmt::Debug for TokenTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenTransport").finish_non_exhaustive()
    }
}
