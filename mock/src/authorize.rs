//! Authorization endpoints (RFC 6749 §4.1.1–4.1.2, RFC 7636): the page a
//! browser is sent to, which here approves or denies at once and redirects
//! back; and iOFFICE's direct code request.

use std::collections::HashMap;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, LOCATION};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use crate::body::{json_response, read_body, respond, set, BodyError};
use crate::client_auth::constant_time_eq;
use crate::dialect::{AuthorizeEndpoint, RedirectStyle, ScopeRule};
use crate::error::ErrorAnswer;
use crate::params::{check_content_type, check_empty_json_body, JSON_CONTENT_TYPE};
use crate::scope::Scope;
use crate::state::{GrantRecord, IssuedCode, ServerState};

/// Largest body the direct code request reads (it should have none).
const DIRECT_BODY_LIMIT: usize = 16 * 1024;

/// Answers one request to the authorization endpoint.
pub(crate) fn handle(
    state: &ServerState,
    authorize: &AuthorizeEndpoint,
    request: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET {
        return ErrorAnswer::method_not_allowed("GET").into_response();
    }
    match authorization(state, authorize, request.uri().query()) {
        Ok(redirect) => redirect,
        Err(AuthorizeFailure::Redirect(redirect)) => *redirect,
        Err(AuthorizeFailure::NoRedirect(error)) => {
            tracing::debug!(error = error.code, description = %error.description, "authorization request refused");
            error.into_response()
        }
    }
}

/// Why an authorization request did not produce a code.
enum AuthorizeFailure {
    /// Client or redirect URI unusable: the error is shown to the user and
    /// never sent to the redirect URI (RFC 6749 §4.1.2.1).
    NoRedirect(ErrorAnswer),
    /// Everything else goes back to the client through the redirect URI.
    Redirect(Box<Response<Full<Bytes>>>),
}

fn authorization(
    state: &ServerState,
    authorize: &AuthorizeEndpoint,
    query: Option<&str>,
) -> Result<Response<Full<Bytes>>, AuthorizeFailure> {
    let config = &state.config;
    let query = parse_query(query).map_err(AuthorizeFailure::NoRedirect)?;
    let get = |name: &str| query.get(name).map(String::as_str);
    let missing =
        |name: &str| AuthorizeFailure::NoRedirect(ErrorAnswer::invalid_request(format!("missing {name}")));

    if authorize.scope_and_state_required {
        // iOFFICE: "The login.html site will not work correctly if you do not
        // provide the 5 query parameters."
        for name in ["response_type", "client_id", "redirect_uri", "scope", "state"] {
            get(name).ok_or_else(|| missing(name))?;
        }
    }
    let client_id: Arc<str> = if authorize.client_id {
        let id = get("client_id").ok_or_else(|| missing("client_id"))?;
        let (id, _) = config
            .client(id)
            .ok_or_else(|| AuthorizeFailure::NoRedirect(ErrorAnswer::invalid_request("unknown client_id")))?;
        Arc::clone(id)
    } else {
        Arc::from("")
    };
    let redirect_uri = get("redirect_uri").ok_or_else(|| missing("redirect_uri"))?;
    check_redirect_uri(redirect_uri).map_err(AuthorizeFailure::NoRedirect)?;

    // From here on, errors are redirected to the client.
    let client_state = get("state");
    let refuse = |code: &'static str, description: &str| {
        tracing::debug!(error = code, description, "authorization request refused");
        AuthorizeFailure::Redirect(Box::new(redirect(
            config,
            authorize.delivery,
            redirect_uri,
            &[("error", code), ("error_description", description)],
            client_state,
        )))
    };
    match get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(refuse(
                "unsupported_response_type",
                "only response_type=code is supported",
            ))
        }
        None => return Err(refuse("invalid_request", "missing response_type")),
    }
    let scope = match (state.dialect().scope, get("scope")) {
        (ScopeRule::Unused, _) | (_, None) => Scope::default(),
        (rule, Some(raw)) => rule
            .parse(raw, &config.allowed_scopes)
            .map_err(|reason| refuse("invalid_scope", &reason))?,
    };
    let code_challenge = if authorize.pkce {
        pkce_challenge(get("code_challenge"), get("code_challenge_method"))
            .map_err(|reason| refuse("invalid_request", reason))?
    } else {
        None
    };
    let subject = match get("login_hint") {
        Some(hint) => match config.user(hint) {
            Some((user, _)) => Arc::clone(user),
            None => return Err(refuse("access_denied", "no such user")),
        },
        None => match config.default_user() {
            Some(user) => Arc::clone(user),
            None => return Err(refuse("access_denied", "no user to sign in as")),
        },
    };
    if state.take_denial() {
        return Err(refuse("access_denied", "the resource owner denied the request"));
    }

    let mut code = IssuedCode::new(
        GrantRecord {
            client_id,
            subject: Some(subject),
            scope,
            redirect_uri: Some(redirect_uri.to_owned()),
        },
        config.code_lifetime,
    );
    code.code_challenge = code_challenge;
    let code = state.tokens().issue_code(code);
    state.counters.authorization();
    tracing::debug!("authorization request approved");
    Ok(redirect(
        config,
        authorize.delivery,
        redirect_uri,
        &[("code", &code)],
        client_state,
    ))
}

