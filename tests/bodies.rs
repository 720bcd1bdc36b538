//! The request bodies applications actually send, through the layer over real HTTP on
//! 127.0.0.1: an axum application's outbound client over `axum::body::Body`, and a
//! hyper proxy forwarding the `Incoming` body its server received.
//!
//! The API is `support::Api` served by hyper: it accepts `Bearer tok-N` unless revoked,
//! answers 401 otherwise, and records every request's body as it arrived.
#![cfg(all(feature = "hyper-transport", feature = "axum"))]

mod support;

use std::{convert::Infallible, net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::{header::HOST, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::{TokioExecutor, TokioIo},
};
use tokio::net::TcpListener;
use tower::{Layer, Service, ServiceExt};
use tower_oauth2::{
    body::{ReplayBody, ReplayableBody},
    BoxError, CredentialRegistry, OAuth2, OAuth2Layer, Provider,
};

use support::{eventually, Api, TokenEndpoint};

const JSON: &str = r#"{"name":"widget","tags":["a","b"],"count":3,"note":"caf\u00e9"}"#;

/// Serves `service` (one hyper HTTP/1 connection per accepted socket) on 127.0.0.1.
async fn serve<S, B>(service: S) -> SocketAddr
where
    S: Service<Request<Incoming>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| service.clone().oneshot(req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

fn credentials(endpoint: &TokenEndpoint, api: SocketAddr) -> CredentialRegistry {
    let provider = Provider::standard("https://auth.example.com/oauth/token")
        .name("example")
        .api(format!("http://{api}"));
    endpoint.registry_for(provider)
}

fn retries(credentials: &CredentialRegistry) -> u64 {
    credentials.stats()[0].retries
}

// ===== an axum application's outbound client =====

type AxumClient = Client<HttpConnector, axum::body::Body>;

fn axum_post(api: SocketAddr, id: &str, body: axum::body::Body) -> Request<axum::body::Body> {
    Request::post(format!("http://{api}/v1/things"))
        .header("x-request-id", id)
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

/// An axum client behind the layer (`layer` adjusts it), to a served `Api`, warmed by
/// one request whose token, `tok-1`, is then revoked: the next request meets a dead
/// token.
struct AxumScene {
    api: Api,
    endpoint: TokenEndpoint,
    addr: SocketAddr,
    credentials: CredentialRegistry,
    client: OAuth2<AxumClient>,
}

async fn axum_scene(layer: impl FnOnce(OAuth2Layer) -> OAuth2Layer) -> AxumScene {
    let (api, endpoint) = (Api::new(), TokenEndpoint::new(Duration::from_secs(3600)));
    let addr = serve(api.clone()).await;
    let credentials = credentials(&endpoint, addr);
    let http: AxumClient = Client::builder(TokioExecutor::new()).build_http();
    let client = layer(OAuth2Layer::new(credentials.clone())).layer(http);
    let warm = client
        .clone()
        .oneshot(axum_post(addr, "warm", axum::body::Body::empty()));
    assert_eq!(warm.await.unwrap().status(), StatusCode::OK);
    api.revoke_up_to(1);
    AxumScene {
        api,
        endpoint,
        addr,
        credentials,
        client,
    }
}

#[tokio::test]
async fn an_axum_client_retries_a_json_post_once_after_a_dead_token_with_the_same_bytes() {
    // A JSON body, and an empty one (a GET through an axum client carries one).
    for payload in [JSON, ""] {
        let body = || match payload {
            "" => axum::body::Body::empty(),
            json => axum::body::Body::from(json),
        };
        let AxumScene {
            api,
            endpoint,
            addr,
            credentials,
            client,
        } = axum_scene(|layer| layer).await;

        let response = client
            .clone()
            .oneshot(axum_post(addr, "after-expiry", body()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{payload:?}");
        assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "{}");

        let sends: Vec<_> = api
            .seen()
            .into_iter()
            .filter(|seen| seen.id.as_deref() == Some("after-expiry"))
            .collect();
        assert_eq!(sends.len(), 2, "{payload:?}: sent once, retried once");
        assert_eq!(sends[0].status, 401);
        assert_eq!(sends[0].authorization.as_deref(), Some("Bearer tok-1"));
        assert_eq!(sends[1].status, 200);
        assert_eq!(sends[1].authorization.as_deref(), Some("Bearer tok-2"));
        for send in &sends {
            assert_eq!(
                send.body,
                payload.as_bytes(),
                "{payload:?}: the server saw the same bytes both times"
            );
        }
        assert_eq!(endpoint.requests(), 2, "{payload:?}: one token, then one refresh");
        assert_eq!(retries(&credentials), 1, "{payload:?}");
    }
}

#[tokio::test]
async fn a_streamed_axum_body_under_the_limit_is_recorded_and_retried_byte_identical() {
    let AxumScene {
        api,
        endpoint,
        addr,
        credentials,
        client,
    } = axum_scene(|layer| layer).await;

    // Chunks that arrive while the request is being sent: nothing to read ahead.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let stream =
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|c| c.map(Ok::<_, Infallible>)));
    let request = axum_post(addr, "streamed", axum::body::Body::from_stream(stream));
    let feeder = tokio::spawn(async move {
        for chunk in ["[1,", "2,", "3]"] {
            tokio::task::yield_now().await;
            tx.send(Bytes::from_static(chunk.as_bytes())).await.unwrap();
        }
    });

    let response = client.clone().oneshot(request).await.unwrap();
    feeder.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bodies: Vec<_> = api
        .seen()
        .into_iter()
        .filter(|seen| seen.id.as_deref() == Some("streamed"))
        .map(|seen| (seen.status, seen.body))
        .collect();
    assert_eq!(
        bodies,
        [
            (401, Bytes::from_static(b"[1,2,3]")),
            (200, Bytes::from_static(b"[1,2,3]"))
        ]
    );
    assert_eq!(endpoint.requests(), 2);
    assert_eq!(retries(&credentials), 1);
}

#[tokio::test]
async fn a_streamed_axum_body_over_the_limit_is_sent_once_and_its_dead_token_answer_returned() {
    let AxumScene {
        api,
        endpoint,
        addr,
        credentials,
        client,
    } = axum_scene(|layer| layer.replay_limit(1024)).await;

    let chunks = (0..8u8).map(|i| Ok::<_, Infallible>(Bytes::from(vec![b'a' + i; 512])));
    let body = axum::body::Body::from_stream(futures_util::stream::iter(chunks));
    let response = client
        .clone()
        .oneshot(axum_post(addr, "large", body))
        .await
        .unwrap();

    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "the dead-token answer, as it came"
    );
    let sends: Vec<_> = api
        .seen()
        .into_iter()
        .filter(|seen| seen.id.as_deref() == Some("large"))
        .collect();
    assert_eq!(sends.len(), 1, "sent once, not retried");
    let expected: Vec<u8> = (0..8u8).flat_map(|i| vec![b'a' + i; 512]).collect();
    assert_eq!(sends[0].body, expected, "the whole body, in order");
    assert_eq!(retries(&credentials), 0);

    // The token was refreshed all the same: the next request gets a fresh one.
    eventually("the refresh after the dead-token answer", || {
        endpoint.requests() == 2
    })
    .await;
    let next = client
        .clone()
        .oneshot(axum_post(addr, "next", axum::body::Body::from(JSON)));
    assert_eq!(next.await.unwrap().status(), StatusCode::OK);
    assert_eq!(api.sends_of("next"), 1);
    assert_eq!(endpoint.requests(), 2);
}

// ===== a hyper proxy forwarding `Incoming` =====

/// A proxy on 127.0.0.1 forwarding every request to `upstream` through the layer over
/// a hyper-util client, with the body as received (`Incoming`), or as `wrap` makes it.
async fn proxy<B>(
    upstream: SocketAddr,
    credentials: CredentialRegistry,
    wrap: fn(Incoming) -> B,
) -> SocketAddr
where
    B: ReplayableBody + http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let http: Client<HttpConnector, B> = Client::builder(TokioExecutor::new()).build_http();
    let forward = OAuth2Layer::new(credentials).layer(http);
    serve(tower::service_fn(move |req: Request<Incoming>| {
        let forward = forward.clone();
        async move {
            let mut req = req.map(wrap);
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            *req.uri_mut() = format!("http://{upstream}{path}").parse()?;
            req.headers_mut().remove(HOST);
            forward.oneshot(req).await.map_err(BoxError::from)
        }
    }))
    .await
}

