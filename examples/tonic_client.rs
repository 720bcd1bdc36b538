//! A gRPC client (tonic) behind the layer: the token goes in the `authorization`
//! metadata, and a call the server refuses with `UNAUTHENTICATED` is refreshed and sent
//! once more.
//!
//! ```sh
//! cargo run --example tonic_client --features tonic
//! ```
//!
//! The token endpoint is the built-in RFC 6749 emulator; the gRPC server is tonic's
//! health service on 127.0.0.1, behind an interceptor that refuses tokens it was told
//! are revoked. Halfway through, the server revokes the token in use: the next call is
//! refused once, the layer fetches one new token and the call succeeds.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
};

use tonic::{
    service::interceptor::InterceptedService,
    transport::{server::TcpIncoming, Channel, Server},
    Status,
};
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};
use tower::ServiceBuilder;
use tower_oauth2::{BoxError, Credential, Credentials, ServiceBuilderExt};
use tower_oauth2_mock::MockServer;

/// The tokens the gRPC server has seen, and those it now refuses.
#[derive(Default)]
struct Tokens {
    last: Option<String>,
    revoked: HashSet<String>,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // The gRPC server: health checks, for callers with a token not revoked.
    let tokens = Arc::new(Mutex::new(Tokens::default()));
    let gate = Arc::clone(&tokens);
    let admit = move |request: tonic::Request<()>| {
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::to_owned);
        let mut tokens = gate.lock().unwrap();
        match token {
            Some(token) if !tokens.revoked.contains(&token) => {
                tokens.last = Some(token);
                Ok(request)
            }
            _ => Err(Status::unauthenticated("invalid access token")),
        }
    };
    let incoming = TcpIncoming::bind("127.0.0.1:0".parse()?)?;
    let origin = format!("http://{}", incoming.local_addr()?);
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        Server::builder()
            .add_service(InterceptedService::new(health, admit))
            .serve_with_incoming(incoming),
    );

    // The client: a tonic channel behind the layer, for a provider whose API is gRPC.
    let authorization_server = MockServer::builder().client("grpc-app", "s3cret").start().await?;
    let provider = authorization_server
        .provider()
        .api_origins([origin.as_str()])
        .grpc(true);
    let credentials = Credentials::new(Credential::client_credentials(provider, "grpc-app", "s3cret"))?;
    let channel = Channel::from_shared(origin.clone())?.connect().await?;
    let service = ServiceBuilder::new().oauth2(credentials.clone()).service(channel);
    // With its origin on every request, the layer can tell which credential a call needs.
    let mut client = HealthClient::with_origin(service, origin.parse()?);

    for call in 1..=4 {
        if call == 3 {
            let mut tokens = tokens.lock().unwrap();
            let last = tokens.last.clone().expect("a call was admitted");
            tokens.revoked.insert(last);
            println!("the server revokes the token in use");
        }
        let answer = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await?
            .into_inner();
        println!("call {call}: {:?}", answer.status());
    }

    let stats = &credentials.stats()[0];
    println!(
        "token requests: {}, retries after UNAUTHENTICATED: {}",
        authorization_server.counters().token_requests,
        stats.retries
    );
    assert_eq!(authorization_server.counters().token_requests, 2);
    assert_eq!(stats.retries, 1);
    Ok(())
}
