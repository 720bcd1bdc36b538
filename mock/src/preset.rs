//! Each emulator's tower-oauth2 preset, pointed at the emulator (the `tower-oauth2`
//! feature).
//!
//! Wiring only: which preset stands for which emulator, and the emulator's URLs. How a
//! provider speaks is read from the presets here and emulated independently in the rest
//! of this crate, so a misreading of a provider's document in either one shows up as a
//! failing test instead of passing in both.

use tower_oauth2::{providers, Provider, Revocation};

use crate::{MockDialect, MockServer};

impl MockServer {
    /// The provider this emulator stands in for, as a tower-oauth2 preset pointed at the
    /// emulator: for [`MockServer::accelo`], `providers::accelo_at(&server.base_url())`,
    /// and likewise for the other emulators (the presets' paths are the emulators'); for
    /// the standard emulator, [`Provider::standard`] with its API, authorization and
    /// RFC 7009 revocation endpoints. Tests then configure credentials exactly as
    /// production code does.
    ///
    /// Needs the `tower-oauth2` feature.
    ///
    /// ```no_run
    /// # async fn demo() -> std::io::Result<()> {
    /// use tower_oauth2::Credential;
    /// use tower_oauth2_mock::MockServer;
    ///
    /// let server = MockServer::accelo().client("app", "s3cret").start().await?;
    /// let credential = Credential::client_credentials(server.provider(), "app", "s3cret");
    /// # let _ = credential;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tower-oauth2")))]
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