fn proxy_post(proxy: SocketAddr, id: &str) -> Request<Full<Bytes>> {
    Request::post(format!("http://{proxy}/v1/things"))
        .header("x-request-id", id)
        .body(Full::new(Bytes::from_static(JSON.as_bytes())))
        .unwrap()
}

#[tokio::test]
async fn a_hyper_proxy_attaches_the_token_and_returns_a_dead_token_answer_without_retrying() {
    let (api, endpoint) = (Api::new(), TokenEndpoint::new(Duration::from_secs(3600)));
    let upstream = serve(api.clone()).await;
    let credentials = credentials(&endpoint, upstream);
    let proxy = proxy(upstream, credentials.clone(), |incoming| incoming).await;
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let post = |id: &str| proxy_post(proxy, id);

    let warm = client.request(post("warm")).await.unwrap();
    assert_eq!(warm.status(), StatusCode::OK);
    let seen = api.seen();
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer tok-1"));
    assert_eq!(seen[0].body, JSON.as_bytes());

    api.revoke_up_to(1);
    let dead = client.request(post("dead")).await.unwrap();
    assert_eq!(dead.status(), StatusCode::UNAUTHORIZED, "returned as it came");
    assert_eq!(api.sends_of("dead"), 1, "an Incoming body is sent once");
    assert_eq!(retries(&credentials), 0);

    eventually("the refresh after the dead-token answer", || {
        endpoint.requests() == 2
    })
    .await;
    let next = client.request(post("next")).await.unwrap();
    assert_eq!(next.status(), StatusCode::OK);
    let next: Vec<_> = api
        .seen()
        .into_iter()
        .filter(|seen| seen.id.as_deref() == Some("next"))
        .collect();
    assert_eq!(next.len(), 1);
    assert_eq!(
        next[0].authorization.as_deref(),
        Some("Bearer tok-2"),
        "a fresh token"
    );
    assert_eq!(next[0].body, JSON.as_bytes());
    assert_eq!(endpoint.requests(), 2, "one refresh");
}

