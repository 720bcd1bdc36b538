//! The error type of the layer and of token acquisition.
//!
//! [`Error`] is one `#[non_exhaustive]` enum a caller can match on. Each variant wraps a
//! small struct with private fields and accessors, so variants can grow without breaking
//! anyone. Every message names the provider whose token was involved and never contains
//! a secret: no token, no client secret, no token endpoint body.
//!
//! Text an authorization server wrote (`error`, `error_description`, a content type) is
//! kept only after every secret the request carried was replaced by `[redacted]` (as
//! sent, form- or percent-encoded, or inside the `Basic` credentials), control
//! characters were escaped, and its length was capped: servers quote requests back.
//! Every `Display` escapes control characters, so no value inside a message (a user's
//! id, a configured name) can start a line of its own in a log.
//!
//! ```
//! use tower_oauth2::{error::OAuthErrorCode, Error};
//!
//! fn describe(err: &Error) -> &'static str {
//!     match err {
//!         Error::Inner(_) => "the HTTP client failed",
//!         Error::OAuth(e) if e.code() == OAuthErrorCode::InvalidClient => "check the client credentials",
//!         Error::OAuth(_) => "the token endpoint refused",
//!         Error::Unreachable(_) | Error::TimedOut(_) => "the token endpoint is down",
//!         Error::Malformed(_) => "the token endpoint answered nonsense",
//!         Error::ReauthorizationRequired(_) => "the user must log in again",
//!         Error::Config(_) => "fix the configuration",
//!         Error::Store(_) => "the token store failed",
//!         _ => "something else",
//!     }
//! }
//! ```

use std::{error::Error as StdError, fmt, sync::Arc, time::Duration};

use http::StatusCode;

use crate::redact::{write_escaped, Escaped};

#[doc(inline)]
pub use crate::store::StoreError;

/// A type-erased error, as used throughout tower.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// Everything that can go wrong when sending a request through the layer.
///
/// `Error` is `Clone` (its causes are shared behind `Arc`s) because one failed token
/// refresh is reported to every caller that waited for it.
///
/// Each variant is transparent: `Display` prints the variant's own message, and
/// `source()` returns the variant's cause (the wrapped service's error, the I/O error
/// behind a store failure, the OAuth answer behind a re-authorization), never the
/// variant itself. Printing the chain (`anyhow`'s `{:#}`, `tracing`'s error fields)
/// therefore shows each message once.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The wrapped service (the HTTP client) failed. The cause is its own error.
    #[error(transparent)]
    Inner(InnerError),
    /// The token endpoint answered with an OAuth error (`invalid_client`, `invalid_grant`, ...).
    #[error(transparent)]
    OAuth(OAuthError),
    /// The token endpoint could not be reached: connection refused or reset, TLS failure,
    /// or no token request may be sent right now because recent ones failed (backoff).
    #[error(transparent)]
    Unreachable(UnreachableError),
    /// The token endpoint did not answer in time.
    #[error(transparent)]
    TimedOut(TimedOut),
    /// The token endpoint answered, but not with a usable token response.
    #[error(transparent)]
    Malformed(MalformedResponse),
    /// The refresh token is no longer accepted; the user must authorize again.
    #[error(transparent)]
    ReauthorizationRequired(ReauthorizationRequired),
    /// The configuration cannot work (a bad URL, a token URL over plain http, ...).
    #[error(transparent)]
    Config(ConfigError),
    /// An authorization callback cannot be accepted: the user denied access, the
    /// `state` does not match, or the code is missing.
    #[error(transparent)]
    Authorization(AuthorizationError),
    /// The token store failed to load, save or delete a credential's tokens.
    #[error(transparent)]
    Store(StoreError),
    /// No grant is stored for this user: they have not logged in (or logged out). The
    /// request was not sent.
    #[error(transparent)]
    NotAuthorized(NotAuthorized),
    /// An authorization server's metadata could not be used: see
    /// [`discovery`](crate::discovery).
    #[error(transparent)]
    Discovery(DiscoveryError),
}

