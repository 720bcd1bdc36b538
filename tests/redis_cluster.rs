//! `RedisStore` on a real Redis Cluster of three primaries (redis-server processes with
//! `--cluster-enabled yes`, joined by `redis-cli --cluster create`): records, the lease,
//! fencing, change notifications and two registries sharing a credential, for
//! credentials whose hash slots live on different nodes.
#![cfg(all(feature = "redis", unix))]
// Redis is a real process on the real clock.
#![allow(clippy::disallowed_methods)]

mod redis_support;
mod support;

use std::{
    collections::BTreeSet,
    time::{Duration, SystemTime},
};

use futures_util::future::join_all;
use redis_support::{key, RedisCluster};
use support::{get, no_jitter, Api, TokenEndpoint, CLIENT_SECRET};
use tower::{Layer, ServiceExt};
use tower_oauth2::{
    secret::{AccessToken, RefreshToken},
    store::{LeaseSettings, RedisStore, RefreshCoordination, StoreErrorKind, StoredTokens, TokenStore},
    Credential, CredentialKey, CredentialRegistry, OAuth2Layer, RefreshPolicy,
};

fn tokens(refresh: &str) -> StoredTokens {
    StoredTokens::new()
        .with_refresh_token(RefreshToken::new(refresh))
        .with_access_token(AccessToken::new(format!("at-of-{refresh}")))
        .with_expires_at(SystemTime::now() + Duration::from_secs(3600))
        .with_scope("read")
}

fn store(cluster: &RedisCluster, ttl: Duration) -> RedisStore {
    RedisStore::cluster_builder(cluster.urls())
        .lease_settings(LeaseSettings::new(ttl, Duration::from_secs(5)))
        // Waiters must be woken by the save's message, not by polling.
        .poll_interval(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Keys of credentials whose hash slots live on each of the cluster's three nodes.
fn keys_on_every_node(cluster: &RedisCluster, store: &RedisStore) -> Vec<CredentialKey> {
    let mut ports = BTreeSet::new();
    let mut keys = Vec::new();
    for n in 0..200 {
        let key = key(&format!("user-{n}"));
        if ports.insert(cluster.port_of(&store.keys(&key).tag)) {
            keys.push(key);
        }
        if ports.len() == 3 {
            return keys;
        }
    }
    panic!("200 subjects hashed to {ports:?} only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_leases_and_fencing_work_for_credentials_on_every_node() {
    let cluster = RedisCluster::start();
    let (one, two) = (
        store(&cluster, Duration::from_secs(10)),
        store(&cluster, Duration::from_secs(10)),
    );
    let keys = keys_on_every_node(&cluster, &one);
    assert_eq!(keys.len(), 3);
    for key in &keys {
        // Records, between two connections.
        assert_eq!(two.load(key).await.unwrap(), None);
        let saved = tokens("rt-0");
        one.save(key, &saved).await.unwrap();
        assert_eq!(two.load(key).await.unwrap(), Some(saved));

        // One lease at a time; the holder's fenced save goes through.
        let lease = one.try_lease(key).await.unwrap().unwrap();
        assert_eq!(two.try_lease(key).await.unwrap(), None);
        assert!(one.save_fenced(key, &tokens("rt-1"), &lease).await.unwrap());
        one.release(key, &lease).await.unwrap();

        // A holder whose lease was replaced cannot write.
        let newer = two.try_lease(key).await.unwrap().unwrap();
        assert!(newer.fence > lease.fence);
        assert!(!one.save_fenced(key, &tokens("rt-stale"), &lease).await.unwrap());
        assert_eq!(
            one.load(key)
                .await
                .unwrap()
                .unwrap()
                .refresh_token
                .unwrap()
                .secret(),
            "rt-1"
        );

        // A waiter is woken by the holder's save on the credential's node, at once.
        let waiter = {
            let (one, key) = (one.clone(), key.clone());
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                one.changed(&key, Duration::from_secs(10)).await.unwrap();
                started.elapsed()
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(two.save_fenced(key, &tokens("rt-2"), &newer).await.unwrap());
        let woken = waiter.await.unwrap();
        assert!(woken < Duration::from_secs(2), "woken after {woken:?}");
        two.release(key, &newer).await.unwrap();

        one.delete(key).await.unwrap();
        assert_eq!(two.load(key).await.unwrap(), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_server_store_pointed_at_one_node_fails_for_slots_elsewhere() {
    let cluster = RedisCluster::start();
    let clustered = store(&cluster, Duration::from_secs(10));
    let keys = keys_on_every_node(&cluster, &clustered);
    let node = &cluster.nodes[0];
    let single = RedisStore::new(node.url()).unwrap();
    let mut refused = 0;
    for key in &keys {
        match single.load(key).await {
            Ok(_) => assert_eq!(cluster.port_of(&single.keys(key).tag), node.port()),
            Err(err) => {
                assert_eq!(err.kind(), StoreErrorKind::Other, "{err}");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 2, "the two credentials on the other nodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_registries_on_a_cluster_make_one_token_request_between_them() {
    let cluster = RedisCluster::start();
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let registry = || {
        let provider = support::provider();
        CredentialRegistry::builder()
            .credential(
                Credential::client_credentials(provider, "client-id", CLIENT_SECRET)
                    .refresh_policy(RefreshPolicy::default().random(no_jitter)),
            )
            .store(store(&cluster, Duration::from_secs(15)))
            .transport(endpoint.transport())
            .build()
            .unwrap()
    };
    let replicas = [registry(), registry()];
    let calls = replicas.iter().flat_map(|credentials| {
        (0..20).map(move |i| {
            let client = OAuth2Layer::new(credentials.clone()).layer(Api::new());
            async move { client.oneshot(get(&i.to_string())).await.map(|r| r.status()) }
        })
    });
    for result in join_all(calls).await {
        assert_eq!(result.unwrap(), 200);
    }
    assert_eq!(endpoint.requests(), 1, "one token request for both replicas");
}
