//! Where a credential's tokens come from, and how they are installed.
//!
//! A token request presents what the credential holds (its grant run again, a refresh
//! token, or an authorization code taken once). A store, when there is one, is read
//! first: it may hold a live token or a newer refresh token, written before a restart or
//! by another process. What the provider returns is saved before anyone uses it. The
//! outcome, tokens or a failure, is then applied to the slot under its lock: a new token
//! replaces the current one, a failure is backed off from and never replaces a token
//! that is still valid.

use std::sync::{atomic::Ordering, Arc};

use tokio::time::Instant;

use super::{
    token::{attachment, start_expiry_timer, CachedToken},
    CredentialState, Outcome, Slot,
};
use crate::{
    error::{Error, NotAuthorized, ReauthorizationRequired},
    grant::{GrantInput, PendingCode},
    provider::Grant,
    secret::{Fingerprint, RefreshToken},
    store::{wall_clock_now, StoredTokens},
    token::TokenSet,
};

impl CredentialState {
    /// What the next token request presents; `None` when only a new authorization helps.
    pub(super) fn next_input(&self, slot: &mut Slot) -> Option<GrantInput> {
        if matches!(self.config.credential.grant, Grant::ClientCredentials) {
            // The grant is simply run again; a refresh token the server sent is not needed.
            return Some(GrantInput::ClientCredentials);
        }
        if let Some(refresh_token) = &slot.refresh_token {
            return Some(GrantInput::Refresh(refresh_token.clone()));
        }
        // A code is single-use: it is taken now, and given back only if the exchange
        // never reached the server.
        slot.code.take().map(GrantInput::Code)
    }

    /// Obtains tokens: from the store when it holds live ones, else from the provider,
    /// persisting what the provider returns before anyone uses it.
    pub(super) async fn obtain(&self, mut input: Option<GrantInput>) -> Attempt {
        if let Some(store) = &self.store {
            let fresh_login = matches!(input, Some(GrantInput::Code(_)));
            let first_read = !std::mem::replace(&mut self.lock().consulted_store, true);
            if !fresh_login && (first_read || input.is_none()) {
                match store.load(&self.credential_key).await {
                    Err(err) => return Attempt::failed(Error::Store(err)),
                    Ok(Some(stored)) => {
                        let dead = self.lock().dead_refresh;
                        let refresh = stored
                            .refresh_token
                            .clone()
                            .filter(|rt| Some(rt.fingerprint()) != dead);
                        let at_least = std::time::Duration::from_secs(1);
                        if let Some(mut tokens) = stored.live_tokens(
                            Instant::now(),
                            wall_clock_now(),
                            at_least,
                            self.config.rules.lifetimes.max,
                        ) {
                            tracing::debug!("a live token was restored from the store");
                            tokens.set_refresh_token(refresh);
                            return Attempt::ok(tokens);
                        }
                        if let (Some(rt), false) = (refresh, self.runs_client_credentials()) {
                            input = Some(GrantInput::Refresh(rt));
                        }
                    }
                    Ok(None) => {}
                }
            }
        }
        let Some(mut input) = input else {
            let provider = self.config.provider_name().clone();
            return Attempt::failed(match self.for_user {
                true => Error::NotAuthorized(NotAuthorized {
                    provider,
                    subject: self.credential_key.subject().map(Into::into),
                }),
                // Never fall back to another grant: without a refresh token or a code,
                // only a new authorization helps.
                false => Error::ReauthorizationRequired(ReauthorizationRequired {
                    provider,
                    grant: None,
                    cause: None,
                }),
            });
        };
        self.stats.count_request(&input);
        let mut result = self.config.fetch(&self.transport, &input).await;
        if let (Err(Error::ReauthorizationRequired(_)), GrantInput::Refresh(used), Some(store)) =
            (&result, &input, &self.store)
        {
            // Another process sharing the store may have rotated the refresh token: read
            // the store once more before giving up.
            if let Ok(Some(stored)) = store.load(&self.credential_key).await {
                if let Some(newer) = stored.refresh_token.filter(|rt| rt != used) {
                    tracing::info!("the refresh token was refused; trying the one in the store");
                    input = GrantInput::Refresh(newer);
                    self.stats.count_request(&input);
                    result = self.config.fetch(&self.transport, &input).await;
                }
            }
        }
        match result {
            Ok(tokens) => match &self.store {
                Some(store) => {
                    let stored = StoredTokens::of(&tokens, Instant::now(), wall_clock_now());
                    match store.save(&self.credential_key, &stored).await {
                        Ok(()) => Attempt::ok(tokens),
                        // The access token is not handed out: it would live only in
                        // memory. A rotated refresh token is kept for the next attempt,
                        // as the one before it is dead.
                        Err(err) => Attempt {
                            result: Err(Error::Store(err)),
                            keep_refresh: tokens.refresh_token().cloned(),
                            dead_refresh: None,
                        },
                    }
                }
                None => Attempt::ok(tokens),
            },
            Err(err @ Error::ReauthorizationRequired(_)) => Attempt {
                result: Err(err),
                keep_refresh: None,
                dead_refresh: match &input {
                    GrantInput::Refresh(used) => Some(used.fingerprint()),
                    _ => None,
                },
            },
            Err(err) => Attempt::failed(err),
        }
    }

