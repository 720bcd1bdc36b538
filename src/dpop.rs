//! DPoP-bound tokens (RFC 9449). Feature `jose`.
//!
//! A credential given a [`DpopKey`] proves, on every request, that it holds the key its
//! tokens are bound to, so that a token copied out of a log or a proxy is worthless
//! without the key:
//!
//! - every token request (each grant, refreshes included) carries a `DPoP` proof, and the
//!   answer must say `token_type: DPoP`; a bearer token is refused as a malformed answer,
//!   so a DPoP-bound credential never presents a token as a bearer token;
//! - every API request carries `Authorization: DPoP <token>` and a proof made for it
//!   alone: its method (`htm`), its URL without query or fragment (`htu`), the time
//!   (`iat`), a random `jti`, and the token's hash (`ath`). A retry gets a proof of its own;
//! - a server that wants a nonce says so (`use_dpop_nonce`: a 400 from the token
//!   endpoint, a 401 with a `DPoP` challenge from an API) and sends one in `DPoP-Nonce`.
//!   The request is sent once more with it, within the one retry a request may have (a
//!   nonce demand answering a retry is given back as it is; being about the proof, it
//!   refreshes no token), and the latest nonce of each origin is remembered from every
//!   answer that carries one, successes included, so that a steady stream of requests
//!   needs no extra round trip.
//!
//! ```
//! use tower_oauth2::{dpop::DpopKey, Credential, Provider};
//!
//! let key = DpopKey::generate()?; // ES256; or DpopKey::new(SigningKey::from_pem(..)?)
//! let provider = Provider::standard("https://auth.example.com/token").api("https://api.example.com");
//! let credential = Credential::client_credentials(provider, "app", "secret").dpop(key.clone());
//! // Later, to move to a new key: tokens issued from then on are bound to it.
//! key.rotate(tower_oauth2::jose::SigningKey::generate(tower_oauth2::jose::SigningAlgorithm::EdDsa)?);
//! # let _ = credential;
//! # Ok::<(), tower_oauth2::jose::KeyError>(())
//! ```
//!
//! Nothing of a proof or of the key is ever printed: `Debug` shows the key's algorithm
//! and thumbprint, and proofs are marked sensitive header values.

use std::{fmt, fmt::Write as _, sync::Arc};

use arc_swap::ArcSwap;
use http::{header::WWW_AUTHENTICATE, HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use sha2::{Digest, Sha256};

use crate::jose::{
    base64url, json_string, unique_id, unix_now, JwsHeader, KeyError, SigningAlgorithm, SigningKey,
};

/// The `DPoP` request header: the proof.
pub(crate) const DPOP: HeaderName = HeaderName::from_static("dpop");
/// The `DPoP-Nonce` response header: the nonce the server wants in the next proof.
pub(crate) const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// How many origins' nonces a key remembers; the oldest is forgotten past this.
const MAX_ORIGINS: usize = 32;
/// The longest nonce remembered; a longer one is ignored (and the request goes without).
const MAX_NONCE_LEN: usize = 512;

/// The key a credential's tokens are bound to, and what it knows of the servers' nonces.
///
/// Clones share the key: [`rotate`](Self::rotate) on any clone changes it for every
/// credential given one. After a rotation, token requests prove the new key, so the next
/// token is bound to it; the token in use was bound to the old key, and an API that
/// checks the binding refuses it, which the layer answers as it answers any dead token
/// (one refresh, one retry).
///
/// See the [module documentation](self).
#[derive(Clone)]
pub struct DpopKey {
    binding: Arc<DpopBinding>,
}

impl DpopKey {
    /// Binds tokens to `key`.
    pub fn new(key: SigningKey) -> Self {
        Self {
            binding: Arc::new(DpopBinding {
                key: ArcSwap::from_pointee(ProofKey::of(key)),
                nonces: ArcSwap::from_pointee(Vec::new()),
            }),
        }
    }

    /// Binds tokens to a new random ES256 key, the algorithm servers support most widely.
    pub fn generate() -> Result<Self, KeyError> {
        SigningKey::generate(SigningAlgorithm::Es256).map(Self::new)
    }

    /// Proves `key` from now on, in every proof of every credential holding a clone.
    pub fn rotate(&self, key: SigningKey) {
        self.binding.key.store(Arc::new(ProofKey::of(key)));
    }

    /// The key proofs are signed with now.
    pub fn current(&self) -> SigningKey {
        self.binding.key.load().key.clone()
    }

    /// The current key's RFC 7638 thumbprint: the `jkt` the server binds tokens to.
    pub fn thumbprint(&self) -> String {
        self.binding.key.load().key.thumbprint().to_owned()
    }

    pub(crate) fn binding(&self) -> &Arc<DpopBinding> {
        &self.binding
    }
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.binding.key.load();
        f.debug_struct("DpopKey")
            .field("algorithm", &key.key.algorithm())
            .field("thumbprint", &key.key.thumbprint())
            .finish_non_exhaustive()
    }
}

