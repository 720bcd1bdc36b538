//! Property tests of the file store's record format (`format::encode`, `decode`,
//! `file_stem`): it is read back from disk, where anything may have happened to it.
//! Beside the format because its functions are private to the store; the cases are
//! counted as in `crate::proptests`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::{collection::vec, prelude::*, sample::Index};

use super::{
    format::{decode, encode, file_stem, DecodeError},
    StoredTokens,
};
use crate::{
    invariants::has_control,
    proptests::{config, hostile_string},
    secret::{AccessToken, RefreshToken},
    Credential, CredentialKey, Provider,
};

// ===== keys and tokens =====

#[derive(Debug, Clone)]
struct KeyParts {
    provider: String,
    client_id: String,
    grant: u8,
    scopes: Vec<String>,
    subject: Option<String>,
}

impl KeyParts {
    fn key(&self) -> CredentialKey {
        let provider = Provider::standard("https://auth.example.com/token").name(self.provider.as_str());
        let credential = match self.grant % 3 {
            0 => Credential::client_credentials(provider, self.client_id.as_str(), "secret"),
            1 => Credential::refresh_token(
                provider,
                self.client_id.as_str(),
                Some("secret".into()),
                RefreshToken::new("rt"),
            ),
            _ => Credential::authorization_code(
                provider,
                self.client_id.as_str(),
                None,
                crate::secret::AuthorizationCode::new("code"),
                "https://app.example.com/callback",
            ),
        };
        let credential = credential.scopes(self.scopes.iter().cloned());
        match &self.subject {
            Some(subject) => credential.subject(subject.as_str()),
            None => credential,
        }
        .key()
    }
}

fn key_parts() -> BoxedStrategy<KeyParts> {
    (
        hostile_string(),
        hostile_string(),
        any::<u8>(),
        vec(prop_oneof![hostile_string(), "[a-z:/.]{1,12}"], 0..4),
        prop::option::of(hostile_string()),
    )
        .prop_map(|(provider, client_id, grant, scopes, subject)| KeyParts {
            provider,
            client_id,
            grant,
            scopes,
            subject,
        })
        .boxed()
}

/// The same key with one part changed.
fn other_key(parts: KeyParts) -> BoxedStrategy<KeyParts> {
    let p = parts.clone();
    prop_oneof![
        hostile_string().prop_map({
            let p = p.clone();
            move |provider| KeyParts {
                provider,
                ..p.clone()
            }
        }),
        hostile_string().prop_map({
            let p = p.clone();
            move |client_id| KeyParts {
                client_id,
                ..p.clone()
            }
        }),
        Just(KeyParts {
            grant: parts.grant.wrapping_add(1),
            ..parts.clone()
        }),
        hostile_string().prop_map({
            let p = p.clone();
            move |scope| {
                let mut scopes = p.scopes.clone();
                scopes.push(scope);
                KeyParts { scopes, ..p.clone() }
            }
        }),
        prop::option::of(hostile_string()).prop_map({
            let p = p.clone();
            move |subject| KeyParts { subject, ..p.clone() }
        }),
        key_parts(),
    ]
    .boxed()
}

/// A wall-clock instant the format can hold: the epoch or later, to the nanosecond.
fn wall_time() -> BoxedStrategy<SystemTime> {
    prop_oneof![
        (0u64..4_000_000_000, 0u32..1_000_000_000),
        (0u64..=i64::MAX as u64 / 2, 0u32..1_000_000_000),
    ]
    .prop_map(|(secs, nanos)| UNIX_EPOCH + Duration::new(secs, nanos))
    .boxed()
}

/// A secret as a test can recognise it in a message.
fn marked_secret() -> BoxedStrategy<String> {
    "sec_[A-Za-z0-9]{16}".boxed()
}

fn tokens() -> BoxedStrategy<StoredTokens> {
    (
        prop::option::of(prop_oneof![hostile_string(), marked_secret()]),
        prop::option::of(prop_oneof![hostile_string(), marked_secret()]),
        prop::option::of(wall_time()),
        prop::option::of(hostile_string()),
    )
        .prop_map(|(refresh, access, expires_at, scope)| StoredTokens {
            refresh_token: refresh.map(RefreshToken::new),
            access_token: access.map(AccessToken::new),
            expires_at,
            scope,
        })
        .boxed()
}

/// The secrets of `tokens` that a test can look for.
fn marked_secrets(tokens: &StoredTokens) -> Vec<String> {
    [
        tokens.refresh_token.as_ref().map(|t| t.secret()),
        tokens.access_token.as_ref().map(|t| t.secret()),
    ]
    .into_iter()
    .flatten()
    .filter(|s| s.starts_with("sec_"))
    .map(str::to_owned)
    .collect()
}

/// What `decode` may answer, checked: a typed error whose words are ours.
fn assert_typed(
    outcome: &Result<StoredTokens, DecodeError>,
    secrets: &[String],
) -> Result<(), TestCaseError> {
    if let Err(DecodeError::Corrupt(reason)) = outcome {
        prop_assert!(!has_control(reason), "control character in {:?}", reason);
        for secret in secrets {
            prop_assert!(!reason.contains(secret.as_str()), "a secret in {:?}", reason);
        }
    }
    Ok(())
}

