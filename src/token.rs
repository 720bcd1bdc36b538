//! Tokens, and reading a token endpoint's answer.
//!
//! [`TokenSet`] is what a successful token request yields: an access token, maybe a
//! refresh token, the instant the access token expires, and the granted scope. Time is
//! `tokio::time::Instant`, the one clock of this crate, so tests can pause and advance it.
//!
//! Reading the answer is lenient where real servers are sloppy and strict where it
//! matters:
//!
//! - `expires_in` may be a number or a numeric string; a missing one means the
//!   provider's default lifetime; zero, negative and absurdly large values are clamped
//!   to the provider's bounds with a warning;
//! - a missing `token_type` means `Bearer`, compared case-insensitively; any other type
//!   is refused, since the layer only knows how to present bearer tokens;
//! - an `error` field is an error even under HTTP 200;
//! - a body that is not a JSON object (an HTML error page, say) is a typed error
//!   carrying the status and content type, never the body itself.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use tokio::time::Instant;
//! use tower_oauth2::{secret::{AccessToken, RefreshToken}, TokenSet};
//!
//! let tokens = TokenSet::new(AccessToken::new("at"), Instant::now() + Duration::from_secs(3600))
//!     .with_refresh_token(RefreshToken::new("rt"))
//!     .with_scope("read write");
//! assert_eq!(tokens.scope(), Some("read write"));
//! assert_eq!(format!("{:?}", tokens.access_token()), "AccessToken(***)");
//! ```

use std::{sync::Arc, time::Duration};

use http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::{
    error::{Error, MalformedResponse, OAuthError},
    redact::Redactor,
    secret::{AccessToken, RefreshToken},
};

/// The tokens one successful token request produced.
#[derive(Debug, Clone)]
pub struct TokenSet {
    access_token: AccessToken,
    refresh_token: Option<RefreshToken>,
    expires_at: Instant,
    scope: Option<String>,
}

impl TokenSet {
    /// A token set with an access token that expires at `expires_at`.
    pub fn new(access_token: AccessToken, expires_at: Instant) -> Self {
        Self {
            access_token,
            refresh_token: None,
            expires_at,
            scope: None,
        }
    }

    /// Adds a refresh token.
    pub fn with_refresh_token(mut self, refresh_token: RefreshToken) -> Self {
        self.refresh_token = Some(refresh_token);
        self
    }

    /// Adds the granted scope, as the server wrote it.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// The access token.
    pub fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    /// The refresh token, if the server issued one (or one was kept from before).
    pub fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }

    /// When the access token expires.
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// The scope the server granted, if it said.
    pub fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }

    pub(crate) fn set_refresh_token(&mut self, refresh_token: Option<RefreshToken>) {
        self.refresh_token = refresh_token;
    }
}

/// The unit a provider uses for `expires_in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExpiresIn {
    /// Seconds, as RFC 6749 §5.1 says.
    Seconds,
    /// Milliseconds (iOFFICE answers 3,600,000 for one hour).
    Milliseconds,
}

/// How long tokens are taken to live when the answer is silent or unbelievable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Assumed when the answer has no `expires_in`. Default: 1 hour.
    pub default: Duration,
    /// The least lifetime believed; shorter (zero, negative) values are raised to it
    /// with a warning. Default: 1 second.
    pub min: Duration,
    /// The most lifetime believed; longer values are lowered to it with a warning, so
    /// a unit mix-up (milliseconds read as seconds) costs an early refresh, not 41
    /// days of a dead token. Default: 24 hours.
    pub max: Duration,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Self {
            default: Duration::from_secs(3600),
            min: Duration::from_secs(1),
            max: Duration::from_secs(24 * 3600),
        }
    }
}

/// What the reader needs to know about the provider.
#[derive(Debug, Clone)]
pub(crate) struct ResponseRules {
    pub(crate) provider: Arc<str>,
    pub(crate) expires_in: ExpiresIn,
    pub(crate) lifetimes: Lifetimes,
    /// The credential is DPoP-bound: the answer must say `token_type: DPoP` (RFC 9449
    /// §5), and a bearer token is refused.
    pub(crate) dpop: bool,
}

