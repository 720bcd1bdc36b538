//! Request bodies that can be sent twice.
//!
//! When an API answers a request with a dead-token status, the layer refreshes the token
//! and sends the request once more. That needs a second copy of the body, made before
//! the first send. [`ReplayableBody`] says how to make one.
//!
//! # Which bodies are retried
//!
//! | body | retried |
//! | --- | --- |
//! | `()` (no body) and [`Empty`] | always |
//! | [`Full`], `String` | when no larger than the replay limit (default 64 KiB) |
//! | [`BoxBody`], [`UnsyncBoxBody`] | only when their size hint says they are empty |
//! | `axum::body::Body` (feature `axum`), `tonic::body::Body` (feature `tonic`) | when empty, or when the whole body fits under the limit: what it has ready at once is read ahead and kept; a body still streaming is recorded as it is sent, like [`ReplayBody`] |
//! | [`ReplayBody<B>`] around any streaming body | when the whole body fit under the limit and the first send finished reading it (or stopped early and left the rest unread) |
//! | `hyper::body::Incoming` (feature `hyper`, on by default) | never: sent once (see below) |
//!
//! Anything else is sent once, and a dead-token answer to it goes back to the caller as
//! it is (the token is still refreshed for the requests that follow). Implement
//! [`ReplayableBody`] for your own body type, or wrap it in [`ReplayBody`].
//!
//! # axum and tonic bodies
//!
//! Both are boxed bodies, so the layer can put a recording body in their place: before
//! the first send it reads whatever the body has ready without waiting (all of it, for
//! a body built from bytes or a unary gRPC message), keeps up to the replay limit, and
//! sends both copies from what it kept. A body that is still streaming is recorded as it
//! goes; a body that outgrows the limit is sent once. The bytes sent the second time are
//! the bytes sent the first time.
//!
//! # A proxy forwarding `hyper::body::Incoming`
//!
//! What a hyper server received can be read only once, and hyper offers no way to build
//! another `Incoming`: a request with this body is sent once, and a dead-token answer
//! goes back to the client (the token is refreshed for the next request). A proxy that
//! wants the retry wraps the body before forwarding it, and forwards over a client of
//! that body type:
//!
//! ```
//! # #[cfg(feature = "hyper")]
//! # fn forward(request: http::Request<hyper::body::Incoming>) {
//! use tower_oauth2::body::ReplayBody;
//!
//! // Recorded as it is forwarded, up to the layer's replay limit.
//! let request = request.map(ReplayBody::new);
//! # let _ = request;
//! # }
//! ```

//! # Example
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::{BodyExt, StreamBody};
//! use tower_oauth2::body::ReplayBody;
//!
//! let chunks = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from("hi")))]);
//! // Up to the replay limit, the chunks are kept as they stream by, for a second send.
//! let body = ReplayBody::new(StreamBody::new(chunks));
//! # let _ = body;
//! ```

use std::{
    collections::VecDeque,
    fmt, mem,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{ready, Context, Poll, Waker},
};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{
    combinators::{BoxBody, UnsyncBoxBody},
    Empty, Full,
};

/// A request body of which a copy can be made before sending, for a retry.
pub trait ReplayableBody: Sized {
    /// A copy to send if the request must be retried, or `None` if this body cannot be
    /// sent twice. Called once, before the first send; `limit` is the most bytes the
    /// layer is willing to keep.
    fn try_clone_for_replay(&mut self, limit: usize) -> Option<Self>;

    /// Whether the copy can still be sent, checked just before the retry. Bodies that
    /// record the first send as it streams (like [`ReplayBody`]) answer `false` when the
    /// first send outgrew the limit.
    fn is_replayable(&self) -> bool {
        true
    }

    /// The copy the layer keeps, with the way to tell, when the answer comes, whether it
    /// can still be sent. The layer calls this rather than
    /// [`try_clone_for_replay`](Self::try_clone_for_replay); the default calls that, and
    /// asks the copy's [`is_replayable`](Self::is_replayable). Boxed bodies override it:
    /// once a recording body is boxed, the box can no longer answer for it.
    fn replay_copy(&mut self, limit: usize) -> Option<Replay<Self>> {
        self.try_clone_for_replay(limit).map(Replay::new)
    }
}

