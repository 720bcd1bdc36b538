//! Dead tokens that only the body declares, beyond what the conformance suite
//! (`tests/conformance/dead_in_body.rs`) runs through both adapters: answers too large
//! to judge whole, in process.

#![cfg(feature = "hyper-transport")]

use std::{
    convert::Infallible,
    pin::Pin,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt};
use tower_oauth2::{Credential, CredentialRegistry, CredentialStats, OAuth2Layer, Provider};

fn stats(credentials: &CredentialRegistry) -> CredentialStats {
    credentials.stats().into_iter().next().unwrap()
}

// ===== huge bodies =====

/// A `400` body of `frames` frames of `size` bytes, made as they are polled, counting
/// how many were.
struct Counted {
    left: usize,
    size: usize,
    first: &'static [u8],
    polled: Arc<AtomicUsize>,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(None);
        }
        let index = this.polled.fetch_add(1, Ordering::SeqCst);
        this.left -= 1;
        let mut chunk = vec![b'a' + (index % 26) as u8; this.size];
        if index == 0 {
            chunk[..this.first.len()].copy_from_slice(this.first);
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }
}

/// A token endpoint that hands out `t1`, `t2`, ... and counts its requests.
fn token_endpoint(issued: Arc<AtomicUsize>) -> tower_oauth2::TokenTransport {
    tower_oauth2::TokenTransport::new(tower::service_fn(move |_req: Request<Full<Bytes>>| {
        let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            let body = format!(r#"{{"access_token":"t{n}","token_type":"Bearer","expires_in":3600}}"#);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
        }
    }))
}

type HugeBody = http_body_util::Either<Counted, Full<Bytes>>;

/// An API that answers 400 with a 1 MiB body (256 frames of 4 KiB), starting with
/// `first`, to any token but `t2`, which gets `200 ok`.
fn huge_api(
    polled: Arc<AtomicUsize>,
    first: &'static [u8],
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<HugeBody>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<HugeBody>, Infallible>>,
> + Clone {
    tower::service_fn(move |req: Request<Full<Bytes>>| {
        let fresh = req.headers()["authorization"] == "Bearer t2";
        let body = if fresh {
            http_body_util::Either::Right(Full::new(Bytes::from_static(b"ok")))
        } else {
            http_body_util::Either::Left(Counted {
                left: 256,
                size: 4096,
                first,
                polled: Arc::clone(&polled),
            })
        };
        let mut response = Response::new(body);
        if !fresh {
            *response.status_mut() = StatusCode::BAD_REQUEST;
        }
        std::future::ready(Ok(response))
    })
}

fn huge_provider() -> Provider {
    Provider::standard("https://auth.example.com/token")
        .api("https://api.example.com")
        .dead_token_in_body([StatusCode::BAD_REQUEST], |answer| {
            answer.body().starts_with(br#"{"error":"token_expired""#)
        })
}

/// A registry over `huge_provider`, the count of tokens issued, and a count of frames
/// polled for `huge_api`.
fn huge_setup() -> (CredentialRegistry, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let issued = Arc::new(AtomicUsize::new(0));
    let credentials = CredentialRegistry::builder()
        .credential(Credential::client_credentials(huge_provider(), "app", "secret"))
        .transport(token_endpoint(Arc::clone(&issued)))
        .build()
        .unwrap();
    (credentials, issued, Arc::new(AtomicUsize::new(0)))
}

#[tokio::test]
async fn a_huge_answer_is_judged_on_its_prefix_and_delivered_whole() {
    let (credentials, issued, polled) = huge_setup();
    let api =
        OAuth2Layer::new(credentials.clone()).layer(huge_api(Arc::clone(&polled), b"{\"error\":\"other\"}"));

    let request = Request::get("https://api.example.com/x")
        .body(Full::default())
        .unwrap();
    let response = api.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 400);
    // The judgement read one 4 KiB frame (the limit), no more.
    assert_eq!(polled.load(Ordering::SeqCst), 1);
    assert_eq!(response.body().size_hint().lower(), 4096);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(polled.load(Ordering::SeqCst), 256);
    assert_eq!(body.len(), 1024 * 1024);
    assert!(body.starts_with(b"{\"error\":\"other\"}"));
    for (i, chunk) in body.chunks(4096).enumerate().skip(1) {
        assert!(
            chunk.iter().all(|&b| b == b'a' + (i % 26) as u8),
            "chunk {i} intact"
        );
    }
    assert_eq!(issued.load(Ordering::SeqCst), 1, "no refresh");
}

#[tokio::test]
async fn a_huge_dead_token_answer_is_judged_on_its_prefix_and_the_call_retried() {
    let (credentials, issued, polled) = huge_setup();
    let api = OAuth2Layer::new(credentials.clone())
        .layer(huge_api(Arc::clone(&polled), b"{\"error\":\"token_expired\"}"));

    let request = Request::get("https://api.example.com/x")
        .body(Full::default())
        .unwrap();
    let response = api.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "ok");
    assert_eq!(
        polled.load(Ordering::SeqCst),
        1,
        "one frame read, the rest dropped unread"
    );
    assert_eq!(issued.load(Ordering::SeqCst), 2, "one refresh");
    assert_eq!(stats(&credentials).retries, 1);
}

#[tokio::test]
async fn successes_are_never_read() {
    // A body judgement on 400 only: a 200 whose body never ends is handed over at once.
    let credentials = CredentialRegistry::builder()
        .credential(Credential::client_credentials(huge_provider(), "app", "secret"))
        .transport(token_endpoint(Arc::new(AtomicUsize::new(0))))
        .build()
        .unwrap();
    let endless = tower::service_fn(|_req: Request<Full<Bytes>>| async {
        let body = http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<Frame<Bytes>, Infallible>,
        >());
        Ok::<_, Infallible>(Response::new(body))
    });
    let api = OAuth2Layer::new(credentials).layer(endless);
    let request = Request::get("https://api.example.com/x")
        .body(Full::default())
        .unwrap();
    let response = tokio::time::timeout(std::time::Duration::from_secs(5), api.oneshot(request))
        .await
        .expect("the answer is handed over without reading its body")
        .unwrap();
    assert_eq!(response.status(), 200);
}
