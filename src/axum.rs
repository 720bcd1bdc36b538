//! Login and callback routes for axum applications (feature `axum`).
//!
//! [`LoginRoutes`] serves the two ends of the authorization-code flow for every
//! provider with [`UserCredentials`](crate::UserCredentials) in a registry:
//!
//! - `GET /login/{provider}` starts an authorization for the user the application's own
//!   closure names (from its session cookie, a header, ...) and redirects the browser
//!   to the provider. The pending authorization (its `state` and PKCE verifier) stays on
//!   the server, for ten minutes at most, and is used once.
//! - `GET /callback/{provider}` checks the callback against it, exchanges the code in
//!   the provider's dialect, stores the tokens under that user, and redirects on. For a
//!   provider that returns the code in the URL fragment (iOFFICE), a callback without
//!   parameters gets a one-line page that hands the fragment back as the query.
//!
//! From then on, requests through the [`OAuth2Layer`](crate::OAuth2Layer) that carry
//! the user's [`Subject`](crate::Subject) get their token.
//!
//! # A login belongs to the browser that started it
//!
//! The `state` alone proves only that the callback answers an authorization this server
//! started, not that it reached the browser that started it. Without more, a user could
//! start a login, send their authorization link to someone else, and have that
//! person's grant at the provider stored under their own account (login CSRF). So:
//!
//! - `/login` sets a cookie holding a random nonce (32 bytes from the operating
//!   system's CSPRNG) with `HttpOnly`, `SameSite=Lax` (the callback is a top-level
//!   cross-site navigation from the provider, which `Lax` lets through and `Strict`
//!   would not), `Path` the callback route and `Max-Age` the ten minutes a login waits.
//!   Its name is derived from the login's `state`, so two logins in two tabs, to one
//!   provider or to two, each keep their own cookie. The server keeps only a SHA-256 of
//!   the nonce.
//! - `/callback` checks, in this order: the `state` names a login waiting for this
//!   provider and not expired (else `400`); the browser sent that login's cookie, whose
//!   nonce is compared in constant time (else `403`); the application's closure names a
//!   user now, and the same user who started the login (else `403`). Only then is the
//!   code exchanged. Whatever the outcome, the answer clears the cookie (`Max-Age=0`).
//!
//! The cookie is `Secure` when `public_base` is an https URL, and not otherwise, so that
//! development over `http://127.0.0.1` works in every browser (some refuse `Secure`
//! cookies over plain http); [`LoginRoutes::cookie_secure`] overrides the choice, e.g.
//! behind a proxy that terminates TLS for a base the application only knows as http.
//! The user check stays even with the cookie: a cookie can be planted by a sibling
//! subdomain, the application's session says who the user is.
//!
//! A callback that names a waiting login consumes it, whether it then succeeds or
//! not. Keeping it after a refusal would spare a user whose `state` someone else
//! learned from having to start again, but it would also leave the code that a foreign
//! browser delivered redeemable by the browser that started the login (the attacker's,
//! in the attack above), should that code leak from a history or a log: a second
//! chance at exactly the binding the check refuses. Starting again costs one click.
//!
//! # The application's data through the login
//!
//! [`LoginRoutes::state_data`] names data to carry through a login (where to send the
//! user afterwards, a tenant), read from the `/login` request; it travels appended to
//! the random `state` (see [`authorize`](crate::authorize#the-applications-own-state)),
//! and [`LoginRoutes::after_login_with`] gets it back, from the server's record of the
//! login, to choose where the browser goes. The `/login` request is the browser's: treat
//! what it carries as the user's input (a return path may point anywhere; keep it to
//! the application's own paths).
//!
//! # Bounds
//!
//! A user holds at most five waiting logins (five tabs); a sixth evicts their oldest,
//! so one user asking for logins in a loop only ever replaces their own. The bound is
//! per user rather than per browser: a script that keeps no cookies looks like a new
//! browser on every request, but it cannot start a login without the application's
//! session, and that names the user. In all at most
//! 10,000 logins wait; past that the oldest is evicted, never a new one refused. An
//! attacker holding thousands of the application's accounts can still push other
//! users' logins out (they start again): that is the application's account and session
//! problem, which a rate limit in front of `/login` addresses. Logins are kept in start
//! order, so expired ones are dropped from the front at the cost of what is dropped.
//!
//! # Error pages
//!
//! Every refusal is a short HTML page with a fixed message of this module and, where
//! the provider sent one, the OAuth `error` code, limited to RFC 6749's error-code
//! characters and HTML-escaped. The provider's `error_description` never reaches the
//! page: it is the provider's prose, may quote secrets or markup, and the log has it.
//! Pages and redirects are sent with `Cache-Control: no-store`,
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.
//!
//! ```no_run
//! use tower_oauth2::{axum::LoginRoutes, providers, Credentials, UserCredentials};
//!
//! # fn main() -> Result<(), tower_oauth2::Error> {
//! let credentials = Credentials::builder()
//!     .users(UserCredentials::new(providers::agrello(), "client-id", Some("client-secret".into())))
//!     .build()?;
//! let app: axum::Router = LoginRoutes::new(credentials, "https://app.example.com/oauth", |parts| {
//!     // The application's own idea of who is logged in; here a header set by its proxy.
//!     parts.headers.get("x-user").and_then(|v| v.to_str().ok()).map(str::to_owned)
//! })
//! .after_login("/")
//! .into_router();
//! let app = axum::Router::new().nest("/oauth", app);
//! # let _ = app;
//! # Ok(())
//! # }
//! ```

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    fmt,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use ::axum::{
    body::Body,
    extract::{Path, RawQuery, State},
    http::{
        header::{self, HeaderMap, HeaderValue},
        request::Parts,
        StatusCode,
    },
    response::{IntoResponse, Redirect, Response},
    routing::get,
    Router,
};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};
use tokio::time::Instant;

