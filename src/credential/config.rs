//! [`Credential`]: the configuration of one credential, a provider plus a client and the
//! grant that yields its tokens.

use std::fmt;

use super::{
    client::{client_settings, ClientSettings},
    key::CredentialKey,
};
use crate::{
    grant::Grant,
    provider::{ClientAuth, Provider},
    secret::{AuthorizationCode, ClientSecret, RefreshToken},
};

/// A provider, a client registered with it, and the grant that yields tokens.
///
/// One [`CredentialRegistry`](crate::CredentialRegistry) holds any number of them; for a
/// provider's users, a [`UserCredentialTemplate`](crate::UserCredentialTemplate) builds one
/// per user. The two share their settings ([`scopes`](Self::scopes),
/// [`refresh_policy`](Self::refresh_policy), [`store`](Self::store), ...).
///
/// ```
/// use tower_oauth2::{Credential, MemoryStore, Provider};
///
/// let provider = Provider::standard("https://auth.example.com/token").api("https://api.example.com");
/// let credential = Credential::client_credentials(provider, "app", "secret")
///     .scopes(["read"])
///     .store(MemoryStore::new());
/// # let _ = credential;
/// ```
#[derive(Clone)]
pub struct Credential {
    pub(crate) client: ClientSettings,
    pub(crate) grant: Grant,
    pub(crate) subject: Option<String>,
}

impl Credential {
    fn with_grant(
        provider: Provider,
        client_id: String,
        client_secret: Option<ClientSecret>,
        grant: Grant,
    ) -> Self {
        Self {
            client: ClientSettings::new(provider, client_id, client_secret),
            grant,
            subject: None,
        }
    }

    /// A confidential client using the `client_credentials` grant.
    pub fn client_credentials(
        provider: Provider,
        client_id: impl Into<String>,
        client_secret: impl Into<ClientSecret>,
    ) -> Self {
        Self::with_grant(
            provider,
            client_id.into(),
            Some(client_secret.into()),
            Grant::ClientCredentials,
        )
    }

    /// A public client (RFC 6749 §2.1) using the `client_credentials` grant: token
    /// requests carry its `client_id` as a parameter and no secret, whatever client
    /// authentication the provider names ([`ClientAuth::PublicClient`] for this
    /// credential).
    ///
    /// RFC 6749 §4.4 reserves the grant for confidential clients; use this for servers
    /// that accept it anyway (development servers, device fleets behind mutual TLS).
    ///
    /// ```
    /// use tower_oauth2::{Credential, Provider};
    ///
    /// let provider = Provider::standard("https://auth.example.com/token").api("https://api.example.com");
    /// let credential = Credential::client_credentials_public(provider, "device-17");
    /// # let _ = credential;
    /// ```
    pub fn client_credentials_public(provider: Provider, client_id: impl Into<String>) -> Self {
        Self::with_grant(provider, client_id.into(), None, Grant::ClientCredentials)
            .client_auth(ClientAuth::PublicClient)
    }

    /// A confidential client that proves itself with a JWT signed by `key`
    /// (`private_key_jwt`, RFC 7523 §2.2) and uses the `client_credentials` grant:
    /// [`ClientAuth::PrivateKeyJwt`] for this credential, whatever the provider names,
    /// and [`client_assertion_key`](Self::client_assertion_key) `key`. No secret is
    /// involved. Feature `jose`.
    ///
    /// ```
    /// use tower_oauth2::{jose::{SigningAlgorithm, SigningKey}, Credential, Provider};
    ///
    /// let key = SigningKey::generate(SigningAlgorithm::Es256)?.with_key_id("2026-12");
    /// // Register `key.public_jwk()` with the authorization server for "my-app".
    /// let provider = Provider::standard("https://auth.example.com/token").api("https://api.example.com");
    /// let credential = Credential::client_credentials_with_key(provider, "my-app", key);
    /// # let _ = credential;
    /// # Ok::<(), tower_oauth2::jose::KeyError>(())
    /// ```
    #[cfg(feature = "jose")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jose")))]
    pub fn client_credentials_with_key(
        provider: Provider,
        client_id: impl Into<String>,
        key: crate::jose::SigningKey,
    ) -> Self {
        Self::with_grant(provider, client_id.into(), None, Grant::ClientCredentials)
            .client_auth(ClientAuth::PrivateKeyJwt)
            .client_assertion_key(key)
    }

    /// A client holding a refresh token. `client_secret` is `None` for public clients
    /// (use [`ClientAuth::PublicClient`] or [`ClientAuth::None`] on the provider then).
    pub fn refresh_token(
        provider: Provider,
        client_id: impl Into<String>,
        client_secret: Option<ClientSecret>,
        refresh_token: impl Into<RefreshToken>,
    ) -> Self {
        Self::with_grant(
            provider,
            client_id.into(),
            client_secret,
            Grant::RefreshToken(refresh_token.into()),
        )
    }

    /// A client that has just received an authorization `code` for `redirect_uri`.
    ///
    /// The first token request exchanges the code; later ones use the refresh token
    /// that came with it. A code is single-use: if the exchange is refused, requests
    /// fail with [`Error::ReauthorizationRequired`](crate::Error::ReauthorizationRequired).
    pub fn authorization_code(
        provider: Provider,
        client_id: impl Into<String>,
        client_secret: Option<ClientSecret>,
        code: impl Into<AuthorizationCode>,
        redirect_uri: impl Into<String>,
    ) -> Self {
        let redirect_uri = redirect_uri.into();
        let mut credential = Self::with_grant(
            provider,
            client_id.into(),
            client_secret,
            Grant::AuthorizationCode {
                code: code.into(),
                redirect_uri: redirect_uri.clone(),
                pkce_verifier: None,
            },
        );
        credential.client.redirect_uri = Some(redirect_uri);
        credential
    }

    client_settings!();

    /// The user on whose behalf this credential acts. Part of the credential's key, so
    /// two users' tokens are never confused.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// The key that identifies this credential's tokens: provider, client, grant,
    /// scopes and subject. Two credentials with equal keys would share tokens, so a
    /// registry refuses them.
    pub fn key(&self) -> CredentialKey {
        CredentialKey::new(
            self.client.provider.name.clone(),
            self.client.client_id.as_str().into(),
            self.grant.kind(),
            self.requested_scopes().into(),
            self.subject.as_deref().map(Into::into),
        )
    }
}

// Written by hand so that the secret and the refresh token can never be printed.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("client", &self.client)
            .field("grant", &self.grant)
            .field("subject", &self.subject)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let cred = Credential::refresh_token(
            Provider::standard("https://a.example/token"),
            "id",
            Some(ClientSecret::new("top-secret")),
            "refresh-secret",
        );
        let printed = format!("{cred:?}");
        assert!(
            !printed.contains("top-secret") && !printed.contains("refresh-secret"),
            "{printed}"
        );
    }
}
