//! A provider's dialect: the values of its settings, each saying how it departs (or not)
//! from RFC 6749 in one respect.

use std::fmt;

use http::{HeaderName, HeaderValue};

use crate::redact::without_userinfo;

/// How a client proves its identity to the token endpoint (RFC 6749 §2.3).
///
/// Where the parameters go (form body or request headers) is the provider's
/// [`ParameterEncoding`]; this only says which of them are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientAuth {
    /// `Authorization: Basic` with the form-encoded client id and secret (§2.3.1).
    Basic,
    /// `client_id` and `client_secret` as request parameters (§2.3.1).
    RequestBody,
    /// A public client: `client_id` is sent as a parameter, no secret (§2.1, §3.2.1).
    PublicClient,
    /// Nothing identifies the client: token requests carry only the grant. The
    /// credential's client id is then a local label, used in keys and logs only.
    None,
    /// `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): each request carries
    /// `client_id`, `client_assertion_type` and a `client_assertion`, a JWT signed with
    /// the key set by
    /// [`Credential::client_assertion_key`](crate::Credential::client_assertion_key),
    /// in that key's algorithm. Its `aud` is the provider's
    /// [`client_assertion_audience`](crate::Provider::client_assertion_audience).
    /// Each request (a retry too) gets a new assertion: `iss` and `sub` the client id,
    /// `iat` now, `exp` a minute later, a random `jti`, and the key's `kid` in its
    /// header. Feature `jose`.
    ///
    /// ```
    /// use tower_oauth2::{jose::SigningKey, ClientAuth, Credential, CredentialRegistry, Provider};
    ///
    /// # fn demo(pem: &str) -> Result<(), tower_oauth2::Error> {
    /// let key = SigningKey::from_pem(pem).expect("a key").with_key_id("2026-12");
    /// let provider = Provider::standard("https://auth.example.com/token")
    ///     .client_auth(ClientAuth::PrivateKeyJwt)
    ///     .api("https://api.example.com");
    /// // A user's refresh token, redeemed with the client's key rather than a secret.
    /// let credential = Credential::refresh_token(provider, "my-app", None, "refresh-token")
    ///     .client_assertion_key(key);
    /// let credentials = CredentialRegistry::new(credential)?;
    /// # let _ = credentials;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "jose")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jose")))]
    PrivateKeyJwt,
    /// `client_secret_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): as
    /// [`PrivateKeyJwt`](Self::PrivateKeyJwt), but the JWT is MACed with the client
    /// secret under this HMAC algorithm, so the secret itself never travels. Feature
    /// `jose`.
    #[cfg(feature = "jose")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jose")))]
    ClientSecretJwt(crate::jose::HmacAlgorithm),
}

impl ClientAuth {
    /// The method's name in RFC 8414 metadata (`token_endpoint_auth_methods_supported`)
    /// and RFC 7591 registration: `client_secret_basic`, `client_secret_post`,
    /// `private_key_jwt`, `client_secret_jwt`; `none` for both
    /// [`PublicClient`](Self::PublicClient) and [`None`](Self::None).
    pub fn method_name(self) -> &'static str {
        match self {
            ClientAuth::Basic => "client_secret_basic",
            ClientAuth::RequestBody => "client_secret_post",
            ClientAuth::PublicClient | ClientAuth::None => "none",
            #[cfg(feature = "jose")]
            ClientAuth::PrivateKeyJwt => "private_key_jwt",
            #[cfg(feature = "jose")]
            ClientAuth::ClientSecretJwt(_) => "client_secret_jwt",
        }
    }
}

/// The `aud` of a JWT client assertion ([`ClientAuth::PrivateKeyJwt`],
/// [`ClientAuth::ClientSecretJwt`]): RFC 7523 §3 wants a value that identifies the
/// authorization server, and servers differ on which one they accept. Feature `jose`.
#[cfg(feature = "jose")]
#[cfg_attr(docsrs, doc(cfg(feature = "jose")))]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AssertionAudience {
    /// The token endpoint URL, as OpenID Connect Core §9 asks. The default. (Revocation
    /// requests name the token endpoint too: it is the server's identity, not the
    /// request's target.)
    #[default]
    TokenEndpoint,
    /// The issuer of the metadata the provider was discovered from
    /// ([`Provider::discover`](crate::Provider::discover)); a provider built otherwise
    /// is refused as a configuration error: name the issuer with
    /// [`Value`](Self::Value) then.
    Issuer,
    /// This value exactly (an issuer URL, or whatever the server documents).
    Value(String),
}

/// How the parameters of a token request are carried.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParameterEncoding {
    /// An `application/x-www-form-urlencoded` body (RFC 6749 §4).
    Form,
    /// One request header per parameter and an empty body, as iOFFICE expects.
    Headers(HeaderParameters),
}