use crate::{
    authorize::{random_token, PendingAuthorization},
    error::{AuthorizationErrorKind, OAuthError},
    provider::CodeDelivery,
    Credentials, Error,
};

/// How long a started authorization waits for its callback; also the cookie's lifetime.
const PENDING_LIFETIME: Duration = Duration::from_secs(600);

/// The most authorizations waiting at once; past that the oldest is evicted.
const MAX_PENDING: usize = 10_000;

/// The most authorizations one user has waiting at once (tabs); past that their oldest
/// is evicted.
const MAX_PENDING_PER_SUBJECT: usize = 5;

/// Random bytes in a browser nonce, and the length of their base64url form.
const NONCE_BYTES: usize = 32;
const NONCE_CHARS: usize = 43;

/// The prefix of the cookie names; the rest is derived from the login's `state`.
const COOKIE_PREFIX: &str = "oauth2_login_";

type SubjectFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;

type AfterLoginFn = dyn Fn(&CompletedLogin) -> String + Send + Sync;

/// The login and callback routes; see the [module documentation](self).
pub struct LoginRoutes {
    credentials: Credentials,
    public_base: String,
    after_login: String,
    cookie_secure: bool,
    subject: Box<SubjectFn>,
    state_data: Option<Box<SubjectFn>>,
    after_login_with: Option<Box<AfterLoginFn>>,
}

/// A login the callback completed: what [`LoginRoutes::after_login_with`] chooses the
/// next page from.
#[derive(Debug, Clone)]
pub struct CompletedLogin {
    provider: String,
    subject: String,
    state_data: Option<String>,
}

impl CompletedLogin {
    /// The provider the user logged in to.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The application's user, as its closure named them at `/login` and again at the
    /// callback.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The data [`LoginRoutes::state_data`] gave at `/login`, from the server's record of
    /// the login (the callback's `state` had to match it).
    pub fn state_data(&self) -> Option<&str> {
        self.state_data.as_deref()
    }
}

/// The routes' state: their settings and the authorizations waiting for a callback.
struct Inner {
    routes: LoginRoutes,
    /// The path of `public_base`, without a trailing `/`: the callback cookies' `Path`
    /// is this plus `/callback/{provider}`.
    base_path: String,
    pending: Mutex<Pending>,
}

type Shared = Arc<Inner>;

