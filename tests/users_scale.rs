//! Users at scale: each of many users gets their own token, at most `max_users` stay in
//! memory, idle ones are evicted on Tokio's clock, and nothing is lost by it: an evicted
//! user comes back from the store, is never evicted while a refresh of theirs is in
//! flight, still counts in the stats, and can still be logged out.

mod support;

use support::{no_jitter, store::Hooked, Api, TokenEndpoint, API};

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use futures_util::future::join_all;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt};
use tower_oauth2::{
    provider::Revocation,
    secret::{AccessToken, RefreshToken},
    store::{StoredTokens, TokenStore},
    CredentialRegistry, CredentialStats, Error, OAuth2, OAuth2Layer, Provider, RefreshPolicy, Revoked,
    Subject, TokenTransport, UserCredentialTemplate,
};

const PROVIDER: &str = "example";

fn provider() -> Provider {
    Provider::standard("https://auth.example.com/oauth/token")
        .name(PROVIDER)
        .api(API)
        .revocation(Revocation::Rfc7009 {
            url: "https://auth.example.com/oauth/revoke".into(),
        })
}

fn users() -> UserCredentialTemplate {
    UserCredentialTemplate::new(provider(), "client-id", Some("client-secret".into())).refresh_policy(
        RefreshPolicy::default()
            .random(no_jitter)
            .timeout(Duration::from_secs(1_000))
            .backoff(Duration::from_millis(10), Duration::from_millis(50)),
    )
}

/// A store, a token endpoint whose tokens live an hour, and a registry of `users` over
/// both: the scene most tests here start from.
fn scene(users: UserCredentialTemplate) -> (Arc<Hooked>, TokenEndpoint, CredentialRegistry) {
    let store = Arc::new(Hooked::default());
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let credentials = registry(users, &store, endpoint.transport());
    (store, endpoint, credentials)
}

fn registry(
    users: UserCredentialTemplate,
    store: &Arc<Hooked>,
    transport: TokenTransport,
) -> CredentialRegistry {
    CredentialRegistry::builder()
        .users(users)
        .store(Arc::clone(store))
        .transport(transport)
        .build()
        .unwrap()
}

/// What the store keeps after a login: a refresh token, and an access token live for an
/// hour on the wall clock.
#[allow(clippy::disallowed_methods)]
fn stored(access: &str, refresh: &str) -> StoredTokens {
    StoredTokens::new()
        .with_access_token(AccessToken::new(access))
        .with_refresh_token(RefreshToken::new(refresh))
        .with_expires_at(SystemTime::now() + Duration::from_secs(3600))
}

fn refresh_only(refresh: &str) -> StoredTokens {
    StoredTokens::new().with_refresh_token(RefreshToken::new(refresh))
}

async fn store_for(credentials: &CredentialRegistry, store: &Hooked, subject: &str, tokens: StoredTokens) {
    let key = credentials.user_key(PROVIDER, subject).unwrap();
    store.save(&key, &tokens).await.unwrap();
}

/// A GET to the API as `subject`.
fn get_as(subject: &str) -> Request<Full<Bytes>> {
    let mut request = Request::get(format!("{API}/v1/things"))
        .body(Full::default())
        .unwrap();
    request.extensions_mut().insert(Subject::new(subject));
    request
}

async fn call<S>(client: &mut OAuth2<S>, subject: &str) -> u16
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone,
{
    let response = client.ready().await.unwrap().call(get_as(subject)).await;
    response.unwrap().status().as_u16()
}

/// The users' entries of `stats`: those in memory, and the one of the users evicted.
fn users_stats(credentials: &CredentialRegistry) -> (Vec<CredentialStats>, CredentialStats) {
    let mut stats = credentials.stats();
    let evicted = stats.pop().unwrap();
    assert_eq!(
        evicted.credential,
        format!("{PROVIDER}/client-id/authorization_code/ (evicted users)")
    );
    (stats, evicted)
}

fn in_memory(credentials: &CredentialRegistry) -> usize {
    users_stats(credentials).0.len()
}

fn is_in_memory(credentials: &CredentialRegistry, subject: &str) -> bool {
    users_stats(credentials)
        .0
        .iter()
        .any(|s| s.credential.ends_with(&format!("/{subject}")))
}

fn total(credentials: &CredentialRegistry, count: impl Fn(&CredentialStats) -> u64) -> u64 {
    credentials.stats().iter().map(count).sum()
}

