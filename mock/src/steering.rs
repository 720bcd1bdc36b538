//! The test-facing controls of a running server: counters, injected faults and
//! latency, denials, revocation, and tokens or codes minted without a browser.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::counters::MockCounters;
use crate::dialect::{ClientAuthRule, RefreshRule, ScopeRule};
use crate::faults::{Fault, ResourceFault};
use crate::scope::Scope;
use crate::server::MockServer;
use crate::state::{GrantRecord, IssuedCode};

impl MockServer {
    /// A snapshot of the counters.
    #[must_use]
    pub fn counters(&self) -> MockCounters {
        self.state().counters.snapshot()
    }

    /// Sets every counter back to zero and forgets recorded bodies.
    ///
    /// Token requests still in flight keep counting as in flight, so
    /// [`MockCounters::max_concurrent_token_requests`] includes them again
    /// as soon as another token request arrives.
    pub fn reset_counters(&self) {
        self.state().counters.reset();
    }

    /// Makes each of the next `n` token requests fail with `fault`.
    ///
    /// Calls queue up: faults requested earlier are used first. Faults are
    /// applied before any validation and count towards
    /// [`MockCounters::token_errors`].
    pub fn fail_next_token_requests(&self, n: usize, fault: Fault) {
        self.state().faults.push(n, fault);
    }

    /// Makes each of the next `n` protected resource requests be refused with
    /// `fault`, whatever they carry.
    ///
    /// Calls queue up: faults requested earlier are used first. The requests still
    /// count in [`MockCounters::resource_calls`] and
    /// [`MockCounters::sends_by_request_id`], not in
    /// [`MockCounters::resource_calls_authorized`].
    pub fn fail_next_resource_requests(&self, n: usize, fault: ResourceFault) {
        self.state().resource_faults.push(n, fault);
    }

    /// Makes the authorization endpoint deny the next `n` requests that it
    /// would otherwise approve, as if the user had clicked "deny": it
    /// redirects with `error=access_denied` (and the request's `state`).
    /// Calls add up. iOFFICE's direct code request is not affected.
    pub fn deny_next_authorizations(&self, n: usize) {
        self.state().denials.fetch_add(n, Ordering::Relaxed);
    }

    /// Revokes every access token issued so far: the protected resource
    /// answers `401` with `error="invalid_token"` to all of them. Refresh
    /// tokens stay valid, and tokens issued afterwards work normally.
    pub fn revoke_all_access_tokens(&self) {
        self.state().tokens().revoke_all_access_tokens();
    }

    /// Delays every token endpoint answer (faults included) by `delay`.
    /// [`Duration::ZERO`] turns the delay off.
    pub fn set_token_latency(&self, delay: Duration) {
        self.state().token_latency.set(delay);
    }

    /// Delays every protected resource answer by `delay`.
    /// [`Duration::ZERO`] turns the delay off.
    pub fn set_resource_latency(&self, delay: Duration) {
        self.state().resource_latency.set(delay);
    }

    /// Mints a refresh token for a registered client, as if the default user
    /// had gone through an authorization flow. `scope` is in the dialect's
    /// syntax: space-delimited (and allowed) scopes, or on iOFFICE any
    /// non-empty string. It may be empty except on iOFFICE.
    ///
    /// On Grindery, which has no clients, pass `""` as `client_id`. On
    /// iOFFICE the token is not tied to a redirect URI: refreshing it takes
    /// any `x-redirect-uri`.
    ///
    /// # Panics
    ///
    /// Panics on Accelo (it issues no refresh tokens), if the client is not
    /// registered (or, on Grindery, not `""`) or if the scope is not valid.
    #[must_use]
    pub fn issue_refresh_token(&self, client_id: &str, scope: &str) -> String {
        let dialect = self.state().dialect();
        assert!(
            dialect.refresh != RefreshRule::NoRefreshTokens,
            "the {:?} mock issues no refresh tokens: its only grant is client_credentials",
            dialect.kind
        );
        let grant = self.grant_for(client_id, scope, None);
        let mut tokens = self.state().tokens();
        let family = tokens.new_family();
        tokens.issue_refresh(grant, family)
    }

