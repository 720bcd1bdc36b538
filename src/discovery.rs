//! Discovery: a provider configured from its authorization server's metadata (RFC 8414,
//! OpenID Connect Discovery 1.0).
//!
//! [`Provider::discover`] fetches the metadata document of an issuer, checks that the
//! document names that very issuer, and returns a [`Provider`] with the token,
//! authorization and revocation endpoints, the client authentication and PKCE the
//! document announces. [`Discovery`] is the same with its bounds adjustable.
//!
//! # Where the document is looked for
//!
//! First at RFC 8414's location, `/.well-known/oauth-authorization-server` inserted
//! between the issuer's host and its path (§3.1: `https://as.example/tenant` is described
//! at `https://as.example/.well-known/oauth-authorization-server/tenant`); then, only if
//! that answers `404` or `410`, at OpenID Connect Discovery's location,
//! `/.well-known/openid-configuration` appended to the issuer (§4). RFC 8414 first
//! because this crate is an OAuth 2.0 client and that is the OAuth document; the
//! fallback covers the many servers that publish only the OpenID one. Any other failure
//! of the first request (a timeout, a mismatched issuer, a redirect) is reported as it
//! is, never hidden behind a second attempt.
//!
//! # What is checked
//!
//! - The issuer must be an absolute `https` URL without query or fragment (plain `http`
//!   only to loopback hosts, as for every URL the crate sends to).
//! - The document's `issuer` must equal the issuer asked for, byte for byte (RFC 8414
//!   §3.3, OpenID Connect Discovery §4.3): a server that describes another issuer is
//!   either misconfigured or mixing up clients, and nothing it says is used.
//! - Every endpoint the provider is given must be an absolute `https` URL (plain `http`
//!   only to loopback hosts); `token_endpoint` must be present.
//! - No redirect is followed: a `3xx` answer is an error. The default transport never
//!   follows redirects; a custom transport must not either.
//! - Each request is bounded in time (default 10 s) and the answer in size (default
//!   64 KiB).
//!
//! Each failure is an [`Error::Discovery`] whose
//! [`kind`](crate::error::DiscoveryError::kind) says what went wrong. Text taken from the
//! document (a mismatched issuer, a refused URL) is escaped and capped before an error
//! keeps it.
//!
//! # What the provider gets
//!
//! - [`token_url`](Provider::token_url) from `token_endpoint`;
//! - [`authorize_url`](Provider::authorize_url) from `authorization_endpoint`;
//! - [`Revocation::Rfc7009`] from `revocation_endpoint` (client authentication as for
//!   token requests);
//! - [`client_auth`](Provider::client_auth) from `token_endpoint_auth_methods_supported`:
//!   [`ClientAuth::Basic`](crate::ClientAuth::Basic) when it lists `client_secret_basic` or is absent (RFC 8414's
//!   default), else [`ClientAuth::RequestBody`](crate::ClientAuth::RequestBody) when it lists `client_secret_post`, else
//!   [`ClientAuth::PublicClient`](crate::ClientAuth::PublicClient) when it lists `none`; otherwise, with the `jose`
//!   feature, `ClientAuth::PrivateKeyJwt` when it lists `private_key_jwt` (building the
//!   registry then asks for the client's key) and `ClientAuth::ClientSecretJwt` (HS256,
//!   or the HMAC `token_endpoint_auth_signing_alg_values_supported` lists) when it lists
//!   `client_secret_jwt`; otherwise (only methods this crate does not speak, such as
//!   `tls_client_auth`) Basic, for the application to override;
//! - [`pkce`](Provider::pkce) when `code_challenge_methods_supported` lists `S256`;
//! - the name of the issuer's host;
//! - the whole of what was read, as [`ProviderMetadata`], through
//!   [`Provider::metadata_ref`]: signing algorithms for DPoP and for JWT client
//!   authentication included.
//!
//! The API origins are not part of the metadata: add them with [`Provider::api`].
//!
//! # Keeping it fresh
//!
//! A [`CredentialRegistry`](crate::CredentialRegistry) holds its providers fixed for its
//! lifetime, so a changed endpoint reaches it by building a new one. [`Discovery::refresh`]
//! fetches the document again and returns the previous provider with the endpoints
//! replaced (its name, API origins and the settings the application chose kept); a task
//! that does so on a schedule (daily is plenty: endpoints rarely move) and swaps the
//! registry it hands out is all it takes. Give the new registry the same
//! [`TokenStore`](crate::TokenStore) as the old one and the tokens carry over.
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_oauth2::{discovery::Discovery, Provider, TokenTransport};
//!
//! # async fn demo(transport: TokenTransport) -> Result<(), tower_oauth2::Error> {
//! let provider = Provider::discover("https://auth.example.com", &transport)
//!     .await?
//!     .api("https://api.example.com");
//! assert_eq!(provider.metadata_ref().unwrap().issuer(), "https://auth.example.com");
//!
//! // Later: the same provider, with the endpoints read again.
//! let discovery = Discovery::new("https://auth.example.com", transport)
//!     .timeout(Duration::from_secs(5));
//! let provider = discovery.refresh(&provider).await?;
//!
//! // Or on a schedule: read daily, published when the document changed.
//! let mut watch = discovery.watch(provider, Duration::from_secs(24 * 3600));
//! if let Some(moved) = watch.changed().await {
//!     // Build the new registry from `moved`.
//!     # let _ = moved;
//! }
//! # Ok(())
//! # }
//! ```

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use bytes::Bytes;
use http::{header, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use serde_json::{Map, Value};

pub use crate::provider::metadata::ProviderMetadata;
use crate::{
    error::{DiscoveryError, DiscoveryErrorKind, Error},
    origin::is_loopback_host,
    redact::{without_userinfo, Escaped, Redactor},
    Provider, Revocation, TokenTransport,
};

/// The default bound on each metadata request, answer included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The default bound on a metadata document's size.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024;

/// The most characters of a server's text an error keeps.
const MAX_QUOTED_CHARS: usize = 256;

/// Fetches an issuer's metadata and builds a [`Provider`] from it; see the
/// [module documentation](self).
#[derive(Clone)]
pub struct Discovery {
    issuer: String,
    transport: TokenTransport,
    timeout: Duration,
    max_bytes: usize,
}

impl Discovery {
    /// Discovery of `issuer` (e.g. `https://auth.example.com`) through `transport`, with
    /// the default bounds: [`DEFAULT_TIMEOUT`] per request, [`DEFAULT_MAX_BYTES`] per
    /// document.
    pub fn new(issuer: impl Into<String>, transport: TokenTransport) -> Self {
        Self {
            issuer: issuer.into(),
            transport,
            timeout: DEFAULT_TIMEOUT,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    /// The most time one metadata request may take, its answer read in full
    /// (default 10 s). When the first location answers `404`, the second gets as long
    /// again.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest metadata document read (default 64 KiB); a larger one is an error.
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// The issuer, as given.
    pub fn issuer_ref(&self) -> &str {
        &self.issuer
    }

    /// The locations the metadata document is looked for at, in order: RFC 8414's, then
    /// OpenID Connect Discovery's.
    pub fn metadata_urls(&self) -> Result<[String; 2], Error> {
        let issuer = check_issuer(&self.issuer)?;
        let path = issuer.path().trim_end_matches('/');
        let scheme = issuer.scheme_str().unwrap_or("https");
        let authority = issuer.authority().map_or("", |a| a.as_str());
        Ok([
            format!("{scheme}://{authority}/.well-known/oauth-authorization-server{path}"),
            format!(
                "{}/.well-known/openid-configuration",
                self.issuer.trim_end_matches('/')
            ),
        ])
    }

    /// Fetches and checks the metadata, and builds the provider it describes.
    pub async fn fetch(&self) -> Result<Provider, Error> {
        let metadata = self.fetch_metadata().await?;
        let host = self
            .issuer
            .parse::<Uri>()
            .ok()
            .and_then(|uri| uri.host().map(str::to_owned))
            .unwrap_or_else(|| "oauth2".to_owned());
        let mut provider = Provider::standard(metadata.token_endpoint.clone())
            .name(host)
            .client_auth(metadata.client_auth())
            .pkce(metadata.supports_pkce_s256());
        provider.authorize_url = metadata.authorization_endpoint.clone();
        provider.revocation = metadata
            .revocation_endpoint
            .clone()
            .map(|url| Revocation::Rfc7009 { url });
        provider.metadata = Some(Arc::new(metadata));
        Ok(provider)
    }

    /// Fetches the metadata again and returns `previous` with the endpoints replaced:
    /// the token URL, the authorization URL, and an RFC 7009 revocation endpoint (a
    /// revocation of another kind set by the application is kept), with
    /// [`Provider::metadata_ref`] the new document. Everything else, client
    /// authentication and PKCE included, stays as `previous` has it.
    ///
    /// On failure nothing changes: keep using `previous`.
    pub async fn refresh(&self, previous: &Provider) -> Result<Provider, Error> {
        let metadata = self.fetch_metadata().await?;
        Ok(refreshed(previous, metadata))
    }

    /// Keeps `first` (usually this discovery's [`fetch`](Self::fetch)) up to date: every
    /// `every`, the metadata is fetched again as [`refresh`](Self::refresh) does, and a
    /// provider built from a document that differs from the last one is published to the
    /// returned [`DiscoveryWatch`]. A failed refresh keeps the last provider, is logged
    /// and counted, and the next period tries again. Dropping the watch stops it.
    ///
    /// A registry holds the providers it was built with: an application that follows its
    /// servers' moves builds a new registry (or layer) when
    /// [`DiscoveryWatch::changed`] says one moved. Must be called within a Tokio runtime.
    ///
    /// ```no_run
    /// # async fn demo(transport: tower_oauth2::TokenTransport) -> Result<(), tower_oauth2::BoxError> {
    /// use std::time::Duration;
    /// use tower_oauth2::discovery::Discovery;
    ///
    /// let discovery = Discovery::new("https://auth.example.com", transport);
    /// let provider = discovery.fetch().await?;
    /// let mut watch = discovery.watch(provider, Duration::from_secs(24 * 3600));
    /// while let Some(moved) = watch.changed().await {
    ///     println!("token endpoint now at {}", moved.token_url_ref());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn watch(self, first: Provider, every: Duration) -> DiscoveryWatch {
        let (sender, receiver) = tokio::sync::watch::channel(first);
        let failures = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(keep_fresh(self, sender, every, Arc::clone(&failures))).abort_handle();
        DiscoveryWatch {
            receiver,
            task,
            failures,
        }
    }

    /// Fetches and checks the metadata document, without building a provider.
    pub async fn fetch_metadata(&self) -> Result<ProviderMetadata, Error> {
        let urls = self.metadata_urls()?;
        let last = urls.len() - 1;
        for (at, url) in urls.into_iter().enumerate() {
            match self.get(&url).await {
                Ok(body) => return self.parse(url, &body),
                Err(Failure::NotFound(_)) if at < last => continue,
                Err(Failure::NotFound(status)) => {
                    return Err(self.error(&url, DiscoveryErrorKind::Status, Some(status), None))
                }
                Err(Failure::Error(err)) => return Err(err),
            }
        }
        unreachable!("the last location returns")
    }

    async fn get(&self, url: &str) -> Result<Bytes, Failure> {
        let request = Request::get(url)
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|_| {
                Failure::Error(self.error(
                    url,
                    DiscoveryErrorKind::Malformed,
                    None,
                    Some("not a valid URL".into()),
                ))
            })?;
        // Discovery's futures must be `Send` for every lifetime, to be spawned
        // (`Discovery::watch` does): rustc proved it neither of an `async` block
        // borrowing `url` here nor of `Limited`'s boxed error conversion, hence
        // `exchange` as an `async fn` of its own, reading frame by frame.
        match tokio::time::timeout(self.timeout, self.exchange(request, url)).await {
            Ok(result) => result,
            Err(_) => {
                let mut err = self.error(url, DiscoveryErrorKind::TimedOut, None, None);
                if let Error::Discovery(e) = &mut err {
                    e.after = Some(self.timeout);
                }
                Err(Failure::Error(err))
            }
        }
    }

    /// Sends the metadata request to `url` and reads the document, unbounded in time.
    async fn exchange(&self, request: Request<Full<Bytes>>, url: &str) -> Result<Bytes, Failure> {
        let response = match self.transport.send(request).await {
            Ok(response) => response,
            Err(source) => {
                let mut err = self.error(url, DiscoveryErrorKind::Unreachable, None, None);
                if let Error::Discovery(e) = &mut err {
                    e.source = Some(shared(source));
                }
                return Err(Failure::Error(err));
            }
        };
        let status = response.status();
        if status.is_redirection() {
            return Err(Failure::Error(self.error(
                url,
                DiscoveryErrorKind::Redirected,
                Some(status),
                None,
            )));
        }
        if status == StatusCode::NOT_FOUND || status == StatusCode::GONE {
            return Err(Failure::NotFound(status));
        }
        if status != StatusCode::OK {
            return Err(Failure::Error(self.error(
                url,
                DiscoveryErrorKind::Status,
                Some(status),
                None,
            )));
        }
        // Frame by frame, under the size bound (see `get` for why not `Limited`).
        let mut body = response.into_body();
        let mut document = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = match frame {
                Ok(frame) => frame,
                Err(source) => {
                    let mut err = self.error(url, DiscoveryErrorKind::Unreachable, Some(status), None);
                    if let Error::Discovery(e) = &mut err {
                        e.source = Some(shared(source));
                    }
                    return Err(Failure::Error(err));
                }
            };
            if let Ok(data) = frame.into_data() {
                if document.len() + data.len() > self.max_bytes {
                    return Err(Failure::Error(self.error(
                        url,
                        DiscoveryErrorKind::TooLarge,
                        Some(status),
                        Some(format!("larger than {} bytes", self.max_bytes)),
                    )));
                }
                document.extend_from_slice(&data);
            }
        }
        Ok(Bytes::from(document))
    }

    fn parse(&self, url: String, body: &[u8]) -> Result<ProviderMetadata, Error> {
        let malformed = |reason: String| self.error(&url, DiscoveryErrorKind::Malformed, None, Some(reason));
        let document: Map<String, Value> = match serde_json::from_slice(body) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return Err(malformed("the document is not a JSON object".into())),
            Err(_) => return Err(malformed("the body is not JSON".into())),
        };
        let string = |field: &str| -> Result<Option<&str>, Error> {
            match document.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(_) => Err(malformed(format!("`{field}` is not a string"))),
            }
        };
        let list = |field: &str| -> Result<Option<Vec<String>>, Error> {
            match document.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => Ok(s),
                        _ => Err(malformed(format!("`{field}` is not an array of strings"))),
                    })
                    .filter_map(|item| item.map(|s| is_token(s).then(|| s.clone())).transpose())
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                Some(_) => Err(malformed(format!("`{field}` is not an array of strings"))),
            }
        };

        let Some(issuer) = string("issuer")? else {
            return Err(malformed("`issuer` is missing".into()));
        };
        if issuer != self.issuer {
            return Err(self.error(
                &url,
                DiscoveryErrorKind::IssuerMismatch,
                None,
                Some(Redactor::none().text(issuer, MAX_QUOTED_CHARS)),
            ));
        }
        let endpoint = |field: &str| -> Result<Option<String>, Error> {
            let Some(value) = string(field)? else {
                return Ok(None);
            };
            let quoted = || Redactor::none().text(&without_userinfo(value), MAX_QUOTED_CHARS);
            let Ok(uri) = value.parse::<Uri>() else {
                return Err(malformed(format!("`{field}` is not a URL: {}", quoted())));
            };
            let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
                return Err(malformed(format!(
                    "`{field}` is not an absolute URL: {}",
                    quoted()
                )));
            };
            let secure = scheme.eq_ignore_ascii_case("https")
                || (scheme.eq_ignore_ascii_case("http") && is_loopback_host(host));
            if !secure {
                return Err(self.error(
                    &url,
                    DiscoveryErrorKind::InsecureEndpoint,
                    None,
                    Some(format!("`{field}` is {}", quoted())),
                ));
            }
            Ok(Some(value.to_owned()))
        };
        let Some(token_endpoint) = endpoint("token_endpoint")? else {
            return Err(malformed("`token_endpoint` is missing".into()));
        };
        let authorization_endpoint = endpoint("authorization_endpoint")?;
        let revocation_endpoint = endpoint("revocation_endpoint")?;
        let token_endpoint_auth_methods_supported = list("token_endpoint_auth_methods_supported")?;
        let token_endpoint_auth_signing_alg_values_supported =
            list("token_endpoint_auth_signing_alg_values_supported")?.unwrap_or_default();
        let revocation_endpoint_auth_methods_supported = list("revocation_endpoint_auth_methods_supported")?;
        let code_challenge_methods_supported = list("code_challenge_methods_supported")?.unwrap_or_default();
        let dpop_signing_alg_values_supported =
            list("dpop_signing_alg_values_supported")?.unwrap_or_default();
        let grant_types_supported = list("grant_types_supported")?;
        let scopes_supported = list("scopes_supported")?.unwrap_or_default();
        Ok(ProviderMetadata {
            url: url.clone(),
            issuer: issuer.to_owned(),
            token_endpoint,
            authorization_endpoint,
            revocation_endpoint,
            token_endpoint_auth_methods_supported,
            token_endpoint_auth_signing_alg_values_supported,
            revocation_endpoint_auth_methods_supported,
            code_challenge_methods_supported,
            dpop_signing_alg_values_supported,
            grant_types_supported,
            scopes_supported,
        })
    }

    fn error(
        &self,
        url: &str,
        kind: DiscoveryErrorKind,
        status: Option<StatusCode>,
        detail: Option<String>,
    ) -> Error {
        Error::Discovery(DiscoveryError {
            issuer: without_userinfo(&self.issuer).into(),
            url: without_userinfo(url).into(),
            kind,
            status,
            detail,
            after: None,
            source: None,
        })
    }
}

