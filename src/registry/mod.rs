//! The registry of credentials a layer serves, routed by API origin.
//!
//! - here: [`CredentialRegistry`], and the [`RoutingTable`] its clones share;
//! - [`builder`]: [`CredentialRegistryBuilder`], which checks the configuration;
//! - [`users`]: each provider's users in memory, created when first needed and evicted
//!   when idle;
//! - [`subject`]: [`Subject`], the request extension that names a user.

mod builder;
mod subject;
mod users;

use self::users::UserGroup;
pub use self::{builder::CredentialRegistryBuilder, subject::Subject};

use std::{fmt, sync::Arc};

use http::Uri;

use crate::{
    authorize::AuthorizedCode,
    credential::{CredentialState, Revoked},
    error::{Error, NotAuthorized},
    origin::Origin,
    stats::CredentialStats,
    Credential, CredentialKey, UserCredentialTemplate,
};

/// The credentials a layer attaches, each routed by its provider's API origins.
///
/// Cheap to clone: clones share one cache per credential, so a token fetched through
/// one clone is used by all.
///
/// # Example
///
/// ```no_run
/// use tower_oauth2::{Credential, CredentialRegistry, Provider};
///
/// # fn main() -> Result<(), tower_oauth2::Error> {
/// let github_like = Provider::standard("https://auth.example.com/token").api("https://api.example.com");
/// let billing = Provider::standard("https://login.billing.test/oauth2/token").api("https://billing.test");
/// let credentials = CredentialRegistry::builder()
///     .credential(Credential::client_credentials(github_like, "id-1", "secret-1"))
///     .credential(Credential::client_credentials(billing, "id-2", "secret-2").scopes(["invoices"]))
///     .build()?;
/// # let _ = credentials;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct CredentialRegistry {
    pub(crate) routing: Arc<RoutingTable>,
}

/// What a registry and its clones share: each credential's state, and the API origins
/// that route a request to it.
pub(crate) struct RoutingTable {
    /// The application's own credentials, routed by index on the hot path.
    pub(crate) states: Vec<Arc<CredentialState>>,
    routes: Vec<(Origin, usize)>,
    /// Users' credentials, one group per provider, routed by origin and then by subject.
    users: Vec<UserGroup>,
    user_routes: Vec<(Origin, usize)>,
    /// Redirects seen taking a token to another origin, warned about once each.
    #[cfg(any(feature = "follow-redirect", feature = "reqwest"))]
    pub(crate) crossings: crate::crossing::Crossings,
}

/// A user's credential (or why a request may not be sent for them), and which users'
/// origin the request was for.
pub(crate) type UserRoute = (Result<Arc<CredentialState>, Error>, Option<RouteRef>);

/// Which configured origin a routed request was for, and how it spelled it: enough to
/// write its authority again for a retry, without copying it on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RouteRef {
    users: bool,
    explicit: bool,
    position: u32,
}

impl RouteRef {
    /// Whether the request was routed to a users' origin (it carries a `Subject`).
    pub(crate) fn is_users(self) -> bool {
        self.users
    }
}

impl RoutingTable {
    /// The index of the credential whose origin `uri` belongs to.
    #[inline]
    pub(crate) fn route(&self, uri: &Uri) -> Option<usize> {
        self.route_ref(uri).map(|(index, _)| index)
    }

    /// [`route`](Self::route), and which of the credential's origins matched.
    #[inline]
    pub(crate) fn route_ref(&self, uri: &Uri) -> Option<(usize, RouteRef)> {
        let (https, authority) = crate::origin::scheme_and_authority(uri)?;
        self.routes
            .iter()
            .enumerate()
            .find_map(|(position, (origin, index))| {
                let explicit = origin.spelling(https, authority)?;
                let position = position as u32;
                Some((
                    *index,
                    RouteRef {
                        users: false,
                        explicit,
                        position,
                    },
                ))
            })
    }

