//! Tokens encrypted at rest, around any store.
//!
//! A [`FileStore`](super::FileStore) on a shared volume, a database, a backup of either:
//! whoever reads the store reads every refresh token in it, and a refresh token is a
//! user's grant. [`EncryptedStore`] wraps any [`TokenStore`] and encrypts what it saves
//! before the inner store sees it, and decrypts what it loads, so the inner store only
//! ever holds ciphertext; the keys stay with the application.
//!
//! # What is encrypted
//!
//! Each of the refresh token, the access token and the granted scope is encrypted on its
//! own into a string that the inner store keeps where the plain value would be:
//!
//! ```text
//! v1.<key id>.<base64url, unpadded: 24-byte nonce ‖ ciphertext ‖ 16-byte tag>
//! ```
//!
//! with XChaCha20-Poly1305 (RFC 8439's construction with the extended nonce of
//! draft-irtf-cfrg-xchacha) and a fresh random nonce from the operating system for every
//! value. 192 random bits never repeat in practice, so replicas sharing a key need no
//! nonce counter between them.
//!
//! The expiry stays in the clear: [`StoredTokens::expires_at`] is a time, not a string,
//! and the inner store may read it (to expire entries, say). It is not a secret: it says
//! when an access token stops working, which the token itself often says to whoever
//! holds it, and without the token it is worth nothing. It is not left open to change,
//! though: it is part of the access token's associated data (to the whole second, so an
//! inner store that keeps only seconds still reads back), so a changed expiry makes the
//! access token fail to decrypt. A store that loses the expiry entirely cannot keep an
//! encrypted access token.
//!
//! # Bound to its credential and field
//!
//! Each value's associated data is the compact JSON array
//! `["tower-oauth2 encrypted token", 1, key id, [provider, client_id, grant, [scopes…],
//! subject or null], field, expiry seconds or null]`: the credential's canonical
//! encoding (the one the file store's names are hashed from), the field's name
//! (`refresh_token`, `access_token` or `scope`) and, for the access token only, its
//! expiry. A value copied to another credential's record, or from one field to another,
//! fails authentication and is refused. Changing this encoding would make every stored
//! value unreadable: it comes with a new version (`v2.`) and a migration.
//!
//! # Keys and rotation
//!
//! A [`Keyring`] holds one current [`EncryptionKey`], with which every save encrypts,
//! and any number of older ones, accepted for loads. Each key has an id (1 to 32 ASCII
//! letters, digits, `-` or `_`) written in every value, so a load picks the key a value
//! was written with. To rotate: make a new key current and keep the previous one as an
//! old key. Loads of values written with the old key keep working; each credential's
//! next save (its next refresh) writes the new key. Once every record has been saved
//! again, or has expired with its grant, drop the old key; a value still under a dropped
//! key is refused with [`StoreErrorKind::UnknownEncryptionKey`], never read as
//! something else.
//!
//! Keys are 32 bytes from a CSPRNG (`openssl rand -base64 32` prints one). Key bytes are
//! never shown by `Debug`, and each copy the crate holds is overwritten with zeros when
//! dropped (the bytes or base64 the application passed in remain its own to clear).
//!
//! # Errors
//!
//! Whatever the inner store returns, a load answers with the tokens or a typed
//! [`StoreError`], never a panic, and the error never holds a token or key material:
//!
//! | found in a field | kind |
//! | --- | --- |
//! | a value under a key id the keyring does not hold (the id is named) | [`UnknownEncryptionKey`](StoreErrorKind::UnknownEncryptionKey) |
//! | a value that fails authentication: changed, copied from another credential or field, an expiry changed, or written with other key bytes under the same id | [`Corrupt`](StoreErrorKind::Corrupt) |
//! | a malformed envelope, or plain text where a value was expected | [`Corrupt`](StoreErrorKind::Corrupt) |
//! | a value of another envelope version (`v2.…`) | [`UnsupportedVersion`](StoreErrorKind::UnsupportedVersion) |
//!
//! # Limits
//!
//! - Someone who can write to the store can put back an earlier value of the same field
//!   of the same credential (a rollback): it decrypts. With rotating refresh tokens an
//!   earlier one is already dead at the server.
//! - The length of each token, the key id and the expiry are visible.
//! - Tokens saved before the store was wrapped are plain text and are refused. To
//!   migrate, [`load`](TokenStore::load) each credential from the inner store and
//!   [`save`](TokenStore::save) it through the `EncryptedStore`.
//!
//! # Example
//!
//! ```
//! use tower_oauth2::{Credential, Provider, secret::RefreshToken};
//! use tower_oauth2::store::{EncryptedStore, EncryptionKey, Keyring, MemoryStore, StoredTokens, TokenStore};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tower_oauth2::BoxError> {
//! // In production the key comes from a secrets manager or the environment.
//! let k1 = EncryptionKey::from_base64("2026-01", "bm90IGEgcmVhbCBrZXksIG9ubHkgYW4gZXhhbXBsZSE=")?;
//! let store = EncryptedStore::new(MemoryStore::new(), Keyring::new(k1.clone()));
//!
//! let key = Credential::client_credentials(Provider::standard("https://auth.example.com/token"), "app", "s")
//!     .subject("alice")
//!     .key();
//! store.save(&key, &StoredTokens::new().with_refresh_token(RefreshToken::new("rt-alice"))).await?;
//!
//! // The inner store holds ciphertext only.
//! let raw = store.get_ref().load(&key).await?.unwrap().refresh_token.unwrap();
//! assert!(raw.secret().starts_with("v1.2026-01."));
//! assert!(!raw.secret().contains("rt-alice"));
//!
//! // Rotation: a new current key, the old one kept for reads.
//! let k2 = EncryptionKey::from_base64("2026-07", "YW5vdGhlciBleGFtcGxlIGtleSwgMzIgYnl0ZXMuLi4=")?;
//! let rotated = EncryptedStore::new(store.into_inner(), Keyring::new(k2).with_old_key(k1)?);
//! let loaded = rotated.load(&key).await?.unwrap();
//! assert_eq!(loaded.refresh_token.unwrap().secret(), "rt-alice");
//! # Ok(()) }
//! ```