struct Waiting {
    /// Start order, unique: the key of `Pending::by_age`.
    seq: u64,
    provider: String,
    subject: String,
    /// SHA-256 of the nonce in the browser's cookie.
    nonce_hash: [u8; 32],
    authorization: PendingAuthorization,
    started: Instant,
}

impl LoginRoutes {
    /// Routes for the users of `credentials`. `public_base` is the public URL the
    /// routes are mounted at (`https://app.example.com/oauth`): callbacks are
    /// `{public_base}/callback/{provider}`, unless the provider's
    /// [`UserCredentials::redirect_uri`](crate::UserCredentials::redirect_uri) says
    /// otherwise. `subject` names the application's user making a request, or `None`
    /// when nobody is logged in to the application; it is asked at the login and again
    /// at the callback, which must name the same user.
    pub fn new<F>(credentials: Credentials, public_base: impl Into<String>, subject: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        let public_base = public_base.into().trim_end_matches('/').to_owned();
        let cookie_secure = public_base
            .get(..6)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https:"));
        Self {
            credentials,
            public_base,
            after_login: "/".to_owned(),
            cookie_secure,
            subject: Box::new(subject),
            state_data: None,
            after_login_with: None,
        }
    }

    /// Data to carry through each login, read from the `/login` request (its query, a
    /// header), or `None` for none: at most
    /// [`MAX_STATE_DATA`](crate::authorize::MAX_STATE_DATA) printable ASCII characters,
    /// else `/login` answers `400`. It is not secret: it travels in the `state`, through
    /// the browser and the provider. [`after_login_with`](Self::after_login_with) gets it
    /// back.
    pub fn state_data<F>(mut self, data: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        self.state_data = Some(Box::new(data));
        self
    }

    /// Chooses where the browser goes after each successful login, from the login's
    /// provider, user and [state data](Self::state_data), instead of the fixed
    /// [`after_login`](Self::after_login). The data came from the browser's `/login`
    /// request: a location built from it must stay within the application.
    pub fn after_login_with<F>(mut self, location: F) -> Self
    where
        F: Fn(&CompletedLogin) -> String + Send + Sync + 'static,
    {
        self.after_login_with = Some(Box::new(location));
        self
    }

    /// Where the browser goes after a successful login (default `/`).
    pub fn after_login(mut self, location: impl Into<String>) -> Self {
        self.after_login = location.into();
        self
    }

    /// Whether the login cookie is `Secure`: by default, when `public_base` is an https
    /// URL. Turn it on for an application served over https behind a proxy while its
    /// `public_base` says http; turn it off only for development over plain http.
    pub fn cookie_secure(mut self, secure: bool) -> Self {
        self.cookie_secure = secure;
        self
    }

    /// The router, to be nested at the path `public_base` names.
    pub fn into_router<S>(self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let base_path = base_path(&self.public_base);
        let shared: Shared = Arc::new(Inner {
            routes: self,
            base_path,
            pending: Mutex::default(),
        });
        Router::new()
            .route("/login/{provider}", get(login))
            .route("/callback/{provider}", get(callback))
            .with_state(shared)
    }
}

impl Inner {
    fn redirect_uri(&self, provider: &str) -> Result<String, Error> {
        let users = self.routes.credentials.users(provider)?;
        Ok(users
            .get_redirect_uri()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{}/callback/{provider}", self.routes.public_base)))
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The login cookie of `state`: set with `nonce`, or cleared when `None`.
    fn cookie(&self, provider: &str, state: &str, nonce: Option<&str>) -> Option<HeaderValue> {
        let path = cookie_path(&self.base_path, provider);
        let (value, max_age) = match nonce {
            Some(nonce) => (nonce, PENDING_LIFETIME.as_secs()),
            None => ("", 0),
        };
        let secure = if self.routes.cookie_secure { "; Secure" } else { "" };
        let cookie = format!(
            "{}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
            cookie_name(state)
        );
        HeaderValue::try_from(cookie).ok()
    }
}

impl fmt::Debug for LoginRoutes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRoutes")
            .field("public_base", &self.public_base)
            .field("after_login", &self.after_login)
            .field("cookie_secure", &self.cookie_secure)
            .finish_non_exhaustive()
    }
}

