//! The layer stacked onto a tonic `Channel`, against a tonic server on 127.0.0.1.
//!
//! The server is tonic-health's generated health service (no protoc needed) behind an
//! interceptor that admits `Bearer tok-N` unless revoked and refuses anything else with
//! `UNAUTHENTICATED`: the trailers-only answer (HTTP 200, `grpc-status: 16`) a gRPC
//! server gives a call it refuses before running it.
#![cfg(feature = "tonic")]

mod support;

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use futures_util::future::join_all;
use tonic::{
    service::interceptor::InterceptedService,
    transport::{server::TcpIncoming, Channel, Server},
    Code, Status,
};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use tower::ServiceBuilder;
use tower_oauth2::{CredentialRegistry, OAuth2, OAuth2Layer, Provider};

use support::TokenEndpoint;

/// What the server's interceptor admits, and how many calls it saw.
#[derive(Default)]
struct Gate {
    revoked_up_to: AtomicUsize,
    refuse_all: AtomicBool,
    calls: AtomicUsize,
    refused: AtomicUsize,
}

impl Gate {
    fn admit(&self, request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer tok-"))
            .and_then(|n| n.parse::<usize>().ok());
        match token {
            Some(n)
                if n > self.revoked_up_to.load(Ordering::SeqCst)
                    && !self.refuse_all.load(Ordering::SeqCst) =>
            {
                Ok(request)
            }
            _ => {
                self.refused.fetch_add(1, Ordering::SeqCst);
                Err(Status::unauthenticated("invalid access token"))
            }
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

/// The health service, gated, on 127.0.0.1.
async fn serve(gate: Arc<Gate>) -> SocketAddr {
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = incoming.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let gated = InterceptedService::new(health, move |request| gate.admit(request));
    tokio::spawn(Server::builder().add_service(gated).serve_with_incoming(incoming));
    addr
}

type Client = HealthClient<OAuth2<Channel>>;

/// A health client over a channel to `addr` behind the layer, for a gRPC provider.
async fn client(addr: SocketAddr, endpoint: &TokenEndpoint) -> (Client, CredentialRegistry) {
    client_of(addr, endpoint, true).await
}

/// A health client over a channel to `addr` behind the layer, for a provider that says
/// whether it speaks gRPC.
async fn client_of(addr: SocketAddr, endpoint: &TokenEndpoint, grpc: bool) -> (Client, CredentialRegistry) {
    let origin = format!("http://{addr}");
    let provider = Provider::standard("https://auth.example.com/oauth/token")
        .name("grpc-api")
        .api(&origin)
        .grpc(grpc);
    let credentials = endpoint.registry_for(provider);
    let channel = Channel::from_shared(origin.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(OAuth2Layer::new(credentials.clone()))
        .service(channel);
    // The origin on every request, so that the layer can route it: a bare `Channel`
    // adds it only inside itself.
    (
        HealthClient::with_origin(service, origin.parse().unwrap()),
        credentials,
    )
}

async fn check(client: &mut Client) -> Result<ServingStatus, Status> {
    let request = HealthCheckRequest {
        service: String::new(),
    };
    let answer = client.check(request).await?.into_inner();
    Ok(answer.status())
}

fn retries(credentials: &CredentialRegistry) -> u64 {
    credentials.stats()[0].retries
}

#[tokio::test]
async fn a_unary_call_with_a_dead_token_is_refreshed_once_and_retried_once() {
    let (gate, endpoint) = (
        Arc::new(Gate::default()),
        TokenEndpoint::new(Duration::from_secs(3600)),
    );
    let addr = serve(Arc::clone(&gate)).await;
    let (mut client, credentials) = client(addr, &endpoint).await;
    assert_eq!(check(&mut client).await.unwrap(), ServingStatus::Serving);
    assert_eq!((gate.calls(), gate.refused(), endpoint.requests()), (1, 0, 1));

    gate.revoked_up_to.store(1, Ordering::SeqCst);
    assert_eq!(check(&mut client).await.unwrap(), ServingStatus::Serving);

    assert_eq!(endpoint.requests(), 2, "one refresh");
    assert_eq!(gate.calls(), 3, "the dead call and its one retry");
    assert_eq!(gate.refused(), 1);
    assert_eq!(retries(&credentials), 1);
}

#[tokio::test]
async fn ten_concurrent_calls_with_a_dead_token_share_one_refresh() {
    let (gate, endpoint) = (
        Arc::new(Gate::default()),
        TokenEndpoint::new(Duration::from_secs(3600)),
    );
    let addr = serve(Arc::clone(&gate)).await;
    let (mut client, credentials) = client(addr, &endpoint).await;
    assert_eq!(check(&mut client).await.unwrap(), ServingStatus::Serving);
    gate.revoked_up_to.store(1, Ordering::SeqCst);

    // Polled together: each call is sent with the dead token before any answer comes.
    let calls = (0..10).map(|_| {
        let mut client = client.clone();
        async move { check(&mut client).await }
    });
    let answers = join_all(calls).await;

    assert_eq!(
        answers
            .iter()
            .filter(|a| matches!(a, Ok(ServingStatus::Serving)))
            .count(),
        10
    );
    assert_eq!(endpoint.requests(), 2, "one refresh for the ten");
    assert_eq!(gate.refused(), 10);
    assert_eq!(gate.calls(), 1 + 10 + 10);
    assert_eq!(retries(&credentials), 10);
}

#[tokio::test]
async fn a_server_refusing_every_token_gets_exactly_one_retry() {
    let (gate, endpoint) = (
        Arc::new(Gate::default()),
        TokenEndpoint::new(Duration::from_secs(3600)),
    );
    let addr = serve(Arc::clone(&gate)).await;
    let (mut client, credentials) = client(addr, &endpoint).await;
    gate.refuse_all.store(true, Ordering::SeqCst);

    let status = check(&mut client).await.unwrap_err();

    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        status.message(),
        "invalid access token",
        "the server's answer, as it came"
    );
    assert_eq!(gate.calls(), 2, "sent, then retried once");
    assert_eq!(endpoint.requests(), 2, "the first token, then one refresh");
    assert_eq!(retries(&credentials), 1);
}

#[tokio::test]
async fn without_grpc_a_trailers_only_unauthenticated_is_an_answer() {
    let (gate, endpoint) = (
        Arc::new(Gate::default()),
        TokenEndpoint::new(Duration::from_secs(3600)),
    );
    let addr = serve(Arc::clone(&gate)).await;
    let (mut client, credentials) = client_of(addr, &endpoint, false).await;
    gate.revoked_up_to.store(1, Ordering::SeqCst);

    let status = check(&mut client).await.unwrap_err();

    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(
        (gate.calls(), endpoint.requests(), retries(&credentials)),
        (1, 1, 0)
    );
}
