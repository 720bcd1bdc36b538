//! The registry of credentials a layer serves, routed by API origin.

use std::{fmt, sync::Arc};

use http::Uri;

use crate::{
    cache::{CredentialState, Revoked},
    error::Error,
    grant::GrantConfig,
    origin::Origin,
    provider::{Credential, CredentialKey},
    stats::CredentialStats,
    transport::TokenTransport,
};

/// The credentials a layer attaches, each routed by its provider's API origins.
///
/// Cheap to clone: clones share one cache per credential, so a token fetched through
/// one clone is used by all.
///
/// # Example
///
/// ```no_run
/// use tower_oauth2::{Credential, Credentials, Provider};
///
/// # fn main() -> Result<(), tower_oauth2::Error> {
/// let github_like = Provider::standard("https://auth.example.com/token").api("https://api.example.com");
/// let billing = Provider::standard("https://login.billing.test/oauth2/token").api("https://billing.test");
/// let credentials = Credentials::builder()
///     .credential(Credential::client_credentials(github_like, "id-1", "secret-1"))
///     .credential(Credential::client_credentials(billing, "id-2", "secret-2").scopes(["invoices"]))
///     .build()?;
/// # let _ = credentials;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Credentials {
    pub(crate) registry: Arc<Registry>,
}

pub(crate) struct Registry {
    pub(crate) states: Vec<Arc<CredentialState>>,
    routes: Vec<(Origin, usize)>,
}

impl Registry {
    /// The index of the credential whose origin `uri` belongs to.
    #[inline]
    pub(crate) fn route(&self, uri: &Uri) -> Option<usize> {
        let (https, authority) = crate::origin::scheme_and_authority(uri)?;
        self.routes
            .iter()
            .find(|(origin, _)| origin.matches(https, authority))
            .map(|(_, index)| *index)
    }
}

impl Credentials {
    /// A registry of one credential, with the default transport.
    pub fn new(credential: Credential) -> Result<Self, Error> {
        Self::builder().credential(credential).build()
    }

    /// Starts an empty registry.
    pub fn builder() -> CredentialsBuilder {
        CredentialsBuilder {
            credentials: Vec::new(),
            transport: None,
        }
    }

    /// Counters for every credential, in registration order.
    pub fn stats(&self) -> Vec<CredentialStats> {
        self.registry
            .states
            .iter()
            .map(|s| s.stats.snapshot(s.key(), s.config.provider_name()))
            .collect()
    }

    /// The keys of the credentials, in registration order.
    pub fn keys(&self) -> Vec<CredentialKey> {
        self.registry
            .states
            .iter()
            .map(|s| s.credential_key().clone())
            .collect()
    }

    /// Logs a credential out: forgets its tokens here and revokes them at the provider,
    /// in the provider's dialect (RFC 7009, or a header such as iOFFICE's `x-token`).
    ///
    /// The tokens are forgotten even when revoking them fails. Afterwards a
    /// client-credentials credential fetches a new token on its next request; one that
    /// needs a user's authorization fails with
    /// [`Error::ReauthorizationRequired`] until it is registered again.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if no credential has this key; the provider's answer when the
    /// revocation endpoint refuses or cannot be reached.
    pub async fn revoke(&self, key: &CredentialKey) -> Result<Revoked, Error> {
        let state = self
            .registry
            .states
            .iter()
            .find(|s| s.credential_key() == key)
            .ok_or_else(|| Error::config(format!("no credential `{key}` in this registry")))?;
        state.revoke().await
    }

    /// Drops every cached token; the next request of each credential fetches a new one.
    pub fn invalidate_all(&self) {
        for state in &self.registry.states {
            state.invalidate();
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.registry.states.iter().map(|s| s.key()))
            .finish()
    }
}

/// Builds [`Credentials`]; every setting is checked in [`build`](Self::build).
#[derive(Debug)]
pub struct CredentialsBuilder {
    credentials: Vec<Credential>,
    transport: Option<TokenTransport>,
}

impl CredentialsBuilder {
    /// Adds a credential.
    pub fn credential(mut self, credential: Credential) -> Self {
        self.credentials.push(credential);
        self
    }

    /// The client token requests go through (default: [`TokenTransport::https`]).
    pub fn transport(mut self, transport: TokenTransport) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Checks the configuration and builds the registry.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when a URL does not parse, a token URL or API origin uses plain
    /// http to a host other than loopback, a provider has no API origin, two credentials
    /// claim the same origin or have the same key, a scope is not a valid scope token, a
    /// secret is missing, a preset was given an unusable deployment or site, or a grant
    /// needs refresh tokens from a provider that issues none.
    pub fn build(self) -> Result<Credentials, Error> {
        let transport = match self.transport {
            Some(transport) => transport,
            None => default_transport()?,
        };
        let mut states = Vec::with_capacity(self.credentials.len());
        let mut routes: Vec<(Origin, usize)> = Vec::new();
        for (index, credential) in self.credentials.into_iter().enumerate() {
            let provider = &credential.provider;
            if provider.api_origins.is_empty() {
                return Err(Error::config(format!(
                    "provider `{}` has no API origin; add one with `Provider::api`",
                    provider.name
                )));
            }
            let key = credential.key();
            if states
                .iter()
                .any(|s: &Arc<CredentialState>| *s.credential_key() == key)
            {
                return Err(Error::config(format!(
                    "credential `{key}` is registered twice; its tokens would be shared"
                )));
            }
            for input in &provider.api_origins {
                let origin = Origin::parse("API origin", input)?;
                if routes.iter().any(|(known, _)| *known == origin) {
                    return Err(Error::config(format!(
                        "API origin `{input}` is claimed by two credentials"
                    )));
                }
                routes.push((origin, index));
            }
            states.push(Arc::new(CredentialState::new(
                GrantConfig::new(credential)?,
                transport.clone(),
            )));
        }
        Ok(Credentials {
            registry: Arc::new(Registry { states, routes }),
        })
    }
}

#[cfg(feature = "hyper-transport")]
fn default_transport() -> Result<TokenTransport, Error> {
    TokenTransport::https()
}

#[cfg(not(feature = "hyper-transport"))]
fn default_transport() -> Result<TokenTransport, Error> {
    Err(Error::config(
        "no token transport: enable the `hyper-transport` feature or call `CredentialsBuilder::transport`",
    ))
}
