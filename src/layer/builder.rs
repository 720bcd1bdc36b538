//! `ServiceBuilder::oauth2`, in the style of tower-http's `ServiceBuilderExt`.

use tower::ServiceBuilder;
use tower_layer::Stack;

use super::OAuth2Layer;
use crate::Credentials;

/// Adds [`oauth2`](ServiceBuilderExt::oauth2) to [`ServiceBuilder`].
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_oauth2::{Credential, Credentials, Provider, ServiceBuilderExt};
///
/// # fn main() -> Result<(), tower_oauth2::Error> {
/// # let transport = tower_oauth2::TokenTransport::new(tower::service_fn(|_r: tower_oauth2::transport::TokenRequest| async {
/// #     Err::<http::Response<http_body_util::Full<bytes::Bytes>>, tower_oauth2::BoxError>("unused".into())
/// # }));
/// let provider = Provider::standard("https://auth.example.com/token").api("https://api.example.com");
/// let credentials = Credentials::builder()
///     .credential(Credential::client_credentials(provider, "client-id", "client-secret"))
/// #   .transport(transport)
///     .build()?;
/// let client = ServiceBuilder::new()
///     .oauth2(credentials)
///     .service(tower::service_fn(|_req: http::Request<()>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(()))
///     }));
/// # let _ = client;
/// # Ok(())
/// # }
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Attaches, refreshes and retries the OAuth 2.0 credentials of `credentials`: the
    /// same as `.layer(OAuth2Layer::new(credentials))`.
    fn oauth2(self, credentials: Credentials) -> ServiceBuilder<Stack<OAuth2Layer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn oauth2(self, credentials: Credentials) -> ServiceBuilder<Stack<OAuth2Layer, L>> {
        self.layer(OAuth2Layer::new(credentials))
    }
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}