/// A replay copy of a request body, as the layer keeps it until the answer comes
/// (see [`ReplayableBody::replay_copy`]).
pub struct Replay<B> {
    body: B,
    /// Asks the recording when the copy cannot (it is boxed). A thin pointer: the copy
    /// lives in the response future of every request that may be retried.
    recording: Option<Box<RecordingCheck>>,
}

/// Whether a recording can be replayed, asked through the box of a boxed body's copy.
type RecordingCheck = Box<dyn Fn() -> bool + Send + Sync>;

impl<B: ReplayableBody> Replay<B> {
    /// A copy that answers for itself through [`ReplayableBody::is_replayable`].
    pub fn new(body: B) -> Self {
        Self {
            body,
            recording: None,
        }
    }

    /// Whether the copy can still be sent: checked just before the retry.
    pub fn is_replayable(&self) -> bool {
        match &self.recording {
            Some(recording) => recording(),
            None => self.body.is_replayable(),
        }
    }

    /// The body to send.
    pub fn into_body(self) -> B {
        self.body
    }
}

impl<B> fmt::Debug for Replay<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replay").finish_non_exhaustive()
    }
}

impl ReplayableBody for () {
    fn try_clone_for_replay(&mut self, _limit: usize) -> Option<Self> {
        Some(())
    }
}

impl<D: Buf> ReplayableBody for Empty<D> {
    fn try_clone_for_replay(&mut self, _limit: usize) -> Option<Self> {
        Some(Empty::new())
    }
}

impl<D: Buf + Clone> ReplayableBody for Full<D> {
    fn try_clone_for_replay(&mut self, limit: usize) -> Option<Self> {
        let size = Body::size_hint(self).exact()?;
        (size <= limit as u64).then(|| self.clone())
    }
}

impl ReplayableBody for String {
    fn try_clone_for_replay(&mut self, limit: usize) -> Option<Self> {
        (self.len() <= limit).then(|| self.clone())
    }
}

impl<D: Buf + 'static, E: 'static> ReplayableBody for BoxBody<D, E> {
    fn try_clone_for_replay(&mut self, _limit: usize) -> Option<Self> {
        (self.size_hint().exact() == Some(0)).then(BoxBody::default)
    }
}

impl<D: Buf + 'static, E: 'static> ReplayableBody for UnsyncBoxBody<D, E> {
    fn try_clone_for_replay(&mut self, _limit: usize) -> Option<Self> {
        (self.size_hint().exact() == Some(0)).then(UnsyncBoxBody::default)
    }
}

/// Wraps a streaming body so that it can be replayed once if it is small enough.
///
/// The first send streams the inner body as usual and keeps a copy of each chunk while
/// the total stays under the replay limit. The copy handed to a retry yields those
/// chunks, then whatever the first send left unread. A body that outgrows the limit stops
/// being recorded, and its request is not retried.
pub struct ReplayBody<B> {
    shared: Arc<Mutex<Recording<B>>>,
    /// The inner body, while this copy is the one streaming it.
    source: Option<B>,
    /// For the replaying copy: how many recorded chunks it has yielded.
    replayed: Option<usize>,
}

struct Recording<B> {
    chunks: Vec<Bytes>,
    len: usize,
    limit: usize,
    overflowed: bool,
    finished: bool,
    trailers: Option<HeaderMap>,
    /// What the first send left unread, handed over when it was dropped.
    rest: Option<B>,
}

impl<B> ReplayBody<B> {
    /// Wraps `body`.
    pub fn new(body: B) -> Self {
        Self {
            shared: Arc::new(Mutex::new(Recording {
                chunks: Vec::new(),
                len: 0,
                limit: usize::MAX,
                overflowed: false,
                finished: false,
                trailers: None,
                rest: None,
            })),
            source: Some(body),
            replayed: None,
        }
    }

    /// Whether the recording can be replayed: the first send read the body to its end,
    /// or stopped early and left the rest, without outgrowing the limit.
    fn is_complete(recording: &Recording<B>) -> bool {
        !recording.overflowed && (recording.finished || recording.rest.is_some())
    }

