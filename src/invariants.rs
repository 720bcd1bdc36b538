//! What must hold of the token-response parser for any input, in one place: the property
//! tests (`src/proptests`) and the fuzz target (`fuzz/`) both check through here, so the
//! two cannot drift apart. Compiled for tests and under `--cfg fuzzing` only.
//!
//! A violation panics, with a message that names the invariant and never the token:
//! proptest turns the panic into a shrunk failing case, libFuzzer into a crash file.

use http::{HeaderMap, HeaderName, StatusCode};
use tokio::time::Instant;

use crate::{
    credential::attachment,
    error::Error,
    provider::TokenPlacement,
    redact::Redactor,
    token::{parse_token_response, Lifetimes, ResponseRules, TokenSet},
};

/// A secret the request is taken to have carried: an answer that quotes it must not
/// bring it back out in an error.
pub(crate) const QUOTED_SECRET: &str = "s3cret-the-server-quotes";

/// Whether `s` holds an ASCII control character (below 0x20, or DEL): what must never
/// reach a header value, a log line or an error message.
pub(crate) fn has_control(s: &str) -> bool {
    s.bytes().any(is_control_byte)
}

pub(crate) fn is_control_byte(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// The three places a token can go on an API request.
pub(crate) fn placements() -> [TokenPlacement; 3] {
    [
        TokenPlacement::AuthorizationBearer,
        TokenPlacement::Header(HeaderName::from_static("x-access-token")),
        // A name that needs encoding itself, so the pair is built by the encoder.
        TokenPlacement::Query("access token&x".to_owned()),
    ]
}

/// Parses one answer and checks what must hold whatever it was:
///
/// - on success, the access token is visible ASCII, each placement's attachment can be
///   built, is marked sensitive and holds no control character, and the expiry lies
///   within the provider's lifetime bounds;
/// - on failure, neither `Display` nor `Debug` of the error holds a control character,
///   nor [`QUOTED_SECRET`] in any encoding.
///
/// It returns at all: a parse that hung would hang the caller, which both proptest (one
/// case after another) and libFuzzer (its `-timeout`) notice.
pub(crate) fn check_token_response(
    rules: &ResponseRules,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<TokenSet, Error> {
    let now = Instant::now();
    let redactor = Redactor::none().secret(QUOTED_SECRET);
    let outcome = parse_token_response(rules, status, headers, body, now, &redactor);
    match &outcome {
        Ok(tokens) => {
            let token = tokens.access_token().secret();
            assert!(
                !token.is_empty() && token.bytes().all(|b| (0x21..=0x7e).contains(&b)),
                "an accepted access token ({:?}) is not visible ASCII",
                tokens.access_token().fingerprint()
            );
            for placement in placements() {
                let value = attachment(&placement, false, tokens)
                    .unwrap_or_else(|| panic!("no attachment for an accepted token as {placement:?}"));
                assert!(
                    value.is_sensitive(),
                    "the attachment as {placement:?} is not sensitive"
                );
                assert!(
                    !value.as_bytes().iter().copied().any(is_control_byte),
                    "the attachment as {placement:?} holds a control character"
                );
            }
            let lifetime = tokens.expires_at().saturating_duration_since(now);
            let Lifetimes { min, max, .. } = rules.lifetimes;
            assert!(
                min <= lifetime && lifetime <= max,
                "lifetime {lifetime:?} outside [{min:?}, {max:?}]"
            );
        }
        Err(err) => {
            let shown = err.to_string();
            assert!(
                !has_control(&shown),
                "control character in the error's Display: {shown:?}"
            );
            let debug = format!("{err:?}");
            assert!(
                !has_control(&debug),
                "control character in the error's Debug: {debug:?}"
            );
            let form: String = form_urlencoded::byte_serialize(QUOTED_SECRET.as_bytes()).collect();
            for printed in [&shown, &debug] {
                assert!(
                    !printed.contains(QUOTED_SECRET) && !printed.contains(&form),
                    "the request's secret came back out: {printed:?}"
                );
            }
        }
    }
    outcome
}

/// The most a token endpoint's body may weigh: the transport reads no more.
const MAX_BODY: usize = 64 * 1024;

/// Reads fuzz input as a token endpoint's answer and checks it with
/// [`check_token_response`]. The layout, so that a mutation of a few bytes changes one
/// thing at a time:
///
/// - bytes 0–1: the status, `100 + n % 900` of a big-endian `u16`;
/// - byte 2: flags. Bit 0: `expires_in` counts milliseconds. Bit 1: a `Content-Type`
///   follows. Bits 2–3: the lifetime bounds, one of four (the defaults, tight, all zero,
///   wide);
/// - with bit 1: byte 3 is a length `n`, and the next `n` bytes are the content type's
///   value (dropped if a header cannot hold them);
/// - the rest, up to 64 KiB: the body.
pub(crate) fn check_token_response_bytes(data: &[u8]) {
    let (head, rest) = data.split_at(data.len().min(3));
    let [hi, lo, flags] = <[u8; 3]>::try_from(head).unwrap_or([0, 200, 0]);
    let status =
        StatusCode::from_u16(100 + u16::from_be_bytes([hi, lo]) % 900).expect("100..=999 is a status");
    let secs = std::time::Duration::from_secs;
    let lifetimes = match (flags >> 2) & 3 {
        0 => Lifetimes::default(),
        1 => Lifetimes {
            min: secs(30),
            default: secs(60),
            max: secs(120),
        },
        2 => Lifetimes {
            min: secs(0),
            default: secs(0),
            max: secs(0),
        },
        _ => Lifetimes {
            min: secs(0),
            default: secs(86_400),
            max: secs(10 * 365 * 86_400),
        },
    };
    let rules = ResponseRules {
        provider: "fuzz".into(),
        expires_in: if flags & 1 == 1 {
            crate::token::ExpiresIn::Milliseconds
        } else {
            crate::token::ExpiresIn::Seconds
        },
        lifetimes,
        dpop: false,
    };
    let mut headers = HeaderMap::new();
    let body = match rest.split_first() {
        Some((&len, rest)) if flags & 2 == 2 => {
            let (value, body) = rest.split_at(rest.len().min(usize::from(len)));
            if let Ok(value) = http::HeaderValue::from_bytes(value) {
                headers.insert(http::header::CONTENT_TYPE, value);
            }
            body
        }
        _ => rest,
    };
    let body = &body[..body.len().min(MAX_BODY)];
    let _ = check_token_response(&rules, status, &headers, body);
}
