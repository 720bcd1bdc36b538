//! [`MockServerBuilder`]: the settings of a server, checked against what its dialect
//! fixes, and turned into the configuration it serves.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::clients::{AcceptedAssertionAudience, ClientKey};
use crate::counters::GrantKind;
use crate::dialect::{AcceptedClientAuth, ClientAuthRule, DialectRules, MockDialect, RefreshRule};
use crate::random::random_string;
use crate::server::MockServer;
use crate::state::{DpopConfig, MetadataConfig, ServerConfig};

/// Client registered when the builder was given none.
const DEFAULT_CLIENT: (&str, &str) = ("client", "secret");

/// Resource owner registered when the builder was given none.
const DEFAULT_USER: (&str, &str) = ("alice", "alice-password");

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
    client_keys: Vec<(String, ClientKey)>,
    users: Vec<(String, String)>,
    auth_methods: Option<Vec<AcceptedClientAuth>>,
    assertion_audience: AcceptedAssertionAudience,
    token_lifetime: Duration,
    code_lifetime: Option<Duration>,
    omit_expires_in: bool,
    rotate_refresh_tokens: Option<bool>,
    refresh_tokens_for_client_credentials: bool,
    allowed_scopes: Vec<String>,
    native_grindery_errors: bool,
    metadata: MetadataConfig,
    dpop: bool,
    dpop_nonces: bool,
    rotate_dpop_nonces_on_success: bool,
}

