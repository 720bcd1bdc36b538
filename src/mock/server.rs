//! The server itself: builder, accept loop, routing and the test-facing
//! controls.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::body::not_found;
use super::client_auth::ClientAuthMethod;
use super::counters::MockCounters;
use super::faults::{Fault, ResetConnection};
use super::resource;
use super::state::{Config, Grant, Scope, State};
use super::token::{self, TOKEN_PATH};

/// Client registered when the builder was given none.
const DEFAULT_CLIENT: (&str, &str) = ("client", "secret");

/// A running mock OAuth 2.0 authorization server and protected resource.
///
/// See the [module documentation](super) for what it serves. Start one with
/// [`MockServer::start`] or [`MockServer::builder`]; dropping it shuts it
/// down.
///
/// All methods take `&self`, so the server can be shared between tasks
/// behind an [`Arc`].
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<State>,
    accept_loop: JoinHandle<()>,
}

/// Configures and starts a [`MockServer`].
///
/// Created by [`MockServer::builder`]. Without further configuration the
/// server knows one confidential client, `client` with the secret `secret`,
/// accepts HTTP Basic and body credentials, allows the scopes `read` and
/// `write`, issues access tokens that live one hour and rotates refresh
/// tokens.
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct MockServerBuilder {
    clients: Vec<(String, Option<String>)>,
    auth_methods: Option<Vec<ClientAuthMethod>>,
    token_lifetime: Duration,
    omit_expires_in: bool,
    rotate_refresh_tokens: bool,
    refresh_tokens_for_client_credentials: bool,
    allowed_scopes: Vec<String>,
}

impl MockServer {
    /// A builder for a server with non-default settings.
    pub fn builder() -> MockServerBuilder {
        MockServerBuilder {
            clients: Vec::new(),
            auth_methods: None,
            token_lifetime: Duration::from_secs(3600),
            omit_expires_in: false,
            rotate_refresh_tokens: true,
            refresh_tokens_for_client_credentials: false,
            allowed_scopes: vec!["read".to_owned(), "write".to_owned()],
        }
    }

    /// Starts a server with the default settings (see [`MockServerBuilder`]).
    ///
    /// # Errors
    ///
    /// Fails if no port can be bound on `127.0.0.1`.
    ///
    /// # Panics
    ///
    /// Panics when called outside a Tokio runtime with I/O and time enabled.
    pub async fn start() -> io::Result<MockServer> {
        Self::builder().start().await
    }

    /// The server's origin, `http://127.0.0.1:PORT`, without a trailing
    /// slash.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of the token endpoint, `http://127.0.0.1:PORT/oauth/token`.
    #[must_use]
    pub fn token_url(&self) -> String {
        format!("http://{}{TOKEN_PATH}", self.addr)
    }

    /// The URL of a protected resource: `path` (which should start with a
    /// `/`) appended to `http://127.0.0.1:PORT/api`. The path may carry a
    /// query string.
    ///
    /// # Panics
    ///
    /// Panics if `path` is neither empty nor starts with `/`.
    #[must_use]
    pub fn api_url(&self, path: &str) -> String {
        assert!(
            path.is_empty() || path.starts_with('/'),
            "resource paths start with '/', got {path:?}"
        );
        format!("http://{}/api{path}", self.addr)
    }

