//! Each emulator's provider preset, pointed at the emulator.

use super::{MockDialect, MockServer};
use crate::{provider::Revocation, providers, Provider};

impl MockServer {
    /// The provider this emulator stands in for, as a preset pointed at the emulator:
    /// for [`MockServer::accelo`], `providers::accelo_at(&server.base_url())`, and
    /// likewise for the other emulators (the presets' paths are the emulators'); for the
    /// standard emulator, [`Provider::standard`] with its API, authorization and RFC 7009
    /// revocation endpoints. Tests then configure credentials exactly as production code
    /// does.
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
        let base = self.base_url();
        match self.dialect() {
            MockDialect::Agrello => providers::agrello_at(&base),
            MockDialect::Accelo => providers::accelo_at(&base),
            MockDialect::Grindery => providers::grindery_at(&base),
            MockDialect::Ioffice => providers::ioffice_at(&base),
            MockDialect::DottedSign => providers::dottedsign_at(&base),
            _ => {
                let mut provider = Provider::standard(self.token_url()).name("mock").api(base);
                if let Some(url) = self.authorize_url() {
                    provider = provider.authorize_url(url);
                }
                match self.revocation_url() {
                    Some(url) => provider.revocation(Revocation::Rfc7009 { url }),
                    None => provider,
                }
            }
        }
    }
}
