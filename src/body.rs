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
//! | [`ReplayBody<B>`] around any streaming body | when the whole body fit under the limit and the first send finished reading it (or stopped early and left the rest unread) |
//!
//! Anything else is sent once, and a dead-token answer to it goes back to the caller as
//! it is (the token is still refreshed for the requests that follow). Implement
//! [`ReplayableBody`] for your own body type, or wrap it in [`ReplayBody`].
//!
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
    fmt,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{ready, Context, Poll},
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
        let recording = self.lock();
        !recording.overflowed && (recording.finished || recording.rest.is_some())
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
}