impl Error {
    /// The provider involved, if the error concerns one.
    pub fn provider(&self) -> Option<&str> {
        match self {
            Error::Inner(_) | Error::Config(_) | Error::Discovery(_) => None,
            Error::Authorization(e) => Some(&e.provider),
            Error::OAuth(e) => Some(&e.provider),
            Error::Unreachable(e) => Some(&e.provider),
            Error::TimedOut(e) => Some(&e.provider),
            Error::Malformed(e) => Some(&e.provider),
            Error::ReauthorizationRequired(e) => Some(&e.provider),
            Error::Store(e) => e.provider(),
            Error::NotAuthorized(e) => Some(&e.provider),
        }
    }

    /// Whether the error came from obtaining a token rather than from the wrapped service
    /// (or from configuration and discovery, which obtain none).
    pub fn is_token_error(&self) -> bool {
        !matches!(self, Error::Inner(_) | Error::Config(_) | Error::Discovery(_))
    }

    pub(crate) fn inner(err: impl Into<BoxError>) -> Self {
        Error::Inner(InnerError(Arc::from(err.into())))
    }

    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config(ConfigError {
            message: message.into(),
        })
    }
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        Error::Store(err)
    }
}

// ===== leaf errors =====

/// The wrapped service's own error, shared.
#[derive(Clone)]
pub struct InnerError(Arc<dyn StdError + Send + Sync>);

impl InnerError {
    /// The wrapped service's error, for downcasting.
    pub fn get_ref(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Debug for InnerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for InnerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("inner service error")
    }
}

impl StdError for InnerError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.0)
    }
}

/// An OAuth error answer from a token endpoint (RFC 6749 §5.2).
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub(crate) provider: Arc<str>,
    pub(crate) status: StatusCode,
    pub(crate) error: String,
    pub(crate) description: Option<String>,
}

impl OAuthError {
    /// The provider that answered.
    pub fn provider(&self) -> &str {
        &self.provider
    }
    /// The HTTP status of the answer (some servers say 200 with an `error` field).
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The `error` code, e.g. `invalid_grant`. A code outside those registered by the
    /// OAuth RFCs is treated like the description (secrets redacted, escaped, capped).
    pub fn error(&self) -> &str {
        &self.error
    }
    /// The `error` code as a type, for matching: [`OAuthErrorCode::InvalidClient`] for a
    /// refused client authentication (a wrong secret, a refused client assertion), and
    /// so on; [`OAuthErrorCode::Other`] for a code no OAuth RFC registers, whose text
    /// [`error`](Self::error) gives.
    pub fn code(&self) -> OAuthErrorCode {
        OAuthErrorCode::parse(&self.error)
    }
    /// The `error_description`, if any: the server's prose, with every secret the
    /// request carried replaced by `[redacted]`, control characters escaped, and at most
    /// 256 characters. Do not build logic on it: servers word it as they like.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
}

/// The `error` code of an [`OAuthError`], as registered by RFC 6749 (§4.1.2.1, §5.2),
/// RFC 7009 (§2.2.1) and RFC 9449 (§12.2). Codes are matched exactly, as the RFCs
/// spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OAuthErrorCode {
    /// `invalid_request`: a parameter is missing, repeated or malformed.
    InvalidRequest,
    /// `invalid_client`: the client authentication failed (unknown client, wrong secret,
    /// a client assertion refused, an unsupported method).
    InvalidClient,
    /// `invalid_grant`: the code, refresh token or other grant is invalid, expired,
    /// revoked or issued to another client.
    InvalidGrant,
    /// `unauthorized_client`: this client may not use this grant type.
    UnauthorizedClient,
    /// `unsupported_grant_type`.
    UnsupportedGrantType,
    /// `invalid_scope`.
    InvalidScope,
    /// `access_denied`: the resource owner or the server refused.
    AccessDenied,
    /// `unsupported_response_type`.
    UnsupportedResponseType,
    /// `server_error`.
    ServerError,
    /// `temporarily_unavailable`.
    TemporarilyUnavailable,
    /// `unsupported_token_type` (revocation).
    UnsupportedTokenType,
    /// `invalid_dpop_proof` (DPoP).
    InvalidDpopProof,
    /// `use_dpop_nonce` (DPoP): the server wants a proof carrying its nonce.
    UseDpopNonce,
    /// A code no OAuth RFC registers; [`OAuthError::error`] gives its text.
    Other,
}