/// Parses a query string, refusing repeated parameters (RFC 6749 §3.1).
/// Parameters without a value count as omitted.
fn parse_query(query: Option<&str>) -> Result<HashMap<String, String>, ErrorAnswer> {
    let mut params = HashMap::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if value.is_empty() {
            continue;
        }
        if params
            .insert(name.clone().into_owned(), value.into_owned())
            .is_some()
        {
            return Err(ErrorAnswer::invalid_request(format!(
                "parameter `{name}` is repeated"
            )));
        }
    }
    Ok(params)
}

/// A redirect URI must be an absolute `http` or `https` URI without a
/// fragment (RFC 6749 §3.1.2).
fn check_redirect_uri(raw: &str) -> Result<(), ErrorAnswer> {
    let valid = raw
        .parse::<Uri>()
        .is_ok_and(|uri| matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some())
        && !raw.contains('#');
    if valid {
        Ok(())
    } else {
        Err(ErrorAnswer::invalid_request(
            "redirect_uri must be an absolute http or https URI without a fragment",
        ))
    }
}

/// `302 Found` to the redirect URI with `params` (and iOFFICE's `appCode`
/// after a code, and the client's `state` last) in the query or fragment.
fn redirect(
    config: &crate::state::ServerConfig,
    delivery: RedirectStyle,
    redirect_uri: &str,
    params: &[(&str, &str)],
    client_state: Option<&str>,
) -> Response<Full<Bytes>> {
    let mut encoded = form_urlencoded::Serializer::new(String::new());
    encoded.extend_pairs(params);
    let issued_code = params.iter().any(|(name, _)| *name == "code");
    if delivery == RedirectStyle::FragmentWithAppCode && issued_code {
        encoded.append_pair("appCode", &config.app_code);
    }
    if let Some(client_state) = client_state {
        encoded.append_pair("state", client_state);
    }
    let encoded = encoded.finish();
    let location = match delivery {
        RedirectStyle::Query => {
            let separator = match redirect_uri.find('?') {
                None => "?",
                Some(_) if redirect_uri.ends_with(['?', '&']) => "",
                Some(_) => "&",
            };
            format!("{redirect_uri}{separator}{encoded}")
        }
        RedirectStyle::FragmentWithAppCode => format!("{redirect_uri}#{encoded}"),
    };
    let Ok(location) = HeaderValue::try_from(location) else {
        // Unreachable after `check_redirect_uri`, but never worth a panic.
        return ErrorAnswer::invalid_request("redirect_uri cannot be used in a Location header")
            .into_response();
    };
    let mut response = respond(StatusCode::FOUND, "text/plain; charset=utf-8", "");
    response.headers_mut().insert(LOCATION, location);
    set(&mut response, CACHE_CONTROL, "no-store");
    response
}

/// Checks the PKCE parameters of an authorization request (RFC 7636 §4.3)
/// and returns the challenge to bind the code to.
///
/// Only `S256` is accepted: `plain` (also what a missing method means) only
/// exists for clients that cannot hash, and a mock that took it would let a
/// client's weaker default go unnoticed.
fn pkce_challenge(challenge: Option<&str>, method: Option<&str>) -> Result<Option<String>, &'static str> {
    match (challenge, method) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err("code_challenge_method without code_challenge"),
        (Some(_), None | Some("plain")) => Err("only code_challenge_method=S256 is supported"),
        (Some(challenge), Some("S256")) => {
            // BASE64URL of a SHA-256 digest: 43 characters, no padding.
            let valid = challenge.len() == 43
                && URL_SAFE_NO_PAD
                    .decode(challenge)
                    .is_ok_and(|digest| digest.len() == 32);
            if valid {
                Ok(Some(challenge.to_owned()))
            } else {
                Err("code_challenge is not a BASE64URL-encoded SHA-256 digest")
            }
        }
        (Some(_), Some(_)) => Err("unknown code_challenge_method"),
    }
}

/// Whether a `code_verifier` (RFC 7636 §4.1: 43 to 128 unreserved
/// characters) hashes to the `S256` challenge.
pub(crate) fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    well_formed && {
        let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        constant_time_eq(digest.as_bytes(), challenge.as_bytes())
    }
}

