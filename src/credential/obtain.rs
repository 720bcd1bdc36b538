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
    cached_token::{attachment, start_expiry_timer, CachedToken},
    CredentialState, Outcome, Slot,
};
use crate::{
    error::{Error, NotAuthorized, ReauthorizationRequired},
    provider::RefreshTokens,
    secret::{Fingerprint, RefreshToken},
    store::{
        wall_clock_now, Lease, LeaseSettings, RefreshCoordination, StoreError, StoreErrorKind,
        StoreOperation, StoredTokens, TokenStore,
    },
    token::TokenSet,
    token_endpoint::{GrantInput, PendingCode},
    Grant,
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
    /// persisting what the provider returns before anyone uses it. Through the store's
    /// refresh lease when the store is shared by several processes (a login's code is
    /// exchanged by the process that received it, without one).
    pub(super) async fn obtain(&self, input: Option<GrantInput>) -> Attempt {
        match self.coordination(&input) {
            Some(coordination) => self.obtain_coordinated(coordination, input).await,
            None => self.obtain_alone(input).await,
        }
    }

    /// The refresh lease that obtaining tokens for `input` goes through, if any.
    pub(super) fn coordination(&self, input: &Option<GrantInput>) -> Option<&dyn RefreshCoordination> {
        match input {
            Some(GrantInput::Code(_)) => None,
            _ => self.store.as_deref().and_then(|store| store.coordination()),
        }
    }

    /// [`obtain`](Self::obtain) for a process that refreshes on its own.
    async fn obtain_alone(&self, mut input: Option<GrantInput>) -> Attempt {
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
            return Attempt::failed(self.nothing_to_present());
        };
        self.stats.count_request(input.grant_type());
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
                    self.stats.count_request(input.grant_type());
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

    /// The error of a credential with nothing to present to the token endpoint.
    fn nothing_to_present(&self) -> Error {
        let provider = self.config.provider_name().clone();
        match self.for_user {
            true => Error::NotAuthorized(NotAuthorized {
                provider,
                subject: self.credential_key.subject().map(Into::into),
            }),
            // Never fall back to another grant: without a refresh token or a code, only
            // a new authorization helps.
            false => Error::ReauthorizationRequired(ReauthorizationRequired {
                provider,
                grant: None,
                cause: None,
            }),
        }
    }

    // ===== refreshing with other processes =====

    /// [`obtain`](Self::obtain) through the refresh lease of a store shared by several
    /// processes (see [`RefreshCoordination`]): tokens another process wrote are used
    /// as they are; otherwise one process at a time refreshes, with the newest refresh
    /// token, and writes only while no newer lease exists. Waits for other holders at
    /// most [`LeaseSettings::max_wait`](crate::store::LeaseSettings::max_wait) in all.
    async fn obtain_coordinated(
        &self,
        coordination: &dyn RefreshCoordination,
        mut input: Option<GrantInput>,
    ) -> Attempt {
        let Some(store) = self.store.as_deref() else {
            return self.obtain_alone(input).await;
        };
        let key = &self.credential_key;
        let settings = coordination.settings();
        let deadline = Instant::now() + settings.max_wait;
        // The token this process holds: the store's is newer only if it is another.
        let held = self.held_token();
        loop {
            match store.load(key).await {
                Err(err) => return self.uncoordinated(err, input, &settings).await,
                Ok(stored) => match self.read_stored(stored, held) {
                    FromStore::Tokens(tokens) => {
                        tracing::debug!("another process refreshed; using the tokens it stored");
                        return Attempt::ok(tokens);
                    }
                    FromStore::Refresh(newest) => input = Some(GrantInput::Refresh(newest)),
                    FromStore::Nothing => {}
                },
            }
            match coordination.try_lease(key).await {
                Err(err) => return self.uncoordinated(err, input, &settings).await,
                Ok(Some(lease)) => {
                    let attempt = self
                        .refresh_leased(store, coordination, &lease, input, held)
                        .await;
                    if let Err(err) = coordination.release(key, &lease).await {
                        // It expires by itself; the next holder waits that long at most.
                        tracing::debug!(error = %err, "could not release the refresh lease");
                    }
                    return attempt;
                }
                Ok(None) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        let err =
                            StoreError::keyed(StoreOperation::Lease, StoreErrorKind::LeaseWaitExceeded, key)
                                .with_detail(format!(
                                    "no new tokens within {:?} while another process held the refresh lease",
                                    settings.max_wait
                                ));
                        return Attempt::failed(Error::Store(err));
                    }
                    if let Err(err) = coordination.changed(key, left).await {
                        return self.uncoordinated(err, input, &settings).await;
                    }
                }
            }
        }
    }

    /// Holding `lease`: reads the store once more (the previous holder may have just
    /// finished), refreshes with the newest refresh token, and saves only while no newer
    /// lease was granted.
    async fn refresh_leased(
        &self,
        store: &dyn TokenStore,
        coordination: &dyn RefreshCoordination,
        lease: &Lease,
        mut input: Option<GrantInput>,
        held: Option<Fingerprint>,
    ) -> Attempt {
        let key = &self.credential_key;
        match store.load(key).await {
            Err(err) => return Attempt::failed(Error::Store(err)),
            Ok(stored) => match self.read_stored(stored, held) {
                FromStore::Tokens(tokens) => return Attempt::ok(tokens),
                FromStore::Refresh(newest) => input = Some(GrantInput::Refresh(newest)),
                FromStore::Nothing => {}
            },
        }
        let Some(input) = input else {
            return Attempt::failed(self.nothing_to_present());
        };
        self.stats.count_request(input.grant_type());
        match self.config.fetch(&self.transport, &input).await {
            Ok(tokens) => {
                let stored = StoredTokens::of(&tokens, Instant::now(), wall_clock_now());
                match coordination.save_fenced(key, &stored, lease).await {
                    Ok(true) => Attempt::ok(tokens),
                    Ok(false) => {
                        // This holder outlived its lease and another was granted: the
                        // store keeps the newer holder's tokens. These are valid still,
                        // and serve this process until its next refresh, which starts
                        // from the store.
                        tracing::warn!(
                            fence = lease.fence,
                            "the refresh lease was lost before the tokens were saved; they are used here only"
                        );
                        Attempt::ok(tokens)
                    }
                    Err(err) => Attempt {
                        result: Err(Error::Store(err)),
                        keep_refresh: tokens.refresh_token().cloned(),
                        dead_refresh: None,
                    },
                }
            }
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

    /// The coordination failed (the shared store is down or slow). A credential whose
    /// refresh cannot harm other processes (client credentials, refresh tokens that do
    /// not rotate) refreshes on its own when the settings allow it, without the store;
    /// any other gets the store's error.
    async fn uncoordinated(
        &self,
        err: StoreError,
        input: Option<GrantInput>,
        settings: &LeaseSettings,
    ) -> Attempt {
        let harmless = self.runs_client_credentials()
            || self.config.credential.client.provider.refresh_tokens != RefreshTokens::Rotated;
        let Some(input) = input.filter(|_| settings.local_fallback && harmless) else {
            return Attempt::failed(Error::Store(err));
        };
        tracing::warn!(error = %err, "the shared store failed; refreshing without it");
        self.stats.count_request(input.grant_type());
        match self.config.fetch(&self.transport, &input).await {
            Ok(tokens) => Attempt::ok(tokens),
            Err(err) => Attempt::failed(err),
        }
    }

    /// The access token this process holds, by fingerprint.
    fn held_token(&self) -> Option<Fingerprint> {
        self.current
            .load()
            .as_ref()
            .map(|token| token.tokens.access_token().fingerprint())
    }

    /// What a stored record offers: live tokens other than the ones held, or a refresh
    /// token (never one the provider refused), or nothing.
    fn read_stored(&self, stored: Option<StoredTokens>, held: Option<Fingerprint>) -> FromStore {
        let Some(stored) = stored else {
            return FromStore::Nothing;
        };
        let dead = self.lock().dead_refresh;
        let refresh = stored
            .refresh_token
            .clone()
            .filter(|rt| Some(rt.fingerprint()) != dead);
        let live = stored.live_tokens(
            Instant::now(),
            wall_clock_now(),
            std::time::Duration::from_secs(1),
            self.config.rules.lifetimes.max,
        );
        if let Some(mut tokens) = live.filter(|tokens| Some(tokens.access_token().fingerprint()) != held) {
            tokens.set_refresh_token(refresh);
            return FromStore::Tokens(tokens);
        }
        match refresh {
            Some(rt) if !self.runs_client_credentials() => FromStore::Refresh(rt),
            _ => FromStore::Nothing,
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
            Err(err) => slot.back_off(err, &self.config.credential.client.policy),
        }
        installed
    }

    /// Makes `tokens` the current token, under a new generation and with a new expiry
    /// timer (the old token's timer is aborted).
    fn install(&self, slot: &mut Slot, tokens: TokenSet) -> Outcome {
        let value = attachment(
            &self.config.credential.client.provider.placement,
            self.config.rules.dpop,
            &tokens,
        )
        .ok_or_else(|| {
            Error::Malformed(crate::error::MalformedResponse {
                provider: self.config.provider_name().clone(),
                status: http::StatusCode::OK,
                content_type: None,
                reason: "the access token cannot be carried in a header".into(),
            })
        })?;
        let now = Instant::now();
        let expires_at = tokens.expires_at();
        let refresh_at = self
            .config
            .credential
            .client
            .policy
            .refresh_point(now, expires_at);
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

/// What a stored record offers a refresh.
enum FromStore {
    /// Live tokens another process wrote.
    Tokens(TokenSet),
    /// The newest refresh token.
    Refresh(RefreshToken),
    Nothing,
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