impl OAuthErrorCode {
    fn parse(code: &str) -> Self {
        match code {
            "invalid_request" => Self::InvalidRequest,
            "invalid_client" => Self::InvalidClient,
            "invalid_grant" => Self::InvalidGrant,
            "unauthorized_client" => Self::UnauthorizedClient,
            "unsupported_grant_type" => Self::UnsupportedGrantType,
            "invalid_scope" => Self::InvalidScope,
            "access_denied" => Self::AccessDenied,
            "unsupported_response_type" => Self::UnsupportedResponseType,
            "server_error" => Self::ServerError,
            "temporarily_unavailable" => Self::TemporarilyUnavailable,
            "unsupported_token_type" => Self::UnsupportedTokenType,
            "invalid_dpop_proof" => Self::InvalidDpopProof,
            "use_dpop_nonce" => Self::UseDpopNonce,
            _ => Self::Other,
        }
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(
            f,
            format_args!(
                "token endpoint of `{}` refused the request ({}): {}",
                self.provider,
                self.status.as_u16(),
                self.error
            ),
        )?;
        if let Some(description) = &self.description {
            write_escaped(f, format_args!(": {description}"))?;
        }
        Ok(())
    }
}

impl StdError for OAuthError {}

/// The token endpoint could not be reached.
#[derive(Debug, Clone)]
pub struct UnreachableError {
    pub(crate) provider: Arc<str>,
    pub(crate) backoff: Option<Duration>,
    pub(crate) source: Option<Arc<dyn StdError + Send + Sync>>,
}

impl UnreachableError {
    /// The provider whose token endpoint failed.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// If no request was sent because earlier attempts failed, how long the layer waits
    /// in total before it tries again.
    pub fn backoff(&self) -> Option<Duration> {
        self.backoff
    }
}

impl fmt::Display for UnreachableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let provider = Escaped(&self.provider);
        match self.backoff {
            Some(wait) => write!(
                f,
                "token endpoint of `{provider}` is failing; next attempt in {} ms",
                wait.as_millis()
            ),
            None => write!(f, "token endpoint of `{provider}` could not be reached"),
        }
    }
}

impl StdError for UnreachableError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn StdError + 'static))
    }
}

/// The token request did not complete in time.
#[derive(Debug, Clone)]
pub struct TimedOut {
    pub(crate) provider: Arc<str>,
    pub(crate) after: Duration,
}

impl TimedOut {
    /// The provider whose token endpoint was too slow.
    pub fn provider(&self) -> &str {
        &self.provider
    }
    /// The timeout that elapsed.
    pub fn after(&self) -> Duration {
        self.after
    }
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "token request to `{}` timed out after {} ms",
            Escaped(&self.provider),
            self.after.as_millis()
        )
    }
}

impl StdError for TimedOut {}

/// The token endpoint's answer could not be used.
#[derive(Debug, Clone)]
pub struct MalformedResponse {
    pub(crate) provider: Arc<str>,
    pub(crate) status: StatusCode,
    pub(crate) content_type: Option<String>,
    pub(crate) reason: String,
}

impl MalformedResponse {
    /// The provider that answered.
    pub fn provider(&self) -> &str {
        &self.provider
    }
    /// The HTTP status of the answer.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// The answer's `Content-Type`, if it had one (an HTML error page says `text/html`),
    /// redacted, escaped and capped like any text from the server.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }
    /// What was wrong, e.g. "`access_token` is missing". Never contains the body.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for MalformedResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_escaped(
            f,
            format_args!(
                "token endpoint of `{}` answered {} with an unusable body: {}",
                self.provider,
                self.status.as_u16(),
                self.reason
            ),
        )?;
        if let Some(content_type) = &self.content_type {
            write_escaped(f, format_args!(" (content-type {content_type})"))?;
        }
        Ok(())
    }
}

impl StdError for MalformedResponse {}

/// The grant behind a credential is dead, so only a new authorization can produce
/// tokens: the refresh token or the authorization code was refused (`invalid_grant`, or
/// the provider's own word for it), or there is none to present.
#[derive(Debug, Clone)]
pub struct ReauthorizationRequired {
    pub(crate) provider: Arc<str>,
    pub(crate) grant: Option<RefusedGrant>,
    pub(crate) cause: Option<OAuthError>,
}

