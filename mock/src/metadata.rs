//! The standard server's authorization server metadata (RFC 8414), served at
//! `/.well-known/oauth-authorization-server`.
//!
//! Written from RFC 8414 §2 and from this server's own configuration: every endpoint it
//! names is one the server serves, and the client authentication methods are the ones
//! its token endpoint accepts. The emulators serve no document: the providers they
//! emulate publish none in the documents they are written from.

use bytes::Bytes;
use http::header::ALLOW;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::json;

use crate::body::{json_response, respond, set};
use crate::clients::{KEY_ALGORITHMS, SECRET_ALGORITHMS};
use crate::dialect::AcceptedClientAuth;
use crate::state::ServerState;

/// RFC 8414 §3's location for an issuer without a path.
pub(crate) const PATH: &str = "/.well-known/oauth-authorization-server";

/// The document, for a `GET`; `405` for any other method.
pub(crate) fn handle(state: &ServerState, method: &Method) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut response = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "method not allowed",
        );
        set(&mut response, ALLOW, "GET, HEAD");
        return response;
    }
    let config = &state.config;
    let base = &config.base_url;
    let dialect = config.dialect;
    let methods: Vec<&str> = config
        .auth_methods
        .iter()
        .map(|method| match method {
            AcceptedClientAuth::Basic => "client_secret_basic",
            AcceptedClientAuth::Body => "client_secret_post",
            AcceptedClientAuth::None => "none",
            AcceptedClientAuth::PrivateKeyJwt => "private_key_jwt",
            AcceptedClientAuth::ClientSecretJwt => "client_secret_jwt",
        })
        .collect();
    // RFC 8414 §2: the algorithms the JWT methods take, when any is accepted.
    let mut signing_algs: Vec<&str> = Vec::new();
    if config.auth_methods.contains(&AcceptedClientAuth::PrivateKeyJwt) {
        signing_algs.extend(KEY_ALGORITHMS);
    }
    if config.auth_methods.contains(&AcceptedClientAuth::ClientSecretJwt) {
        signing_algs.extend(SECRET_ALGORITHMS);
    }
    let mut document = json!({
        "issuer": config.issuer(),
        "token_endpoint": format!("{base}{}", dialect.token_paths[0]),
        "token_endpoint_auth_methods_supported": methods,
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "response_types_supported": ["code"],
        "scopes_supported": config.allowed_scopes,
    });
    if !signing_algs.is_empty() {
        document["token_endpoint_auth_signing_alg_values_supported"] = json!(signing_algs);
    }
    if let Some(authorize) = &dialect.authorize {
        document["authorization_endpoint"] = json!(format!("{base}{}", authorize.path));
        if authorize.pkce {
            document["code_challenge_methods_supported"] = json!(["S256"]);
        }
    }
    if let Some(revocation) = dialect.revocation {
        document["revocation_endpoint"] = json!(format!("{base}{}", revocation.path()));
        document["revocation_endpoint_auth_methods_supported"] =
            document["token_endpoint_auth_methods_supported"].clone();
        if !signing_algs.is_empty() {
            document["revocation_endpoint_auth_signing_alg_values_supported"] = json!(signing_algs);
        }
    }
    if state.dpop.is_some() {
        document["dpop_signing_alg_values_supported"] = json!(crate::dpop::SIGNING_ALGS);
    }
    json_response(StatusCode::OK, &document)
}
