//! The crate used as another crate uses it: a test harness or an application wiring
//! its own clients, stores and login state, with nothing but the public API.
//!
//! Every test here talks to an emulator on 127.0.0.1 or to an in-process stand-in.

use std::{
    cell::Cell,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use tower::{
    util::{BoxCloneService, BoxCloneSyncService},
    Layer, ServiceExt,
};
use tower_oauth2::{mock::MockServer, BoxError, Credential, Credentials, OAuth2Layer, TokenTransport};

type Http = Client<HttpConnector, Full<Bytes>>;

fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends `GET url` through the layer over `credentials`, and returns the status.
async fn get(credentials: &Credentials, url: &str) -> StatusCode {
    let client = OAuth2Layer::new(credentials.clone()).layer(http());
    let request = Request::get(url).body(Full::default()).unwrap();
    client.oneshot(request).await.unwrap().status()
}

// ===== a transport that is Send but not Sync =====

/// A token transport's inner client as a harness might write it: it keeps a per-clone
/// count in a `Cell`, so it is `Send` but not `Sync`.
#[derive(Clone)]
struct CountingClient {
    http: Http,
    sent_by_this_clone: Cell<u32>,
    sent: Arc<Mutex<u32>>,
}

impl tower::Service<Request<Full<Bytes>>> for CountingClient {
    type Response = Response<hyper::body::Incoming>;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        tower::Service::poll_ready(&mut self.http, cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        self.sent_by_this_clone.set(self.sent_by_this_clone.get() + 1);
        *self.sent.lock().unwrap() += 1;
        let future = self.http.request(request);
        Box::pin(async move { Ok(future.await?) })
    }
}

async fn a_transport_gets_a_token_and_authorizes(transport: TokenTransport, sent: &Arc<Mutex<u32>>) {
    let server = MockServer::builder()
        .client("app", "s3cret")
        .start()
        .await
        .unwrap();
    let credentials = Credentials::builder()
        .credential(Credential::client_credentials(server.provider(), "app", "s3cret"))
        .transport(transport)
        .build()
        .unwrap();
    assert_eq!(
        get(&credentials, &server.api_url("/things")).await,
        StatusCode::OK
    );
    assert_eq!(
        get(&credentials, &server.api_url("/things")).await,
        StatusCode::OK
    );
    let counters = server.counters();
    assert_eq!(counters.token_requests, 1);
    assert_eq!(counters.resource_calls_authorized, 2);
    assert_eq!(*sent.lock().unwrap(), 1);
}

#[tokio::test]
async fn a_box_clone_service_transport_works_end_to_end() {
    let sent = Arc::new(Mutex::new(0));
    let client = CountingClient {
        http: http(),
        sent_by_this_clone: Cell::new(0),
        sent: Arc::clone(&sent),
    };
    // Not `Sync`: `BoxCloneService` never is, and neither is the client.
    let boxed: BoxCloneService<Request<Full<Bytes>>, Response<hyper::body::Incoming>, BoxError> =
        BoxCloneService::new(client);
    a_transport_gets_a_token_and_authorizes(TokenTransport::new(boxed), &sent).await;
}

#[tokio::test]
async fn a_box_clone_sync_service_transport_works_end_to_end() {
    let sent = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&sent);
    let client = http();
    let service = tower::service_fn(move |request: Request<Full<Bytes>>| {
        *counted.lock().unwrap() += 1;
        let future = client.request(request);
        async move { Ok::<_, BoxError>(future.await?) }
    });
    let boxed: BoxCloneSyncService<Request<Full<Bytes>>, Response<hyper::body::Incoming>, BoxError> =
        BoxCloneSyncService::new(service);
    a_transport_gets_a_token_and_authorizes(TokenTransport::new(boxed), &sent).await;
}
