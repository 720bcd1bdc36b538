//! Each emulator's provider preset, pointed at the emulator.

use super::{MockDialect, MockServer};
use crate::{provider::Revocation, providers, Provider};

impl MockServer {
    /// The provider this emulator stands in for, as a preset pointed at the emulator:
    /// for [`MockServer::ioffice`], `providers::ioffice(&server.base_url())`; for
    /// [`MockServer::accelo`], `providers::accelo(..)` with its token URL and API origin
    /// replaced; for the standard emulator, [`Provider::standard`] with its API,
    /// authorization and RFC 7009 revocation endpoints. Tests then configure
    /// credentials exactly as production code does.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use tower_oauth2::{mock::MockServer, Credential};
    ///
    /// let server = MockServer::accelo().client("app", "s3cret").start().await?;
    /// let credential = Credential::client_credentials(server.provider(), "app", "s3cret");
    /// # let _ = credential;
    /// # Ok(())
    /// # }
    /// ```
    pub fn provider(&self) -> Provider {
        let token_url = self.token_url();
        let api = [self.base_url()];
        let with_endpoints = |provider: Provider| {
            let provider = provider.token_url(token_url.clone()).api_origins(api.clone());
            match self.authorize_url() {
                Some(url) => provider.authorize_url(url),
                None => provider,
            }
        };
        match self.dialect() {
            MockDialect::Agrello => with_endpoints(providers::agrello()),
            MockDialect::Accelo => with_endpoints(providers::accelo("emulator")),
            MockDialect::Grindery => with_endpoints(providers::grindery()),
            MockDialect::Ioffice => providers::ioffice(&self.base_url()),
            MockDialect::DottedSign => providers::dottedsign(&self.base_url()),
            _ => {
                let provider = with_endpoints(Provider::standard(self.token_url()).name("mock"));
                match self.revocation_url() {
                    Some(url) => provider.revocation(Revocation::Rfc7009 { url }),
                    None => provider,
                }
            }
        }
    }
}
