//! One credential: what configures it, and its whole life at run time (its current
//! token, the one token request at a time that replaces it, the store around that
//! request, revocation, and a user's login).
//!
//! # Configuration
//!
//! - [`config`]: [`Credential`], a provider, a client and a grant;
//! - [`user_template`]: [`UserCredentialTemplate`], what each of a provider's users'
//!   credentials is built from;
//! - [`client`]: the settings those two share, and the one macro that gives both their
//!   setters;
//! - [`key`]: [`CredentialKey`], what identifies a credential's tokens.
//!
//! The rest of the module is the credential at run time, [`CredentialState`].
//!
//! # How it works
//!
//! The current token lives in an [`ArcSwapOption`]. Readers load it without a lock; the
//! `Arc`'s identity, numbered by [`CachedToken::generation`], is the token's generation.
//!
//! Each token carries its own state, `FRESH`, then `STALE` from its refresh point, then
//! `EXPIRED` at its expiry (or when an API answer declared it dead). A timer task flips
//! those states at the right instants, so the request path never reads a clock: it loads
//! one atomic byte that changes twice in a token's life.
//!
//! Everything that is not a plain read goes through [`CredentialState::acquire`] or
//! [`CredentialState::refresh_early`], under a mutex that is never held across an
//! `.await`. Both read the state under the lock, hand what they saw to a pure decision,
//! and act on it. At most one token request per credential is in flight: it is spawned
//! as its own task (so it outlives any caller that gives up) and bounded by a timeout;
//! every caller that needs it waits on the same shared outcome. A failed request never
//! replaces a token that is still valid, and further attempts are spaced by a jittered,
//! capped exponential backoff (see [`RefreshPolicy`](crate::RefreshPolicy)).
//!
//! # Where each part lives
//!
//! - [`cached_token`]: the token as held, its state byte, the expiry timer that moves
//!   it, and the value attached to requests;
//! - [`decide`]: what `acquire` and `refresh_early` do with what they saw, as pure
//!   functions of plain values, with table tests;
//! - [`flight`]: single flight: `acquire`, `refresh_early`, the token request's task and
//!   the guard that ends it however the task ends, and the futures callers wait on;
//! - [`backoff`]: spacing requests after failures, and the hold on dead-token answers
//!   for a token refused as soon as it was fetched;
//! - [`obtain`]: what a token request presents, the store reads and writes around the
//!   provider's answer, and installing the result;
//! - [`revoke`] and [`login`]: forgetting a credential's tokens, and starting over from
//!   a user's new authorization.
//!
//! The cold-path state all of them share is the [`Slot`] behind the mutex, here.

mod backoff;
mod cached_token;
mod client;
mod config;
mod decide;
mod flight;
mod key;
mod login;
mod obtain;
mod revoke;
#[cfg(test)]
mod testing;
mod user_template;

use std::{
    fmt,
    sync::{atomic::AtomicU64, Arc, Mutex, MutexGuard},
};

use arc_swap::ArcSwapOption;
use tokio::{task::AbortHandle, time::Instant};

use self::flight::PendingOutcome;
pub(crate) use self::{cached_token::CachedToken, flight::Acquire};
pub use self::{
    config::Credential, key::CredentialKey, revoke::Revoked, user_template::UserCredentialTemplate,
};
// The parsers' invariants hold accepted tokens to what a request can carry.
#[cfg(any(test, fuzzing))]
pub(crate) use self::cached_token::attachment;
use crate::{
    error::Error,
    secret::{Fingerprint, RefreshToken},
    stats::Stats,
    store::TokenStore,
    token_endpoint::{CheckedCredential, PendingCode},
    transport::TokenTransport,
};

/// What a token request ends with, as every caller waiting on it receives it.
type Outcome = Result<Arc<CachedToken>, Error>;

/// The cold-path state, behind the mutex.
#[derive(Default)]
struct Slot {
    inflight: Option<PendingOutcome>,
    failures: u32,
    not_before: Option<Instant>,
    last_error: Option<Error>,
    refresh_token: Option<RefreshToken>,
    /// An authorization code not exchanged yet, with its redirect URI.
    code: Option<PendingCode>,
    timer: Option<AbortHandle>,
    /// A token refused by the API right after it was fetched for a retry: until the
    /// instant, dead-token answers for it do not trigger refreshes.
    refused_when_fresh: Option<(u64, Instant)>,
    /// Whether the store was read yet: it may hold a newer refresh token (rotated before
    /// a restart) or a live access token.
    consulted_store: bool,
    /// A refresh token the provider refused: never sent again, even if a store has it.
    dead_refresh: Option<Fingerprint>,
}

/// Everything about one credential.
pub(crate) struct CredentialState {
    pub(crate) config: CheckedCredential,
    /// The current token. Behind its own `Arc` so per-clone `arc_swap::Cache`s can hold it.
    pub(crate) current: Arc<ArcSwapOption<CachedToken>>,
    pub(crate) stats: Stats,
    credential_key: CredentialKey,
    key: String,
    transport: TokenTransport,
    store: Option<Arc<dyn TokenStore>>,
    /// A user's credential, created on demand: without a grant it is "not authorized"
    /// rather than "re-authorization required".
    for_user: bool,
    generations: AtomicU64,
    slot: Mutex<Slot>,
    /// When this user was last used, in the users' table's ticks (see `LiveUsers::sweep`
    /// in `registry/users.rs`, which alone reads and writes it).
    pub(crate) last_used: AtomicU64,
}

impl CredentialState {
    /// A credential whose tokens are kept in `store`. A user's credential (`for_user`)
    /// starts from what the store holds, never from its grant's code.
    pub(crate) fn with_store(
        config: CheckedCredential,
        transport: TokenTransport,
        store: Option<Arc<dyn TokenStore>>,
        for_user: bool,
    ) -> Self {
        let (refresh_token, code) = if for_user {
            (None, None)
        } else {
            config.initial_input()
        };
        let credential_key = config.credential.key();
        Self {
            key: credential_key.to_string(),
            credential_key,
            config,
            current: Arc::new(ArcSwapOption::empty()),
            stats: Stats::default(),
            transport,
            generations: AtomicU64::new(0),
            store,
            for_user,
            slot: Mutex::new(Slot {
                refresh_token,
                code,
                ..Slot::default()
            }),
            last_used: AtomicU64::new(0),
        }
    }

    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// This credential's counters, and how long until its token's refresh point.
    pub(crate) fn snapshot(&self) -> crate::stats::CredentialStats {
        let until_refresh = self
            .current
            .load()
            .as_ref()
            .filter(|token| token.is_usable())
            .map(|token| token.refresh_at.saturating_duration_since(Instant::now()));
        self.stats
            .snapshot(&self.key, self.config.provider_name(), until_refresh)
    }

    pub(crate) fn credential_key(&self) -> &CredentialKey {
        &self.credential_key
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        // The slot is only ever left in a consistent state, so a poisoned lock (a panic
        // elsewhere while it was held) can be used as it is.
        self.slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forgets the current token; the next request fetches a new one.
    pub(crate) fn invalidate(&self) {
        if let Some(token) = self.current.load_full() {
            token.expire();
        }
    }
}

impl Drop for CredentialState {
    fn drop(&mut self) {
        // Nobody can read the token any more: its expiry timer has nothing left to do.
        if let Some(timer) = self.slot.get_mut().ok().and_then(|slot| slot.timer.take()) {
            timer.abort();
        }
    }
}

impl fmt::Debug for CredentialState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialState")
            .field("credential", &self.key)
            .field("current", &self.current.load().as_ref().map(|t| t.generation))
            .finish_non_exhaustive()
    }
}
