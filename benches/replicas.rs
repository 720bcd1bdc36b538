//! The cached path with a `RedisStore` configured against the same path with the default
//! `MemoryStore`: Redis is read and written only to load, refresh and save, so the two
//! should cost the same (a ratio of about 1).
//!
//! The Redis variant's token is fetched and saved through a real redis-server (started
//! here on a free loopback port; `scripts/test` installs it), which is then stopped
//! before measuring: a cached call that touched Redis would no longer complete on its
//! first poll, and `drive` would panic.
//!
//! Then the latency a refresh through the lease adds on a replica that waits for
//! another's: two replicas (each its own `Credentials` and `RedisStore`) over HTTP to
//! the mock provider, whose token endpoint answers after 50 ms; in each of 100 rounds
//! every access token is revoked, the holder's request starts, and 5 ms later the
//! waiter's. Printed: the waiter's latency against an ordinary request's, next to the
//! token endpoint's latency plus three Redis round trips (PING).

#[allow(dead_code)] // The helpers of the other benches.
mod common;
#[path = "../tests/redis_support/mod.rs"]
mod redis_support;

use std::{convert::Infallible, hint::black_box, time::Duration};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt};
use tower_oauth2::{
    store::{MemoryStore, RedisStore, TokenStore},
    Credential, Credentials, OAuth2, OAuth2Layer, Provider, TokenTransport,
};

use common::{drive, request, runtime, Answer, API_URI};
use redis_support::RedisServer;

/// A token endpoint that answers at once.
fn token_endpoint() -> TokenTransport {
    TokenTransport::new(tower::service_fn(|_req: Request<Full<Bytes>>| async {
        let body = r#"{"access_token":"bench-token","token_type":"Bearer","expires_in":3600}"#;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
    }))
}

/// The layer over [`Answer`] with one credential kept in `store`, its token fetched and
/// its header copy built.
fn warm(rt: &tokio::runtime::Runtime, store: impl TokenStore) -> OAuth2<Answer> {
    let provider = Provider::standard("https://auth.example.com/token").api("https://api.example.com");
    let credentials = Credentials::builder()
        .credential(Credential::client_credentials(provider, "bench-client", "bench-secret").store(store))
        .transport(token_endpoint())
        .build()
        .expect("valid credentials");
    let layer = OAuth2Layer::new(credentials);
    rt.block_on(async {
        let mut svc = layer.layer(Answer);
        for _ in 0..2 {
            ServiceExt::<Request<()>>::ready(&mut svc).await.expect("ready");
            svc.call(request(API_URI)).await.expect("warm-up call");
        }
        assert_eq!(
            layer.credentials().stats()[0].token_requests,
            1,
            "one token request"
        );
        svc
    })
}

fn replicas(c: &mut Criterion) {
    let rt = runtime();
    let _context = rt.enter();
    let mut group = c.benchmark_group("replicas");

    let mut memory = warm(&rt, MemoryStore::new());
    group.bench_function("memory_store", |b| {
        b.iter(|| black_box(drive(&mut memory, request(API_URI))))
    });

    let mut server = RedisServer::start();
    let store = RedisStore::builder(server.url())
        .command_timeout(Duration::from_millis(200))
        .build()
        .expect("a Redis URL");
    let mut redis = warm(&rt, store);
    server.stop();
    group.bench_function("redis_store_redis_stopped", |b| {
        b.iter(|| black_box(drive(&mut redis, request(API_URI))))
    });

    group.finish();
}

/// Percentile `p` (0–100) of sorted `values`.
fn percentile(values: &[Duration], p: usize) -> Duration {
    values[(values.len() - 1) * p / 100]
}

fn lease_wait() {
    use hyper_util::{client::legacy::Client, rt::TokioExecutor};
    use tower_oauth2_mock::MockServer;

    const ROUNDS: usize = 100;
    let token_latency = Duration::from_millis(50);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let redis = RedisServer::start();
        let mock = MockServer::builder()
            .client("client", "secret")
            .start()
            .await
            .expect("mock server");
        let replica = || {
            let provider = Provider::standard(mock.token_url()).name("mock").api(mock.base_url());
            let store = RedisStore::new(redis.url()).expect("a Redis URL");
            let credentials =
                Credentials::new(Credential::client_credentials(provider, "client", "secret").store(store))
                    .expect("valid credentials");
            OAuth2Layer::new(credentials).layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>())
        };
        let (holder, waiter) = (replica(), replica());
        let url = mock.api_url("/things");
        let call = |client: &OAuth2<Client<_, Full<Bytes>>>| {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let started = tokio::time::Instant::now();
                let response = client
                    .oneshot(Request::get(&url).body(Full::default()).expect("a request"))
                    .await
                    .expect("a response");
                assert_eq!(response.status(), 200);
                started.elapsed()
            }
        };
        call(&holder).await;
        call(&waiter).await;
        mock.set_token_latency(token_latency);

        let mut ordinary = Vec::new();
        for _ in 0..ROUNDS {
            ordinary.push(call(&waiter).await);
        }
        let mut pings = Vec::new();
        let mut connection = redis::Client::open(redis.url())
            .expect("a Redis URL")
            .get_multiplexed_async_connection()
            .await
            .expect("Redis");
        for _ in 0..ROUNDS {
            let started = tokio::time::Instant::now();
            let _: String = redis::cmd("PING").query_async(&mut connection).await.expect("PONG");
            pings.push(started.elapsed());
        }

        mock.reset_counters();
        let (mut holders, mut waiters) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            mock.revoke_all_access_tokens();
            let first = tokio::spawn(call(&holder));
            tokio::time::sleep(Duration::from_millis(5)).await;
            waiters.push(call(&waiter).await);
            holders.push(first.await.expect("the holder's call"));
        }
        let counters = mock.counters();
        for values in [&mut ordinary, &mut pings, &mut holders, &mut waiters] {
            values.sort();
        }
        let ping = percentile(&pings, 50);
        let base = percentile(&ordinary, 50);
        let added = percentile(&waiters, 99).saturating_sub(base);
        let bound = token_latency + 3 * ping;
        println!("replicas/lease_wait ({ROUNDS} rounds, token endpoint {token_latency:?})");
        println!("  token requests: {} ({} refused)", counters.token_requests, counters.token_errors);
        println!("  Redis PING p50 {ping:?}; ordinary request p50 {base:?}");
        println!(
            "  holder p50 {:?} p99 {:?}; waiter p50 {:?} p99 {:?}",
            percentile(&holders, 50),
            percentile(&holders, 99),
            percentile(&waiters, 50),
            percentile(&waiters, 99)
        );
        println!(
            "  waiter's p99 added latency {added:?}, against token endpoint + 3 Redis round trips {bound:?}: {}",
            if added <= bound { "within" } else { "over" }
        );
    });
}

fn lease_wait_bench(_c: &mut Criterion) {
    lease_wait();
}

criterion_group!(benches, replicas, lease_wait_bench);
criterion_main!(benches);
