//! The running server: its address and endpoints' URLs, the accept loop it owns, and
//! shutdown on drop. Steering lives in `steering`, construction in `emulators` and
//! `builder`.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::dialect::MockDialect;
use crate::listener::accept_loop;
use crate::state::{ServerConfig, ServerState};

/// A running mock OAuth 2.0 authorization server and protected resource.
///
/// See the [crate documentation](crate) for what it serves. Start one with
/// [`MockServer::start`], [`MockServer::builder`] or one of the provider
/// emulators ([`MockServer::agrello`], [`accelo`](MockServer::accelo),
/// [`grindery`](MockServer::grindery), [`ioffice`](MockServer::ioffice),
/// [`dottedsign`](MockServer::dottedsign)); dropping it shuts it down.
///
/// All methods take `&self`, so the server can be shared between tasks
/// behind an [`Arc`].
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<ServerState>,
    accept_loop: JoinHandle<()>,
}

impl MockServer {
    /// Binds a port on `127.0.0.1` and serves `config` on the current Tokio runtime.
    pub(crate) async fn serve(mut config: ServerConfig) -> io::Result<MockServer> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        config.base_url = format!("http://{addr}");
        tracing::debug!(%addr, ?config, "mock OAuth 2.0 server listening");
        let state = Arc::new(ServerState::new(config));
        let accept_loop = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Ok(MockServer {
            addr,
            state,
            accept_loop,
        })
    }

    /// What the server knows and counts, for the steering methods.
    pub(crate) fn state(&self) -> &ServerState {
        &self.state
    }

    /// The dialect this server speaks.
    #[must_use]
    pub fn dialect(&self) -> MockDialect {
        self.state.dialect().kind
    }

    /// The server's origin, `http://127.0.0.1:PORT`, without a trailing
    /// slash.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of the token endpoint, e.g.
    /// `http://127.0.0.1:PORT/oauth/token` on the standard server.
    #[must_use]
    pub fn token_url(&self) -> String {
        self.url(self.state.dialect().token_paths[0])
    }

    /// The URL of the authorization endpoint (the page a browser is sent
    /// to), without a query. `None` on Accelo, which has no user flow.
    ///
    /// On the standard server this is `/authorize`.
    #[must_use]
    pub fn authorize_url(&self) -> Option<String> {
        let authorize = self.state.dialect().authorize.as_ref()?;
        Some(self.url(authorize.path))
    }

    /// The URL of the revocation endpoint: RFC 7009's `/oauth/revoke` on the
    /// standard server, `/external/api/oauth2/revoke` on iOFFICE, `None`
    /// elsewhere (those documents define none).
    #[must_use]
    pub fn revocation_url(&self) -> Option<String> {
        let revocation = self.state.dialect().revocation?;
        Some(self.url(revocation.path()))
    }

    /// The URL of the standard server's metadata document (RFC 8414),
    /// `/.well-known/oauth-authorization-server`; `None` on the emulators and when
    /// [`serve_metadata(false)`](crate::MockServerBuilder::serve_metadata). Its issuer
    /// is [`base_url`](Self::base_url) unless
    /// [`metadata_issuer`](crate::MockServerBuilder::metadata_issuer) says otherwise.
    #[must_use]
    pub fn metadata_url(&self) -> Option<String> {
        self.state
            .serves_metadata()
            .then(|| self.url(crate::metadata::PATH))
    }

    /// The URL of iOFFICE's direct code request,
    /// `/external/api/oauth2/auth`; `None` on every other dialect.
    #[must_use]
    pub fn direct_code_url(&self) -> Option<String> {
        let path = self.state.dialect().direct_code_path?;
        Some(self.url(path))
    }

    /// The URL of a protected resource: `path` (which should start with a
    /// `/`) appended to the dialect's API prefix. The path may carry a query
    /// string.
    ///
    /// | dialect | prefix |
    /// | --- | --- |
    /// | standard, Agrello, Grindery | `/api` |
    /// | Accelo | `/api/v0` (`/public_api/v0` is served too) |
    /// | iOFFICE | `/external/api/rest` |
    /// | DottedSign | `/v1` (except `/v1/oauth`) |
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
        format!(
            "http://{}{}{path}",
            self.addr,
            self.state.dialect().api.prefixes[0]
        )
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The address the server listens on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
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
