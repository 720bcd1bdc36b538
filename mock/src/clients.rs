//! What the server knows of its clients beyond their secrets: the public keys of
//! `private_key_jwt` clients, the assertion ids already used, which `aud` values an
//! assertion may name, and what a request proved about its client. Plain data, held
//! in the server's configuration and state; the checks that use it are in
//! `client_auth` and `client_assertion`.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::Value;

/// A client whose identity the token endpoint has established.
#[derive(Debug)]
pub(crate) struct AuthenticatedClient {
    pub(crate) id: Arc<str>,
    /// Whether the client proved it holds a secret or a key (public clients
    /// cannot).
    pub(crate) confidential: bool,
}

/// The one `client_assertion_type` of JWT client authentication (RFC 7523 §2.2).
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How far ahead of now an assertion's `exp` may be: RFC 7523 §3 lets a server refuse
/// assertions that live unreasonably long, and ten minutes is the most this one takes.
pub(crate) const MAX_LIFETIME_SECS: u64 = 600;

/// How far in the future an `iat` or `nbf` may be, for clocks that drift apart.
pub(crate) const CLOCK_SKEW_SECS: u64 = 60;

/// The signature algorithms accepted with a registered public key (`private_key_jwt`).
pub(crate) const KEY_ALGORITHMS: &[&str] = &["ES256", "EdDSA", "PS256", "RS256"];

/// The signature algorithms accepted with the client secret (`client_secret_jwt`).
pub(crate) const SECRET_ALGORITHMS: &[&str] = &["HS256", "HS384", "HS512"];

/// Which `aud` values a client assertion may name (RFC 7523 §3, item 3).
///
/// Set with [`MockServerBuilder::assertion_audience`](crate::MockServerBuilder::assertion_audience).
/// An assertion's `aud` is a string or an array of strings; it is accepted when any of
/// them is an accepted value.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcceptedAssertionAudience {
    /// The token endpoint's URL ([`MockServer::token_url`](crate::MockServer::token_url))
    /// or the issuer (the `issuer` of the metadata document, the server's origin unless
    /// [`metadata_issuer`](crate::MockServerBuilder::metadata_issuer) says otherwise).
    /// The default.
    #[default]
    TokenEndpointOrIssuer,
    /// The token endpoint's URL only.
    TokenEndpoint,
    /// The issuer only, as servers that follow RFC 7523's newer reading (and some
    /// OpenID providers) demand.
    Issuer,
}

/// A public key a client registered for `private_key_jwt`.
#[derive(Clone)]
pub(crate) struct ClientKey {
    /// The `kid` of a JWK; PEM keys have none.
    kid: Option<String>,
    /// The one algorithm a JWK's `alg` restricts the key to, if it names one.
    alg: Option<Algorithm>,
    family: AlgorithmFamily,
    pub(crate) key: DecodingKey,
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("family", &self.family)
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    /// Reads a public key: a JWK (a JSON object) or a PEM public key
    /// (`BEGIN PUBLIC KEY`, or `BEGIN RSA PUBLIC KEY`).
    pub(crate) fn parse(text: &str) -> Result<ClientKey, String> {
        let text = text.trim();
        if text.starts_with('{') {
            Self::from_jwk(text)
        } else if text.starts_with("-----BEGIN") {
            Self::from_pem(text.as_bytes())
        } else {
            Err("a client key is a JWK (a JSON object) or a PEM public key".to_owned())
        }
    }