/// A key and its proofs' header, encoded once.
struct ProofKey {
    key: SigningKey,
    header: JwsHeader,
}

impl ProofKey {
    fn of(key: SigningKey) -> Self {
        let header = JwsHeader::for_key(&key, "dpop+jwt", true);
        Self { key, header }
    }
}

/// What the request path holds of a [`DpopKey`].
pub(crate) struct DpopBinding {
    key: ArcSwap<ProofKey>,
    /// The latest nonce of each origin (`scheme://authority`), newest last. Read on
    /// every request without a lock; written only when a server sends a new nonce.
    nonces: ArcSwap<Vec<(Box<str>, Box<str>)>>,
}

impl fmt::Debug for DpopBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DpopBinding")
    }
}

/// Where a proof is for: its `htu`, and whose nonce it carries.
///
/// An API's nonces are remembered per origin; a token endpoint's per endpoint URL,
/// apart from its origin's: an authorization server and the API it protects often
/// share an origin, and each hands out nonces of its own.
pub(crate) struct ProofTarget {
    /// `scheme://authority/path`: the URL without query or fragment.
    pub(crate) htu: String,
    /// The length of the nonce's key at the start of `htu`: `scheme://authority` for an
    /// API, the whole of it for a token endpoint.
    key_len: usize,
}

impl ProofTarget {
    /// The target of a request to `uri`, if it is absolute (routed requests are).
    pub(crate) fn of_uri(uri: &Uri) -> Option<Self> {
        let scheme = uri.scheme_str()?;
        let authority = uri.authority()?.as_str();
        let mut htu = String::with_capacity(scheme.len() + 3 + authority.len() + uri.path().len());
        htu.push_str(scheme);
        htu.push_str("://");
        htu.push_str(authority);
        let key_len = htu.len();
        // An absolute URL with an empty path names the root (RFC 3986 §6.2.3).
        htu.push_str(match uri.path() {
            "" => "/",
            path => path,
        });
        Some(Self { htu, key_len })
    }

    /// The target of a token request to `uri`.
    pub(crate) fn token_endpoint(uri: &Uri) -> Option<Self> {
        let mut target = Self::of_uri(uri)?;
        target.key_len = target.htu.len();
        Some(target)
    }

    /// The target of a request to `origin` (`scheme://authority`) and `path`.
    #[cfg(feature = "reqwest")]
    pub(crate) fn of_parts(origin: &str, path: &str) -> Self {
        Self {
            htu: format!("{origin}{path}"),
            key_len: origin.len(),
        }
    }

    /// What the server's nonces are remembered under: the origin of an API, the URL of
    /// a token endpoint.
    pub(crate) fn nonce_key(&self) -> &str {
        &self.htu[..self.key_len]
    }
}