/// What the token endpoint refused, in a [`ReauthorizationRequired`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefusedGrant {
    /// The refresh token: expired, revoked, or already rotated.
    RefreshToken,
    /// The authorization code: expired, already used, or issued for another client or
    /// redirect URI.
    AuthorizationCode,
}

impl ReauthorizationRequired {
    /// The provider whose grant is dead.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// What the token endpoint refused, or `None` when nothing could be presented (no
    /// refresh token or code is held).
    pub fn refused(&self) -> Option<RefusedGrant> {
        self.grant
    }

    /// The token endpoint's answer, when it refused something.
    pub fn cause(&self) -> Option<&OAuthError> {
        self.cause.as_ref()
    }
}

impl fmt::Display for ReauthorizationRequired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let provider = Escaped(&self.provider);
        match self.grant {
            Some(RefusedGrant::RefreshToken) => write!(
                f,
                "the refresh token for `{provider}` was refused; re-authorization required"
            ),
            Some(RefusedGrant::AuthorizationCode) => write!(
                f,
                "the authorization code for `{provider}` was refused; re-authorization required"
            ),
            None => write!(
                f,
                "no refresh token or authorization code is held for `{provider}`; re-authorization required"
            ),
        }
    }
}

impl StdError for ReauthorizationRequired {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.cause.as_ref().map(|e| e as &(dyn StdError + 'static))
    }
}

/// A request named a user with no stored grant for its provider.
#[derive(Debug, Clone)]
pub struct NotAuthorized {
    pub(crate) provider: Arc<str>,
    pub(crate) subject: Option<Arc<str>>,
}

impl NotAuthorized {
    /// The provider the request was for.
    pub fn provider(&self) -> &str {
        &self.provider
    }
    /// The user the request named, if it named one.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
}

impl fmt::Display for NotAuthorized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The subject is the application's (or its user's) string: escaped, so that a
        // newline in it cannot start a forged log line.
        match &self.subject {
            Some(subject) => write_escaped(
                f,
                format_args!("user `{subject}` has not authorized `{}`", self.provider),
            ),
            None => write_escaped(
                f,
                format_args!(
                    "requests to `{}` act for a user; name one with the `Subject` extension",
                    self.provider
                ),
            ),
        }
    }
}

impl StdError for NotAuthorized {}

/// Why an authorization callback was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthorizationErrorKind {
    /// The provider redirected back with an `error` parameter (`access_denied`, ...).
    Denied,
    /// The callback's `state` is missing or is not the one this authorization sent: it
    /// was not started here, or it is being replayed (a CSRF attempt, or a stale tab).
    StateMismatch,
    /// The callback carries neither a code nor an error.
    MissingCode,
    /// The application supplied a `state` too short to be unguessable, too long or not
    /// URL-safe, or state data too long or not printable ASCII; see
    /// [`AuthorizationRequest::state`](crate::authorize::AuthorizationRequest::state).
    /// No authorization was started.
    UnusableState,
}

/// An authorization callback that cannot be accepted, or an authorization that cannot
/// start with the `state` it was given. Never carries the code or state.
#[derive(Debug, Clone)]
pub struct AuthorizationError {
    pub(crate) provider: Arc<str>,
    pub(crate) kind: AuthorizationErrorKind,
    pub(crate) error: Option<String>,
    pub(crate) description: Option<String>,
}

impl AuthorizationError {
    /// The provider the authorization was for.
    pub fn provider(&self) -> &str {
        &self.provider
    }
    /// What went wrong.
    pub fn kind(&self) -> AuthorizationErrorKind {
        self.kind
    }
    /// The provider's `error` parameter, for [`AuthorizationErrorKind::Denied`].
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
    /// The provider's `error_description`, if any. It arrives through the browser, so
    /// anyone can write it: the `state` is redacted, control characters are escaped and
    /// it is at most 256 characters. Never show it to users as if the provider said it.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
}