#[tokio::test]
async fn a_hyper_proxy_that_wraps_incoming_in_a_replay_body_gets_the_retry() {
    let (api, endpoint) = (Api::new(), TokenEndpoint::new(Duration::from_secs(3600)));
    let upstream = serve(api.clone()).await;
    let credentials = credentials(&endpoint, upstream);
    let proxy = proxy(upstream, credentials.clone(), ReplayBody::new).await;
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    assert_eq!(
        client.request(proxy_post(proxy, "warm")).await.unwrap().status(),
        StatusCode::OK
    );
    api.revoke_up_to(1);

    let response = client.request(proxy_post(proxy, "dead")).await.unwrap();

    assert_eq!(response.status(), StatusCode::OK, "refreshed and retried");
    let sends: Vec<_> = api
        .seen()
        .into_iter()
        .filter(|seen| seen.id.as_deref() == Some("dead"))
        .map(|seen| (seen.status, seen.authorization.unwrap(), seen.body))
        .collect();
    let body = Bytes::from_static(JSON.as_bytes());
    assert_eq!(
        sends,
        [
            (401, "Bearer tok-1".to_owned(), body.clone()),
            (200, "Bearer tok-2".to_owned(), body)
        ]
    );
    assert_eq!(endpoint.requests(), 2);
    assert_eq!(retries(&credentials), 1);
}