/// An error shared by the clones of the error that carries it.
fn shared(source: crate::error::BoxError) -> Arc<dyn std::error::Error + Send + Sync + 'static> {
    Arc::from(source)
}

/// `previous` with the endpoints and the document of `metadata` (see
/// [`Discovery::refresh`]).
fn refreshed(previous: &Provider, metadata: ProviderMetadata) -> Provider {
    let mut provider = previous.clone();
    provider.token_url = metadata.token_endpoint.clone();
    provider.authorize_url = metadata.authorization_endpoint.clone();
    if matches!(provider.revocation, None | Some(Revocation::Rfc7009 { .. })) {
        provider.revocation = metadata
            .revocation_endpoint
            .clone()
            .map(|url| Revocation::Rfc7009 { url });
    }
    provider.metadata = Some(Arc::new(metadata));
    provider
}

/// Refreshes `sender`'s provider every `every`, publishing it when its document changed.
async fn keep_fresh(
    discovery: Discovery,
    sender: tokio::sync::watch::Sender<Provider>,
    every: Duration,
    failures: Arc<AtomicU64>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match discovery.fetch_metadata().await {
            Ok(metadata) => {
                let provider = refreshed(&sender.borrow(), metadata);
                sender.send_if_modified(|current| {
                    let moved = current.metadata_ref() != provider.metadata_ref();
                    if moved {
                        tracing::info!(issuer = %Escaped(&without_userinfo(&discovery.issuer)), "the authorization server's metadata changed");
                        *current = provider;
                    }
                    moved
                });
            }
            Err(err) => {
                failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    issuer = %Escaped(&without_userinfo(&discovery.issuer)),
                    error = %err,
                    "refreshing the authorization server's metadata failed; keeping the last"
                );
            }
        }
    }
}