    /// The authority of the origin `route` names, as the request spelled it.
    pub(crate) fn authority(&self, route: RouteRef) -> Option<&str> {
        let table = if route.users {
            &self.user_routes
        } else {
            &self.routes
        };
        let (origin, _) = table.get(route.position as usize)?;
        Some(origin.authority(route.explicit))
    }

    /// The credential of user `subject` for the provider whose origin `uri` belongs to:
    /// `None` when the origin belongs to no provider (the request passes through),
    /// `NotAuthorized` when it belongs to one that serves no users.
    /// With it, which users' origin matched (`None` when the origin is the
    /// application's only).
    pub(crate) fn route_user(&self, uri: &Uri, subject: &Subject) -> Option<UserRoute> {
        let (https, authority) = crate::origin::scheme_and_authority(uri)?;
        let group = self
            .user_routes
            .iter()
            .enumerate()
            .find_map(|(position, (origin, index))| {
                Some((origin.spelling(https, authority)?, position, index))
            });
        match group {
            Some((explicit, position, index)) => {
                let route = RouteRef {
                    users: true,
                    explicit,
                    position: position as u32,
                };
                Some((self.users[*index].request(&subject.0), Some(route)))
            }
            None => {
                let index = self.route(uri)?;
                let refused = Error::NotAuthorized(NotAuthorized {
                    provider: self.states[index].config.provider_name().clone(),
                    subject: Some(subject.0.clone()),
                });
                Some((Err(refused), None))
            }
        }
    }

    /// Whether `uri`'s origin is an API origin of any credential, the application's or
    /// users'.
    #[cfg(feature = "reqwest")]
    pub(crate) fn serves(&self, uri: &Uri) -> bool {
        let Some((https, authority)) = crate::origin::scheme_and_authority(uri) else {
            return false;
        };
        self.routes
            .iter()
            .chain(&self.user_routes)
            .any(|(origin, _)| origin.matches(https, authority))
    }

    /// Whether `uri`'s origin is one of `state`'s provider's API origins: `state` is
    /// the application's credential `index`, or a user's (`for_user`).
    #[cfg(feature = "follow-redirect")]
    pub(crate) fn is_origin_of(&self, uri: &Uri, index: usize, user: Option<&CredentialState>) -> bool {
        let Some((https, authority)) = crate::origin::scheme_and_authority(uri) else {
            return false;
        };
        match user {
            None => self.route(uri) == Some(index),
            Some(state) => self
                .user_routes
                .iter()
                .filter(|(origin, _)| origin.matches(https, authority))
                .any(|(_, group)| {
                    self.users[*group].users.client.provider.name
                        == state.config.credential.client.provider.name
                }),
        }
    }

    /// Where every provider of the registry puts its tokens: the application's
    /// credentials' and users'.
    #[cfg(feature = "follow-redirect")]
    pub(crate) fn placements(&self) -> impl Iterator<Item = &crate::provider::TokenPlacement> {
        let own = self
            .states
            .iter()
            .map(|s| &s.config.credential.client.provider.placement);
        let users = self.users.iter().map(|g| &g.users.client.provider.placement);
        own.chain(users)
    }

    fn user_group(&self, provider: &str) -> Result<&UserGroup, Error> {
        self.users
            .iter()
            .find(|g| g.users.client.provider.name_ref() == provider)
            .ok_or_else(|| Error::config(format!("no users are registered for provider `{provider}`")))
    }
}

impl CredentialRegistry {
    /// A registry of one credential, with the default transport.
    pub fn new(credential: Credential) -> Result<Self, Error> {
        Self::builder().credential(credential).build()
    }

    /// Starts an empty registry.
    pub fn builder() -> CredentialRegistryBuilder {
        CredentialRegistryBuilder::new()
    }

