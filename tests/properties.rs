//! Property tests through the public API: a `FileStore` loading whatever lies in its
//! files. (The parsers' own properties are unit tests: `src/proptests` and
//! `src/store/proptests.rs`.)
//!
//! Cases: `PROPTEST_CASES` when set, otherwise the default written beside each property.

mod support;

use support::tempdir::TempDir;

use std::fs;

use proptest::{
    collection::vec,
    prelude::*,
    sample::Index,
    test_runner::{Config, TestRunner},
};
use tokio::runtime::Runtime;
use tower_oauth2::{
    secret::{AccessToken, RefreshToken},
    store::{FileStore, StoreErrorKind, StoredTokens, TokenStore},
    Credential, CredentialKey, Provider,
};

// ===== helpers =====

/// `default` cases unless `PROPTEST_CASES` says (an explicit count would otherwise win
/// over the variable in proptest).
fn config(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.trim().parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Runs a property with proptest's runner, failing the test with the minimal case.
fn check<S: Strategy>(cases: u32, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    if let Err(failure) = TestRunner::new(config(cases)).run(&strategy, test) {
        panic!("{failure}");
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn has_control(s: &str) -> bool {
    s.bytes().any(|b| b < 0x20 || b == 0x7f)
}

/// A key of printable parts (a key's parts are the application's own words, and they
/// appear in store errors as they are).
fn key() -> BoxedStrategy<CredentialKey> {
    (
        "[ -~]{0,12}",
        "[ -~]{0,12}",
        vec("[!-~]{1,10}", 0..3),
        prop::option::of("[ -~]{1,12}"),
    )
        .prop_map(|(provider, client_id, scopes, subject)| {
            let provider = Provider::standard("https://auth.example.com/token").name(provider);
            let credential = Credential::refresh_token(provider, client_id, None, "seed").scopes(scopes);
            match subject {
                Some(subject) => credential.subject(subject),
                None => credential,
            }
            .key()
        })
        .boxed()
}

/// Tokens whose values a test can recognise in a message.
fn tokens() -> BoxedStrategy<StoredTokens> {
    (
        "sec_[A-Za-z0-9]{16}",
        "sec_[A-Za-z0-9]{16}",
        prop::option::of(".{0,20}"),
    )
        .prop_map(|(refresh, access, scope)| {
            let tokens = StoredTokens::new()
                .with_refresh_token(RefreshToken::new(refresh))
                .with_access_token(AccessToken::new(access));
            match scope {
                Some(scope) => tokens.with_scope(scope),
                None => tokens,
            }
        })
        .boxed()
}

/// What a file may hold: anything, or a record (of this key or another) with bytes cut,
/// changed or added.
#[derive(Debug, Clone)]
enum Content {
    Bytes(Vec<u8>),
    Damaged {
        tokens: StoredTokens,
        of_another_key: bool,
        cuts: Vec<(Index, Index, u8)>,
    },
}

fn content() -> BoxedStrategy<Content> {
    prop_oneof![
        vec(any::<u8>(), 0..2048).prop_map(Content::Bytes),
        (
            tokens(),
            any::<bool>(),
            vec((any::<Index>(), any::<Index>(), any::<u8>()), 0..4)
        )
            .prop_map(|(tokens, of_another_key, cuts)| Content::Damaged {
                tokens,
                of_another_key,
                cuts
            }),
    ]
    .boxed()
}

// ===== properties =====

/// Whatever bytes lie in a key's file, `load` answers: the tokens when they are a valid
/// record of that key, otherwise a typed error (`Corrupt`, `KeyMismatch` or
/// `UnsupportedVersion`; never `Io` for a readable file) whose `Display` and `Debug`
/// hold no control character and none of the file's secrets.
#[test]
fn a_file_of_any_content_loads_as_tokens_or_a_typed_error() {
    let dir = TempDir::new("properties-any-content");
    let store = FileStore::open(dir.path()).unwrap();
    let other_key =
        Credential::refresh_token(Provider::standard("https://a.example/t"), "x", None, "s").key();
    let rt = runtime();
    check(256, (key(), content()), |(key, content)| {
        let path = store.file(&key);
        let mut secrets = Vec::new();
        match &content {
            Content::Bytes(bytes) => fs::write(&path, bytes).unwrap(),
            Content::Damaged {
                tokens,
                of_another_key,
                cuts,
            } => {
                secrets.extend(tokens.refresh_token.as_ref().map(|t| t.secret().to_owned()));
                secrets.extend(tokens.access_token.as_ref().map(|t| t.secret().to_owned()));
                let owner = if *of_another_key { &other_key } else { &key };
                rt.block_on(store.save(owner, tokens)).unwrap();
                let mut bytes = fs::read(store.file(owner)).unwrap();
                fs::remove_file(store.file(owner)).unwrap();
                for (at, len, byte) in cuts {
                    let at = at.index(bytes.len() + 1);
                    let end = at + len.index(bytes.len() - at + 1).min(3);
                    bytes.splice(at..end, [*byte]);
                }
                fs::write(&path, bytes).unwrap();
            }
        }
        let outcome = rt.block_on(store.load(&key));
        fs::remove_file(&path).unwrap();
        match outcome {
            Ok(loaded) => {
                prop_assert!(loaded.is_some(), "a file that exists loads as nothing");
                // Only a record written for this key can be read under it.
                prop_assert!(
                    !matches!(
                        content,
                        Content::Damaged {
                            of_another_key: true,
                            ..
                        }
                    ),
                    "another key's record was read"
                );
            }
            Err(err) => {
                prop_assert!(
                    matches!(
                        err.kind(),
                        StoreErrorKind::Corrupt
                            | StoreErrorKind::KeyMismatch
                            | StoreErrorKind::UnsupportedVersion
                    ),
                    "{:?}",
                    err.kind()
                );
                for shown in [err.to_string(), format!("{err:?}")] {
                    prop_assert!(!has_control(&shown), "control character in {:?}", shown);
                    for secret in &secrets {
                        prop_assert!(!shown.contains(secret.as_str()), "a secret in {:?}", shown);
                    }
                }
            }
        }
        Ok(())
    });
}
