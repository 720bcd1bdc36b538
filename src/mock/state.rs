//! Configuration and mutable state shared by every connection.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::client_auth::ClientAuthMethod;
use super::counters::Counters;
use super::faults::FaultQueue;

/// Length of every token, refresh token and authorization code.
const TOKEN_LEN: usize = 40;

/// How long an authorization code can be redeemed (RFC 6749 §4.1.2
/// recommends at most ten minutes).
const CODE_LIFETIME: Duration = Duration::from_secs(600);

/// Expired access tokens are swept once the table reaches this size, then
/// whenever it doubles.
const FIRST_PRUNE_AT: usize = 1024;

/// Locks a mutex, ignoring poisoning: every critical section in this module
/// leaves the data consistent even if a test thread panicked elsewhere.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything the builder decided; immutable once the server runs.
pub(super) struct Config {
    /// Registered clients: id → secret, `None` for public clients.
    pub(super) clients: HashMap<Arc<str>, Option<String>>,
    pub(super) auth_methods: Vec<ClientAuthMethod>,
    pub(super) token_lifetime: Duration,
    pub(super) omit_expires_in: bool,
    pub(super) rotate_refresh_tokens: bool,
    pub(super) refresh_tokens_for_client_credentials: bool,
    pub(super) allowed_scopes: Vec<String>,
}

impl Config {
    /// `expires_in` as announced to clients: whole seconds, at least one.
    pub(super) fn expires_in(&self) -> u64 {
        self.token_lifetime.as_secs().max(1)
    }

    /// The registered client with this id, as its shared id and secret.
    pub(super) fn client(&self, id: &str) -> Option<(&Arc<str>, Option<&str>)> {
        self.clients
            .get_key_value(id)
            .map(|(id, secret)| (id, secret.as_deref()))
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut clients: Vec<_> = self.clients.keys().collect();
        clients.sort();
        f.debug_struct("Config")
            .field("clients", &clients)
            .field("auth_methods", &self.auth_methods)
            .field("token_lifetime", &self.token_lifetime)
            .field("omit_expires_in", &self.omit_expires_in)
            .field("rotate_refresh_tokens", &self.rotate_refresh_tokens)
            .field(
                "refresh_tokens_for_client_credentials",
                &self.refresh_tokens_for_client_credentials,
            )
            .field("allowed_scopes", &self.allowed_scopes)
            .finish()
    }
}

/// The state behind a running server.
#[derive(Debug)]
pub(super) struct State {
    pub(super) config: Config,
    pub(super) counters: Counters,
    pub(super) faults: FaultQueue,
    pub(super) tokens: Mutex<TokenStore>,
    pub(super) token_latency: Latency,
    pub(super) resource_latency: Latency,
}

impl State {
    pub(super) fn new(config: Config) -> Self {
        State {
            config,
            counters: Counters::default(),
            faults: FaultQueue::default(),
            tokens: Mutex::new(TokenStore::default()),
            token_latency: Latency::default(),
            resource_latency: Latency::default(),
        }
    }

    pub(super) fn tokens(&self) -> MutexGuard<'_, TokenStore> {
        lock(&self.tokens)
    }
}

/// An adjustable delay, stored as nanoseconds.
#[derive(Debug, Default)]
pub(super) struct Latency(AtomicU64);

impl Latency {
    pub(super) fn set(&self, delay: Duration) {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.0.store(nanos, Ordering::Relaxed);
    }

    /// Waits for the configured delay, if any.
    pub(super) async fn wait(&self) {
        let nanos = self.0.load(Ordering::Relaxed);
        if nanos > 0 {
            tokio::time::sleep(Duration::from_nanos(nanos)).await;
        }
    }
}

/// A set of scope tokens (RFC 6749 §3.3), kept in the order first given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Scope(Vec<String>);

impl Scope {
    /// Parses a space-delimited scope and checks every token against
    /// `allowed`. An empty string is the empty scope. On failure, returns a
    /// description fit for `error_description`.
    pub(super) fn parse(raw: &str, allowed: &[String]) -> Result<Self, String> {
        let mut tokens: Vec<String> = Vec::new();
        if raw.is_empty() {
            return Ok(Scope(tokens));
        }
        for token in raw.split(' ') {
            if token.is_empty() {
                return Err("scope tokens must be separated by single spaces".to_owned());
            }
            if !allowed.iter().any(|allowed| allowed == token) {
                return Err(format!("scope `{token}` is not allowed"));
            }
            if !tokens.iter().any(|seen| seen == token) {
                tokens.push(token.to_owned());
            }
        }
        Ok(Scope(tokens))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn is_subset_of(&self, other: &Scope) -> bool {
        self.0.iter().all(|token| other.0.contains(token))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, token) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(token)?;
        }
        Ok(())
    }
}

/// Who a token or code was issued to, and for what.
#[derive(Debug, Clone)]
pub(super) struct Grant {
    pub(super) client_id: Arc<str>,
    pub(super) scope: Scope,
}

#[derive(Debug)]
struct AccessToken {
    grant: Grant,
    expires_at: Instant,
}

/// An authorization code waiting to be redeemed.
#[derive(Debug)]
pub(super) struct AuthorizationCode {
    pub(super) grant: Grant,
    pub(super) redirect_uri: String,
    expires_at: Instant,
}

