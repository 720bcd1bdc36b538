//! The grant a credential presents to obtain tokens (RFC 6749 §4, §6).

use crate::secret::{AuthorizationCode, PkceVerifier, RefreshToken};

/// The grant a credential uses to obtain tokens.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Grant {
    /// `client_credentials` (RFC 6749 §4.4): the client acts on its own behalf. When the
    /// token expires, the grant is simply run again.
    ClientCredentials,
    /// `refresh_token` (RFC 6749 §6), starting from a refresh token obtained elsewhere.
    /// A rotated refresh token replaces the old one; an answer without one keeps it.
    RefreshToken(RefreshToken),
    /// `authorization_code` (RFC 6749 §4.1.3): the code is exchanged once, and the
    /// refresh token that comes with it is used from then on.
    #[non_exhaustive]
    AuthorizationCode {
        /// The code the authorization server redirected back with.
        code: AuthorizationCode,
        /// The `redirect_uri` the code was issued for.
        redirect_uri: String,
        /// The PKCE verifier, if the authorization sent a challenge.
        pkce_verifier: Option<PkceVerifier>,
    },
}

impl Grant {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => GrantType::ClientCredentials,
            Grant::RefreshToken(_) => GrantType::RefreshToken,
            Grant::AuthorizationCode { .. } => GrantType::AuthorizationCode,
        }
        .as_str()
    }
}

/// Which grant a token request presents, without its secrets: what the statistics
/// count requests by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GrantType {
    ClientCredentials,
    RefreshToken,
    AuthorizationCode,
}

impl GrantType {
    /// The `grant_type` parameter's value (RFC 6749).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => "client_credentials",
            GrantType::RefreshToken => "refresh_token",
            GrantType::AuthorizationCode => "authorization_code",
        }
    }
}
