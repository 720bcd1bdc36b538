//! `ServiceBuilder::oauth2` (and `oauth2_follow_redirects`), in the style of tower-http's
//! `ServiceBuilderExt`.

use tower::ServiceBuilder;
use tower_layer::Stack;

use super::OAuth2Layer;
#[cfg(feature = "follow-redirect")]
use crate::redirect::RedirectPolicy;
use crate::CredentialRegistry;
#[cfg(feature = "follow-redirect")]
use tower_http::follow_redirect::FollowRedirectLayer;

/// Adds [`oauth2`](ServiceBuilderExt::oauth2) to [`ServiceBuilder`].
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_oauth2::{Credential, CredentialRegistry, Provider, ServiceBuilderExt};
///
/// # fn main() -> Result<(), tower_oauth2::Error> {
/// # let transport = tower_oauth2::TokenTransport::new(tower::service_fn(|_r: tower_oauth2::transport::TokenRequest| async {
/// #     Err::<http::Response<http_body_util::Full<bytes::Bytes>>, tower_oauth2::BoxError>("unused".into())
/// # }));
/// let provider = Provider::standard("https://auth.example.com/token").api("https://api.example.com");
/// let credentials = CredentialRegistry::builder()
///     .credential(Credential::client_credentials(provider, "client-id", "client-secret"))
/// #   .transport(transport)
///     .build()?;
/// let client = ServiceBuilder::new()
///     .oauth2(credentials)
///     .service(tower::service_fn(|_req: http::Request<()>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
///     }));
/// # let _ = client;
/// # Ok(())
/// # }
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Attaches, refreshes and retries the OAuth 2.0 credentials of `credentials`: the
    /// same as `.layer(OAuth2Layer::new(credentials))`.
    fn oauth2(self, credentials: CredentialRegistry) -> ServiceBuilder<Stack<OAuth2Layer, L>>;

    /// [`oauth2`](Self::oauth2), with redirects followed outside the layer (feature
    /// `follow-redirect`): the same as
    ///
    /// ```text
    /// .layer(FollowRedirectLayer::with_policy(tower_oauth2::redirect::policy(&credentials)))
    /// .layer(OAuth2Layer::new(credentials))
    /// ```
    ///
    /// Each hop of a redirect goes through the layer, which attaches a token only on the
    /// token's own origin; see [`redirect`](crate::redirect).
    ///
    /// ```
    /// use tower::ServiceBuilder;
    /// use tower_oauth2::{Credential, CredentialRegistry, Provider, ServiceBuilderExt};
    ///
    /// # fn main() -> Result<(), tower_oauth2::Error> {
    /// # let transport = tower_oauth2::TokenTransport::new(tower::service_fn(|_r: tower_oauth2::transport::TokenRequest| async {
    /// #     Err::<http::Response<http_body_util::Full<bytes::Bytes>>, tower_oauth2::BoxError>("unused".into())
    /// # }));
    /// let provider = Provider::standard("https://auth.example.com/token").api("https://api.example.com");
    /// let credentials = CredentialRegistry::builder()
    ///     .credential(Credential::client_credentials(provider, "client-id", "client-secret"))
    /// #   .transport(transport)
    ///     .build()?;
    /// let client = ServiceBuilder::new()
    ///     .oauth2_follow_redirects(credentials)
    ///     .service(tower::service_fn(|_req: http::Request<http_body_util::Empty<bytes::Bytes>>| async {
    ///         Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
    ///     }));
    /// # let _ = client;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "follow-redirect")]
    #[cfg_attr(docsrs, doc(cfg(feature = "follow-redirect")))]
    #[allow(clippy::type_complexity)]
    fn oauth2_follow_redirects(
        self,
        credentials: CredentialRegistry,
    ) -> ServiceBuilder<Stack<OAuth2Layer, Stack<FollowRedirectLayer<RedirectPolicy>, L>>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn oauth2(self, credentials: CredentialRegistry) -> ServiceBuilder<Stack<OAuth2Layer, L>> {
        self.layer(OAuth2Layer::new(credentials))
    }

    #[cfg(feature = "follow-redirect")]
    fn oauth2_follow_redirects(
        self,
        credentials: CredentialRegistry,
    ) -> ServiceBuilder<Stack<OAuth2Layer, Stack<FollowRedirectLayer<RedirectPolicy>, L>>> {
        self.layer(FollowRedirectLayer::with_policy(RedirectPolicy::new(
            &credentials,
        )))
        .layer(OAuth2Layer::new(credentials))
    }
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}
