//! Presets for the providers this crate knows, filled in from their own documents.
//!
//! Each preset names the public document it follows; "the document" in a preset's
//! description means that one:
//!
//! | preset | document |
//! | --- | --- |
//! | [`agrello()`] | Agrello API, *Authentication*: <https://support.agrello.io/agrello-api/authentication> |
//! | [`accelo()`] | Accelo API, *Service Applications* ("Using OAuth 2.0 for Service Applications"): <https://affinitylive.jira.com/wiki/spaces/APIS/pages/17530903/Service+Applications> |
//! | [`grindery()`] | Grindery, *Grindery OAuth 2.0*: <https://docs.grindery.org/page/1Qf18q708yRsChVf07x2zlhNAZ_gBOHI8M2JyKg5sy3Q/Grindery-OAuth-20> |
//! | [`ioffice()`] | iOFFICE Knowledge Center, *Using OAuth 2.0 to Access the API*: <https://support.iofficecorp.com/Integration/REST_API/Using_OAuth_2.0_to_Access_the_API> |
//! | [`dottedsign()`] | DottedSign Developer, *Authorization Code Flow*: <https://developer.dottedsign.com/docs/02-authentication-02-authorization-code-flow> |
//!
//! Each function returns a plain [`Provider`]: every setting can be changed with its
//! setter, and [`Provider::standard`] covers any other RFC 6749 server. Where a
//! provider's document is silent (a URL it does not print, a lifetime), the preset
//! picks the conventional value and its documentation says so.
//!
//! | preset | grant | client authentication | token goes | refresh tokens | revocation |
//! | --- | --- | --- | --- | --- | --- |
//! | [`agrello()`] | authorization code | HTTP Basic | `Authorization: Bearer` | kept when omitted | none documented |
//! | [`accelo()`] | client credentials | HTTP Basic (body as fallback) | `Authorization: Bearer` (or `_bearer_token`) | none: the grant is run again | none documented |
//! | [`grindery()`] | authorization code | none | `Authorization: Bearer` (a dead one is a JSON-RPC error in a `400`) | omitted on refresh: kept | none documented |
//! | [`ioffice()`] | authorization code | `x-client-id` header | `x-access-token` (or `access_token`) | rotated | `x-token` header |
//! | [`dottedsign()`] | authorization code | `client_id`/`client_secret` in the body | `Authorization: Bearer` | kept when omitted | none documented |
//!
//! # Another host
//!
//! Each preset has an `_at` twin taking a base URL instead of the vendor's host:
//! [`agrello_at`], [`accelo_at`], [`grindery_at`], [`ioffice_at`] and
//! [`dottedsign_at`] keep every path of the preset and put it under that origin, with
//! the origin as the API origin, for a test server (such as the `tower-oauth2-mock`
//! crate's emulators), a staging host or a proxy. [`Provider::at`] does the same to any
//! provider, a configured one included.
//!
//! ```
//! use tower_oauth2::providers;
//!
//! let accelo = providers::accelo_at("http://127.0.0.1:8080");
//! assert_eq!(accelo.token_url_ref(), "http://127.0.0.1:8080/oauth2/v0/token");
//! assert_eq!(accelo.api_origins_ref(), ["http://127.0.0.1:8080"]);
//! ```
//!
//! # Example
//!
//! ```no_run
//! use tower_oauth2::{providers, Credential, CredentialRegistry};
//! use tower_oauth2::providers::accelo::AcceloScope;
//!
//! # fn main() -> Result<(), tower_oauth2::Error> {
//! let accelo = Credential::client_credentials(providers::accelo("acme"), "client-id", "client-secret")
//!     .scopes([AcceloScope::read_all().and(AcceloScope::write(["companies", "contacts"]))]);
//! let ioffice = Credential::refresh_token(
//!     providers::ioffice("https://acme.iofficeconnect.com"),
//!     "client-id",
//!     None,
//!     "a-refresh-token",
//! )
//! .redirect_uri("https://app.example.com/callback/ioffice");
//! let credentials = CredentialRegistry::builder().credential(accelo).credential(ioffice).build()?;
//! # let _ = credentials;
//! # Ok(())
//! # }
//! ```

