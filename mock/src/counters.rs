//! What the mock server has seen, as cheap-to-update counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use bytes::Bytes;

use crate::sync::lock;

/// A snapshot of what a [`MockServer`](crate::MockServer) has seen since it
/// started or since the last [`reset_counters`](crate::MockServer::reset_counters).
///
/// Each field is read on its own, so a snapshot taken while requests are in
/// flight is not guaranteed to be consistent across fields. Take it after the
/// requests you care about have been answered.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MockCounters {
    /// Requests that reached the token endpoint (`/oauth/token` on the
    /// standard server; see [`MockServer::token_url`](crate::MockServer::token_url)),
    /// whatever their method, body or outcome.
    pub token_requests: u64,
    /// Token requests whose grant type was `client_credentials`, successful
    /// or not (faulted ones included).
    ///
    /// The grant type is read where the dialect carries it: the first
    /// `grant_type` of a form body, or iOFFICE's `x-grant-type` header.
    pub client_credentials_grants: u64,
    /// Token requests whose grant type was `refresh_token`, successful or
    /// not (faulted ones included).
    pub refresh_token_grants: u64,
    /// Token requests whose grant type was `authorization_code`, successful
    /// or not (faulted ones included).
    pub authorization_code_grants: u64,
    /// Token requests that were not answered with a token: OAuth errors,
    /// other HTTP errors (405, 413) and injected [faults](crate::Fault).
    pub token_errors: u64,
    /// The largest number of token requests that were in flight at the same
    /// time. A request is in flight from the moment it reaches the server
    /// until its answer is handed to the connection (or the connection goes
    /// away).
    pub max_concurrent_token_requests: u64,
    /// Requests that reached the protected resource (`/api/*` on the
    /// standard server; see [`MockServer::api_url`](crate::MockServer::api_url)).
    pub resource_calls: u64,
    /// Resource requests that carried a live access token in a placement the
    /// dialect accepts, and were answered `200`.
    pub resource_calls_authorized: u64,
    /// Answers of the protected resource, by HTTP status code.
    pub resource_calls_by_status: BTreeMap<u16, u64>,
    /// Resource requests by the value of their `x-request-id` header
    /// (requests without one are not counted here). Values that are not
    /// UTF-8 are decoded lossily.
    pub sends_by_request_id: BTreeMap<String, u64>,
    /// Every resource request body that was received in full, in the order
    /// the bodies arrived (empty bodies included).
    ///
    /// This list grows with every resource call; long-running benchmarks
    /// should call [`reset_counters`](crate::MockServer::reset_counters)
    /// from time to time.
    pub bodies: Vec<Bytes>,
    /// Revocation requests answered `200` (unknown tokens included, as
    /// RFC 7009 §2.2 wants).
    pub revocations: u64,
    /// Authorization requests answered with a code: redirects carrying one,
    /// and iOFFICE's direct code requests.
    pub authorizations: u64,
    /// JWT client assertions (`private_key_jwt`, `client_secret_jwt`) accepted, at
    /// the token and revocation endpoints.
    pub client_assertions_accepted: u64,
    /// Requests carrying a JWT client assertion that were refused for it (replays
    /// included), each answered `401 invalid_client` (or `400 invalid_request`
    /// when it came along with another authentication method).
    pub client_assertions_refused: u64,
    /// Client assertions refused because their `jti` had been used already (also
    /// counted in [`client_assertions_refused`](Self::client_assertions_refused)).
    pub client_assertion_replays: u64,
    /// DPoP proofs (RFC 9449) that passed every check, nonce included, at the token
    /// endpoint and at the resource. Only counted with
    /// [`dpop`](crate::MockServerBuilder::dpop) on.
    pub dpop_proofs_accepted: u64,
    /// DPoP proofs refused as `invalid_dpop_proof`: malformed, badly signed, not
    /// matching the request, or replayed ([`dpop_replays`](Self::dpop_replays) are
    /// counted here too). Nonce demands are not.
    pub dpop_proofs_refused: u64,
    /// DPoP proofs refused because their `jti` had been used before.
    pub dpop_replays: u64,
    /// Token requests answered `use_dpop_nonce`: a valid proof without the token
    /// endpoint's current nonce, or a [`Fault::DemandDpopNonce`](crate::Fault::DemandDpopNonce).
    pub dpop_nonce_demanded_token: u64,
    /// Resource requests answered `401` with `DPoP error="use_dpop_nonce"`: a valid
    /// proof without the resource's current nonce, or a
    /// [`ResourceFault::DemandDpopNonce`](crate::ResourceFault::DemandDpopNonce).
    pub dpop_nonce_demanded_resource: u64,
    /// Distinct `jti` values among the proofs that passed every check but the nonce
    /// (so accepted and nonce-refused proofs), since the start or the last reset.
    /// Equal to the number of such proofs when the client never reuses a proof.
    pub dpop_distinct_jtis: u64,
    /// Resource requests that presented a DPoP-bound access token with the
    /// `Bearer` scheme (refused with `DPoP error="invalid_token"`).
    pub bearer_for_dpop_token: u64,
}

