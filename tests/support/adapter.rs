//! The two adapters behind one interface, for the conformance suite (`tests/conformance`):
//! the tower layer over hyper-util's client, and the reqwest middleware. A test written
//! against [`Adapter`] runs unchanged against both.

use std::{
    convert::Infallible,
    future::{ready, Ready},
    net::{Ipv4Addr, SocketAddr},
    task::{Context, Poll},
};

use bytes::Bytes;
use futures_util::future::join_all;
use http::{HeaderMap, Method, Request};
use http_body::Frame;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper_util::{
    client::legacy::{
        connect::{dns::Name, HttpConnector},
        Client,
    },
    rt::TokioExecutor,
};
use reqwest_middleware::ClientWithMiddleware;
use serde_json::Value;
use tower::{Layer, Service, ServiceExt};
use tower_oauth2::{
    reqwest::OAuth2Middleware, CredentialRegistry, Error, NoRetry, OAuth2, OAuth2Layer, Subject,
};

/// Which adapter a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `OAuth2Layer` over hyper-util's legacy client.
    Tower,
    /// `reqwest::OAuth2Middleware` in a reqwest-middleware client.
    Reqwest,
}

/// A resolver that sends every host name to 127.0.0.1, so that a test can call the mock
/// server under names other than its own (the port comes from the URL).
#[derive(Clone, Copy, Debug)]
pub struct Loopback;

impl Service<Name> for Loopback {
    type Response = std::iter::Once<SocketAddr>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _name: Name) -> Self::Future {
        ready(Ok(std::iter::once(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))))
    }
}

type Streamed = BoxBody<Bytes, std::io::Error>;
type Hyper<B> = Client<HttpConnector<Loopback>, B>;

fn hyper<B>() -> Hyper<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    Client::builder(TokioExecutor::new()).build(HttpConnector::new_with_resolver(Loopback))
}

/// The tower adapter: two layered hyper clients sharing the registry, one for bodies of
/// bytes, which can be replayed, one for streamed bodies, which cannot.
#[derive(Clone, Debug)]
pub struct TowerClients {
    bytes: OAuth2<Hyper<Full<Bytes>>>,
    streamed: OAuth2<Hyper<Streamed>>,
}

/// One of the two adapters, over one registry.
#[derive(Clone, Debug)]
pub enum Adapter {
    /// The tower layer.
    Tower(Box<TowerClients>),
    /// A reqwest client with the middleware.
    Reqwest(ClientWithMiddleware),
}

/// What a request carries.
#[derive(Debug, Clone)]
pub enum Payload {
    /// Bytes the adapter can keep for a retry.
    Bytes(Bytes),
    /// Chunks streamed once, which no adapter can replay.
    Streamed(Vec<Bytes>),
}

/// One request, as both adapters can send it.
#[derive(Debug, Clone)]
pub struct Call {
    method: Method,
    url: String,
    headers: Vec<(&'static str, String)>,
    payload: Payload,
    subject: Option<String>,
    no_retry: bool,
}

impl Call {
    pub fn get(url: impl Into<String>) -> Self {
        Self {
            method: Method::GET,
            url: url.into(),
            headers: Vec::new(),
            payload: Payload::Bytes(Bytes::new()),
            subject: None,
            no_retry: false,
        }
    }

    pub fn post(url: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self {
            method: Method::POST,
            payload: Payload::Bytes(body.into()),
            ..Self::get(url)
        }
    }