pub mod accelo;
pub mod ioffice;

use http::{HeaderName, StatusCode};

use crate::{
    dead_token::ApiAnswer,
    provider::{
        ClientAuth, CodeDelivery, HeaderParameters, ParameterEncoding, Provider, RefreshTokens, Revocation,
        ScopeSyntax, TokenPlacement,
    },
    token::ExpiresIn,
};

/// Agrello: users' tokens through the authorization-code flow, HTTP Basic client
/// authentication, refresh tokens, `Authorization: Bearer`.
///
/// Document: Agrello API, *Authentication*,
/// <https://support.agrello.io/agrello-api/authentication>.
///
/// The document prints the authorization endpoint,
/// `https://service.agrello.org/identity/auth/oauth/authorize`. It prints neither the
/// token endpoint nor the API host: the preset uses the authorization endpoint's
/// sibling, `https://service.agrello.org/identity/auth/oauth/token`, and
/// `https://api.agrello.io` for the API. Override them with
/// [`Provider::token_url`] and [`Provider::api_origins`] if your account says otherwise.
pub fn agrello() -> Provider {
    Provider::standard("https://service.agrello.org/identity/auth/oauth/token")
        .name("agrello")
        .authorize_url("https://service.agrello.org/identity/auth/oauth/authorize")
        .api("https://api.agrello.io")
        .client_auth(ClientAuth::Basic)
}

/// Accelo service applications: the client credentials grant against the deployment's
/// token endpoint, `https://{deployment}.api.accelo.com/oauth2/v0/token`.
///
/// Document: Accelo API, *Service Applications*,
/// <https://affinitylive.jira.com/wiki/spaces/APIS/pages/17530903/Service+Applications>.
///
/// - Client authentication is HTTP Basic, as the document recommends. Its fallback,
///   `client_id` and `client_secret` as parameters, is
///   `.client_auth(ClientAuth::RequestBody)`.
/// - Scopes are comma-delimited, `read(all),write(companies,contacts)`; build them with
///   [`accelo::AcceloScope`].
/// - No refresh token is issued: when a token expires, the grant is run again.
/// - The token goes in `Authorization: Bearer`, the preferred method. The `_bearer_token`
///   query parameter is `.token_placement(TokenPlacement::Query("_bearer_token".into()))`.
/// - API requests go to `https://{deployment}.api.accelo.com`.
///
/// `deployment` must be a DNS label (letters, digits and `-`); anything else makes the
/// registry refuse the provider with [`Error::Config`](crate::Error::Config).
pub fn accelo(deployment: &str) -> Provider {
    let deployment = deployment.to_ascii_lowercase();
    let provider = Provider::standard(format!("https://{deployment}.api.accelo.com/oauth2/v0/token"))
        .name("accelo")
        .api(format!("https://{deployment}.api.accelo.com"))
        .client_auth(ClientAuth::Basic)
        .scope_syntax(ScopeSyntax::CommaDelimited)
        .refresh_tokens(RefreshTokens::NotIssued);
    if is_dns_label(&deployment) {
        provider
    } else {
        provider.invalid(format!(
            "Accelo deployment `{deployment}` is not a DNS label (letters, digits, `-`)"
        ))
    }
}

