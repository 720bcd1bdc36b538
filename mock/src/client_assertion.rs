//! JWT client authentication at the token endpoint: `private_key_jwt` and
//! `client_secret_jwt` (RFC 7523 §2.2 and §3, RFC 7521 §4.2, OpenID Connect Core §9).
//!
//! Signatures are checked with `jsonwebtoken` (RustCrypto backend), never with the
//! product's signing code. The claims are checked here, one rule at a time, so that each
//! refusal says which rule the assertion broke.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::clients::{
    AcceptedAssertionAudience, AuthenticatedClient, ASSERTION_TYPE, CLOCK_SKEW_SECS, KEY_ALGORITHMS,
    MAX_LIFETIME_SECS, SECRET_ALGORITHMS,
};
use crate::dialect::AcceptedClientAuth;
use crate::error::ErrorAnswer;
use crate::params::TokenParams;
use crate::state::ServerState;

/// The assertion parameters of a request.
#[derive(Debug)]
pub(crate) struct PresentedAssertion<'a> {
    pub(crate) assertion_type: Option<&'a str>,
    pub(crate) assertion: Option<&'a str>,
    pub(crate) client_id: Option<&'a str>,
}

impl<'a> PresentedAssertion<'a> {
    /// The assertion parameters, when the request has either of them.
    pub(crate) fn of(params: &'a TokenParams) -> Option<Self> {
        let assertion_type = params.get("client_assertion_type");
        let assertion = params.get("client_assertion");
        (assertion_type.is_some() || assertion.is_some()).then(|| PresentedAssertion {
            assertion_type,
            assertion,
            client_id: params.get("client_id"),
        })
    }
}

/// Why an assertion was refused: every refusal is `401 invalid_client` without a
/// challenge (the client used no `Authorization` header).
enum Refusal {
    Invalid(&'static str),
    Replay,
}

/// Authenticates a client by its assertion, counting the outcome.
pub(crate) fn authenticate(
    state: &ServerState,
    presented: &PresentedAssertion<'_>,
) -> Result<AuthenticatedClient, ErrorAnswer> {
    match check(state, presented) {
        Ok(client) => {
            state.counters.client_assertion_accepted();
            tracing::debug!(client_id = %client.id, "client assertion accepted");
            Ok(client)
        }
        Err(refusal) => {
            let description = match refusal {
                Refusal::Invalid(description) => description,
                Refusal::Replay => {
                    state.counters.client_assertion_replay();
                    "client assertion replayed: its jti was already used"
                }
            };
            state.counters.client_assertion_refused();
            // The description names the rule, never the assertion.
            tracing::debug!(description, "client assertion refused");
            Err(ErrorAnswer::invalid_client(description, false))
        }
    }
}

/// Counts an assertion refused before it was looked at (several methods at once).
pub(crate) fn refuse_mixed(state: &ServerState) -> ErrorAnswer {
    state.counters.client_assertion_refused();
    ErrorAnswer::invalid_request("more than one client authentication method used")
}

/// RFC 7523 §3, in order: the form, the header, the client, the signature, the claims,
/// and last the `jti`, so that only an assertion that passed everything uses it up.
fn check(state: &ServerState, presented: &PresentedAssertion<'_>) -> Result<AuthenticatedClient, Refusal> {
    use Refusal::Invalid;
    let config = &state.config;
    match presented.assertion_type {
        Some(ASSERTION_TYPE) => {}
        Some(_) => return Err(Invalid("unsupported client_assertion_type")),
        None => return Err(Invalid("missing client_assertion_type")),
    }
    let assertion = presented.assertion.ok_or(Invalid("missing client_assertion"))?;
    let mut parts = assertion.split('.');
    let (Some(header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Invalid("client_assertion is not a compact JWS"));
    };
    let header = decode_json(header).ok_or(Invalid("client_assertion header is not base64url JSON"))?;
    let claims = decode_json(payload).ok_or(Invalid("client_assertion payload is not base64url JSON"))?;

    let alg = header["alg"]
        .as_str()
        .ok_or(Invalid("client_assertion header has no alg"))?;
    if alg.eq_ignore_ascii_case("none") {
        return Err(Invalid("unsigned client assertions (alg none) are refused"));
    }
    let method = if SECRET_ALGORITHMS.contains(&alg) {
        AcceptedClientAuth::ClientSecretJwt
    } else if KEY_ALGORITHMS.contains(&alg) {
        AcceptedClientAuth::PrivateKeyJwt
    } else {
        return Err(Invalid("client_assertion alg not supported"));
    };
    if !config.auth_methods.contains(&method) {
        return Err(Invalid(
            "client authentication method not accepted by this server",
        ));
    }
    let alg: Algorithm = alg
        .parse()
        .map_err(|_| Invalid("client_assertion alg not supported"))?;
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err(Invalid("client_assertion kid is not a string")),
    };