// ===== the routes =====

async fn login(State(shared): State<Shared>, Path(provider): Path<String>, parts: Parts) -> Response {
    let Some(subject) = (shared.routes.subject)(&parts) else {
        return page(StatusCode::UNAUTHORIZED, "Log in to the application first.", None);
    };
    let Ok(redirect_uri) = shared.redirect_uri(&provider) else {
        return page(StatusCode::NOT_FOUND, "There is no such provider.", None);
    };
    let data = shared.routes.state_data.as_ref().and_then(|data| data(&parts));
    let started = shared.routes.credentials.users(&provider).and_then(|users| {
        let request = users.authorization(redirect_uri);
        match data {
            Some(data) => request.state_data(data),
            None => request,
        }
        .start()
    });
    let (authorization, nonce) = match started.and_then(|a| Ok((a, random_token(NONCE_BYTES)?))) {
        Ok(started) => started,
        Err(Error::Authorization(err)) if err.kind() == AuthorizationErrorKind::UnusableState => {
            return page(
                StatusCode::BAD_REQUEST,
                "The login request carries data that cannot travel through the provider.",
                None,
            );
        }
        Err(err) => {
            tracing::warn!(provider = ?provider, error = %err, "login could not start");
            return page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The login could not be started.",
                None,
            );
        }
    };
    let Some(cookie) = shared.cookie(&provider, authorization.state(), Some(&nonce)) else {
        return page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The login could not be started.",
            None,
        );
    };
    let mut response = redirect(authorization.url());
    response.headers_mut().append(header::SET_COOKIE, cookie);
    shared.pending().insert(
        authorization.state().to_owned(),
        provider,
        subject,
        nonce_hash(nonce.as_bytes()),
        authorization,
        Instant::now(),
    );
    response
}