    /// The address the server listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn counters(&self) -> MockCounters {
        self.state.counters.snapshot()
    }

    /// Sets every counter back to zero and forgets recorded bodies.
    ///
    /// Token requests still in flight keep counting as in flight, so
    /// [`MockCounters::max_concurrent_token_requests`] includes them again
    /// as soon as another token request arrives.
    pub fn reset_counters(&self) {
        self.state.counters.reset();
    }

    /// Makes each of the next `n` token requests fail with `fault`.
    ///
    /// Calls queue up: faults requested earlier are used first. Faults are
    /// applied before any validation and count towards
    /// [`MockCounters::token_errors`].
    pub fn fail_next_token_requests(&self, n: usize, fault: Fault) {
        self.state.faults.push(n, fault);
    }

    /// Revokes every access token issued so far: the protected resource
    /// answers `401` with `error="invalid_token"` to all of them. Refresh
    /// tokens stay valid, and tokens issued afterwards work normally.
    pub fn revoke_all_access_tokens(&self) {
        self.state.tokens().revoke_all_access_tokens();
    }

    /// Delays every token endpoint answer (faults included) by `delay`.
    /// [`Duration::ZERO`] turns the delay off.
    pub fn set_token_latency(&self, delay: Duration) {
        self.state.token_latency.set(delay);
    }

    /// Delays every protected resource answer by `delay`.
    /// [`Duration::ZERO`] turns the delay off.
    pub fn set_resource_latency(&self, delay: Duration) {
        self.state.resource_latency.set(delay);
    }

    /// Mints a refresh token for a registered client, as if it had gone
    /// through an authorization flow. `scope` is space-delimited and may be
    /// empty.
    ///
    /// # Panics
    ///
    /// Panics if the client is not registered or the scope is not allowed.
    #[must_use]
    pub fn issue_refresh_token(&self, client_id: &str, scope: &str) -> String {
        let grant = self.grant_for(client_id, scope);
        self.state.tokens().issue_refresh(grant)
    }

    /// Mints an authorization code for a registered client, as if the
    /// resource owner had just approved an authorization request with this
    /// `redirect_uri` and `scope`.
    ///
    /// The code can be exchanged once, within ten minutes, by the same client
    /// presenting the same `redirect_uri`; the exchange returns an access
    /// token and a refresh token. Reusing a code is answered with
    /// `invalid_grant`; tokens already issued from it stay valid.
    ///
    /// # Panics
    ///
    /// Panics if the client is not registered or the scope is not allowed.
    #[must_use]
    pub fn issue_authorization_code(&self, client_id: &str, redirect_uri: &str, scope: &str) -> String {
        let grant = self.grant_for(client_id, scope);
        self.state.tokens().issue_code(grant, redirect_uri.to_owned())
    }

    /// How many issued access tokens are neither expired nor revoked.
    #[must_use]
    pub fn active_access_tokens(&self) -> usize {
        self.state.tokens().active_access_tokens()
    }

    fn grant_for(&self, client_id: &str, scope: &str) -> Grant {
        let config = &self.state.config;
        let Some((client_id, _)) = config.client(client_id) else {
            panic!("client {client_id:?} is not registered with the mock server");
        };
        let scope = Scope::parse(scope, &config.allowed_scopes)
            .unwrap_or_else(|reason| panic!("invalid scope {scope:?}: {reason}"));
        Grant {
            client_id: Arc::clone(client_id),
            scope,
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        // The accept loop owns the connection tasks; aborting it drops them.
        self.accept_loop.abort();
    }
}

impl fmt::Debug for MockServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockServer")
            .field("addr", &self.addr)
            .field("config", &self.state.config)
            .finish_non_exhaustive()
    }
}

impl MockServerBuilder {
    /// Registers a confidential client. May be called several times; a
    /// later registration of the same id replaces the earlier one.
    ///
    /// When no client at all is registered, the server knows the
    /// confidential client `client` with the secret `secret`.
    pub fn client(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.clients.push((id.into(), Some(secret.into())));
        self
    }

    /// Registers a public client: it has no secret and identifies itself with
    /// the `client_id` parameter alone. Public clients may use the
    /// `refresh_token` and `authorization_code` grants, not
    /// `client_credentials`.
    ///
    /// Unless [`client_auth`](Self::client_auth) is called, registering a
    /// public client adds [`ClientAuthMethod::None`] to the accepted methods.
    pub fn public_client(mut self, id: impl Into<String>) -> Self {
        self.clients.push((id.into(), None));
        self
    }

    /// Sets the client authentication methods the token endpoint accepts.
    /// A request using any other method is answered with `invalid_client`.
    ///
    /// Defaults to [`Basic`](ClientAuthMethod::Basic) and
    /// [`Body`](ClientAuthMethod::Body), plus
    /// [`None`](ClientAuthMethod::None) when a public client is registered.
    pub fn client_auth(mut self, methods: &[ClientAuthMethod]) -> Self {
        self.auth_methods = Some(methods.to_vec());
        self
    }

    /// Sets how long access tokens stay valid (default one hour).
    ///
    /// The server honours the exact duration; `expires_in` announces it in
    /// whole seconds, rounded down but at least 1. Sub-second lifetimes are
    /// therefore a way to have tokens expire before the client expects.
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// Leaves `expires_in` out of token responses (it is only RECOMMENDED by
    /// RFC 6749 §5.1). Tokens still expire after the configured lifetime.
    pub fn omit_expires_in(mut self, yes: bool) -> Self {
        self.omit_expires_in = yes;
        self
    }

