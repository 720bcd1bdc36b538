//! The registry of credentials a layer serves, routed by API origin.

use std::{
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, PoisonError},
};

use http::Uri;

use crate::{
    authorize::AuthorizedCode,
    credential::{CredentialState, Revoked},
    error::{Error, NotAuthorized},
    grant::GrantConfig,
    origin::Origin,
    provider::{Credential, CredentialKey, Provider, RefreshPolicy},
    redact::without_userinfo,
    secret::ClientSecret,
    stats::CredentialStats,
    store::{MemoryStore, TokenStore},
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

/// Which configured origin a routed request was for, and how it spelled it: enough to
/// write its authority again for a retry, without copying it on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RouteRef {
    users: bool,
    explicit: bool,
    position: u32,
}

impl Registry {
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

    /// Which users' origin `uri` belongs to, if any.
    pub(crate) fn user_route_ref(&self, uri: &Uri) -> Option<RouteRef> {
        let (https, authority) = crate::origin::scheme_and_authority(uri)?;
        self.user_routes
            .iter()
            .enumerate()
            .find_map(|(position, (origin, _))| {
                let explicit = origin.spelling(https, authority)?;
                let position = position as u32;
                Some(RouteRef {
                    users: true,
                    explicit,
                    position,
                })
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
    pub(crate) fn route_user(
        &self,
        uri: &Uri,
        subject: &Subject,
    ) -> Option<Result<Arc<CredentialState>, Error>> {
        let (https, authority) = crate::origin::scheme_and_authority(uri)?;
        let group = self
            .user_routes
            .iter()
            .find(|(origin, _)| origin.matches(https, authority));
        match group {
            Some((_, index)) => Some(self.users[*index].state(&subject.0)),
            None => {
                let index = self.route(uri)?;
                Some(Err(Error::NotAuthorized(NotAuthorized {
                    provider: self.states[index].config.provider_name().clone(),
                    subject: Some(subject.0.clone()),
                })))
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
                    self.users[*group].users.provider.name == state.config.credential.provider.name
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
            .map(|s| &s.config.credential.provider.placement);
        let users = self.users.iter().map(|g| &g.users.provider.placement);
        own.chain(users)
    }

    fn user_group(&self, provider: &str) -> Result<&UserGroup, Error> {
        self.users
            .iter()
            .find(|g| g.users.provider.get_name() == provider)
            .ok_or_else(|| Error::config(format!("no users are registered for provider `{provider}`")))
    }
}

/// Names the user a request acts for: put it in the request's extensions, and the layer
/// attaches that user's token for the provider the request goes to.
///
/// A user with no stored grant gets [`Error::NotAuthorized`] and the request is not
/// sent. Requests without a `Subject` use the application's own credential.
///
/// ```
/// use tower_oauth2::Subject;
///
/// let mut request = http::Request::get("https://api.agrello.io/v1/documents").body(()).unwrap();
/// request.extensions_mut().insert(Subject::new("user-42"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject(Arc<str>);

impl Subject {
    /// The user with this id (the application's own id for them).
    pub fn new(subject: impl Into<Arc<str>>) -> Self {
        Self(subject.into())
    }

    /// The user's id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How the application acts for its users at one provider: its client there, the scopes
/// it asks for and when to refresh. Each user who logs in gets a credential of their own
/// built from this, keyed by provider, client, scopes and their subject.
///
/// A user's credential is created the first time a request or a login names them, and
/// kept (a small entry, plus their tokens once they have some) until
/// [`Credentials::logout`]. A user who is not authorized is looked up in the store
/// again on their next request, spaced by the refresh policy's backoff.
#[derive(Debug, Clone)]
pub struct UserCredentials {
    provider: Provider,
    client_id: String,
    client_secret: Option<ClientSecret>,
    scopes: Option<Vec<String>>,
    redirect_uri: Option<String>,
    policy: RefreshPolicy,
}

impl UserCredentials {
    /// Users' tokens from `provider`, for the client `client_id` (`client_secret` is
    /// `None` for providers without client authentication).
    pub fn new(
        provider: Provider,
        client_id: impl Into<String>,
        client_secret: Option<ClientSecret>,
    ) -> Self {
        Self {
            provider,
            client_id: client_id.into(),
            client_secret,
            scopes: None,
            redirect_uri: None,
            policy: RefreshPolicy::default(),
        }
    }

    /// The scopes asked for, instead of the provider's default ones.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = Some(crate::provider::scope_set(scopes));
        self
    }

    /// The callback URL registered with the provider, for providers that repeat it on
    /// refresh requests (iOFFICE).
    pub fn redirect_uri(mut self, redirect_uri: impl Into<String>) -> Self {
        self.redirect_uri = Some(redirect_uri.into());
        self
    }

    /// When to refresh and how to back off.
    pub fn refresh_policy(mut self, policy: RefreshPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The provider.
    pub fn provider(&self) -> &Provider {
        &self.provider
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The callback URL set with [`redirect_uri`](Self::redirect_uri), if any.
    pub fn get_redirect_uri(&self) -> Option<&str> {
        self.redirect_uri.as_deref()
    }

    /// The key under which `subject`'s tokens are kept.
    pub fn key_for(&self, subject: &str) -> CredentialKey {
        self.credential_for(subject, None).key()
    }

    /// Starts an authorization for this client, with these scopes; see
    /// [`Provider::authorization`].
    pub fn authorization(&self, redirect_uri: impl Into<String>) -> crate::authorize::AuthorizationRequest {
        let request = self.provider.authorization(self.client_id.clone(), redirect_uri);
        match &self.scopes {
            Some(scopes) => request.scopes(scopes.clone()),
            None => request,
        }
    }

    fn credential_for(&self, subject: &str, code: Option<AuthorizedCode>) -> Credential {
        // The code is only a placeholder for users restored from the store: their
        // state starts from the store, never from the credential's grant.
        let (code, redirect_uri) = match code {
            Some(code) => {
                let uri = code.redirect_uri().to_owned();
                (Some(code), uri)
            }
            None => (None, self.redirect_uri.clone().unwrap_or_default()),
        };
        let mut credential = match code {
            Some(code) => code.into_credential(
                self.provider.clone(),
                self.client_id.clone(),
                self.client_secret.clone(),
            ),
            None => Credential::authorization_code(
                self.provider.clone(),
                self.client_id.clone(),
                self.client_secret.clone(),
                "",
                redirect_uri.clone(),
            ),
        };
        credential = credential.subject(subject).refresh_policy(self.policy);
        credential.redirect_uri = self.redirect_uri.clone().or(Some(redirect_uri));
        if let Some(scopes) = &self.scopes {
            credential = credential.scopes(scopes.clone());
        }
        credential
    }
}

/// The users of one provider: their credentials, created when first needed.
struct UserGroup {
    users: UserCredentials,
    store: Arc<dyn TokenStore>,
    transport: TokenTransport,
    states: Mutex<HashMap<Arc<str>, Arc<CredentialState>>>,
    /// The counts of users forgotten (logged out), so that the group's exported totals
    /// never go down: metrics counters only count up. Counted under `states`' lock.
    #[cfg(feature = "metrics")]
    retired: crate::stats::Stats,
}

impl UserGroup {
    fn state(&self, subject: &Arc<str>) -> Result<Arc<CredentialState>, Error> {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = states.get(subject) {
            return Ok(Arc::clone(state));
        }
        let config = GrantConfig::new(self.users.credential_for(subject, None))?;
        let state = Arc::new(CredentialState::with_store(
            config,
            self.transport.clone(),
            Some(Arc::clone(&self.store)),
            true,
        ));
        states.insert(Arc::clone(subject), Arc::clone(&state));
        Ok(state)
    }

    fn forget(&self, subject: &str) -> Option<Arc<CredentialState>> {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let state = states.remove(subject);
        // NOTE: what the forgotten state still counts after this (a token request of
        // its own that was in flight) is not carried over.
        #[cfg(feature = "metrics")]
        if let Some(state) = &state {
            self.retired.add(&state.stats);
        }
        state
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
            users: Vec::new(),
            transport: None,
            store: None,
        }
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
        let group = self.registry.user_group(provider)?;
        let state = group.state(&Arc::from(subject))?;
        state.authorize(code.into_pending()).await.map(drop)
    }

    /// Logs a user out of a provider: forgets their tokens, deletes them from the store
    /// and revokes them in the provider's dialect when it has a revocation endpoint.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when no users are registered for `provider`; [`Error::Store`]
    /// when the store cannot delete; the provider's answer when revoking fails (the
    /// tokens are forgotten and deleted all the same).
    pub async fn logout(&self, provider: &str, subject: &str) -> Result<Revoked, Error> {
        let group = self.registry.user_group(provider)?;
        let state = group.state(&Arc::from(subject))?;
        let revoked = state.revoke().await;
        group.forget(subject);
        revoked
    }

    /// The key under which `subject`'s tokens for `provider` are kept.
    pub fn user_key(&self, provider: &str, subject: &str) -> Result<CredentialKey, Error> {
        Ok(self.registry.user_group(provider)?.users.key_for(subject))
    }

    /// The user credentials registered for `provider`.
    pub fn users(&self, provider: &str) -> Result<&UserCredentials, Error> {
        Ok(&self.registry.user_group(provider)?.users)
    }

    /// Counters for every credential: the application's in registration order, then
    /// users' (ordered by provider and subject).
    pub fn stats(&self) -> Vec<CredentialStats> {
        let mut stats: Vec<CredentialStats> = self.registry.states.iter().map(|s| s.snapshot()).collect();
        for group in &self.registry.users {
            let states = group.states.lock().unwrap_or_else(PoisonError::into_inner);
            let mut users: Vec<_> = states.iter().collect();
            users.sort_by(|a, b| a.0.cmp(b.0));
            stats.extend(users.into_iter().map(|(_, s)| s.snapshot()));
        }
        stats
    }

    /// Each provider whose users are served, with the counters of all its users: one
    /// snapshot per user, and one of the users forgotten since the registry was built.
    /// Read under one lock, so that a logout between two reads counts once.
    #[cfg(feature = "metrics")]
    pub(crate) fn users_stats(&self) -> Vec<(&str, Vec<CredentialStats>)> {
        self.registry
            .users
            .iter()
            .map(|group| {
                let provider = group.users.provider.get_name();
                let states = group.states.lock().unwrap_or_else(PoisonError::into_inner);
                let mut stats: Vec<CredentialStats> = states.values().map(|s| s.snapshot()).collect();
                stats.push(group.retired.snapshot("", provider, None));
                (provider, stats)
            })
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

    /// Drops every cached token, users' included; the next request of each credential
    /// fetches a new one.
    pub fn invalidate_all(&self) {
        for state in &self.registry.states {
            state.invalidate();
        }
        for group in &self.registry.users {
            for state in group
                .states
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
            {
                state.invalidate();
            }
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
pub struct CredentialsBuilder {
    credentials: Vec<Credential>,
    users: Vec<UserCredentials>,
    transport: Option<TokenTransport>,
    store: Option<Arc<dyn TokenStore>>,
}

impl fmt::Debug for CredentialsBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialsBuilder")
            .field("credentials", &self.credentials)
            .field("users", &self.users)
            .field("transport", &self.transport)
            .field("store", &self.store.as_ref().map(|_| ".."))
            .finish()
    }
}

impl CredentialsBuilder {
    /// Serves users of a provider: requests carrying a [`Subject`] to the provider's
    /// API origins get that user's token. At most one per provider; the same origins
    /// may also have an application credential, used for requests without a subject.
    pub fn users(mut self, users: UserCredentials) -> Self {
        self.users.push(users);
        self
    }

    /// Where tokens are kept between restarts (default: in memory only). Users' refresh
    /// tokens, and the application's, are saved here before the tokens that come with
    /// them are used, and read back after a restart.
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
    pub fn build(self) -> Result<Credentials, Error> {
        let transport = match self.transport {
            Some(transport) => transport,
            None => default_transport()?,
        };
        let configured_store = self.store.clone();
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
                        "API origin `{}` is claimed by two credentials",
                        without_userinfo(input)
                    )));
                }
                routes.push((origin, index));
            }
            states.push(Arc::new(CredentialState::with_store(
                GrantConfig::new(credential)?,
                transport.clone(),
                configured_store.clone(),
                false,
            )));
        }
        let store = configured_store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let mut users = Vec::with_capacity(self.users.len());
        let mut user_routes: Vec<(Origin, usize)> = Vec::new();
        for (index, template) in self.users.into_iter().enumerate() {
            let provider = &template.provider;
            if users
                .iter()
                .any(|g: &UserGroup| g.users.provider.name == provider.name)
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
            GrantConfig::new(template.credential_for("-", None))?;
            users.push(UserGroup {
                users: template,
                store: Arc::clone(&store),
                transport: transport.clone(),
                states: Mutex::default(),
                #[cfg(feature = "metrics")]
                retired: crate::stats::Stats::default(),
            });
        }
        Ok(Credentials {
            registry: Arc::new(Registry {
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
