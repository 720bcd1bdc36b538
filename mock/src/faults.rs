//! Failures the token endpoint and the protected resource can be told to produce.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;

use bytes::Bytes;
use http::header::CACHE_CONTROL;
use http::{Response, StatusCode};
use http_body_util::Full;

use crate::body::{respond, set};
use crate::sync::lock;

/// A failure injected into a token request with
/// [`MockServer::fail_next_token_requests`](crate::MockServer::fail_next_token_requests).
///
/// Faults are applied before the request is validated in any way, so they hit
/// well-formed and malformed requests alike.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `500 Internal Server Error` with a plain-text body (no JSON at all).
    ServerError,
    /// The request is never answered. The connection stays open until the
    /// client closes it or the server is dropped.
    Hang,
    /// The connection is closed without sending any response.
    Reset,
    /// `200 OK` with `Content-Type: application/json` and a body that is cut
    /// off in the middle of the JSON document.
    MalformedJson,
    /// `502 Bad Gateway` with a `text/html` error page, as an intermediary
    /// proxy would send.
    HtmlPage,
    /// `400` with `{"error":"use_dpop_nonce"}` and a new nonce in `DPoP-Nonce` (RFC
    /// 9449 §8), whatever nonce the request's proof carried. With
    /// [`dpop_nonces`](crate::MockServerBuilder::dpop_nonces) on, the token endpoint's
    /// nonce is replaced by that new one first; otherwise the nonce sent is one the
    /// server does not require. Counted in
    /// [`MockCounters::dpop_nonce_demanded_token`](crate::MockCounters::dpop_nonce_demanded_token)
    /// too.
    DemandDpopNonce,
}

/// Returned by the service to make hyper drop the connection without
/// writing a response.
#[derive(Debug)]
pub(crate) struct ResetConnection;

impl fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection reset by the mock server (injected fault)")
    }
}

impl std::error::Error for ResetConnection {}

impl Fault {
    /// Produces the fault. For [`Fault::Hang`] this never completes.
    pub(crate) async fn respond(self) -> Result<Response<Full<Bytes>>, ResetConnection> {
        let (status, content_type, body) = match self {
            Fault::ServerError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                "internal server error",
            ),
            Fault::MalformedJson => (
                StatusCode::OK,
                "application/json",
                r#"{"access_token":"q7Lm2VxT9cRw4BnK","token_type":"Bea"#,
            ),
            Fault::HtmlPage => (
                StatusCode::BAD_GATEWAY,
                "text/html; charset=utf-8",
                "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\
                 <body><h1>502 Bad Gateway</h1><p>The upstream server is unavailable.</p>\
                 </body></html>\n",
            ),
            Fault::DemandDpopNonce => (
                StatusCode::BAD_REQUEST,
                "application/json",
                r#"{"error":"use_dpop_nonce","error_description":"the DPoP proof must carry the server's current nonce"}"#,
            ),
            Fault::Reset => return Err(ResetConnection),
            Fault::Hang => std::future::pending().await,
        };
        let mut response = respond(status, content_type, body);
        set(&mut response, CACHE_CONTROL, "no-store");
        Ok(response)
    }
}

/// A refusal injected into a protected resource request with
/// [`MockServer::fail_next_resource_requests`](crate::MockServer::fail_next_resource_requests).
///
/// Like [`Fault`]s, these are applied before the request is looked at (its token and
/// any DPoP proof are not checked, and no proof's `jti` is remembered), so they hit any
/// request alike. They serve to test what a client does when the answer to a retry is
/// itself a refusal.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceFault {
    /// `401` with `WWW-Authenticate: DPoP error="use_dpop_nonce"` and a new nonce in
    /// `DPoP-Nonce` (RFC 9449 §9). With [`dpop_nonces`](crate::MockServerBuilder::dpop_nonces)
    /// on, the resource's nonce is replaced by that new one first (as
    /// [`MockServer::rotate_dpop_nonces`](crate::MockServer::rotate_dpop_nonces) would,
    /// for the resource only), so the nonce a client held is refused from then on;
    /// otherwise the nonce sent is one the server does not require. Counted in
    /// [`MockCounters::dpop_nonce_demanded_resource`](crate::MockCounters::dpop_nonce_demanded_resource).
    DemandDpopNonce,
    /// `401` with `error="invalid_token"`, as for a dead token: in a `DPoP` challenge
    /// when [`dpop`](crate::MockServerBuilder::dpop) is on, in a `Bearer` one
    /// otherwise. The token itself stays valid.
    InvalidToken,
}

/// Faults waiting to be applied, in order, as `(fault, remaining uses)` runs.
#[derive(Debug)]
pub(crate) struct FaultQueue<F = Fault> {
    pending: Mutex<VecDeque<(F, usize)>>,
}

impl<F> Default for FaultQueue<F> {
    fn default() -> Self {
        FaultQueue {
            pending: Mutex::new(VecDeque::new()),
        }
    }
}

impl<F: Copy> FaultQueue<F> {
    /// Queues `fault` for the next `n` requests, after the faults that are already
    /// queued.
    pub(crate) fn push(&self, n: usize, fault: F) {
        if n > 0 {
            lock(&self.pending).push_back((fault, n));
        }
    }

    /// Takes the fault for the current request, if any.
    pub(crate) fn take(&self) -> Option<F> {
        let mut pending = lock(&self.pending);
        let (fault, remaining) = pending.front_mut()?;
        let fault = *fault;
        *remaining -= 1;
        if *remaining == 0 {
            pending.pop_front();
        }
        Some(fault)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_faults_are_used_in_order() {
        let queue = FaultQueue::default();
        queue.push(2, Fault::ServerError);
        queue.push(0, Fault::Reset);
        queue.push(1, Fault::Hang);
        assert_eq!(queue.take(), Some(Fault::ServerError));
        assert_eq!(queue.take(), Some(Fault::ServerError));
        assert_eq!(queue.take(), Some(Fault::Hang));
        assert_eq!(queue.take(), None);

        let queue = FaultQueue::default();
        queue.push(1, ResourceFault::DemandDpopNonce);
        queue.push(1, ResourceFault::InvalidToken);
        assert_eq!(queue.take(), Some(ResourceFault::DemandDpopNonce));
        assert_eq!(queue.take(), Some(ResourceFault::InvalidToken));
        assert_eq!(queue.take(), None);
    }
}
