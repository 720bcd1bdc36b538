//! What a DPoP proof per request costs (feature `jose`).
//!
//! ```text
//! cargo bench --features jose --bench dpop
//! ```
//!
//! 1. **Proof cost** (one thread, criterion): the bare cost of one signature with ring
//!    (ES256, Ed25519) over a signing input the size of a proof's; the layer's cached path
//!    with a bearer credential; and the same path with a DPoP-bound credential (ES256,
//!    EdDSA), whose every call makes, signs and attaches a proof. The summary gives the
//!    proof's cost (DPoP call minus bearer call) against the bare signature.
//! 2. **End to end** (paired rounds): a hyper client sending to a hyper server on
//!    127.0.0.1 through the layer, bearer against DPoP (ES256), at 1 and 16 concurrent
//!    tasks, each task cloning its client per request. Rounds alternate the variants; the
//!    summary gives requests per second and the per-round ratio. The server checks each
//!    request's `Authorization` scheme and the presence of a proof (it does not verify
//!    signatures: the client's cost is measured, not a server's).

// Only the hot-path helpers are used here.
#[allow(dead_code)]
mod common;

use std::{
    convert::Infallible,
    hint::black_box,
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use criterion::{criterion_group, Criterion};
use http::{header::AUTHORIZATION, Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
};
use ring::{
    rand::SystemRandom,
    signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING},
};
use tokio::{net::TcpListener, time::Instant};
use tower::{Layer, ServiceExt};
use tower_oauth2::{
    dpop::DpopKey,
    jose::{SigningAlgorithm, SigningKey},
    Credential, CredentialRegistry, OAuth2Layer, Provider, TokenTransport,
};

use common::{drive, request, runtime, warm_checked, warm_oauth2, Answer, API_URI, TOKEN};

/// A signing input the size of a proof's: its header (with the public key) and claims,
/// base64url-encoded, about 430 bytes.
const SIGNING_INPUT_LEN: usize = 430;

/// A token endpoint that answers at once with a DPoP-bound [`TOKEN`].
fn dpop_token_endpoint() -> TokenTransport {
    TokenTransport::new(tower::service_fn(|_req: Request<Full<Bytes>>| async {
        let body = format!(r#"{{"access_token":"{TOKEN}","token_type":"DPoP","expires_in":86400}}"#);
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
    }))
}

fn dpop_layer(api: &str, algorithm: SigningAlgorithm) -> OAuth2Layer {
    let provider = Provider::standard("https://auth.example.com/token").api(api);
    let key = DpopKey::new(SigningKey::generate(algorithm).expect("key"));
    let credentials = CredentialRegistry::builder()
        .credential(Credential::client_credentials(provider, "bench-client", "bench-secret").dpop(key))
        .transport(dpop_token_endpoint())
        .build()
        .expect("valid credentials");
    OAuth2Layer::new(credentials)
}

/// `OAuth2<Answer>` for a DPoP credential, its token fetched; checks that a call carries
/// `Authorization: DPoP` and a proof.
fn warm_dpop(rt: &tokio::runtime::Runtime, algorithm: SigningAlgorithm) -> tower_oauth2::OAuth2<Answer> {
    let layer = dpop_layer("https://api.example.com", algorithm);
    warm_checked(rt, layer, |req| {
        req.headers()
            .get(AUTHORIZATION)
            .is_some_and(|v| v.as_bytes().starts_with(b"DPoP "))
            && req.headers().contains_key("dpop")
    })
}

fn proof_cost(c: &mut Criterion) {
    let rt = runtime();
    let _context = rt.enter();
    let mut group = c.benchmark_group("dpop");
    let rng = SystemRandom::new();
    let input = vec![b'a'; SIGNING_INPUT_LEN];

    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
    let es256 =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).expect("key");
    group.bench_function("es256_signature", |b| {
        b.iter(|| black_box(es256.sign(&rng, black_box(&input)).expect("signature")))
    });
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("key");
    let ed25519 = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
    group.bench_function("ed25519_signature", |b| {
        b.iter(|| black_box(ed25519.sign(black_box(&input))))
    });

    let mut bearer = warm_oauth2(&rt);
    group.bench_function("oauth2_bearer", |b| {
        b.iter(|| black_box(drive(&mut bearer, request(API_URI))))
    });
    let mut dpop_es256 = warm_dpop(&rt, SigningAlgorithm::Es256);
    group.bench_function("oauth2_dpop_es256", |b| {
        b.iter(|| black_box(drive(&mut dpop_es256, request(API_URI))))
    });
    let mut dpop_eddsa = warm_dpop(&rt, SigningAlgorithm::EdDsa);
    group.bench_function("oauth2_dpop_eddsa", |b| {
        b.iter(|| black_box(drive(&mut dpop_eddsa, request(API_URI))))
    });
    group.finish();
}

criterion_group!(benches, proof_cost);

// ===== end to end =====

type Bare = Client<HttpConnector, Full<Bytes>>;

/// Requests the server saw, by what they carried.
#[derive(Default)]
struct Tally {
    bearer: AtomicU64,
    dpop: AtomicU64,
    other: AtomicU64,
}