    fn lock(&self) -> MutexGuard<'_, Recording<B>> {
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl<B: Body + Unpin> ReplayableBody for ReplayBody<B> {
    fn try_clone_for_replay(&mut self, limit: usize) -> Option<Self> {
        if self.replayed.is_some() || self.source.as_ref()?.size_hint().lower() > limit as u64 {
            return None;
        }
        self.lock().limit = limit;
        Some(Self {
            shared: Arc::clone(&self.shared),
            source: None,
            replayed: Some(0),
        })
    }

    fn is_replayable(&self) -> bool {
        Self::is_complete(&self.lock())
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        if let Some(position) = this.replayed.as_mut() {
            let mut recording = this
                .shared
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(chunk) = recording.chunks.get(*position) {
                *position += 1;
                return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
            }
            if this.source.is_none() {
                match recording.rest.take() {
                    Some(rest) => this.source = Some(rest),
                    None => {
                        return Poll::Ready(recording.trailers.take().map(|t| Ok(Frame::trailers(t))));
                    }
                }
            }
            drop(recording);
            // The rest of the body, unread by the first send, streams straight through.
            let Some(source) = this.source.as_mut() else {
                return Poll::Ready(None);
            };
            return Pin::new(source).poll_frame(cx).map(|frame| {
                frame.map(|frame| {
                    frame.map(|frame| frame.map_data(|mut data| data.copy_to_bytes(data.remaining())))
                })
            });
        }

        let Some(source) = this.source.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(source).poll_frame(cx));
        let mut recording = this
            .shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match frame {
            None => {
                recording.finished = true;
                this.source = None;
                Poll::Ready(None)
            }
            Some(Err(err)) => {
                recording.overflowed = true;
                Poll::Ready(Some(Err(err)))
            }
            Some(Ok(frame)) => {
                let frame = frame.map_data(|mut data| data.copy_to_bytes(data.remaining()));
                if let Some(data) = frame.data_ref() {
                    if !recording.overflowed {
                        if recording.len + data.len() <= recording.limit {
                            recording.len += data.len();
                            recording.chunks.push(data.clone());
                        } else {
                            recording.overflowed = true;
                            recording.chunks = Vec::new();
                        }
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    recording.trailers = Some(trailers.clone());
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match (&self.source, self.replayed) {
            (Some(source), None) => source.is_end_stream(),
            _ => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.source, self.replayed) {
            (Some(source), None) => source.size_hint(),
            _ => SizeHint::default(),
        }
    }
}

impl<B> Drop for ReplayBody<B> {
    fn drop(&mut self) {
        // The first send stopped early: leave the unread rest for the replay.
        if self.replayed.is_none() {
            if let Some(source) = self.source.take() {
                let mut recording = self
                    .shared
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if !recording.finished && !recording.overflowed {
                    recording.rest = Some(source);
                }
            }
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayBody")
            .field("replay", &self.replayed.is_some())
            .finish_non_exhaustive()
    }
}

// ===== hyper's `Incoming` =====

/// Never replayed: hyper gives no way to build a second `Incoming`, so a request
/// forwarded with the body a hyper server received is sent once (see the
/// [module documentation](self) for a proxy that wants the retry).
#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
impl ReplayableBody for hyper::body::Incoming {
    fn try_clone_for_replay(&mut self, _limit: usize) -> Option<Self> {
        None
    }
}

// ===== boxed bodies: axum's and tonic's =====

/// Retried when empty or when the whole body fits under the limit (see the
/// [module documentation](self)).
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl ReplayableBody for axum::body::Body {
    /// A copy only when the body is read to its end at once, within the limit: the copy
    /// of a body still streaming cannot tell, once boxed, whether its recording is
    /// complete ([`replay_copy`](ReplayableBody::replay_copy) can).
    fn try_clone_for_replay(&mut self, limit: usize) -> Option<Self> {
        let replay = replay_boxed(self, limit)?;
        replay.recording.is_none().then(|| replay.into_body())
    }

    fn replay_copy(&mut self, limit: usize) -> Option<Replay<Self>> {
        replay_boxed(self, limit)
    }
}

#[cfg(feature = "axum")]
impl Boxed for axum::body::Body {
    fn boxing<B>(body: B) -> Self
    where
        B: Body<Data = Bytes, Error = Self::Error> + Send + 'static,
    {
        axum::body::Body::new(body)
    }
}

/// Retried when empty or when the whole body fits under the limit: a unary call's
/// message always does, up to the limit (see the [module documentation](self)).
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
impl ReplayableBody for tonic::body::Body {
    /// A copy only when the body is read to its end at once, within the limit: the copy
    /// of a body still streaming cannot tell, once boxed, whether its recording is
    /// complete ([`replay_copy`](ReplayableBody::replay_copy) can).
    fn try_clone_for_replay(&mut self, limit: usize) -> Option<Self> {
        let replay = replay_boxed(self, limit)?;
        replay.recording.is_none().then(|| replay.into_body())
    }

    fn replay_copy(&mut self, limit: usize) -> Option<Replay<Self>> {
        replay_boxed(self, limit)
    }
}

#[cfg(feature = "tonic")]
impl Boxed for tonic::body::Body {
    fn boxing<B>(body: B) -> Self
    where
        B: Body<Data = Bytes, Error = Self::Error> + Send + 'static,
    {
        tonic::body::Body::new(body)
    }
}

/// A body type that boxes any body of its data and error types, as axum's and tonic's
/// do: a body of that type can be replaced in place by a recording one.
#[cfg_attr(not(any(feature = "axum", feature = "tonic")), allow(dead_code))]
trait Boxed: ReplayableBody + Body<Data = Bytes> + Default + Unpin + Send + 'static {
    fn boxing<B>(body: B) -> Self
    where
        B: Body<Data = Bytes, Error = Self::Error> + Send + 'static;
}

/// The replay copy of a boxed body, putting in `body`'s place what the first send reads.
///
/// The body is read ahead without waiting, as far as it is ready and up to `limit`
/// bytes. Read to its end, both sends get what was read. Still streaming, it is
/// recorded as it is sent (a [`ReplayBody`]). Over the limit, or failed, it is sent
/// once: what was read ahead, then the rest, exactly as it would have streamed.
#[cfg_attr(not(any(feature = "axum", feature = "tonic")), allow(dead_code))]
fn replay_boxed<T: Boxed>(body: &mut T, limit: usize) -> Option<Replay<T>>
where
    T::Error: Send,
{
    if body.is_end_stream() {
        return Some(Replay::new(T::default()));
    }
    if body.size_hint().lower() > limit as u64 {
        return None;
    }
    let (ahead, read) = read_ahead(mem::take(body), limit);
    match read {
        Read::Whole => {
            let copy: ReadAhead<T> = ReadAhead {
                chunks: ahead.chunks.clone(),
                error: None,
                trailers: ahead.trailers.clone(),
                rest: None,
            };
            *body = T::boxing(ahead);
            Some(Replay::new(T::boxing(copy)))
        }
        Read::Streaming if ahead.size_hint().lower() <= limit as u64 => {
            let mut recording = ReplayBody::new(ahead);
            let replay = recording.try_clone_for_replay(limit);
            let shared = Arc::clone(&recording.shared);
            *body = T::boxing(recording);
            replay.map(|replay| Replay {
                body: T::boxing(replay),
                recording: Some(Box::new(Box::new(move || {
                    ReplayBody::is_complete(&shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
                }))),
            })
        }
        Read::Streaming | Read::Over | Read::Failed => {
            *body = T::boxing(ahead);
            None
        }
    }
}

/// How far [`read_ahead`] got.
#[cfg_attr(not(any(feature = "axum", feature = "tonic")), allow(dead_code))]
enum Read {
    /// To the end of the body, within the limit.
    Whole,
    /// To a frame that is not ready yet.
    Streaming,
    /// Past the limit.
    Over,
    /// To an error.
    Failed,
}

/// Reads the frames `body` has ready, without waiting, until it ends, fails, is not
/// ready, or more than `limit` bytes have been read.
#[cfg_attr(not(any(feature = "axum", feature = "tonic")), allow(dead_code))]
fn read_ahead<B: Body<Data = Bytes> + Unpin>(mut body: B, limit: usize) -> (ReadAhead<B>, Read) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut ahead = ReadAhead {
        chunks: VecDeque::new(),
        error: None,
        trailers: None,
        rest: None,
    };
    let mut len = 0usize;
    let read = loop {
        if len > limit {
            break Read::Over;
        }
        match Pin::new(&mut body).poll_frame(&mut cx) {
            Poll::Pending => break Read::Streaming,
            Poll::Ready(None) => return (ahead, Read::Whole),
            Poll::Ready(Some(Err(err))) => {
                ahead.error = Some(err);
                return (ahead, Read::Failed);
            }
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(data) => {
                    len = len.saturating_add(data.len());
                    if !data.is_empty() {
                        ahead.chunks.push_back(data);
                    }
                }
                // Trailers end a body: the next poll says so.
                Err(frame) => ahead.trailers = frame.into_trailers().ok(),
            },
        }
    };
    ahead.rest = Some(body);
    (ahead, read)
}

/// The frames read ahead of a body's send, then whatever its source has left (none,
/// when it was read to its end).
struct ReadAhead<B: Body> {
    chunks: VecDeque<Bytes>,
    /// The error that stopped the reading ahead: yielded after the chunks.
    error: Option<B::Error>,
    trailers: Option<HeaderMap>,
    rest: Option<B>,
}

// The error is only ever moved out, never pinned; `rest` is `Unpin` where polled.
impl<B: Body> Unpin for ReadAhead<B> {}

impl<B: Body<Data = Bytes> + Unpin> Body for ReadAhead<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        if let Some(chunk) = this.chunks.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if let Some(err) = this.error.take() {
            return Poll::Ready(Some(Err(err)));
        }
        if let Some(trailers) = this.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        let Some(rest) = this.rest.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(rest).poll_frame(cx));
        if frame.is_none() {
            this.rest = None;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
            && self.error.is_none()
            && self.trailers.is_none()
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let kept = self.chunks.iter().map(|chunk| chunk.len() as u64).sum::<u64>();
        let Some(rest) = &self.rest else {
            return SizeHint::with_exact(kept);
        };
        let rest = rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(kept));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(kept));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    type Chunks = futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, std::io::Error>>>;

