//! Configuration and mutable state shared by every connection.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::clients::{AcceptedAssertionAudience, ClientKey, UsedJtis};
use crate::counters::Counters;
use crate::dialect::{AcceptedClientAuth, DialectRules, ExpiresUnit};
use crate::dpop::DpopState;
use crate::faults::{FaultQueue, ResourceFault};
use crate::random::random_string;
use crate::scope::Scope;
use crate::sync::lock;

/// Length of every token, refresh token and authorization code.
pub(crate) const TOKEN_LEN: usize = 40;

/// Expired access tokens are swept once the table reaches this size, then
/// whenever it doubles.
const FIRST_PRUNE_AT: usize = 1024;

/// Everything the builder decided, resolved against the dialect; immutable
/// once the server runs.
pub(crate) struct ServerConfig {
    pub(crate) dialect: &'static DialectRules,
    /// Registered clients: id → secret, `None` for public clients.
    pub(crate) clients: HashMap<Arc<str>, Option<String>>,
    /// The public keys clients registered for `private_key_jwt`, by client id. A client
    /// with keys is confidential even without a secret.
    pub(crate) client_keys: HashMap<Arc<str>, Vec<ClientKey>>,
    pub(crate) auth_methods: Vec<AcceptedClientAuth>,
    /// Which `aud` a client assertion may name.
    pub(crate) assertion_audience: AcceptedAssertionAudience,
    /// Resource owners as `(username, password)`; the first one is the user
    /// the authorization endpoint approves as by default.
    pub(crate) users: Vec<(Arc<str>, String)>,
    pub(crate) token_lifetime: Duration,
    pub(crate) code_lifetime: Duration,
    pub(crate) omit_expires_in: bool,
    pub(crate) rotate_refresh_tokens: bool,
    pub(crate) refresh_tokens_for_client_credentials: bool,
    pub(crate) allowed_scopes: Vec<String>,
    /// iOFFICE's `appCode`, sent along with every code in the redirect.
    pub(crate) app_code: String,
    /// Grindery only: answer as its orchestrator does (the JSON-RPC endpoint, and
    /// `invalid_request` for refused codes and refresh tokens).
    pub(crate) native_grindery_errors: bool,
    /// The server's origin, `http://127.0.0.1:PORT`: known once the port is bound.
    pub(crate) base_url: String,
    /// What the standard server's metadata document says, if it serves one.
    pub(crate) metadata: MetadataConfig,
    /// DPoP (RFC 9449), standard server only: `None` when off.
    pub(crate) dpop: Option<DpopConfig>,
}

/// How the standard server does DPoP, when it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DpopConfig {
    /// Whether proofs must carry the server's nonces.
    pub(crate) nonces: bool,
    /// Whether each success replaces the nonce of the place that answered it.
    pub(crate) rotate_nonces_on_success: bool,
}

/// The standard server's metadata document (RFC 8414).
#[derive(Debug, Clone, Default)]
pub(crate) struct MetadataConfig {
    /// Whether `/.well-known/oauth-authorization-server` is served.
    pub(crate) hidden: bool,
    /// The `issuer` it names instead of the server's own origin.
    pub(crate) issuer: Option<String>,
}