/// A provider kept up to date by [`Discovery::watch`]. Dropping it stops the refreshes.
pub struct DiscoveryWatch {
    receiver: tokio::sync::watch::Receiver<Provider>,
    task: tokio::task::AbortHandle,
    failures: Arc<AtomicU64>,
}

impl DiscoveryWatch {
    /// The provider as last discovered.
    pub fn current(&self) -> Provider {
        self.receiver.borrow().clone()
    }

    /// Waits until a refresh finds a changed document, and gives the provider built from
    /// it; `None` if the refreshing task is gone (its runtime shut down).
    pub async fn changed(&mut self) -> Option<Provider> {
        self.receiver.changed().await.ok()?;
        Some(self.receiver.borrow_and_update().clone())
    }

    /// How many refreshes failed (each kept the last provider).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

impl Drop for DiscoveryWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl fmt::Debug for DiscoveryWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscoveryWatch")
            .field(
                "issuer",
                &self
                    .receiver
                    .borrow()
                    .metadata_ref()
                    .map(ProviderMetadata::issuer),
            )
            .field("failures", &self.failures())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Discovery")
            .field("issuer", &without_userinfo(&self.issuer))
            .field("timeout", &self.timeout)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

enum Failure {
    /// `404` or `410`: the next location may have it.
    NotFound(StatusCode),
    Error(Error),
}

/// The issuer as a URL, if it is one discovery may use.
fn check_issuer(issuer: &str) -> Result<Uri, Error> {
    let shown = without_userinfo(issuer);
    let uri: Uri = issuer
        .parse()
        .map_err(|_| Error::config(format!("issuer `{shown}` is not a valid URL")))?;
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return Err(Error::config(format!(
            "issuer `{shown}` must be an absolute https URL"
        )));
    };
    if uri.query().is_some() || issuer.contains('#') {
        return Err(Error::config(format!(
            "issuer `{shown}` must have no query or fragment (RFC 8414 §2)"
        )));
    }
    let secure = scheme == "https" || (scheme == "http" && is_loopback_host(host));
    if !secure {
        return Err(Error::config(format!(
            "issuer `{shown}` must be an https URL (plain http only to loopback hosts)"
        )));
    }
    Ok(uri)
}