async fn callback(
    State(shared): State<Shared>,
    Path(provider): Path<String>,
    RawQuery(query): RawQuery,
    parts: Parts,
) -> Response {
    let query = query.unwrap_or_default();
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    // The first of each, as `PendingAuthorization::complete` reads them.
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let Some(state) = param("state") else {
        if param("code").is_none() && param("error").is_none() {
            let fragment_provider = shared
                .routes
                .credentials
                .users(&provider)
                .is_ok_and(|users| users.provider().code_delivery == CodeDelivery::Fragment);
            if fragment_provider {
                // The code is in the fragment, which the browser kept: hand it back as
                // the query. The cookie stays, for the request that page makes.
                return bridge_page();
            }
            return page(
                StatusCode::BAD_REQUEST,
                "The callback carries no parameters.",
                None,
            );
        }
        return page(
            StatusCode::BAD_REQUEST,
            "Unknown or expired login; start again.",
            None,
        );
    };
    let mut response = complete(&shared, &provider, state, &query, &parts).await;
    if let Some(clear) = shared.cookie(&provider, state, None) {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    response
}

/// The callback of the login `state`, past the fragment bridge. The caller clears the
/// cookie whatever this answers.
async fn complete(shared: &Inner, provider: &str, state: &str, query: &str, parts: &Parts) -> Response {
    // Single use: whatever happens next, this state cannot be presented again.
    let Some(waiting) = shared.pending().take(state, provider, Instant::now()) else {
        return page(
            StatusCode::BAD_REQUEST,
            "Unknown or expired login; start again.",
            None,
        );
    };
    // The browser finishing the login must be the one that started it...
    if !nonce_matches(&parts.headers, &cookie_name(state), &waiting.nonce_hash) {
        tracing::warn!(
            provider = ?provider,
            subject = ?waiting.subject,
            "login callback refused: it did not come from the browser that started the login"
        );
        return page(
            StatusCode::FORBIDDEN,
            "This login was started in another browser; start again from this one.",
            None,
        );
    }
    // ...and be logged in to the application as the user who started it, or one user
    // could bind their provider account to another's session.
    match (shared.routes.subject)(parts) {
        Some(current) if current == waiting.subject => {}
        Some(_) => {
            tracing::warn!(
                provider = ?provider,
                subject = ?waiting.subject,
                "login callback refused: the application's session is another user's"
            );
            return page(
                StatusCode::FORBIDDEN,
                "This login was started by another user.",
                None,
            );
        }
        None => {
            return page(
                StatusCode::FORBIDDEN,
                "Log in to the application first, then start again.",
                None,
            )
        }
    }
    let code = match waiting.authorization.complete(query) {
        Ok(code) => code,
        Err(Error::Authorization(err)) if err.kind() == AuthorizationErrorKind::Denied => {
            return page(
                StatusCode::FORBIDDEN,
                "The provider did not grant access.",
                err.error(),
            )
        }
        Err(_) => {
            return page(
                StatusCode::BAD_REQUEST,
                "The callback carries no authorization code.",
                None,
            )
        }
    };
    let state_data = code.state_data().map(str::to_owned);
    match shared
        .routes
        .credentials
        .login(provider, &waiting.subject, code)
        .await
    {
        Ok(()) => match &shared.routes.after_login_with {
            Some(location) => redirect(&location(&CompletedLogin {
                provider: provider.to_owned(),
                subject: waiting.subject,
                state_data,
            })),
            None => redirect(&shared.routes.after_login),
        },
        Err(err) => {
            tracing::warn!(provider = ?provider, subject = ?waiting.subject, error = %err, "login failed");
            match err {
                Error::Store(_) => page(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The login could not be saved.",
                    None,
                ),
                err => page(
                    StatusCode::BAD_GATEWAY,
                    "The provider did not complete the login.",
                    oauth_error_code(&err),
                ),
            }
        }
    }
}

/// The `error` code of the token endpoint's answer behind `err`, if it sent one.
fn oauth_error_code(err: &Error) -> Option<&str> {
    match err {
        Error::OAuth(oauth) => Some(oauth.error()),
        Error::ReauthorizationRequired(refused) => refused.cause().map(OAuthError::error),
        _ => None,
    }
}

// ===== pending logins =====

/// The logins waiting for their callback: by `state`, by start order, and by user.
#[derive(Default)]
struct Pending {
    by_state: HashMap<String, Waiting>,
    /// Start order → `state`; the first entry is the oldest login.
    by_age: BTreeMap<u64, String>,
    /// Each user's waiting logins, oldest first, at most `MAX_PENDING_PER_SUBJECT`.
    by_subject: HashMap<String, VecDeque<u64>>,
    next_seq: u64,
}

impl Pending {
    /// Keeps a new login, evicting the user's oldest one beyond their bound and the
    /// oldest of all beyond the global bound.
    fn insert(
        &mut self,
        state: String,
        provider: String,
        subject: String,
        nonce_hash: [u8; 32],
        authorization: PendingAuthorization,
        now: Instant,
    ) {
        self.purge(now);
        while let Some(&oldest) = self
            .by_subject
            .get(&subject)
            .filter(|logins| logins.len() >= MAX_PENDING_PER_SUBJECT)
            .and_then(|logins| logins.front())
        {
            self.evict(oldest);
        }
        while self.by_state.len() >= MAX_PENDING {
            let Some(&oldest) = self.by_age.keys().next() else {
                break;
            };
            self.evict(oldest);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_subject.entry(subject.clone()).or_default().push_back(seq);
        self.by_age.insert(seq, state.clone());
        self.by_state.insert(
            state,
            Waiting {
                seq,
                provider,
                subject,
                nonce_hash,
                authorization,
                started: now,
            },
        );
    }

    /// Removes the login `state` and returns it if it waits for `provider` and has not
    /// expired. A login of another provider is left alone: this callback is not its.
    fn take(&mut self, state: &str, provider: &str, now: Instant) -> Option<Waiting> {
        if self.by_state.get(state)?.provider != provider {
            return None;
        }
        let waiting = self.remove(state)?;
        (now.duration_since(waiting.started) < PENDING_LIFETIME).then_some(waiting)
    }

    /// Drops the expired logins, oldest first: each costs its own removal only.
    fn purge(&mut self, now: Instant) {
        while let Some((&seq, state)) = self.by_age.iter().next() {
            let expired = self
                .by_state
                .get(state)
                .is_none_or(|w| now.duration_since(w.started) >= PENDING_LIFETIME);
            if !expired {
                break;
            }
            self.evict(seq);
        }
    }

    fn evict(&mut self, seq: u64) {
        match self.by_age.get(&seq).cloned() {
            Some(state) => {
                self.remove(&state);
            }
            None => {
                self.by_age.remove(&seq);
            }
        }
    }

    fn remove(&mut self, state: &str) -> Option<Waiting> {
        let waiting = self.by_state.remove(state)?;
        self.by_age.remove(&waiting.seq);
        if let Some(logins) = self.by_subject.get_mut(&waiting.subject) {
            logins.retain(|&seq| seq != waiting.seq);
            if logins.is_empty() {
                self.by_subject.remove(&waiting.subject);
            }
        }
        Some(waiting)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_state.len()
    }
}

// ===== the browser's cookie =====

/// The cookie of the login `state`: a name of its own, so that logins in several tabs
/// do not overwrite each other's, that does not carry the state itself.
fn cookie_name(state: &str) -> String {
    let digest = Sha256::digest(state.as_bytes());
    format!(
        "{COOKIE_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..12])
    )
}

fn nonce_hash(nonce: &[u8]) -> [u8; 32] {
    Sha256::digest(nonce).into()
}

/// Whether a cookie named `name` in the request's `Cookie` headers holds the nonce
/// whose SHA-256 is `expected`.
///
/// The headers are read as bytes (they need not be UTF-8), every cookie of that name
/// is tried (a duplicate planted before ours does not shadow it), and only values of a
/// nonce's length are hashed, so a huge or numerous header costs one pass over it.
fn nonce_matches(headers: &HeaderMap, name: &str, expected: &[u8; 32]) -> bool {
    let mut matched = Choice::from(0);
    for header in headers.get_all(header::COOKIE) {
        for pair in header.as_bytes().split(|&b| b == b';') {
            let Some(at) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            let (key, value) = (pair[..at].trim_ascii(), pair[at + 1..].trim_ascii());
            if key == name.as_bytes() && value.len() == NONCE_CHARS {
                matched |= nonce_hash(value).ct_eq(expected);
            }
        }
    }
    bool::from(matched)
}

/// The path of `public_base`, without a trailing `/` (empty for the root). A base whose
/// path cannot stand in a cookie attribute gives the root: the cookie is then sent to
/// more of the site's paths, still `HttpOnly` and named for its login alone.
fn base_path(public_base: &str) -> String {
    let path = public_base
        .parse::<::axum::http::Uri>()
        .map(|uri| uri.path().trim_end_matches('/').to_owned())
        .unwrap_or_default();
    if path.bytes().all(|b| b.is_ascii_graphic() && b != b';') {
        path
    } else {
        String::new()
    }
}

/// The callback route's path, as the browser asks for it: the provider's name
/// percent-encoded where it is more than URL path characters.
fn cookie_path(base_path: &str, provider: &str) -> String {
    let mut path = format!("{base_path}/callback/");
    for byte in provider.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => path.push(byte as char),
            _ => path.push_str(&format!("%{byte:02X}")),
        }
    }
    path
}

