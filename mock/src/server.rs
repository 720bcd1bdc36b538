//! The server itself: builder, accept loop, routing and the test-facing
//! controls.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
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

use crate::authorize;
use crate::body::not_found;
use crate::client_auth::AcceptedClientAuth;
use crate::counters::{GrantKind, MockCounters};
use crate::dialect::{ClientAuthRule, DialectRules, MockDialect, RefreshRule, RevocationEndpoint, ScopeRule};
use crate::faults::{Fault, ResetConnection};
use crate::json_rpc;
use crate::resource;
use crate::revoke;
use crate::scope::Scope;
use crate::state::{random_string, GrantRecord, IssuedCode, ServerConfig, ServerState};
use crate::token;

/// Client registered when the builder was given none.
const DEFAULT_CLIENT: (&str, &str) = ("client", "secret");

/// Resource owner registered when the builder was given none.
const DEFAULT_USER: (&str, &str) = ("alice", "alice-password");

/// A running mock OAuth 2.0 authorization server and protected resource.
///
/// See the [module documentation](super) for what it serves. Start one with
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

/// Configures and starts a [`MockServer`].
///
/// Created by [`MockServer::builder`] (the standard server) or by one of the
/// provider emulators' constructors, which preset the dialect. Without
/// further configuration the server knows:
///
/// * one confidential client, `client` with the secret `secret`;
/// * one resource owner, `alice` with the password `alice-password`, as whom
///   the authorization endpoint approves every request;
/// * the scopes `read` and `write`;
/// * access tokens that live one hour, and authorization codes that live ten
///   minutes (five on iOFFICE, as its document says).
///
/// The standard server accepts HTTP Basic and body credentials and rotates
/// refresh tokens. The emulators authenticate clients and treat refresh
/// tokens as their documents say; settings a document fixes cannot be
/// changed, and each setter says where it does not apply.
#[must_use = "a builder does nothing until `start` is awaited"]
pub struct MockServerBuilder {
    dialect: MockDialect,
    clients: Vec<(String, Option<String>)>,
    users: Vec<(String, String)>,
    auth_methods: Option<Vec<AcceptedClientAuth>>,
    token_lifetime: Duration,
    code_lifetime: Option<Duration>,
    omit_expires_in: bool,
    rotate_refresh_tokens: Option<bool>,
    refresh_tokens_for_client_credentials: bool,
    allowed_scopes: Vec<String>,
    native_grindery_errors: bool,
}

impl MockServer {
    /// A builder for the standard RFC 6749 server with non-default settings.
    pub fn builder() -> MockServerBuilder {
        MockServerBuilder::new(MockDialect::Standard)
    }

    /// A builder for an emulator of Agrello's OAuth 2.0 server.
    ///
    /// * Authorization: `GET /identity/auth/oauth/authorize` with
    ///   `response_type=code`, `client_id`, `redirect_uri` and optionally
    ///   `scope` and `state`; redirects with `?code=` in the query.
    /// * Token: `POST /identity/auth/oauth/token` (the document prints only
    ///   the authorize URL; this is its conventional sibling), form body,
    ///   grants `authorization_code` (with `code` and the same
    ///   `redirect_uri`) and `refresh_token`. Clients authenticate with HTTP
    ///   Basic only: credentials in the body are `401 invalid_client`.
    ///   Answers always carry a refresh token: the document is silent on
    ///   rotation, and refresh tokens rotate unless
    ///   [`rotate_refresh_tokens(false)`](MockServerBuilder::rotate_refresh_tokens).
    /// * Resource: `/api/*` (the document names no path; this is the
    ///   conventional prefix), `Authorization: Bearer` only.
    /// * No revocation endpoint (the document defines none).
    pub fn agrello() -> MockServerBuilder {
        MockServerBuilder::new(MockDialect::Agrello)
    }