/// Whether a list entry is a plain token (an algorithm, a method name, a scope): short
/// printable ASCII without spaces. Anything else is dropped rather than kept.
fn is_token(s: &str) -> bool {
    (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic())
}

impl Provider {
    /// The provider `issuer`'s metadata describes, fetched through `transport` with the
    /// default bounds: see [`discovery`](crate::discovery) for where it is looked for,
    /// what is checked and what is filled in, and [`Discovery`] for other bounds.
    ///
    /// ```no_run
    /// use tower_oauth2::{Provider, TokenTransport};
    ///
    /// # async fn demo() -> Result<(), tower_oauth2::Error> {
    /// # let transport: TokenTransport = unimplemented!();
    /// let provider = Provider::discover("https://auth.example.com", &transport)
    ///     .await?
    ///     .api("https://api.example.com");
    /// # let _ = provider;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn discover(issuer: &str, transport: &TokenTransport) -> Result<Provider, Error> {
        Discovery::new(issuer, transport.clone()).fetch().await
    }

    /// The metadata this provider was discovered from, if it was.
    pub fn metadata_ref(&self) -> Option<&ProviderMetadata> {
        self.metadata.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClientAuth;

    fn transport() -> TokenTransport {
        TokenTransport::new(tower::service_fn(|_req: crate::TokenRequest| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
        }))
    }

    #[test]
    fn metadata_urls_insert_the_well_known_path_before_the_issuer_path() {
        let urls = |issuer: &str| Discovery::new(issuer, transport()).metadata_urls().unwrap();
        assert_eq!(
            urls("https://as.example"),
            [
                "https://as.example/.well-known/oauth-authorization-server",
                "https://as.example/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            urls("https://as.example/tenant/1/"),
            [
                "https://as.example/.well-known/oauth-authorization-server/tenant/1",
                "https://as.example/tenant/1/.well-known/openid-configuration"
            ]
        );
        assert_eq!(
            urls("http://127.0.0.1:8080/"),
            [
                "http://127.0.0.1:8080/.well-known/oauth-authorization-server",
                "http://127.0.0.1:8080/.well-known/openid-configuration"
            ]
        );
    }

    #[test]
    fn unusable_issuers_are_configuration_errors() {
        for issuer in [
            "http://as.example",
            "https://as.example/?x=1",
            "https://as.example/#f",
            "ftp://as.example",
            "as.example",
            "not a url",
        ] {
            let err = Discovery::new(issuer, transport()).metadata_urls().unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{issuer}: {err:?}");
        }
    }

    fn metadata(methods: Option<&[&str]>) -> ProviderMetadata {
        ProviderMetadata {
            url: String::new(),
            issuer: String::new(),
            token_endpoint: String::new(),
            authorization_endpoint: None,
            revocation_endpoint: None,
            token_endpoint_auth_methods_supported: methods.map(|m| m.iter().map(|s| s.to_string()).collect()),
            token_endpoint_auth_signing_alg_values_supported: Vec::new(),
            revocation_endpoint_auth_methods_supported: None,
            code_challenge_methods_supported: Vec::new(),
            dpop_signing_alg_values_supported: Vec::new(),
            grant_types_supported: None,
            scopes_supported: Vec::new(),
        }
    }

    #[test]
    fn client_auth_follows_the_announced_methods() {
        for (methods, expected) in [
            (None, ClientAuth::Basic),
            (
                Some(&["client_secret_post", "client_secret_basic"][..]),
                ClientAuth::Basic,
            ),
            (
                Some(&["private_key_jwt", "client_secret_post"][..]),
                ClientAuth::RequestBody,
            ),
            (Some(&["none"][..]), ClientAuth::PublicClient),
            (Some(&["none", "private_key_jwt"][..]), ClientAuth::PublicClient),
            (Some(&["tls_client_auth"][..]), ClientAuth::Basic),
        ] {
            assert_eq!(metadata(methods).client_auth(), expected, "{methods:?}");
        }
    }

    #[test]
    fn client_auth_falls_back_to_the_jwt_methods_only_with_jose() {
        #[cfg(feature = "jose")]
        use crate::jose::HmacAlgorithm;
        let only = |method: &str, algs: &[&str]| {
            let mut metadata = metadata(Some(&[method]));
            metadata.token_endpoint_auth_signing_alg_values_supported =
                algs.iter().map(|alg| alg.to_string()).collect();
            metadata.client_auth()
        };
        #[cfg(feature = "jose")]
        {
            assert_eq!(only("private_key_jwt", &[]), ClientAuth::PrivateKeyJwt);
            assert_eq!(
                only("client_secret_jwt", &[]),
                ClientAuth::ClientSecretJwt(HmacAlgorithm::Hs256)
            );
            assert_eq!(
                only("client_secret_jwt", &["ES256", "HS512", "HS384"]),
                ClientAuth::ClientSecretJwt(HmacAlgorithm::Hs384)
            );
        }
        #[cfg(not(feature = "jose"))]
        {
            assert_eq!(only("private_key_jwt", &[]), ClientAuth::Basic);
            assert_eq!(only("client_secret_jwt", &[]), ClientAuth::Basic);
        }
    }
}