use std::{
    borrow::Cow,
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{
    alphabet,
    engine::{general_purpose::URL_SAFE_NO_PAD, DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    Engine as _,
};
use chacha20poly1305::{
    aead::{Aead, AeadInOut, KeyInit, Payload},
    XChaCha20Poly1305, XNonce,
};
use serde_json::json;
use zeroize::Zeroizing;

use super::{
    BoxFuture, InnerLease, Lease, LeaseSettings, RefreshCoordination, StoreError, StoreErrorKind,
    StoreOperation, StoredTokens, TokenStore,
};
use crate::{
    secret::{AccessToken, RefreshToken},
    CredentialKey,
};

/// The envelope version written, and the only one read.
const VERSION: &str = "v1";
/// Names the associated data of this crate's values, so no other use of the same key
/// can produce a value that decrypts here.
const DOMAIN: &str = "tower-oauth2 encrypted token";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const MAX_ID_LEN: usize = 32;

// ===== keys =====

/// One 32-byte XChaCha20-Poly1305 key with its id, for a [`Keyring`].
///
/// `Debug` shows the id only. The key bytes live in the cipher, which overwrites them
/// with zeros when dropped; every clone is a copy that does the same.
#[derive(Clone)]
pub struct EncryptionKey {
    id: Box<str>,
    cipher: XChaCha20Poly1305,
}

impl EncryptionKey {
    /// A key from its 32 raw bytes. `id` is 1 to 32 ASCII letters, digits, `-` or `_`,
    /// written in the clear in every value the key encrypts: name keys by date or
    /// number, never by anything secret.
    ///
    /// # Errors
    ///
    /// [`EncryptionKeyError::InvalidId`] or [`EncryptionKeyError::WrongLength`]; neither
    /// quotes what it was given.
    pub fn from_bytes(id: impl Into<String>, bytes: &[u8]) -> Result<Self, EncryptionKeyError> {
        let id = id.into();
        if !is_key_id(&id) {
            return Err(EncryptionKeyError::InvalidId);
        }
        let cipher = XChaCha20Poly1305::new_from_slice(bytes)
            .map_err(|_| EncryptionKeyError::WrongLength(bytes.len()))?;
        Ok(Self {
            id: id.into_boxed_str(),
            cipher,
        })
    }

    /// A key from its 32 bytes in base64, as `openssl rand -base64 32` prints them:
    /// the standard or the URL-safe alphabet, with or without padding; whitespace
    /// around it (a file's final newline) is ignored.
    ///
    /// # Errors
    ///
    /// As [`from_bytes`](Self::from_bytes), and [`EncryptionKeyError::NotBase64`].
    pub fn from_base64(id: impl Into<String>, encoded: &str) -> Result<Self, EncryptionKeyError> {
        const LENIENT: GeneralPurposeConfig =
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
        const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
        const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);
        let id = id.into();
        if !is_key_id(&id) {
            return Err(EncryptionKeyError::InvalidId);
        }
        let encoded = encoded.trim_ascii();
        // The decoding error is dropped: it quotes the offending byte, part of a key.
        let decode = |engine: &GeneralPurpose| engine.decode(encoded).ok().map(Zeroizing::new);
        let bytes = decode(&STANDARD)
            .or_else(|| decode(&URL_SAFE))
            .ok_or(EncryptionKeyError::NotBase64)?;
        Self::from_bytes(id, &bytes)
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

// Written by hand: the id only, never a key byte.
impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("id", &self.id)
            .field("key", &format_args!("***"))
            .finish()
    }
}

fn is_key_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why an [`EncryptionKey`] or a [`Keyring`] could not be built. No variant quotes key
/// material, nor an id that was refused (it may be a key passed in the wrong argument).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptionKeyError {
    /// The id is not 1 to 32 ASCII letters, digits, `-` or `_`.
    #[error("an encryption key id is 1 to 32 ASCII letters, digits, `-` or `_`")]
    InvalidId,
    /// The key is not 32 bytes long; the length it had.
    #[error("an encryption key is 32 bytes, not {0}")]
    WrongLength(usize),
    /// The key's base64 does not decode, in either alphabet.
    #[error("the encryption key is not valid base64")]
    NotBase64,
    /// The keyring already holds a key with this id.
    #[error("the keyring already holds a key with id `{0}`")]
    DuplicateId(String),
}