/// Sleeps on the paused clock, then lets whatever woke at the same instant run (a sweep).
async fn sleep(seconds: u64) {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

// =====================================================================================
// Many users

/// A token endpoint that answers a refresh with `at-<refresh token>` (and the same
/// refresh token), after yielding so that more requests of the same user arrive.
fn echo_endpoint(requests: Arc<AtomicUsize>) -> TokenTransport {
    TokenTransport::new(tower::service_fn(move |req: Request<Full<Bytes>>| {
        let requests = Arc::clone(&requests);
        async move {
            requests.fetch_add(1, Ordering::SeqCst);
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let refresh = form_urlencoded::parse(&body)
                .find(|(name, _)| name == "refresh_token")
                .map(|(_, value)| value.into_owned())
                .expect("a refresh token grant");
            tokio::task::yield_now().await;
            let body = format!(
                r#"{{"access_token":"at-{refresh}","token_type":"Bearer","expires_in":3600,"refresh_token":"{refresh}"}}"#
            );
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
        }
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_users_from_many_tasks_each_get_their_own_token_once() {
    const USERS: usize = 1_000;
    const TASKS: usize = 64;
    let store = Arc::new(Hooked::default());
    let token_requests = Arc::new(AtomicUsize::new(0));
    let credentials = registry(users(), &store, echo_endpoint(Arc::clone(&token_requests)));
    for user in 0..USERS {
        store_for(
            &credentials,
            &store,
            &format!("user-{user}"),
            refresh_only(&format!("rt-{user}")),
        )
        .await;
    }
    let wrong = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&wrong);
    let api = tower::service_fn(move |req: Request<Full<Bytes>>| {
        let subject = req.extensions().get::<Subject>().unwrap().as_str().to_owned();
        let expected = format!("Bearer at-rt-{}", subject.strip_prefix("user-").unwrap());
        let authorization = req.headers()["authorization"].to_str().unwrap().to_owned();
        if authorization != expected {
            seen.lock().unwrap().push((subject, authorization));
        }
        async { Ok::<_, Infallible>(Response::new(Full::<Bytes>::default())) }
    });
    let client = OAuth2Layer::new(credentials.clone()).layer(api);

    // Each task goes through every user, starting at its own place: every user is asked
    // for by several tasks at once, on both threads.
    let round = || {
        join_all((0..TASKS).map(|task| {
            let mut client = client.clone();
            tokio::spawn(async move {
                for i in 0..USERS {
                    let user = (task * 16 + i) % USERS;
                    assert_eq!(call(&mut client, &format!("user-{user}")).await, 200);
                }
            })
        }))
    };
    for task in round().await {
        task.unwrap();
    }
    assert_eq!(
        *wrong.lock().unwrap(),
        vec![],
        "requests with another user's token"
    );
    assert_eq!(
        token_requests.load(Ordering::SeqCst),
        USERS,
        "one refresh per user"
    );
    assert_eq!(store.loads(), USERS, "one store read per user");
    let (live, evicted) = users_stats(&credentials);
    assert_eq!(live.len(), USERS);
    assert!(live
        .iter()
        .all(|s| s.token_requests == 1 && s.refresh_token_requests == 1));
    assert_eq!(evicted.token_requests, 0);

    // Now every token is in memory: each request of a second round is a cache hit.
    let hits = total(&credentials, |s| s.cache_hits);
    for task in round().await {
        task.unwrap();
    }
    assert_eq!(*wrong.lock().unwrap(), vec![]);
    assert_eq!(
        total(&credentials, |s| s.cache_hits) - hits,
        (TASKS * USERS) as u64
    );
    assert_eq!(token_requests.load(Ordering::SeqCst), USERS);
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_users_with_a_bound_of_a_thousand_keep_at_most_a_thousand_in_memory() {
    const USERS: usize = 10_000;
    let (store, endpoint, credentials) = scene(users().max_users(1_000));
    // The support API accepts any `tok-N`.
    for user in 0..USERS {
        let tokens = stored(&format!("tok-{}", 1_000_000 + user), &format!("rt-{user}"));
        store_for(&credentials, &store, &format!("user-{user}"), tokens).await;
    }
    let api = Api::new();
    let mut client = OAuth2Layer::new(credentials.clone()).layer(api.clone());
    let mut most = 0;
    for user in 0..USERS {
        // Two requests each: the first reads the store, the second is a cache hit.
        for _ in 0..2 {
            assert_eq!(call(&mut client, &format!("user-{user}")).await, 200);
        }
        if user % 250 == 249 {
            most = most.max(in_memory(&credentials));
        }
    }
    assert!(most <= 1_000, "{most} users in memory");
    // Kept per shard of the table, so eviction starts a little before the whole count.
    assert!(most >= 900, "only {most} users in memory");
    // Not one token request: every user's token came from the store.
    assert_eq!(endpoint.requests(), 0);
    assert_eq!(store.loads(), USERS);
    // The users evicted still count: every second request was a hit.
    let (live, evicted) = users_stats(&credentials);
    assert!(evicted.cache_hits >= 9_000, "{evicted:?}");
    assert_eq!(total(&credentials, |s| s.cache_hits), USERS as u64);
    assert_eq!(
        live.iter().map(|s| s.cache_hits).sum::<u64>() + evicted.cache_hits,
        USERS as u64
    );
    assert!(api.seen().iter().enumerate().all(|(i, seen)| {
        seen.authorization.as_deref() == Some(&format!("Bearer tok-{}", 1_000_000 + i / 2))
    }));

    // An evicted user comes back from the store.
    assert!(!is_in_memory(&credentials, "user-0"));
    assert_eq!(call(&mut client, "user-0").await, 200);
    assert_eq!(store.loads(), USERS + 1);
    assert_eq!(endpoint.requests(), 0);
}

// =====================================================================================
// Time-to-idle, on Tokio's clock

#[tokio::test(start_paused = true)]
async fn an_idle_user_is_evicted_after_the_time_to_idle_and_not_before() {
    let (store, endpoint, credentials) = scene(users().idle_after(Duration::from_secs(60)));
    for user in ["alice", "bob"] {
        store_for(&credentials, &store, user, stored("tok-1", &format!("rt-{user}"))).await;
    }
    let mut client = OAuth2Layer::new(credentials.clone()).layer(Api::new());
    for user in ["alice", "bob"] {
        assert_eq!(call(&mut client, user).await, 200);
    }
    // Bob is never evicted before his time-to-idle; Alice keeps working.
    for second in 1..=60 {
        sleep(1).await;
        if second % 20 == 0 {
            assert_eq!(call(&mut client, "alice").await, 200);
        }
        assert!(
            is_in_memory(&credentials, "bob"),
            "bob evicted {second} s after his last use"
        );
    }
    // And evicted within one and a half times it.
    sleep(31).await;
    assert!(
        !is_in_memory(&credentials, "bob"),
        "bob still in memory 91 s after his last use"
    );
    assert!(
        is_in_memory(&credentials, "alice"),
        "alice was last used 31 s ago"
    );
    sleep(90).await;
    assert_eq!(in_memory(&credentials), 0);
    assert_eq!(endpoint.requests(), 0);
    assert_eq!(store.loads(), 2);
}

// =====================================================================================
// Nothing is lost

#[tokio::test(start_paused = true)]
async fn an_evicted_user_comes_back_from_the_store_with_no_token_request() {
    let (store, endpoint, credentials) = scene(users().idle_after(Duration::from_secs(60)));
    // Only a refresh token to begin with: the first request refreshes, and the new
    // tokens are stored before they are used.
    store_for(&credentials, &store, "alice", refresh_only("rt-alice")).await;
    let api = Api::new();
    let mut client = OAuth2Layer::new(credentials.clone()).layer(api.clone());
    assert_eq!(call(&mut client, "alice").await, 200);
    assert_eq!(endpoint.requests(), 1);

    sleep(120).await;
    assert!(!is_in_memory(&credentials, "alice"), "evicted");

    for _ in 0..3 {
        assert_eq!(call(&mut client, "alice").await, 200);
    }
    assert_eq!(endpoint.requests(), 1, "the stored token was used");
    assert_eq!(store.loads(), 2, "one store read per life in memory");
    let seen: Vec<_> = api.seen().into_iter().map(|s| s.authorization.unwrap()).collect();
    assert_eq!(seen, vec!["Bearer tok-1"; 4]);
}

#[tokio::test(start_paused = true)]
async fn stats_add_up_across_an_eviction_and_count_it_once() {
    let (store, endpoint, credentials) = scene(users().idle_after(Duration::from_secs(60)));
    store_for(&credentials, &store, "alice", refresh_only("rt-alice")).await;
    let mut client = OAuth2Layer::new(credentials.clone()).layer(Api::new());

    // N requests: a refresh, then N - 1 hits.
    const N: u64 = 5;
    for _ in 0..N {
        assert_eq!(call(&mut client, "alice").await, 200);
    }
    let (live, evicted) = users_stats(&credentials);
    assert_eq!(
        (live[0].cache_hits, live[0].token_requests, evicted.cache_hits),
        (N - 1, 1, 0)
    );

    sleep(120).await;
    let (live, evicted) = users_stats(&credentials);
    assert!(live.is_empty());
    assert_eq!(
        (
            evicted.cache_hits,
            evicted.token_requests,
            evicted.refresh_token_requests
        ),
        (N - 1, 1, 1)
    );

    // M more: a store read, then M - 1 hits, counted in her own entry again.
    const M: u64 = 7;
    for _ in 0..M {
        assert_eq!(call(&mut client, "alice").await, 200);
    }
    let (live, evicted) = users_stats(&credentials);
    assert_eq!((live[0].cache_hits, live[0].token_requests), (M - 1, 0));
    assert_eq!((evicted.cache_hits, evicted.token_requests), (N - 1, 1));
    assert_eq!(total(&credentials, |s| s.cache_hits), N + M - 2);
    assert_eq!(total(&credentials, |s| s.token_requests), 1);
    assert_eq!(endpoint.requests(), 1);

    // A second eviction adds to the same entry.
    sleep(120).await;
    let (live, evicted) = users_stats(&credentials);
    assert!(live.is_empty());
    assert_eq!((evicted.cache_hits, evicted.token_requests), (N + M - 2, 1));
}

/// How a test tries to evict Alice while her refresh is in flight.
#[derive(Debug, Clone, Copy)]
enum Evict {
    /// Her time-to-idle passes, many times over.
    Idle,
    /// Other users take her place (the bound is one user).
    Count,
}

/// Alice's refresh is in flight (the token endpoint takes 100 s) when something would
/// evict her, and she asks again meanwhile. A second state would mean a second refresh
/// presenting the same refresh token, which a rotating provider (RFC 9700 §4.14.2)
/// answers by revoking the whole grant.
async fn evicting_during_a_refresh(evict: Evict) {
    let store = Arc::new(Hooked::default());
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    endpoint.set_delay(Duration::from_secs(100));
    let users = users().idle_after(Duration::from_secs(10)).max_users(1);
    let credentials = registry(users, &store, endpoint.transport());
    store_for(&credentials, &store, "alice", refresh_only("rt-alice")).await;
    let api = Api::new();
    let client = OAuth2Layer::new(credentials.clone()).layer(api.clone());

    let first = tokio::spawn(client.clone().oneshot(get_as("alice")));
    sleep(1).await;
    assert_eq!(endpoint.requests(), 1, "{evict:?}: the refresh is in flight");
    let mut in_memory_after = None;
    match evict {
        Evict::Idle => sleep(60).await,
        Evict::Count => {
            for other in ["bob", "carol", "dave"] {
                // Nobody logged them in: not authorized, after a store read.
                match client.clone().oneshot(get_as(other)).await {
                    Err(Error::NotAuthorized(_)) => {}
                    other => panic!("{evict:?}: {other:?}"),
                }
                // Until its backoff ends, a failed token request's task holds its
                // state, which pins it.
                sleep(1).await;
            }
            in_memory_after = Some(users_stats(&credentials).0);
        }
    }
    let kept = is_in_memory(&credentials, "alice");
    let again = tokio::spawn(client.clone().oneshot(get_as("alice")));
    assert_eq!(first.await.unwrap().unwrap().status(), 200);
    assert_eq!(again.await.unwrap().unwrap().status(), 200);

    assert_eq!(endpoint.requests(), 1, "{evict:?}: one refresh for both requests");
    assert_eq!(endpoint.request_bodies()[0].matches("rt-alice").count(), 1);
    let seen: Vec<_> = api.seen().into_iter().map(|s| s.authorization.unwrap()).collect();
    assert_eq!(
        seen,
        vec!["Bearer tok-1"; 2],
        "{evict:?}: both used the refresh in flight"
    );
    let others = match evict {
        Evict::Idle => 0,
        Evict::Count => 3,
    };
    assert_eq!(
        store.loads(),
        1 + others,
        "{evict:?}: Alice's tokens were read once"
    );
    assert_eq!(total(&credentials, |s| s.token_requests), 1, "{evict:?}");
    assert!(kept, "{evict:?}: evicted with her refresh in flight");
    if let Some(live) = in_memory_after {
        // The bound did evict: only Alice (pinned) and the last one were left.
        let names: Vec<_> = live
            .iter()
            .map(|s| s.credential.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["alice", "dave"]);
    }
}

#[tokio::test(start_paused = true)]
async fn a_user_whose_refresh_is_in_flight_is_not_evicted_when_idle() {
    evicting_during_a_refresh(Evict::Idle).await;
}

#[tokio::test(start_paused = true)]
async fn a_user_whose_refresh_is_in_flight_is_not_evicted_by_the_count_bound() {
    evicting_during_a_refresh(Evict::Count).await;
}

#[tokio::test(start_paused = true)]
async fn logging_out_an_evicted_user_revokes_their_stored_tokens() {
    let (store, endpoint, credentials) = scene(users().idle_after(Duration::from_secs(60)));
    store_for(&credentials, &store, "alice", stored("tok-999", "rt-alice")).await;
    let mut client = OAuth2Layer::new(credentials.clone()).layer(Api::new());
    assert_eq!(call(&mut client, "alice").await, 200);
    sleep(120).await;
    assert!(!is_in_memory(&credentials, "alice"));

    let revoked = credentials.logout(PROVIDER, "alice").await.unwrap();
    assert_eq!(revoked, Revoked::AtProvider { tokens: 2 });
    let revocations = endpoint.revocations();
    assert_eq!(revocations.len(), 2, "{revocations:?}");
    assert!(revocations[0].contains("token=rt-alice") && revocations[0].contains("hint=refresh_token"));
    assert!(revocations[1].contains("token=tok-999") && revocations[1].contains("hint=access_token"));
    assert_eq!(endpoint.requests(), 0);
    let key = credentials.user_key(PROVIDER, "alice").unwrap();
    assert!(
        store.load(&key).await.unwrap().is_none(),
        "deleted from the store"
    );
    match client.clone().oneshot(get_as("alice")).await {
        Err(Error::NotAuthorized(_)) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn invalidate_all_reaches_the_users_in_memory() {
    let (store, endpoint, credentials) = scene(users().idle_after(Duration::from_secs(60)));
    for user in ["alice", "bob", "carol"] {
        store_for(&credentials, &store, user, refresh_only(&format!("rt-{user}"))).await;
    }
    let mut client = OAuth2Layer::new(credentials.clone()).layer(Api::new());
    for user in ["alice", "bob", "carol"] {
        assert_eq!(call(&mut client, user).await, 200);
    }
    assert_eq!(endpoint.requests(), 3);
    // Carol goes idle and is evicted; Alice and Bob stay.
    for _ in 0..4 {
        sleep(30).await;
        assert_eq!(call(&mut client, "alice").await, 200);
        assert_eq!(call(&mut client, "bob").await, 200);
    }
    assert!(!is_in_memory(&credentials, "carol"));
    assert_eq!(endpoint.requests(), 3);

    credentials.invalidate_all();
    for user in ["alice", "bob", "carol"] {
        assert_eq!(call(&mut client, user).await, 200);
    }
    // Alice and Bob refreshed; Carol has nothing cached here and read her stored token.
    assert_eq!(endpoint.requests(), 5);
    let (live, _) = users_stats(&credentials);
    let requests: Vec<_> = live.iter().map(|s| s.refresh_token_requests).collect();
    assert_eq!(requests, vec![2, 2, 0], "alice, bob, carol");
}

#[test]
fn no_room_for_any_user_or_no_time_in_memory_is_a_configuration_error() {
    for (users, what) in [
        (users().max_users(0), "`max_users` is zero"),
        (users().idle_after(Duration::ZERO), "`idle_after` is zero"),
    ] {
        match CredentialRegistry::builder()
            .users(users)
            .transport(TokenEndpoint::default().transport())
            .build()
        {
            Err(Error::Config(err)) => assert!(err.to_string().contains(what), "{err}"),
            other => panic!("{what}: {other:?}"),
        }
    }
    let users = users();
    assert_eq!(users.idle_after_ref(), Duration::from_secs(600));
    assert_eq!(users.max_users_ref(), 10_000);
}

#[tokio::test(start_paused = true)]
async fn no_bound_at_all_is_served_without_a_panic() {
    let users = users().max_users(usize::MAX).idle_after(Duration::MAX);
    let (store, endpoint, credentials) = scene(users);
    store_for(&credentials, &store, "alice", refresh_only("rt-alice")).await;
    let mut client = OAuth2Layer::new(credentials.clone()).layer(Api::new());
    assert_eq!(call(&mut client, "alice").await, 200);
    sleep(365 * 24 * 3600).await;
    assert_eq!(call(&mut client, "alice").await, 200);
    assert!(is_in_memory(&credentials, "alice"));
    // One refresh for the stored refresh token, one after the hour-long token expired.
    assert_eq!(endpoint.requests(), 2);
}
