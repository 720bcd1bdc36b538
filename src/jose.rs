//! Signing keys for DPoP proofs (RFC 9449) and JWT client assertions (RFC 7523), and
//! the compact JWS both are sent as (RFC 7515 §7.1). Feature `jose`.
//!
//! A [`SigningKey`] is an asymmetric private key: generated here (ES256, EdDSA), or
//! loaded from a PEM file (PKCS #8, or the PKCS #1 and SEC 1 forms OpenSSL writes) or a
//! private JWK (RFC 7517). Signing is done by *ring*, which rustls already brings into most
//! builds, whose P-256, Ed25519 and RSA code comes from BoringSSL with its long audit
//! history, and which signs ES256 in tens of microseconds (the benches measure it).
//! The private key never leaves the type: `Debug` shows the algorithm, the key id and
//! the public key's thumbprint, and [`SigningKey::public_jwk`] is what a server is
//! given to register the client or bind tokens to.
//!
//! ```
//! use tower_oauth2::jose::{SigningAlgorithm, SigningKey};
//!
//! let key = SigningKey::generate(SigningAlgorithm::Es256)?.with_key_id("2026-12");
//! assert_eq!(key.algorithm(), SigningAlgorithm::Es256);
//! assert_eq!(key.key_id(), Some("2026-12"));
//! // The public half, to register at the authorization server.
//! let public = key.public_jwk();
//! assert!(public.contains(r#""kty":"EC""#) && !public.contains(r#""d""#));
//! // RFC 7638: what a DPoP-bound token's `cnf.jkt` names.
//! assert_eq!(key.thumbprint().len(), 43);
//! # Ok::<(), tower_oauth2::jose::KeyError>(())
//! ```

use std::{fmt, sync::Arc, time::SystemTime};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine as _};
use ring::{
    hmac,
    rand::{SecureRandom, SystemRandom},
    rsa::{KeyPairComponents, PublicKeyComponents},
    signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair},
};
use rustls_pki_types::{pem::PemObject, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// An asymmetric JWS algorithm (RFC 7518 §3.1, RFC 8037 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SigningAlgorithm {
    /// ECDSA over P-256 with SHA-256: small keys and proofs, fast to sign. The default.
    Es256,
    /// Ed25519 (RFC 8037).
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256. RSA keys are loaded, never generated here.
    Rs256,
    /// RSASSA-PSS with SHA-256 (FAPI 2.0 allows it where RS256 is not).
    Ps256,
}

impl SigningAlgorithm {
    /// The `alg` value of a JWS header.
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlgorithm::Es256 => "ES256",
            SigningAlgorithm::EdDsa => "EdDSA",
            SigningAlgorithm::Rs256 => "RS256",
            SigningAlgorithm::Ps256 => "PS256",
        }
    }

    /// The algorithm a JWS `alg` value names, if it is one of these.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "ES256" => SigningAlgorithm::Es256,
            "EdDSA" => SigningAlgorithm::EdDsa,
            "RS256" => SigningAlgorithm::Rs256,
            "PS256" => SigningAlgorithm::Ps256,
            _ => return None,
        })
    }
}

impl fmt::Display for SigningAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An HMAC JWS algorithm (RFC 7518 §3.2), for `client_secret_jwt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HmacAlgorithm {
    /// HMAC with SHA-256.
    Hs256,
    /// HMAC with SHA-384.
    Hs384,
    /// HMAC with SHA-512.
    Hs512,
}

impl HmacAlgorithm {
    /// The `alg` value of a JWS header.
    pub fn as_str(self) -> &'static str {
        match self {
            HmacAlgorithm::Hs256 => "HS256",
            HmacAlgorithm::Hs384 => "HS384",
            HmacAlgorithm::Hs512 => "HS512",
        }
    }

    fn ring(self) -> hmac::Algorithm {
        match self {
            HmacAlgorithm::Hs256 => hmac::HMAC_SHA256,
            HmacAlgorithm::Hs384 => hmac::HMAC_SHA384,
            HmacAlgorithm::Hs512 => hmac::HMAC_SHA512,
        }
    }
}

impl fmt::Display for HmacAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key could not be generated, loaded or used. The message names what is wrong with
/// it, never any of its material.
#[derive(Debug, Clone, thiserror::Error)]
#[error("signing key: {reason}")]
pub struct KeyError {
    kind: KeyErrorKind,
    reason: &'static str,
}

/// What kind of problem a [`KeyError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyErrorKind {
    /// The PEM or JWK text could not be read as a private key.
    Malformed,
    /// The key is of a type or curve, or asks for an algorithm, this crate does not sign with.
    Unsupported,
    /// The key and the algorithm asked for do not go together.
    Mismatch,
    /// The system's random number generator or the signer failed.
    Signing,
}