impl fmt::Display for AuthorizationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            AuthorizationErrorKind::Denied => {
                write_escaped(
                    f,
                    format_args!(
                        "`{}` refused the authorization: {}",
                        self.provider,
                        self.error.as_deref().unwrap_or("error")
                    ),
                )?;
                if let Some(description) = &self.description {
                    write_escaped(f, format_args!(" ({description})"))?;
                }
                Ok(())
            }
            AuthorizationErrorKind::StateMismatch => write!(
                f,
                "the callback from `{}` does not carry the state this authorization sent",
                Escaped(&self.provider)
            ),
            AuthorizationErrorKind::MissingCode => write!(
                f,
                "the callback from `{}` carries no authorization code",
                Escaped(&self.provider)
            ),
            AuthorizationErrorKind::UnusableState => write!(
                f,
                "an authorization at `{}` was given an unusable state: it takes {}-{} URL-safe characters \
                 (A-Z a-z 0-9 - . _ ~), and state data of at most {} printable ASCII characters",
                Escaped(&self.provider),
                crate::authorize::state::MIN_STATE_CHARS,
                crate::authorize::state::MAX_STATE_CHARS,
                crate::authorize::state::MAX_STATE_DATA,
            ),
        }
    }
}

impl StdError for AuthorizationError {}

/// The configuration cannot work.
#[derive(Debug, Clone)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Messages quote configuration values, which may hold anything.
        write_escaped(f, format_args!("invalid configuration: {}", self.message))
    }
}

impl StdError for ConfigError {}

/// What went wrong in a discovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiscoveryErrorKind {
    /// The metadata could not be fetched: connection refused or reset, TLS failure.
    Unreachable,
    /// The server did not answer (in full) in time.
    TimedOut,
    /// The server answered with a redirect, which discovery never follows.
    Redirected,
    /// The server answered with a status other than `200` (`404` at every location
    /// looked at, a `500`, ...).
    Status,
    /// The document is larger than the bound.
    TooLarge,
    /// The answer is not a metadata document: not JSON, not an object, a field of the
    /// wrong type, `issuer` or `token_endpoint` missing, an endpoint that is not an
    /// absolute URL.
    Malformed,
    /// The document describes another issuer than the one asked for (RFC 8414 §3.3):
    /// nothing in it is used.
    IssuerMismatch,
    /// An endpoint in the document is plain `http` to a host other than loopback, or of
    /// another scheme.
    InsecureEndpoint,
}

/// A discovery failed; see [`discovery`](crate::discovery).
#[derive(Debug, Clone)]
pub struct DiscoveryError {
    pub(crate) issuer: Arc<str>,
    pub(crate) url: Arc<str>,
    pub(crate) kind: DiscoveryErrorKind,
    pub(crate) status: Option<StatusCode>,
    pub(crate) detail: Option<String>,
    pub(crate) after: Option<Duration>,
    pub(crate) source: Option<Arc<dyn StdError + Send + Sync>>,
}

impl DiscoveryError {
    /// The issuer discovery was asked for.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// The metadata URL the failure happened at.
    pub fn url(&self) -> &str {
        &self.url
    }
    /// What went wrong.
    pub fn kind(&self) -> DiscoveryErrorKind {
        self.kind
    }
    /// The HTTP status of the answer, when one came.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }
    /// More about it, when there is more: the `issuer` the document named (for
    /// [`IssuerMismatch`](DiscoveryErrorKind::IssuerMismatch)), the field and URL
    /// refused, what was malformed. Text from the server is escaped and capped to 256
    /// characters.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }
    /// The timeout that elapsed, for [`TimedOut`](DiscoveryErrorKind::TimedOut).
    pub fn after(&self) -> Option<Duration> {
        self.after
    }
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            DiscoveryErrorKind::Unreachable => "could not be reached",
            DiscoveryErrorKind::TimedOut => "timed out",
            DiscoveryErrorKind::Redirected => "redirected, which discovery does not follow",
            DiscoveryErrorKind::Status => "did not answer with the document",
            DiscoveryErrorKind::TooLarge => "answered with a document too large",
            DiscoveryErrorKind::Malformed => "answered with an unusable document",
            DiscoveryErrorKind::IssuerMismatch => "answered with the metadata of another issuer",
            DiscoveryErrorKind::InsecureEndpoint => "names an endpoint that is not https",
        };
        write_escaped(
            f,
            format_args!("discovery of `{}`: `{}` {what}", self.issuer, self.url),
        )?;
        if let Some(status) = self.status {
            write!(f, " ({})", status.as_u16())?;
        }
        if let Some(after) = self.after {
            write!(f, " after {} ms", after.as_millis())?;
        }
        if let Some(detail) = &self.detail {
            write_escaped(f, format_args!(": {detail}"))?;
        }
        Ok(())
    }
}