/// How each token request parameter is named when sent as a request header.
///
/// ```
/// use http::HeaderName;
/// use tower_oauth2::provider::HeaderParameters;
///
/// // iOFFICE: `x-grant-type`, `x-client-id`, ..., but the code goes in `x-auth-code`.
/// let names = HeaderParameters::prefixed("x-")
///     .rename("code", HeaderName::from_static("x-auth-code"));
/// # let _ = names;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderParameters {
    prefix: String,
    renamed: Vec<(String, HeaderName)>,
    content_type: HeaderValue,
}

impl HeaderParameters {
    /// Each parameter becomes the header `prefix` + its name with `_` turned into `-`
    /// (`grant_type` → `x-grant-type`). The request says `Content-Type: application/json`.
    pub fn prefixed(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into().to_ascii_lowercase(),
            renamed: Vec::new(),
            content_type: HeaderValue::from_static("application/json"),
        }
    }

    /// Sends parameter `param` in the header `header` instead.
    pub fn rename(mut self, param: impl Into<String>, header: HeaderName) -> Self {
        let param = param.into();
        self.renamed.retain(|(p, _)| *p != param);
        self.renamed.push((param, header));
        self
    }

    /// The request's `Content-Type` (default `application/json`).
    pub fn content_type(mut self, content_type: HeaderValue) -> Self {
        self.content_type = content_type;
        self
    }

    pub(crate) fn header_for(&self, param: &str) -> Option<HeaderName> {
        if let Some((_, header)) = self.renamed.iter().find(|(p, _)| p == param) {
            return Some(header.clone());
        }
        HeaderName::try_from(format!("{}{}", self.prefix, param.replace('_', "-"))).ok()
    }

    pub(crate) fn request_content_type(&self) -> &HeaderValue {
        &self.content_type
    }
}

/// What a provider does with refresh tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefreshTokens {
    /// RFC 6749 §6: a refresh answer may carry a new refresh token, which replaces the
    /// old one; an answer without one keeps the old one (Grindery never sends one).
    KeepWhenOmitted,
    /// Every refresh answer carries a new refresh token and the used one is dead at
    /// once (iOFFICE). An answer without one keeps the old one, with a warning: it is
    /// the only one left, even if it will probably be refused.
    Rotated,
    /// The provider issues none (Accelo's service applications): when a token
    /// expires, the grant is run again. Credentials that need a refresh token are a
    /// configuration error, and a refresh token in an answer is ignored.
    NotIssued,
}

/// How several scopes are joined into the `scope` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeSyntax {
    /// Space-delimited scope tokens (RFC 6749 §3.3): `read write`.
    SpaceDelimited,
    /// Comma-delimited (Accelo): `read(all),write(companies,contacts)`.
    CommaDelimited,
}

impl ScopeSyntax {
    pub(crate) fn join(self, scopes: &[String]) -> String {
        scopes.join(match self {
            ScopeSyntax::SpaceDelimited => " ",
            ScopeSyntax::CommaDelimited => ",",
        })
    }
}

/// How tokens are revoked at the provider.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Revocation {
    /// RFC 7009: a form POST of `token` and `token_type_hint` to `url`, with the same
    /// client authentication as token requests.
    Rfc7009 {
        /// The revocation endpoint.
        url: String,
    },
    /// A POST to `url` carrying the token in the header `header` and nothing else
    /// (iOFFICE: `x-token`).
    Header {
        /// The revocation endpoint.
        url: String,
        /// The header that carries the token.
        header: HeaderName,
    },
}

// Written by hand: a URL may carry a password (`https://user:pass@…`), never printed.
impl fmt::Debug for Revocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Revocation::Rfc7009 { url } => f
                .debug_struct("Rfc7009")
                .field("url", &without_userinfo(url))
                .finish(),
            Revocation::Header { url, header } => f
                .debug_struct("Header")
                .field("url", &without_userinfo(url))
                .field("header", header)
                .finish(),
        }
    }
}

/// Where an authorization server puts the code when it redirects back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CodeDelivery {
    /// In the query of the redirect URI, readable by the server (RFC 6749 §4.1.2).
    Query,
    /// In the fragment (`#code=…`), which browsers never send to a server: a page
    /// script must read it and hand it to the backend (iOFFICE).
    Fragment,
}

/// Where an access token goes on an API request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenPlacement {
    /// `Authorization: Bearer <token>` (RFC 6750 §2.1).
    AuthorizationBearer,
    /// A named header carrying the bare token, e.g. `x-access-token: <token>`.
    Header(HeaderName),
    /// A named query parameter, e.g. `?access_token=<token>`. Prefer a header where the
    /// provider allows one: URLs end up in logs.
    Query(String),
}

/// Scopes as a set: sorted and without duplicates, so that the order a caller lists them
/// in never makes two credentials (or two cache keys) differ.
pub(crate) fn scope_set<I, S>(scopes: I) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
    scopes.sort();
    scopes.dedup();
    scopes
}