    fn runs_client_credentials(&self) -> bool {
        matches!(self.config.credential.grant, Grant::ClientCredentials)
    }

    /// Installs a new token, or records a failure, and ends the in-flight request.
    pub(super) fn complete(self: &Arc<Self>, attempt: Attempt, code: Option<PendingCode>) -> Outcome {
        let mut slot = self.lock();
        slot.inflight = None;
        if let (Err(Error::Unreachable(_) | Error::TimedOut(_)), Some(code)) = (&attempt.result, code) {
            // The exchange may never have reached the server: the code may still be good.
            slot.code.get_or_insert(code);
        }
        if let Some(refresh_token) = attempt.keep_refresh {
            slot.refresh_token = Some(refresh_token);
        }
        if let Some(dead) = attempt.dead_refresh {
            slot.dead_refresh = Some(dead);
            slot.refresh_token = None;
        }
        let installed = attempt.result.and_then(|tokens| self.install(&mut slot, tokens));
        match &installed {
            Ok(token) => {
                tracing::info!(
                    generation = token.generation,
                    fingerprint = %token.tokens.access_token().fingerprint(),
                    expires_in_ms = token.tokens.expires_at().saturating_duration_since(Instant::now()).as_millis() as u64,
                    "token installed"
                );
                slot.forget_failures();
            }
            Err(err) => slot.back_off(err, &self.config.credential.policy),
        }
        installed
    }

    /// Makes `tokens` the current token, under a new generation and with a new expiry
    /// timer (the old token's timer is aborted).
    fn install(&self, slot: &mut Slot, tokens: TokenSet) -> Outcome {
        let value = attachment(&self.config.credential.provider.placement, &tokens).ok_or_else(|| {
            Error::Malformed(crate::error::MalformedResponse {
                provider: self.config.provider_name().clone(),
                status: http::StatusCode::OK,
                content_type: None,
                reason: "the access token cannot be carried in a header".into(),
            })
        })?;
        let now = Instant::now();
        let expires_at = tokens.expires_at();
        let refresh_at = self.config.credential.policy.refresh_point(now, expires_at);
        slot.refresh_token = tokens.refresh_token().cloned();
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let token = Arc::new(CachedToken::new(generation, value, tokens, refresh_at, now));
        if let Some(timer) = slot.timer.take() {
            timer.abort();
        }
        slot.timer = Some(start_expiry_timer(&token));
        self.current.store(Some(Arc::clone(&token)));
        Ok(token)
    }
}

/// The result of one attempt at obtaining tokens, and what it teaches the slot.
pub(super) struct Attempt {
    result: Result<TokenSet, Error>,
    /// A refresh token to hold even though the attempt failed (a rotated one that could
    /// not be saved).
    keep_refresh: Option<RefreshToken>,
    /// A refresh token the provider refused.
    dead_refresh: Option<Fingerprint>,
}

impl Attempt {
    fn ok(tokens: TokenSet) -> Self {
        Self {
            result: Ok(tokens),
            keep_refresh: None,
            dead_refresh: None,
        }
    }

    pub(super) fn failed(err: Error) -> Self {
        Self {
            result: Err(err),
            keep_refresh: None,
            dead_refresh: None,
        }
    }
}
