//! Where a server starts: the standard RFC 6749 server and one builder per provider
//! emulator, each documented with the dialect it speaks.

use std::io;

use crate::builder::MockServerBuilder;
use crate::dialect::MockDialect;
use crate::server::MockServer;

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
    /// * Sign-in: `GET /sign-in` (the document's page is
    ///   `https://flow.grindery.org/sign-in`, on a host of its own; here it
    ///   shares the emulator's origin) with `response_type=code` and `redirect_uri`; redirects with
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
}