/// Reads a token endpoint's answer. `body` has already been read under the size cap.
///
/// What the server wrote in an error (`error`, `error_description`, the content type)
/// is kept only after `redactor` removed the secrets the request carried.
pub(crate) fn parse_token_response(
    rules: &ResponseRules,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: Instant,
    redactor: &Redactor,
) -> Result<TokenSet, Error> {
    let malformed = |reason: &str| {
        Error::Malformed(MalformedResponse {
            provider: rules.provider.clone(),
            status,
            content_type: headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| redactor.text(&String::from_utf8_lossy(v.as_bytes()), 100)),
            reason: reason.to_owned(),
        })
    };

    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err(malformed("the body is JSON but not an object")),
        Err(_) if body.is_empty() => return Err(malformed("the body is empty")),
        Err(_) => return Err(malformed("the body is not JSON")),
    };

    if let Some(error) = object.get("error") {
        let Some(code) = error.as_str() else {
            return Err(malformed("`error` is not a string"));
        };
        return Err(Error::OAuth(OAuthError {
            provider: rules.provider.clone(),
            status,
            error: redactor.code(code),
            description: object
                .get("error_description")
                .and_then(Value::as_str)
                .map(|d| redactor.text(d, 256)),
        }));
    }

    if !status.is_success() {
        return Err(malformed("error status without an OAuth `error` field"));
    }

    let access = match object.get("access_token") {
        Some(Value::String(s)) if s.is_empty() => return Err(malformed("`access_token` is empty")),
        Some(Value::String(s)) => s,
        Some(_) => return Err(malformed("`access_token` is not a string")),
        None => return Err(malformed("`access_token` is missing")),
    };
    if !access.bytes().all(is_token_byte) {
        return Err(malformed("`access_token` has characters a header cannot carry"));
    }

    match (object.get("token_type"), rules.dpop) {
        (None | Some(Value::Null), false) => {}
        (Some(Value::String(t)), false) if t.eq_ignore_ascii_case("bearer") => {}
        (Some(Value::String(t)), true) if t.eq_ignore_ascii_case("dpop") => {}
        (Some(Value::String(_)), false) => return Err(malformed("`token_type` is not Bearer")),
        (None | Some(Value::Null) | Some(Value::String(_)), true) => {
            return Err(malformed(
                "`token_type` is not DPoP: the server did not bind the token to the key",
            ))
        }
        (Some(_), _) => return Err(malformed("`token_type` is not a string")),
    }

    let refresh = match object.get("refresh_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(RefreshToken::new(s.as_str())),
        Some(_) => return Err(malformed("`refresh_token` is not a string")),
    };

    let lifetime = lifetime(rules, &object).map_err(malformed)?;
    let mut tokens = TokenSet::new(AccessToken::new(access.as_str()), instant_after(now, lifetime));
    tokens.refresh_token = refresh;
    if let Some(Value::String(scope)) = object.get("scope") {
        tokens.scope = Some(scope.clone());
    }
    Ok(tokens)
}

