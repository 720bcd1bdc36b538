//! The token endpoint's answer (`parse_token_response`) and what is built from an
//! accepted token (`credential::attachment`): the invariants are in `crate::invariants`,
//! shared with the fuzz target; this file makes the answers.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode};
use proptest::{collection::vec, prelude::*, sample::select};

use super::{config, hostile_string, numberish};
use crate::{
    error::Error,
    invariants::{check_token_response, check_token_response_bytes, has_control, QUOTED_SECRET},
    token::{ExpiresIn, Lifetimes, ResponseRules},
};

// ===== answers =====

/// The fields RFC 6749 §5.1 and §5.2 define, which the parser looks at.
const FIELDS: [&str; 8] = [
    "access_token",
    "token_type",
    "expires_in",
    "refresh_token",
    "scope",
    "error",
    "error_description",
    "error_uri",
];

/// A token as a server would issue it, recognisable so that a test can look for it in
/// an error message.
fn token() -> BoxedStrategy<String> {
    "tok_[A-Za-z0-9._~+/=-]{12,48}".boxed()
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// A JSON number as text, including ones no `f64` or `u64` holds.
fn number() -> BoxedStrategy<String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| serde_json::Value::from(f).to_string()),
        (0u32..200_000).prop_map(|n| n.to_string()),
        "-?[0-9]{1,40}(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,4})?",
    ]
    .boxed()
}

/// Any JSON value, as text.
fn value() -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        select(vec!["null", "true", "false", "{}", "[]"]).prop_map(str::to_owned),
        number(),
        hostile_string().prop_map(|s| json_string(&s)),
        token().prop_map(|s| json_string(&s)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(|items| format!("[{}]", items.join(","))),
            vec((field_name(), inner), 0..6).prop_map(|members| object(&members)),
        ]
    })
    .boxed()
}

fn field_name() -> BoxedStrategy<String> {
    prop_oneof![
        4 => select(FIELDS.to_vec()).prop_map(str::to_owned),
        1 => hostile_string(),
    ]
    .boxed()
}

fn object(members: &[(String, String)]) -> String {
    let members: Vec<String> = members
        .iter()
        .map(|(name, value)| format!("{}:{value}", json_string(name)))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// A value for `field` that is mostly plausible, often hostile.
fn field_value(field: &'static str) -> BoxedStrategy<String> {
    let plausible: BoxedStrategy<String> = match field {
        "access_token" => prop_oneof![
            3 => token(),
            // One character a header value must not carry (or need not), among token ones.
            1 => "[!-~]{1,8}[ \t\r\n\x00\x1b\x7f\u{80}-\u{10ffff}][!-~]{0,8}",
        ]
        .prop_map(|t| json_string(&t))
        .boxed(),
        "refresh_token" => token().prop_map(|t| json_string(&t)).boxed(),
        "token_type" => select(vec!["\"bearer\"", "\"Bearer\"", "\"BEARER\"", "null", "\"mac\""])
            .prop_map(str::to_owned)
            .boxed(),
        "expires_in" => prop_oneof![
            number(),
            number().prop_map(|n| json_string(&n)),
            numberish().prop_map(|n| json_string(&n)),
        ]
        .boxed(),
        "error" => select(vec![
            "\"invalid_grant\"",
            "\"invalid_client\"",
            "\"access_denied\"",
        ])
        .prop_map(str::to_owned)
        .boxed(),
        _ => hostile_string().prop_map(|s| json_string(&s)).boxed(),
    };
    // A server that quotes the request's secret back, in any field.
    let quoted = "[ -~]{0,12}".prop_map(|s| json_string(&format!("{s}{QUOTED_SECRET}{s}")));
    prop_oneof![
        12 => plausible,
        2 => hostile_string().prop_map(|s| json_string(&s)),
        1 => quoted,
        1 => value(),
    ]
    .boxed()
}

/// A token response: each known field present or not (`error` seldom, so that most
/// answers get as far as the token), a few stray members, in any order.
fn answer() -> BoxedStrategy<Vec<(String, String)>> {
    let fields: Vec<BoxedStrategy<Option<(String, String)>>> = FIELDS
        .iter()
        .map(|&field| {
            let presence = match field {
                "access_token" => 0.9,
                "error" => 0.1,
                "error_description" | "error_uri" => 0.2,
                _ => 0.5,
            };
            prop::option::weighted(
                presence,
                field_value(field).prop_map(move |v| (field.to_owned(), v)),
            )
            .boxed()
        })
        .collect();
    (fields, vec((field_name(), value()), 0..2))
        .prop_map(|(known, stray)| known.into_iter().flatten().chain(stray).collect::<Vec<_>>())
        .prop_shuffle()
        .boxed()
}

/// How a well-formed body gets damaged on the way.
#[derive(Debug, Clone)]
enum Damage {
    Truncate(prop::sample::Index),
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
}

fn damage() -> BoxedStrategy<Damage> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Damage::Truncate),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(at, b)| Damage::Flip(at, b)),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(at, b)| Damage::Insert(at, b)),
    ]
    .boxed()
}