async fn serve(listener: TcpListener, tally: Arc<Tally>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let tally = Arc::clone(&tally);
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let auth = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes().to_vec());
                let proofs = req.headers().get_all("dpop").iter().count();
                let counter = match (auth.as_deref(), proofs) {
                    (Some(v), 0) if v.starts_with(b"Bearer ") => &tally.bearer,
                    (Some(v), 1) if v.starts_with(b"DPoP ") => &tally.dpop,
                    _ => &tally.other,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok\n")))) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

const ROUNDS: usize = 12;
const REQUESTS_PER_ROUND: u64 = 2_000;

fn end_to_end() -> Vec<String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let tally = Arc::new(Tally::default());
    let addr = rt.block_on(async {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(serve(listener, Arc::clone(&tally)));
        addr
    });
    let api = format!("http://127.0.0.1:{}", addr.port());
    let uri: Uri = format!("{api}/v1/items").parse().expect("uri");
    let client: Bare = Client::builder(TokioExecutor::new()).build_http();
    let bearer = {
        let provider = Provider::standard("https://auth.example.com/token").api(api.as_str());
        let body = format!(r#"{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":86400}}"#);
        let transport = TokenTransport::new(tower::service_fn(move |_req: Request<Full<Bytes>>| {
            let body = body.clone();
            async move { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body)))) }
        }));
        let credentials = CredentialRegistry::builder()
            .credential(Credential::client_credentials(
                provider,
                "bench-client",
                "bench-secret",
            ))
            .transport(transport)
            .build()
            .expect("valid credentials");
        OAuth2Layer::new(credentials)
    };
    let dpop = dpop_layer(&api, SigningAlgorithm::Es256);

    let run = |layer: &OAuth2Layer, tasks: usize| -> f64 {
        rt.block_on(async {
            let start = Instant::now();
            let mut handles = Vec::new();
            for _ in 0..tasks {
                let svc = layer.layer(client.clone());
                let uri = uri.clone();
                let n = REQUESTS_PER_ROUND / tasks as u64;
                handles.push(tokio::spawn(async move {
                    for _ in 0..n {
                        let req = Request::get(uri.clone())
                            .body(Full::new(Bytes::new()))
                            .expect("request");
                        let response = svc.clone().oneshot(req).await.expect("response");
                        assert_eq!(response.status(), 200);
                        response.into_body().collect().await.expect("body");
                    }
                }));
            }
            for handle in handles {
                handle.await.expect("task");
            }
            REQUESTS_PER_ROUND as f64 / start.elapsed().as_secs_f64()
        })
    };

    let mut lines = Vec::new();
    for tasks in [1usize, 16] {
        // Warm connections and tokens.
        run(&bearer, tasks);
        run(&dpop, tasks);
        let mut ratios = Vec::new();
        let (mut bearer_rps, mut dpop_rps) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            let (b, d) = if round % 2 == 0 {
                let b = run(&bearer, tasks);
                (b, run(&dpop, tasks))
            } else {
                let d = run(&dpop, tasks);
                (run(&bearer, tasks), d)
            };
            bearer_rps.push(b);
            dpop_rps.push(d);
            ratios.push(d / b);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
            v[v.len() / 2]
        };
        lines.push(format!(
            "end to end, {tasks} task(s): bearer {:.0} req/s, DPoP ES256 {:.0} req/s, DPoP/bearer median {:.3} (min {:.3}, max {:.3})",
            median(&mut bearer_rps),
            median(&mut dpop_rps),
            median(&mut ratios.clone()),
            ratios.iter().cloned().fold(f64::INFINITY, f64::min),
            ratios.iter().cloned().fold(0.0, f64::max),
        ));
    }
    let [b, d, o] = [&tally.bearer, &tally.dpop, &tally.other].map(|n| n.load(Ordering::Relaxed));
    lines.push(format!(
        "server saw: {b} bearer, {d} DPoP with one proof, {o} other"
    ));
    assert_eq!(
        o, 0,
        "a request reached the server with neither a bearer token nor a DPoP token and proof"
    );
    lines
}

fn main() {
    benches();
    let estimate = |name: &str| -> Option<f64> {
        let path = common::criterion_dir()
            .join("dpop")
            .join(name)
            .join("new/estimates.json");
        let text = std::fs::read_to_string(path).ok()?;
        let json: serde_json::Value = serde_json::from_str(&text).ok()?;
        json["median"]["point_estimate"].as_f64()
    };
    let mut lines = Vec::new();
    if let (Some(es), Some(ed), Some(bearer), Some(dpop_es), Some(dpop_ed)) = (
        estimate("es256_signature"),
        estimate("ed25519_signature"),
        estimate("oauth2_bearer"),
        estimate("oauth2_dpop_es256"),
        estimate("oauth2_dpop_eddsa"),
    ) {
        lines.push(format!(
            "ES256: signature {:.0} ns; proof per request {:.0} ns (DPoP call {:.0} ns - bearer call {:.0} ns) = {:.2}x the signature",
            es,
            dpop_es - bearer,
            dpop_es,
            bearer,
            (dpop_es - bearer) / es
        ));
        lines.push(format!(
            "EdDSA: signature {:.0} ns; proof per request {:.0} ns = {:.2}x the signature",
            ed,
            dpop_ed - bearer,
            (dpop_ed - bearer) / ed
        ));
    }
    if std::env::args().any(|arg| arg == "--bench") {
        lines.extend(end_to_end());
    }
    let text = lines.join("\n") + "\n";
    print!("\n{text}");
    common::write_note("dpop.txt", &text, false);
}