    /// A builder for an emulator of Accelo's OAuth 2.0 server for service
    /// applications.
    ///
    /// * Token: `POST /oauth2/v0/token`, also `/oauth2/v0/token.json`, form
    ///   body, the `client_credentials` grant only (any other is
    ///   `unsupported_grant_type`). Clients authenticate with HTTP Basic or,
    ///   as the documented last resort, with `client_id` and
    ///   `client_secret` parameters, in the body or in the query string;
    ///   neither is `401 invalid_client`.
    /// * Scope: optional; when present, Accelo's syntax, groups such as
    ///   `read(all),write(companies,contacts)`: `read` or `write`, then in
    ///   parentheses either `all` or a comma-separated list of resource
    ///   names (lower-case letters, digits, `_`), groups separated by commas.
    ///   Anything else is `invalid_scope`.
    ///   [`allowed_scopes`](MockServerBuilder::allowed_scopes) does not apply.
    /// * Answer: `access_token`, `token_type: "bearer"` and `expires_in` in
    ///   seconds; never a refresh token, never a `scope`.
    /// * Resource: `/api/v0/*` and `/public_api/v0/*` (both appear in the
    ///   document; [`api_url`](MockServer::api_url) uses `/api/v0`), the
    ///   token in `Authorization: Bearer` or the `_bearer_token` query
    ///   parameter.
    /// * No authorization or revocation endpoint.
    pub fn accelo() -> MockServerBuilder {
        MockServerBuilder::new(MockDialect::Accelo)
    }

    /// A builder for an emulator of Grindery's OAuth 2.0 server.
    ///
    /// * Sign-in: `GET /oauth/authorize` (the document does not print the
    ///   page's URL; this is the conventional sibling of the token path)
    ///   with `response_type=code` and `redirect_uri`; redirects with
    ///   `?code=` in the query. There is no `client_id` and no scope.
    /// * Token: `POST /oauth/token`, form body, `grant_type=authorization_code`
    ///   with `code` (a `redirect_uri` is not required, and must match if
    ///   sent), or `grant_type=refresh_token` with `refresh_token`. There is
    ///   no client authentication: a `client_id` is ignored, but an
    ///   `Authorization` header or a `client_secret` is `400
    ///   invalid_request`, since a client sending them is configured for
    ///   another provider.
    /// * Answers: the code exchange returns `access_token`, `refresh_token`,
    ///   `expires_in` (seconds) and `token_type`; a refresh returns no
    ///   `refresh_token`, and the one used keeps working (never rotated).
    /// * Resource: `/api/*` (the document names no path), `Authorization:
    ///   Bearer`. Its answer's `client_id` is `null`.
    /// * No revocation endpoint.
    ///
    /// The test helpers take `""` as the client id.
    pub fn grindery() -> MockServerBuilder {
        MockServerBuilder::new(MockDialect::Grindery)
    }

    /// A builder for an emulator of iOFFICE's OAuth 2.0 server.
    ///
    /// * Login: `GET /login.html` requires all five of `response_type=code`,
    ///   `client_id`, `redirect_uri`, `scope` and `state` (any missing is
    ///   `400`), then redirects to
    ///   `<redirect_uri>#code=…&appCode=…&state=…`: the code travels in the
    ///   URL fragment.
    /// * Direct code request: `POST /external/api/oauth2/auth` with
    ///   `Content-Type: application/json` and headers `x-auth-username`,
    ///   `x-auth-password`, `x-client-id`: `200 {"code": "…"}`, or `401` for
    ///   a wrong username or password. Such a code has no scope; the token
    ///   request's `x-scope` becomes the grant's.
    /// * Token: `POST /external/api/oauth2/token` with `Content-Type:
    ///   application/json` and every parameter as a request header:
    ///   `x-grant-type` (`authorization_code` or `refresh_token`),
    ///   `x-redirect-uri`, `x-client-id`, `x-scope` (the scope the code was
    ///   issued for, exactly) and `x-auth-code` or `x-refresh-token`. The
    ///   body must be empty (or `{}`); a form body, parameters in the body or
    ///   another content type is `400 invalid_request`. Clients are
    ///   identified by `x-client-id` alone: secrets are not checked.
    /// * Answer: `token_type`, `access_token`, `refresh_token` and
    ///   `expires_in` in **milliseconds**. Refresh tokens always rotate: the
    ///   one used is dead (`invalid_grant`). Codes are single-use and live
    ///   five minutes.
    /// * Resource: `/external/api/rest/*`, the token in the `x-access-token`
    ///   header or the `access_token` query parameter. An `Authorization:
    ///   Bearer` header is `401`, even with a live token.
    /// * Revocation: `POST /external/api/oauth2/revoke` with the access or
    ///   refresh token in an `x-token` header: `200`, and the token is dead.
    ///   A refresh token takes the access tokens issued from its grant along.
    /// * Scope: any non-empty string;
    ///   [`allowed_scopes`](MockServerBuilder::allowed_scopes) does not apply.
    pub fn ioffice() -> MockServerBuilder {
        MockServerBuilder::new(MockDialect::Ioffice)
    }