/// The keys of an [`EncryptedStore`]: the current one, for saves, and older ones,
/// accepted for loads (see [rotation](self#keys-and-rotation)).
///
/// `Debug` shows the ids only.
#[derive(Clone)]
pub struct Keyring {
    current: EncryptionKey,
    old: Vec<EncryptionKey>,
}

impl Keyring {
    /// A keyring that encrypts with `current` and reads only what `current` wrote.
    pub fn new(current: EncryptionKey) -> Self {
        Self {
            current,
            old: Vec::new(),
        }
    }

    /// Also reads values written with `key`, an earlier key.
    ///
    /// # Errors
    ///
    /// [`EncryptionKeyError::DuplicateId`] if the keyring holds a key with the same id:
    /// a value names its key by id alone.
    pub fn with_old_key(mut self, key: EncryptionKey) -> Result<Self, EncryptionKeyError> {
        if self.key(&key.id).is_some() {
            return Err(EncryptionKeyError::DuplicateId(key.id.into()));
        }
        self.old.push(key);
        Ok(self)
    }

    /// The id of the key that saves encrypt with.
    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// The ids of every key accepted for loads, the current one first.
    pub fn ids(&self) -> impl Iterator<Item = &str> + '_ {
        std::iter::once(&self.current)
            .chain(&self.old)
            .map(|key| &*key.id)
    }

    fn key(&self, id: &str) -> Option<&EncryptionKey> {
        std::iter::once(&self.current)
            .chain(&self.old)
            .find(|key| &*key.id == id)
    }

    /// `plaintext`, encrypted with the current key into an envelope for `field` of `key`.
    fn seal(
        &self,
        key: &CredentialKey,
        field: Field,
        plaintext: &str,
        expires_at: Option<SystemTime>,
    ) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| SealError::Random)?;
        let aad = associated_data(key, &self.current.id, field, expires_at);
        let sealed = self
            .current
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::TooLong)?;
        let mut body = Vec::with_capacity(NONCE_LEN + sealed.len());
        body.extend_from_slice(&nonce);
        body.extend_from_slice(&sealed);
        Ok(format!(
            "{VERSION}.{}.{}",
            self.current.id,
            URL_SAFE_NO_PAD.encode(body)
        ))
    }

    /// The plaintext of `value`, read as `field` of `key`.
    fn open(
        &self,
        key: &CredentialKey,
        field: Field,
        value: &str,
        expires_at: Option<SystemTime>,
    ) -> Result<String, Unreadable> {
        let (version, rest) = value.split_once('.').ok_or(Unreadable::NotEncrypted)?;
        if version != VERSION {
            let numbered = version
                .strip_prefix('v')
                .is_some_and(|n| (1..=9).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()));
            return Err(match numbered {
                true => Unreadable::OtherVersion,
                false => Unreadable::NotEncrypted,
            });
        }
        let (id, body) = rest.split_once('.').ok_or(Unreadable::Malformed("no key id"))?;
        if !is_key_id(id) {
            return Err(Unreadable::Malformed("the key id is not one"));
        }
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| Unreadable::Malformed("not unpadded base64url"))?;
        if body.len() < NONCE_LEN + TAG_LEN {
            return Err(Unreadable::Malformed("too short for a nonce and a tag"));
        }
        let encryption_key = self
            .key(id)
            .ok_or_else(|| Unreadable::UnknownKey(id.to_owned()))?;
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| Unreadable::Malformed("a bad nonce"))?;
        let aad = associated_data(key, id, field, expires_at);
        let mut plaintext = Zeroizing::new(sealed.to_vec());
        encryption_key
            .cipher
            .decrypt_in_place(&nonce, &aad, &mut *plaintext)
            .map_err(|_| Unreadable::Unauthentic)?;
        // Copied once, to exactly its length; the buffer is zeroed when dropped.
        std::str::from_utf8(&plaintext)
            .map(str::to_owned)
            .map_err(|_| Unreadable::NotText)
    }
}