impl KeyError {
    fn new(kind: KeyErrorKind, reason: &'static str) -> Self {
        Self { kind, reason }
    }

    /// What kind of problem this is.
    pub fn kind(&self) -> KeyErrorKind {
        self.kind
    }
}

fn malformed(reason: &'static str) -> KeyError {
    KeyError::new(KeyErrorKind::Malformed, reason)
}

enum Pair {
    Ecdsa(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

struct Inner {
    algorithm: SigningAlgorithm,
    key_id: Option<Box<str>>,
    pair: Arc<Pair>,
    /// The public JWK with only its required members, in lexicographic order: the
    /// thumbprint's input (RFC 7638 §3.2) and the `jwk` a DPoP proof carries.
    public_members: Box<str>,
    thumbprint: Box<str>,
}

/// An asymmetric private key that signs JWS: DPoP proofs and `private_key_jwt`
/// assertions. Cheap to clone (shared).
///
/// See the [module documentation](self).
#[derive(Clone)]
pub struct SigningKey {
    inner: Arc<Inner>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("algorithm", &self.inner.algorithm)
            .field("key_id", &self.inner.key_id)
            .field("thumbprint", &self.inner.thumbprint)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key for `algorithm`: ES256 or EdDSA. RSA keys are not generated
    /// here (generation is slow and best left to the tools that manage such keys): load
    /// them with [`from_pem`](Self::from_pem) or [`from_jwk`](Self::from_jwk).
    pub fn generate(algorithm: SigningAlgorithm) -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let failed = || KeyError::new(KeyErrorKind::Signing, "the system random number generator failed");
        let pair = match algorithm {
            SigningAlgorithm::Es256 => {
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| failed())?;
                Pair::Ecdsa(
                    EcdsaKeyPair::from_pkcs8(
                        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                        pkcs8.as_ref(),
                        &rng,
                    )
                    .map_err(|_| failed())?,
                )
            }
            SigningAlgorithm::EdDsa => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| failed())?;
                Pair::Ed25519(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| failed())?)
            }
            SigningAlgorithm::Rs256 | SigningAlgorithm::Ps256 => {
                return Err(KeyError::new(
                    KeyErrorKind::Unsupported,
                    "RSA keys are not generated here; load one from PEM or JWK",
                ))
            }
        };
        Ok(Self::from_pair(pair, algorithm, None))
    }

    /// A private key from PEM text: `PRIVATE KEY` (PKCS #8: P-256, Ed25519 or RSA),
    /// `EC PRIVATE KEY` (SEC 1, P-256) or `RSA PRIVATE KEY` (PKCS #1). The algorithm is
    /// the key's natural one (ES256, EdDSA, RS256); for PS256 with an RSA key, follow with
    /// [`with_algorithm`](Self::with_algorithm).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
            malformed("no PEM private key (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY) found")
        })?;
        let rng = SystemRandom::new();
        match der {
            PrivateKeyDer::Pkcs8(der) => {
                let der = der.secret_pkcs8_der();
                if let Ok(pair) =
                    EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
                {
                    return Ok(Self::from_pair(Pair::Ecdsa(pair), SigningAlgorithm::Es256, None));
                }
                if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
                    return Ok(Self::from_pair(
                        Pair::Ed25519(pair),
                        SigningAlgorithm::EdDsa,
                        None,
                    ));
                }
                RsaKeyPair::from_pkcs8(der)
                    .map(|pair| Self::from_pair(Pair::Rsa(pair), SigningAlgorithm::Rs256, None))
                    .map_err(|_| {
                        KeyError::new(
                            KeyErrorKind::Unsupported,
                            "the PKCS #8 key is not a P-256, Ed25519 or RSA (2048 to 8192 bits) private key",
                        )
                    })
            }
            PrivateKeyDer::Pkcs1(der) => RsaKeyPair::from_der(der.secret_pkcs1_der())
                .map(|pair| Self::from_pair(Pair::Rsa(pair), SigningAlgorithm::Rs256, None))
                .map_err(|_| malformed("the RSA PRIVATE KEY is not a usable RSA key (2048 to 8192 bits)")),
            PrivateKeyDer::Sec1(der) => {
                let pkcs8 = sec1_p256_to_pkcs8(der.secret_sec1_der());
                EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
                    .map(|pair| Self::from_pair(Pair::Ecdsa(pair), SigningAlgorithm::Es256, None))
                    .map_err(|_| {
                        KeyError::new(
                            KeyErrorKind::Unsupported,
                            "the EC PRIVATE KEY is not a P-256 key with its public key",
                        )
                    })
            }
            _ => Err(KeyError::new(
                KeyErrorKind::Unsupported,
                "unknown private key format",
            )),
        }
    }

    /// A private key from a JWK (RFC 7517): `EC` on `P-256`, `OKP` on `Ed25519`, or
    /// `RSA` with its CRT members. The JWK's `kid` becomes the key id, and its `alg`,
    /// when present, the algorithm.
    pub fn from_jwk(jwk: &str) -> Result<Self, KeyError> {
        let value: serde_json::Value =
            serde_json::from_str(jwk).map_err(|_| malformed("the JWK is not a JSON object"))?;
        let object = value
            .as_object()
            .ok_or_else(|| malformed("the JWK is not a JSON object"))?;
        let text = |name: &str| object.get(name).and_then(serde_json::Value::as_str);
        let bytes = |name: &'static str| -> Result<Vec<u8>, KeyError> {
            let value =
                text(name).ok_or_else(|| malformed("the JWK lacks a member its key type requires"))?;
            B64.decode(value)
                .map_err(|_| malformed("a JWK member is not base64url without padding"))
        };
        if text("d").is_none() {
            return Err(malformed("the JWK has no private part (`d`)"));
        }
        let rng = SystemRandom::new();
        let rejected = |_| malformed("the JWK's members do not form a valid key pair");
        let (pair, natural) = match (text("kty"), text("crv")) {
            (Some("EC"), Some("P-256")) => {
                let mut public = vec![4u8];
                public.extend(bytes("x")?);
                public.extend(bytes("y")?);
                let pair = EcdsaKeyPair::from_private_key_and_public_key(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &bytes("d")?,
                    &public,
                    &rng,
                )
                .map_err(rejected)?;
                (Pair::Ecdsa(pair), SigningAlgorithm::Es256)
            }
            (Some("OKP"), Some("Ed25519")) => {
                let pair =
                    Ed25519KeyPair::from_seed_and_public_key(&bytes("d")?, &bytes("x")?).map_err(rejected)?;
                (Pair::Ed25519(pair), SigningAlgorithm::EdDsa)
            }
            (Some("RSA"), _) => {
                let components = KeyPairComponents {
                    public_key: PublicKeyComponents {
                        n: bytes("n")?,
                        e: bytes("e")?,
                    },
                    d: bytes("d")?,
                    p: bytes("p")?,
                    q: bytes("q")?,
                    dP: bytes("dp")?,
                    dQ: bytes("dq")?,
                    qInv: bytes("qi")?,
                };
                let pair = RsaKeyPair::from_components(&components).map_err(rejected)?;
                (Pair::Rsa(pair), SigningAlgorithm::Rs256)
            }
            _ => {
                return Err(KeyError::new(
                    KeyErrorKind::Unsupported,
                    "the JWK is not an EC P-256, OKP Ed25519 or RSA key",
                ))
            }
        };
        let key = Self::from_pair(pair, natural, text("kid").map(Into::into));
        match text("alg") {
            None => Ok(key),
            Some(alg) => {
                let algorithm = SigningAlgorithm::from_name(alg).ok_or_else(|| {
                    KeyError::new(
                        KeyErrorKind::Unsupported,
                        "the JWK's `alg` is not ES256, EdDSA, RS256 or PS256",
                    )
                })?;
                key.with_algorithm(algorithm)
            }
        }
    }

    fn from_pair(pair: Pair, algorithm: SigningAlgorithm, key_id: Option<Box<str>>) -> Self {
        let public_members = public_members(&pair);
        let thumbprint = B64
            .encode(Sha256::digest(public_members.as_bytes()))
            .into_boxed_str();
        Self {
            inner: Arc::new(Inner {
                algorithm,
                key_id,
                pair: Arc::new(pair),
                public_members,
                thumbprint,
            }),
        }
    }

    /// The same key, named `key_id` (the JWS `kid` header, which tells a server holding
    /// several of the client's keys which one signed).
    pub fn with_key_id(self, key_id: impl Into<String>) -> Self {
        self.rebuild(|inner| inner.key_id = Some(key_id.into().into_boxed_str()))
    }

    /// The same key, signing with `algorithm`: PS256 instead of RS256 for an RSA key.
    /// An algorithm the key cannot sign with is a [`KeyErrorKind::Mismatch`].
    pub fn with_algorithm(self, algorithm: SigningAlgorithm) -> Result<Self, KeyError> {
        let fits = matches!(
            (&*self.inner.pair, algorithm),
            (Pair::Ecdsa(_), SigningAlgorithm::Es256)
                | (Pair::Ed25519(_), SigningAlgorithm::EdDsa)
                | (Pair::Rsa(_), SigningAlgorithm::Rs256 | SigningAlgorithm::Ps256)
        );
        if !fits {
            return Err(KeyError::new(
                KeyErrorKind::Mismatch,
                "the key cannot sign with that algorithm",
            ));
        }
        Ok(self.rebuild(|inner| inner.algorithm = algorithm))
    }

    fn rebuild(self, change: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Inner {
            algorithm: self.inner.algorithm,
            key_id: self.inner.key_id.clone(),
            pair: self.inner.pair.clone(),
            public_members: self.inner.public_members.clone(),
            thumbprint: self.inner.thumbprint.clone(),
        };
        change(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> SigningAlgorithm {
        self.inner.algorithm
    }

    /// The key id sent as the JWS `kid`, if the key has one.
    pub fn key_id(&self) -> Option<&str> {
        self.inner.key_id.as_deref()
    }

    /// The public key as a JWK, with `kid` and `alg` when known: what the authorization
    /// server is given to register a `private_key_jwt` client.
    pub fn public_jwk(&self) -> String {
        let mut members = self.inner.public_members.to_string();
        members.pop(); // the closing brace
        members.push_str(r#","alg":"#);
        members.push_str(&json_string(self.inner.algorithm.as_str()));
        if let Some(kid) = &self.inner.key_id {
            members.push_str(r#","kid":"#);
            members.push_str(&json_string(kid));
        }
        members.push('}');
        members
    }

    /// The JWK thumbprint of the public key (RFC 7638, SHA-256, base64url): the `jkt` a
    /// server binds DPoP tokens to.
    pub fn thumbprint(&self) -> &str {
        &self.inner.thumbprint
    }

    /// The public JWK with only its required members, as a DPoP proof's `jwk` header
    /// carries it.
    pub(crate) fn public_members(&self) -> &str {
        &self.inner.public_members
    }

    /// The signature of `input` under this key, in JWS form (RFC 7518 §3.4 for ES256:
    /// `r || s`, not DER).
    pub(crate) fn sign(&self, input: &[u8]) -> Result<Vec<u8>, KeyError> {
        let failed = |_| KeyError::new(KeyErrorKind::Signing, "signing failed");
        match &*self.inner.pair {
            Pair::Ecdsa(pair) => Ok(pair
                .sign(&SystemRandom::new(), input)
                .map_err(failed)?
                .as_ref()
                .to_vec()),
            Pair::Ed25519(pair) => Ok(pair.sign(input).as_ref().to_vec()),
            Pair::Rsa(pair) => {
                let padding: &'static dyn signature::RsaEncoding = match self.inner.algorithm {
                    SigningAlgorithm::Ps256 => &signature::RSA_PSS_SHA256,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut out = vec![0; pair.public().modulus_len()];
                pair.sign(padding, &SystemRandom::new(), input, &mut out)
                    .map_err(failed)?;
                Ok(out)
            }
        }
    }

    /// A compact JWS of `claims` (a JSON object) under this key, with the already
    /// encoded protected header `header` (see [`JwsHeader`]).
    pub(crate) fn compact(&self, header: &JwsHeader, claims: &[u8]) -> Result<String, KeyError> {
        let mut jws = String::with_capacity(header.encoded.len() + claims.len() * 4 / 3 + 2 + 352);
        jws.push_str(&header.encoded);
        jws.push('.');
        B64.encode_string(claims, &mut jws);
        let signature = self.sign(jws.as_bytes())?;
        jws.push('.');
        B64.encode_string(signature, &mut jws);
        Ok(jws)
    }
}

/// A JWS protected header, encoded once and reused for every JWS of one key and purpose
/// (it carries no per-message value).
#[derive(Clone)]
pub(crate) struct JwsHeader {
    encoded: Box<str>,
}

impl JwsHeader {
    /// `{"alg":…,"typ":…[,"kid":…][,"jwk":…]}`: with `embed_jwk`, the public key itself
    /// (a DPoP proof); otherwise its `kid` when it has one (a client assertion).
    pub(crate) fn for_key(key: &SigningKey, typ: &str, embed_jwk: bool) -> Self {
        let mut json = format!(
            r#"{{"alg":"{}","typ":{}"#,
            key.algorithm().as_str(),
            json_string(typ)
        );
        if embed_jwk {
            json.push_str(r#","jwk":"#);
            json.push_str(key.public_members());
        } else if let Some(kid) = key.key_id() {
            json.push_str(r#","kid":"#);
            json.push_str(&json_string(kid));
        }
        json.push('}');
        Self {
            encoded: B64.encode(json).into_boxed_str(),
        }
    }

    /// `{"alg":…,"typ":…}` for an HMAC JWS.
    pub(crate) fn for_hmac(algorithm: HmacAlgorithm, typ: &str) -> Self {
        let json = format!(r#"{{"alg":"{}","typ":{}}}"#, algorithm.as_str(), json_string(typ));
        Self {
            encoded: B64.encode(json).into_boxed_str(),
        }
    }
}

impl fmt::Debug for JwsHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JwsHeader")
    }
}

/// A compact JWS of `claims` MACed with `secret` (`client_secret_jwt`).
pub(crate) fn hmac_compact(
    algorithm: HmacAlgorithm,
    secret: &[u8],
    header: &JwsHeader,
    claims: &[u8],
) -> String {
    let mut jws = String::with_capacity(header.encoded.len() + claims.len() * 4 / 3 + 2 + 88);
    jws.push_str(&header.encoded);
    jws.push('.');
    B64.encode_string(claims, &mut jws);
    let tag = hmac::sign(&hmac::Key::new(algorithm.ring(), secret), jws.as_bytes());
    jws.push('.');
    B64.encode_string(tag, &mut jws);
    jws
}

/// A fresh `jti`: 128 random bits, base64url (22 characters). Falls back to the time and
/// a process counter if the system's random number generator fails, so that a `jti` is
/// unique even then.
pub(crate) fn unique_id() -> String {
    let mut bytes = [0u8; 16];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = crate::store::wall_clock_now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes[..8].copy_from_slice(&nanos.to_be_bytes());
        bytes[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    }
    B64.encode(bytes)
}

/// Seconds since the Unix epoch, for `iat` and `exp` (wall-clock time: the server
/// compares them with its own clock).
pub(crate) fn unix_now() -> u64 {
    crate::store::wall_clock_now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// base64url without padding, as JWS and `ath` use it.
pub(crate) fn base64url(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// `value` as a JSON string literal.
pub(crate) fn json_string(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

fn public_members(pair: &Pair) -> Box<str> {
    match pair {
        Pair::Ecdsa(pair) => {
            // An uncompressed point: 0x04, then x and y, 32 bytes each.
            let point = pair.public_key().as_ref();
            format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                B64.encode(&point[1..33]),
                B64.encode(&point[33..65])
            )
        }
        Pair::Ed25519(pair) => format!(
            r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
            B64.encode(pair.public_key().as_ref())
        ),
        Pair::Rsa(pair) => {
            let components: PublicKeyComponents<Vec<u8>> = pair.public().into();
            format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                B64.encode(&components.e),
                B64.encode(&components.n)
            )
        }
    }
    .into_boxed_str()
}

/// Wraps a SEC 1 `ECPrivateKey` of a P-256 key in the PKCS #8 structure *ring* reads
/// (RFC 5208 §5 with the algorithm identifier of RFC 5480 §2.1.1).
fn sec1_p256_to_pkcs8(sec1: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { id-ecPublicKey, prime256v1 }
    const ALGORITHM: &[u8] = &[
        0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
        0x3d, 0x03, 0x01, 0x07,
    ];
    let mut body = vec![0x02, 0x01, 0x00]; // version 0
    body.extend_from_slice(ALGORITHM);
    body.push(0x04);
    der_length(sec1.len(), &mut body);
    body.extend_from_slice(sec1);
    let mut out = vec![0x30];
    der_length(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

fn der_length(len: usize, out: &mut Vec<u8>) {
    match len {
        0..=0x7f => out.push(len as u8),
        0x80..=0xff => out.extend_from_slice(&[0x81, len as u8]),
        _ => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_sign_and_show_nothing_private() {
        for algorithm in [SigningAlgorithm::Es256, SigningAlgorithm::EdDsa] {
            let key = SigningKey::generate(algorithm).unwrap();
            let header = JwsHeader::for_key(&key, "dpop+jwt", true);
            let jws = key.compact(&header, br#"{"a":1}"#).unwrap();
            let parts: Vec<&str> = jws.split('.').collect();
            assert_eq!(parts.len(), 3);
            let header_json: serde_json::Value =
                serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
            assert_eq!(header_json["alg"], algorithm.as_str());
            assert_eq!(header_json["typ"], "dpop+jwt");
            assert!(header_json["jwk"].get("d").is_none());
            let signature = B64.decode(parts[2]).unwrap();
            assert_eq!(signature.len(), 64);
            // Verified with ring's verifier, over the signing input.
            let public = match &*key.inner.pair {
                Pair::Ecdsa(pair) => pair.public_key().as_ref().to_vec(),
                Pair::Ed25519(pair) => pair.public_key().as_ref().to_vec(),
                Pair::Rsa(_) => unreachable!(),
            };
            let verifier: &dyn signature::VerificationAlgorithm = match algorithm {
                SigningAlgorithm::Es256 => &signature::ECDSA_P256_SHA256_FIXED,
                _ => &signature::ED25519,
            };
            let input = format!("{}.{}", parts[0], parts[1]);
            signature::UnparsedPublicKey::new(verifier, public)
                .verify(input.as_bytes(), &signature)
                .unwrap();
        }
    }

    #[test]
    fn rsa_is_never_generated() {
        let err = SigningKey::generate(SigningAlgorithm::Rs256).unwrap_err();
        assert_eq!(err.kind(), KeyErrorKind::Unsupported);
    }

    #[test]
    fn the_thumbprint_follows_rfc_7638() {
        // RFC 7638 §3.1's example key, with a made-up private exponent: only the public
        // members enter the thumbprint, so it is the RFC's.
        let members = r#"{"e":"AQAB","kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"}"#;
        assert_eq!(
            B64.encode(Sha256::digest(members.as_bytes())),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    /// Every key form OpenSSL writes, and the JWKs of the same keys, give the thumbprint
    /// an independent implementation computed.
    #[test]
    fn pem_and_jwk_forms_of_one_key_are_the_same_key() {
        let thumbprints: serde_json::Value = serde_json::from_str(&fixture("thumbprints.json")).unwrap();
        for (pems, jwk, algorithm, kid) in [
            (
                &["ec-p256.pem", "ec-p256-sec1.pem"][..],
                "ec-p256.jwk",
                SigningAlgorithm::Es256,
                "ec-1",
            ),
            (
                &["ed25519.pem"][..],
                "ed25519.jwk",
                SigningAlgorithm::EdDsa,
                "ed-1",
            ),
            (
                &["rsa-2048.pem", "rsa-2048-pkcs1.pem"][..],
                "rsa-2048.jwk",
                SigningAlgorithm::Ps256,
                "rsa-1",
            ),
        ] {
            let expected = thumbprints[jwk.trim_end_matches(".jwk")].as_str().unwrap();
            let from_jwk = SigningKey::from_jwk(&fixture(jwk)).unwrap();
            assert_eq!(from_jwk.thumbprint(), expected, "{jwk}");
            assert_eq!(from_jwk.algorithm(), algorithm, "{jwk}: the JWK's alg wins");
            assert_eq!(from_jwk.key_id(), Some(kid));
            for pem in pems {
                let key = SigningKey::from_pem(&fixture(pem)).unwrap();
                assert_eq!(key.thumbprint(), expected, "{pem}");
                assert_eq!(key.key_id(), None);
                let key = key.with_algorithm(algorithm).unwrap().with_key_id("k");
                let jws = key
                    .compact(&JwsHeader::for_key(&key, "JWT", false), b"{}")
                    .unwrap();
                let header: serde_json::Value =
                    serde_json::from_slice(&B64.decode(jws.split('.').next().unwrap()).unwrap()).unwrap();
                assert_eq!(
                    header,
                    serde_json::json!({"alg": algorithm.as_str(), "typ": "JWT", "kid": "k"})
                );
            }
            let public: serde_json::Value = serde_json::from_str(&from_jwk.public_jwk()).unwrap();
            assert!(public.get("d").is_none() && public.get("p").is_none());
            assert_eq!(public["kid"], kid);
        }
    }

    #[test]
    fn keys_of_other_curves_or_algorithms_are_refused() {
        let err = SigningKey::from_pem(&fixture("ec-p384.pem")).unwrap_err();
        assert_eq!(err.kind(), KeyErrorKind::Unsupported);
        let err = SigningKey::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .unwrap_err();
        assert_eq!(err.kind(), KeyErrorKind::Malformed);
        let ec = SigningKey::from_pem(&fixture("ec-p256.pem")).unwrap();
        assert_eq!(
            ec.with_algorithm(SigningAlgorithm::Rs256).unwrap_err().kind(),
            KeyErrorKind::Mismatch
        );
        let debug = format!("{:?}", SigningKey::from_jwk(&fixture("ec-p256.jwk")).unwrap());
        let private: serde_json::Value = serde_json::from_str(&fixture("ec-p256.jwk")).unwrap();
        assert!(!debug.contains(private["d"].as_str().unwrap()));
    }

    #[test]
    fn der_lengths_use_the_short_and_long_forms() {
        let der_length_of = |len| {
            let mut out = Vec::new();
            der_length(len, &mut out);
            out
        };
        assert_eq!(der_length_of(100), vec![100]);
        assert_eq!(der_length_of(200), vec![0x81, 200]);
        assert_eq!(der_length_of(300), vec![0x82, 1, 44]);
    }

    #[test]
    fn bad_jwks_are_typed_errors() {
        for (jwk, kind) in [
            ("not json", KeyErrorKind::Malformed),
            ("[]", KeyErrorKind::Malformed),
            (
                r#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#,
                KeyErrorKind::Malformed,
            ),
            (
                r#"{"kty":"EC","crv":"P-384","d":"AA","x":"AA","y":"AA"}"#,
                KeyErrorKind::Unsupported,
            ),
            (
                r#"{"kty":"EC","crv":"P-256","d":"!!","x":"AA","y":"AA"}"#,
                KeyErrorKind::Malformed,
            ),
            (
                r#"{"kty":"EC","crv":"P-256","d":"AA","x":"AA","y":"AA"}"#,
                KeyErrorKind::Malformed,
            ),
            (r#"{"kty":"oct","k":"AA","d":"AA"}"#, KeyErrorKind::Unsupported),
        ] {
            let err = SigningKey::from_jwk(jwk).unwrap_err();
            assert_eq!(err.kind(), kind, "{jwk}");
            assert!(!err.to_string().contains("AA"));
        }
    }

    #[test]
    fn hmac_jws_has_the_algorithms_length() {
        let header = JwsHeader::for_hmac(HmacAlgorithm::Hs512, "JWT");
        let jws = hmac_compact(HmacAlgorithm::Hs512, b"secret", &header, b"{}");
        let tag = B64.decode(jws.rsplit('.').next().unwrap()).unwrap();
        assert_eq!(tag.len(), 64);
        assert_ne!(unique_id(), unique_id());
        assert_eq!(unique_id().len(), 22);
    }
}
