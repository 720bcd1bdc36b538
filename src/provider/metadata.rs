//! An authorization server's metadata (RFC 8414 §2, OpenID Connect Discovery 1.0 §3):
//! what a [`Provider`](super::Provider) was discovered from. Reading and checking the
//! document is discovery's work; this is the record it leaves on the provider.

use super::ClientAuth;

/// An authorization server's metadata, as discovery read and checked it (RFC 8414 §2).
///
/// Only the fields this crate uses, or will use, are kept. List entries that are not
/// short printable ASCII tokens are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderMetadata {
    pub(crate) url: String,
    pub(crate) issuer: String,
    pub(crate) token_endpoint: String,
    pub(crate) authorization_endpoint: Option<String>,
    pub(crate) revocation_endpoint: Option<String>,
    pub(crate) token_endpoint_auth_methods_supported: Option<Vec<String>>,
    pub(crate) token_endpoint_auth_signing_alg_values_supported: Vec<String>,
    pub(crate) revocation_endpoint_auth_methods_supported: Option<Vec<String>>,
    pub(crate) code_challenge_methods_supported: Vec<String>,
    pub(crate) dpop_signing_alg_values_supported: Vec<String>,
    pub(crate) grant_types_supported: Option<Vec<String>>,
    pub(crate) scopes_supported: Vec<String>,
}

impl ProviderMetadata {
    /// Where the document was read.
    pub fn url(&self) -> &str {
        &self.url
    }
    /// `issuer`: equal to the issuer discovery was asked for.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// `token_endpoint`.
    pub fn token_endpoint(&self) -> &str {
        &self.token_endpoint
    }
    /// `authorization_endpoint`, if the server has one.
    pub fn authorization_endpoint(&self) -> Option<&str> {
        self.authorization_endpoint.as_deref()
    }
    /// `revocation_endpoint` (RFC 7009), if the server has one.
    pub fn revocation_endpoint(&self) -> Option<&str> {
        self.revocation_endpoint.as_deref()
    }
    /// `token_endpoint_auth_methods_supported`, `None` when absent (RFC 8414 then means
    /// `client_secret_basic`).
    pub fn token_endpoint_auth_methods_supported(&self) -> Option<&[String]> {
        self.token_endpoint_auth_methods_supported.as_deref()
    }
    /// `token_endpoint_auth_signing_alg_values_supported`: the algorithms of
    /// `private_key_jwt` and `client_secret_jwt` assertions (empty when absent).
    pub fn token_endpoint_auth_signing_alg_values_supported(&self) -> &[String] {
        &self.token_endpoint_auth_signing_alg_values_supported
    }
    /// `revocation_endpoint_auth_methods_supported`, `None` when absent.
    pub fn revocation_endpoint_auth_methods_supported(&self) -> Option<&[String]> {
        self.revocation_endpoint_auth_methods_supported.as_deref()
    }
    /// `code_challenge_methods_supported` (RFC 7636), empty when absent.
    pub fn code_challenge_methods_supported(&self) -> &[String] {
        &self.code_challenge_methods_supported
    }
    /// `dpop_signing_alg_values_supported` (RFC 9449 §5.1), empty when absent.
    pub fn dpop_signing_alg_values_supported(&self) -> &[String] {
        &self.dpop_signing_alg_values_supported
    }
    /// `grant_types_supported`, `None` when absent.
    pub fn grant_types_supported(&self) -> Option<&[String]> {
        self.grant_types_supported.as_deref()
    }
    /// `scopes_supported`, empty when absent.
    pub fn scopes_supported(&self) -> &[String] {
        &self.scopes_supported
    }

    /// The client authentication discovery picks: `client_secret_basic` when the server
    /// lists no methods or lists it, then `client_secret_post`, `none`, and (feature
    /// `jose`) `private_key_jwt` and `client_secret_jwt`; Basic when none of these is listed.
    pub fn client_auth(&self) -> ClientAuth {
        let Some(methods) = &self.token_endpoint_auth_methods_supported else {
            return ClientAuth::Basic;
        };
        let has = |method: &str| methods.iter().any(|m| m == method);
        if has("client_secret_basic") {
            ClientAuth::Basic
        } else if has("client_secret_post") {
            ClientAuth::RequestBody
        } else if has("none") {
            ClientAuth::PublicClient
        } else {
            #[cfg(feature = "jose")]
            if has("private_key_jwt") {
                return ClientAuth::PrivateKeyJwt;
            } else if has("client_secret_jwt") {
                return ClientAuth::ClientSecretJwt(self.client_secret_jwt_algorithm());
            }
            ClientAuth::Basic
        }
    }

    /// The HMAC of `client_secret_jwt`: HS256 unless the server lists algorithms
    /// without it, then the first of HS384 and HS512 it lists.
    #[cfg(feature = "jose")]
    fn client_secret_jwt_algorithm(&self) -> crate::jose::HmacAlgorithm {
        use crate::jose::HmacAlgorithm;
        let listed = &self.token_endpoint_auth_signing_alg_values_supported;
        let has = |alg: HmacAlgorithm| listed.iter().any(|listed| listed == alg.as_str());
        if listed.is_empty() || has(HmacAlgorithm::Hs256) {
            HmacAlgorithm::Hs256
        } else if has(HmacAlgorithm::Hs384) {
            HmacAlgorithm::Hs384
        } else if has(HmacAlgorithm::Hs512) {
            HmacAlgorithm::Hs512
        } else {
            HmacAlgorithm::Hs256
        }
    }

    /// Whether PKCE with `S256` is announced.
    pub fn supports_pkce_s256(&self) -> bool {
        self.code_challenge_methods_supported.iter().any(|m| m == "S256")
    }
}