impl MockCounters {
    /// The counter whose field is called `name` (`"token_requests"`,
    /// `"token_errors"`, ...), for the counters that are plain numbers; `None`
    /// for any other name.
    pub fn count(&self, name: &str) -> Option<u64> {
        Some(match name {
            "token_requests" => self.token_requests,
            "client_credentials_grants" => self.client_credentials_grants,
            "refresh_token_grants" => self.refresh_token_grants,
            "authorization_code_grants" => self.authorization_code_grants,
            "token_errors" => self.token_errors,
            "max_concurrent_token_requests" => self.max_concurrent_token_requests,
            "resource_calls" => self.resource_calls,
            "resource_calls_authorized" => self.resource_calls_authorized,
            "revocations" => self.revocations,
            "authorizations" => self.authorizations,
            "client_assertions_accepted" => self.client_assertions_accepted,
            "client_assertions_refused" => self.client_assertions_refused,
            "client_assertion_replays" => self.client_assertion_replays,
            "dpop_proofs_accepted" => self.dpop_proofs_accepted,
            "dpop_proofs_refused" => self.dpop_proofs_refused,
            "dpop_replays" => self.dpop_replays,
            "dpop_nonce_demanded_token" => self.dpop_nonce_demanded_token,
            "dpop_nonce_demanded_resource" => self.dpop_nonce_demanded_resource,
            "dpop_distinct_jtis" => self.dpop_distinct_jtis,
            "bearer_for_dpop_token" => self.bearer_for_dpop_token,
            _ => return None,
        })
    }

    /// Asserts the counters named in `expected`, written `name=value` and
    /// separated by white space, so that a test states what the server saw in
    /// one line:
    ///
    /// ```
    /// # let counters = tower_oauth2_mock::MockCounters::default();
    /// counters.assert("token_requests=0 token_errors=0");
    /// ```
    ///
    /// # Panics
    ///
    /// When a counter differs, or `expected` names no counter of [`count`](Self::count)
    /// or is not a list of `name=value` pairs: it is meant for tests.
    #[track_caller]
    pub fn assert(&self, expected: &str) {
        for pair in expected.split_whitespace() {
            let Some((name, value)) = pair.split_once('=') else {
                panic!("`{pair}` is not written name=value");
            };
            let Ok(value) = value.parse::<u64>() else {
                panic!("`{pair}`: not a count");
            };
            let Some(actual) = self.count(name) else {
                panic!("the mock counts no `{name}`");
            };
            assert_eq!(actual, value, "{name}, of {self:?}");
        }
    }
}

/// Grant types the counters know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrantKind {
    ClientCredentials,
    RefreshToken,
    AuthorizationCode,
}

impl GrantKind {
    /// The grant type named by a `grant_type` parameter, if it is one the
    /// server implements.
    pub(crate) fn from_param(value: &str) -> Option<Self> {
        match value {
            "client_credentials" => Some(Self::ClientCredentials),
            "refresh_token" => Some(Self::RefreshToken),
            "authorization_code" => Some(Self::AuthorizationCode),
            _ => None,
        }
    }
}

/// DPoP outcomes the counters know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DpopEvent {
    Accepted,
    Refused,
    Replay,
    NonceDemandedToken,
    NonceDemandedResource,
    NewJti,
    BearerForDpopToken,
}

/// Live counters shared by every connection.
///
/// Numbers are relaxed atomics; the maps and the body list share one mutex
/// that is only held for an insertion, never across an `.await`.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    token_requests: AtomicU64,
    client_credentials_grants: AtomicU64,
    refresh_token_grants: AtomicU64,
    authorization_code_grants: AtomicU64,
    token_errors: AtomicU64,
    token_requests_in_flight: AtomicU64,
    max_concurrent_token_requests: AtomicU64,
    resource_calls: AtomicU64,
    resource_calls_authorized: AtomicU64,
    revocations: AtomicU64,
    authorizations: AtomicU64,
    client_assertions_accepted: AtomicU64,
    client_assertions_refused: AtomicU64,
    client_assertion_replays: AtomicU64,
    dpop_proofs_accepted: AtomicU64,
    dpop_proofs_refused: AtomicU64,
    dpop_replays: AtomicU64,
    dpop_nonce_demanded_token: AtomicU64,
    dpop_nonce_demanded_resource: AtomicU64,
    dpop_distinct_jtis: AtomicU64,
    bearer_for_dpop_token: AtomicU64,
    records: Mutex<Records>,
}

#[derive(Debug, Default)]
struct Records {
    resource_calls_by_status: BTreeMap<u16, u64>,
    sends_by_request_id: BTreeMap<String, u64>,
    bodies: Vec<Bytes>,
}

/// Marks one token request as in flight until dropped.
///
/// Dropping happens when the request is answered or when its connection task
/// is dropped (client gone, server stopped), so hung requests are accounted
/// for too.
#[derive(Debug)]
pub(crate) struct InFlightGuard<'a> {
    counters: &'a Counters,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.counters
            .token_requests_in_flight
            .fetch_sub(1, Ordering::Relaxed);
    }
}