impl DpopBinding {
    /// A proof for one request of `method` to `target`, for `access_token` (`ath`) when
    /// the request presents one, with the origin's latest nonce. `None` only if signing
    /// failed (the system's random number generator did): the request then goes without
    /// a proof, and the server refuses it.
    pub(crate) fn proof(
        &self,
        method: &str,
        target: &ProofTarget,
        access_token: Option<&[u8]>,
    ) -> Option<HeaderValue> {
        let mut claims = String::with_capacity(256);
        claims.push_str(r#"{"jti":""#);
        claims.push_str(&unique_id());
        claims.push_str(r#"","htm":"#);
        claims.push_str(&json_string(method));
        claims.push_str(r#","htu":"#);
        claims.push_str(&json_string(&target.htu));
        let _ = write!(claims, r#","iat":{}"#, unix_now());
        if let Some(token) = access_token {
            claims.push_str(r#","ath":""#);
            claims.push_str(&base64url(&Sha256::digest(token)));
            claims.push('"');
        }
        let nonces = self.nonces.load();
        if let Some((_, nonce)) = nonces.iter().find(|(key, _)| &**key == target.nonce_key()) {
            // Checked when remembered: NQCHAR only (RFC 9449 §8.1), so no escaping.
            claims.push_str(r#","nonce":""#);
            claims.push_str(nonce);
            claims.push('"');
        }
        drop(nonces);
        claims.push('}');
        let key = self.key.load();
        match key.key.compact(&key.header, claims.as_bytes()) {
            Ok(proof) => {
                let mut value = HeaderValue::try_from(proof).ok()?;
                value.set_sensitive(true);
                Some(value)
            }
            Err(err) => {
                tracing::warn!(error = %err, "a DPoP proof could not be signed; the request goes without one");
                None
            }
        }
    }

    /// Remembers the nonce an answer from `origin` carries, if any. Returns whether the
    /// answer carried a usable nonce.
    pub(crate) fn observe(&self, origin: &str, headers: &HeaderMap) -> bool {
        let Some(nonce) = headers.get(DPOP_NONCE).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        if nonce.is_empty() || nonce.len() > MAX_NONCE_LEN || !nonce.bytes().all(is_nqchar) {
            return false;
        }
        let current = self.nonces.load();
        if current.iter().any(|(o, n)| &**o == origin && &**n == nonce) {
            return true;
        }
        drop(current);
        self.nonces.rcu(|nonces| {
            let mut next: Vec<(Box<str>, Box<str>)> =
                nonces.iter().filter(|(o, _)| &**o != origin).cloned().collect();
            if next.len() >= MAX_ORIGINS {
                next.remove(0);
            }
            next.push((origin.into(), nonce.into()));
            next
        });
        true
    }
}

/// RFC 9449 §8.1: `nonce = 1*NQCHAR`, `NQCHAR = %x21 / %x23-5B / %x5D-7E`.
fn is_nqchar(byte: u8) -> bool {
    matches!(byte, 0x21 | 0x23..=0x5b | 0x5d..=0x7e)
}

/// Whether an API's answer asks for a DPoP nonce: 401 with a `DPoP` challenge whose
/// `error` is `use_dpop_nonce` (RFC 9449 §9).
pub(crate) fn is_nonce_challenge(status: StatusCode, headers: &HeaderMap) -> bool {
    status == StatusCode::UNAUTHORIZED
        && headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(challenges_nonce)
}

/// Whether a `WWW-Authenticate` value holds a `DPoP` challenge with
/// `error="use_dpop_nonce"`. Tolerant of case, spacing and other challenges around it.
fn challenges_nonce(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    lower.match_indices("dpop").any(|(at, _)| {
        let before = lower[..at].trim_end();
        let starts_challenge = before.is_empty() || before.ends_with(',');
        let after = &lower[at + 4..];
        if !starts_challenge || !after.starts_with([' ', '\t']) {
            return false;
        }
        // The challenge's parameters run until the next scheme; an `error` parameter
        // naming the nonce is enough.
        let params = after.split(" bearer ").next().unwrap_or(after);
        params.contains("error=\"use_dpop_nonce\"") || params.contains("error=use_dpop_nonce")
    })
}

/// Whether a token endpoint's error answer asks for a DPoP nonce (400 with `error`
/// `use_dpop_nonce`, RFC 9449 §8).
pub(crate) fn token_endpoint_wants_nonce(status: StatusCode, body: &[u8]) -> bool {
    status == StatusCode::BAD_REQUEST
        && serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|value| {
                value
                    .get("error")
                    .and_then(|e| e.as_str())
                    .map(|e| e == "use_dpop_nonce")
            })
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine as _};

    use super::*;

    fn claims_of(proof: &HeaderValue) -> serde_json::Value {
        let text = proof.to_str().unwrap();
        let payload = text.split('.').nth(1).unwrap();
        serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap()
    }

    #[test]
    fn a_proof_names_the_request_and_the_token() {
        let key = DpopKey::generate().unwrap();
        let target =
            ProofTarget::of_uri(&"https://api.example:8443/v1/items?page=2#x".parse().unwrap()).unwrap();
        assert_eq!(target.nonce_key(), "https://api.example:8443");
        let root = ProofTarget::of_uri(&"https://api.example".parse().unwrap()).unwrap();
        assert_eq!(root.htu, "https://api.example/");
        let proof = key.binding().proof("GET", &target, Some(b"tok")).unwrap();
        assert!(proof.is_sensitive());
        let claims = claims_of(&proof);
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["htu"], "https://api.example:8443/v1/items");
        assert_eq!(claims["ath"], base64url(&Sha256::digest(b"tok")));
        assert!(claims.get("nonce").is_none());
        assert!(claims["iat"].as_u64().unwrap() > 1_700_000_000);
        let again = claims_of(&key.binding().proof("GET", &target, Some(b"tok")).unwrap());
        assert_ne!(claims["jti"], again["jti"], "a proof is never reused");
        let header: serde_json::Value = serde_json::from_slice(
            &B64.decode(proof.to_str().unwrap().split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert!(header["jwk"].get("d").is_none());
    }

    #[test]
    fn nonces_are_remembered_per_origin_and_checked() {
        let key = DpopKey::generate().unwrap();
        let binding = key.binding();
        let a = ProofTarget::of_uri(&"https://a.example/x".parse().unwrap()).unwrap();
        let b = ProofTarget::of_uri(&"https://b.example/x".parse().unwrap()).unwrap();
        let with_nonce = |nonce: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(DPOP_NONCE, HeaderValue::from_str(nonce).unwrap());
            headers
        };
        assert!(binding.observe(a.nonce_key(), &with_nonce("n-1")));
        assert_eq!(
            claims_of(&binding.proof("GET", &a, None).unwrap())["nonce"],
            "n-1"
        );
        assert!(claims_of(&binding.proof("GET", &b, None).unwrap())
            .get("nonce")
            .is_none());
        assert!(binding.observe(a.nonce_key(), &with_nonce("n-2")));
        assert_eq!(
            claims_of(&binding.proof("GET", &a, None).unwrap())["nonce"],
            "n-2"
        );
        // Not NQCHAR, or too long: ignored, the last good one stays.
        assert!(!binding.observe(a.nonce_key(), &with_nonce("has \"quote\"")));
        assert!(!binding.observe(a.nonce_key(), &with_nonce(&"x".repeat(MAX_NONCE_LEN + 1))));
        assert_eq!(
            claims_of(&binding.proof("GET", &a, None).unwrap())["nonce"],
            "n-2"
        );
        // A token endpoint on the same origin keeps nonces of its own.
        let token = ProofTarget::token_endpoint(&"https://a.example/token".parse().unwrap()).unwrap();
        assert!(binding.observe(token.nonce_key(), &with_nonce("t-1")));
        assert_eq!(
            claims_of(&binding.proof("POST", &token, None).unwrap())["nonce"],
            "t-1"
        );
        assert_eq!(
            claims_of(&binding.proof("GET", &a, None).unwrap())["nonce"],
            "n-2"
        );
        // Bounded: the oldest origin goes.
        for i in 0..MAX_ORIGINS {
            binding.observe(&format!("https://o{i}.example"), &with_nonce("n"));
        }
        assert_eq!(binding.nonces.load().len(), MAX_ORIGINS);
        assert!(claims_of(&binding.proof("GET", &a, None).unwrap())
            .get("nonce")
            .is_none());
    }

    #[test]
    fn rotation_changes_the_proven_key() {
        let key = DpopKey::generate().unwrap();
        let before = key.thumbprint();
        key.rotate(SigningKey::generate(SigningAlgorithm::EdDsa).unwrap());
        assert_ne!(key.thumbprint(), before);
        let target = ProofTarget::of_uri(&"https://a.example/x".parse().unwrap()).unwrap();
        let proof = key.binding().proof("POST", &target, None).unwrap();
        let header: serde_json::Value = serde_json::from_slice(
            &B64.decode(proof.to_str().unwrap().split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], "EdDSA");
        assert!(!format!("{key:?}").contains(proof.to_str().unwrap()));
    }

    #[test]
    fn nonce_challenges_are_recognised() {
        let challenge = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_str(value).unwrap());
            is_nonce_challenge(StatusCode::UNAUTHORIZED, &headers)
        };
        assert!(challenge(
            r#"DPoP error="use_dpop_nonce", error_description="Resource server requires nonce""#
        ));
        assert!(challenge(r#"dpop algs="ES256", error="use_dpop_nonce""#));
        assert!(challenge(r#"Bearer realm="x", DPoP error="use_dpop_nonce""#));
        assert!(!challenge(r#"DPoP error="invalid_token""#));
        assert!(!challenge(r#"Bearer error="use_dpop_nonce""#));
        assert!(!challenge(r#"NotDPoP error="use_dpop_nonce""#));
        let mut headers = HeaderMap::new();
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"DPoP error="use_dpop_nonce""#),
        );
        assert!(!is_nonce_challenge(StatusCode::FORBIDDEN, &headers));

        assert!(token_endpoint_wants_nonce(
            StatusCode::BAD_REQUEST,
            br#"{"error":"use_dpop_nonce"}"#
        ));
        assert!(!token_endpoint_wants_nonce(
            StatusCode::BAD_REQUEST,
            br#"{"error":"invalid_grant"}"#
        ));
        assert!(!token_endpoint_wants_nonce(
            StatusCode::UNAUTHORIZED,
            br#"{"error":"use_dpop_nonce"}"#
        ));
        assert!(!token_endpoint_wants_nonce(
            StatusCode::BAD_REQUEST,
            b"use_dpop_nonce"
        ));
    }
}
