//! JWT client assertions (RFC 7523 §2.2 and §3, OpenID Connect Core §9): what
//! [`ClientAuth::PrivateKeyJwt`] and [`ClientAuth::ClientSecretJwt`] send instead of a
//! secret. Each token or revocation request gets its own, signed when the request is
//! built: `iss` and `sub` the client id, `aud` the provider's
//! [`AssertionAudience`], `iat` now, `exp` a minute later, and a random `jti`, so that
//! a server that remembers `jti`s (RFC 7523 §3, item 7) never sees one twice, retries
//! included.

use std::fmt;

use crate::{
    error::Error,
    jose::{self, HmacAlgorithm, JwsHeader, SigningKey},
    provider::{AssertionAudience, ClientAuth},
    secret::ClientSecret,
    Credential,
};

/// The `client_assertion_type` of a JWT (RFC 7523 §2.2).
pub(crate) const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long an assertion is valid: long enough for the request to arrive, short enough
/// that a captured one is soon useless (servers refuse long-lived ones).
const LIFETIME_SECS: u64 = 60;

/// What signs a credential's assertions, with what stays the same across them.
pub(crate) struct Signer {
    key: SignerKey,
    /// The protected header, encoded once.
    header: JwsHeader,
    audience: String,
}

enum SignerKey {
    Private(SigningKey),
    Secret(HmacAlgorithm, ClientSecret),
}

impl Signer {
    /// The signer `credential`'s client authentication needs, if it uses assertions;
    /// a configuration error when the key, the secret or the audience is missing.
    pub(crate) fn new(credential: &Credential) -> Result<Option<Self>, Error> {
        let client = &credential.client;
        let provider = &client.provider;
        let key = match provider.client_auth {
            ClientAuth::PrivateKeyJwt => {
                let key = client.assertion_key.clone().ok_or_else(|| {
                    Error::config(format!(
                        "`{}` authenticates clients with private_key_jwt, but no key was given \
                         (`Credential::client_assertion_key`)",
                        provider.name
                    ))
                })?;
                SignerKey::Private(key)
            }
            ClientAuth::ClientSecretJwt(algorithm) => {
                // `CheckedCredential::new` has refused a missing secret already.
                let secret = client.client_secret.clone().ok_or_else(|| {
                    Error::config(format!(
                        "`{}` authenticates clients with client_secret_jwt, but no secret was given",
                        provider.name
                    ))
                })?;
                SignerKey::Secret(algorithm, secret)
            }
            _ => return Ok(None),
        };
        let audience = match &provider.assertion_audience {
            AssertionAudience::TokenEndpoint => provider.token_url.clone(),
            AssertionAudience::Issuer => provider
                .metadata
                .as_ref()
                .map(|metadata| metadata.issuer().to_owned())
                .ok_or_else(|| {
                    Error::config(format!(
                        "`{}` names its issuer as the client assertion audience, but was not \
                         discovered: name it with `AssertionAudience::Value`",
                        provider.name
                    ))
                })?,
            AssertionAudience::Value(value) if value.is_empty() => {
                return Err(Error::config(format!(
                    "the client assertion audience of `{}` is empty",
                    provider.name
                )))
            }
            AssertionAudience::Value(value) => value.clone(),
        };
        let header = match &key {
            SignerKey::Private(key) => JwsHeader::for_key(key, "JWT", false),
            SignerKey::Secret(algorithm, _) => JwsHeader::for_hmac(*algorithm, "JWT"),
        };
        Ok(Some(Self {
            key,
            header,
            audience,
        }))
    }

    /// A new assertion for `client_id`, valid for a minute from now.
    pub(crate) fn sign(&self, client_id: &str) -> Result<String, Error> {
        let issued_at = jose::unix_now();
        let claims = serde_json::json!({
            "iss": client_id,
            "sub": client_id,
            "aud": self.audience,
            "iat": issued_at,
            "exp": issued_at + LIFETIME_SECS,
            "jti": jose::unique_id(),
        });
        let claims = claims.to_string();
        match &self.key {
            SignerKey::Private(key) => key.compact(&self.header, claims.as_bytes()).map_err(|err| {
                // Only the system's random number generator failing gets here.
                Error::config(format!("the client assertion could not be signed: {err}"))
            }),
            SignerKey::Secret(algorithm, secret) => Ok(jose::hmac_compact(
                *algorithm,
                secret.secret().as_bytes(),
                &self.header,
                claims.as_bytes(),
            )),
        }
    }
}

// The key's `Debug` names its algorithm, id and thumbprint; the secret is never shown.
impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut f = f.debug_struct("Signer");
        match &self.key {
            SignerKey::Private(key) => f.field("key", key),
            SignerKey::Secret(algorithm, _) => f.field("hmac", algorithm),
        };
        f.field("audience", &self.audience).finish()
    }
}