    fn stream(chunks: &[&'static str]) -> ReplayBody<StreamBody<Chunks>> {
        let frames: Vec<_> = chunks
            .iter()
            .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
            .collect();
        ReplayBody::new(StreamBody::new(futures_util::stream::iter(frames)))
    }

    #[tokio::test]
    async fn replays_a_small_stream_byte_identical() {
        let mut first = stream(&["hello ", "streaming ", "world"]);
        let replay = first.try_clone_for_replay(1024).unwrap();
        assert!(!replay.is_replayable(), "nothing recorded before the first send");
        let sent = first.collect().await.unwrap().to_bytes();
        assert!(replay.is_replayable());
        assert_eq!(replay.collect().await.unwrap().to_bytes(), sent);
        assert_eq!(sent, "hello streaming world");
    }

    #[tokio::test]
    async fn a_stream_over_the_limit_is_not_replayable() {
        let mut first = stream(&["0123456789", "0123456789"]);
        let replay = first.try_clone_for_replay(15).unwrap();
        let _ = first.collect().await.unwrap();
        assert!(!replay.is_replayable());
    }

    #[tokio::test]
    async fn an_unfinished_first_send_hands_the_rest_to_the_replay() {
        let mut first = stream(&["a", "b", "c"]);
        let replay = first.try_clone_for_replay(1024).unwrap();
        let frame = first.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "a");
        drop(first);
        assert!(replay.is_replayable());
        assert_eq!(replay.collect().await.unwrap().to_bytes(), "abc");
    }