/// The lifetime the answer declares, clamped to the provider's bounds.
fn lifetime(rules: &ResponseRules, object: &Map<String, Value>) -> Result<Duration, &'static str> {
    let Lifetimes { min, max, default } = rules.lifetimes;
    let raw: f64 = match object.get("expires_in") {
        // Bounds that do not hold together are refused when the credential is built;
        // the default is kept within them all the same.
        None | Some(Value::Null) => return Ok(default.min(max).max(min.min(max))),
        Some(Value::Number(n)) => n.as_f64().ok_or("`expires_in` is not a number")?,
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or("`expires_in` is a string that is not a number")?,
        Some(_) => return Err("`expires_in` is not a number"),
    };
    let seconds = match rules.expires_in {
        ExpiresIn::Seconds => raw,
        ExpiresIn::Milliseconds => raw / 1000.0,
    };
    if seconds < min.as_secs_f64() {
        tracing::warn!(
            provider = %rules.provider,
            expires_in = raw,
            clamped_to_ms = min.as_millis() as u64,
            "token endpoint declared a lifetime below the minimum; clamping"
        );
        return Ok(min);
    }
    // Past `max`, or past what a `Duration` holds (a `max` of `Duration::MAX` trusts
    // any number, not an overflow).
    match Duration::try_from_secs_f64(seconds) {
        Ok(lifetime) if lifetime <= max => Ok(lifetime),
        _ => {
            tracing::warn!(
                provider = %rules.provider,
                expires_in = raw,
                clamped_to_ms = max.as_millis() as u64,
                "token endpoint declared a lifetime above the maximum; clamping"
            );
            Ok(max)
        }
    }
}

