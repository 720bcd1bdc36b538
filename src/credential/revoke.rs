//! Ending a credential: its tokens forgotten here, deleted from the store, and revoked
//! at the provider when it has a revocation endpoint (RFC 7009).
//!
//! A token request in flight is waited for first, so that a token it brings back is
//! revoked too rather than installed after the credential was ended.

use super::CredentialState;
use crate::error::Error;

impl CredentialState {
    /// Forgets every token of this credential and revokes them at the provider, if it
    /// has a revocation endpoint. Waits for a token request in flight to end first, so
    /// that a token it brings back is revoked too.
    pub(crate) async fn revoke(&self) -> Result<Revoked, Error> {
        let (access, refresh, unread) = loop {
            let pending = {
                let mut slot = self.lock();
                match &slot.inflight {
                    Some(pending) => pending.clone(),
                    None => {
                        if let Some(timer) = slot.timer.take() {
                            timer.abort();
                        }
                        slot.code = None;
                        let access = self.current.swap(None);
                        if let Some(token) = &access {
                            token.expire();
                        }
                        let access = access.map(|token| token.tokens.access_token().clone());
                        break (access, slot.refresh_token.take(), !slot.consulted_store);
                    }
                }
            };
            let _ = pending.await;
        };
        // A state that never read the store (a user brought back after an eviction or a
        // restart, and logged out before any request): its tokens are only there.
        let (access, refresh) = match (&self.store, unread) {
            (Some(store), true) => match store.load(&self.credential_key).await.map_err(Error::Store)? {
                Some(stored) => (access.or(stored.access_token), refresh.or(stored.refresh_token)),
                None => (access, refresh),
            },
            _ => (access, refresh),
        };
        if let Some(store) = &self.store {
            store.delete(&self.credential_key).await?;
        }
        let Some(revocation) = &self.config.credential.client.provider.revocation else {
            tracing::info!(provider = %self.config.provider_name(), credential = %self.key, "tokens forgotten; the provider has no revocation endpoint");
            return Ok(Revoked::LocallyOnly);
        };
        let mut revoked = 0;
        // The refresh token first: revoking it usually ends its access tokens too.
        let tokens = refresh
            .as_ref()
            .map(|rt| (rt.secret(), "refresh_token"))
            .into_iter()
            .chain(access.as_ref().map(|token| (token.secret(), "access_token")));
        for (token, hint) in tokens {
            self.config
                .revoke(&self.transport, revocation, token, hint)
                .await?;
            revoked += 1;
        }
        tracing::info!(provider = %self.config.provider_name(), credential = %self.key, revoked, "tokens revoked");
        Ok(Revoked::AtProvider { tokens: revoked })
    }
}

/// What [`CredentialRegistry::revoke`](crate::CredentialRegistry::revoke) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revoked {
    /// The provider was told: `tokens` tokens (access and refresh) were revoked there.
    AtProvider {
        /// How many tokens were revoked (0 when none was held).
        tokens: usize,
    },
    /// The provider has no revocation endpoint: the tokens were only forgotten here.
    LocallyOnly,
}