    #[test]
    fn buffered_bodies_replay_under_the_limit_only() {
        let mut full = Full::new(Bytes::from_static(b"12345"));
        assert!(full.try_clone_for_replay(5).is_some());
        assert!(full.try_clone_for_replay(4).is_none());
        assert!(String::from("abc").try_clone_for_replay(2).is_none());
        assert!(Empty::<Bytes>::new().try_clone_for_replay(0).is_some());
        let mut empty_box = Empty::<Bytes>::new().map_err(|never| match never {}).boxed();
        let _: &BoxBody<Bytes, std::convert::Infallible> = &empty_box;
        assert!(empty_box.try_clone_for_replay(0).is_some());
        let mut full_box = Full::new(Bytes::from_static(b"x"))
            .map_err(|never| match never {})
            .boxed();
        let _: &BoxBody<Bytes, std::convert::Infallible> = &full_box;
        assert!(full_box.try_clone_for_replay(100).is_none());
    }

    #[cfg(feature = "axum")]
    mod boxed {
        use super::*;
        use futures_util::StreamExt;

        async fn bytes_of(body: axum::body::Body) -> Bytes {
            body.collect().await.unwrap().to_bytes()
        }

        /// A body whose chunks arrive through a channel: not ready before they are sent.
        fn channel_body() -> (tokio::sync::mpsc::UnboundedSender<&'static str>, axum::body::Body) {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();
            let stream = tokio_stream_of(rx)
                .map(|chunk| Ok::<_, std::io::Error>(Bytes::from_static(chunk.as_bytes())));
            (tx, axum::body::Body::from_stream(stream))
        }