/// iOFFICE's direct code request: `POST` with `Content-Type:
/// application/json` and the user's credentials in `x-auth-username`,
/// `x-auth-password` and `x-client-id` headers; answered
/// `200 {"code": "…"}`.
///
/// The code has no scope and no redirect URI: the token request's `x-scope`
/// and `x-redirect-uri` become the grant's.
pub(crate) async fn direct_code(state: &ServerState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = read_body(body, DIRECT_BODY_LIMIT).await;
    match direct_code_answer(state, &parts.method, &parts.headers, body) {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(error = error.code, description = %error.description, "code request refused");
            error.into_response()
        }
    }
}

fn direct_code_answer(
    state: &ServerState,
    method: &Method,
    headers: &HeaderMap,
    body: Result<Bytes, BodyError>,
) -> Result<Response<Full<Bytes>>, ErrorAnswer> {
    if method != Method::POST {
        return Err(ErrorAnswer::method_not_allowed("POST"));
    }
    check_content_type(headers, JSON_CONTENT_TYPE)?;
    let body = body.map_err(|error| match error {
        BodyError::TooLarge => ErrorAnswer::payload_too_large(DIRECT_BODY_LIMIT),
        BodyError::Failed => ErrorAnswer::invalid_request("the request body could not be read"),
    })?;
    check_empty_json_body(&body)?;
    let header = |name: &'static str| {
        let mut values = headers.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => std::str::from_utf8(value.as_bytes())
                .ok()
                .filter(|value| !value.is_empty())
                .ok_or_else(|| {
                    ErrorAnswer::invalid_request(format!("header `{name}` is empty or not UTF-8"))
                }),
            (None, _) => Err(ErrorAnswer::invalid_request(format!("missing header `{name}`"))),
            (Some(_), Some(_)) => Err(ErrorAnswer::invalid_request(format!(
                "header `{name}` is repeated"
            ))),
        }
    };
    let username = header("x-auth-username")?;
    let password = header("x-auth-password")?;
    let client_id = header("x-client-id")?;

    let config = &state.config;
    let (client_id, _) = config
        .client(client_id)
        .ok_or_else(|| ErrorAnswer::invalid_client("unknown client", false))?;
    let user = match config.user(username) {
        Some((user, expected)) if constant_time_eq(expected.as_bytes(), password.as_bytes()) => user,
        _ => {
            return Err(ErrorAnswer::new("access_denied", "wrong username or password")
                .with_status(StatusCode::UNAUTHORIZED))
        }
    };
    let mut code = IssuedCode::new(
        GrantRecord {
            client_id: Arc::clone(client_id),
            subject: Some(Arc::clone(user)),
            scope: Scope::default(),
            redirect_uri: None,
        },
        config.code_lifetime,
    );
    code.scope_from_exchange = true;
    let code = state.tokens().issue_code(code);
    state.counters.authorization();
    let mut response = json_response(StatusCode::OK, &json!({ "code": code }));
    set(&mut response, CACHE_CONTROL, "no-store");
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn s256_matches_the_rfc_example() {
        assert!(pkce_matches(VERIFIER, CHALLENGE));
        assert!(!pkce_matches(&VERIFIER.replace('d', "e"), CHALLENGE));
        assert!(!pkce_matches("short", CHALLENGE));
    }

    #[test]
    fn only_s256_challenges_are_accepted() {
        assert_eq!(pkce_challenge(None, None), Ok(None));
        assert_eq!(
            pkce_challenge(Some(CHALLENGE), Some("S256")),
            Ok(Some(CHALLENGE.to_owned()))
        );
        assert!(pkce_challenge(Some(CHALLENGE), None).is_err());
        assert!(pkce_challenge(Some(CHALLENGE), Some("plain")).is_err());
        assert!(pkce_challenge(Some(VERIFIER), Some("s256")).is_err());
        assert!(pkce_challenge(Some("abc"), Some("S256")).is_err());
        assert!(pkce_challenge(None, Some("S256")).is_err());
    }

    #[test]
    fn redirect_uris_must_be_absolute_http() {
        assert!(check_redirect_uri("https://app.example/cb").is_ok());
        assert!(check_redirect_uri("http://127.0.0.1:8080/cb?x=1").is_ok());
        for bad in [
            "/cb",
            "app.example/cb",
            "ftp://app.example/",
            "https://app.example/cb#x",
            "https://a b/",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn repeated_query_parameters_are_refused() {
        assert!(parse_query(Some("a=1&a=2")).is_err());
        let params = parse_query(Some("a=1&b=&c=x%20y")).unwrap();
        assert_eq!(params.get("a").map(String::as_str), Some("1"));
        assert_eq!(params.get("b"), None);
        assert_eq!(params.get("c").map(String::as_str), Some("x y"));
    }
}
