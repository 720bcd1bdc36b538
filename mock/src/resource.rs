//! The protected resource (RFC 6750 §2, §3), under the dialect's path
//! prefixes and reading the token from the dialect's placements.

use std::borrow::Cow;

use bytes::Bytes;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Map, Value};

use crate::body::{json_response, read_body, respond, set, set_dpop_nonce, BodyError};
use crate::counters::DpopEvent;
use crate::dialect::TokenSlot;
use crate::dpop::{access_token_hash, DpopState, Expected, NoncePlace};
use crate::faults::ResourceFault;
use crate::random::random_string;
use crate::state::{GrantRecord, ServerState};

/// Largest resource request body the server reads.
const BODY_LIMIT: usize = 1024 * 1024;

/// Answers one request to the protected resource.
pub(crate) async fn handle(state: &ServerState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let request_id = parts
        .headers
        .get("x-request-id")
        .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
    state.counters.resource_call(request_id);
    let fault = state.resource_faults.take();

    let mut response = match read_body(body, BODY_LIMIT).await {
        Ok(body) => {
            let body_len = body.len();
            state.counters.resource_body(body);
            match fault {
                Some(fault) => fault_response(state, fault),
                None => match authorize(state, &parts) {
                    Ok(authorized) => {
                        state.counters.resource_call_authorized();
                        if let Some(dpop) = &state.dpop {
                            dpop.succeeded(NoncePlace::Resource);
                        }
                        json_response(StatusCode::OK, &describe(authorized, &parts, body_len))
                    }
                    Err(rejection) => rejection.into_response(),
                },
            }
        }
        Err(BodyError::TooLarge) => plain(StatusCode::PAYLOAD_TOO_LARGE, "request body larger than 1 MiB"),
        Err(BodyError::Failed) => plain(StatusCode::BAD_REQUEST, "could not read the request body"),
    };
    // RFC 9449 §9: the nonce to use next, on every answer while nonces are on.
    if let Some(nonce) = state
        .dpop
        .as_ref()
        .and_then(|dpop| dpop.nonce(NoncePlace::Resource))
    {
        set_dpop_nonce(&mut response, nonce);
    }

    state.resource_latency.wait().await;
    state.counters.resource_status(response.status().as_u16());
    response
}

/// The answer to a request `fault` hits, in place of looking at the request.
fn fault_response(state: &ServerState, fault: ResourceFault) -> Response<Full<Bytes>> {
    tracing::debug!(?fault, "injecting a fault into a resource request");
    match fault {
        ResourceFault::DemandDpopNonce => {
            state.counters.dpop(DpopEvent::NonceDemandedResource);
            let rotated = state
                .dpop
                .as_ref()
                .is_some_and(|dpop| dpop.rotate_nonce(NoncePlace::Resource));
            let mut response = dpop_response(
                Some("use_dpop_nonce"),
                Cow::Borrowed("the DPoP proof must carry the server's current nonce"),
            );
            if !rotated {
                // Nonces are off: one the server will not ask for.
                set_dpop_nonce(&mut response, random_string(crate::dpop::NONCE_LEN));
            }
            response
        }
        ResourceFault::InvalidToken if state.dpop.is_some() => dpop_response(
            Some("invalid_token"),
            Cow::Borrowed("access token is unknown, expired or revoked"),
        ),
        ResourceFault::InvalidToken => {
            Rejection::Invalid(Cow::Borrowed("access token is unknown, expired or revoked")).into_response()
        }
    }
}

/// A request the resource authorized: the grant behind its token, where it carried the
/// token, and for a DPoP-bound token the thumbprint it is bound to.
#[derive(Debug)]
struct Authorized {
    grant: GrantRecord,
    placement: String,
    jkt: Option<String>,
}

/// The `200` answer: who the token belongs to and what the request was; for a
/// DPoP-bound token, `cnf.jkt` (RFC 9449 §6.1): the thumbprint it is bound to.
fn describe(authorized: Authorized, parts: &Parts, body_len: usize) -> Value {
    let Authorized {
        grant,
        placement,
        jkt,
    } = authorized;
    let mut answer = Map::new();
    answer.insert("ok".into(), true.into());
    // Grindery has no clients: its grants have an empty client id.
    let client_id = (!grant.client_id.is_empty()).then(|| grant.client_id.to_string());
    answer.insert("client_id".into(), client_id.into());
    let subject = grant.subject.as_deref().map(str::to_owned);
    answer.insert("subject".into(), subject.into());
    answer.insert("scope".into(), grant.scope.to_string().into());
    answer.insert("placement".into(), placement.into());
    answer.insert("path".into(), parts.uri.path().into());
    answer.insert("body_len".into(), body_len.into());
    if let Some(jkt) = jkt {
        answer.insert("cnf".into(), serde_json::json!({ "jkt": jkt }));
    }
    Value::Object(answer)
}

