//! The cached path with a `RedisStore` configured against the same path with the default
//! `MemoryStore`: Redis is read and written only to load, refresh and save, so the two
//! should cost the same (a ratio of about 1).
//!
//! The Redis variant's token is fetched and saved through a real redis-server (started
//! here on a free loopback port; `scripts/test` installs it), which is then stopped
//! before measuring: a cached call that touched Redis would no longer complete on its
//! first poll, and `drive` would panic.

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

criterion_group!(benches, replicas);
criterion_main!(benches);