impl ServerConfig {
    /// `expires_in` as announced to clients, in the dialect's unit: whole
    /// seconds or milliseconds, at least one.
    pub(crate) fn expires_in(&self) -> u64 {
        match self.dialect.expires_in {
            ExpiresUnit::Seconds => self.token_lifetime.as_secs().max(1),
            ExpiresUnit::Milliseconds => u64::try_from(self.token_lifetime.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        }
    }

    /// The registered client with this id, as its shared id and secret.
    pub(crate) fn client(&self, id: &str) -> Option<(&Arc<str>, Option<&str>)> {
        self.clients
            .get_key_value(id)
            .map(|(id, secret)| (id, secret.as_deref()))
    }

    /// The public keys a client registered (none for most clients).
    pub(crate) fn client_keys(&self, id: &str) -> &[ClientKey] {
        self.client_keys.get(id).map_or(&[], Vec::as_slice)
    }

    /// The issuer: what the metadata document names, the server's origin unless the
    /// builder said otherwise.
    pub(crate) fn issuer(&self) -> String {
        self.metadata
            .issuer
            .clone()
            .unwrap_or_else(|| self.base_url.clone())
    }

    /// The registered user with this name, as its shared name and password.
    pub(crate) fn user(&self, name: &str) -> Option<(&Arc<str>, &str)> {
        self.users
            .iter()
            .find(|(user, _)| &**user == name)
            .map(|(user, password)| (user, password.as_str()))
    }

    /// The server's authority, `127.0.0.1:PORT`: what `Host` says when a request
    /// names none.
    pub(crate) fn base_authority(&self) -> &str {
        self.base_url.strip_prefix("http://").unwrap_or(&self.base_url)
    }

    /// The user the authorization endpoint approves as unless told otherwise.
    pub(crate) fn default_user(&self) -> Option<&Arc<str>> {
        self.users.first().map(|(user, _)| user)
    }
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut clients: Vec<_> = self.clients.keys().collect();
        clients.sort();
        let mut client_keys: Vec<_> = self
            .client_keys
            .iter()
            .map(|(id, keys)| (id, keys.len()))
            .collect();
        client_keys.sort();
        // Names only: passwords, like client secrets, stay out of the output.
        let users: Vec<_> = self.users.iter().map(|(user, _)| user).collect();
        f.debug_struct("ServerConfig")
            .field("dialect", &self.dialect.kind)
            .field("clients", &clients)
            .field("client_keys", &client_keys)
            .field("auth_methods", &self.auth_methods)
            .field("assertion_audience", &self.assertion_audience)
            .field("users", &users)
            .field("token_lifetime", &self.token_lifetime)
            .field("code_lifetime", &self.code_lifetime)
            .field("omit_expires_in", &self.omit_expires_in)
            .field("rotate_refresh_tokens", &self.rotate_refresh_tokens)
            .field(
                "refresh_tokens_for_client_credentials",
                &self.refresh_tokens_for_client_credentials,
            )
            .field("allowed_scopes", &self.allowed_scopes)
            .field("metadata", &self.metadata)
            .field("dpop", &self.dpop)
            .finish()
    }
}

/// The state behind a running server.
#[derive(Debug)]
pub(crate) struct ServerState {
    pub(crate) config: ServerConfig,
    pub(crate) counters: Counters,
    pub(crate) faults: FaultQueue,
    pub(crate) resource_faults: FaultQueue<ResourceFault>,
    pub(crate) tokens: Mutex<IssuedTokens>,
    pub(crate) token_latency: Latency,
    pub(crate) resource_latency: Latency,
    /// How many of the next authorization requests to deny.
    pub(crate) denials: AtomicUsize,
    /// The `jti`s of accepted client assertions, until their `exp`.
    used_jtis: Mutex<UsedJtis>,
    /// Nonces and seen proofs, when DPoP is on.
    pub(crate) dpop: Option<DpopState>,
}

impl ServerState {
    /// Whether `/.well-known/oauth-authorization-server` is served.
    pub(crate) fn serves_metadata(&self) -> bool {
        self.config.dialect.kind == crate::MockDialect::Standard && !self.config.metadata.hidden
    }

    pub(crate) fn new(config: ServerConfig) -> Self {
        let dpop = config
            .dpop
            .map(|dpop| DpopState::new(dpop.nonces, dpop.rotate_nonces_on_success));
        ServerState {
            dpop,
            config,
            counters: Counters::default(),
            faults: FaultQueue::default(),
            resource_faults: FaultQueue::default(),
            tokens: Mutex::new(IssuedTokens::default()),
            token_latency: Latency::default(),
            resource_latency: Latency::default(),
            denials: AtomicUsize::new(0),
            used_jtis: Mutex::new(UsedJtis::default()),
        }
    }

    pub(crate) fn used_jtis(&self) -> MutexGuard<'_, UsedJtis> {
        lock(&self.used_jtis)
    }

    pub(crate) fn dialect(&self) -> &'static DialectRules {
        self.config.dialect
    }

    pub(crate) fn tokens(&self) -> MutexGuard<'_, IssuedTokens> {
        lock(&self.tokens)
    }

    /// Whether the current authorization request is one to deny, using up
    /// one of the queued denials if so.
    pub(crate) fn take_denial(&self) -> bool {
        self.denials
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// An adjustable delay, stored as nanoseconds.
#[derive(Debug, Default)]
pub(crate) struct Latency(AtomicU64);

impl Latency {
    pub(crate) fn set(&self, delay: Duration) {
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX);
        self.0.store(nanos, Ordering::Relaxed);
    }

    /// Waits for the configured delay, if any.
    pub(crate) async fn wait(&self) {
        let nanos = self.0.load(Ordering::Relaxed);
        if nanos > 0 {
            tokio::time::sleep(Duration::from_nanos(nanos)).await;
        }
    }
}

/// Who a token or code was issued to, and for what.
#[derive(Debug, Clone)]
pub(crate) struct GrantRecord {
    /// Empty in Grindery, which has no clients.
    pub(crate) client_id: Arc<str>,
    /// The resource owner, `None` for the `client_credentials` grant.
    pub(crate) subject: Option<Arc<str>>,
    pub(crate) scope: Scope,
    /// The `redirect_uri` of the authorization request the grant came from,
    /// if any (iOFFICE's refresh requests repeat it).
    pub(crate) redirect_uri: Option<String>,
}