    let iss = claims["iss"]
        .as_str()
        .ok_or(Invalid("client_assertion has no iss"))?;
    let sub = claims["sub"]
        .as_str()
        .ok_or(Invalid("client_assertion has no sub"))?;
    if iss != sub {
        return Err(Invalid("client_assertion iss and sub differ"));
    }
    if presented.client_id.is_some_and(|client_id| client_id != iss) {
        return Err(Invalid("client_id does not match the client_assertion iss"));
    }
    let (id, secret) = config.client(iss).ok_or(Invalid("unknown client"))?;
    let id = Arc::clone(id);

    let keys: Vec<DecodingKey> = match method {
        AcceptedClientAuth::ClientSecretJwt => {
            let secret = secret.ok_or(Invalid("this client has no secret to sign with"))?;
            vec![DecodingKey::from_secret(secret.as_bytes())
                .map_err(|_| Invalid("this client's secret cannot key an HMAC"))?]
        }
        _ => {
            let registered = config.client_keys(&id);
            if registered.is_empty() {
                return Err(Invalid("this client registered no public key"));
            }
            let fitting: Vec<DecodingKey> = registered
                .iter()
                .filter(|key| key.fits(alg, kid))
                .map(|key| key.key.clone())
                .collect();
            if fitting.is_empty() {
                return Err(Invalid(if kid.is_some() {
                    "no registered key of this client has the assertion's kid and alg"
                } else {
                    "no registered key of this client fits the assertion's alg"
                }));
            }
            fitting
        }
    };
    let mut validation = Validation::new(alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let verified = keys
        .iter()
        .any(|key| jsonwebtoken::decode::<Value>(assertion, key, &validation).is_ok());
    if !verified {
        return Err(Invalid("client_assertion signature does not verify"));
    }

    let now = unix_now();
    let exp = numeric_date(&claims, "exp")?.ok_or(Invalid("client_assertion has no exp"))?;
    if exp <= now {
        return Err(Invalid("client_assertion expired"));
    }
    if exp > now + MAX_LIFETIME_SECS {
        return Err(Invalid("client_assertion exp is more than ten minutes ahead"));
    }
    for name in ["iat", "nbf"] {
        if numeric_date(&claims, name)?.is_some_and(|at| at > now + CLOCK_SKEW_SECS) {
            return Err(Invalid("client_assertion iat or nbf is in the future"));
        }
    }
    check_audience(state, &claims["aud"])?;
    let jti = match &claims["jti"] {
        Value::String(jti) if !jti.is_empty() => jti.as_str(),
        Value::Null => return Err(Invalid("client_assertion has no jti")),
        _ => return Err(Invalid("client_assertion jti is not a non-empty string")),
    };
    if !state.used_jtis().first_use(&id, jti, exp, now) {
        return Err(Refusal::Replay);
    }
    let confidential = true;
    Ok(AuthenticatedClient { id, confidential })
}

/// Seconds since the epoch by the wall clock: an assertion's times are NumericDates
/// (RFC 7519 §2), which a paused Tokio clock knows nothing of.
#[allow(clippy::disallowed_methods)]
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// A claim that, when present, must be a NumericDate (RFC 7519 §2): whole or
/// fractional seconds, never negative.
fn numeric_date(claims: &Value, name: &str) -> Result<Option<u64>, Refusal> {
    match &claims[name] {
        Value::Null => Ok(None),
        Value::Number(number) => number
            .as_u64()
            .or_else(|| {
                number
                    .as_f64()
                    .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
                    .map(|seconds| seconds as u64)
            })
            .map(Some)
            .ok_or(Refusal::Invalid(
                "client_assertion has a time claim that is not a NumericDate",
            )),
        _ => Err(Refusal::Invalid(
            "client_assertion has a time claim that is not a NumericDate",
        )),
    }
}

/// `aud` names this server as [`AcceptedAssertionAudience`](crate::AcceptedAssertionAudience) says.
fn check_audience(state: &ServerState, aud: &Value) -> Result<(), Refusal> {
    let config = &state.config;
    let token_endpoint = format!("{}{}", config.base_url, config.dialect.token_paths[0]);
    let issuer = config.issuer();
    let accepted = |value: &str| match config.assertion_audience {
        AcceptedAssertionAudience::TokenEndpointOrIssuer => value == token_endpoint || value == issuer,
        AcceptedAssertionAudience::TokenEndpoint => value == token_endpoint,
        AcceptedAssertionAudience::Issuer => value == issuer,
    };
    let named = match aud {
        Value::String(value) => accepted(value),
        Value::Array(values) => values.iter().any(|value| value.as_str().is_some_and(accepted)),
        Value::Null => return Err(Refusal::Invalid("client_assertion has no aud")),
        _ => {
            return Err(Refusal::Invalid(
                "client_assertion aud is not a string or an array",
            ))
        }
    };
    if named {
        Ok(())
    } else {
        Err(Refusal::Invalid("client_assertion aud does not name this server"))
    }
}

fn decode_json(segment: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    serde_json::from_slice(&bytes).ok()
}