    /// A POST whose body is streamed in these chunks.
    pub fn streamed<const N: usize>(url: impl Into<String>, chunks: [&'static str; N]) -> Self {
        Self {
            method: Method::POST,
            payload: Payload::Streamed(chunks.into_iter().map(Bytes::from).collect()),
            ..Self::get(url)
        }
    }

    /// Names the request (`x-request-id`), for the mock's count of sends per request.
    pub fn id(self, id: impl Into<String>) -> Self {
        self.header("x-request-id", id)
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Sent on behalf of this user.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// With `NoRetry` in its extensions.
    pub fn no_retry(mut self) -> Self {
        self.no_retry = true;
        self
    }

    fn request<B>(self, body: B) -> Request<B> {
        let mut request = Request::builder().method(self.method).uri(self.url);
        for (name, value) in self.headers {
            request = request.header(name, value);
        }
        let mut request = request.body(body).unwrap();
        if let Some(subject) = self.subject {
            request.extensions_mut().insert(Subject::new(subject));
        }
        if self.no_retry {
            request.extensions_mut().insert(NoRetry);
        }
        request
    }
}

/// An answer, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON, or `null`.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

impl Adapter {
    /// The adapter of this kind over `credentials`, retrying dead tokens.
    pub fn new(kind: Kind, credentials: &CredentialRegistry) -> Self {
        Self::with_retries(kind, credentials, true)
    }

    /// The adapter of this kind over `credentials`, built with `retry_dead_tokens(retry)`.
    pub fn with_retries(kind: Kind, credentials: &CredentialRegistry, retry: bool) -> Self {
        match kind {
            Kind::Tower => {
                let layer = OAuth2Layer::new(credentials.clone()).retry_dead_tokens(retry);
                Adapter::Tower(Box::new(TowerClients {
                    bytes: layer.layer(hyper()),
                    streamed: layer.layer(hyper()),
                }))
            }
            Kind::Reqwest => {
                let http = reqwest::Client::builder()
                    // No proxy from the environment: every request goes to 127.0.0.1.
                    .no_proxy()
                    .dns_resolver(std::sync::Arc::new(LoopbackNames))
                    .build()
                    .unwrap();
                let middleware = OAuth2Middleware::new(credentials.clone()).retry_dead_tokens(retry);
                Adapter::Reqwest(
                    reqwest_middleware::ClientBuilder::new(http)
                        .with(middleware)
                        .build(),
                )
            }
        }
    }

    /// Sends `call` and reads the whole answer; the crate's errors come back as they are.
    pub async fn send(&self, call: Call) -> Result<Answer, Error> {
        match self {
            Adapter::Tower(clients) => {
                let response = match call.payload.clone() {
                    Payload::Bytes(body) => {
                        clients
                            .bytes
                            .clone()
                            .oneshot(call.request(Full::new(body)))
                            .await?
                    }
                    Payload::Streamed(chunks) => {
                        let frames = chunks.into_iter().map(|c| Ok(Frame::data(c)));
                        let body = BodyExt::boxed(StreamBody::new(futures_util::stream::iter(frames)));
                        clients.streamed.clone().oneshot(call.request(body)).await?
                    }
                };
                let (parts, body) = response.into_parts();
                let body = body.collect().await.expect("the answer's body").to_bytes();
                Ok(Answer {
                    status: parts.status.as_u16(),
                    headers: parts.headers,
                    body,
                })
            }
            Adapter::Reqwest(client) => {
                let body = match call.payload.clone() {
                    Payload::Bytes(body) => reqwest::Body::from(body),
                    Payload::Streamed(chunks) => {
                        let frames = chunks
                            .into_iter()
                            .map(|c| Ok::<_, std::io::Error>(Frame::data(c)));
                        reqwest::Body::wrap(StreamBody::new(futures_util::stream::iter(frames)))
                    }
                };
                let mut builder = client.request(call.method, &call.url).body(body);
                for (name, value) in call.headers {
                    builder = builder.header(name, value);
                }
                if let Some(subject) = call.subject {
                    builder = builder.with_extension(Subject::new(subject));
                }
                if call.no_retry {
                    builder = builder.with_extension(NoRetry);
                }
                let response = match builder.send().await {
                    Ok(response) => response,
                    Err(reqwest_middleware::Error::Middleware(err)) => {
                        return Err(err.downcast::<Error>().expect("the crate's error"))
                    }
                    Err(err) => panic!("reqwest failed: {err}"),
                };
                let (status, headers) = (response.status().as_u16(), response.headers().clone());
                let body = response.bytes().await.expect("the answer's body");
                Ok(Answer {
                    status,
                    headers,
                    body,
                })
            }
        }
    }

    /// Sends every call at once, each in a task of its own; the answers in order.
    pub async fn concurrently(&self, calls: impl IntoIterator<Item = Call>) -> Vec<Result<Answer, Error>> {
        let tasks = calls.into_iter().map(|call| {
            let adapter = self.clone();
            tokio::spawn(async move { adapter.send(call).await })
        });
        join_all(tasks).await.into_iter().map(Result::unwrap).collect()
    }
}

/// reqwest's side of [`Loopback`].
struct LoopbackNames;

impl reqwest::dns::Resolve for LoopbackNames {
    fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let addrs: reqwest::dns::Addrs =
            Box::new(std::iter::once(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))));
        Box::pin(ready(Ok(addrs)))
    }
}
