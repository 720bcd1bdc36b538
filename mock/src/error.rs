//! Error answers in the JSON shape of RFC 6749 §5.2, shared by the token,
//! revocation and authorization endpoints.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use crate::body::{json_response, set};

/// An OAuth error answer, `{"error": …, "error_description": …}`, or one of
/// the plain HTTP errors (405, 413) that share its shape.
#[derive(Debug)]
pub(crate) struct ErrorAnswer {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) description: Cow<'static, str>,
    /// Whether to challenge with `WWW-Authenticate: Basic` (the client tried
    /// to authenticate through the `Authorization` header).
    basic_challenge: bool,
    /// The `Allow` header of a `405`.
    allow: Option<&'static str>,
}

impl ErrorAnswer {
    pub(crate) fn new(code: &'static str, description: impl Into<Cow<'static, str>>) -> Self {
        ErrorAnswer {
            status: StatusCode::BAD_REQUEST,
            code,
            description: description.into(),
            basic_challenge: false,
            allow: None,
        }
    }

    /// The same error with another status.
    pub(crate) fn with_status(self, status: StatusCode) -> Self {
        ErrorAnswer { status, ..self }
    }

    pub(crate) fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new("invalid_request", description)
    }

    /// `401 invalid_client`, with a Basic challenge if the client used the
    /// `Authorization` header (RFC 6749 §5.2).
    pub(crate) fn invalid_client(description: &str, basic_challenge: bool) -> Self {
        ErrorAnswer {
            basic_challenge,
            ..Self::new("invalid_client", description.to_owned()).with_status(StatusCode::UNAUTHORIZED)
        }
    }

    pub(crate) fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new("invalid_grant", description)
    }

    pub(crate) fn unauthorized_client(description: &'static str) -> Self {
        Self::new("unauthorized_client", description)
    }

    pub(crate) fn unsupported_grant_type(description: String) -> Self {
        Self::new("unsupported_grant_type", description)
    }

    pub(crate) fn invalid_scope(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new("invalid_scope", description)
    }

    /// `405`, naming the one method the endpoint accepts.
    pub(crate) fn method_not_allowed(allow: &'static str) -> Self {
        ErrorAnswer {
            allow: Some(allow),
            ..Self::invalid_request(format!("this endpoint only accepts {allow}"))
                .with_status(StatusCode::METHOD_NOT_ALLOWED)
        }
    }

    pub(crate) fn payload_too_large(limit: usize) -> Self {
        Self::invalid_request(format!("the request body is larger than {limit} bytes"))
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    }

    pub(crate) fn into_response(self) -> Response<Full<Bytes>> {
        let body = json!({
            "error": self.code,
            "error_description": self.description,
        });
        let mut response = json_response(self.status, &body);
        set(&mut response, CACHE_CONTROL, "no-store");
        set(&mut response, PRAGMA, "no-cache");
        if self.basic_challenge {
            set(&mut response, WWW_AUTHENTICATE, r#"Basic realm="mock""#);
        }
        if let Some(allow) = self.allow {
            set(&mut response, ALLOW, allow);
        }
        response
    }
}