/// The longest a token is ever believed to live, whatever a provider's bounds allow:
/// `Instant`s further out may not exist, and timers cannot wait that long anyway.
const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + lifetime`, at most [`NEVER`] away: never an overflow.
pub(crate) fn instant_after(now: Instant, lifetime: Duration) -> Instant {
    now.checked_add(lifetime.min(NEVER)).unwrap_or_else(|| {
        now.checked_add(Duration::from_secs(365 * 24 * 3600))
            .unwrap_or(now)
    })
}

/// Bytes RFC 6750's `b64token` and ordinary header values accept: visible ASCII.
fn is_token_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> ResponseRules {
        ResponseRules {
            provider: "acme".into(),
            expires_in: ExpiresIn::Seconds,
            lifetimes: Lifetimes::default(),
            dpop: false,
        }
    }

    fn parse(status: u16, content_type: &str, body: &str) -> Result<(TokenSet, Instant), Error> {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
        let now = Instant::now();
        parse_token_response(
            &rules(),
            StatusCode::from_u16(status).unwrap(),
            &headers,
            body.as_bytes(),
            now,
            &Redactor::none(),
        )
        .map(|t| (t, now))
    }

    fn malformed_reason(result: Result<(TokenSet, Instant), Error>) -> String {
        match result {
            Err(Error::Malformed(m)) => m.reason().to_owned(),
            other => panic!("expected a malformed-response error, got {other:?}"),
        }
    }

    #[test]
    fn reads_a_standard_answer() {
        let (t, now) = parse(
            200,
            "application/json",
            r#"{"access_token":"abc","token_type":"bearer","expires_in":3600,"refresh_token":"r1","scope":"read"}"#,
        )
        .unwrap();
        assert_eq!(t.access_token().secret(), "abc");
        assert_eq!(t.refresh_token().unwrap().secret(), "r1");
        assert_eq!(t.expires_at() - now, Duration::from_secs(3600));
        assert_eq!(t.scope(), Some("read"));
    }

    #[test]
    fn expires_in_as_a_numeric_string() {
        let (t, now) = parse(
            200,
            "application/json",
            r#"{"access_token":"abc","expires_in":" 120 "}"#,
        )
        .unwrap();
        assert_eq!(t.expires_at() - now, Duration::from_secs(120));
    }

    #[test]
    fn missing_expires_in_uses_the_default_lifetime() {
        let (t, now) = parse(200, "application/json", r#"{"access_token":"abc"}"#).unwrap();
        assert_eq!(t.expires_at() - now, Duration::from_secs(3600));
    }

    #[test]
    fn milliseconds_are_read_as_milliseconds() {
        let mut rules = rules();
        rules.expires_in = ExpiresIn::Milliseconds;
        let now = Instant::now();
        let t = parse_token_response(
            &rules,
            StatusCode::OK,
            &HeaderMap::new(),
            br#"{"access_token":"abc","expires_in":3600000}"#,
            now,
            &Redactor::none(),
        )
        .unwrap();
        assert_eq!(t.expires_at() - now, Duration::from_secs(3600));
    }

    #[test]
    fn zero_negative_and_absurd_lifetimes_are_clamped() {
        for (value, expected) in [
            ("0", Duration::from_secs(1)),
            ("-5", Duration::from_secs(1)),
            ("1e300", Duration::from_secs(24 * 3600)),
            ("18446744073709551615", Duration::from_secs(24 * 3600)),
        ] {
            let body = format!(r#"{{"access_token":"abc","expires_in":{value}}}"#);
            let (t, now) = parse(200, "application/json", &body).unwrap();
            assert_eq!(t.expires_at() - now, expected, "expires_in {value}");
        }
    }

    #[test]
    fn token_type_is_case_insensitive_and_defaults_to_bearer() {
        for tt in [r#""Bearer""#, r#""BEARER""#, "null"] {
            let body = format!(r#"{{"access_token":"abc","token_type":{tt}}}"#);
            assert!(parse(200, "application/json", &body).is_ok(), "{tt}");
        }
    }

    #[test]
    fn error_field_under_200_is_an_oauth_error() {
        match parse(
            200,
            "application/json",
            r#"{"error":"invalid_client","error_description":"nope"}"#,
        ) {
            Err(Error::OAuth(e)) => {
                assert_eq!(e.status(), StatusCode::OK);
                assert_eq!(e.error(), "invalid_client");
                assert_eq!(e.code(), crate::error::OAuthErrorCode::InvalidClient);
                assert_eq!(e.description(), Some("nope"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn html_error_page_is_typed_with_status_and_content_type() {
        match parse(
            502,
            "text/html; charset=utf-8",
            "<html><body>Bad gateway</body></html>",
        ) {
            Err(Error::Malformed(m)) => {
                assert_eq!(m.status(), StatusCode::BAD_GATEWAY);
                assert_eq!(m.content_type(), Some("text/html; charset=utf-8"));
                assert!(!m.to_string().contains("Bad gateway"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_answers_are_typed_errors() {
        let cases: &[(u16, &str, &str)] = &[
            (200, "", "the body is empty"),
            (200, "{", "the body is not JSON"),
            (200, "[1,2]", "the body is JSON but not an object"),
            (200, "null", "the body is JSON but not an object"),
            (200, r#"{"token_type":"bearer"}"#, "`access_token` is missing"),
            (200, r#"{"access_token":""}"#, "`access_token` is empty"),
            (200, r#"{"access_token":42}"#, "`access_token` is not a string"),
            (
                200,
                r#"{"access_token":"a b"}"#,
                "`access_token` has characters a header cannot carry",
            ),
            (
                200,
                r#"{"access_token":"abc","token_type":"mac"}"#,
                "`token_type` is not Bearer",
            ),
            (
                200,
                r#"{"access_token":"abc","token_type":7}"#,
                "`token_type` is not a string",
            ),
            (
                200,
                r#"{"access_token":"abc","expires_in":"soon"}"#,
                "`expires_in` is a string that is not a number",
            ),
            (
                200,
                r#"{"access_token":"abc","expires_in":true}"#,
                "`expires_in` is not a number",
            ),
            (
                200,
                r#"{"access_token":"abc","refresh_token":5}"#,
                "`refresh_token` is not a string",
            ),
            (200, r#"{"error":5}"#, "`error` is not a string"),
            (
                500,
                r#"{"access_token":"abc"}"#,
                "error status without an OAuth `error` field",
            ),
        ];
        for (status, body, reason) in cases {
            assert_eq!(
                &malformed_reason(parse(*status, "application/json", body)),
                reason,
                "body {body}"
            );
        }
    }

    #[test]
    fn errors_never_carry_the_token() {
        let err = parse(
            200,
            "application/json",
            r#"{"access_token":"s3cr3t","token_type":"mac"}"#,
        )
        .unwrap_err();
        assert!(!format!("{err} {err:?}").contains("s3cr3t"));
    }
}