    /// A builder for an emulator of DottedSign's OAuth 2.0 server.
    ///
    /// * Authorization: `GET /v1/oauth/authorize` with `client_id`,
    ///   `response_type=code` and `redirect_uri` (and optionally `state`);
    ///   redirects with `?code=` in the query. The document defines no
    ///   scope: a `scope` parameter is ignored.
    /// * Token: `POST /v1/oauth/token`, form body, `client_id` and
    ///   `client_secret` required in the body (HTTP Basic instead is `401
    ///   invalid_client`); `authorization_code` with `code` and the same
    ///   `redirect_uri` as the authorization request, or `refresh_token`
    ///   with `refresh_token`. The document is silent on rotation: refresh
    ///   tokens stay valid unless
    ///   [`rotate_refresh_tokens(true)`](MockServerBuilder::rotate_refresh_tokens).
    /// * Resource: `/v1/*` except `/v1/oauth/*` (the document names only
    ///   its OAuth paths), `Authorization: Bearer`; an expired token is
    ///   `401`.
    /// * No revocation endpoint.
    pub fn dottedsign() -> MockServerBuilder {
        MockServerBuilder::new(MockDialect::DottedSign)
    }

    /// Starts a standard server with the default settings (see
    /// [`MockServerBuilder`]).
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

