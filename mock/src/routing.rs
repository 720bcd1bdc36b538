//! Which endpoint of the dialect a request is for, and its handler.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::authorize;
use crate::body::not_found;
use crate::dialect::RevocationEndpoint;
use crate::faults::ResetConnection;
use crate::json_rpc;
use crate::metadata;
use crate::resource;
use crate::revoke;
use crate::state::ServerState;
use crate::token;

/// The endpoints a dialect serves.
enum Endpoint {
    Token,
    Authorize,
    DirectCode,
    Revoke(RevocationEndpoint),
    Resource,
    JsonRpc,
    Metadata,
    NotFound,
}

impl Endpoint {
    fn of(state: &ServerState, method: &http::Method, path: &str) -> Self {
        let dialect = state.dialect();
        if state.config.native_grindery_errors && path == "/" && method == http::Method::POST {
            Endpoint::JsonRpc
        } else if path == metadata::PATH && state.serves_metadata() {
            Endpoint::Metadata
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

pub(crate) async fn route(
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
        Endpoint::Metadata => Ok(metadata::handle(&state, request.method())),
        Endpoint::NotFound => Ok(not_found()),
    }
}
