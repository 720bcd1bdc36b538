//! Telling a dead-token answer from an ordinary one.
//!
//! Most APIs say "this token is dead" with a status (`401`), sometimes with a
//! `WWW-Authenticate` header: [`Provider::dead_token_statuses`] and
//! [`Provider::dead_token_when`] cover them without touching the body. Some say it only
//! in the body: Grindery's JSON-RPC endpoint answers an expired token with `400` and a
//! JSON-RPC error object, and the same `400` carries every other JSON-RPC error too.
//! [`Provider::dead_token_in_body`] covers those: for the statuses it names, the layer
//! reads a bounded prefix of the body (4 KiB unless
//! [`Provider::dead_token_body_limit`] says otherwise), shows it to a judgement as an
//! [`ApiAnswer`], and then either refreshes the token and retries, or hands the caller
//! the response with its body intact: the frames already read, then the rest, exactly
//! as the server sent them. Answers of other statuses (every `2xx` among them) are never
//! buffered.
//!
//! ```
//! use http::StatusCode;
//! use tower_oauth2::Provider;
//!
//! // An API that answers a dead token with `403 {"error": {"code": "token_expired"}}`.
//! let provider = Provider::standard("https://auth.example.com/token")
//!     .api("https://api.example.com")
//!     .dead_token_in_body([StatusCode::FORBIDDEN], |answer| {
//!         let body: serde_json::Value = match serde_json::from_slice(answer.body()) {
//!             Ok(body) => body,
//!             Err(_) => return false,
//!         };
//!         body["error"]["code"] == "token_expired"
//!     });
//! # let _ = provider;
//! ```
//!
//! [`Provider::dead_token_statuses`]: crate::Provider::dead_token_statuses
//! [`Provider::dead_token_when`]: crate::Provider::dead_token_when
//! [`Provider::dead_token_in_body`]: crate::Provider::dead_token_in_body
//! [`Provider::dead_token_body_limit`]: crate::Provider::dead_token_body_limit

use std::{
    collections::VecDeque,
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{ready, Context, Poll},
};

use bytes::Buf;
use http::{HeaderMap, StatusCode};
use http_body::{Body, Frame, SizeHint};
use pin_project::pin_project;

/// How much of a body a judgement reads unless the provider says otherwise.
pub(crate) const DEFAULT_BODY_LIMIT: usize = 4 * 1024;

// ===== what a judgement sees =====

/// An API answer to a request that carried a token, as a body judgement
/// ([`Provider::dead_token_in_body`](crate::Provider::dead_token_in_body)) sees it: its
/// status, its headers, and the first bytes of its body.
#[derive(Debug, Clone, Copy)]
pub struct ApiAnswer<'a> {
    status: StatusCode,
    headers: &'a HeaderMap,
    body: &'a [u8],
    complete: bool,
}

impl<'a> ApiAnswer<'a> {
    /// An answer of `status` and `headers` whose body starts with `body`; `complete`
    /// when `body` is the whole body. For testing a judgement.
    pub fn new(status: StatusCode, headers: &'a HeaderMap, body: &'a [u8], complete: bool) -> Self {
        Self {
            status,
            headers,
            body,
            complete,
        }
    }

    /// The answer's status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The answer's headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The body, or its first bytes when it is longer than the provider's limit (see
    /// [`is_complete`](Self::is_complete)).
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// Whether [`body`](Self::body) is the whole body. A judgement over a truncated
    /// body should be careful: a JSON document cut short does not parse.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The error object of a JSON-RPC 2.0 response
    /// (<https://www.jsonrpc.org/specification#error_object>), when the body is one: a
    /// complete JSON object with `"jsonrpc": "2.0"` and an `error` member whose `code`
    /// is an integer. `None` for anything else, a batch answer (an array) included.
    pub fn json_rpc_error(&self) -> Option<JsonRpcError> {
        if !self.complete {
            return None;
        }
        let value: serde_json::Value = serde_json::from_slice(self.body).ok()?;
        let object = value.as_object()?;
        if object.get("jsonrpc")?.as_str()? != "2.0" {
            return None;
        }
        let error = object.get("error")?.as_object()?;
        Some(JsonRpcError {
            code: error.get("code")?.as_i64()?,
            message: error
                .get("message")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        })
    }
}