/// Grindery: users' tokens through the authorization-code flow, without any client
/// authentication (token requests carry only the grant), `Authorization: Bearer`.
///
/// The refresh answer carries no refresh token; the one held is kept and used again.
/// As Grindery has no client ids, the credential's client id is only a local label.
///
/// Document: Grindery, *Grindery OAuth 2.0*,
/// <https://docs.grindery.org/page/1Qf18q708yRsChVf07x2zlhNAZ_gBOHI8M2JyKg5sy3Q/Grindery-OAuth-20>.
///
/// The document prints the sign-in page, `https://flow.grindery.org/sign-in` (users are
/// sent there with `response_type` and `redirect_uri`, and no client id), and the token
/// endpoint, `https://orchestrator.grindery.org/oauth/token`, but not the API host: the
/// preset uses `https://orchestrator.grindery.org`. Override it if yours differs.
///
/// Beyond the document, from Grindery's public orchestrator source
/// (<https://github.com/grindery-io/grindery-nexus-orchestrator>), whose answers depart
/// from RFC 6749 and RFC 6750 in two places the preset knows:
///
/// - The API is JSON-RPC 2.0 at `POST /`, and answers a token that does not verify
///   (expired, unknown) with HTTP `400` and the JSON-RPC error `-32602` "Invalid access
///   token". Every other JSON-RPC error is a `400` too, "invalid params" of other kinds
///   share the code `-32602`, so the preset reads the body of `400` answers (a few KiB
///   at most) and calls the token dead only for that code *and* that message; anything
///   else reaches the caller untouched. Its REST routes answer a dead token with `401`,
///   which stays a dead-token status.
/// - The token endpoint refuses a bad code and a dead refresh token with `400
///   invalid_request` ("Invalid code", "Invalid or expired refresh token"), not
///   `invalid_grant`. Every `invalid_request` it can give to a request this crate
///   builds is about the code or the refresh token (the grant type and the token are
///   always sent), so the preset reads it as a refused grant:
///   [`Error::ReauthorizationRequired`](crate::Error::ReauthorizationRequired).
pub fn grindery() -> Provider {
    Provider::standard("https://orchestrator.grindery.org/oauth/token")
        .name("grindery")
        .authorize_url("https://flow.grindery.org/sign-in")
        .api("https://orchestrator.grindery.org")
        .client_auth(ClientAuth::None)
        .refresh_tokens(RefreshTokens::KeepWhenOmitted)
        .dead_token_in_body([StatusCode::BAD_REQUEST], grindery_dead_token)
        .refused_grant_errors(["invalid_grant", "invalid_request"])
}

/// Grindery's dead-token answer: the JSON-RPC error `-32602` with the message its
/// authentication middleware gives a token that does not verify.
fn grindery_dead_token(answer: &ApiAnswer<'_>) -> bool {
    answer.json_rpc_error().is_some_and(|error| {
        error.code == -32602 && error.message.eq_ignore_ascii_case("invalid access token")
    })
}

/// iOFFICE, for the site at `site` (`https://acme.iofficeconnect.com`).
///
/// Document: iOFFICE Knowledge Center, *Using OAuth 2.0 to Access the API*,
/// <https://support.iofficecorp.com/Integration/REST_API/Using_OAuth_2.0_to_Access_the_API>.
///
/// - Token requests go to `{site}/external/api/oauth2/token` with every parameter as a
///   request header (`x-grant-type`, `x-redirect-uri`, `x-client-id`, `x-scope`,
///   `x-auth-code` or `x-refresh-token`) and `Content-Type: application/json`. The
///   redirect URI and scope are repeated on every request, so set
///   [`Credential::redirect_uri`](crate::Credential::redirect_uri).
/// - The client is identified by `x-client-id`; the document names no header for a
///   secret, so none is sent.
/// - `expires_in` is in milliseconds: `3600000` is one hour.
/// - Refresh tokens rotate: each refresh returns a new one and the old one is dead.
/// - The token goes in the `x-access-token` header; the `access_token` query parameter
///   is `.token_placement(TokenPlacement::Query("access_token".into()))`.
/// - Revocation posts the token in the `x-token` header to
///   `{site}/external/api/oauth2/revoke`.
/// - Users authorize at `{site}/login.html`, which needs all five parameters (`scope`
///   included, so the preset's default scope is `email`, the document's example) and
///   hands the code back in the URL fragment (`#code=…`): a page script must read it.
///
/// `site` must be an `https` origin (plain `http` only for loopback); anything else
/// makes the registry refuse the provider with [`Error::Config`](crate::Error::Config).
pub fn ioffice(site: &str) -> Provider {
    let site = site.trim_end_matches('/');
    let names = HeaderParameters::prefixed("x-").rename("code", HeaderName::from_static("x-auth-code"));
    let provider = Provider::standard(format!("{site}/external/api/oauth2/token"))
        .name("ioffice")
        .api(site)
        .authorize_url(format!("{site}/login.html"))
        .code_delivery(CodeDelivery::Fragment)
        .client_auth(ClientAuth::PublicClient)
        .parameter_encoding(ParameterEncoding::Headers(names))
        .expires_in_unit(ExpiresIn::Milliseconds)
        .refresh_tokens(RefreshTokens::Rotated)
        .repeat_authorization_params(true)
        .default_scopes(["email"])
        .token_placement(TokenPlacement::Header(HeaderName::from_static("x-access-token")))
        .revocation(Revocation::Header {
            url: format!("{site}/external/api/oauth2/revoke"),
            header: HeaderName::from_static("x-token"),
        });
    match is_origin(site) {
        true => provider,
        false => provider.invalid(format!(
            "iOFFICE site `{site}` must be an origin such as `https://acme.iofficeconnect.com`"
        )),
    }
}