// Written by hand: ids only, never a key byte.
impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id)
            .field("old", &self.old.iter().map(|key| &key.id).collect::<Vec<_>>())
            .finish()
    }
}

// ===== values =====

/// The fields that are encrypted, each bound to its own name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    RefreshToken,
    AccessToken,
    Scope,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::RefreshToken => "refresh_token",
            Field::AccessToken => "access_token",
            Field::Scope => "scope",
        }
    }
}

/// What one value is bound to (see the [module docs](self#bound-to-its-credential-and-field)).
fn associated_data(key: &CredentialKey, id: &str, field: Field, expires_at: Option<SystemTime>) -> Vec<u8> {
    // Whole seconds, an expiry before 1970 as the epoch: what any store can give back.
    let expiry = match field {
        Field::AccessToken => {
            expires_at.map(|at| at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs())
        }
        Field::RefreshToken | Field::Scope => None,
    };
    // The key as `format::file_stem` encodes it: an array, so that no two keys encode
    // alike and the encoding does not depend on how objects order their fields.
    let canonical_key = json!([
        key.provider(),
        key.client_id(),
        key.grant(),
        key.scopes(),
        key.subject()
    ]);
    json!([DOMAIN, 1, id, canonical_key, field.name(), expiry])
        .to_string()
        .into_bytes()
}

/// Why a value could not be encrypted.
#[derive(Debug)]
enum SealError {
    Random,
    TooLong,
}

/// Why a value could not be decrypted. Every message is ours; the key id, quoted for
/// `UnknownKey`, has passed `is_key_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Unreadable {
    NotEncrypted,
    OtherVersion,
    Malformed(&'static str),
    UnknownKey(String),
    Unauthentic,
    NotText,
}