/// The error object of a JSON-RPC 2.0 response, read by
/// [`ApiAnswer::json_rpc_error`].
///
/// Text from the API: untrusted. Compare it; do not log it unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JsonRpcError {
    /// The error code: `-32602` is "invalid params", `-32601` "method not found".
    pub code: i64,
    /// The error message (empty when the object has none).
    pub message: String,
}

pub(crate) type BodyJudgeFn = dyn Fn(&ApiAnswer<'_>) -> bool + Send + Sync;

/// A provider's judgement over the body of answers of some statuses.
#[derive(Clone)]
pub(crate) struct BodyJudge {
    pub(crate) statuses: Vec<StatusCode>,
    pub(crate) judge: Arc<BodyJudgeFn>,
}

impl fmt::Debug for BodyJudge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyJudge")
            .field("statuses", &self.statuses)
            .finish_non_exhaustive()
    }
}

/// What the status and headers of an answer say about its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// An ordinary answer: give it back.
    Answer,
    /// The token is dead.
    Dead,
    /// Only the body can tell: read its prefix and ask the provider's body judgement.
    ReadBody,
}

// ===== reading a prefix =====

/// Reads frames of a body until at least `limit` bytes of data were read, the body
/// ended, a trailers frame came, or the body failed; keeps everything it read, so that
/// the body can be handed on whole. The body is pinned in a box of its own, so that a
/// body that is not `Unpin` can be read and then handed on (this path is rare).
#[pin_project]
pub(crate) struct ReadPrefix<B: Body> {
    body: Option<Pin<Box<B>>>,
    prefix: Option<Prefix<B>>,
    limit: usize,
}

/// What [`ReadPrefix`] read, in the order it came.
pub(crate) struct Prefix<B: Body> {
    frames: VecDeque<Frame<B::Data>>,
    /// Data bytes among `frames`.
    len: usize,
    /// The body failed after `frames`: its error comes next.
    error: Option<B::Error>,
    /// The body ended after `frames` (or after `error`).
    ended: bool,
}

impl<B: Body> fmt::Debug for Prefix<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Prefix")
            .field("frames", &self.frames.len())
            .field("len", &self.len)
            .field("failed", &self.error.is_some())
            .field("ended", &self.ended)
            .finish()
    }
}

impl<B: Body> fmt::Debug for ReadPrefix<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadPrefix")
            .field("prefix", &self.prefix)
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl<B: Body> Prefix<B> {
    /// The first `limit` bytes of data read, copied into one buffer for a judgement, and
    /// whether they are the whole body.
    pub(crate) fn bytes(&self, limit: usize) -> (Vec<u8>, bool) {
        let mut bytes = Vec::with_capacity(self.len.min(limit));
        for data in self.frames.iter().filter_map(Frame::data_ref) {
            let mut slices = [std::io::IoSlice::new(&[]); 16];
            let filled = data.chunks_vectored(&mut slices);
            for slice in &slices[..filled] {
                let room = limit - bytes.len();
                bytes.extend_from_slice(&slice[..slice.len().min(room)]);
            }
            if bytes.len() >= limit {
                break;
            }
        }
        let complete = self.ended && self.error.is_none() && self.len <= limit;
        (bytes, complete)
    }
}

impl<B: Body> ReadPrefix<B> {
    pub(crate) fn new(body: B, limit: usize) -> Self {
        Self {
            body: Some(Box::pin(body)),
            prefix: Some(Prefix {
                frames: VecDeque::new(),
                len: 0,
                error: None,
                ended: false,
            }),
            limit,
        }
    }
}

