//! iOFFICE's direct code request, for server-side use without a browser.
//!
//! iOFFICE can hand out an authorization code for a user's username and password
//! (`POST {site}/external/api/oauth2/auth` with `x-auth-username`, `x-auth-password` and
//! `x-client-id` headers). It suits service accounts and back-office jobs; for people,
//! prefer the browser flow ([`Provider::authorization`](crate::Provider::authorization)),
//! which never lets the application see a password. The code is then exchanged like any
//! other, with [`Credential::authorization_code`](crate::Credential::authorization_code),
//! within five minutes.
//!
//! ```no_run
//! use tower_oauth2::{providers, secret::Password, Credential, TokenTransport};
//!
//! # async fn demo() -> Result<(), tower_oauth2::Error> {
//! let site = "https://acme.iofficeconnect.com";
//! let transport = TokenTransport::https()?;
//! let code = providers::ioffice::request_code(&transport, site, "client-id", "svc-user", &Password::new("pw")).await?;
//! let credential = Credential::authorization_code(
//!     providers::ioffice(site),
//!     "client-id",
//!     None,
//!     code,
//!     "https://app.example.com/callback",
//! );
//! # let _ = credential;
//! # Ok(())
//! # }
//! ```

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

use crate::{
    error::{Error, MalformedResponse, UnreachableError},
    secret::{AuthorizationCode, Password},
    transport::TokenTransport,
};

/// The largest answer read from the code endpoint.
const MAX_ANSWER: usize = 16 * 1024;

/// Asks `site` for an authorization code on behalf of `username`.
///
/// # Errors
///
/// [`Error::Config`] when `site` is not an https origin (or http to loopback) or a value
/// cannot be carried in a header; [`Error::Unreachable`] when the site cannot be
/// reached; [`Error::OAuth`] or [`Error::Malformed`] when it refuses (a wrong password is
/// answered with 401) or answers without a code.
pub async fn request_code(
    transport: &TokenTransport,
    site: &str,
    client_id: &str,
    username: &str,
    password: &Password,
) -> Result<AuthorizationCode, Error> {
    let site = site.trim_end_matches('/');
    if !super::is_origin(site) {
        return Err(Error::config(format!("iOFFICE site `{site}` must be an origin")));
    }
    let url = format!("{site}/external/api/oauth2/auth");
    crate::origin::Origin::parse("iOFFICE site", &url)?;
    let header_value = |name: &str, value: &str| {
        let mut value = HeaderValue::try_from(value)
            .map_err(|_| Error::config(format!("`{name}` cannot be carried in a header")))?;
        value.set_sensitive(true);
        Ok::<_, Error>(value)
    };
    let request = Request::builder()
        .method(Method::POST)
        .uri(url.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .header("x-auth-username", header_value("username", username)?)
        .header("x-auth-password", header_value("password", password.secret())?)
        .header("x-client-id", header_value("client id", client_id)?)
        .body(Full::new(Bytes::new()))
        .map_err(|_| Error::config("the code request could not be built"))?;

    let provider: std::sync::Arc<str> = "ioffice".into();
    let unreachable = |source: crate::BoxError| {
        Error::Unreachable(UnreachableError {
            provider: provider.clone(),
            backoff: None,
            source: Some(std::sync::Arc::from(source)),
        })
    };
    let response = transport.send(request).await.map_err(unreachable)?;
    let (parts, mut body) = response.into_parts();
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.map_err(unreachable)?.into_data() {
            if buf.len() + data.len() > MAX_ANSWER {
                return Err(malformed(&provider, parts.status, "the answer is too large"));
            }
            buf.extend_from_slice(&data);
        }
    }
    let answer = serde_json::from_slice::<Value>(&buf).ok();
    if !parts.status.is_success() {
        let error = answer
            .as_ref()
            .and_then(|a| a.get("error"))
            .and_then(Value::as_str)
            .unwrap_or(if parts.status == http::StatusCode::UNAUTHORIZED {
                "access_denied"
            } else {
                "server_error"
            });
        return Err(Error::OAuth(crate::error::OAuthError {
            provider,
            status: parts.status,
            // The site may quote what it was sent: the password above all.
            error: crate::redact::Redactor::none()
                .secret(password.secret())
                .secret(username)
                .code(error),
            description: None,
        }));
    }
    match answer
        .as_ref()
        .and_then(|a| a.get("code"))
        .and_then(Value::as_str)
    {
        Some(code) if !code.is_empty() => Ok(AuthorizationCode::new(code)),
        _ => Err(malformed(&provider, parts.status, "the answer carries no `code`")),
    }
}

fn malformed(provider: &std::sync::Arc<str>, status: http::StatusCode, reason: &str) -> Error {
    Error::Malformed(MalformedResponse {
        provider: provider.clone(),
        status,
        content_type: None,
        reason: reason.to_owned(),
    })
}