/// DottedSign, at `base_url` (its API host, e.g. `https://api.dottedsign.com`).
///
/// Document: DottedSign Developer, *Authorization Code Flow*,
/// <https://developer.dottedsign.com/docs/02-authentication-02-authorization-code-flow>.
///
/// Users authorize at `{base_url}/v1/oauth/authorize`; tokens come from
/// `{base_url}/v1/oauth/token` with `client_id` and `client_secret` in the form body
/// (never HTTP Basic), and the code exchange repeats the authorization's `redirect_uri`.
/// Refresh requests send the client credentials and the refresh token. The token goes
/// in `Authorization: Bearer`; an expired one is answered with 401. The document says
/// nothing of rotation or revocation: a refresh token in an answer replaces the held
/// one, an answer without one keeps it, and there is no revocation endpoint.
///
/// `base_url` must be an `https` origin (plain `http` only for loopback).
pub fn dottedsign(base_url: &str) -> Provider {
    let base = base_url.trim_end_matches('/');
    let provider = Provider::standard(format!("{base}/v1/oauth/token"))
        .name("dottedsign")
        .api(base)
        .authorize_url(format!("{base}/v1/oauth/authorize"))
        .client_auth(ClientAuth::RequestBody);
    match is_origin(base) {
        true => provider,
        false => provider.invalid(format!(
            "DottedSign base URL `{base}` must be an origin such as `https://api.dottedsign.com`"
        )),
    }
}

// ===== pointing a preset at another host =====

/// [`agrello()`] at `base` instead of Agrello's hosts: the same paths under `base`
/// (`{base}/identity/auth/oauth/token`, ...), and `base` as the API origin.
/// `base` is an origin, as for [`Provider::at`], which this is.
pub fn agrello_at(base: &str) -> Provider {
    agrello().at(base)
}

/// Accelo at `base` instead of a deployment's host: the token endpoint is
/// `{base}/oauth2/v0/token` and `base` is the API origin; everything else is
/// [`accelo()`]'s. For a test server or a proxy, where there is no deployment name to
/// give. `base` is an origin, as for [`Provider::at`].
pub fn accelo_at(base: &str) -> Provider {
    accelo("deployment").at(base)
}

/// [`grindery()`] at `base` instead of Grindery's hosts: `{base}/oauth/token`,
/// `{base}/sign-in`, and `base` as the API origin. `base` is an origin, as for
/// [`Provider::at`], which this is.
pub fn grindery_at(base: &str) -> Provider {
    grindery().at(base)
}

/// The same as [`ioffice()`], whose site already is its base; here so that every
/// preset reads alike.
pub fn ioffice_at(base: &str) -> Provider {
    ioffice(base)
}

/// The same as [`dottedsign()`], whose base URL already is its base; here so that
/// every preset reads alike.
pub fn dottedsign_at(base: &str) -> Provider {
    dottedsign(base)
}