/// Identifies one authorization grant across the refresh tokens and access
/// tokens issued from it, so that revoking a refresh token can take its
/// access tokens along (RFC 7009 §2.1).
pub(crate) type Family = u64;

#[derive(Debug)]
struct IssuedAccessToken {
    grant: GrantRecord,
    family: Family,
    expires_at: Instant,
    /// The RFC 7638 thumbprint of the key a DPoP-bound token is bound to.
    jkt: Option<String>,
}

#[derive(Debug)]
struct IssuedRefreshToken {
    grant: GrantRecord,
    family: Family,
}

/// An authorization code waiting to be redeemed.
#[derive(Debug)]
pub(crate) struct IssuedCode {
    pub(crate) grant: GrantRecord,
    /// Whether the exchange decides the scope (iOFFICE's direct code request
    /// has none; the token request's `x-scope` becomes the grant's scope).
    pub(crate) scope_from_exchange: bool,
    /// The PKCE `S256` challenge the code is bound to, if any.
    pub(crate) code_challenge: Option<String>,
    expires_at: Instant,
}

impl IssuedCode {
    pub(crate) fn new(grant: GrantRecord, lifetime: Duration) -> Self {
        IssuedCode {
            grant,
            scope_from_exchange: false,
            code_challenge: None,
            expires_at: deadline(lifetime),
        }
    }

    pub(crate) fn is_expired(&self, now: Instant) -> bool {
        now >= self.expires_at
    }
}

/// A token that a revocation request named.
#[derive(Debug)]
pub(crate) enum RevokedToken {
    Access {
        client_id: Arc<str>,
    },
    Refresh {
        client_id: Arc<str>,
        access_tokens: usize,
    },
}

/// Every live access token, refresh token and authorization code.
///
/// Rotated refresh tokens and redeemed codes are removed, so "unknown",
/// "already used" and "revoked" all look the same here, as they do to a
/// client of a real server.
#[derive(Debug)]
pub(crate) struct IssuedTokens {
    access: HashMap<String, IssuedAccessToken>,
    refresh: HashMap<String, IssuedRefreshToken>,
    codes: HashMap<String, IssuedCode>,
    prune_at: usize,
    next_family: Family,
}

impl Default for IssuedTokens {
    fn default() -> Self {
        IssuedTokens {
            access: HashMap::new(),
            refresh: HashMap::new(),
            codes: HashMap::new(),
            prune_at: FIRST_PRUNE_AT,
            next_family: 0,
        }
    }
}

impl IssuedTokens {
    /// A fresh random value that is not in use as any kind of token.
    fn mint(&self) -> String {
        loop {
            let value = random_string(TOKEN_LEN);
            let taken = self.access.contains_key(&value)
                || self.refresh.contains_key(&value)
                || self.codes.contains_key(&value);
            if !taken {
                return value;
            }
        }
    }

    /// A new authorization grant: an id shared by everything issued from it.
    pub(crate) fn new_family(&mut self) -> Family {
        self.next_family += 1;
        self.next_family
    }

    /// Issues an access token, bound to the key whose thumbprint is `jkt` if given
    /// (a DPoP-bound token, RFC 9449 §6).
    pub(crate) fn issue_access(
        &mut self,
        grant: GrantRecord,
        family: Family,
        lifetime: Duration,
        jkt: Option<String>,
    ) -> String {
        let now = Instant::now();
        if self.access.len() >= self.prune_at {
            self.access.retain(|_, token| token.expires_at > now);
            self.prune_at = FIRST_PRUNE_AT.max(self.access.len() * 2);
        }
        let token = self.mint();
        let expires_at = deadline(lifetime);
        self.access.insert(
            token.clone(),
            IssuedAccessToken {
                grant,
                family,
                expires_at,
                jkt,
            },
        );
        token
    }

    pub(crate) fn issue_refresh(&mut self, grant: GrantRecord, family: Family) -> String {
        let token = self.mint();
        self.refresh
            .insert(token.clone(), IssuedRefreshToken { grant, family });
        token
    }

    pub(crate) fn issue_code(&mut self, code: IssuedCode) -> String {
        let value = self.mint();
        self.codes.insert(value.clone(), code);
        value
    }

    /// The grant behind an access token, if the token is live.
    pub(crate) fn access_grant(&self, token: &str) -> Option<&GrantRecord> {
        let token = self.access.get(token)?;
        (token.expires_at > Instant::now()).then_some(&token.grant)
    }

