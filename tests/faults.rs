//! Faults inside the token machinery never wedge a credential: a panic in the token
//! request's task (the transport, the store, a change hook) or a runtime that shuts down
//! in the middle of a refresh is counted as one failure, and the next request (after
//! the backoff) starts a fresh attempt.

mod support;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::runtime::{Builder, Runtime};
use tower::{Layer, ServiceExt};
use tower_oauth2::{
    store::{MemoryStore, Notifying, StoredTokens, TokenStore},
    Credential, CredentialRegistry, Error, OAuth2Layer,
};

use support::*;

/// Past the first backoff (100 ms without jitter) with room to spare.
const PAST_BACKOFF: Duration = Duration::from_secs(1);

fn failures(credentials: &CredentialRegistry) -> u64 {
    credentials.stats()[0].failures
}

fn paused_runtime() -> Runtime {
    Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_panicking_transport_costs_one_failure_not_the_credential() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    endpoint.set_mode(Mode::Panic);
    let credentials = credentials(&endpoint);
    let client = OAuth2Layer::new(credentials.clone()).layer(Api::new());

    let err = client.clone().oneshot(get("a")).await.unwrap_err();
    assert!(matches!(err, Error::Unreachable(_)), "{err}");
    assert_eq!(endpoint.requests(), 1);
    assert_eq!(failures(&credentials), 1, "the panic is counted");

    endpoint.set_mode(Mode::Ok);
    tokio::time::sleep(PAST_BACKOFF).await;
    let response = client.clone().oneshot(get("b")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(endpoint.requests(), 2, "the endpoint is asked again");
    assert_eq!(failures(&credentials), 1);

    // Nothing is left waiting: a revocation does not wait for a request in flight.
    let key = credentials.keys()[0].clone();
    tokio::time::timeout(Duration::from_secs(5), credentials.revoke(&key))
        .await
        .expect("no token request is in flight")
        .unwrap();
}

async fn one_failure_then_recovery(store: impl TokenStore, endpoint: &TokenEndpoint) {
    let credentials = CredentialRegistry::builder()
        .credential(
            Credential::client_credentials(provider(), "client-id", CLIENT_SECRET)
                .refresh_policy(tower_oauth2::RefreshPolicy::default().random(no_jitter)),
        )
        .transport(endpoint.transport())
        .store(store)
        .build()
        .unwrap();
    let client = OAuth2Layer::new(credentials.clone()).layer(Api::new());

    let err = client.clone().oneshot(get("a")).await.unwrap_err();
    assert!(matches!(err, Error::Unreachable(_)), "{err}");
    assert_eq!(failures(&credentials), 1);

    tokio::time::sleep(PAST_BACKOFF).await;
    let response = client.clone().oneshot(get("b")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(endpoint.requests(), 2);
    assert_eq!(failures(&credentials), 1);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_store_costs_one_failure_not_the_credential() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    // The first save panics; the store keeps tokens in memory after that.
    let panics = AtomicUsize::new(1);
    let store = store::Hooked::new(move |operation, _, _| {
        let save = operation == tower_oauth2::store::StoreOperation::Save;
        if save
            && panics
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            panic!("the store panicked (a test fault)");
        }
        Ok(())
    });
    one_failure_then_recovery(store, &endpoint).await;
}

#[tokio::test(start_paused = true)]
async fn a_panicking_change_hook_costs_one_failure_not_the_credential() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&calls);
    let store = Notifying::new(MemoryStore::new(), move |_key, _change| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("the change hook panicked (a test fault)");
        }
    });
    one_failure_then_recovery(store, &endpoint).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

/// A registry that outlives the runtime that started a refresh (a `static` shared by
/// `#[tokio::test]`s, each with its own runtime): the refresh dies with its runtime,
/// and the next runtime gets a fresh attempt.
#[test]
fn a_refresh_cut_off_by_its_runtime_shutting_down_does_not_wedge_the_credential() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    endpoint.set_mode(Mode::Hang);
    let credentials = credentials(&endpoint);
    let api = Api::new();

    let first = paused_runtime();
    first.block_on(async {
        let client = OAuth2Layer::new(credentials.clone()).layer(api.clone());
        let waited = tokio::time::timeout(Duration::from_secs(1), client.oneshot(get("a"))).await;
        assert!(waited.is_err(), "the token endpoint hangs");
    });
    drop(first);
    assert_eq!(endpoint.requests(), 1);
    assert_eq!(failures(&credentials), 1, "the interrupted request is a failure");

    endpoint.set_mode(Mode::Ok);
    paused_runtime().block_on(async {
        // Each paused runtime keeps its own clock: this one must pass the backoff that
        // the first one, a second ahead, set.
        tokio::time::sleep(5 * PAST_BACKOFF).await;
        let client = OAuth2Layer::new(credentials.clone()).layer(api.clone());
        let response = client.oneshot(get("b")).await.unwrap();
        assert_eq!(response.status(), 200);
    });
    assert_eq!(endpoint.requests(), 2);
    assert_eq!(api.seen()[0].authorization.as_deref(), Some("Bearer tok-1"));
}

