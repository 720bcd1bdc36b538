//! Revocation endpoints: RFC 7009 on the standard server, iOFFICE's
//! `x-token` variant.

use bytes::Bytes;
use http::header::CACHE_CONTROL;
use http::request::Parts;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::body::{read_body, respond, set, BodyError};
use crate::client_auth::authenticate;
use crate::dialect::{ParameterStyle, RevocationEndpoint};
use crate::error::ErrorAnswer;
use crate::params::{check_content_type, TokenParams, FORM_CONTENT_TYPE};
use crate::state::{RevokedToken, ServerState};
use crate::token::BODY_LIMIT;

/// Answers one revocation request.
pub(crate) async fn handle(
    state: &ServerState,
    revocation: RevocationEndpoint,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = read_body(body, BODY_LIMIT).await;
    let outcome = match revocation {
        RevocationEndpoint::Rfc7009(_) => rfc7009(state, &parts, body),
        RevocationEndpoint::TokenHeader(_) => token_header(state, &parts),
    };
    match outcome {
        Ok(revoked) => {
            state.counters.revocation();
            match revoked {
                Some(RevokedToken::Access { client_id }) => {
                    tracing::debug!(%client_id, "access token revoked");
                }
                Some(RevokedToken::Refresh {
                    client_id,
                    access_tokens,
                }) => {
                    tracing::debug!(%client_id, access_tokens, "refresh token and its access tokens revoked");
                }
                None => tracing::debug!("revocation of an unknown token"),
            }
            let mut response = respond(StatusCode::OK, "text/plain; charset=utf-8", "");
            set(&mut response, CACHE_CONTROL, "no-store");
            response
        }
        Err(error) => {
            tracing::debug!(error = error.code, description = %error.description, "revocation refused");
            error.into_response()
        }
    }
}

/// RFC 7009 §2.1: a form with `token` and an optional `token_type_hint`,
/// authenticated like a token request. Unknown tokens are answered `200`
/// (§2.2); a token issued to another client is refused, and not revoked.
fn rfc7009(
    state: &ServerState,
    parts: &Parts,
    body: Result<Bytes, BodyError>,
) -> Result<Option<RevokedToken>, ErrorAnswer> {
    if parts.method != Method::POST {
        return Err(ErrorAnswer::method_not_allowed("POST"));
    }
    debug_assert_eq!(state.dialect().params, ParameterStyle::Form);
    check_content_type(&parts.headers, FORM_CONTENT_TYPE)?;
    let body = body.map_err(|error| match error {
        BodyError::TooLarge => ErrorAnswer::payload_too_large(BODY_LIMIT),
        BodyError::Failed => ErrorAnswer::invalid_request("the request body could not be read"),
    })?;
    let params = TokenParams::from_form(&body)?;
    let client = authenticate(state, &parts.headers, &params)?;
    let token = params.require("token")?;
    match params.get("token_type_hint") {
        None | Some("access_token" | "refresh_token") => {}
        Some(other) => {
            return Err(ErrorAnswer::new(
                "unsupported_token_type",
                format!("token_type_hint `{other}` is not supported"),
            ))
        }
    }
    let mut tokens = state.tokens();
    if tokens
        .token_client(token)
        .is_some_and(|owner| *owner != client.id)
    {
        return Err(ErrorAnswer::invalid_grant(
            "the token was issued to another client",
        ));
    }
    Ok(tokens.revoke(token))
}

/// iOFFICE: "The only header needed is: x-token". Nothing else is checked;
/// unknown tokens are answered `200`, as RFC 7009 does.
fn token_header(state: &ServerState, parts: &Parts) -> Result<Option<RevokedToken>, ErrorAnswer> {
    if parts.method != Method::POST {
        return Err(ErrorAnswer::method_not_allowed("POST"));
    }
    let mut values = parts.headers.get_all("x-token").iter();
    let token = match (values.next(), values.next()) {
        // Tokens are ASCII; anything else cannot name one.
        (Some(value), None) => value.to_str().unwrap_or_default(),
        (None, _) => "",
        (Some(_), Some(_)) => return Err(ErrorAnswer::invalid_request("header `x-token` is repeated")),
    };
    if token.is_empty() {
        return Err(ErrorAnswer::invalid_request("missing or empty header `x-token`"));
    }
    Ok(state.tokens().revoke(token))
}