    /// The grant behind a live access token and the thumbprint of the key it is
    /// bound to, if it is DPoP-bound.
    pub(crate) fn access_binding(&self, token: &str) -> Option<(&GrantRecord, Option<&str>)> {
        let token = self.access.get(token)?;
        (token.expires_at > Instant::now()).then_some((&token.grant, token.jkt.as_deref()))
    }

    pub(crate) fn active_access_tokens(&self) -> usize {
        let now = Instant::now();
        self.access
            .values()
            .filter(|token| token.expires_at > now)
            .count()
    }

    pub(crate) fn revoke_all_access_tokens(&mut self) {
        self.access.clear();
    }

    /// The grant and family behind a refresh token, if it is live.
    pub(crate) fn refresh_grant(&self, token: &str) -> Option<(&GrantRecord, Family)> {
        self.refresh.get(token).map(|token| (&token.grant, token.family))
    }

    pub(crate) fn retire_refresh(&mut self, token: &str) {
        self.refresh.remove(token);
    }

    pub(crate) fn code(&self, code: &str) -> Option<&IssuedCode> {
        self.codes.get(code)
    }

    pub(crate) fn redeem_code(&mut self, code: &str) {
        self.codes.remove(code);
    }

    /// The client a live access or refresh token was issued to.
    pub(crate) fn token_client(&self, token: &str) -> Option<&Arc<str>> {
        if let Some(grant) = self.access_grant(token) {
            return Some(&grant.client_id);
        }
        self.refresh.get(token).map(|token| &token.grant.client_id)
    }

    /// Revokes an access or refresh token. A refresh token takes every
    /// access token of its grant along. Unknown tokens are not an error
    /// (RFC 7009 §2.2): the answer is `None`.
    pub(crate) fn revoke(&mut self, token: &str) -> Option<RevokedToken> {
        if let Some(access) = self.access.remove(token) {
            return Some(RevokedToken::Access {
                client_id: access.grant.client_id,
            });
        }
        let refresh = self.refresh.remove(token)?;
        let before = self.access.len();
        self.access.retain(|_, access| access.family != refresh.family);
        Some(RevokedToken::Refresh {
            client_id: refresh.grant.client_id,
            access_tokens: before - self.access.len(),
        })
    }
}

/// `lifetime` from now, or an instant no test will live to see for
/// lifetimes too large to add.
fn deadline(lifetime: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(lifetime)
        // About thirty years; `Instant` cannot represent arbitrary durations.
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 24 * 60 * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(client_id: &str) -> GrantRecord {
        GrantRecord {
            client_id: Arc::from(client_id),
            subject: None,
            scope: Scope::default(),
            redirect_uri: None,
        }
    }

    #[test]
    fn minted_tokens_are_distinct_and_alphanumeric() {
        let mut store = IssuedTokens::default();
        let family = store.new_family();
        let access = store.issue_access(grant("client"), family, Duration::from_secs(60), None);
        let refresh = store.issue_refresh(grant("client"), family);
        assert_ne!(access, refresh);
        for token in [&access, &refresh] {
            assert_eq!(token.len(), TOKEN_LEN);
            assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()));
        }
        assert_eq!(store.access_grant(&access).map(|g| &*g.client_id), Some("client"));
        assert!(store.access_grant(&refresh).is_none());
    }

    #[test]
    fn revoking_a_refresh_token_revokes_its_grant_only() {
        let mut store = IssuedTokens::default();
        let family = store.new_family();
        let other = store.new_family();
        let refresh = store.issue_refresh(grant("a"), family);
        let first = store.issue_access(grant("a"), family, Duration::from_secs(60), None);
        let second = store.issue_access(grant("a"), family, Duration::from_secs(60), None);
        let unrelated = store.issue_access(grant("a"), other, Duration::from_secs(60), None);

        assert!(matches!(
            store.revoke(&refresh),
            Some(RevokedToken::Refresh { access_tokens: 2, .. })
        ));
        assert!(store.access_grant(&first).is_none());
        assert!(store.access_grant(&second).is_none());
        assert!(store.access_grant(&unrelated).is_some());
        assert!(store.refresh_grant(&refresh).is_none());
        assert!(store.revoke(&refresh).is_none());
        assert!(matches!(
            store.revoke(&unrelated),
            Some(RevokedToken::Access { .. })
        ));
    }

    #[test]
    fn zero_lifetime_codes_are_expired_at_once() {
        let code = IssuedCode::new(grant("a"), Duration::ZERO);
        assert!(code.is_expired(Instant::now()));
        let code = IssuedCode::new(grant("a"), Duration::from_secs(60));
        assert!(!code.is_expired(Instant::now()));
    }
}