        fn tokio_stream_of(
            mut rx: tokio::sync::mpsc::UnboundedReceiver<&'static str>,
        ) -> impl futures_util::Stream<Item = &'static str> + Send {
            futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
        }

        #[tokio::test]
        async fn a_buffered_axum_body_is_sent_twice_byte_identical() {
            let json = r#"{"name":"widget","count":3}"#;
            let mut body = axum::body::Body::from(json);
            let replay = body.replay_copy(1024).expect("fits under the limit");
            assert!(replay.is_replayable());
            let replay = replay.into_body();
            assert_eq!(body.size_hint().exact(), Some(json.len() as u64));
            assert_eq!(replay.size_hint().exact(), Some(json.len() as u64));
            assert_eq!(bytes_of(body).await, json);
            assert_eq!(bytes_of(replay).await, json);
        }

        #[tokio::test]
        async fn an_empty_axum_body_is_replayed_and_one_over_the_limit_is_sent_once() {
            let mut empty = axum::body::Body::empty();
            assert!(empty.replay_copy(0).is_some());
            assert!(empty.try_clone_for_replay(0).is_some());

            let mut large = axum::body::Body::from("x".repeat(2048));
            assert!(large.replay_copy(1024).is_none());
            assert_eq!(bytes_of(large).await, "x".repeat(2048));
        }

        #[tokio::test]
        async fn a_ready_stream_over_the_limit_is_sent_once_whole() {
            let chunks = (0..8).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'y'; 300])));
            let mut body = axum::body::Body::from_stream(futures_util::stream::iter(chunks));
            assert!(body.replay_copy(1024).is_none());
            assert_eq!(bytes_of(body).await, vec![b'y'; 2400]);
        }

        #[tokio::test]
        async fn a_streaming_axum_body_is_recorded_as_it_is_sent() {
            let (tx, mut body) = channel_body();
            tx.send("first ").unwrap();
            let replay = body.replay_copy(1024).expect("nothing known to be too large");
            assert!(!replay.is_replayable(), "the first send has not finished");
            tx.send("second").unwrap();
            drop(tx);
            assert_eq!(bytes_of(body).await, "first second");
            assert!(replay.is_replayable());
            assert_eq!(bytes_of(replay.into_body()).await, "first second");
        }

        #[tokio::test]
        async fn a_streaming_axum_body_that_outgrows_the_limit_is_not_replayed() {
            let (tx, mut body) = channel_body();
            let replay = body.replay_copy(8).unwrap();
            tx.send("0123456789").unwrap();
            drop(tx);
            assert_eq!(bytes_of(body).await, "0123456789");
            assert!(!replay.is_replayable());
        }
    }
}
