//! The token endpoint, `POST /oauth/token` (RFC 6749 §3.2, §4, §5, §6).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{json, Map, Value};

use super::body::{json_response, read_body, set, BodyError};
use super::client_auth::{authenticate, AuthenticatedClient};
use super::counters::GrantKind;
use super::faults::ResetConnection;
use super::state::{Grant, Scope, State};

/// Path of the token endpoint.
pub(super) const TOKEN_PATH: &str = "/oauth/token";

/// Largest token request body the endpoint reads.
const BODY_LIMIT: usize = 16 * 1024;

const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Answers one request to the token endpoint.
pub(super) async fn handle(
    state: &State,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ResetConnection> {
    let _in_flight = state.counters.begin_token_request();
    let fault = state.faults.take();

    let (parts, body) = request.into_parts();
    let body = read_body(body, BODY_LIMIT).await;
    if let Some(kind) = body.as_deref().ok().and_then(sniff_grant_type) {
        state.counters.grant(kind);
    }

    state.token_latency.wait().await;

    if let Some(fault) = fault {
        state.counters.token_error();
        tracing::debug!(?fault, "injecting a fault into a token request");
        return fault.respond().await;
    }
    match answer(state, &parts, body) {
        Ok(response) => Ok(response),
        Err(error) => {
            state.counters.token_error();
            tracing::debug!(
                status = error.status.as_u16(),
                error = error.code,
                description = %error.description,
                "token request rejected",
            );
            Ok(error.into_response())
        }
    }
}

/// The first `grant_type` in a body, for the counters. This deliberately
/// ignores everything the endpoint would reject the request for.
fn sniff_grant_type(body: &[u8]) -> Option<GrantKind> {
    form_urlencoded::parse(body)
        .find(|(name, _)| name == "grant_type")
        .and_then(|(_, value)| GrantKind::from_param(&value))
}

/// Validates a token request and carries out its grant.
fn answer(
    state: &State,
    parts: &Parts,
    body: Result<Bytes, BodyError>,
) -> Result<Response<Full<Bytes>>, TokenError> {
    if parts.method != Method::POST {
        return Err(TokenError::method_not_allowed());
    }
    check_content_type(&parts.headers)?;
    let body = body.map_err(|error| match error {
        BodyError::TooLarge => TokenError::payload_too_large(),
        BodyError::Failed => TokenError::invalid_request("the request body could not be read"),
    })?;
    let params = Params::parse(&body)?;
    let client = authenticate(&state.config, &parts.headers, &params)?;
    let grant_type = params
        .get("grant_type")
        .ok_or_else(|| TokenError::invalid_request("missing grant_type"))?;
    let issued = match grant_type {
        "client_credentials" => client_credentials(state, &client, &params)?,
        "refresh_token" => refresh_token(state, &client, &params)?,
        "authorization_code" => authorization_code(state, &client, &params)?,
        other => {
            return Err(TokenError::unsupported_grant_type(format!(
                "grant type `{other}` is not supported"
            )))
        }
    };
    tracing::debug!(client_id = %client.id, grant_type, "token issued");
    Ok(issued.into_response(state))
}

fn check_content_type(headers: &HeaderMap) -> Result<(), TokenError> {
    let mut values = headers.get_all(CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(TokenError::invalid_request(format!(
            "Content-Type must be {FORM_CONTENT_TYPE}"
        )));
    };
    let media_type = value
        .as_bytes()
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if media_type.eq_ignore_ascii_case(FORM_CONTENT_TYPE.as_bytes()) {
        Ok(())
    } else {
        Err(TokenError::invalid_request(format!(
            "Content-Type must be {FORM_CONTENT_TYPE}"
        )))
    }
}

/// The parameters of a token request.
#[derive(Debug)]
pub(super) struct Params(HashMap<String, String>);

impl Params {
    /// Parses a form body, rejecting repeated parameters (RFC 6749 §3.2).
    /// Parameters without a value are treated as omitted (RFC 6749 §3.1).
    fn parse(body: &[u8]) -> Result<Self, TokenError> {
        let mut params = HashMap::new();
        for (name, value) in form_urlencoded::parse(body) {
            if value.is_empty() {
                continue;
            }
            let name = name.into_owned();
            if params.contains_key(&name) {
                return Err(TokenError::invalid_request(format!(
                    "parameter `{name}` is repeated"
                )));
            }
            params.insert(name, value.into_owned());
        }
        Ok(Params(params))
    }

    /// The value of a parameter, if it was sent with a value.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// The `scope` parameter, if any, checked against the allowed scopes.
fn requested_scope(state: &State, params: &Params) -> Result<Option<Scope>, TokenError> {
    params
        .get("scope")
        .map(|raw| Scope::parse(raw, &state.config.allowed_scopes).map_err(TokenError::invalid_scope))
        .transpose()
}

/// RFC 6749 §4.4.
fn client_credentials(
    state: &State,
    client: &AuthenticatedClient,
    params: &Params,
) -> Result<Issued, TokenError> {
    if !client.confidential {
        return Err(TokenError::unauthorized_client(
            "public clients cannot use the client_credentials grant",
        ));
    }
    let grant = Grant {
        client_id: Arc::clone(&client.id),
        scope: requested_scope(state, params)?.unwrap_or_default(),
    };
    let mut tokens = state.tokens();
    let refresh_token = state
        .config
        .refresh_tokens_for_client_credentials
        .then(|| tokens.issue_refresh(grant.clone()));
    let scope = grant.scope.clone();
    let access_token = tokens.issue_access(grant, state.config.token_lifetime);
    Ok(Issued {
        access_token,
        scope,
        refresh_token,
    })
}

/// RFC 6749 §6.
fn refresh_token(state: &State, client: &AuthenticatedClient, params: &Params) -> Result<Issued, TokenError> {
    let presented = params
        .get("refresh_token")
        .ok_or_else(|| TokenError::invalid_request("missing refresh_token"))?;
    let requested = requested_scope(state, params)?;

    // One critical section, so that concurrent refreshes with the same token
    // cannot both succeed while rotation is on.
    let mut tokens = state.tokens();
    let Some(original) = tokens.refresh_grant(presented).cloned() else {
        return Err(TokenError::invalid_grant(
            "refresh token is unknown, revoked or already rotated",
        ));
    };
    if original.client_id != client.id {
        return Err(TokenError::invalid_grant(
            "refresh token was issued to another client",
        ));
    }
    let scope = match requested {
        Some(scope) if !scope.is_subset_of(&original.scope) => {
            return Err(TokenError::invalid_scope(
                "requested scope exceeds the scope originally granted",
            ))
        }
        Some(scope) => scope,
        None => original.scope.clone(),
    };
    let access_token = tokens.issue_access(
        Grant {
            client_id: Arc::clone(&original.client_id),
            scope: scope.clone(),
        },
        state.config.token_lifetime,
    );
    // The new refresh token keeps the original scope (RFC 6749 §6).
    let refresh_token = state.config.rotate_refresh_tokens.then(|| {
        tokens.retire_refresh(presented);
        tokens.issue_refresh(original)
    });
    Ok(Issued {
        access_token,
        scope,
        refresh_token,
    })
}

/// RFC 6749 §4.1.3.
fn authorization_code(
    state: &State,
    client: &AuthenticatedClient,
    params: &Params,
) -> Result<Issued, TokenError> {
    let code = params
        .get("code")
        .ok_or_else(|| TokenError::invalid_request("missing code"))?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| TokenError::invalid_request("missing redirect_uri"))?;

    let mut tokens = state.tokens();
    let Some(record) = tokens.code(code) else {
        return Err(TokenError::invalid_grant(
            "authorization code is unknown or already used",
        ));
    };
    if record.is_expired(tokio::time::Instant::now()) {
        tokens.redeem_code(code);
        return Err(TokenError::invalid_grant("authorization code expired"));
    }
    if record.grant.client_id != client.id {
        return Err(TokenError::invalid_grant(
            "authorization code was issued to another client",
        ));
    }
    if record.redirect_uri != redirect_uri {
        return Err(TokenError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    let grant = record.grant.clone();
    tokens.redeem_code(code);
    let scope = grant.scope.clone();
    let refresh_token = Some(tokens.issue_refresh(grant.clone()));
    let access_token = tokens.issue_access(grant, state.config.token_lifetime);
    Ok(Issued {
        access_token,
        scope,
        refresh_token,
    })
}

/// A successful token response (RFC 6749 §5.1).
struct Issued {
    access_token: String,
    scope: Scope,
    refresh_token: Option<String>,
}

impl Issued {
    fn into_response(self, state: &State) -> Response<Full<Bytes>> {
        let mut body = Map::new();
        body.insert("access_token".into(), self.access_token.into());
        body.insert("token_type".into(), "Bearer".into());
        if !state.config.omit_expires_in {
            body.insert("expires_in".into(), state.config.expires_in().into());
        }
        if !self.scope.is_empty() {
            body.insert("scope".into(), self.scope.to_string().into());
        }
        if let Some(refresh_token) = self.refresh_token {
            body.insert("refresh_token".into(), refresh_token.into());
        }
        let mut response = json_response(StatusCode::OK, &Value::Object(body));
        set(&mut response, CACHE_CONTROL, "no-store");
        set(&mut response, PRAGMA, "no-cache");
        response
    }
}

/// An error answer of the token endpoint (RFC 6749 §5.2), or one of the
/// plain HTTP errors it shares the JSON shape with.
#[derive(Debug)]
pub(super) struct TokenError {
    status: StatusCode,
    code: &'static str,
    description: Cow<'static, str>,
    /// Whether to challenge with `WWW-Authenticate: Basic` (the client tried
    /// to authenticate through the `Authorization` header).
    basic_challenge: bool,
}

impl TokenError {
    fn new(code: &'static str, description: impl Into<Cow<'static, str>>) -> Self {
        TokenError {
            status: StatusCode::BAD_REQUEST,
            code,
            description: description.into(),
            basic_challenge: false,
        }
    }

    pub(super) fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new("invalid_request", description)
    }

    pub(super) fn invalid_client(description: &str, basic_challenge: bool) -> Self {
        TokenError {
            status: StatusCode::UNAUTHORIZED,
            basic_challenge,
            ..Self::new("invalid_client", description.to_owned())
        }
    }

    fn invalid_grant(description: &'static str) -> Self {
        Self::new("invalid_grant", description)
    }

    fn unauthorized_client(description: &'static str) -> Self {
        Self::new("unauthorized_client", description)
    }

    fn unsupported_grant_type(description: String) -> Self {
        Self::new("unsupported_grant_type", description)
    }

    fn invalid_scope(description: impl Into<Cow<'static, str>>) -> Self {
        Self::new("invalid_scope", description)
    }

    fn method_not_allowed() -> Self {
        TokenError {
            status: StatusCode::METHOD_NOT_ALLOWED,
            ..Self::invalid_request("the token endpoint only accepts POST")
        }
    }

    fn payload_too_large() -> Self {
        TokenError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            ..Self::invalid_request(format!("the request body is larger than {BODY_LIMIT} bytes"))
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
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
        if self.status == StatusCode::METHOD_NOT_ALLOWED {
            set(&mut response, ALLOW, "POST");
        }
        response
    }
}