impl Unreadable {
    fn into_error(self, operation: StoreOperation, key: &CredentialKey, field: Field) -> StoreError {
        let (kind, why): (_, Cow<'static, str>) = match self {
            Unreadable::NotEncrypted => (
                StoreErrorKind::Corrupt,
                "not an encrypted value (saved without encryption?)".into(),
            ),
            Unreadable::OtherVersion => (
                StoreErrorKind::UnsupportedVersion,
                "an encrypted value of another version".into(),
            ),
            Unreadable::Malformed(what) => (
                StoreErrorKind::Corrupt,
                format!("a malformed encrypted value: {what}").into(),
            ),
            Unreadable::UnknownKey(id) => (
                StoreErrorKind::UnknownEncryptionKey,
                format!("encrypted with key id `{id}`").into(),
            ),
            Unreadable::Unauthentic => (
                StoreErrorKind::Corrupt,
                "failed authentication: changed, copied from another credential or field, or \
                 encrypted with other key bytes under the same id"
                    .into(),
            ),
            Unreadable::NotText => (StoreErrorKind::Corrupt, "decrypted to something not text".into()),
        };
        StoreError::keyed(operation, kind, key).with_detail(format!("{}: {why}", field.name()))
    }
}

// ===== the store =====

/// Wraps a store and encrypts every token before the inner store sees it (see the
/// [module docs](self) for the format, rotation, errors and limits).
///
/// It forwards the inner store's [coordination](TokenStore::coordination), so it can
/// wrap a store shared by replicas; fenced saves are encrypted like any other.
///
/// `Debug` shows the inner store and the key ids, never a key.
#[derive(Clone)]
pub struct EncryptedStore<S> {
    inner: S,
    keyring: Keyring,
}

impl<S> EncryptedStore<S> {
    /// Wraps `inner`: saves encrypt with the keyring's current key, loads accept any of
    /// its keys.
    pub fn new(inner: S, keyring: Keyring) -> Self {
        Self { inner, keyring }
    }

    /// The keyring.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The wrapped store, which holds ciphertext.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped store, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn seal(
        &self,
        operation: StoreOperation,
        key: &CredentialKey,
        tokens: &StoredTokens,
    ) -> Result<StoredTokens, StoreError> {
        let seal = |field: Field, plaintext: &str| {
            self.keyring
                .seal(key, field, plaintext, tokens.expires_at)
                .map_err(|err| {
                    let why = match err {
                        SealError::Random => "the operating system's random source failed",
                        SealError::TooLong => "too long to encrypt",
                    };
                    StoreError::keyed(operation, StoreErrorKind::Other, key)
                        .with_detail(format!("{}: {why}", field.name()))
                })
        };
        Ok(StoredTokens {
            refresh_token: match &tokens.refresh_token {
                Some(token) => Some(RefreshToken::new(seal(Field::RefreshToken, token.secret())?)),
                None => None,
            },
            access_token: match &tokens.access_token {
                Some(token) => Some(AccessToken::new(seal(Field::AccessToken, token.secret())?)),
                None => None,
            },
            expires_at: tokens.expires_at,
            scope: match &tokens.scope {
                Some(scope) => Some(seal(Field::Scope, scope)?),
                None => None,
            },
        })
    }

    fn open(&self, key: &CredentialKey, stored: StoredTokens) -> Result<StoredTokens, StoreError> {
        let open = |field: Field, value: &str| {
            self.keyring
                .open(key, field, value, stored.expires_at)
                .map_err(|why| why.into_error(StoreOperation::Load, key, field))
        };
        Ok(StoredTokens {
            refresh_token: match &stored.refresh_token {
                Some(value) => Some(RefreshToken::new(open(Field::RefreshToken, value.secret())?)),
                None => None,
            },
            access_token: match &stored.access_token {
                Some(value) => Some(AccessToken::new(open(Field::AccessToken, value.secret())?)),
                None => None,
            },
            expires_at: stored.expires_at,
            scope: match &stored.scope {
                Some(value) => Some(open(Field::Scope, value)?),
                None => None,
            },
        })
    }
}

// Written by hand: the keyring prints its ids only.
impl<S: fmt::Debug> fmt::Debug for EncryptedStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedStore")
            .field("inner", &self.inner)
            .field("keyring", &self.keyring)
            .finish()
    }
}

