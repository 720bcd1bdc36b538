//! The protected resource, `/api/*` (RFC 6750 §2.1, §3).

use std::sync::Arc;

use bytes::Bytes;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;

use super::body::{json_response, read_body, respond, set, BodyError};
use super::state::State;

/// Largest resource request body the server reads.
const BODY_LIMIT: usize = 1024 * 1024;

/// Whether a request path belongs to the protected resource.
pub(super) fn is_resource_path(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// Answers one request to the protected resource.
pub(super) async fn handle(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let request_id = parts
        .headers
        .get("x-request-id")
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    state.counters.resource_call(request_id);

    let response = match read_body(body, BODY_LIMIT).await {
        Ok(body) => {
            let body_len = body.len();
            state.counters.resource_body(body);
            match authorize(state, &parts.headers) {
                Ok(client_id) => json_response(
                    StatusCode::OK,
                    &json!({
                        "ok": true,
                        "client_id": &*client_id,
                        "path": parts.uri.path(),
                        "body_len": body_len,
                    }),
                ),
                Err(rejection) => rejection.into_response(),
            }
        }
        Err(BodyError::TooLarge) => plain(StatusCode::PAYLOAD_TOO_LARGE, "request body larger than 1 MiB"),
        Err(BodyError::Failed) => plain(StatusCode::BAD_REQUEST, "could not read the request body"),
    };

    state.resource_latency.wait().await;
    state.counters.resource_status(response.status().as_u16());
    response
}

/// Why a resource request was not authorized.
#[derive(Debug)]
enum Rejection {
    /// No credentials at all (RFC 6750 §3.1: no error code).
    Missing,
    /// Credentials that are not a live bearer token.
    Invalid(&'static str),
}

impl Rejection {
    fn into_response(self) -> Response<Full<Bytes>> {
        let (challenge, description) = match self {
            Rejection::Missing => (r#"Bearer realm="mock""#, "bearer token required"),
            Rejection::Invalid(description) => (r#"Bearer realm="mock", error="invalid_token""#, description),
        };
        tracing::debug!(description, "resource request rejected");
        let mut response = plain(StatusCode::UNAUTHORIZED, description);
        set(&mut response, WWW_AUTHENTICATE, challenge);
        response
    }
}

/// The client an access token in the `Authorization` header was issued to.
///
/// Tokens in the query string or body are not looked at, so a request that
/// carries its token only there counts as carrying none.
fn authorize(state: &State, headers: &HeaderMap) -> Result<Arc<str>, Rejection> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Err(Rejection::Missing),
        (Some(value), None) => value,
        (Some(_), Some(_)) => return Err(Rejection::Invalid("more than one Authorization header")),
    };
    let token = bearer_token(value.as_bytes())
        .ok_or(Rejection::Invalid("expected `Authorization: Bearer <token>`"))?;
    state
        .tokens()
        .access_token_client(token)
        .ok_or(Rejection::Invalid("access token is unknown, expired or revoked"))
}

/// Extracts the token from `Bearer <b64token>`; the scheme is
/// case-insensitive.
fn bearer_token(header: &[u8]) -> Option<&str> {
    let header = std::str::from_utf8(header).ok()?;
    let (scheme, token) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim_start_matches(' ');
    is_b64token(token).then_some(token)
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    respond(status, "text/plain; charset=utf-8", body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token(b"Bearer abc"), Some("abc"));
        assert_eq!(bearer_token(b"bEARER  abc=="), Some("abc=="));
    }

    #[test]
    fn non_bearer_credentials_are_rejected() {
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearer a b"), None);
        assert_eq!(bearer_token(b"Bearer ==="), None);
        assert_eq!(bearer_token(b"Bearerabc"), None);
    }

    #[test]
    fn resource_paths() {
        assert!(is_resource_path("/api"));
        assert!(is_resource_path("/api/"));
        assert!(is_resource_path("/api/v1/things"));
        assert!(!is_resource_path("/apis"));
        assert!(!is_resource_path("/"));
    }
}
