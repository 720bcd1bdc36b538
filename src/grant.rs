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
            Grant::ClientCredentials => "client_credentials",
            Grant::RefreshToken(_) => "refresh_token",
            Grant::AuthorizationCode { .. } => "authorization_code",
        }
    }
}