impl<B: Body> Future for ReadPrefix<B> {
    /// What was read, and the rest of the body.
    type Output = (Prefix<B>, Pin<Box<B>>);

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let body = this.body.as_mut().expect("polled after completion");
        let prefix = this.prefix.as_mut().expect("polled after completion");
        loop {
            let done = prefix.len >= *this.limit
                || prefix.ended
                || prefix.error.is_some()
                || prefix.frames.back().is_some_and(Frame::is_trailers);
            if done {
                break;
            }
            if body.is_end_stream() {
                prefix.ended = true;
                break;
            }
            match ready!(body.as_mut().poll_frame(cx)) {
                None => prefix.ended = true,
                Some(Err(err)) => prefix.error = Some(err),
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        prefix.len += data.remaining();
                    }
                    prefix.frames.push_back(frame);
                }
            }
        }
        let body = this.body.take().expect("polled after completion");
        let prefix = this.prefix.take().expect("polled after completion");
        Poll::Ready((prefix, body))
    }
}

// ===== handing the body on =====

/// The body of a response that went through the layer: the inner service's body as it
/// is, or, when the layer read the start of it to judge a dead token, the frames it
/// read followed by the rest. Either way the caller receives the same frames, data and
/// trailers the server sent, in the same order.
#[pin_project]
pub struct ResponseBody<B: Body> {
    #[pin]
    kind: Kind<B>,
}

#[pin_project(project = KindProj)]
enum Kind<B: Body> {
    /// Untouched: the common case, no larger than the inner body and its tag.
    Inner(#[pin] B),
    /// Read from: what was read, still to be handed on, then the rest.
    Prefixed(Box<Prefixed<B>>),
}

struct Prefixed<B: Body> {
    prefix: Prefix<B>,
    rest: Pin<Box<B>>,
}

impl<B: Body> ResponseBody<B> {
    /// The inner body, untouched.
    #[inline]
    pub(crate) fn new(inner: B) -> Self {
        Self {
            kind: Kind::Inner(inner),
        }
    }

    /// The frames `prefix` read, then the rest of the body.
    pub(crate) fn prefixed(prefix: Prefix<B>, rest: Pin<Box<B>>) -> Self {
        Self {
            kind: Kind::Prefixed(Box::new(Prefixed { prefix, rest })),
        }
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner(inner) => inner.poll_frame(cx),
            KindProj::Prefixed(prefixed) => {
                let prefix = &mut prefixed.prefix;
                if let Some(frame) = prefix.frames.pop_front() {
                    if let Some(data) = frame.data_ref() {
                        prefix.len -= data.remaining();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                if let Some(err) = prefix.error.take() {
                    prefix.ended = true;
                    return Poll::Ready(Some(Err(err)));
                }
                if prefix.ended {
                    return Poll::Ready(None);
                }
                prefixed.rest.as_mut().poll_frame(cx)
            }
        }
    }

    #[inline]
    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner(inner) => inner.is_end_stream(),
            Kind::Prefixed(prefixed) => {
                let prefix = &prefixed.prefix;
                prefix.frames.is_empty()
                    && prefix.error.is_none()
                    && (prefix.ended || prefixed.rest.is_end_stream())
            }
        }
    }

    #[inline]
    fn size_hint(&self) -> SizeHint {
        let prefixed = match &self.kind {
            Kind::Inner(inner) => return inner.size_hint(),
            Kind::Prefixed(prefixed) => prefixed,
        };
        let read = prefixed.prefix.len as u64;
        if prefixed.prefix.ended {
            return SizeHint::with_exact(read);
        }
        let rest = prefixed.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(read));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(read));
        }
        hint
    }
}

impl<B: Body + Default> Default for ResponseBody<B> {
    fn default() -> Self {
        Self::new(B::default())
    }
}

