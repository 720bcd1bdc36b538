//! The settings a [`Credential`](crate::Credential) and a
//! [`UserCredentialTemplate`](crate::UserCredentialTemplate) share: the application's
//! client at a provider, the scopes it asks for, when it refreshes and where the tokens
//! are kept.
//!
//! The two hold one [`ClientSettings`] and get the same setters and readers from one
//! macro, [`client_settings!`], so that each setting is written, checked and documented
//! once. (A trait would do it too, but every chained call would then need the trait in
//! scope.)

use std::fmt;

use crate::{
    provider::{ClientAuth, Provider},
    refresh_policy::RefreshPolicy,
    secret::ClientSecret,
    store::StoreHandle,
};

/// What a credential and a users' template share, with its defaults.
#[derive(Clone)]
pub(crate) struct ClientSettings {
    pub(crate) provider: Provider,
    pub(crate) client_id: String,
    pub(crate) client_secret: Option<ClientSecret>,
    /// The key of [`ClientAuth::PrivateKeyJwt`](crate::ClientAuth::PrivateKeyJwt).
    #[cfg(feature = "jose")]
    pub(crate) assertion_key: Option<crate::jose::SigningKey>,
    pub(crate) scopes: Option<Vec<String>>,
    pub(crate) redirect_uri: Option<String>,
    pub(crate) policy: RefreshPolicy,
    pub(crate) store: Option<StoreHandle>,
    /// The key tokens are bound to (DPoP, RFC 9449), if they are.
    #[cfg(feature = "jose")]
    pub(crate) dpop: Option<crate::dpop::DpopKey>,
}

impl ClientSettings {
    pub(crate) fn new(provider: Provider, client_id: String, client_secret: Option<ClientSecret>) -> Self {
        Self {
            provider,
            client_id,
            client_secret,
            #[cfg(feature = "jose")]
            assertion_key: None,
            scopes: None,
            redirect_uri: None,
            policy: RefreshPolicy::default(),
            store: None,
            #[cfg(feature = "jose")]
            dpop: None,
        }
    }

    /// The scopes requested: the client's own, or else the provider's defaults, sorted
    /// and without duplicates.
    pub(crate) fn requested_scopes(&self) -> Vec<String> {
        match &self.scopes {
            Some(scopes) => scopes.clone(),
            None => crate::provider::scope_set(self.provider.default_scopes.iter().cloned()),
        }
    }

    pub(crate) fn set_client_auth(&mut self, client_auth: ClientAuth) {
        self.provider.client_auth = client_auth;
    }
}

// Written by hand so that the secret can never be printed (its own `Debug` hides it too),
// and the provider is named rather than printed whole.
impl fmt::Debug for ClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("ClientSettings");
        f.field("provider", &self.provider.name)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret);
        // The key's own `Debug` shows its algorithm, id and thumbprint: nothing private.
        #[cfg(feature = "jose")]
        f.field("assertion_key", &self.assertion_key);
        f.field("scopes", &self.scopes)
            .field("redirect_uri", &self.redirect_uri)
            .field("policy", &self.policy)
            .field("store", &self.store);
        #[cfg(feature = "jose")]
        f.field("dpop", &self.dpop);
        f.finish()
    }
}

/// The setters and readers of the [`ClientSettings`] a type holds in its field `client`,
/// as inherent methods of that type.
macro_rules! client_settings {
    () => {
        /// The scopes to request, instead of the provider's default ones. Order and
        /// duplicates do not matter.
        pub fn scopes<I, S>(mut self, scopes: I) -> Self
        where
            I: IntoIterator<Item = S>,
            S: Into<String>,
        {
            self.client.scopes = Some($crate::provider::scope_set(scopes));
            self
        }

        /// The redirect URI (callback URL) registered for this client, for providers that
        /// want it on refresh requests too (see
        /// [`Provider::repeat_authorization_params`](crate::Provider::repeat_authorization_params)).
        /// For users, the `axum` feature's `LoginRoutes` sends them back to it
        /// rather than to its own callback route.
        pub fn redirect_uri(mut self, redirect_uri: impl Into<String>) -> Self {
            self.client.redirect_uri = Some(redirect_uri.into());
            self
        }

        /// When to refresh and how to back off.
        pub fn refresh_policy(mut self, policy: $crate::RefreshPolicy) -> Self {
            self.client.policy = policy;
            self
        }

        /// How this client authenticates at the token endpoint, instead of the way its
        /// provider names (see [`Provider::client_auth`](crate::Provider::client_auth)):
        /// for one client registered differently from the others, such as a public
        /// client among confidential ones. Building the registry refuses
        /// [`ClientAuth::Basic`](crate::ClientAuth::Basic) and
        /// [`ClientAuth::RequestBody`](crate::ClientAuth::RequestBody) without a secret.
        pub fn client_auth(mut self, client_auth: $crate::ClientAuth) -> Self {
            self.client.set_client_auth(client_auth);
            self
        }

        /// The private key that signs this client's JWT assertions, for a provider (or
        /// a [`client_auth`](Self::client_auth)) of
        /// [`ClientAuth::PrivateKeyJwt`](crate::ClientAuth::PrivateKeyJwt): its public
        /// half is what the client registered at the authorization server. Assertions
        /// carry the key's [`key_id`](crate::jose::SigningKey::key_id) as `kid` when it
        /// has one. Building the registry refuses `PrivateKeyJwt` without a key.
        /// Feature `jose`.
        #[cfg(feature = "jose")]
        #[cfg_attr(docsrs, doc(cfg(feature = "jose")))]
        pub fn client_assertion_key(mut self, key: $crate::jose::SigningKey) -> Self {
            self.client.assertion_key = Some(key);
            self
        }

        /// Where these tokens are kept between restarts, instead of the registry's
        /// [store](crate::CredentialRegistryBuilder::store): a store per provider, a
        /// database table per tenant. Pass an `Arc` of a store to share it.
        pub fn store(mut self, store: impl $crate::store::TokenStore) -> Self {
            self.client.store = Some($crate::store::StoreHandle::new(store));
            self
        }

        /// Binds this client's tokens to `key` (DPoP, RFC 9449): token requests and API
        /// requests carry proofs of it, and the token is sent as `Authorization: DPoP`.
        /// See [`dpop`](crate::dpop). The provider must place tokens in the
        /// `Authorization` header (the default).
        #[cfg(feature = "jose")]
        #[cfg_attr(docsrs, doc(cfg(feature = "jose")))]
        pub fn dpop(mut self, key: $crate::dpop::DpopKey) -> Self {
            self.client.dpop = Some(key);
            self
        }

        /// The provider.
        pub fn provider(&self) -> &$crate::Provider {
            &self.client.provider
        }

        /// The client id.
        pub fn client_id(&self) -> &str {
            &self.client.client_id
        }

        /// The scopes requested: those set with [`scopes`](Self::scopes), or else the
        /// provider's defaults, sorted and without duplicates.
        pub fn requested_scopes(&self) -> Vec<String> {
            self.client.requested_scopes()
        }

        /// The redirect URI set with [`redirect_uri`](Self::redirect_uri), if any.
        pub fn redirect_uri_ref(&self) -> Option<&str> {
            self.client.redirect_uri.as_deref()
        }
    };
}

pub(crate) use client_settings;