impl<S: TokenStore> TokenStore for EncryptedStore<S> {
    fn load<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Option<StoredTokens>, StoreError>> {
        Box::pin(async move {
            match self.inner.load(key).await? {
                Some(stored) => self.open(key, stored).map(Some),
                None => Ok(None),
            }
        })
    }

    fn save<'a>(
        &'a self,
        key: &'a CredentialKey,
        tokens: &'a StoredTokens,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let sealed = self.seal(StoreOperation::Save, key, tokens)?;
            self.inner.save(key, &sealed).await
        })
    }

    fn delete<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.delete(key)
    }

    // The inner store's lease operations, with fenced saves encrypted.
    fn coordination(&self) -> Option<&dyn RefreshCoordination> {
        self.inner
            .coordination()
            .map(|_| self as &dyn RefreshCoordination)
    }
}

impl<S: TokenStore> RefreshCoordination for EncryptedStore<S> {
    fn settings(&self) -> LeaseSettings {
        InnerLease(self.inner.coordination()).settings()
    }

    fn try_lease<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Option<Lease>, StoreError>> {
        InnerLease(self.inner.coordination()).try_lease(key)
    }

    fn save_fenced<'a>(
        &'a self,
        key: &'a CredentialKey,
        tokens: &'a StoredTokens,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let Some(inner) = self.inner.coordination() else {
                return Ok(false);
            };
            let sealed = self.seal(StoreOperation::Save, key, tokens)?;
            inner.save_fenced(key, &sealed, lease).await
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a CredentialKey,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        InnerLease(self.inner.coordination()).release(key, lease)
    }

    fn changed<'a>(
        &'a self,
        key: &'a CredentialKey,
        at_most: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        InnerLease(self.inner.coordination()).changed(key, at_most)
    }
}

#[cfg(test)]
mod tests {
    use proptest::{collection::vec, prelude::*, sample::Index};

    use super::*;
    use crate::{
        invariants::has_control,
        proptests::{config, hostile_string},
        Credential, Provider,
    };

    fn key_of(provider: &str, client_id: &str, scopes: &[String], subject: Option<&str>) -> CredentialKey {
        let provider = Provider::standard("https://auth.example.com/token").name(provider);
        let credential = Credential::client_credentials(provider, client_id, "client-secret")
            .scopes(scopes.iter().cloned());
        match subject {
            Some(subject) => credential.subject(subject),
            None => credential,
        }
        .key()
    }

    fn alice() -> CredentialKey {
        key_of("acme", "app", &["read".into()], Some("alice"))
    }

    fn ring(id: &str, byte: u8) -> Keyring {
        Keyring::new(EncryptionKey::from_bytes(id, &[byte; 32]).unwrap())
    }