    /// Makes the authorization endpoint deny the next `n` requests that it
    /// would otherwise approve, as if the user had clicked "deny": it
    /// redirects with `error=access_denied` (and the request's `state`).
    /// Calls add up. iOFFICE's direct code request is not affected.
    pub fn deny_next_authorizations(&self, n: usize) {
        self.state.denials.fetch_add(n, Ordering::Relaxed);
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

    /// Mints a refresh token for a registered client, as if the default user
    /// had gone through an authorization flow. `scope` is in the dialect's
    /// syntax: space-delimited (and allowed) scopes, or on iOFFICE any
    /// non-empty string. It may be empty except on iOFFICE.
    ///
    /// On Grindery, which has no clients, pass `""` as `client_id`. On
    /// iOFFICE the token is not tied to a redirect URI: refreshing it takes
    /// any `x-redirect-uri`.
    ///
    /// # Panics
    ///
    /// Panics on Accelo (it issues no refresh tokens), if the client is not
    /// registered (or, on Grindery, not `""`) or if the scope is not valid.
    #[must_use]
    pub fn issue_refresh_token(&self, client_id: &str, scope: &str) -> String {
        let dialect = self.state.dialect();
        assert!(
            dialect.refresh != RefreshRule::NoRefreshTokens,
            "the {:?} mock issues no refresh tokens: its only grant is client_credentials",
            dialect.kind
        );
        let grant = self.grant_for(client_id, scope, None);
        let mut tokens = self.state.tokens();
        let family = tokens.new_family();
        tokens.issue_refresh(grant, family)
    }

    /// Mints an authorization code for a registered client, as if the
    /// default user had just approved an authorization request with this
    /// `redirect_uri` and `scope` (in the dialect's syntax, see
    /// [`issue_refresh_token`](Self::issue_refresh_token)).
    ///
    /// The code can be exchanged once, within the code lifetime (ten
    /// minutes, five on iOFFICE; see
    /// [`authorization_code_lifetime`](MockServerBuilder::authorization_code_lifetime)),
    /// by the same client presenting the same `redirect_uri`; the exchange
    /// returns an access token and a refresh token. Reusing a code is
    /// answered with `invalid_grant`; tokens already issued from it stay
    /// valid.
    ///
    /// On Grindery, which has no clients, pass `""` as `client_id`.
    ///
    /// # Panics
    ///
    /// Panics on Accelo (it has no user flow), if the client is not
    /// registered (or, on Grindery, not `""`) or if the scope is not valid.
    #[must_use]
    pub fn issue_authorization_code(&self, client_id: &str, redirect_uri: &str, scope: &str) -> String {
        let dialect = self.state.dialect();
        assert!(
            dialect.authorize.is_some(),
            "the {:?} mock has no authorization codes: its only grant is client_credentials",
            dialect.kind
        );
        let grant = self.grant_for(client_id, scope, Some(redirect_uri));
        let code = IssuedCode::new(grant, self.state.config.code_lifetime);
        self.state.tokens().issue_code(code)
    }

    /// How many issued access tokens are neither expired nor revoked.
    #[must_use]
    pub fn active_access_tokens(&self) -> usize {
        self.state.tokens().active_access_tokens()
    }

    /// A grant to the default user, for the test helpers.
    fn grant_for(&self, client_id: &str, scope: &str, redirect_uri: Option<&str>) -> GrantRecord {
        let config = &self.state.config;
        let dialect = config.dialect;
        let client_id = if dialect.client_auth == ClientAuthRule::NoClients {
            assert!(
                client_id.is_empty(),
                "the {:?} mock has no client ids: pass \"\", not {client_id:?}",
                dialect.kind
            );
            Arc::from("")
        } else {
            let Some((client_id, _)) = config.client(client_id) else {
                panic!("client {client_id:?} is not registered with the mock server");
            };
            Arc::clone(client_id)
        };
        let scope = if scope.is_empty() && dialect.scope != ScopeRule::Opaque {
            Scope::default()
        } else {
            dialect
                .scope
                .parse(scope, &config.allowed_scopes)
                .unwrap_or_else(|reason| panic!("invalid scope {scope:?}: {reason}"))
        };
        GrantRecord {
            client_id,
            subject: config.default_user().cloned(),
            scope,
            redirect_uri: redirect_uri.map(str::to_owned),
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
    fn new(dialect: MockDialect) -> Self {
        MockServerBuilder {
            dialect,
            clients: Vec::new(),
            users: Vec::new(),
            auth_methods: None,
            token_lifetime: Duration::from_secs(3600),
            code_lifetime: None,
            omit_expires_in: false,
            rotate_refresh_tokens: None,
            refresh_tokens_for_client_credentials: false,
            allowed_scopes: vec!["read".to_owned(), "write".to_owned()],
            native_grindery_errors: false,
        }
    }

    /// Registers a confidential client. May be called several times; a
    /// later registration of the same id replaces the earlier one.
    ///
    /// When no client at all is registered, the server knows the
    /// confidential client `client` with the secret `secret`. Grindery has
    /// no clients and ignores registrations; iOFFICE identifies clients by
    /// id and never checks their secrets.
    pub fn client(mut self, id: impl Into<String>, secret: impl Into<String>) -> Self {
        self.clients.push((id.into(), Some(secret.into())));
        self
    }

    /// Registers a public client: it has no secret and identifies itself with
    /// the `client_id` parameter alone. Public clients may use the
    /// `refresh_token` and `authorization_code` grants, not
    /// `client_credentials`.
    ///
    /// On the standard server, unless [`client_auth`](Self::client_auth) is
    /// called, registering a public client adds [`AcceptedClientAuth::None`]
    /// to the accepted methods. Agrello, Accelo and DottedSign require a
    /// secret on every token request, so a public client cannot get tokens
    /// there.
    pub fn public_client(mut self, id: impl Into<String>) -> Self {
        self.clients.push((id.into(), None));
        self
    }

    /// Registers a resource owner. May be called several times; a later
    /// registration of the same name replaces the earlier one's password.
    ///
    /// The first user registered is the one the authorization endpoint
    /// approves as, and the one the test helpers mint grants for; a
    /// `login_hint` parameter naming another registered user selects that
    /// one (an unknown name is `access_denied`). iOFFICE's direct code
    /// request checks the username and password.
    ///
    /// When no user at all is registered, the server knows `alice` with the
    /// password `alice-password`.
    pub fn user(mut self, username: impl Into<String>, password: impl Into<String>) -> Self {
        let (username, password) = (username.into(), password.into());
        match self.users.iter_mut().find(|(name, _)| *name == username) {
            Some(user) => user.1 = password,
            None => self.users.push((username, password)),
        }
        self
    }

    /// Sets the client authentication methods the token endpoint accepts.
    /// A request using any other method is answered with `invalid_client`.
    ///
    /// Defaults to [`Basic`](AcceptedClientAuth::Basic) and
    /// [`Body`](AcceptedClientAuth::Body), plus
    /// [`None`](AcceptedClientAuth::None) when a public client is registered.
    ///
    /// Standard server only: the provider emulators authenticate clients as
    /// their documents say, and ignore this setting.
    pub fn client_auth(mut self, methods: &[AcceptedClientAuth]) -> Self {
        self.auth_methods = Some(methods.to_vec());
        self
    }

    /// Sets how long access tokens stay valid (default one hour).
    ///
    /// The server honours the exact duration; `expires_in` announces it in
    /// whole seconds, rounded down but at least 1 (on iOFFICE, in whole
    /// milliseconds, at least 1). Sub-second lifetimes are therefore a way
    /// to have tokens expire before the client expects, and
    /// [`Duration::ZERO`] issues tokens that are dead on arrival.
    pub fn token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    /// Sets how long authorization codes can be redeemed: ten minutes by
    /// default (the most RFC 6749 §4.1.2 recommends), five minutes on
    /// iOFFICE (its document says so). [`Duration::ZERO`] issues codes that
    /// are expired on arrival.
    pub fn authorization_code_lifetime(mut self, lifetime: Duration) -> Self {
        self.code_lifetime = Some(lifetime);
        self
    }

    /// Leaves `expires_in` out of token responses (it is only RECOMMENDED by
    /// RFC 6749 §5.1). Tokens still expire after the configured lifetime.
    pub fn omit_expires_in(mut self, yes: bool) -> Self {
        self.omit_expires_in = yes;
        self
    }

    /// Whether the `refresh_token` grant rotates refresh tokens.
    ///
    /// With rotation, every refresh returns a new refresh token and the one
    /// presented stops working. Without it, the answer carries no
    /// `refresh_token` and the presented one stays valid.
    ///
    /// The default is `true` on the standard server and Agrello, `false` on
    /// DottedSign. iOFFICE always rotates and Grindery never does (their
    /// documents say so), and Accelo issues no refresh tokens: there the
    /// setting is ignored.
    pub fn rotate_refresh_tokens(mut self, yes: bool) -> Self {
        self.rotate_refresh_tokens = Some(yes);
        self
    }

    /// Whether the `client_credentials` grant also returns a refresh token
    /// (default `false`, as RFC 6749 §4.4.3 advises).
    ///
    /// Standard server only: Accelo, the one emulator with that grant,
    /// never issues refresh tokens.
    pub fn refresh_tokens_for_client_credentials(mut self, yes: bool) -> Self {
        self.refresh_tokens_for_client_credentials = yes;
        self
    }

    /// Sets the scopes clients may request (default `read` and `write`).
    /// Requesting any other scope is answered with `invalid_scope`.
    ///
    /// Does not apply to Accelo (which checks its scope syntax instead) nor
    /// iOFFICE (which takes any string). Grindery and DottedSign define no
    /// scope parameter; there it only limits the test helpers.
    pub fn allowed_scopes(mut self, scopes: &[&str]) -> Self {
        self.allowed_scopes = scopes.iter().map(|&scope| scope.to_owned()).collect();
        self
    }

    /// Grindery only: answers as Grindery's orchestrator does where it departs from
    /// RFC 6749 and RFC 6750 (off by default: the document describes the standard
    /// shape). With it on:
    ///
    /// * `POST /` is Grindery's JSON-RPC 2.0 API. Every JSON-RPC error is HTTP `400`
    ///   with the JSON-RPC response object. A token that is unknown, expired or revoked
    ///   is the error `-32602` "Invalid access token"; no token is `1` "Not
    ///   authorized"; an unknown method `-32601`; params that are not an object
    ///   `-32602` "params must be an object". The methods `listWorkflows`,
    ///   `listWorkspaces` and `isAllowedUser` (also with an `or_` prefix) answer `200`
    ///   with the caller's subject and scope. The REST resource under `/api` still
    ///   answers a dead token with `401`.
    /// * The token endpoint refuses an unknown or used code with `400
    ///   invalid_request` "Invalid code", and a dead refresh token with `400
    ///   invalid_request` "Invalid or expired refresh token", where the standard
    ///   says `invalid_grant`.
    pub fn native_grindery_errors(mut self, yes: bool) -> Self {
        self.native_grindery_errors = yes;
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
        let state = Arc::new(ServerState::new(config));
        let accept_loop = tokio::spawn(accept_loop(listener, Arc::clone(&state)));
        Ok(MockServer {
            addr,
            state,
            accept_loop,
        })
    }

    fn into_config(self) -> ServerConfig {
        let dialect = self.dialect.table();
        let mut clients: HashMap<Arc<str>, Option<String>> = self
            .clients
            .into_iter()
            .map(|(id, secret)| (Arc::from(id), secret))
            .collect();
        if clients.is_empty() {
            let (id, secret) = DEFAULT_CLIENT;
            clients.insert(Arc::from(id), Some(secret.to_owned()));
        }
        let mut users: Vec<(Arc<str>, String)> = self
            .users
            .into_iter()
            .map(|(name, password)| (Arc::from(name), password))
            .collect();
        if users.is_empty() {
            let (name, password) = DEFAULT_USER;
            users.push((Arc::from(name), password.to_owned()));
        }
        let auth_methods = auth_methods(dialect, self.auth_methods, &clients);
        let rotate_refresh_tokens = rotation(dialect, self.rotate_refresh_tokens);
        let refresh_tokens_for_client_credentials = self.refresh_tokens_for_client_credentials
            && dialect.refresh != RefreshRule::NoRefreshTokens
            && dialect.grants.contains(&GrantKind::ClientCredentials);
        if self.refresh_tokens_for_client_credentials && !refresh_tokens_for_client_credentials {
            ignored(dialect, "refresh_tokens_for_client_credentials");
        }
        let native_grindery_errors = self.native_grindery_errors && dialect.kind == MockDialect::Grindery;
        if self.native_grindery_errors && !native_grindery_errors {
            ignored(dialect, "native_grindery_errors");
        }
        ServerConfig {
            dialect,
            clients,
            auth_methods,
            users,
            token_lifetime: self.token_lifetime,
            code_lifetime: self.code_lifetime.unwrap_or(dialect.code_lifetime),
            omit_expires_in: self.omit_expires_in,
            rotate_refresh_tokens,
            refresh_tokens_for_client_credentials,
            allowed_scopes: self.allowed_scopes,
            app_code: random_string(16),
            native_grindery_errors,
        }
    }
}

/// The client authentication methods the token endpoint accepts.
fn auth_methods(
    dialect: &DialectRules,
    chosen: Option<Vec<AcceptedClientAuth>>,
    clients: &HashMap<Arc<str>, Option<String>>,
) -> Vec<AcceptedClientAuth> {
    let fixed = match dialect.client_auth {
        ClientAuthRule::Methods(None) => {
            return chosen.unwrap_or_else(|| {
                let mut methods = vec![AcceptedClientAuth::Basic, AcceptedClientAuth::Body];
                if clients.values().any(Option::is_none) {
                    methods.push(AcceptedClientAuth::None);
                }
                methods
            })
        }
        ClientAuthRule::Methods(Some(methods)) | ClientAuthRule::MethodsOrQuery(methods) => methods,
        ClientAuthRule::NoClients | ClientAuthRule::ClientIdHeader => &[],
    };
    if chosen.is_some() {
        ignored(dialect, "client_auth");
    }
    fixed.to_vec()
}

/// Whether the `refresh_token` grant rotates.
fn rotation(dialect: &DialectRules, chosen: Option<bool>) -> bool {
    let fixed = match dialect.refresh {
        RefreshRule::Configurable { rotate_by_default } => return chosen.unwrap_or(rotate_by_default),
        RefreshRule::AlwaysRotate => true,
        RefreshRule::NeverRotate | RefreshRule::NoRefreshTokens => false,
    };
    if chosen.is_some_and(|chosen| chosen != fixed) {
        ignored(dialect, "rotate_refresh_tokens");
    }
    fixed
}

/// Says, when a server starts, that a builder setting has no effect there.
fn ignored(dialect: &DialectRules, setting: &str) {
    tracing::warn!(
        dialect = ?dialect.kind,
        setting,
        "the mock's dialect fixes this behaviour; the builder setting is ignored"
    );
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

        // Hand-written so that secrets and passwords never show.
        let users: Vec<&str> = self.users.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("MockServerBuilder")
            .field("dialect", &self.dialect)
            .field("clients", &Clients(&self.clients))
            .field("users", &users)
            .field("auth_methods", &self.auth_methods)
            .field("token_lifetime", &self.token_lifetime)
            .field("authorization_code_lifetime", &self.code_lifetime)
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
async fn accept_loop(listener: TcpListener, state: Arc<ServerState>) {
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

async fn serve_connection(stream: TcpStream, peer: SocketAddr, state: Arc<ServerState>) {
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

/// The endpoints a dialect serves.
enum Endpoint {
    Token,
    Authorize,
    DirectCode,
    Revoke(RevocationEndpoint),
    Resource,
    JsonRpc,
    NotFound,
}

impl Endpoint {
    fn of(state: &ServerState, method: &http::Method, path: &str) -> Self {
        let dialect = state.dialect();
        if state.config.native_grindery_errors && path == "/" && method == http::Method::POST {
            Endpoint::JsonRpc
        } else if dialect.token_paths.contains(&path) {
            Endpoint::Token
        } else if dialect.authorize.as_ref().is_some_and(|a| a.path == path) {
            Endpoint::Authorize
        } else if dialect.direct_code_path == Some(path) {
            Endpoint::DirectCode
        } else if let Some(revocation) = dialect.revocation.filter(|r| r.path() == path) {
            Endpoint::Revoke(revocation)
        } else if dialect.api.serves(path) {
            Endpoint::Resource
        } else {
            Endpoint::NotFound
        }
    }
}

async fn route(
    state: Arc<ServerState>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ResetConnection> {
    let dialect = state.dialect();
    match Endpoint::of(&state, request.method(), request.uri().path()) {
        Endpoint::Token => token::handle(&state, request).await,
        Endpoint::Authorize => match &dialect.authorize {
            Some(spec) => Ok(authorize::handle(&state, spec, &request)),
            None => Ok(not_found()),
        },
        Endpoint::DirectCode => Ok(authorize::direct_code(&state, request).await),
        Endpoint::Revoke(revocation) => Ok(revoke::handle(&state, revocation, request).await),
        Endpoint::Resource => Ok(resource::handle(&state, request).await),
        Endpoint::JsonRpc => Ok(json_rpc::handle(&state, request).await),
        Endpoint::NotFound => Ok(not_found()),
    }
}
