//! The main demo: concurrent load through the layer, over real HTTP, against the
//! mock provider of tower-oauth2-mock, with short-lived tokens and injected 401s.
//!
//! ```text
//! cargo run --release --example demo [-- --seconds 12 --concurrency 64]
//! ```

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};
use tower_oauth2::{Credential, Credentials, OAuth2Layer, Provider};
use tower_oauth2_mock::{Fault, MockServer};

#[derive(Default)]
struct Tally {
    requests: AtomicU64,
    successes: AtomicU64,
    errors: AtomicU64,
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> Result<(), tower_oauth2::BoxError> {
    let seconds = arg("--seconds", 12);
    let concurrency = arg("--concurrency", 64) as usize;
    let lifetime = Duration::from_secs(4);

    let server = MockServer::builder()
        .client("demo-client", "demo-secret")
        .token_lifetime(lifetime)
        .start()
        .await?;
    let provider = Provider::standard(server.token_url())
        .name("mock")
        .api(server.base_url());
    let credentials = Credentials::new(
        Credential::client_credentials(provider, "demo-client", "demo-secret").scopes(["read"]),
    )?;
    let client = OAuth2Layer::new(credentials.clone())
        .layer(Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>());

    println!("tower-oauth2 demo");
    println!("  mock provider      {}", server.base_url());
    println!(
        "  token lifetime     {} s (refreshed in the background from half its life)",
        lifetime.as_secs()
    );
    println!("  load               {concurrency} concurrent callers for {seconds} s");
    println!(
        "  injected faults    all access tokens revoked every 3 s (401s); one token request answered 500"
    );
    println!();

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            // One clone per task, reused: each clone keeps its own copy of the token header.
            let mut client = client.clone();
            let url = server.api_url("/reports");
            let tally = Arc::clone(&tally);
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let request = Request::get(&url)
                        .header("x-request-id", format!("{worker}-{n}"))
                        .body(Full::default())
                        .expect("a valid request");
                    let sent = Instant::now();
                    let result = match client.ready().await {
                        Ok(ready) => ready.call(request).await,
                        Err(err) => Err(err),
                    };
                    latencies.push(sent.elapsed());
                    tally.requests.fetch_add(1, Ordering::Relaxed);
                    match result {
                        Ok(response) if response.status().is_success() => {
                            tally.successes.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            tally.errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies
            })
        })
        .collect();

    for second in 1..=seconds {
        tokio::time::sleep_until(started + Duration::from_secs(second)).await;
        if second % 3 == 0 {
            server.revoke_all_access_tokens();
        }
        if second == 5 {
            server.fail_next_token_requests(1, Fault::ServerError);
        }
        let stats = &credentials.stats()[0];
        println!(
            "  [{second:>3} s] requests {:>8}  ok {:>8}  errors {:>3}  token requests {:>3}  early refreshes {:>3}  401 retries {:>5}",
            tally.requests.load(Ordering::Relaxed),
            tally.successes.load(Ordering::Relaxed),
            tally.errors.load(Ordering::Relaxed),
            server.counters().token_requests,
            stats.early_refreshes,
            stats.retries,
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await?);
    }
    latencies.sort();
    let elapsed = started.elapsed().as_secs_f64();

    let stats = &credentials.stats()[0];
    let counters = server.counters();
    let requests = tally.requests.load(Ordering::Relaxed);
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!();
    println!("summary");
    println!(
        "  requests             {requests} ({:.0}/s)",
        requests as f64 / elapsed
    );
    println!(
        "  successes            {}",
        tally.successes.load(Ordering::Relaxed)
    );
    println!("  errors               {}", tally.errors.load(Ordering::Relaxed));
    println!(
        "  token requests       {} (server counted {})",
        stats.token_requests, counters.token_requests
    );
    println!("  early refreshes      {}", stats.early_refreshes);
    println!("  dead-token refreshes {}", stats.dead_token_refreshes);
    println!("  401 retries          {}", stats.retries);
    println!("  failed token fetches {}", stats.failures);
    println!(
        "  401s seen by the API {}",
        counters.resource_calls_by_status.get(&401).copied().unwrap_or(0)
    );
    println!(
        "  latency ms           p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        percentile(0.50),
        percentile(0.90),
        percentile(0.99),
        percentile(1.0)
    );
    Ok(())
}
