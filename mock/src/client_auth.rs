//! Client authentication at the token endpoint (RFC 6749 §2.3), and the dispatch to
//! JWT client assertions (RFC 7523 §2.2, in `client_assertion`).

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::HeaderMap;

use crate::client_assertion::{self, PresentedAssertion};
use crate::clients::AuthenticatedClient;
use crate::dialect::{AcceptedClientAuth, ClientAuthRule};
use crate::error::ErrorAnswer;
use crate::params::TokenParams;
use crate::state::{ServerConfig, ServerState};

/// The credentials a request presented, before they are checked.
enum Presented<'a> {
    Basic { id: String, secret: String },
    Body { id: &'a str, secret: &'a str },
    None { id: &'a str },
}

impl Presented<'_> {
    fn method(&self) -> AcceptedClientAuth {
        match self {
            Presented::Basic { .. } => AcceptedClientAuth::Basic,
            Presented::Body { .. } => AcceptedClientAuth::Body,
            Presented::None { .. } => AcceptedClientAuth::None,
        }
    }

    fn id(&self) -> &str {
        match self {
            Presented::Basic { id, .. } => id,
            Presented::Body { id, .. } | Presented::None { id } => id,
        }
    }

    fn secret(&self) -> Option<&str> {
        match self {
            Presented::Basic { secret, .. } => Some(secret),
            Presented::Body { secret, .. } => Some(secret),
            Presented::None { .. } => None,
        }
    }
}

/// Identifies the client of a token (or RFC 7009 revocation) request the
/// way the dialect does.
pub(crate) fn authenticate(
    state: &ServerState,
    headers: &HeaderMap,
    params: &TokenParams,
) -> Result<AuthenticatedClient, ErrorAnswer> {
    let config = &state.config;
    match config.dialect.client_auth {
        ClientAuthRule::Methods(_) | ClientAuthRule::MethodsOrQuery(_) => {
            if let Some(assertion) = PresentedAssertion::of(params) {
                // RFC 6749 §2.3: one method per request.
                if headers.contains_key(AUTHORIZATION) || params.get("client_secret").is_some() {
                    return Err(client_assertion::refuse_mixed(state));
                }
                return client_assertion::authenticate(state, &assertion);
            }
            authenticate_with_methods(config, headers, params)
        }
        ClientAuthRule::NoClients => no_clients(headers, params),
        ClientAuthRule::ClientIdHeader => client_id_only(config, params),
    }
}

/// Grindery has no client registration: there is no client to identify and
/// no secret to check. A `client_id` is ignored, as clients commonly send
/// one out of habit. Client credentials (an `Authorization` header or a
/// `client_secret`) are refused: a client that sends them is configured for
/// another provider, and it is handing a secret to a party that never
/// issued it.
fn no_clients(headers: &HeaderMap, params: &TokenParams) -> Result<AuthenticatedClient, ErrorAnswer> {
    if headers.contains_key(AUTHORIZATION) || params.get("client_secret").is_some() {
        return Err(ErrorAnswer::invalid_request(
            "this server has no client authentication; send no Authorization header and no client_secret",
        ));
    }
    if params.get("client_id").is_some() {
        tracing::debug!("ignoring client_id: this server has no clients");
    }
    Ok(AuthenticatedClient {
        id: Arc::from(""),
        confidential: false,
    })
}

/// iOFFICE identifies the client by its id alone; secrets are not part of
/// its token requests, so a registered client's secret is never checked.
fn client_id_only(config: &ServerConfig, params: &TokenParams) -> Result<AuthenticatedClient, ErrorAnswer> {
    let id = params.get("client_id").ok_or_else(|| {
        ErrorAnswer::invalid_client(&format!("missing {}", params.describe("client_id")), false)
    })?;
    let Some((id, secret)) = config.client(id) else {
        return Err(ErrorAnswer::invalid_client("unknown client", false));
    };
    tracing::debug!(client_id = %id, "client identified");
    Ok(AuthenticatedClient {
        id: Arc::clone(id),
        confidential: secret.is_some() || !config.client_keys(id).is_empty(),
    })
}