/// Damage to a record: bytes cut, changed, added, or a field given another value.
#[derive(Debug, Clone)]
enum Damage {
    Truncate(Index),
    Flip(Index, u8),
    Insert(Index, u8),
    Remove(Index, Index),
    Field(&'static str, String),
}

fn damage() -> BoxedStrategy<Damage> {
    let field = prop::sample::select(vec![
        "format",
        "version",
        "key",
        "refresh_token",
        "access_token",
        "expires_at",
        "scope",
    ]);
    let value = prop_oneof![
        Just("null".to_owned()),
        Just("{}".to_owned()),
        Just(r#"{"secs":1,"nanos":1000000000}"#.to_owned()),
        Just(r#"{"secs":18446744073709551615,"nanos":0}"#.to_owned()),
        Just(r#"{"secs":-1,"nanos":0}"#.to_owned()),
        "-?[0-9]{1,25}(\\.[0-9]{1,5})?",
        hostile_string().prop_map(|s| serde_json::Value::from(s).to_string()),
    ];
    prop_oneof![
        any::<Index>().prop_map(Damage::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(at, b)| Damage::Flip(at, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(at, b)| Damage::Insert(at, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Damage::Remove(a, b)),
        (field, value).prop_map(|(field, value)| Damage::Field(field, value)),
    ]
    .boxed()
}

fn damaged(mut record: Vec<u8>, damage: &Damage) -> Vec<u8> {
    let len = record.len();
    match damage {
        Damage::Truncate(at) => record.truncate(at.index(len + 1)),
        Damage::Flip(at, b) if len > 0 => record[at.index(len)] ^= b | 1,
        Damage::Flip(..) => {}
        Damage::Insert(at, b) => record.insert(at.index(len + 1), *b),
        Damage::Remove(a, b) => {
            let (a, b) = (a.index(len + 1), b.index(len + 1));
            record.drain(a.min(b)..a.max(b));
        }
        Damage::Field(field, value) => {
            let mut object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&record).expect("a record is a JSON object");
            let raw: serde_json::Value = serde_json::from_str(value).unwrap_or(serde_json::Value::Null);
            object.insert((*field).to_owned(), raw);
            record = serde_json::to_vec(&object).expect("JSON serializes");
        }
    }
    record
}

// ===== properties =====

proptest! {
    #![proptest_config(config(512))]

    /// A record reads back as what was written, for any key and tokens: non-ASCII and
    /// control characters in tokens and scopes, any expiry from the epoch on.
    #[test]
    fn a_record_reads_back_as_written(parts in key_parts(), tokens in tokens()) {
        let key = parts.key();
        prop_assert_eq!(decode(&key, &encode(&key, &tokens)), Ok(tokens));
    }

    /// A record of one key is refused under any other key, and the two keys' files have
    /// different names.
    #[test]
    fn a_record_never_reads_under_another_key(
        (parts, other) in key_parts().prop_flat_map(|p| (Just(p.clone()), other_key(p))),
        tokens in tokens(),
    ) {
        let (key, other) = (parts.key(), other.key());
        prop_assume!(key != other);
        prop_assert_eq!(decode(&other, &encode(&key, &tokens)), Err(DecodeError::KeyMismatch));
        prop_assert_ne!(file_stem(&key), file_stem(&other));
    }

    /// A file name is 64 lowercase hex digits, for any key.
    #[test]
    fn a_file_stem_is_64_lowercase_hex_digits(parts in key_parts()) {
        let stem = file_stem(&parts.key());
        prop_assert_eq!(stem.len(), 64);
        prop_assert!(stem.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "{}", stem);
    }

    /// Any bytes: `decode` answers with a typed error.
    #[test]
    fn any_bytes_are_refused_with_a_typed_error(
        parts in key_parts(),
        bytes in prop_oneof![
            vec(any::<u8>(), 0..1024),
            "[ -~]{0,200}".prop_map(String::into_bytes),
            "\\{\"format\":\"tower-oauth2 token store\",\"version\":[ -~]{0,60}\\}".prop_map(String::into_bytes),
        ],
    ) {
        let outcome = decode(&parts.key(), &bytes);
        prop_assert!(outcome.is_err());
        assert_typed(&outcome, &[])?;
    }

    /// A damaged record: `decode` answers, never with tokens for another key, and a
    /// refusal's words quote none of the record's secrets.
    #[test]
    fn a_damaged_record_is_read_or_refused_cleanly(
        parts in key_parts(),
        tokens in tokens(),
        damage in vec(damage(), 1..4),
    ) {
        let key = parts.key();
        let mut record = encode(&key, &tokens);
        for d in &damage {
            // A field can only be replaced while the record is still a JSON object.
            if matches!(d, Damage::Field(..)) && serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&record).is_err() {
                continue;
            }
            record = damaged(record, d);
        }
        let outcome = decode(&key, &record);
        assert_typed(&outcome, &marked_secrets(&tokens))?;
        if outcome.is_ok() {
            // Still a record of this key: the key object survived whole.
            let value: serde_json::Value = serde_json::from_slice(&record).expect("decoded, so JSON");
            let fresh: serde_json::Value = serde_json::from_slice(&encode(&key, &StoredTokens::new())).unwrap();
            prop_assert_eq!(&value["key"], &fresh["key"]);
        }
    }
}