impl AuthorizationCode {
    pub(super) fn is_expired(&self, now: Instant) -> bool {
        now >= self.expires_at
    }
}

/// Every live access token, refresh token and authorization code.
///
/// Rotated refresh tokens and redeemed codes are removed, so "unknown",
/// "already used" and "revoked" all look the same here, as they do to a
/// client of a real server.
#[derive(Debug)]
pub(super) struct TokenStore {
    access: HashMap<String, AccessToken>,
    refresh: HashMap<String, Grant>,
    codes: HashMap<String, AuthorizationCode>,
    prune_at: usize,
}

impl Default for TokenStore {
    fn default() -> Self {
        TokenStore {
            access: HashMap::new(),
            refresh: HashMap::new(),
            codes: HashMap::new(),
            prune_at: FIRST_PRUNE_AT,
        }
    }
}

impl TokenStore {
    /// A fresh random value that is not in use as any kind of token.
    fn mint(&self) -> String {
        loop {
            let value: String = std::iter::repeat_with(fastrand::alphanumeric)
                .take(TOKEN_LEN)
                .collect();
            let taken = self.access.contains_key(&value)
                || self.refresh.contains_key(&value)
                || self.codes.contains_key(&value);
            if !taken {
                return value;
            }
        }
    }

    pub(super) fn issue_access(&mut self, grant: Grant, lifetime: Duration) -> String {
        let now = Instant::now();
        if self.access.len() >= self.prune_at {
            self.access.retain(|_, token| token.expires_at > now);
            self.prune_at = FIRST_PRUNE_AT.max(self.access.len() * 2);
        }
        let token = self.mint();
        let expires_at = now.checked_add(lifetime).unwrap_or_else(far_future);
        self.access
            .insert(token.clone(), AccessToken { grant, expires_at });
        token
    }

    pub(super) fn issue_refresh(&mut self, grant: Grant) -> String {
        let token = self.mint();
        self.refresh.insert(token.clone(), grant);
        token
    }

    pub(super) fn issue_code(&mut self, grant: Grant, redirect_uri: String) -> String {
        let code = self.mint();
        let expires_at = Instant::now() + CODE_LIFETIME;
        self.codes.insert(
            code.clone(),
            AuthorizationCode {
                grant,
                redirect_uri,
                expires_at,
            },
        );
        code
    }

    /// The client an access token was issued to, if the token is live.
    pub(super) fn access_token_client(&self, token: &str) -> Option<Arc<str>> {
        let token = self.access.get(token)?;
        (token.expires_at > Instant::now()).then(|| Arc::clone(&token.grant.client_id))
    }

    pub(super) fn active_access_tokens(&self) -> usize {
        let now = Instant::now();
        self.access
            .values()
            .filter(|token| token.expires_at > now)
            .count()
    }

    pub(super) fn revoke_all_access_tokens(&mut self) {
        self.access.clear();
    }

    pub(super) fn refresh_grant(&self, token: &str) -> Option<&Grant> {
        self.refresh.get(token)
    }

    pub(super) fn retire_refresh(&mut self, token: &str) {
        self.refresh.remove(token);
    }

    pub(super) fn code(&self, code: &str) -> Option<&AuthorizationCode> {
        self.codes.get(code)
    }

    pub(super) fn redeem_code(&mut self, code: &str) {
        self.codes.remove(code);
    }
}

/// An instant no test will live to see, for lifetimes too large to add.
fn far_future() -> Instant {
    // About thirty years; `Instant` cannot represent arbitrary durations.
    Instant::now() + Duration::from_secs(30 * 365 * 24 * 60 * 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec!["read".to_owned(), "write".to_owned()]
    }

    #[test]
    fn scopes_are_parsed_deduplicated_and_checked() {
        let scope = Scope::parse("write read write", &allowed()).unwrap();
        assert_eq!(scope.to_string(), "write read");
        assert!(Scope::parse("", &allowed()).unwrap().is_empty());
        assert!(Scope::parse("read admin", &allowed()).is_err());
        assert!(Scope::parse("read  write", &allowed()).is_err());
        assert!(Scope::parse(" read", &allowed()).is_err());
    }

    #[test]
    fn scope_subsets() {
        let both = Scope::parse("read write", &allowed()).unwrap();
        let read = Scope::parse("read", &allowed()).unwrap();
        assert!(read.is_subset_of(&both));
        assert!(!both.is_subset_of(&read));
        assert!(Scope::default().is_subset_of(&read));
    }

    #[test]
    fn minted_tokens_are_distinct_and_alphanumeric() {
        let mut store = TokenStore::default();
        let grant = Grant {
            client_id: Arc::from("client"),
            scope: Scope::default(),
        };
        let access = store.issue_access(grant.clone(), Duration::from_secs(60));
        let refresh = store.issue_refresh(grant);
        assert_ne!(access, refresh);
        for token in [&access, &refresh] {
            assert_eq!(token.len(), TOKEN_LEN);
            assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
        assert_eq!(store.access_token_client(&access).as_deref(), Some("client"));
        assert_eq!(store.access_token_client(&refresh), None);
    }
}
