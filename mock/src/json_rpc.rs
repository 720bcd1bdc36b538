//! Grindery's JSON-RPC 2.0 endpoint, `POST /`, as its orchestrator answers it: served
//! when the builder asks for Grindery's native answers
//! ([`MockServerBuilder::native_grindery_errors`](crate::MockServerBuilder::native_grindery_errors)).
//!
//! What the orchestrator does, and so what this does: the access token comes in
//! `Authorization: Bearer`; every JSON-RPC error is answered with HTTP `400` and the
//! JSON-RPC response object; a token that does not verify is the error `-32602`
//! "Invalid access token", and no token at all is the error `1` "Not authorized". A
//! request that is not JSON-RPC is `-32600`, a body that is not JSON `-32700`, an
//! unknown method `-32601`, and params that are not an object `-32602` with another
//! message.

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{json, Value};

use crate::body::{json_response, read_body};
use crate::state::ServerState;

/// Largest JSON-RPC request body the endpoint reads.
const BODY_LIMIT: usize = 1024 * 1024;

/// The methods the emulator knows, each with and without the `or_` prefix the
/// orchestrator also accepts. Each answers with a description of the caller.
const METHODS: &[&str] = &["listWorkflows", "listWorkspaces", "isAllowedUser"];

/// Answers one JSON-RPC request.
pub(crate) async fn handle(state: &ServerState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    state.counters.resource_call(None);
    let response = match read_body(body, BODY_LIMIT).await {
        Ok(body) => {
            state.counters.resource_body(body.clone());
            answer(
                state,
                parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes()),
                &body,
            )
        }
        Err(_) => error(Value::Null, -32700, "Parse error"),
    };
    state.resource_latency.wait().await;
    state.counters.resource_status(response.status().as_u16());
    response
}

fn answer(state: &ServerState, authorization: Option<&[u8]>, body: &[u8]) -> Response<Full<Bytes>> {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return error(Value::Null, -32700, "Parse error");
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let method = match (&request["jsonrpc"], &request["method"]) {
        (Value::String(version), Value::String(method)) if version == "2.0" => method.as_str(),
        _ => return error(id, -32600, "Invalid Request"),
    };
    // The orchestrator's authentication middleware runs before the method is looked
    // up: the same pattern, `Bearer +(.+$)`, case-insensitive.
    let token = authorization
        .and_then(|value| std::str::from_utf8(value).ok())
        .and_then(|value| {
            let (scheme, rest) = value.split_at_checked(6)?;
            let token = rest.strip_prefix(' ')?.trim_start_matches(' ');
            (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
        });
    let grant = match token {
        None => return error(id, 1, "Not authorized"),
        Some(token) => match state.tokens().access_grant(token).cloned() {
            Some(grant) => grant,
            None => return error(id, -32602, "Invalid access token"),
        },
    };
    let name = method.strip_prefix("or_").unwrap_or(method);
    if !METHODS.contains(&name) {
        return error(id, -32601, "Method not found");
    }
    if !matches!(request.get("params"), None | Some(Value::Object(_))) {
        return error(id, -32602, "params must be an object");
    }
    state.counters.resource_call_authorized();
    let result = json!({
        "method": name,
        "subject": grant.subject.as_deref(),
        "scope": grant.scope.to_string(),
    });
    json_response(
        StatusCode::OK,
        &json!({"jsonrpc": "2.0", "result": result, "id": id}),
    )
}

/// A JSON-RPC error: HTTP `400`, as the orchestrator answers every one.
fn error(id: Value, code: i64, message: &'static str) -> Response<Full<Bytes>> {
    let body = json!({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": id});
    json_response(StatusCode::BAD_REQUEST, &body)
}