    /// Mints an authorization code for a registered client, as if the
    /// default user had just approved an authorization request with this
    /// `redirect_uri` and `scope` (in the dialect's syntax, see
    /// [`issue_refresh_token`](Self::issue_refresh_token)).
    ///
    /// The code can be exchanged once, within the code lifetime (ten
    /// minutes, five on iOFFICE; see
    /// [`authorization_code_lifetime`](crate::MockServerBuilder::authorization_code_lifetime)),
    /// by the same client presenting the same `redirect_uri`; the exchange
    /// returns an access token and a refresh token. Reusing a code is
    /// answered with `invalid_grant`; tokens already issued from it stay
    /// valid.
    ///
    /// On Grindery, which has no clients, pass `""` as `client_id`.
    ///
    /// # Panics
    ///
    /// Panics on Accelo (it has no user flow), if the client is not
    /// registered (or, on Grindery, not `""`) or if the scope is not valid.
    #[must_use]
    pub fn issue_authorization_code(&self, client_id: &str, redirect_uri: &str, scope: &str) -> String {
        let dialect = self.state().dialect();
        assert!(
            dialect.authorize.is_some(),
            "the {:?} mock has no authorization codes: its only grant is client_credentials",
            dialect.kind
        );
        let grant = self.grant_for(client_id, scope, Some(redirect_uri));
        let code = IssuedCode::new(grant, self.state().config.code_lifetime);
        self.state().tokens().issue_code(code)
    }

    /// Replaces the current DPoP nonces of the token endpoint and of the resource
    /// with new ones: the previous ones are refused from now on, so the client's next
    /// proof at each place is answered `use_dpop_nonce` once (counted in
    /// [`MockCounters::dpop_nonce_demanded_token`] and
    /// [`dpop_nonce_demanded_resource`](MockCounters::dpop_nonce_demanded_resource)).
    ///
    /// # Panics
    ///
    /// Panics unless the server was built with
    /// [`dpop_nonces(true)`](crate::MockServerBuilder::dpop_nonces).
    pub fn rotate_dpop_nonces(&self) {
        let rotated = self
            .state()
            .dpop
            .as_ref()
            .is_some_and(|dpop| dpop.rotate_nonces());
        assert!(
            rotated,
            "this mock server hands out no DPoP nonces: build it with dpop_nonces(true)"
        );
    }

    /// How many issued access tokens are neither expired nor revoked.
    #[must_use]
    pub fn active_access_tokens(&self) -> usize {
        self.state().tokens().active_access_tokens()
    }

    /// A grant to the default user, for the test helpers.
    fn grant_for(&self, client_id: &str, scope: &str, redirect_uri: Option<&str>) -> GrantRecord {
        let config = &self.state().config;
        let dialect = config.dialect;
        let client_id = if dialect.client_auth == ClientAuthRule::NoClients {
            assert!(
                client_id.is_empty(),
                "the {:?} mock has no client ids: pass \"\", not {client_id:?}",
                dialect.kind
            );
            Arc::from("")
        } else {
            let Some((client_id, _)) = config.client(client_id) else {
                panic!("client {client_id:?} is not registered with the mock server");
            };
            Arc::clone(client_id)
        };
        let scope = if scope.is_empty() && dialect.scope != ScopeRule::Opaque {
            Scope::default()
        } else {
            dialect
                .scope
                .parse(scope, &config.allowed_scopes)
                .unwrap_or_else(|reason| panic!("invalid scope {scope:?}: {reason}"))
        };
        GrantRecord {
            client_id,
            subject: config.default_user().cloned(),
            scope,
            redirect_uri: redirect_uri.map(str::to_owned),
        }
    }
}