fn damaged(mut body: Vec<u8>, damage: &Damage) -> Vec<u8> {
    match damage {
        Damage::Truncate(at) => body.truncate(at.index(body.len() + 1)),
        Damage::Flip(at, b) if !body.is_empty() => {
            let at = at.index(body.len());
            body[at] ^= b | 1;
        }
        Damage::Flip(..) => {}
        Damage::Insert(at, b) => body.insert(at.index(body.len() + 1), *b),
    }
    body
}

/// A body: bytes at random, an answer, a damaged answer, or deep nesting.
fn body() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..512),
        8 => answer().prop_map(|members| object(&members).into_bytes()),
        2 => (answer(), damage()).prop_map(|(members, d)| damaged(object(&members).into_bytes(), &d)),
        // Not quite JSON: a string unescaped, raw control characters and quotes in it.
        1 => (answer(), select(FIELDS.to_vec()), hostile_string()).prop_map(|(mut members, field, raw)| {
            members.push((field.to_owned(), format!("\"{raw}\"")));
            object(&members).into_bytes()
        }),
        1 => (1..400usize, select(vec!["[", "{\"a\":", "{\"access_token\":"]))
            .prop_map(|(depth, open)| open.repeat(depth).into_bytes()),
    ]
    .boxed()
}

fn status() -> BoxedStrategy<StatusCode> {
    prop_oneof![
        8 => Just(200u16),
        2 => select(vec![201u16, 204, 400, 401, 403, 429, 500, 502]),
        1 => 100u16..=999,
    ]
    .prop_map(|code| StatusCode::from_u16(code).expect("100..=999 are status codes"))
    .boxed()
}