// ===== responses =====

/// The headers of every page and redirect of these routes: nothing cached (a login
/// sets a cookie; a callback URL carries a code), nothing sniffed, no referrer sent on.
fn harden(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
}

fn redirect(location: &str) -> Response {
    let mut response = Redirect::to(location).into_response();
    harden(response.headers_mut());
    response
}

/// A page with one of our own messages and, where the provider sent one, its OAuth
/// `error` code: limited to RFC 6749's error-code characters and HTML-escaped. Never
/// the provider's description, never a code or state.
fn page(status: StatusCode, message: &'static str, error_code: Option<&str>) -> Response {
    let mut html = String::from("<!doctype html><meta charset=utf-8><title>Sign-in</title>\n<p>");
    push_escaped(&mut html, message);
    html.push_str("</p>\n");
    if let Some(code) = error_code {
        html.push_str("<p>Error code: <code>");
        push_escaped(&mut html, &error_code_chars(code));
        html.push_str("</code></p>\n");
    }
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'"),
    );
    harden(headers);
    response
}

fn bridge_page() -> Response {
    let mut response = Response::new(Body::from(FRAGMENT_BRIDGE));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    harden(headers);
    response
}

/// At most 64 characters of `code`, each outside RFC 6749's `error` set
/// (`%x20-21 / %x23-5B / %x5D-7E`) replaced by `?`.
fn error_code_chars(code: &str) -> String {
    code.chars()
        .take(64)
        .map(|c| match c {
            '\x20'..='\x21' | '\x23'..='\x5b' | '\x5d'..='\x7e' => c,
            _ => '?',
        })
        .collect()
}