/// The expiry timer of a token dies with the runtime that installed it. The token is
/// then refreshed by the next runtime that uses it, instead of staying "fresh" past
/// its expiry with nothing left to age it.
#[test]
fn a_token_whose_timer_died_with_its_runtime_is_refreshed_by_the_next_one() {
    let endpoint = TokenEndpoint::new(Duration::from_secs(120));
    let credentials = credentials(&endpoint);
    let api = Api::new();

    let first = paused_runtime();
    first.block_on(async {
        let client = OAuth2Layer::new(credentials.clone()).layer(api.clone());
        assert_eq!(client.oneshot(get("a")).await.unwrap().status(), 200);
    });
    drop(first);
    assert_eq!(endpoint.requests(), 1);

    paused_runtime().block_on(async {
        let client = OAuth2Layer::new(credentials.clone()).layer(api.clone());
        // Still valid: used, and refreshed in the background on this runtime.
        assert_eq!(client.clone().oneshot(get("b")).await.unwrap().status(), 200);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(endpoint.requests(), 2, "one refresh, on the live runtime");
        assert_eq!(client.clone().oneshot(get("c")).await.unwrap().status(), 200);
        // The new token has a live timer: it ages on this runtime's clock.
        tokio::time::sleep(Duration::from_secs(119)).await;
        assert_eq!(client.oneshot(get("d")).await.unwrap().status(), 200);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(
            endpoint.requests(),
            3,
            "the new token was refreshed in its window"
        );
    });
    let seen: Vec<_> = api.seen().into_iter().map(|s| s.authorization.unwrap()).collect();
    assert_eq!(
        seen,
        ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2", "Bearer tok-2"]
    );
}

/// A store holds whatever was written to it: an expiry centuries away (a bug, a
/// tampered file) is believed up to the provider's longest lifetime, not for centuries,
/// and one past what a clock can count is no panic.
#[tokio::test(start_paused = true)]
// Stores keep expiries on the wall clock, which a paused Tokio clock does not move.
#[allow(clippy::disallowed_methods)]
async fn a_stored_expiry_centuries_away_is_believed_for_a_day_at_most() {
    use std::time::SystemTime;
    use tower_oauth2::secret::AccessToken;

    for years in [1_000u64, 50_000_000_000] {
        let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
        let store = MemoryStore::new();
        let credential = Credential::client_credentials(provider(), "client-id", CLIENT_SECRET)
            .refresh_policy(tower_oauth2::RefreshPolicy::default().random(no_jitter));
        let stored = StoredTokens::new()
            .with_access_token(AccessToken::new("tok-1000"))
            .with_expires_at(SystemTime::now() + Duration::from_secs(years * 365 * 24 * 3600));
        store.save(&credential.key(), &stored).await.unwrap();
        let credentials = CredentialRegistry::builder()
            .credential(credential)
            .transport(endpoint.transport())
            .store(store)
            .build()
            .unwrap();
        let api = Api::new();
        let client = OAuth2Layer::new(credentials.clone()).layer(api.clone());

        let _ = client.clone().oneshot(get("restored")).await.unwrap();
        assert_eq!(endpoint.requests(), 0, "{years} years: the stored token is used");
        tokio::time::sleep(Duration::from_secs(24 * 3600 + 1)).await;
        let _ = client.clone().oneshot(get("a day later")).await.unwrap();
        assert_eq!(endpoint.requests(), 1, "{years} years: refreshed within a day");
        let seen: Vec<_> = api.seen().into_iter().map(|s| s.authorization.unwrap()).collect();
        assert_eq!(seen, ["Bearer tok-1000", "Bearer tok-1"], "{years} years");
    }
}