/// Response headers: maybe a content type, of any bytes a header value may hold
/// (including obs-text, which is not a `str`, and tabs).
fn headers() -> BoxedStrategy<HeaderMap> {
    let content_type = prop_oneof![
        select(vec![
            "application/json",
            "application/json;charset=UTF-8",
            "text/html"
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
        vec(any::<u8>(), 0..120),
        vec(prop_oneof![Just(b'\t'), 0x20u8..=0xff], 0..300),
    ];
    prop::option::of(content_type)
        .prop_map(|content_type| {
            let mut headers = HeaderMap::new();
            if let Some(value) = content_type.and_then(|v| HeaderValue::from_bytes(&v).ok()) {
                headers.insert(http::header::CONTENT_TYPE, value);
            }
            headers
        })
        .boxed()
}

/// A provider's rules: either unit, and lifetime bounds in whole seconds with
/// `min <= default <= max` (what a provider's configuration says; see the regression
/// tests below for bounds that do not hold together).
fn rules() -> BoxedStrategy<ResponseRules> {
    let lifetimes = prop_oneof![
        Just(Lifetimes::default()),
        [
            0u64..=10 * 365 * 86_400,
            0u64..=10 * 365 * 86_400,
            0u64..=10 * 365 * 86_400
        ]
        .prop_map(|mut secs| {
            secs.sort_unstable();
            Lifetimes {
                min: Duration::from_secs(secs[0]),
                default: Duration::from_secs(secs[1]),
                max: Duration::from_secs(secs[2]),
            }
        }),
    ];
    (any::<bool>(), lifetimes)
        .prop_map(|(millis, lifetimes)| ResponseRules {
            provider: "acme".into(),
            expires_in: if millis {
                ExpiresIn::Milliseconds
            } else {
                ExpiresIn::Seconds
            },
            lifetimes,
            dpop: false,
        })
        .boxed()
}

/// The tokens an answer carries in its known fields (to look for them in errors).
fn tokens_in(body: &[u8]) -> Vec<String> {
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(body) else {
        return Vec::new();
    };
    ["access_token", "refresh_token"]
        .iter()
        .filter_map(|field| object.get(*field)?.as_str())
        .filter(|t| t.starts_with("tok_"))
        .map(str::to_owned)
        .collect()
}

// ===== properties =====

proptest! {
    #![proptest_config(config(1024))]

    /// Any status, content type and body: no panic, and the shared invariants (a header
    /// fit token with sensitive attachments and a bounded expiry, or an error whose
    /// text holds no control character) hold. No error quotes a token of the answer.
    #[test]
    fn any_answer_is_a_usable_token_or_a_clean_error(
        rules in rules(),
        status in status(),
        headers in headers(),
        body in body(),
    ) {
        match check_token_response(&rules, status, &headers, &body) {
            Ok(_) => {}
            Err(err) => {
                let shown = format!("{err} {err:?}");
                for token in tokens_in(&body) {
                    prop_assert!(!shown.contains(&token), "an error quotes a token: {}", shown);
                }
            }
        }
    }

    /// A well-formed answer is read exactly: its token, its refresh token and scope as
    /// sent, and its lifetime in the provider's unit.
    #[test]
    fn a_well_formed_answer_is_read_exactly(
        access in token(),
        refresh in prop::option::of(hostile_string().prop_filter("not empty", |s| !s.is_empty())),
        scope in prop::option::of(hostile_string()),
        token_type in select(vec![None, Some("bearer"), Some("Bearer"), Some("BEARER")]),
        expires_in in prop::option::of(1u64..=86_400),
        millis in any::<bool>(),
    ) {
        let mut members = vec![("access_token".to_owned(), json_string(&access))];
        if let Some(refresh) = &refresh {
            members.push(("refresh_token".to_owned(), json_string(refresh)));
        }
        if let Some(scope) = &scope {
            members.push(("scope".to_owned(), json_string(scope)));
        }
        if let Some(token_type) = token_type {
            members.push(("token_type".to_owned(), json_string(token_type)));
        }
        if let Some(secs) = expires_in {
            let declared = if millis { secs * 1000 } else { secs };
            members.push(("expires_in".to_owned(), declared.to_string()));
        }
        let rules = ResponseRules {
            provider: "acme".into(),
            expires_in: if millis { ExpiresIn::Milliseconds } else { ExpiresIn::Seconds },
            lifetimes: Lifetimes::default(),
            dpop: false,
        };
        let now = tokio::time::Instant::now();
        let tokens = crate::token::parse_token_response(
            &rules,
            StatusCode::OK,
            &HeaderMap::new(),
            object(&members).as_bytes(),
            now,
            &crate::redact::Redactor::none(),
        )
        .map_err(|e| TestCaseError::fail(format!("refused: {e}")))?;
        prop_assert_eq!(tokens.access_token().secret(), access.as_str());
        prop_assert_eq!(tokens.refresh_token().map(|t| t.secret()), refresh.as_deref());
        prop_assert_eq!(tokens.scope(), scope.as_deref());
        let lifetime = Duration::from_secs(expires_in.unwrap_or(3600));
        prop_assert_eq!(tokens.expires_at() - now, lifetime);
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// The fuzz target's entry point, on any bytes and on answers behind a header of
    /// status and flags: it checks the same invariants and never panics otherwise.
    #[test]
    fn the_fuzz_entry_point_takes_any_bytes(
        data in prop_oneof![
            vec(any::<u8>(), 0..600),
            (any::<[u8; 3]>(), body()).prop_map(|(head, body)| [&head[..], &body].concat()),
        ],
    ) {
        check_token_response_bytes(&data);
    }
}

proptest! {
    // Big bodies cost more per case; the sizes, not the count, are the point.
    #![proptest_config(config(48))]

    /// A body of up to 64 KiB (the size the transport reads at most) is parsed to its end:
    /// long tokens, long descriptions, long arrays, deep nesting, long escapes.
    #[test]
    fn a_body_of_up_to_64_kib_is_parsed_to_the_end(
        rules in rules(),
        status in status(),
        size in 0usize..=64 * 1024 - 64,
        shape in 0u8..6,
    ) {
        let body: Vec<u8> = match shape {
            0 => format!(r#"{{"access_token":"{}","expires_in":60}}"#, "t".repeat(size)).into_bytes(),
            1 => format!(r#"{{"error":"invalid_grant","error_description":"{}"}}"#, "\\u0007\\r\\n".repeat(size / 12))
                .into_bytes(),
            2 => format!(r#"{{"access_token":"a","scope":[{}0]}}"#, "0,".repeat(size / 2)).into_bytes(),
            3 => "[".repeat(size).into_bytes(),
            4 => format!(r#"{{"access_token":"a","expires_in":{}}}"#, "9".repeat(size)).into_bytes(),
            _ => format!("{}{{}}", " ".repeat(size)).into_bytes(),
        };
        prop_assert!(body.len() <= 64 * 1024);
        let outcome = check_token_response(&rules, status, &HeaderMap::new(), &body);
        if let Err(err) = &outcome {
            prop_assert!(!has_control(&err.to_string()));
        }
    }
}

// ===== regressions =====

/// Parses `body` under 200 with the given lifetimes, in seconds.
fn parse_with(lifetimes: Lifetimes, body: &str) -> Result<crate::TokenSet, Error> {
    let rules = ResponseRules {
        provider: "acme".into(),
        expires_in: ExpiresIn::Seconds,
        lifetimes,
        dpop: false,
    };
    check_token_response(&rules, StatusCode::OK, &HeaderMap::new(), body.as_bytes())
}

#[test]
fn an_error_description_with_control_characters_is_shown_without_them() {
    let err = parse_with(
        Lifetimes::default(),
        "{\"error\":\"invalid_grant\\r\\nX: y\",\"error_description\":\"a\\u0000b\\u001bc\\u007f\"}",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "token endpoint of `acme` refused the request (200): invalid_grant\\r\\nX: y: a\\u{0}b\\u{1b}c\\u{7f}"
    );
}

/// A provider that trusts any lifetime (`max: Duration::MAX`) and a server that declares
/// one past what an `Instant` can hold, or past what a `Duration` can.
#[test]
fn an_unbounded_maximum_lifetime_never_panics() {
    let lifetimes = Lifetimes {
        max: Duration::MAX,
        ..Lifetimes::default()
    };
    for expires_in in ["1e19", "18446744073709551616"] {
        let body = format!(r#"{{"access_token":"a","expires_in":{expires_in}}}"#);
        let _ = parse_with(lifetimes, &body);
    }
}

/// Lifetime bounds that do not hold together are refused when a credential is built;
/// the parser keeps the default within them all the same.
#[test]
fn the_expiry_stays_within_the_bounds_whatever_the_default() {
    let lifetimes = Lifetimes {
        min: Duration::from_secs(1),
        default: Duration::from_secs(7200),
        max: Duration::from_secs(3600),
    };
    // `check_token_response` asserts that the expiry lies within [min, max].
    parse_with(lifetimes, r#"{"access_token":"a"}"#).unwrap();
}