impl<B: Body + fmt::Debug> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner(inner) => f.debug_tuple("ResponseBody").field(inner).finish(),
            Kind::Prefixed(prefixed) => f
                .debug_struct("ResponseBody")
                .field("prefix", &prefixed.prefix)
                .field("rest", &prefixed.rest)
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full, StreamBody};

    type Chunks = futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>>;

    fn stream(frames: Vec<Result<Frame<Bytes>, std::io::Error>>) -> StreamBody<Chunks> {
        StreamBody::new(futures_util::stream::iter(frames))
    }

    fn data(s: &'static str) -> Result<Frame<Bytes>, std::io::Error> {
        Ok(Frame::data(Bytes::from_static(s.as_bytes())))
    }

    #[tokio::test]
    async fn a_short_body_is_read_whole_and_handed_on_whole() {
        let (prefix, rest) = ReadPrefix::new(stream(vec![data("ab"), data("cd")]), 16).await;
        assert_eq!(prefix.bytes(16), (b"abcd".to_vec(), true));
        let body = ResponseBody::prefixed(prefix, rest);
        assert_eq!(body.size_hint().exact(), Some(4));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abcd");
    }

    #[tokio::test]
    async fn a_long_body_is_read_to_the_limit_and_handed_on_whole() {
        let frames = (0..100).map(|_| data("0123456789")).collect();
        let (prefix, rest) = ReadPrefix::new(stream(frames), 25).await;
        let (bytes, complete) = prefix.bytes(25);
        assert_eq!(bytes, b"0123456789012345678901234");
        assert!(!complete);
        // Three frames were read (30 bytes), no more.
        assert_eq!(prefix.frames.len(), 3);
        let body = ResponseBody::prefixed(prefix, rest);
        let whole = body.collect().await.unwrap().to_bytes();
        assert_eq!(whole, "0123456789".repeat(100));
    }

    #[tokio::test]
    async fn trailers_and_errors_keep_their_place() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        let frames = vec![data("x"), Ok(Frame::trailers(trailers.clone()))];
        let (prefix, rest) = ReadPrefix::new(stream(frames), 16).await;
        let collected = ResponseBody::prefixed(prefix, rest).collect().await.unwrap();
        assert_eq!(collected.trailers(), Some(&trailers));
        assert_eq!(collected.to_bytes(), "x");

        let frames = vec![data("x"), Err(std::io::Error::other("reset")), data("never")];
        let (prefix, rest) = ReadPrefix::new(stream(frames), 16).await;
        assert!(!prefix.bytes(16).1, "a failed body is not complete");
        let mut body = ResponseBody::prefixed(prefix, rest);
        assert_eq!(body.frame().await.unwrap().unwrap().into_data().unwrap(), "x");
        assert_eq!(body.frame().await.unwrap().unwrap_err().to_string(), "reset");
    }

    #[tokio::test]
    async fn an_untouched_body_is_the_inner_body() {
        let body = ResponseBody::new(Full::new(Bytes::from_static(b"hello")));
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
    }

    #[test]
    fn json_rpc_errors_are_read_from_complete_objects_only() {
        let headers = HeaderMap::new();
        let answer = |body: &'static str, complete| {
            ApiAnswer::new(StatusCode::BAD_REQUEST, &headers, body.as_bytes(), complete).json_rpc_error()
        };
        let dead = r#"{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid access token"},"id":1}"#;
        assert_eq!(
            answer(dead, true),
            Some(JsonRpcError {
                code: -32602,
                message: "Invalid access token".into()
            })
        );
        assert_eq!(answer(dead, false), None, "a truncated body is not judged");
        assert_eq!(answer(r#"{"error":{"code":1}}"#, true), None, "not JSON-RPC 2.0");
        assert_eq!(answer(r#"[{"jsonrpc":"2.0","error":{"code":1}}]"#, true), None);
        assert_eq!(answer(r#"{"jsonrpc":"2.0","error":{"code":"x"}}"#, true), None);
        assert_eq!(answer("<html>", true), None);
        assert_eq!(
            answer(r#"{"jsonrpc":"2.0","error":{"code":1},"id":null}"#, true),
            Some(JsonRpcError {
                code: 1,
                message: String::new()
            })
        );
    }
}
