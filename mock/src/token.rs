//! The token endpoint (RFC 6749 §3.2, §4, §5, §6), in the dialect's
//! encoding, client authentication, grants and answer shape.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, PRAGMA};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Map, Value};

use crate::authorize::pkce_matches;
use crate::body::{json_response, read_body, set, set_dpop_nonce, BodyError};
use crate::client_auth::authenticate;
use crate::clients::AuthenticatedClient;
use crate::counters::{DpopEvent, GrantKind};
use crate::dialect::{ClientAuthRule, DialectRules, ParameterStyle, RefreshRule, ScopeRule};
use crate::dpop::{Expected, NoncePlace};
use crate::error::ErrorAnswer;
use crate::faults::{Fault, ResetConnection};
use crate::params::{
    check_content_type, check_empty_json_body, TokenParams, FORM_CONTENT_TYPE, JSON_CONTENT_TYPE,
};
use crate::random::random_string;
use crate::scope::Scope;
use crate::state::{GrantRecord, IssuedTokens, ServerState};

/// Largest token request body the endpoint reads.
pub(crate) const BODY_LIMIT: usize = 16 * 1024;

/// Answers one token request.
pub(crate) async fn handle(
    state: &ServerState,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ResetConnection> {
    let _in_flight = state.counters.begin_token_request();
    let fault = state.faults.take();

    let (parts, body) = request.into_parts();
    let body = read_body(body, BODY_LIMIT).await;
    let kind = sniff_grant_type(state.dialect(), &parts.headers, body.as_deref().ok());
    if let Some(kind) = kind {
        state.counters.grant(kind);
    }

    state.token_latency.wait().await;

    if let Some(fault) = fault {
        state.counters.token_error();
        tracing::debug!(?fault, "injecting a fault into a token request");
        let mut response = fault.respond().await?;
        if fault == Fault::DemandDpopNonce {
            state.counters.dpop(DpopEvent::NonceDemandedToken);
            let nonce = match &state.dpop {
                Some(dpop) if dpop.rotate_nonce(NoncePlace::TokenEndpoint) => {
                    dpop.nonce(NoncePlace::TokenEndpoint)
                }
                // Nonces are off: one the server will not ask for.
                _ => None,
            };
            set_dpop_nonce(
                &mut response,
                nonce.unwrap_or_else(|| random_string(crate::dpop::NONCE_LEN)),
            );
        }
        return Ok(response);
    }
    let mut response = match answer(state, &parts, body).map_err(|error| native(state, kind, error)) {
        Ok(response) => {
            if let Some(dpop) = &state.dpop {
                dpop.succeeded(NoncePlace::TokenEndpoint);
            }
            response
        }
        Err(error) => {
            state.counters.token_error();
            tracing::debug!(
                status = error.status.as_u16(),
                error = error.code,
                description = %error.description,
                "token request rejected",
            );
            error.into_response()
        }
    };
    // RFC 9449 §8: the nonce to use next, on every answer while nonces are on.
    if let Some(nonce) = state
        .dpop
        .as_ref()
        .and_then(|dpop| dpop.nonce(NoncePlace::TokenEndpoint))
    {
        set_dpop_nonce(&mut response, nonce);
    }
    Ok(response)
}

/// The error as the dialect natively words it: Grindery's orchestrator (when asked
/// for) refuses a code or a refresh token with `invalid_request`, not `invalid_grant`.
fn native(state: &ServerState, kind: Option<GrantKind>, error: ErrorAnswer) -> ErrorAnswer {
    if !state.config.native_grindery_errors || error.code != "invalid_grant" {
        return error;
    }
    match kind {
        Some(GrantKind::RefreshToken) => ErrorAnswer::invalid_request("Invalid or expired refresh token"),
        _ => ErrorAnswer::invalid_request("Invalid code"),
    }
}

/// The grant type a request names where the dialect carries it (the first
/// `grant_type` of a form body, or iOFFICE's `x-grant-type` header), for
/// the counters. This deliberately ignores everything the endpoint would
/// reject the request for.
fn sniff_grant_type(dialect: &DialectRules, headers: &HeaderMap, body: Option<&[u8]>) -> Option<GrantKind> {
    match dialect.params {
        ParameterStyle::Form => form_urlencoded::parse(body?)
            .find(|(name, _)| name == "grant_type")
            .and_then(|(_, value)| GrantKind::from_param(&value)),
        ParameterStyle::Headers => headers
            .get("x-grant-type")
            .and_then(|value| value.to_str().ok())
            .and_then(GrantKind::from_param),
    }
}

/// Validates a token request and carries out its grant.
fn answer(
    state: &ServerState,
    parts: &Parts,
    body: Result<Bytes, BodyError>,
) -> Result<Response<Full<Bytes>>, ErrorAnswer> {
    if parts.method != Method::POST {
        return Err(ErrorAnswer::method_not_allowed("POST"));
    }
    let dialect = state.dialect();
    let params = read_params(dialect, parts, body)?;
    let client = authenticate(state, &parts.headers, &params)?;
    let grant_type = params.require("grant_type")?;
    let kind = GrantKind::from_param(grant_type)
        .filter(|kind| dialect.grants.contains(kind))
        .ok_or_else(|| {
            ErrorAnswer::unsupported_grant_type(format!("grant type `{grant_type}` is not supported"))
        })?;
    let jkt = dpop_binding(state, parts)?;
    let issued = match kind {
        GrantKind::ClientCredentials => client_credentials(state, &client, &params, jkt)?,
        GrantKind::RefreshToken => refresh_token(state, &client, &params, jkt)?,
        GrantKind::AuthorizationCode => authorization_code(state, &client, &params, jkt)?,
    };
    tracing::debug!(client_id = %client.id, grant_type, "token issued");
    Ok(issued.into_response(state))
}

/// With DPoP on, the thumbprint of the key the request's proof shows possession of
/// (RFC 9449 §5), to bind the access token to. Checked before the grant is carried
/// out, so a refused proof uses up no code and no refresh token.
fn dpop_binding(state: &ServerState, parts: &Parts) -> Result<Option<String>, ErrorAnswer> {
    let Some(dpop) = &state.dpop else {
        // A server without DPoP ignores the header (RFC 9449 §5): the token is a
        // bearer token, and says so in `token_type`.
        return Ok(None);
    };
    let expected = Expected {
        place: NoncePlace::TokenEndpoint,
        ath: None,
        default_host: state.config.base_authority(),
    };
    match dpop.check(&state.counters, parts, &expected) {
        Ok(Some(proof)) => Ok(Some(proof.jkt)),
        Ok(None) => Err(ErrorAnswer::invalid_grant(
            "this server issues DPoP-bound tokens only: send a DPoP proof",
        )),
        Err(error) => Err(ErrorAnswer::new(error.code(), error.description())),
    }
}

/// Reads the parameters of a token request in the dialect's encoding,
/// refusing any other.
pub(crate) fn read_params(
    dialect: &DialectRules,
    parts: &Parts,
    body: Result<Bytes, BodyError>,
) -> Result<TokenParams, ErrorAnswer> {
    let expected = match dialect.params {
        ParameterStyle::Form => FORM_CONTENT_TYPE,
        ParameterStyle::Headers => JSON_CONTENT_TYPE,
    };
    check_content_type(&parts.headers, expected)?;
    let body = body.map_err(|error| match error {
        BodyError::TooLarge => ErrorAnswer::payload_too_large(BODY_LIMIT),
        BodyError::Failed => ErrorAnswer::invalid_request("the request body could not be read"),
    })?;
    match dialect.params {
        ParameterStyle::Form => {
            let mut params = TokenParams::from_form(&body)?;
            if let ClientAuthRule::MethodsOrQuery(_) = dialect.client_auth {
                params.add_query_credentials(parts.uri.query())?;
            }
            Ok(params)
        }
        ParameterStyle::Headers => {
            check_empty_json_body(&body)?;
            TokenParams::from_headers(&parts.headers)
        }
    }
}

/// The `scope` parameter, if any, in the dialect's syntax. Dialects without
/// scopes ignore it.
fn requested_scope(state: &ServerState, params: &TokenParams) -> Result<Option<Scope>, ErrorAnswer> {
    let rule = state.dialect().scope;
    if rule == ScopeRule::Unused {
        return Ok(None);
    }
    params
        .get("scope")
        .map(|raw| {
            rule.parse(raw, &state.config.allowed_scopes)
                .map_err(ErrorAnswer::invalid_scope)
        })
        .transpose()
}

/// RFC 6749 §4.4.
fn client_credentials(
    state: &ServerState,
    client: &AuthenticatedClient,
    params: &TokenParams,
    jkt: Option<String>,
) -> Result<Issued, ErrorAnswer> {
    if !client.confidential {
        return Err(ErrorAnswer::unauthorized_client(
            "public clients cannot use the client_credentials grant",
        ));
    }
    let grant = GrantRecord {
        client_id: Arc::clone(&client.id),
        subject: None,
        scope: requested_scope(state, params)?.unwrap_or_default(),
        redirect_uri: None,
    };
    let with_refresh = state.config.refresh_tokens_for_client_credentials;
    let mut tokens = state.tokens();
    Ok(Issued::new_grant(state, &mut tokens, grant, with_refresh, jkt))
}

/// RFC 6749 §6.
fn refresh_token(
    state: &ServerState,
    client: &AuthenticatedClient,
    params: &TokenParams,
    jkt: Option<String>,
) -> Result<Issued, ErrorAnswer> {
    let dialect = state.dialect();
    let presented = params.require("refresh_token")?;
    let requested = requested_scope(state, params)?;
    let redirect_uri = if dialect.refresh_repeats_redirect_uri {
        Some(params.require("redirect_uri")?)
    } else {
        None
    };
    if dialect.scope == ScopeRule::Opaque && requested.is_none() {
        return Err(ErrorAnswer::invalid_request(format!(
            "missing {}",
            params.describe("scope")
        )));
    }

    // One critical section, so that concurrent refreshes with the same token
    // cannot both succeed while rotation is on.
    let mut tokens = state.tokens();
    let Some((original, family)) = tokens
        .refresh_grant(presented)
        .map(|(grant, family)| (grant.clone(), family))
    else {
        return Err(ErrorAnswer::invalid_grant(
            "refresh token is unknown, revoked or already rotated",
        ));
    };
    if original.client_id != client.id {
        return Err(ErrorAnswer::invalid_grant(
            "refresh token was issued to another client",
        ));
    }
    if let (Some(sent), Some(expected)) = (redirect_uri, original.redirect_uri.as_deref()) {
        if sent != expected {
            return Err(ErrorAnswer::invalid_grant(format!(
                "{} does not match the authorization request",
                params.describe("redirect_uri")
            )));
        }
    }
    let scope = match requested {
        // iOFFICE: "the same scope used to get the auth-code".
        Some(scope) if dialect.scope == ScopeRule::Opaque && scope != original.scope => {
            return Err(ErrorAnswer::invalid_scope(format!(
                "{} must be the scope the authorization code was issued for",
                params.describe("scope")
            )))
        }
        Some(scope) if !scope.is_subset_of(&original.scope) => {
            return Err(ErrorAnswer::invalid_scope(
                "requested scope exceeds the scope originally granted",
            ))
        }
        Some(scope) => scope,
        None => original.scope.clone(),
    };
    // Refresh tokens are not bound to a key: the new access token is bound to the
    // key of this request's proof, so a client can move to a new key on a refresh.
    let dpop_bound = jkt.is_some();
    let access_token = tokens.issue_access(
        GrantRecord {
            scope: scope.clone(),
            ..original.clone()
        },
        family,
        state.config.token_lifetime,
        jkt,
    );
    // The new refresh token keeps the original scope (RFC 6749 §6).
    let refresh_token = state.config.rotate_refresh_tokens.then(|| {
        tokens.retire_refresh(presented);
        tokens.issue_refresh(original, family)
    });
    Ok(Issued {
        access_token,
        scope,
        refresh_token,
        dpop_bound,
    })
}

/// RFC 6749 §4.1.3, plus RFC 7636 §4.5–4.6 where the dialect takes PKCE.
fn authorization_code(
    state: &ServerState,
    client: &AuthenticatedClient,
    params: &TokenParams,
    jkt: Option<String>,
) -> Result<Issued, ErrorAnswer> {
    let dialect = state.dialect();
    let code = params.require("code")?;
    let redirect_uri = if dialect.code_exchange_requires_redirect_uri {
        Some(params.require("redirect_uri")?)
    } else {
        params.get("redirect_uri")
    };
    let requested = requested_scope(state, params)?;
    let opaque_scope = dialect.scope == ScopeRule::Opaque;
    if opaque_scope && requested.is_none() {
        return Err(ErrorAnswer::invalid_request(format!(
            "missing {}",
            params.describe("scope")
        )));
    }
    let pkce = dialect.authorize.as_ref().is_some_and(|authorize| authorize.pkce);
    let verifier = if pkce { params.get("code_verifier") } else { None };

    let mut tokens = state.tokens();
    let Some(record) = tokens.code(code) else {
        return Err(ErrorAnswer::invalid_grant(
            "authorization code is unknown or already used",
        ));
    };
    if record.is_expired(tokio::time::Instant::now()) {
        tokens.redeem_code(code);
        return Err(ErrorAnswer::invalid_grant("authorization code expired"));
    }
    if record.grant.client_id != client.id {
        return Err(ErrorAnswer::invalid_grant(
            "authorization code was issued to another client",
        ));
    }
    if let (Some(sent), Some(expected)) = (redirect_uri, record.grant.redirect_uri.as_deref()) {
        if sent != expected {
            return Err(ErrorAnswer::invalid_grant(format!(
                "{} does not match the authorization request",
                params.describe("redirect_uri")
            )));
        }
    }
    match (record.code_challenge.as_deref(), verifier) {
        (None, None) => {}
        (Some(_), None) => {
            return Err(ErrorAnswer::invalid_grant(
                "the authorization request had a code_challenge: code_verifier is required",
            ))
        }
        (None, Some(_)) => {
            return Err(ErrorAnswer::invalid_grant(
                "code_verifier sent, but the authorization request had no code_challenge",
            ))
        }
        (Some(challenge), Some(verifier)) => {
            if !pkce_matches(verifier, challenge) {
                return Err(ErrorAnswer::invalid_grant(
                    "code_verifier does not match the code_challenge",
                ));
            }
        }
    }
    let mut grant = record.grant.clone();
    if opaque_scope {
        // Checked above: an opaque-scope dialect always has one here.
        let requested = requested.unwrap_or_default();
        if record.scope_from_exchange {
            grant.scope = requested;
        } else if requested != grant.scope {
            return Err(ErrorAnswer::invalid_scope(format!(
                "{} must be the scope the authorization code was issued for",
                params.describe("scope")
            )));
        }
    }
    if dialect.refresh_repeats_redirect_uri && grant.redirect_uri.is_none() {
        // A code from iOFFICE's direct request had no redirect URI; the one
        // the exchange names is the one its refreshes must repeat.
        grant.redirect_uri = redirect_uri.map(str::to_owned);
    }
    tokens.redeem_code(code);
    let with_refresh = dialect.refresh != RefreshRule::NoRefreshTokens;
    Ok(Issued::new_grant(state, &mut tokens, grant, with_refresh, jkt))
}

/// A successful token response (RFC 6749 §5.1) in the dialect's shape.
struct Issued {
    access_token: String,
    scope: Scope,
    refresh_token: Option<String>,
    /// Whether the access token is bound to a DPoP key (`token_type` `DPoP`).
    dpop_bound: bool,
}

impl Issued {
    /// The tokens of a new grant, of one new family: an access token, bound to the
    /// DPoP key `jkt` if given, and a refresh token if `with_refresh`.
    fn new_grant(
        state: &ServerState,
        tokens: &mut IssuedTokens,
        grant: GrantRecord,
        with_refresh: bool,
        jkt: Option<String>,
    ) -> Issued {
        let family = tokens.new_family();
        let refresh_token = with_refresh.then(|| tokens.issue_refresh(grant.clone(), family));
        let scope = grant.scope.clone();
        let dpop_bound = jkt.is_some();
        let access_token = tokens.issue_access(grant, family, state.config.token_lifetime, jkt);
        Issued {
            access_token,
            scope,
            refresh_token,
            dpop_bound,
        }
    }

    fn into_response(self, state: &ServerState) -> Response<Full<Bytes>> {
        let dialect = state.dialect();
        let mut body = Map::new();
        body.insert("access_token".into(), self.access_token.into());
        let token_type = if self.dpop_bound {
            "DPoP"
        } else {
            dialect.token_type
        };
        body.insert("token_type".into(), token_type.into());
        if !state.config.omit_expires_in {
            body.insert("expires_in".into(), state.config.expires_in().into());
        }
        if dialect.scope_in_answer && !self.scope.is_empty() {
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