/// Authenticates with HTTP Basic or body (or query) parameters, among the
/// methods the server accepts.
fn authenticate_with_methods(
    config: &ServerConfig,
    headers: &HeaderMap,
    params: &TokenParams,
) -> Result<AuthenticatedClient, ErrorAnswer> {
    let presented = presented_credentials(headers, params)?;
    let method = presented.method();
    let basic = method == AcceptedClientAuth::Basic;
    let reject = |description: &str| Err(ErrorAnswer::invalid_client(description, basic));

    if !config.auth_methods.contains(&method) {
        return reject("client authentication method not accepted by this server");
    }
    let Some((id, expected_secret)) = config.client(presented.id()) else {
        return reject("unknown client");
    };
    match (expected_secret, presented.secret()) {
        (Some(expected), Some(given)) => {
            if !constant_time_eq(expected.as_bytes(), given.as_bytes()) {
                return reject("client authentication failed");
            }
        }
        (Some(_), None) => return reject("this client must authenticate with its secret"),
        (None, Some(_)) => return reject("public clients have no secret to present"),
        (None, None) if !config.client_keys(id).is_empty() => {
            return reject("this client must authenticate with a client assertion signed by its key")
        }
        (None, None) => {}
    }
    tracing::debug!(client_id = %id, ?method, "client authenticated");
    Ok(AuthenticatedClient {
        id: Arc::clone(id),
        confidential: expected_secret.is_some(),
    })
}

/// Works out which authentication method a request used, rejecting requests
/// that use none or several.
fn presented_credentials<'a>(
    headers: &HeaderMap,
    params: &'a TokenParams,
) -> Result<Presented<'a>, ErrorAnswer> {
    let mut authorization = headers.get_all(AUTHORIZATION).iter();
    let header = authorization.next();
    if authorization.next().is_some() {
        return Err(ErrorAnswer::invalid_request("more than one Authorization header"));
    }
    let body_id = params.get("client_id");
    let body_secret = params.get("client_secret");

    if let Some(header) = header {
        let (id, secret) = parse_basic(header.as_bytes())
            .ok_or_else(|| ErrorAnswer::invalid_client("malformed Basic credentials", true))?;
        if body_secret.is_some() {
            return Err(ErrorAnswer::invalid_request(
                "more than one client authentication method used",
            ));
        }
        // RFC 6749 §3.2.1 lets a client repeat its id in the body; it has
        // to be the same client.
        if body_id.is_some_and(|body_id| body_id != id) {
            return Err(ErrorAnswer::invalid_request(
                "client_id does not match the Basic credentials",
            ));
        }
        return Ok(Presented::Basic { id, secret });
    }
    match (body_id, body_secret) {
        (Some(id), Some(secret)) => Ok(Presented::Body { id, secret }),
        (Some(id), None) => Ok(Presented::None { id }),
        (None, Some(_)) => Err(ErrorAnswer::invalid_request(
            "client_secret sent without client_id",
        )),
        (None, None) => Err(ErrorAnswer::invalid_client(
            "client authentication required",
            false,
        )),
    }
}

/// Parses `Basic base64(urlencode(id) ":" urlencode(secret))`.
fn parse_basic(header: &[u8]) -> Option<(String, String)> {
    let (scheme, rest) = split_once(header, b' ')?;
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let encoded = rest.trim_ascii_start();
    let decoded = STANDARD.decode(encoded).ok()?;
    let (id, secret) = split_once(&decoded, b':')?;
    Some((form_decode(id)?, form_decode(secret)?))
}

fn split_once(bytes: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == separator)?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a
/// space and `%XX` an octet. Malformed escapes and non-UTF-8 results are
/// rejected rather than passed through, to catch clients that forget to
/// encode.
fn form_decode(input: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.iter();
    while let Some(&byte) = bytes.next() {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let high = hex_value(*bytes.next()?)?;
                let low = hex_value(*bytes.next()?)?;
                out.push(high << 4 | low);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Compares two secrets in time that depends only on their lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a
        .iter()
        .zip(b)
        .fold(0u8, |difference, (x, y)| difference | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(raw: &str) -> Vec<u8> {
        format!("Basic {}", STANDARD.encode(raw)).into_bytes()
    }

    #[test]
    fn basic_credentials_are_form_decoded_after_the_first_colon() {
        assert_eq!(
            parse_basic(&basic("my%3Aapp:p%25ss+w:rd")),
            Some(("my:app".to_owned(), "p%ss w:rd".to_owned()))
        );
        assert_eq!(
            parse_basic(&basic("client:")),
            Some(("client".to_owned(), String::new()))
        );
    }

    #[test]
    fn malformed_basic_credentials_are_rejected() {
        assert_eq!(parse_basic(&basic("no-colon")), None);
        assert_eq!(parse_basic(&basic("id:50%off")), None);
        assert_eq!(parse_basic(b"Bearer abc"), None);
        assert_eq!(parse_basic(b"Basic !!!"), None);
        assert_eq!(parse_basic(b"Basic"), None);
    }

    #[test]
    fn basic_scheme_is_case_insensitive() {
        let header = format!("bAsIc {}", STANDARD.encode("a:b"));
        assert_eq!(
            parse_basic(header.as_bytes()),
            Some(("a".to_owned(), "b".to_owned()))
        );
    }

    #[test]
    fn constant_time_eq_compares_contents_and_length() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret!"));
        assert!(constant_time_eq(b"", b""));
    }
}