impl Provider {
    /// This provider at another origin: every endpoint it has (token, authorization,
    /// revocation) keeps its path and query under `base`, and its API origins become
    /// `base`. Everything else (name, dialect, placement) stays.
    ///
    /// For pointing a production configuration at a test server, a staging host or a
    /// proxy without rewriting each URL. `base` is an origin: a scheme, a host and an
    /// optional port (`https://auth.staging.example`, `http://127.0.0.1:8080`), a trailing
    /// `/` allowed; anything more (a path, a query, a `user@`) makes building the
    /// registry fail with [`Error::Config`](crate::Error::Config), as does a URL of the
    /// provider that does not parse. A provider with several API origins gets the one.
    ///
    /// ```
    /// use tower_oauth2::{providers, Provider};
    ///
    /// let provider = Provider::standard("https://auth.example.com/oauth/token")
    ///     .api("https://api.example.com")
    ///     .at("http://127.0.0.1:8080");
    /// assert_eq!(provider.token_url_ref(), "http://127.0.0.1:8080/oauth/token");
    /// assert_eq!(provider.api_origins_ref(), ["http://127.0.0.1:8080"]);
    ///
    /// // The presets have the same paths under any base: `providers::agrello_at` is this.
    /// let agrello = providers::agrello().at("http://127.0.0.1:8080");
    /// assert_eq!(
    ///     agrello.authorize_url_ref(),
    ///     Some("http://127.0.0.1:8080/identity/auth/oauth/authorize")
    /// );
    /// ```
    pub fn at(mut self, base: &str) -> Provider {
        let base = base.trim_end_matches('/');
        if !is_origin(base) {
            let shown = crate::redact::without_userinfo(base).into_owned();
            return self.invalid(format!(
                "base URL `{shown}` must be an origin such as `https://auth.example.com`"
            ));
        }
        let mut unparsable = None;
        let mut rebase = |url: &mut String| match url.parse::<http::Uri>() {
            Ok(uri) if uri.scheme().is_some() => {
                let rest = uri.path_and_query().map_or("", |pq| pq.as_str());
                *url = format!("{base}{}", if rest == "/" { "" } else { rest });
            }
            _ => unparsable = Some(crate::redact::without_userinfo(url).into_owned()),
        };
        rebase(&mut self.token_url);
        if let Some(url) = &mut self.authorize_url {
            rebase(url);
        }
        if let Some(Revocation::Rfc7009 { url } | Revocation::Header { url, .. }) = &mut self.revocation {
            rebase(url);
        }
        self.api_origins = vec![base.to_owned()];
        match unparsable {
            Some(url) => self.invalid(format!(
                "`{url}` is not a URL, so it cannot be moved to another base"
            )),
            None => self,
        }
    }
}