    /// Whether the `refresh_token` grant rotates refresh tokens (default
    /// `true`).
    ///
    /// With rotation, every refresh returns a new refresh token and the one
    /// presented stops working. Without it, the answer carries no
    /// `refresh_token` and the presented one stays valid.
    pub fn rotate_refresh_tokens(mut self, yes: bool) -> Self {
        self.rotate_refresh_tokens = yes;
        self
    }

    /// Whether the `client_credentials` grant also returns a refresh token
    /// (default `false`, as RFC 6749 §4.4.3 advises).
    pub fn refresh_tokens_for_client_credentials(mut self, yes: bool) -> Self {
        self.refresh_tokens_for_client_credentials = yes;
        self
    }

    /// Sets the scopes clients may request (default `read` and `write`).
    /// Requesting any other scope is answered with `invalid_scope`.
    pub fn allowed_scopes(mut self, scopes: &[&str]) -> Self {
        self.allowed_scopes = scopes.iter().map(|&scope| scope.to_owned()).collect();
        self
    }

    /// Binds a port on `127.0.0.1` and starts serving on the current Tokio
    /// runtime.
    ///
    /// # Errors
    ///
    /// Fails if no port can be bound.
    ///
    /// # Panics
    ///
    /// Panics when called outside a Tokio runtime with I/O and time enabled.
    pub async fn start(self) -> io::Result<MockServer> {
        let config = self.into_config();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        tracing::debug!(%addr, ?config, "mock OAuth 2.0 server listening");
        let state = Arc::new(State::new(config));
        let accept_loop = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Ok(MockServer {
            addr,
            state,
            accept_loop,
        })
    }

    fn into_config(self) -> Config {
        let mut clients: HashMap<Arc<str>, Option<String>> = self
            .clients
            .into_iter()
            .map(|(id, secret)| (Arc::from(id), secret))
            .collect();
        if clients.is_empty() {
            let (id, secret) = DEFAULT_CLIENT;
            clients.insert(Arc::from(id), Some(secret.to_owned()));
        }
        let auth_methods = self.auth_methods.unwrap_or_else(|| {
            let mut methods = vec![ClientAuthMethod::Basic, ClientAuthMethod::Body];
            if clients.values().any(Option::is_none) {
                methods.push(ClientAuthMethod::None);
            }
            methods
        });
        Config {
            clients,
            auth_methods,
            token_lifetime: self.token_lifetime,
            omit_expires_in: self.omit_expires_in,
            rotate_refresh_tokens: self.rotate_refresh_tokens,
            refresh_tokens_for_client_credentials: self.refresh_tokens_for_client_credentials,
            allowed_scopes: self.allowed_scopes,
        }
    }
}

impl fmt::Debug for MockServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Clients<'a>(&'a [(String, Option<String>)]);

        impl fmt::Debug for Clients<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(id, secret)| {
                        let kind = if secret.is_some() {
                            "confidential"
                        } else {
                            "public"
                        };
                        (id, kind)
                    }))
                    .finish()
            }
        }

        f.debug_struct("MockServerBuilder")
            .field("clients", &Clients(&self.clients))
            .field("auth_methods", &self.auth_methods)
            .field("token_lifetime", &self.token_lifetime)
            .field("omit_expires_in", &self.omit_expires_in)
            .field("rotate_refresh_tokens", &self.rotate_refresh_tokens)
            .field(
                "refresh_tokens_for_client_credentials",
                &self.refresh_tokens_for_client_credentials,
            )
            .field("allowed_scopes", &self.allowed_scopes)
            .finish()
    }
}

/// Accepts connections until the task is aborted. Connection tasks live in a
/// [`JoinSet`] owned by this future, so aborting it aborts them all.
async fn accept_loop(listener: TcpListener, state: Arc<State>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(serve_connection(stream, peer, Arc::clone(&state)));
                }
                Err(error) => {
                    // Typically out of file descriptors; give it a moment.
                    tracing::warn!(%error, "mock server failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = finished {
                    if error.is_panic() {
                        tracing::error!(%error, "mock server connection task panicked");
                    }
                }
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, peer: SocketAddr, state: Arc<State>) {
    // Latency tests measure the server, not Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |request| route(Arc::clone(&state), request));
    let served = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(error) = served {
        tracing::debug!(%peer, %error, "mock server connection closed with an error");
    }
}

async fn route(
    state: Arc<State>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ResetConnection> {
    let path = request.uri().path();
    if path == TOKEN_PATH {
        token::handle(&state, request).await
    } else if resource::is_resource_path(path) {
        Ok(resource::handle(&state, request).await)
    } else {
        Ok(not_found())
    }
}
