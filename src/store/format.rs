//! The file store's record format and file names: pure functions, no I/O.
//!
//! A record is one JSON object:
//!
//! ```json
//! {
//!   "format": "tower-oauth2 token store",
//!   "version": 1,
//!   "key": { "provider": "acme", "client_id": "app", "grant": "authorization_code",
//!            "scopes": ["read"], "subject": "alice" },
//!   "refresh_token": "…" | null,
//!   "access_token": "…" | null,
//!   "expires_at": { "secs": 1700000000, "nanos": 0 } | null,
//!   "scope": "read" | null
//! }
//! ```
//!
//! The file name is the lowercase hex SHA-256 of the key's canonical encoding, the
//! compact JSON array `[provider, client_id, grant, [scopes…], subject or null]`, plus
//! `.json`. Changing that encoding would orphan every existing file: the names would no
//! longer be found. The key is also stored inside the record, field by field, and a load
//! checks it, so a file can never hand its tokens to another credential.

use std::{
    borrow::Cow,
    fmt::Write as _,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::StoredTokens;
use crate::{
    secret::{AccessToken, RefreshToken},
    CredentialKey,
};

/// Names this crate's records, so a foreign JSON file is refused.
pub(super) const FORMAT: &str = "tower-oauth2 token store";
/// The record layout this crate writes and reads.
pub(super) const VERSION: u64 = 1;
/// A file name ends with this; a temporary file adds `.<unique>.tmp` after it.
pub(super) const EXTENSION: &str = ".json";
/// The end of a temporary file's name.
pub(super) const TEMP_SUFFIX: &str = ".tmp";

/// Why a record could not be read. Every message is ours: nothing read is quoted.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum DecodeError {
    Corrupt(Cow<'static, str>),
    KeyMismatch,
    UnsupportedVersion(u64),
}

fn corrupt(reason: impl Into<Cow<'static, str>>) -> DecodeError {
    DecodeError::Corrupt(reason.into())
}

/// The key, field by field, as it is stored inside a record.
fn key_object(key: &CredentialKey) -> Value {
    json!({
        "provider": key.provider(),
        "client_id": key.client_id(),
        "grant": key.grant(),
        "scopes": key.scopes(),
        "subject": key.subject(),
    })
}

/// The file name's stem: 64 lowercase hex digits.
///
/// Hashed from an unambiguous encoding rather than the key's `Display`, which joins the
/// fields with `/`: a scope or subject containing `/` (URL scopes are common) would let
/// two keys print alike and share a file.
pub(super) fn file_stem(key: &CredentialKey) -> String {
    // An array, so the encoding does not depend on how serde_json orders object fields.
    let canonical = json!([
        key.provider(),
        key.client_id(),
        key.grant(),
        key.scopes(),
        key.subject()
    ]);
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    let mut stem = String::with_capacity(64);
    for byte in digest {
        let _ = write!(stem, "{byte:02x}");
    }
    stem
}

/// Whether `name` is one of our temporary files: `<64 hex>.json.<unique>.tmp`.
pub(super) fn is_temp_name(name: &str) -> bool {
    let Some(rest) = name.strip_suffix(TEMP_SUFFIX) else {
        return false;
    };
    let (Some(stem), Some(after)) = (rest.get(..64), rest.get(64..)) else {
        return false;
    };
    stem.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && after
            .strip_prefix(EXTENSION)
            .is_some_and(|unique| unique.starts_with('.'))
}

/// The record for `tokens` under `key`. The bytes hold secrets: write them, drop them.
pub(super) fn encode(key: &CredentialKey, tokens: &StoredTokens) -> Vec<u8> {
    let expires_at = tokens.expires_at.map(|at| {
        // An expiry before 1970 is long past; the epoch says the same and fits.
        let since = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        json!({ "secs": since.as_secs(), "nanos": since.subsec_nanos() })
    });
    let record = json!({
        "format": FORMAT,
        "version": VERSION,
        "key": key_object(key),
        "refresh_token": tokens.refresh_token.as_ref().map(RefreshToken::secret),
        "access_token": tokens.access_token.as_ref().map(AccessToken::secret),
        "expires_at": expires_at,
        "scope": tokens.scope,
    });
    let mut bytes = serde_json::to_vec_pretty(&record).expect("a JSON value always serializes");
    bytes.push(b'\n');
    bytes
}

/// Reads a record, checking that it is ours, in a version we know, and for `key`.
pub(super) fn decode(key: &CredentialKey, bytes: &[u8]) -> Result<StoredTokens, DecodeError> {
    // serde_json's syntax errors carry a position, never the text around it; the
    // position is all we keep anyway.
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| corrupt(format!("not JSON: line {}, column {}", e.line(), e.column())))?;
    let Value::Object(record) = value else {
        return Err(corrupt("not a JSON object"));
    };
    if record.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(corrupt("not a tower-oauth2 token record"));
    }
    match record.get("version").and_then(Value::as_u64) {
        Some(VERSION) => {}
        Some(other) => return Err(DecodeError::UnsupportedVersion(other)),
        None => return Err(corrupt("`version` is missing or not a number")),
    }
    match record.get("key") {
        Some(stored) if *stored == key_object(key) => {}
        Some(Value::Object(_)) => return Err(DecodeError::KeyMismatch),
        _ => return Err(corrupt("`key` is missing or not an object")),
    }
    let mut tokens = StoredTokens::new();
    tokens.refresh_token = optional_string(&record, "refresh_token")?.map(RefreshToken::new);
    tokens.access_token = optional_string(&record, "access_token")?.map(AccessToken::new);
    tokens.scope = optional_string(&record, "scope")?.map(str::to_owned);
    tokens.expires_at = match record.get("expires_at") {
        None | Some(Value::Null) => None,
        Some(Value::Object(at)) => Some(wall_time(at)?),
        Some(_) => return Err(corrupt("`expires_at` is not an object")),
    };
    Ok(tokens)
}

