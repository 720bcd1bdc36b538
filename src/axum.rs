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
    collections::HashMap,
    fmt,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use ::axum::{
    extract::{Path, RawQuery, State},
    http::{request::Parts, StatusCode},
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
    Router,
};
use tokio::time::Instant;

use crate::{
    authorize::PendingAuthorization, error::AuthorizationErrorKind, provider::CodeDelivery, Credentials,
    Error,
};

/// How long a started authorization waits for its callback.
const PENDING_LIFETIME: Duration = Duration::from_secs(600);

/// The most authorizations waiting at once; more are refused rather than grow memory
/// without bound.
const MAX_PENDING: usize = 10_000;

type SubjectFn = dyn Fn(&Parts) -> Option<String> + Send + Sync;

/// The login and callback routes; see the [module documentation](self).
pub struct LoginRoutes {
    credentials: Credentials,
    public_base: String,
    after_login: String,
    subject: Box<SubjectFn>,
}

/// The routes' state: their settings and the authorizations waiting for a callback.
struct Inner {
    routes: LoginRoutes,
    pending: Mutex<HashMap<String, Waiting>>,
}

type Shared = Arc<Inner>;

struct Waiting {
    provider: String,
    subject: String,
    authorization: PendingAuthorization,
    started: Instant,
}

impl LoginRoutes {
    /// Routes for the users of `credentials`. `public_base` is the public URL the
    /// routes are mounted at (`https://app.example.com/oauth`): callbacks are
    /// `{public_base}/callback/{provider}`, unless the provider's
    /// [`UserCredentials::redirect_uri`](crate::UserCredentials::redirect_uri) says
    /// otherwise. `subject` names the application's user making a request, or `None`
    /// when nobody is logged in to the application.
    pub fn new<F>(credentials: Credentials, public_base: impl Into<String>, subject: F) -> Self
    where
        F: Fn(&Parts) -> Option<String> + Send + Sync + 'static,
    {
        Self {
            credentials,
            public_base: public_base.into().trim_end_matches('/').to_owned(),
            after_login: "/".to_owned(),
            subject: Box::new(subject),
        }
    }

    /// Where the browser goes after a successful login (default `/`).
    pub fn after_login(mut self, location: impl Into<String>) -> Self {
        self.after_login = location.into();
        self
    }

    /// The router, to be nested at the path `public_base` names.
    pub fn into_router<S>(self) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let shared: Shared = Arc::new(Inner {
            routes: self,
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

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiting>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for LoginRoutes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRoutes")
            .field("public_base", &self.public_base)
            .field("after_login", &self.after_login)
            .finish_non_exhaustive()
    }
}

async fn login(State(shared): State<Shared>, Path(provider): Path<String>, parts: Parts) -> Response {
    let Some(subject) = (shared.routes.subject)(&parts) else {
        return refuse(StatusCode::UNAUTHORIZED, "log in to the application first");
    };
    let started = shared.redirect_uri(&provider).and_then(|redirect_uri| {
        shared
            .routes
            .credentials
            .users(&provider)?
            .authorization(redirect_uri)
            .start()
    });
    let authorization = match started {
        Ok(authorization) => authorization,
        Err(Error::Config(_)) => return refuse(StatusCode::NOT_FOUND, "no such provider"),
        Err(err) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
    };
    let url = authorization.url().to_owned();
    let now = Instant::now();
    let mut pending = shared.pending();
    pending.retain(|_, waiting| now.duration_since(waiting.started) < PENDING_LIFETIME);
    if pending.len() >= MAX_PENDING {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many logins in progress; try again",
        );
    }
    pending.insert(
        authorization.state().to_owned(),
        Waiting {
            provider,
            subject,
            authorization,
            started: now,
        },
    );
    Redirect::to(&url).into_response()
}

async fn callback(
    State(shared): State<Shared>,
    Path(provider): Path<String>,
    RawQuery(query): RawQuery,
    parts: Parts,
) -> Response {
    let query = query.unwrap_or_default();
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    if !params.contains_key("state") && !params.contains_key("code") && !params.contains_key("error") {
        let fragment_provider = shared
            .routes
            .credentials
            .users(&provider)
            .is_ok_and(|users| users.provider().code_delivery == CodeDelivery::Fragment);
        if fragment_provider {
            // The code is in the fragment, which the browser kept: hand it back as the query.
            return Html(FRAGMENT_BRIDGE).into_response();
        }
        return refuse(StatusCode::BAD_REQUEST, "the callback carries no parameters");
    }
    // Single use: whatever happens next, this state cannot be presented again.
    let waiting = params
        .get("state")
        .and_then(|state| shared.pending().remove(state));
    let Some(waiting) = waiting else {
        return refuse(StatusCode::BAD_REQUEST, "unknown or expired login; start again");
    };
    if waiting.provider != provider || waiting.started.elapsed() >= PENDING_LIFETIME {
        return refuse(StatusCode::BAD_REQUEST, "unknown or expired login; start again");
    }
    // The browser finishing the login must belong to the user who started it, or one
    // user could bind their provider account to another's session.
    if let Some(current) = (shared.routes.subject)(&parts) {
        if current != waiting.subject {
            return refuse(StatusCode::FORBIDDEN, "this login was started by another user");
        }
    }
    let code = match waiting.authorization.complete(&query) {
        Ok(code) => code,
        Err(Error::Authorization(err)) if err.kind() == AuthorizationErrorKind::Denied => {
            return refuse(StatusCode::FORBIDDEN, &err.to_string())
        }
        Err(err) => return refuse(StatusCode::BAD_REQUEST, &err.to_string()),
    };
    match shared
        .routes
        .credentials
        .login(&provider, &waiting.subject, code)
        .await
    {
        Ok(()) => Redirect::to(&shared.routes.after_login).into_response(),
        Err(err) => {
            tracing::warn!(provider = %provider, subject = %waiting.subject, error = %err, "login failed");
            refuse(StatusCode::BAD_GATEWAY, &err.to_string())
        }
    }
}

/// Error messages name what went wrong and never carry a code, state or token.
fn refuse(status: StatusCode, message: &str) -> Response {
    (status, message.to_owned()).into_response()
}

/// Reads `#code=…&state=…` and reloads the callback with it as the query.
const FRAGMENT_BRIDGE: &str = "<!doctype html><meta charset=utf-8><title>Signing in…</title>\
<script>if(location.hash.length>1){location.replace(location.pathname+'?'+location.hash.slice(1))}</script>\
<noscript>Signing in needs JavaScript: the provider returned the code in the URL fragment.</noscript>";
