//! Reading request bodies and building small responses.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Incoming;

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// The body is larger than the endpoint accepts.
    TooLarge,
    /// The connection failed while the body was being received.
    Failed,
}

/// Reads a whole request body, refusing to buffer more than `limit` bytes.
pub(crate) async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(BodyError::TooLarge),
        Err(_) => Err(BodyError::Failed),
    }
}

/// A response with a body and a fixed content type.
pub(crate) fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    set(&mut response, CONTENT_TYPE, content_type);
    response
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    respond(status, "application/json", value.to_string())
}

/// Sets a header to a static value.
pub(crate) fn set(response: &mut Response<Full<Bytes>>, name: HeaderName, value: &'static str) {
    response
        .headers_mut()
        .insert(name, HeaderValue::from_static(value));
}

/// Adds `DPoP-Nonce: nonce` (RFC 9449 §8) to an answer.
pub(crate) fn set_dpop_nonce(response: &mut Response<Full<Bytes>>, nonce: String) {
    if let Ok(value) = HeaderValue::try_from(nonce) {
        response.headers_mut().insert("dpop-nonce", value);
    }
}

/// `404 Not Found`, for everything outside the two endpoints.
pub(crate) fn not_found() -> Response<Full<Bytes>> {
    respond(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "not found")
}