impl Counters {
    /// Counts a request to the token endpoint and marks it as in flight.
    pub(crate) fn begin_token_request(&self) -> InFlightGuard<'_> {
        self.token_requests.fetch_add(1, Ordering::Relaxed);
        let now = self.token_requests_in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_concurrent_token_requests
            .fetch_max(now, Ordering::Relaxed);
        InFlightGuard { counters: self }
    }

    pub(crate) fn grant(&self, kind: GrantKind) {
        let counter = match kind {
            GrantKind::ClientCredentials => &self.client_credentials_grants,
            GrantKind::RefreshToken => &self.refresh_token_grants,
            GrantKind::AuthorizationCode => &self.authorization_code_grants,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn token_error(&self) {
        self.token_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request to the protected resource.
    pub(crate) fn resource_call(&self, request_id: Option<String>) {
        self.resource_calls.fetch_add(1, Ordering::Relaxed);
        if let Some(id) = request_id {
            *lock(&self.records).sends_by_request_id.entry(id).or_default() += 1;
        }
    }

    /// Counts a resource request that carried a live token.
    pub(crate) fn resource_call_authorized(&self) {
        self.resource_calls_authorized.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a successful revocation request.
    pub(crate) fn revocation(&self) {
        self.revocations.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an authorization request answered with a code.
    pub(crate) fn authorization(&self) {
        self.authorizations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn client_assertion_accepted(&self) {
        self.client_assertions_accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn client_assertion_refused(&self) {
        self.client_assertions_refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn client_assertion_replay(&self) {
        self.client_assertion_replays.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a DPoP outcome.
    pub(crate) fn dpop(&self, event: DpopEvent) {
        let counter = match event {
            DpopEvent::Accepted => &self.dpop_proofs_accepted,
            DpopEvent::Refused => &self.dpop_proofs_refused,
            DpopEvent::Replay => &self.dpop_replays,
            DpopEvent::NonceDemandedToken => &self.dpop_nonce_demanded_token,
            DpopEvent::NonceDemandedResource => &self.dpop_nonce_demanded_resource,
            DpopEvent::NewJti => &self.dpop_distinct_jtis,
            DpopEvent::BearerForDpopToken => &self.bearer_for_dpop_token,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn resource_body(&self, body: Bytes) {
        lock(&self.records).bodies.push(body);
    }

    pub(crate) fn resource_status(&self, status: u16) {
        *lock(&self.records)
            .resource_calls_by_status
            .entry(status)
            .or_default() += 1;
    }

    pub(crate) fn snapshot(&self) -> MockCounters {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let records = lock(&self.records);
        MockCounters {
            token_requests: load(&self.token_requests),
            client_credentials_grants: load(&self.client_credentials_grants),
            refresh_token_grants: load(&self.refresh_token_grants),
            authorization_code_grants: load(&self.authorization_code_grants),
            token_errors: load(&self.token_errors),
            max_concurrent_token_requests: load(&self.max_concurrent_token_requests),
            resource_calls: load(&self.resource_calls),
            resource_calls_authorized: load(&self.resource_calls_authorized),
            resource_calls_by_status: records.resource_calls_by_status.clone(),
            sends_by_request_id: records.sends_by_request_id.clone(),
            bodies: records.bodies.clone(),
            revocations: load(&self.revocations),
            authorizations: load(&self.authorizations),
            client_assertions_accepted: load(&self.client_assertions_accepted),
            client_assertions_refused: load(&self.client_assertions_refused),
            client_assertion_replays: load(&self.client_assertion_replays),
            dpop_proofs_accepted: load(&self.dpop_proofs_accepted),
            dpop_proofs_refused: load(&self.dpop_proofs_refused),
            dpop_replays: load(&self.dpop_replays),
            dpop_nonce_demanded_token: load(&self.dpop_nonce_demanded_token),
            dpop_nonce_demanded_resource: load(&self.dpop_nonce_demanded_resource),
            dpop_distinct_jtis: load(&self.dpop_distinct_jtis),
            bearer_for_dpop_token: load(&self.bearer_for_dpop_token),
        }
    }

    /// Zeroes every counter. Requests still in flight stay counted as in
    /// flight, so the high-water mark restarts from zero but counts them
    /// again as soon as another token request arrives.
    pub(crate) fn reset(&self) {
        for counter in [
            &self.token_requests,
            &self.client_credentials_grants,
            &self.refresh_token_grants,
            &self.authorization_code_grants,
            &self.token_errors,
            &self.max_concurrent_token_requests,
            &self.resource_calls,
            &self.resource_calls_authorized,
            &self.revocations,
            &self.authorizations,
            &self.client_assertions_accepted,
            &self.client_assertions_refused,
            &self.client_assertion_replays,
            &self.dpop_proofs_accepted,
            &self.dpop_proofs_refused,
            &self.dpop_replays,
            &self.dpop_nonce_demanded_token,
            &self.dpop_nonce_demanded_resource,
            &self.dpop_distinct_jtis,
            &self.bearer_for_dpop_token,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
        let mut records = lock(&self.records);
        records.resource_calls_by_status.clear();
        records.sends_by_request_id.clear();
        records.bodies.clear();
    }
}