/// RFC 1035 label: 1 to 63 letters, digits and inner hyphens.
fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// An absolute http(s) URL with a host and nothing after it (no path, query, fragment
/// or userinfo), so that appending a path to it cannot change the host.
fn is_origin(s: &str) -> bool {
    let Ok(uri) = s.parse::<http::Uri>() else {
        return false;
    };
    let plain_authority = uri
        .authority()
        .is_some_and(|a| !a.as_str().contains('@') && uri.host().is_some_and(|h| !h.is_empty()));
    matches!(uri.scheme_str(), Some("https" | "http"))
        && plain_authority
        && matches!(uri.path(), "" | "/")
        && uri.query().is_none()
        && !s.contains('#')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Credential, CredentialRegistry, Error};

    fn unused_transport() -> crate::TokenTransport {
        crate::TokenTransport::new(tower::service_fn(|_req: crate::transport::TokenRequest| async {
            Err::<http::Response<http_body_util::Full<bytes::Bytes>>, _>(crate::BoxError::from("unused"))
        }))
    }

    fn builds(provider: Provider) -> Result<CredentialRegistry, Error> {
        CredentialRegistry::builder()
            .credential(Credential::client_credentials(provider, "id", "secret"))
            .transport(unused_transport())
            .build()
    }

    #[test]
    fn accelo_urls_follow_the_deployment() {
        let provider = accelo("Acme");
        assert_eq!(
            provider.token_url_ref(),
            "https://acme.api.accelo.com/oauth2/v0/token"
        );
        assert_eq!(provider.api_origins_ref(), ["https://acme.api.accelo.com"]);
        assert!(builds(provider).is_ok());
    }

    #[test]
    fn a_deployment_or_site_that_would_change_the_host_is_refused() {
        for bad in ["evil.com#", "evil.com/x", "a b", "", "-acme", "acme@evil", "x.y"] {
            let err = builds(accelo(bad)).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{bad:?}: {err}");
        }
        for bad in [
            "https://evil.com/path",
            "https://user@evil.com",
            "ftp://acme.example",
            "acme.example",
            "https://acme.example?x=1",
            "https://acme.example#x",
            "http://acme.example",
        ] {
            assert!(matches!(builds(ioffice(bad)), Err(Error::Config(_))), "{bad:?}");
            assert!(
                matches!(builds(dottedsign(bad)), Err(Error::Config(_))),
                "{bad:?}"
            );
        }
        assert!(builds(ioffice("https://acme.iofficeconnect.com/")).is_ok());
        assert!(builds(dottedsign("http://127.0.0.1:8080")).is_ok());
    }

    #[test]
    fn presets_print_the_documented_endpoints() {
        let io = ioffice("https://acme.iofficeconnect.com");
        assert_eq!(
            io.token_url_ref(),
            "https://acme.iofficeconnect.com/external/api/oauth2/token"
        );
        assert_eq!(
            io.authorize_url_ref(),
            Some("https://acme.iofficeconnect.com/login.html")
        );
        assert_eq!(
            io.revocation_ref(),
            Some(&Revocation::Header {
                url: "https://acme.iofficeconnect.com/external/api/oauth2/revoke".into(),
                header: HeaderName::from_static("x-token"),
            })
        );
        let ds = dottedsign("https://api.dottedsign.com");
        assert_eq!(ds.token_url_ref(), "https://api.dottedsign.com/v1/oauth/token");
        assert_eq!(
            ds.authorize_url_ref(),
            Some("https://api.dottedsign.com/v1/oauth/authorize")
        );
        assert_eq!(
            grindery().token_url_ref(),
            "https://orchestrator.grindery.org/oauth/token"
        );
        assert_eq!(
            agrello().authorize_url_ref(),
            Some("https://service.agrello.org/identity/auth/oauth/authorize")
        );
        for provider in [
            agrello(),
            accelo("acme"),
            grindery(),
            dottedsign("https://api.dottedsign.com"),
        ] {
            assert!(provider.revocation_ref().is_none(), "{provider:?}");
        }
    }

    #[test]
    fn at_moves_every_endpoint_to_the_base_and_keeps_the_paths() {
        let io = ioffice("https://acme.iofficeconnect.com").at("http://127.0.0.1:9000/");
        assert_eq!(
            io.token_url_ref(),
            "http://127.0.0.1:9000/external/api/oauth2/token"
        );
        assert_eq!(io.authorize_url_ref(), Some("http://127.0.0.1:9000/login.html"));
        assert_eq!(io.api_origins_ref(), ["http://127.0.0.1:9000"]);
        assert_eq!(
            io.revocation_ref(),
            Some(&Revocation::Header {
                url: "http://127.0.0.1:9000/external/api/oauth2/revoke".into(),
                header: HeaderName::from_static("x-token"),
            })
        );
        let accelo = accelo_at("http://127.0.0.1:9000");
        assert_eq!(accelo.token_url_ref(), "http://127.0.0.1:9000/oauth2/v0/token");
        assert_eq!(accelo.name_ref(), "accelo");
        let query = Provider::standard("https://a.example/token?tenant=1").at("https://b.example");
        assert_eq!(query.token_url_ref(), "https://b.example/token?tenant=1");
        assert!(builds(accelo).is_ok());
    }

    #[test]
    fn at_refuses_a_base_that_is_not_an_origin() {
        for bad in [
            "http://127.0.0.1:9000/prefix",
            "http://user:pw@127.0.0.1:9000",
            "127.0.0.1:9000",
            "http://127.0.0.1:9000?x=1",
            "",
        ] {
            let err = builds(agrello_at(bad)).unwrap_err();
            assert!(matches!(err, Error::Config(_)), "{bad:?}: {err}");
            assert!(!err.to_string().contains("pw"), "{err}");
        }
        let err = builds(
            Provider::standard("not a url")
                .api("https://api.example")
                .at("https://b.example"),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
    }

    #[test]
    fn accelo_refuses_grants_that_need_refresh_tokens() {
        let cred = Credential::refresh_token(accelo("acme"), "id", Some("s".into()), "rt");
        let err = CredentialRegistry::builder()
            .credential(cred)
            .transport(unused_transport())
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("no refresh tokens"), "{err}");
    }
}