fn optional_string<'a>(
    record: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, DecodeError> {
    match record.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(corrupt(format!("`{field}` is not a string"))),
    }
}

fn wall_time(at: &Map<String, Value>) -> Result<SystemTime, DecodeError> {
    let secs = at.get("secs").and_then(Value::as_u64);
    let nanos = at
        .get("nanos")
        .and_then(Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n < 1_000_000_000);
    let (Some(secs), Some(nanos)) = (secs, nanos) else {
        return Err(corrupt("`expires_at` needs whole `secs` and `nanos` below 10^9"));
    };
    UNIX_EPOCH
        .checked_add(Duration::new(secs, nanos))
        .ok_or_else(|| corrupt("`expires_at` is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Credential, Provider};

    fn key(scopes: &[&str], subject: Option<&str>) -> CredentialKey {
        let provider = Provider::standard("https://auth.example.com/token").name("acme");
        let mut credential =
            Credential::client_credentials(provider, "app", "client-secret").scopes(scopes.iter().copied());
        if let Some(subject) = subject {
            credential = credential.subject(subject);
        }
        credential.key()
    }

    fn full_tokens() -> StoredTokens {
        StoredTokens::new()
            .with_refresh_token(RefreshToken::new("rt-secret"))
            .with_access_token(AccessToken::new("at-secret"))
            .with_expires_at(UNIX_EPOCH + Duration::new(1_900_000_000, 123_456_789))
            .with_scope("read write")
    }

    #[test]
    fn a_record_round_trips() {
        let key = key(&["read"], Some("alice"));
        for tokens in [full_tokens(), StoredTokens::new()] {
            assert_eq!(decode(&key, &encode(&key, &tokens)), Ok(tokens));
        }
    }

    #[test]
    fn file_names_are_pinned() {
        // Changing the name derivation orphans every stored file: this test must fail
        // first, and the format version must change with it. The value is
        // `printf '%s' '["acme","app","client_credentials",["read"],"alice"]' | sha256sum`.
        assert_eq!(
            file_stem(&key(&["read"], Some("alice"))),
            "36b51cdab083d64d795a28851bc4d0be7a35e0150ffb7bd77fda311653d1a00e"
        );
    }

    #[test]
    fn keys_that_print_alike_get_different_files() {
        let with_subject = key(&["https://x/a"], Some("b"));
        let url_scope = key(&["https://x/a/b"], None);
        assert_eq!(with_subject.to_string(), url_scope.to_string());
        assert_ne!(file_stem(&with_subject), file_stem(&url_scope));
        let record = encode(&with_subject, &full_tokens());
        assert_eq!(decode(&url_scope, &record), Err(DecodeError::KeyMismatch));
    }

    #[test]
    fn temp_names_are_recognised() {
        let stem = file_stem(&key(&[], None));
        assert!(is_temp_name(&format!("{stem}.json.12-3-abcd.tmp")));
        assert!(!is_temp_name(&format!("{stem}.json")));
        assert!(!is_temp_name(&format!("{stem}.tmp")));
        assert!(!is_temp_name("notes.json.1.tmp"));
        assert!(!is_temp_name(&format!("{}.json.1.tmp", stem.to_uppercase())));
    }

    #[test]
    fn bad_records_are_typed_errors_that_quote_nothing() {
        let key = key(&["read"], None);
        let cases: &[(&[u8], &str)] = &[
            (b"", "not JSON"),
            (b"{\"refresh_token\": \"rt-secret", "not JSON"),
            (b"[\"rt-secret\"]", "not a JSON object"),
            (
                b"{\"refresh_token\": \"rt-secret\"}",
                "not a tower-oauth2 token record",
            ),
            (
                br#"{"format":"tower-oauth2 token store","version":"1","refresh_token":"rt-secret"}"#,
                "`version`",
            ),
            (br#"{"format":"tower-oauth2 token store","version":1}"#, "`key`"),
        ];
        for (bytes, expected) in cases {
            match decode(&key, bytes) {
                Err(DecodeError::Corrupt(reason)) => {
                    assert!(reason.contains(expected), "{reason}");
                    assert!(!reason.contains("rt-secret"), "{reason}");
                }
                other => panic!("{other:?} for {}", String::from_utf8_lossy(bytes)),
            }
        }
    }

    #[test]
    fn bad_fields_and_versions_are_refused() {
        let key = key(&["read"], None);
        let good: Value = serde_json::from_slice(&encode(&key, &full_tokens())).unwrap();
        let with = |field: &str, value: Value| {
            let mut record = good.clone();
            record[field] = value;
            decode(&key, record.to_string().as_bytes())
        };
        assert_eq!(with("version", json!(2)), Err(DecodeError::UnsupportedVersion(2)));
        assert!(matches!(
            with("refresh_token", json!(7)),
            Err(DecodeError::Corrupt(_))
        ));
        assert!(matches!(
            with("scope", json!(["read"])),
            Err(DecodeError::Corrupt(_))
        ));
        assert!(matches!(
            with("expires_at", json!(5)),
            Err(DecodeError::Corrupt(_))
        ));
        assert!(matches!(
            with("expires_at", json!({"secs": 1, "nanos": 1_000_000_000u64})),
            Err(DecodeError::Corrupt(_))
        ));
        assert!(matches!(
            with("expires_at", json!({"secs": u64::MAX, "nanos": 0})),
            Err(DecodeError::Corrupt(_))
        ));
        assert_eq!(with("access_token", Value::Null).unwrap().access_token, None);
    }

    #[test]
    fn an_expiry_before_the_epoch_is_stored_as_the_epoch() {
        let key = key(&[], None);
        let tokens = StoredTokens::new().with_expires_at(UNIX_EPOCH - Duration::from_secs(5));
        assert_eq!(
            decode(&key, &encode(&key, &tokens)).unwrap().expires_at,
            Some(UNIX_EPOCH)
        );
    }
}