fn push_escaped(html: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => html.push_str("&amp;"),
            '<' => html.push_str("&lt;"),
            '>' => html.push_str("&gt;"),
            '"' => html.push_str("&quot;"),
            '\'' => html.push_str("&#39;"),
            c => html.push(c),
        }
    }
}

/// Reads `#code=…&state=…` and reloads the callback with it as the query.
const FRAGMENT_BRIDGE: &str = "<!doctype html><meta charset=utf-8><title>Signing in…</title>\
<script>if(location.hash.length>1){location.replace(location.pathname+'?'+location.hash.slice(1))}</script>\
<noscript>Signing in needs JavaScript: the provider returned the code in the URL fragment.</noscript>";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers;

    fn authorization() -> PendingAuthorization {
        providers::agrello()
            .authorization("cid", "https://app.example/oauth/callback/agrello")
            .start()
            .unwrap()
    }

    fn add(pending: &mut Pending, subject: &str, now: Instant) -> String {
        let authorization = authorization();
        let state = authorization.state().to_owned();
        pending.insert(
            state.clone(),
            "agrello".into(),
            subject.into(),
            [0; 32],
            authorization,
            now,
        );
        state
    }

    /// The three indexes describe the same logins.
    fn assert_consistent(pending: &Pending) {
        assert_eq!(pending.by_age.len(), pending.by_state.len());
        let by_subject: usize = pending.by_subject.values().map(VecDeque::len).sum();
        assert_eq!(by_subject, pending.by_state.len());
        for (seq, state) in &pending.by_age {
            assert_eq!(pending.by_state[state].seq, *seq);
        }
        assert!(pending.by_subject.values().all(|q| !q.is_empty()));
    }

    #[test]
    fn a_user_holds_at_most_five_logins_and_their_oldest_goes_first() {
        let mut pending = Pending::default();
        let now = Instant::now();
        let other = add(&mut pending, "bob", now);
        let states: Vec<String> = (0..8).map(|_| add(&mut pending, "mallory", now)).collect();
        assert_eq!(pending.len(), 1 + MAX_PENDING_PER_SUBJECT);
        assert_consistent(&pending);
        for (i, state) in states.iter().enumerate() {
            assert_eq!(pending.by_state.contains_key(state), i >= 3, "login {i}");
        }
        assert!(pending.take(&other, "agrello", now).is_some());
        assert_consistent(&pending);
    }

    #[test]
    fn past_the_global_bound_the_oldest_login_is_evicted_not_the_new_one_refused() {
        let mut pending = Pending::default();
        let now = Instant::now();
        let first = add(&mut pending, "user-0", now);
        let second = add(&mut pending, "user-1", now);
        for i in 2..MAX_PENDING {
            let state = format!("state-{i}");
            pending.insert(
                state,
                "agrello".into(),
                format!("user-{i}"),
                [0; 32],
                authorization(),
                now,
            );
        }
        assert_eq!(pending.len(), MAX_PENDING);
        let newest = add(&mut pending, "late", now);
        assert_eq!(pending.len(), MAX_PENDING);
        assert!(!pending.by_state.contains_key(&first));
        assert!(pending.by_state.contains_key(&second));
        assert!(pending.by_state.contains_key(&newest));
        assert_eq!(pending.by_subject.len(), MAX_PENDING);
        assert_consistent(&pending);
    }

    #[test]
    fn expired_logins_are_purged_from_the_front_and_cannot_be_taken() {
        let mut pending = Pending::default();
        let start = Instant::now();
        let old = add(&mut pending, "alice", start);
        let later = start + Duration::from_secs(300);
        let young = add(&mut pending, "bob", later);
        let expired = add(&mut pending, "carol", start);
        // Past the first one's lifetime: purge stops at the first live login.
        let now = start + PENDING_LIFETIME;
        pending.purge(now);
        assert!(!pending.by_state.contains_key(&old));
        assert_eq!(pending.len(), 2);
        assert_consistent(&pending);
        // An expired login behind a live one is refused when taken, and consumed.
        assert!(pending.take(&expired, "agrello", now).is_none());
        assert!(!pending.by_state.contains_key(&expired));
        // Another provider's callback neither takes nor consumes it.
        assert!(pending.take(&young, "ioffice", now).is_none());
        assert!(pending.take(&young, "agrello", now).is_some());
        assert_eq!(pending.len(), 0);
        assert_consistent(&pending);
    }

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::COOKIE, HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    #[test]
    fn the_nonce_is_found_among_hostile_cookies() {
        let nonce = random_token(NONCE_BYTES).unwrap();
        assert_eq!(nonce.len(), NONCE_CHARS);
        let expected = nonce_hash(nonce.as_bytes());
        let name = cookie_name("some-state");
        let ours = format!("{name}={nonce}");
        let wrong = format!("{name}={}", "A".repeat(NONCE_CHARS));

        assert!(nonce_matches(&headers(&[ours.as_bytes()]), &name, &expected));
        assert!(nonce_matches(
            &headers(&[format!("a=1; {wrong};{ours} ;b").as_bytes()]),
            &name,
            &expected
        ));
        assert!(nonce_matches(
            &headers(&[b"\xff\xfe=\x80", ours.as_bytes()]),
            &name,
            &expected
        ));
        assert!(!nonce_matches(&headers(&[]), &name, &expected));
        assert!(!nonce_matches(&headers(&[wrong.as_bytes()]), &name, &expected));
        // Another login's cookie with our nonce: the name is part of the proof.
        let elsewhere = format!("{}={nonce}", cookie_name("other-state"));
        assert!(!nonce_matches(
            &headers(&[elsewhere.as_bytes()]),
            &name,
            &expected
        ));
        // A prefix or an extension of the nonce.
        let short = format!("{name}={}", &nonce[..NONCE_CHARS - 1]);
        let long = format!("{name}={nonce}A");
        assert!(!nonce_matches(
            &headers(&[short.as_bytes(), long.as_bytes()]),
            &name,
            &expected
        ));
    }

    #[test]
    fn cookie_names_differ_per_login_and_say_nothing_of_the_state() {
        let (a, b) = (authorization(), authorization());
        let (name_a, name_b) = (cookie_name(a.state()), cookie_name(b.state()));
        assert_ne!(name_a, name_b);
        assert!(name_a.starts_with(COOKIE_PREFIX) && !name_a.contains(a.state()));
        assert!(name_a
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
    }

    #[test]
    fn cookie_paths_are_the_callback_routes() {
        assert_eq!(base_path("https://app.example.com/oauth/"), "/oauth");
        assert_eq!(base_path("https://app.example.com"), "");
        assert_eq!(base_path("not a url"), "");
        assert_eq!(base_path("https://app.example.com/a;b"), "");
        assert_eq!(cookie_path("/oauth", "agrello"), "/oauth/callback/agrello");
        assert_eq!(cookie_path("", "my app;x"), "/callback/my%20app%3Bx");
    }

    #[test]
    fn error_codes_are_limited_to_the_rfc_set_and_escaped() {
        assert_eq!(error_code_chars("invalid_grant"), "invalid_grant");
        assert_eq!(error_code_chars("a\"b\\c\nd\u{e9}"), "a?b?c?d?");
        assert_eq!(error_code_chars(&"x".repeat(100)).len(), 64);
        let mut html = String::new();
        push_escaped(&mut html, "<b>x</b> & 'y' \"z\"");
        assert_eq!(html, "&lt;b&gt;x&lt;/b&gt; &amp; &#39;y&#39; &quot;z&quot;");
    }
}