    fn expiry() -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::new(1_900_000_000, 123_456_789))
    }

    // ===== the envelope =====

    #[test]
    fn associated_data_is_pinned() {
        // Changing it makes every stored value unreadable: this test must fail first,
        // and the envelope version must change with it.
        let aad = |field| String::from_utf8(associated_data(&alice(), "k1", field, expiry())).unwrap();
        assert_eq!(
            aad(Field::AccessToken),
            r#"["tower-oauth2 encrypted token",1,"k1",["acme","app","client_credentials",["read"],"alice"],"access_token",1900000000]"#
        );
        assert_eq!(
            aad(Field::RefreshToken),
            r#"["tower-oauth2 encrypted token",1,"k1",["acme","app","client_credentials",["read"],"alice"],"refresh_token",null]"#
        );
    }

    #[test]
    fn a_value_is_version_key_id_and_nonce_ciphertext_tag() {
        let keyring = ring("k1", 7);
        let sealed = keyring
            .seal(&alice(), Field::RefreshToken, "rt-secret", None)
            .unwrap();
        let body = sealed.strip_prefix("v1.k1.").unwrap();
        let bytes = URL_SAFE_NO_PAD.decode(body).unwrap();
        assert_eq!(bytes.len(), NONCE_LEN + "rt-secret".len() + TAG_LEN);
        // A fresh nonce each time: the same token never encrypts alike.
        let again = keyring
            .seal(&alice(), Field::RefreshToken, "rt-secret", None)
            .unwrap();
        assert_ne!(sealed, again);
        assert_eq!(
            keyring.open(&alice(), Field::RefreshToken, &again, None),
            Ok("rt-secret".to_owned())
        );
    }

    #[test]
    fn each_unreadable_value_has_its_reason() {
        let keyring = ring("k1", 7);
        let good = keyring.seal(&alice(), Field::Scope, "read", None).unwrap();
        let body = good.strip_prefix("v1.k1.").unwrap();
        let cases = [
            ("rt-plain-secret".to_owned(), Unreadable::NotEncrypted),
            ("x1.k1.AAAA".to_owned(), Unreadable::NotEncrypted),
            ("v.k1.AAAA".to_owned(), Unreadable::NotEncrypted),
            (format!("v2.k1.{body}"), Unreadable::OtherVersion),
            ("v1.k1".to_owned(), Unreadable::Malformed("no key id")),
            (
                format!("v1.k 1.{body}"),
                Unreadable::Malformed("the key id is not one"),
            ),
            (
                format!("v1..{body}"),
                Unreadable::Malformed("the key id is not one"),
            ),
            (
                format!("v1.k1.{body}="),
                Unreadable::Malformed("not unpadded base64url"),
            ),
            (
                "v1.k1.AAAA".to_owned(),
                Unreadable::Malformed("too short for a nonce and a tag"),
            ),
            (format!("v1.k2.{body}"), Unreadable::UnknownKey("k2".into())),
            (format!("v1.k1.{body}"), Unreadable::Unauthentic), // bound to the scope field
        ];
        for (value, expected) in cases {
            assert_eq!(
                keyring.open(&alice(), Field::RefreshToken, &value, None),
                Err(expected),
                "{value}"
            );
        }
        // Only a holder of the key could write this: bytes that are not UTF-8, sealed.
        let nonce = [9u8; NONCE_LEN];
        let aad = associated_data(&alice(), "k1", Field::Scope, None);
        let payload = Payload {
            msg: &[0xff, 0xfe],
            aad: &aad,
        };
        let sealed = keyring
            .current
            .cipher
            .encrypt(&XNonce::from(nonce), payload)
            .unwrap();
        let not_text = format!("v1.k1.{}", URL_SAFE_NO_PAD.encode([&nonce[..], &sealed].concat()));
        assert_eq!(
            keyring.open(&alice(), Field::Scope, &not_text, None),
            Err(Unreadable::NotText)
        );
    }

    #[test]
    fn errors_name_the_field_and_kind_and_quote_nothing_read() {
        let key = alice();
        let err =
            Unreadable::UnknownKey("k0".into()).into_error(StoreOperation::Load, &key, Field::AccessToken);
        assert_eq!(err.kind(), StoreErrorKind::UnknownEncryptionKey);
        assert!(
            err.to_string()
                .contains("access_token: encrypted with key id `k0`"),
            "{err}"
        );
        let keyring = ring("k1", 7);
        let err = keyring
            .open(&key, Field::RefreshToken, "rt-plain-secret", None)
            .unwrap_err()
            .into_error(StoreOperation::Load, &key, Field::RefreshToken);
        assert_eq!(err.kind(), StoreErrorKind::Corrupt);
        assert!(!err.to_string().contains("rt-plain-secret"), "{err}");
        assert!(
            err.to_string().contains("refresh_token: not an encrypted value"),
            "{err}"
        );
    }

    // ===== keys =====

    #[test]
    fn key_ids_are_short_and_plain() {
        for id in ["k1", "2026-07", "a_b", &"x".repeat(32)] {
            assert!(EncryptionKey::from_bytes(id, &[1; 32]).is_ok(), "{id}");
        }
        for id in ["", "k.1", "k 1", "clé", "k\n", &"x".repeat(33)] {
            assert_eq!(
                EncryptionKey::from_bytes(id, &[1; 32]).unwrap_err(),
                EncryptionKeyError::InvalidId,
                "{id:?}"
            );
        }
    }

    // ===== properties =====

    fn credential_key() -> BoxedStrategy<CredentialKey> {
        (
            hostile_string(),
            hostile_string(),
            vec("[a-z:/.]{1,12}", 0..3),
            prop::option::of(hostile_string()),
        )
            .prop_map(|(provider, client_id, scopes, subject)| {
                key_of(&provider, &client_id, &scopes, subject.as_deref())
            })
            .boxed()
    }

    fn field() -> BoxedStrategy<Field> {
        prop::sample::select(vec![Field::RefreshToken, Field::AccessToken, Field::Scope]).boxed()
    }

    fn wall_time() -> BoxedStrategy<Option<SystemTime>> {
        prop::option::of((0u64..=i64::MAX as u64 / 2, 0u32..1_000_000_000))
            .prop_map(|at| at.map(|(secs, nanos)| UNIX_EPOCH + Duration::new(secs, nanos)))
            .boxed()
    }

    /// Values a store could hold where an envelope should be: anything, things that
    /// look like envelopes, and envelopes under a known id with any bytes inside.
    fn stored_value() -> BoxedStrategy<String> {
        prop_oneof![
            hostile_string(),
            hostile_string().prop_map(|rest| format!("v1.{rest}")),
            hostile_string().prop_map(|rest| format!("v1.k1.{rest}")),
            ("[a-zA-Z0-9_-]{0,40}", "[a-zA-Z0-9_=.-]{0,200}").prop_map(|(id, b)| format!("v1.{id}.{b}")),
            (
                prop::sample::select(vec!["k1", "k2", "k3"]),
                vec(any::<u8>(), 0..120)
            )
                .prop_map(|(id, bytes)| format!("v1.{id}.{}", URL_SAFE_NO_PAD.encode(bytes))),
        ]
        .boxed()
    }

    fn two_keys() -> Keyring {
        ring("k1", 1)
            .with_old_key(EncryptionKey::from_bytes("k2", &[2; 32]).unwrap())
            .unwrap()
    }

    proptest! {
        #![proptest_config(config(256))]

        #[test]
        fn any_value_round_trips(
            key in credential_key(),
            field in field(),
            plaintext in hostile_string(),
            expires_at in wall_time(),
        ) {
            let keyring = two_keys();
            let sealed = keyring.seal(&key, field, &plaintext, expires_at).unwrap();
            prop_assert_eq!(keyring.open(&key, field, &sealed, expires_at), Ok(plaintext));
        }

        #[test]
        fn anything_stored_is_a_typed_error_never_a_panic(
            key in credential_key(),
            field in field(),
            value in stored_value(),
            expires_at in wall_time(),
        ) {
            // No value here was sealed: each one fails (a forgery passing the tag would
            // take 2^128 tries), with our own words.
            let why = two_keys().open(&key, field, &value, expires_at).unwrap_err();
            let err = why.into_error(StoreOperation::Load, &key, field);
            prop_assert!(matches!(
                err.kind(),
                StoreErrorKind::Corrupt | StoreErrorKind::UnknownEncryptionKey | StoreErrorKind::UnsupportedVersion
            ));
            let detail = err.to_string();
            let detail = detail.rsplit_once(": ").map_or(detail.as_str(), |(_, d)| d);
            prop_assert!(!has_control(detail), "{:?}", detail);
        }

        #[test]
        fn any_change_to_a_value_is_refused(
            key in credential_key(),
            field in field(),
            plaintext in "sec_[A-Za-z0-9]{16}",
            at in any::<Index>(),
            with in prop::sample::select(b"vk0123.-_AZaz=/+ \n".to_vec()),
            cut in any::<bool>(),
        ) {
            let keyring = two_keys();
            let sealed = keyring.seal(&key, field, &plaintext, None).unwrap();
            let mut damaged = sealed.clone().into_bytes();
            let at = at.index(damaged.len());
            match cut {
                true => damaged.truncate(at),
                false => damaged[at] = with,
            }
            let damaged = String::from_utf8(damaged).unwrap();
            prop_assume!(damaged != sealed);
            let why = keyring.open(&key, field, &damaged, None).unwrap_err();
            let message = why.into_error(StoreOperation::Load, &key, field).to_string();
            prop_assert!(!message.contains(&plaintext), "{}", message);
        }
    }
}