/// Why a resource request was not authorized.
#[derive(Debug)]
enum Rejection {
    /// No credentials at all (RFC 6750 §3.1: no error code).
    Missing,
    /// Credentials that are not a live token in an accepted placement.
    Invalid(Cow<'static, str>),
    /// The token was sent in more than one place (RFC 6750 §2: "Clients
    /// MUST NOT use more than one method").
    SeveralPlacements,
    /// Refused while DPoP is on (RFC 9449 §7.1): `error` is the `DPoP` challenge's
    /// error code, `None` when the request carried no credentials at all.
    Dpop {
        error: Option<&'static str>,
        description: Cow<'static, str>,
    },
}

impl Rejection {
    fn into_response(self) -> Response<Full<Bytes>> {
        let (status, challenge, description) = match self {
            Rejection::Missing => (
                StatusCode::UNAUTHORIZED,
                r#"Bearer realm="mock""#,
                Cow::Borrowed("bearer token required"),
            ),
            Rejection::Invalid(description) => (
                StatusCode::UNAUTHORIZED,
                r#"Bearer realm="mock", error="invalid_token""#,
                description,
            ),
            Rejection::SeveralPlacements => (
                StatusCode::BAD_REQUEST,
                r#"Bearer realm="mock", error="invalid_request""#,
                Cow::Borrowed("the access token was sent in more than one place"),
            ),
            Rejection::Dpop { error, description } => return dpop_response(error, description),
        };
        tracing::debug!(%description, "resource request rejected");
        let mut response = respond(status, "text/plain; charset=utf-8", description.into_owned());
        set(&mut response, WWW_AUTHENTICATE, challenge);
        response
    }
}

/// The grant behind the live access token a request carries, and where it
/// carried it.
///
/// Only the dialect's placements are looked at: a token anywhere else counts
/// as no token, except that a dialect which refuses `Authorization: Bearer`
/// answers one with `401` even when its token is live.
fn authorize(state: &ServerState, parts: &Parts) -> Result<Authorized, Rejection> {
    if let Some(dpop) = &state.dpop {
        return authorize_dpop(state, dpop, parts);
    }
    let api = &state.dialect().api;
    if api.refuses_authorization_bearer {
        let bearer = parts.headers.get_all(AUTHORIZATION).iter().any(|value| {
            value
                .as_bytes()
                .get(..7)
                .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
        });
        if bearer {
            let accepted: Vec<String> = api.placements.iter().map(|p| p.describe()).collect();
            return Err(Rejection::Invalid(Cow::Owned(format!(
                "Authorization: Bearer is not accepted here; send the token in one of: {}",
                accepted.join(", ")
            ))));
        }
    }
    let mut found = None;
    for &placement in api.placements {
        if let Some(token) = find_token(placement, parts)? {
            if found.is_some() {
                return Err(Rejection::SeveralPlacements);
            }
            found = Some((token, placement));
        }
    }
    let (token, placement) = found.ok_or(Rejection::Missing)?;
    let grant = state
        .tokens()
        .access_grant(&token)
        .cloned()
        .ok_or(Rejection::Invalid(Cow::Borrowed(
            "access token is unknown, expired or revoked",
        )))?;
    Ok(Authorized {
        grant,
        placement: placement.describe(),
        jkt: None,
    })
}

/// `401` with a `DPoP` challenge (RFC 9449 §7.1).
fn dpop_response(error: Option<&'static str>, description: Cow<'static, str>) -> Response<Full<Bytes>> {
    let challenge = match error {
        Some(error) => format!(r#"DPoP error="{error}""#),
        None => format!(r#"DPoP algs="{}""#, crate::dpop::SIGNING_ALGS.join(" ")),
    };
    tracing::debug!(%description, "resource request rejected");
    let mut response = respond(
        StatusCode::UNAUTHORIZED,
        "text/plain; charset=utf-8",
        description.into_owned(),
    );
    if let Ok(challenge) = http::HeaderValue::try_from(challenge) {
        response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
    }
    response
}

/// A `DPoP` refusal with an error code.
fn dpop_refusal(error: &'static str, description: impl Into<Cow<'static, str>>) -> Rejection {
    Rejection::Dpop {
        error: Some(error),
        description: description.into(),
    }
}

/// The grant behind a DPoP-bound token presented as RFC 9449 §7.1 wants: `Authorization:
/// DPoP <token>` and one proof, for this request, of the key the token is bound to.
fn authorize_dpop(state: &ServerState, dpop: &DpopState, parts: &Parts) -> Result<Authorized, Rejection> {
    let mut values = parts.headers.get_all(AUTHORIZATION).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => {
            return Err(Rejection::Dpop {
                error: None,
                description: Cow::Borrowed("a DPoP-bound access token is required"),
            })
        }
        (Some(value), None) => value,
        (Some(_), Some(_)) => {
            return Err(dpop_refusal(
                "invalid_token",
                "more than one Authorization header",
            ))
        }
    };
    let (scheme, token) = std::str::from_utf8(value.as_bytes())
        .ok()
        .and_then(|value| value.split_once(' '))
        .map(|(scheme, token)| (scheme, token.trim_start_matches(' ')))
        .filter(|(_, token)| is_b64token(token))
        .ok_or_else(|| dpop_refusal("invalid_token", "expected `Authorization: DPoP <token>`"))?;
    if scheme.eq_ignore_ascii_case("bearer") {
        let bound = state
            .tokens()
            .access_binding(token)
            .is_some_and(|(_, jkt)| jkt.is_some());
        if bound {
            state.counters.dpop(DpopEvent::BearerForDpopToken);
            return Err(dpop_refusal(
                "invalid_token",
                "a DPoP-bound access token must be sent with the DPoP scheme, not Bearer",
            ));
        }
        return Err(dpop_refusal(
            "invalid_token",
            "this resource takes DPoP-bound access tokens only",
        ));
    }
    if !scheme.eq_ignore_ascii_case("dpop") {
        return Err(dpop_refusal(
            "invalid_token",
            "expected `Authorization: DPoP <token>`",
        ));
    }
    let ath = access_token_hash(token);
    let expected = Expected {
        place: NoncePlace::Resource,
        ath: Some(&ath),
        default_host: state.config.base_authority(),
    };
    let proof = match dpop.check(&state.counters, parts, &expected) {
        Ok(Some(proof)) => proof,
        Ok(None) => {
            return Err(dpop_refusal(
                "invalid_dpop_proof",
                "a DPoP token needs a DPoP proof",
            ))
        }
        Err(error) => return Err(dpop_refusal(error.code(), error.description())),
    };
    let tokens = state.tokens();
    let Some((grant, jkt)) = tokens.access_binding(token) else {
        return Err(dpop_refusal(
            "invalid_token",
            "access token is unknown, expired or revoked",
        ));
    };
    match jkt {
        Some(jkt) if jkt == proof.jkt => Ok(Authorized {
            grant: grant.clone(),
            placement: "authorization_dpop".to_owned(),
            jkt: Some(proof.jkt),
        }),
        Some(_) => Err(dpop_refusal(
            "invalid_token",
            "the access token is bound to another key than the DPoP proof's",
        )),
        None => Err(dpop_refusal(
            "invalid_token",
            "the access token is not DPoP-bound",
        )),
    }
}

/// The token a request carries in one placement, if it carries one there.
fn find_token(placement: TokenSlot, parts: &Parts) -> Result<Option<String>, Rejection> {
    match placement {
        TokenSlot::AuthorizationBearer => {
            let mut values = parts.headers.get_all(AUTHORIZATION).iter();
            let value = match (values.next(), values.next()) {
                (None, _) => return Ok(None),
                (Some(value), None) => value,
                (Some(_), Some(_)) => return Err(invalid("more than one Authorization header")),
            };
            bearer_token(value.as_bytes())
                .map(|token| Some(token.to_owned()))
                .ok_or_else(|| invalid("expected `Authorization: Bearer <token>`"))
        }
        TokenSlot::Header(name) => {
            let mut values = parts.headers.get_all(name).iter();
            match (values.next(), values.next()) {
                (None, _) => Ok(None),
                (Some(value), None) => value
                    .to_str()
                    .ok()
                    .filter(|token| is_b64token(token))
                    .map(|token| Some(token.to_owned()))
                    .ok_or_else(|| invalid("the token header does not hold a token")),
                (Some(_), Some(_)) => Err(invalid("the token header is repeated")),
            }
        }
        TokenSlot::Query(name) => {
            let query = parts.uri.query().unwrap_or_default();
            let mut values = form_urlencoded::parse(query.as_bytes())
                .filter(|(param, _)| param == name)
                .map(|(_, value)| value);
            match (values.next(), values.next()) {
                (None, _) => Ok(None),
                (Some(value), None) if is_b64token(&value) => Ok(Some(value.into_owned())),
                (Some(_), None) => Err(invalid("the token parameter does not hold a token")),
                (Some(_), Some(_)) => Err(invalid("the token parameter is repeated")),
            }
        }
    }
}

fn invalid(description: &'static str) -> Rejection {
    Rejection::Invalid(Cow::Borrowed(description))
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

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::get(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn tokens_are_found_in_headers_and_queries() {
        let header = TokenSlot::Header("x-access-token");
        let query = TokenSlot::Query("access_token");
        let p = parts("/x?access_token=abc&other=1", &[("x-access-token", "def")]);
        assert_eq!(find_token(query, &p).ok().flatten().as_deref(), Some("abc"));
        assert_eq!(find_token(header, &p).ok().flatten().as_deref(), Some("def"));
        let p = parts("/x?access_token=a&access_token=b", &[]);
        assert!(find_token(query, &p).is_err());
        assert!(matches!(find_token(header, &p), Ok(None)));
    }
}
