//! Three replicas of an application sharing one rotating credential through Redis.
//!
//! Each replica has its own `CredentialRegistry`, its own `RedisStore` connection and its own
//! HTTP client, as separate processes would; here they are tasks of one process, so the
//! example needs nothing but Redis. They call the mock provider's API for a few seconds
//! with 3-second tokens, and the example prints how many token requests the provider
//! saw: one per refresh, not one per replica, and no refresh token refused.
//!
//! ```sh
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example replicas --features redis
//! # or, with redis-server on PATH, let the example start its own:
//! cargo run --example replicas --features redis
//! ```

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tower::{Layer, ServiceExt};
use tower_oauth2::{
    secret::RefreshToken,
    store::{LeaseSettings, RedisStore},
    Credential, CredentialRegistry, OAuth2Layer, Provider, RefreshPolicy, RefreshTokens,
};
use tower_oauth2_mock::MockServer;

const REPLICAS: usize = 3;
const CALLERS: usize = 50;
const RUN_FOR: Duration = Duration::from_secs(7);

/// A redis-server this example started, stopped when dropped.
struct OwnRedis(Child);

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `REDIS_URL`, or a redis-server of our own on a free loopback port.
async fn redis() -> Result<(String, Option<OwnRedis>), tower_oauth2::BoxError> {
    if let Ok(url) = std::env::var("REDIS_URL") {
        return Ok((url, None));
    }
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("set REDIS_URL, or put redis-server on PATH ({e})"))?;
    let own = OwnRedis(child);
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok((format!("redis://127.0.0.1:{port}"), Some(own)));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err("redis-server did not start".into())
}

#[tokio::main]
async fn main() -> Result<(), tower_oauth2::BoxError> {
    let (redis_url, _own_redis) = redis().await?;
    let server = MockServer::builder()
        .client("client", "secret")
        .token_lifetime(Duration::from_secs(3))
        .rotate_refresh_tokens(true)
        .start()
        .await?;
    let first_refresh_token = server.issue_refresh_token("client", "read");
    // A prefix of this run only, so that a shared Redis holds no older tokens for it.
    let prefix = format!("replicas-example-{}", std::process::id());

    let served = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut replicas = Vec::new();
    for _ in 0..REPLICAS {
        let provider = Provider::standard(server.token_url())
            .name("mock")
            .api(server.base_url())
            .refresh_tokens(RefreshTokens::Rotated);
        let store = RedisStore::builder(&redis_url)
            .prefix(&prefix)
            .lease_settings(LeaseSettings::new(Duration::from_secs(5), Duration::from_secs(8)))
            .build()?;
        let credential = Credential::refresh_token(
            provider,
            "client",
            Some("secret".into()),
            RefreshToken::new(first_refresh_token.clone()),
        )
        // Refreshed 1 s before expiry, without jitter: every 2 s.
        .refresh_policy(
            RefreshPolicy::default()
                .margin(Duration::from_secs(1))
                .max_jitter(Duration::ZERO)
                // Shorter than the 5 s lease, as the registry requires.
                .timeout(Duration::from_secs(3)),
        )
        .store(store);
        let credentials = CredentialRegistry::new(credential)?;
        let client = OAuth2Layer::new(credentials)
            .layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());
        for _ in 0..CALLERS {
            let (client, url) = (client.clone(), server.api_url("/things"));
            let (served, failed) = (served.clone(), failed.clone());
            replicas.push(tokio::spawn(async move {
                let until = tokio::time::Instant::now() + RUN_FOR;
                while tokio::time::Instant::now() < until {
                    let request = Request::get(&url).body(Full::default()).expect("a valid request");
                    match client.clone().oneshot(request).await {
                        Ok(response) if response.status() == 200 => served.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }));
        }
    }
    for replica in replicas {
        replica.await?;
    }

    let counters = server.counters();
    println!(
        "{REPLICAS} replicas × {CALLERS} callers for {RUN_FOR:?} with 3 s tokens: {} requests served, {} failed",
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    println!(
        "token requests at the provider: {} ({} refresh token grants, {} refused); one every 2 s for all replicas",
        counters.token_requests, counters.refresh_token_grants, counters.token_errors
    );
    Ok(())
}