impl StdError for DiscoveryError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_code_has_its_own_type_and_nothing_else_does() {
        let codes: std::collections::HashSet<OAuthErrorCode> = crate::redact::REGISTERED_CODES
            .iter()
            .map(|code| {
                let parsed = OAuthErrorCode::parse(code);
                assert_ne!(parsed, OAuthErrorCode::Other, "{code}");
                parsed
            })
            .collect();
        assert_eq!(codes.len(), crate::redact::REGISTERED_CODES.len());
        for unknown in ["", "Invalid_Client", "invalid_client ", "invalid_token", "nope"] {
            assert_eq!(
                OAuthErrorCode::parse(unknown),
                OAuthErrorCode::Other,
                "{unknown:?}"
            );
        }
    }

    #[test]
    fn error_is_send_sync_static_and_boxes() {
        fn assert_bounds<T: Send + Sync + 'static + StdError>() {}
        assert_bounds::<Error>();
        let boxed: BoxError = Error::config("x").into();
        assert!(boxed.downcast_ref::<Error>().is_some());
    }

    #[test]
    fn a_store_error_is_a_token_error_of_its_key_provider() {
        use crate::{
            store::{StoreErrorKind, StoreOperation},
            Credential, Provider,
        };
        let key = Credential::client_credentials(
            Provider::standard("https://auth.example.com/token").name("acme"),
            "app",
            "s",
        )
        .key();
        let err: Error =
            StoreError::io(StoreOperation::Save, &key, std::io::Error::other("disk full")).into();
        assert!(matches!(&err, Error::Store(e) if e.kind() == StoreErrorKind::Io));
        assert_eq!(err.provider(), Some("acme"));
        assert!(err.is_token_error());
        assert_eq!(
            err.to_string(),
            "token store could not save the tokens of `acme/app/client_credentials/`: I/O error"
        );
        assert!(err.source().is_some());
    }

    #[test]
    fn display_names_the_provider() {
        let err = Error::OAuth(OAuthError {
            provider: "acme".into(),
            status: StatusCode::BAD_REQUEST,
            error: "invalid_grant".into(),
            description: Some("refresh token expired".into()),
        });
        assert_eq!(
            err.to_string(),
            "token endpoint of `acme` refused the request (400): invalid_grant: refresh token expired"
        );
        assert_eq!(err.provider(), Some("acme"));
    }

    /// Every message of `err`'s chain, outermost first.
    fn chain(err: &Error) -> Vec<String> {
        let mut messages = Vec::new();
        let mut current: Option<&(dyn StdError + 'static)> = Some(err);
        while let Some(e) = current {
            messages.push(e.to_string());
            current = e.source();
        }
        messages
    }

    #[test]
    fn a_printed_chain_shows_each_message_once() {
        let refused = OAuthError {
            provider: "acme".into(),
            status: StatusCode::BAD_REQUEST,
            error: "invalid_grant".into(),
            description: None,
        };
        let cases = [
            (
                Error::inner(std::io::Error::other("connection reset")),
                vec!["inner service error", "connection reset"],
            ),
            (
                Error::Unreachable(UnreachableError {
                    provider: "acme".into(),
                    backoff: None,
                    source: Some(Arc::new(std::io::Error::other("connection refused"))),
                }),
                vec![
                    "token endpoint of `acme` could not be reached",
                    "connection refused",
                ],
            ),
            (
                Error::ReauthorizationRequired(ReauthorizationRequired {
                    provider: "acme".into(),
                    grant: Some(RefusedGrant::RefreshToken),
                    cause: Some(refused.clone()),
                }),
                vec![
                    "the refresh token for `acme` was refused; re-authorization required",
                    "token endpoint of `acme` refused the request (400): invalid_grant",
                ],
            ),
            (
                Error::OAuth(refused),
                vec!["token endpoint of `acme` refused the request (400): invalid_grant"],
            ),
            (
                Error::config("bad token URL"),
                vec!["invalid configuration: bad token URL"],
            ),
        ];
        for (err, expected) in cases {
            assert_eq!(chain(&err), expected, "{err:?}");
        }
    }
}