    /// Completes a user's login: exchanges `code` (from
    /// [`PendingAuthorization::complete`](crate::authorize::PendingAuthorization::complete))
    /// in the provider's dialect, stores the tokens under the user's key, and from then
    /// on attaches them to requests carrying `Subject(subject)`.
    ///
    /// A new login replaces whatever the user had before.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when no users are registered for `provider`; the provider's
    /// answer when it refuses the code (a replayed or expired code is
    /// [`Error::ReauthorizationRequired`]); [`Error::Store`] when the tokens cannot be
    /// saved, in which case they are not used either.
    pub async fn login(&self, provider: &str, subject: &str, code: AuthorizedCode) -> Result<(), Error> {
        let group = self.routing.user_group(provider)?;
        let state = group.state(&Arc::from(subject))?;
        state.authorize(code.into_pending()).await.map(drop)
    }

    /// Logs a user out of a provider: forgets their tokens, deletes them from the store
    /// and revokes them in the provider's dialect when it has a revocation endpoint. A
    /// user no longer in memory is read back from the store first, so their stored tokens
    /// are revoked all the same.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when no users are registered for `provider`; [`Error::Store`]
    /// when the store cannot delete; the provider's answer when revoking fails (the
    /// tokens are forgotten and deleted all the same).
    pub async fn logout(&self, provider: &str, subject: &str) -> Result<Revoked, Error> {
        let group = self.routing.user_group(provider)?;
        // Read back from the store if the user is not in memory. The state stays (now
        // without tokens, and evicted when idle like any other) rather than being removed
        // while a request in flight may still hold it.
        let state = group.state(&Arc::from(subject))?;
        state.revoke().await
    }

    /// The key under which `subject`'s tokens for `provider` are kept.
    pub fn user_key(&self, provider: &str, subject: &str) -> Result<CredentialKey, Error> {
        Ok(self.routing.user_group(provider)?.users.key_for(subject))
    }

    /// The user credentials registered for `provider`.
    pub fn users(&self, provider: &str) -> Result<&UserCredentialTemplate, Error> {
        Ok(&self.routing.user_group(provider)?.users)
    }

    /// Counters for every credential: the application's in registration order, then, for
    /// each provider whose users are served, its users in memory (ordered by subject)
    /// followed by one entry for its users no longer in memory.
    ///
    /// That last entry sums the counts of the users evicted since the registry was built
    /// (see [Users in memory](UserCredentialTemplate#users-in-memory)); its `credential` is the
    /// users' key without a subject, followed by ` (evicted users)`. With it, sums over
    /// this list never go down: a user evicted and brought back is counted once, their
    /// counts before the eviction in that entry and those after in their own. Each
    /// provider's users are read under one lock, so an eviction is seen whole.
    pub fn stats(&self) -> Vec<CredentialStats> {
        let mut stats: Vec<CredentialStats> = self.routing.states.iter().map(|s| s.snapshot()).collect();
        for group in &self.routing.users {
            stats.extend(group.stats());
        }
        stats
    }

    /// Each provider whose users are served, with the counters of all its users: one
    /// snapshot per user in memory, and one of the users evicted since the registry was
    /// built, read under one lock so that an eviction counts once.
    #[cfg(feature = "metrics")]
    pub(crate) fn users_stats(&self) -> Vec<(&str, Vec<CredentialStats>)> {
        self.routing
            .users
            .iter()
            .map(|group| (group.users.client.provider.name_ref(), group.stats()))
            .collect()
    }

    /// The keys of the credentials, in registration order.
    pub fn keys(&self) -> Vec<CredentialKey> {
        self.routing
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
            .routing
            .states
            .iter()
            .find(|s| s.credential_key() == key)
            .ok_or_else(|| Error::config(format!("no credential `{key}` in this registry")))?;
        state.revoke().await
    }

    /// Drops every cached token, those of the users in memory included; the next request
    /// of each credential fetches a new one. Users no longer in memory have nothing
    /// cached here: their next request reads the store.
    pub fn invalidate_all(&self) {
        for state in &self.routing.states {
            state.invalidate();
        }
        for group in &self.routing.users {
            group.invalidate_all();
        }
    }
}

impl fmt::Debug for CredentialRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.routing.states.iter().map(|s| s.key()))
            .finish()
    }
}
