//! [`CredentialRegistryBuilder`]: every setting checked once, when the registry is built.

use std::{fmt, sync::Arc};

use super::{
    users::{LiveUsers, UserGroup},
    CredentialRegistry, RoutingTable,
};
use crate::{
    credential::CredentialState,
    error::Error,
    origin::Origin,
    redact::without_userinfo,
    store::{MemoryStore, TokenStore},
    token_endpoint::CheckedCredential,
    transport::TokenTransport,
    Credential, RefreshPolicy, UserCredentialTemplate,
};

/// Builds [`CredentialRegistry`]; every setting is checked in [`build`](Self::build).
pub struct CredentialRegistryBuilder {
    credentials: Vec<Credential>,
    users: Vec<UserCredentialTemplate>,
    transport: Option<TokenTransport>,
    store: Option<Arc<dyn TokenStore>>,
}

impl fmt::Debug for CredentialRegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialRegistryBuilder")
            .field("credentials", &self.credentials)
            .field("users", &self.users)
            .field("transport", &self.transport)
            .field("store", &self.store.as_ref().map(|_| ".."))
            .finish()
    }
}

impl CredentialRegistryBuilder {
    pub(super) fn new() -> Self {
        Self {
            credentials: Vec::new(),
            users: Vec::new(),
            transport: None,
            store: None,
        }
    }

    /// Serves users of a provider: requests carrying a [`Subject`](crate::Subject) to the provider's
    /// API origins get that user's token. At most one per provider; the same origins
    /// may also have an application credential, used for requests without a subject.
    pub fn users(mut self, users: UserCredentialTemplate) -> Self {
        self.users.push(users);
        self
    }

    /// Where tokens are kept between restarts (default: in memory only). Users' refresh
    /// tokens, and the application's, are saved here before the tokens that come with
    /// them are used, and read back after a restart.
    ///
    /// This is the default: a credential with a store of its own
    /// ([`Credential::store`]) or users with theirs ([`UserCredentialTemplate::store`]) use that
    /// one instead, and never this one.
    pub fn store(mut self, store: impl TokenStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

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
    pub fn build(self) -> Result<CredentialRegistry, Error> {
        let transport = match self.transport {
            Some(transport) => transport,
            None => default_transport()?,
        };
        let configured_store = self.store.clone();
        let mut states = Vec::with_capacity(self.credentials.len());
        let mut routes: Vec<(Origin, usize)> = Vec::new();
        for (index, credential) in self.credentials.into_iter().enumerate() {
            let provider = &credential.client.provider;
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
                        "API origin `{}` is claimed by two credentials",
                        without_userinfo(input)
                    )));
                }
                routes.push((origin, index));
            }
            let store = match &credential.client.store {
                Some(own) => Some(Arc::clone(&own.0)),
                None => configured_store.clone(),
            };
            check_lease(&key, store.as_deref(), &credential.client.policy)?;
            states.push(Arc::new(CredentialState::with_store(
                CheckedCredential::new(credential)?,
                transport.clone(),
                store,
                false,
            )));
        }
        let store = configured_store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let mut users = Vec::with_capacity(self.users.len());
        let mut user_routes: Vec<(Origin, usize)> = Vec::new();
        for (index, template) in self.users.into_iter().enumerate() {
            let provider = &template.client.provider;
            if users
                .iter()
                .any(|g: &UserGroup| g.users.client.provider.name == provider.name)
            {
                return Err(Error::config(format!(
                    "users of provider `{}` are registered twice",
                    provider.name
                )));
            }
            if provider.api_origins.is_empty() {
                return Err(Error::config(format!(
                    "provider `{}` has no API origin; add one with `Provider::api`",
                    provider.name
                )));
            }
            for input in &provider.api_origins {
                let origin = Origin::parse("API origin", input)?;
                if user_routes.iter().any(|(known, _)| *known == origin) {
                    return Err(Error::config(format!(
                        "API origin `{}` serves the users of two providers",
                        without_userinfo(input)
                    )));
                }
                user_routes.push((origin, index));
            }
            // Checked now, so that a bad template fails the build, not a user's request.
            CheckedCredential::new(template.credential_for("-"))?;
            if template.max_users == 0 {
                return Err(Error::config(format!(
                    "users of provider `{}`: `max_users` is zero, so no user could be served",
                    provider.name
                )));
            }
            if template.idle_after.is_zero() {
                return Err(Error::config(format!(
                    "users of provider `{}`: `idle_after` is zero, so every user would be read back from the store on every request",
                    provider.name
                )));
            }
            let template_store = match &template.client.store {
                Some(own) => Some(Arc::clone(&own.0)),
                None => Some(Arc::clone(&store)),
            };
            check_lease(
                &template.key_for("-").without_subject(),
                template_store.as_deref(),
                &template.client.policy,
            )?;
            let retired_label = format!("{} (evicted users)", template.key_for("-").without_subject());
            users.push(UserGroup {
                live: Arc::new(LiveUsers::new(template.max_users, template.idle_after)),
                store: match &template.client.store {
                    Some(own) => Arc::clone(&own.0),
                    None => Arc::clone(&store),
                },
                users: template,
                transport: transport.clone(),
                retired_label,
            });
        }
        Ok(CredentialRegistry {
            routing: Arc::new(RoutingTable {
                states,
                routes,
                users,
                user_routes,
                #[cfg(any(feature = "follow-redirect", feature = "reqwest"))]
                crossings: Default::default(),
            }),
        })
    }
}

/// Refuses a refresh lease that could expire while its holder's token request still
/// runs: another replica would then take the lease and present the same refresh
/// token, which a provider that rotates refresh tokens refuses (and some revoke the
/// grant for).
fn check_lease(
    credential: &dyn fmt::Display,
    store: Option<&dyn TokenStore>,
    policy: &RefreshPolicy,
) -> Result<(), Error> {
    let Some(settings) = store.and_then(TokenStore::coordination).map(|c| c.settings()) else {
        return Ok(());
    };
    if settings.ttl <= policy.timeout {
        return Err(Error::config(format!(
            "credential `{credential}`: the refresh lease's ttl ({:?}) must be longer than the token \
             request timeout ({:?}, `RefreshPolicy::timeout`), or a lease could expire while its \
             holder still waits for the provider's answer",
            settings.ttl, policy.timeout
        )));
    }
    Ok(())
}

#[cfg(feature = "hyper-transport")]
fn default_transport() -> Result<TokenTransport, Error> {
    TokenTransport::https()
}

#[cfg(not(feature = "hyper-transport"))]
fn default_transport() -> Result<TokenTransport, Error> {
    Err(Error::config(
        "no token transport: enable the `hyper-transport` feature or call `CredentialRegistryBuilder::transport`",
    ))
}