impl MockServerBuilder {
    pub(crate) fn new(dialect: MockDialect) -> Self {
        MockServerBuilder {
            dialect,
            clients: Vec::new(),
            client_keys: Vec::new(),
            users: Vec::new(),
            auth_methods: None,
            assertion_audience: AcceptedAssertionAudience::default(),
            token_lifetime: Duration::from_secs(3600),
            code_lifetime: None,
            omit_expires_in: false,
            rotate_refresh_tokens: None,
            refresh_tokens_for_client_credentials: false,
            allowed_scopes: vec!["read".to_owned(), "write".to_owned()],
            native_grindery_errors: false,
            metadata: MetadataConfig::default(),
            dpop: false,
            dpop_nonces: false,
            rotate_dpop_nonces_on_success: false,
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

    /// Registers a public key of client `id` for `private_key_jwt` (RFC 7523 §2.2,
    /// OpenID Connect Core §9): the client then authenticates with a JWT it signs with
    /// the private half, in the `client_assertion` parameter. May be called several
    /// times, for several keys of one client.
    ///
    /// `key` is a public JWK (a JSON object: P-256 `EC`, Ed25519 `OKP` or `RSA`) or a
    /// PEM public key (`BEGIN PUBLIC KEY`, or `BEGIN RSA PUBLIC KEY`). A JWK's `kid`
    /// is the key's id: an assertion whose header names a `kid` is checked with the
    /// key of that id only (PEM keys have none, so they check only assertions without
    /// a `kid`). A JWK's `alg`, if any, is the one algorithm the key takes; otherwise
    /// an EC key takes ES256, an Ed25519 key EdDSA, and an RSA key RS256 and PS256.
    ///
    /// A client that is not otherwise registered becomes a confidential client
    /// without a secret, which can authenticate with its key only. On the standard
    /// server, unless [`client_auth`](Self::client_auth) is called, registering a
    /// key adds [`AcceptedClientAuth::PrivateKeyJwt`] to the accepted methods. The
    /// provider emulators accept no client assertions.
    ///
    /// # Panics
    ///
    /// When `key` is neither, or is a private JWK (one with `d`, say): it is meant
    /// for tests, and a test that hands the server its private key should hear so.
    #[track_caller]
    pub fn client_public_key(mut self, id: impl Into<String>, key: impl AsRef<str>) -> Self {
        let key =
            ClientKey::parse(key.as_ref()).unwrap_or_else(|reason| panic!("client_public_key: {reason}"));
        self.client_keys.push((id.into(), key));
        self
    }

    /// Which `aud` a client assertion must name (RFC 7523 §3): the token endpoint's
    /// URL or the issuer by default. JWT client authentication only.
    pub fn assertion_audience(mut self, audience: AcceptedAssertionAudience) -> Self {
        self.assertion_audience = audience;
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
        MockServer::serve(self.into_config()).await
    }

    /// Makes the metadata document (RFC 8414) name `issuer` instead of the server's
    /// origin, as a misconfigured or mixed-up server would: a client must refuse it
    /// (RFC 8414 §3.3). Standard server only.
    pub fn metadata_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.metadata.issuer = Some(issuer.into());
        self
    }

    /// Whether the standard server serves its metadata document at
    /// `/.well-known/oauth-authorization-server` (default: yes). Without it, the path
    /// answers `404` like any other unknown path. The emulators serve none.
    pub fn serve_metadata(mut self, yes: bool) -> Self {
        self.metadata.hidden = !yes;
        self
    }

    /// Requires DPoP (RFC 9449) at the token endpoint and the resource (default off).
    /// Standard server only: the emulated providers document no DPoP.
    ///
    /// With it on:
    ///
    /// * Every token request must carry exactly one `DPoP` header holding a valid
    ///   proof: a JWS with `typ` `dpop+jwt`, an `alg` among `ES256`, `EdDSA`, `RS256`
    ///   and `PS256`, a public `jwk` (a JWK with private members is refused) under
    ///   which the signature verifies, `htm` `POST`, `htu` the token endpoint's URL
    ///   (scheme, authority and path; query and fragment ignored) whose authority is
    ///   the request's `Host` (`localhost` is not `127.0.0.1`), an `iat` within 60
    ///   seconds of the server's wall clock, a `jti` never seen before, and no `ath`.
    ///   A bad or replayed proof is `400 invalid_dpop_proof`; a request without one is
    ///   `400 invalid_grant`. Both are refused before the grant is carried out, so the
    ///   code or refresh token stays usable.
    /// * Access tokens are issued with `token_type` `DPoP`, bound to the RFC 7638
    ///   thumbprint of the proof's key. Refresh tokens are not bound: each refresh
    ///   needs a proof, and the new access token is bound to that proof's key.
    /// * The resource accepts a token only as `Authorization: DPoP <token>` with one
    ///   `DPoP` proof whose `htm` and `htu` are the request's method and URL, with
    ///   `ath` the base64url SHA-256 of the token and a key whose thumbprint is the
    ///   token's. Refusals are `401` with `WWW-Authenticate: DPoP error="invalid_token"`
    ///   (unknown or expired token, a DPoP-bound token sent as `Bearer`, another key)
    ///   or `DPoP error="invalid_dpop_proof"` (missing, bad or replayed proof); a
    ///   request without credentials gets `DPoP algs="ES256 EdDSA RS256 PS256"`.
    /// * The metadata document names the algorithms in
    ///   `dpop_signing_alg_values_supported`.
    ///
    /// Without it, `DPoP` headers are ignored, as by a server that does not know
    /// DPoP: tokens are bearer tokens. See also [`dpop_nonces`](Self::dpop_nonces)
    /// and the `dpop_*` [counters](crate::MockCounters).
    pub fn dpop(mut self, yes: bool) -> Self {
        self.dpop = yes;
        self
    }

    /// Makes the server hand out DPoP nonces (RFC 9449 §8, §9) and require them in
    /// proofs; implies [`dpop(true)`](Self::dpop). Default off.
    ///
    /// The token endpoint and the resource each have their own current nonce, which
    /// [`MockServer::rotate_dpop_nonces`] replaces (the previous one is then
    /// refused). A proof that is valid but lacks the current nonce in its `nonce`
    /// claim is answered `400 {"error":"use_dpop_nonce"}` at the token endpoint, with
    /// no `WWW-Authenticate`, and `401` with `WWW-Authenticate: DPoP
    /// error="use_dpop_nonce"` at the resource; nothing is used up. Every answer of
    /// both, successes included, carries the current nonce in `DPoP-Nonce`.
    pub fn dpop_nonces(mut self, yes: bool) -> Self {
        self.dpop_nonces = yes;
        self
    }

    /// Makes each successful answer (a token issued, a resource request authorized)
    /// replace the nonce of the place that gave it, and announce the new one in its
    /// `DPoP-Nonce`, as RFC 9449 §8.2 lets a server do; implies
    /// [`dpop_nonces(true)`](Self::dpop_nonces). Default off.
    ///
    /// The nonce a request carried is refused from then on, so a client that learns
    /// nonces only from `use_dpop_nonce` challenges pays a challenge on every request,
    /// and one that reads `DPoP-Nonce` on successes too pays none after the first.
    pub fn rotate_dpop_nonces_on_success(mut self, yes: bool) -> Self {
        self.rotate_dpop_nonces_on_success = yes;
        self
    }

    fn into_config(self) -> ServerConfig {
        let dialect = self.dialect.table();
        let mut clients: HashMap<Arc<str>, Option<String>> = self
            .clients
            .into_iter()
            .map(|(id, secret)| (Arc::from(id), secret))
            .collect();
        let mut client_keys: HashMap<Arc<str>, Vec<ClientKey>> = HashMap::new();
        for (id, key) in self.client_keys {
            let id = match clients.get_key_value(id.as_str()) {
                Some((id, _)) => Arc::clone(id),
                None => {
                    let id: Arc<str> = Arc::from(id);
                    clients.insert(Arc::clone(&id), None);
                    id
                }
            };
            client_keys.entry(id).or_default().push(key);
        }
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
        let auth_methods = auth_methods(dialect, self.auth_methods, &clients, &client_keys);
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
        let nonces = self.dpop_nonces || self.rotate_dpop_nonces_on_success;
        let wants_dpop = self.dpop || nonces;
        let dpop = (wants_dpop && dialect.kind == MockDialect::Standard).then_some(DpopConfig {
            nonces,
            rotate_nonces_on_success: self.rotate_dpop_nonces_on_success,
        });
        if wants_dpop && dpop.is_none() {
            ignored(dialect, "dpop");
        }
        ServerConfig {
            dpop,
            dialect,
            clients,
            client_keys,
            auth_methods,
            assertion_audience: self.assertion_audience,
            users,
            token_lifetime: self.token_lifetime,
            code_lifetime: self.code_lifetime.unwrap_or(dialect.code_lifetime),
            omit_expires_in: self.omit_expires_in,
            rotate_refresh_tokens,
            refresh_tokens_for_client_credentials,
            allowed_scopes: self.allowed_scopes,
            app_code: random_string(16),
            native_grindery_errors,
            base_url: String::new(),
            metadata: self.metadata,
        }
    }
}

/// The client authentication methods the token endpoint accepts.
fn auth_methods(
    dialect: &DialectRules,
    chosen: Option<Vec<AcceptedClientAuth>>,
    clients: &HashMap<Arc<str>, Option<String>>,
    client_keys: &HashMap<Arc<str>, Vec<ClientKey>>,
) -> Vec<AcceptedClientAuth> {
    let fixed = match dialect.client_auth {
        ClientAuthRule::Methods(None) => {
            return chosen.unwrap_or_else(|| {
                let mut methods = vec![AcceptedClientAuth::Basic, AcceptedClientAuth::Body];
                // Public clients: no secret and no key.
                if clients
                    .iter()
                    .any(|(id, secret)| secret.is_none() && !client_keys.contains_key(id))
                {
                    methods.push(AcceptedClientAuth::None);
                }
                if !client_keys.is_empty() {
                    methods.push(AcceptedClientAuth::PrivateKeyJwt);
                }
                methods
            });
        }
        ClientAuthRule::Methods(Some(methods)) | ClientAuthRule::MethodsOrQuery(methods) => methods,
        ClientAuthRule::NoClients | ClientAuthRule::ClientIdHeader => &[],
    };
    if chosen.is_some() {
        ignored(dialect, "client_auth");
    }
    if !client_keys.is_empty() {
        ignored(dialect, "client_public_key");
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
            .field("client_keys", &self.client_keys)
            .field("users", &users)
            .field("auth_methods", &self.auth_methods)
            .field("assertion_audience", &self.assertion_audience)
            .field("token_lifetime", &self.token_lifetime)
            .field("authorization_code_lifetime", &self.code_lifetime)
            .field("omit_expires_in", &self.omit_expires_in)
            .field("rotate_refresh_tokens", &self.rotate_refresh_tokens)
            .field(
                "refresh_tokens_for_client_credentials",
                &self.refresh_tokens_for_client_credentials,
            )
            .field("allowed_scopes", &self.allowed_scopes)
            .field("metadata", &self.metadata)
            .field("dpop", &self.dpop)
            .field("dpop_nonces", &self.dpop_nonces)
            .field(
                "rotate_dpop_nonces_on_success",
                &self.rotate_dpop_nonces_on_success,
            )
            .finish()
    }
}
