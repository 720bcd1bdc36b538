//! [`UserCredentialTemplate`]: how the application acts for its users at one provider,
//! the configuration each user's credential is built from.

use std::time::Duration;

use super::{
    client::{client_settings, ClientSettings},
    config::Credential,
    key::CredentialKey,
};
use crate::{grant::Grant, provider::Provider, secret::ClientSecret};

/// How the application acts for its users at one provider: its client there, the scopes
/// it asks for and when to refresh. Each user who logs in gets a credential of their own
/// built from this, keyed by provider, client, scopes and their subject.
///
/// # Users in memory
///
/// A user's credential is created in memory the first time a request or a login names
/// them, starting from what the [store](crate::CredentialRegistryBuilder::store) holds
/// for them. It stays while it is used, and is evicted when it has not been used for
/// [`idle_after`](Self::idle_after) (10 minutes by default), or when more than
/// [`max_users`](Self::max_users) users (10,000 by default) of this provider are in
/// memory (those used least recently and least often go first). Nothing is lost by it:
/// the user's tokens are in the store, and their next request reads them back (the
/// stored access token if it is still live, else one refresh). A user whose credential
/// is in use (a request or a token request of theirs in flight, a failed one backing
/// off, a login or a logout) is never evicted, so that two refreshes of one user never
/// run at once: with rotating refresh tokens the second would present a token the first
/// just spent, and the provider would revoke the whole grant. The counts of evicted users
/// stay in [`CredentialRegistry::stats`](crate::CredentialRegistry::stats). A logout
/// keeps the user's (now empty) credential until it is evicted like any other.
///
/// Looking a user up takes no lock that other threads' lookups write (the table's locks
/// are sharded by user and, within a shard, by thread) and reads no clock. A user who is
/// not authorized is looked up in the store again on their next request, spaced by the
/// refresh policy's backoff.
#[derive(Debug, Clone)]
pub struct UserCredentialTemplate {
    pub(crate) client: ClientSettings,
    pub(crate) idle_after: Duration,
    pub(crate) max_users: usize,
}

/// How long a user's credential stays in memory unused, unless configured: longer than
/// the pauses between one user's requests while they work, shorter than the usual hour
/// of an access token, so that a user who comes back later usually finds their stored
/// access token still live and costs one store read, not a token request.
const DEFAULT_IDLE_AFTER: Duration = Duration::from_secs(10 * 60);

/// How many users of one provider stay in memory, unless configured: a few kilobytes
/// each, so tens of megabytes at most, however many subjects requests name (unknown ones
/// included).
const DEFAULT_MAX_USERS: usize = 10_000;

impl UserCredentialTemplate {
    /// Users' tokens from `provider`, for the client `client_id` (`client_secret` is
    /// `None` for providers without client authentication).
    pub fn new(
        provider: Provider,
        client_id: impl Into<String>,
        client_secret: Option<ClientSecret>,
    ) -> Self {
        Self {
            client: ClientSettings::new(provider, client_id.into(), client_secret),
            idle_after: DEFAULT_IDLE_AFTER,
            max_users: DEFAULT_MAX_USERS,
        }
    }

    client_settings!();

    /// How long a user's credential stays in memory without a request or a login
    /// (default: 10 minutes). It is evicted between this long and one and a half times
    /// this long after its last use; see [Users in memory](Self#users-in-memory).
    /// [`CredentialRegistryBuilder::build`](crate::CredentialRegistryBuilder::build)
    /// refuses zero.
    pub fn idle_after(mut self, idle_after: Duration) -> Self {
        self.idle_after = idle_after;
        self
    }

    /// How many of this provider's users stay in memory at most (default: 10,000),
    /// rounded down to a multiple of the table's shards (8, or fewer below 256 users) and
    /// kept per shard, so eviction may start a little before the whole count is reached.
    /// Users with a request or a token request in flight are never evicted, and may
    /// exceed it for as long as they are.
    /// [`CredentialRegistryBuilder::build`](crate::CredentialRegistryBuilder::build)
    /// refuses zero.
    pub fn max_users(mut self, max_users: usize) -> Self {
        self.max_users = max_users;
        self
    }

    /// The time-to-idle set with [`idle_after`](Self::idle_after).
    pub fn idle_after_ref(&self) -> Duration {
        self.idle_after
    }

    /// The bound set with [`max_users`](Self::max_users).
    pub fn max_users_ref(&self) -> usize {
        self.max_users
    }

    /// The key under which `subject`'s tokens are kept.
    pub fn key_for(&self, subject: &str) -> CredentialKey {
        self.credential_for(subject).key()
    }

    /// Starts an authorization for this client, with these scopes; see
    /// [`Provider::authorization`].
    pub fn authorization(&self, redirect_uri: impl Into<String>) -> crate::authorize::AuthorizationRequest {
        let request = self
            .client
            .provider
            .authorization(self.client.client_id.clone(), redirect_uri);
        match &self.client.scopes {
            Some(scopes) => request.scopes(scopes.clone()),
            None => request,
        }
    }

    /// `subject`'s credential. Its code is only a placeholder: a user's state starts from
    /// the store, and a login brings the real code, never this credential's grant.
    pub(crate) fn credential_for(&self, subject: &str) -> Credential {
        let redirect_uri = self.client.redirect_uri.clone().unwrap_or_default();
        let mut client = self.client.clone();
        client.redirect_uri = Some(redirect_uri.clone());
        Credential {
            client,
            grant: Grant::AuthorizationCode {
                code: "".into(),
                redirect_uri,
                pkce_verifier: None,
            },
            subject: Some(subject.to_owned()),
        }
    }
}