    fn from_jwk(text: &str) -> Result<ClientKey, String> {
        let object: Value = serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))?;
        // RFC 7517 §4 keeps private members out of a public key; a private JWK handed
        // to the server is a mix-up the test should hear about.
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            if object.get(private).is_some() {
                return Err(format!(
                    "the JWK has the private member `{private}`: register the public key only"
                ));
            }
        }
        let jwk: Jwk = serde_json::from_value(object).map_err(|error| format!("not a JWK: {error}"))?;
        let family = match &jwk.algorithm {
            AlgorithmParameters::EllipticCurve(params) if params.curve == EllipticCurve::P256 => {
                AlgorithmFamily::Ec
            }
            AlgorithmParameters::OctetKeyPair(params) if params.curve == EllipticCurve::Ed25519 => {
                AlgorithmFamily::Ed
            }
            AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
            _ => return Err("only P-256, Ed25519 and RSA public keys are accepted".to_owned()),
        };
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(alg) => Some(
                alg.to_string()
                    .parse::<Algorithm>()
                    .map_err(|_| format!("the JWK's `alg` {alg} is not a signature algorithm"))?,
            ),
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|error| format!("unusable JWK: {error}"))?;
        Ok(ClientKey {
            kid: jwk.common.key_id,
            alg,
            family,
            key,
        })
    }

    fn from_pem(pem: &[u8]) -> Result<ClientKey, String> {
        let (family, key) = if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            (AlgorithmFamily::Ec, key)
        } else if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            (AlgorithmFamily::Ed, key)
        } else if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            (AlgorithmFamily::Rsa, key)
        } else {
            return Err("not a PEM EC, Ed25519 or RSA public key".to_owned());
        };
        Ok(ClientKey {
            kid: None,
            alg: None,
            family,
            key,
        })
    }

    /// Whether this key may verify an assertion signed with `alg` and naming `kid`.
    pub(crate) fn fits(&self, alg: Algorithm, kid: Option<&str>) -> bool {
        let family = match alg {
            Algorithm::ES256 => AlgorithmFamily::Ec,
            Algorithm::EdDSA => AlgorithmFamily::Ed,
            Algorithm::RS256 | Algorithm::PS256 => AlgorithmFamily::Rsa,
            _ => return false,
        };
        family == self.family
            && self.alg.is_none_or(|only| only == alg)
            && kid.is_none_or(|kid| self.kid.as_deref() == Some(kid))
    }
}

/// The `(client, jti)` pairs of accepted assertions, each until its `exp`, to refuse
/// replays (RFC 7523 §3, item 7). Entries past their `exp` are swept as the table grows,
/// so it holds at most the assertions of the last [`MAX_LIFETIME_SECS`].
#[derive(Debug)]
pub(crate) struct UsedJtis {
    seen: HashMap<(Arc<str>, String), u64>,
    sweep_at: usize,
}

const FIRST_SWEEP_AT: usize = 256;

impl Default for UsedJtis {
    fn default() -> Self {
        UsedJtis {
            seen: HashMap::new(),
            sweep_at: FIRST_SWEEP_AT,
        }
    }
}

impl UsedJtis {
    /// Records a `jti`; `false` if it is still remembered (a replay).
    pub(crate) fn first_use(&mut self, client: &Arc<str>, jti: &str, exp: u64, now: u64) -> bool {
        if self.seen.len() >= self.sweep_at {
            self.seen.retain(|_, &mut until| until >= now);
            self.sweep_at = FIRST_SWEEP_AT.max(self.seen.len() * 2);
        }
        let key = (Arc::clone(client), jti.to_owned());
        match self.seen.get(&key) {
            Some(&until) if until >= now => false,
            _ => {
                self.seen.insert(key, exp);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_jwks_are_refused() {
        let private = r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}"#;
        assert!(ClientKey::parse(private).unwrap_err().contains("`d`"));
        let public =
            r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1"}"#;
        let key = ClientKey::parse(public).unwrap();
        assert!(key.fits(Algorithm::EdDSA, Some("k1")));
        assert!(key.fits(Algorithm::EdDSA, None));
        assert!(!key.fits(Algorithm::EdDSA, Some("k2")));
        assert!(!key.fits(Algorithm::ES256, None));
    }

    #[test]
    fn jtis_are_remembered_until_their_exp_only() {
        let mut used = UsedJtis::default();
        let client: Arc<str> = Arc::from("c");
        assert!(used.first_use(&client, "a", 100, 50));
        assert!(!used.first_use(&client, "a", 100, 60));
        assert!(used.first_use(&Arc::from("other"), "a", 100, 60));
        // Past its exp, the assertion itself would be refused as expired; the entry
        // may go.
        assert!(used.first_use(&client, "a", 200, 101));
        for n in 0..1000 {
            used.first_use(&client, &n.to_string(), 300 + n, 300 + n);
        }
        assert!(used.seen.len() < 600, "swept: {}", used.seen.len());
    }
}
