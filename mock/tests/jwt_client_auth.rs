//! JWT client authentication (RFC 7523 §2.2, OpenID Connect Core §9) at the standard
//! server, over loopback: `private_key_jwt` with each key algorithm, `client_secret_jwt`
//! with each HMAC, and one test per rule an assertion can break.
//!
//! The assertions are signed here with `jsonwebtoken` and the keys of `tests/keys/`
//! (generated for these tests only).

mod support;

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::header::WWW_AUTHENTICATE;
use http::StatusCode;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tower_oauth2_mock::{AcceptedAssertionAudience, AcceptedClientAuth, MockServer, MockServerBuilder};

use support::*;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

const EC_KEY: &str = include_str!("keys/ec-p256.pem");
const EC_PUBLIC: &str = include_str!("keys/ec-p256.pub.pem");
const OTHER_EC_KEY: &str = include_str!("keys/ec-p256-other.pem");
const ED_KEY: &str = include_str!("keys/ed25519.pem");
const ED_PUBLIC: &str = include_str!("keys/ed25519.pub.pem");
const RSA_KEY: &str = include_str!("keys/rsa-2048.pem");
const RSA_PUBLIC: &str = include_str!("keys/rsa-2048.pub.pem");

/// The client every test authenticates as.
const CLIENT: &str = "jwt-client";
const SECRET: &str = "a-client-secret-long-enough-for-hs512-0123456789abcdef0123456789";

fn private_key(alg: Algorithm) -> EncodingKey {
    let pem = match alg {
        Algorithm::ES256 => EC_KEY,
        Algorithm::EdDSA => ED_KEY,
        Algorithm::RS256 | Algorithm::PS256 => RSA_KEY,
        other => panic!("no test key for {other:?}"),
    };
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
        _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
    };
    key.expect("a test key")
}

/// The public JWK of the test key for `alg`, with `kid` if given.
fn public_jwk(alg: Algorithm, kid: Option<&str>) -> String {
    let mut jwk = Jwk::from_encoding_key(&private_key(alg), alg).expect("a public JWK");
    jwk.common.key_id = kid.map(str::to_owned);
    // Without `alg`, so that one RSA key serves RS256 and PS256.
    jwk.common.key_algorithm = None;
    serde_json::to_string(&jwk).expect("JSON")
}

/// The wall clock, as the server reads an assertion's NumericDates.
#[allow(clippy::disallowed_methods)]
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// Claims a server accepts from `CLIENT`: a fresh `jti`, a minute to live.
fn claims(server: &MockServer) -> Value {
    let now = now();
    json!({
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": server.token_url(),
        "iat": now,
        "exp": now + 60,
        "jti": format!("jti-{}", unique()),
    })
}

/// A value unique within the test process.
fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let key = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(SECRET.as_bytes()).expect("an HMAC key")
        }
        _ => private_key(alg),
    };
    jsonwebtoken::encode(&header, claims, &key).expect("signed")
}

/// The server with `CLIENT` registered with its secret and the EC key (kid `ec-1`),
/// the Ed25519 key (PEM) and the RSA key (JWK without a kid), accepting both JWT
/// methods.
fn server_builder() -> MockServerBuilder {
    MockServer::builder()
        .client(CLIENT, SECRET)
        .client_public_key(CLIENT, public_jwk(Algorithm::ES256, Some("ec-1")))
        .client_public_key(CLIENT, ED_PUBLIC)
        .client_public_key(CLIENT, public_jwk(Algorithm::RS256, None))
        .client_auth(&[
            AcceptedClientAuth::Basic,
            AcceptedClientAuth::PrivateKeyJwt,
            AcceptedClientAuth::ClientSecretJwt,
        ])
}

async fn server() -> MockServer {
    started(server_builder()).await
}

fn assertion_form(assertion: &str, rest: &str) -> String {
    format!(
        "{rest}&client_assertion_type={}&client_assertion={}",
        encode(ASSERTION_TYPE),
        encode(assertion)
    )
}

/// A `client_credentials` request authenticated by `assertion` alone.
async fn present(server: &MockServer, assertion: &str) -> Answer {
    let form = assertion_form(assertion, CLIENT_CREDENTIALS);
    token_request(&http_client(), server, None, &form).await
}

/// `401 invalid_client` without a challenge, `because` of the rule its description
/// names, counted as refused.
#[track_caller]
fn assert_refused(server: &MockServer, answer: &Answer, because: &str) {
    answer.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    assert_eq!(answer.header(WWW_AUTHENTICATE), None);
    let description = answer.str_field("error_description");
    assert!(
        description.contains(because),
        "{description:?} is not about {because:?}"
    );
    assert_counts(
        server,
        "client_assertions_accepted=0 client_assertions_refused=1 token_errors=1",
    );
}

/// Signs good claims changed by `edit` as `alg` (with `kid`), presents them to a fresh
/// server, and expects a refusal.
async fn assert_assertion_refused(
    alg: Algorithm,
    kid: Option<&str>,
    edit: impl FnOnce(&mut Value),
    because: &str,
) {
    let server = server().await;
    let mut claims = claims(&server);
    edit(&mut claims);
    let answer = present(&server, &sign(alg, kid, &claims)).await;
    assert_refused(&server, &answer, because);
}

/// Presents good claims signed as each of `algs` (without `kid`), and expects each
/// accepted.
async fn assert_each_accepted<const N: usize>(server: &MockServer, algs: [Algorithm; N]) {
    for alg in algs {
        present(server, &sign(alg, None, &claims(server)))
            .await
            .assert_token("Bearer");
    }
}

/// [`assert_assertion_refused`] for an ES256 assertion without `kid` whose claim `name`
/// is set to `value`, or removed if `value` is `Value::Null`.
async fn assert_claim_refused(name: &str, value: Value, because: &str) {
    let edit = |claims: &mut Value| {
        let claims = claims.as_object_mut().unwrap();
        match value {
            Value::Null => claims.remove(name),
            value => claims.insert(name.to_owned(), value),
        };
    };
    assert_assertion_refused(Algorithm::ES256, None, edit, because).await;
}

#[tokio::test]
async fn each_key_algorithm_and_key_source_is_accepted() {
    let server = server().await;
    // ES256 with the kid of its JWK, and without one; EdDSA with a PEM key; RS256 and
    // PS256 with one RSA JWK.
    for (alg, kid) in [
        (Algorithm::ES256, Some("ec-1")),
        (Algorithm::ES256, None),
        (Algorithm::EdDSA, None),
        (Algorithm::RS256, None),
        (Algorithm::PS256, None),
    ] {
        let answer = present(&server, &sign(alg, kid, &claims(&server))).await;
        answer.assert_token("Bearer");
    }
    assert_counts(
        &server,
        "client_assertions_accepted=5 client_assertions_refused=0 client_credentials_grants=5 token_errors=0",
    );
}

#[tokio::test]
async fn pem_keys_of_each_kind_are_accepted() {
    let server = started(
        MockServer::builder()
            .client_public_key(CLIENT, EC_PUBLIC)
            .client_public_key(CLIENT, RSA_PUBLIC),
    )
    .await;
    assert_each_accepted(&server, [Algorithm::ES256, Algorithm::RS256]).await;
    // Registering a key accepted private_key_jwt without `client_auth`.
    assert_counts(&server, "client_assertions_accepted=2");
}

#[tokio::test]
async fn each_hmac_algorithm_is_accepted_with_the_client_secret() {
    let server = server().await;
    assert_each_accepted(&server, [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512]).await;
    assert_counts(&server, "client_assertions_accepted=3 token_errors=0");
}

#[tokio::test]
async fn a_client_id_parameter_must_name_the_issuer() {
    let server = server().await;
    let client = http_client();
    let same = assertion_form(
        &sign(Algorithm::ES256, None, &claims(&server)),
        &format!("grant_type=client_credentials&client_id={CLIENT}"),
    );
    token_request(&client, &server, None, &same)
        .await
        .assert_token("Bearer");
    let other = assertion_form(
        &sign(Algorithm::ES256, None, &claims(&server)),
        "grant_type=client_credentials&client_id=someone-else",
    );
    let answer = token_request(&client, &server, None, &other).await;
    answer.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    assert_counts(
        &server,
        "client_assertions_accepted=1 client_assertions_refused=1",
    );
}

#[tokio::test]
async fn refresh_and_revocation_take_assertions_too() {
    let server = server().await;
    let client = http_client();
    let refresh_token = server.issue_refresh_token(CLIENT, "read");
    let form = assertion_form(
        &sign(Algorithm::EdDSA, None, &claims(&server)),
        &refresh_form(&refresh_token),
    );
    let body = token_request(&client, &server, None, &form)
        .await
        .assert_token("Bearer");
    let rotated = body["refresh_token"].as_str().expect("rotated");

    let revocation = assertion_form(
        &sign(Algorithm::HS256, None, &claims(&server)),
        &format!("token={rotated}"),
    );
    let url = server.revocation_url().expect("RFC 7009 endpoint");
    let answer = send(&client, form_post(&url, None, &revocation)).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);

    // A refused assertion refuses the revocation.
    let mut expired = claims(&server);
    expired["exp"] = json!(now() - 1);
    let refused = assertion_form(&sign(Algorithm::HS256, None, &expired), "token=whatever");
    let answer = send(&client, form_post(&url, None, &refused)).await;
    answer.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    assert_counts(
        &server,
        "refresh_token_grants=1 revocations=1 client_assertions_accepted=2 client_assertions_refused=1",
    );
}

#[tokio::test]
async fn the_issuer_is_an_audience_unless_the_server_demands_the_token_endpoint() {
    let server = server().await;
    for aud in [
        json!(server.base_url()),
        json!(["https://other.example", server.token_url()]),
    ] {
        let mut claims = claims(&server);
        claims["aud"] = aud;
        present(&server, &sign(Algorithm::ES256, None, &claims))
            .await
            .assert_token("Bearer");
    }

    let strict = started(server_builder().assertion_audience(AcceptedAssertionAudience::TokenEndpoint)).await;
    let mut claims_for_issuer = claims(&strict);
    claims_for_issuer["aud"] = json!(strict.base_url());
    let answer = present(&strict, &sign(Algorithm::ES256, None, &claims_for_issuer)).await;
    assert_refused(&strict, &answer, "aud does not name this server");
}

#[tokio::test]
async fn a_server_demanding_the_issuer_refuses_the_token_endpoint() {
    let server = started(server_builder().assertion_audience(AcceptedAssertionAudience::Issuer)).await;
    let answer = present(&server, &sign(Algorithm::ES256, None, &claims(&server))).await;
    assert_refused(&server, &answer, "aud does not name this server");

    let mut for_issuer = claims(&server);
    for_issuer["aud"] = json!(server.base_url());
    present(&server, &sign(Algorithm::ES256, None, &for_issuer))
        .await
        .assert_token("Bearer");

    // The issuer is the metadata document's, when the builder names another.
    let named = started(
        server_builder()
            .assertion_audience(AcceptedAssertionAudience::Issuer)
            .metadata_issuer("https://issuer.example"),
    )
    .await;
    let mut for_named = claims(&named);
    for_named["aud"] = json!("https://issuer.example");
    present(&named, &sign(Algorithm::ES256, None, &for_named))
        .await
        .assert_token("Bearer");
}

#[tokio::test]
async fn a_bad_signature_is_refused() {
    let server = server().await;
    let key = EncodingKey::from_ec_pem(OTHER_EC_KEY.as_bytes()).unwrap();
    let assertion = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims(&server), &key).unwrap();
    let answer = present(&server, &assertion).await;
    assert_refused(&server, &answer, "signature does not verify");
    // The refusal names the rule, never the assertion.
    assert!(!answer.json()["error_description"]
        .as_str()
        .unwrap()
        .contains(&assertion[..20]));
}

#[tokio::test]
async fn a_tampered_payload_is_refused() {
    let server = server().await;
    let assertion = sign(Algorithm::ES256, None, &claims(&server));
    let mut parts: Vec<String> = assertion.split('.').map(str::to_owned).collect();
    let mut claims = claims(&server);
    claims["sub"] = json!(CLIENT);
    claims["exp"] = json!(now() + 120);
    parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
    let answer = present(&server, &parts.join(".")).await;
    assert_refused(&server, &answer, "signature does not verify");
}

#[tokio::test]
async fn an_issuer_that_is_not_the_client_is_refused() {
    // Not a registered client; signed with the key of one.
    assert_assertion_refused(
        Algorithm::ES256,
        None,
        |claims| {
            claims["iss"] = json!("stranger");
            claims["sub"] = json!("stranger");
        },
        "unknown client",
    )
    .await;
}

#[tokio::test]
async fn a_subject_other_than_the_issuer_is_refused() {
    assert_claim_refused("sub", json!("someone-else"), "iss and sub differ").await;
}

#[tokio::test]
async fn a_wrong_audience_is_refused() {
    for (aud, because) in [
        (
            json!("https://other.example/token"),
            "aud does not name this server",
        ),
        (json!([]), "aud does not name this server"),
        (json!(42), "aud is not a string or an array"),
    ] {
        assert_claim_refused("aud", aud, because).await;
    }
    assert_claim_refused("aud", Value::Null, "has no aud").await;
}

#[tokio::test]
async fn an_expired_assertion_is_refused() {
    assert_claim_refused("exp", json!(now() - 1), "expired").await;
}

#[tokio::test]
async fn an_assertion_without_exp_or_living_too_long_is_refused() {
    assert_claim_refused("exp", Value::Null, "has no exp").await;
    // Ten minutes ahead is the most the server takes.
    assert_claim_refused("exp", json!(now() + 600 + 5), "more than ten minutes ahead").await;
}

#[tokio::test]
async fn an_iat_in_the_future_is_refused() {
    assert_claim_refused("iat", json!(now() + 300), "in the future").await;
}

#[tokio::test]
async fn a_missing_jti_is_refused() {
    assert_claim_refused("jti", Value::Null, "has no jti").await;
}

#[tokio::test]
async fn a_replayed_jti_is_refused() {
    let server = server().await;
    let claims = claims(&server);
    let assertion = sign(Algorithm::ES256, None, &claims);
    present(&server, &assertion).await.assert_token("Bearer");
    let answer = present(&server, &assertion).await;
    answer.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(answer.str_field("error_description").contains("replayed"));
    // Signed anew with another algorithm, the jti is still used up.
    let answer = present(&server, &sign(Algorithm::HS256, None, &claims)).await;
    answer.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    assert_counts(
        &server,
        "client_assertions_accepted=1 client_assertions_refused=2 client_assertion_replays=2",
    );
}

#[tokio::test]
async fn a_wrong_assertion_type_is_refused() {
    let server = server().await;
    let assertion = sign(Algorithm::ES256, None, &claims(&server));
    let form = format!(
        "grant_type=client_credentials&client_assertion_type={}&client_assertion={assertion}",
        encode("urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
    );
    let answer = token_request(&http_client(), &server, None, &form).await;
    assert_refused(&server, &answer, "unsupported client_assertion_type");
}

#[tokio::test]
async fn an_assertion_without_its_type_is_refused() {
    let server = server().await;
    let assertion = sign(Algorithm::ES256, None, &claims(&server));
    let form = format!("grant_type=client_credentials&client_assertion={assertion}");
    let answer = token_request(&http_client(), &server, None, &form).await;
    assert_refused(&server, &answer, "missing client_assertion_type");
}

#[tokio::test]
async fn alg_none_is_refused() {
    let server = server().await;
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims(&server).to_string());
    let answer = present(&server, &format!("{header}.{payload}.")).await;
    assert_refused(&server, &answer, "alg none");
}

#[tokio::test]
async fn an_hmac_with_a_wrong_secret_is_refused() {
    let server = server().await;
    let key = EncodingKey::from_secret(b"not-the-client-secret").unwrap();
    let assertion = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(&server), &key).unwrap();
    let answer = present(&server, &assertion).await;
    assert_refused(&server, &answer, "signature does not verify");
}

#[tokio::test]
async fn an_unknown_kid_is_refused() {
    // `ec-1` is the EC key's id; the PEM and RSA keys have none.
    let because = "no registered key of this client has the assertion's kid and alg";
    assert_assertion_refused(Algorithm::ES256, Some("ec-2"), |_| {}, because).await;
    assert_assertion_refused(Algorithm::EdDSA, Some("ec-1"), |_| {}, because).await;
}

#[tokio::test]
async fn an_alg_the_key_does_not_take_is_refused() {
    // An RSA JWK restricted to RS256 does not check PS256.
    let server = started(MockServer::builder().client_public_key(CLIENT, {
        let mut jwk: Value = serde_json::from_str(&public_jwk(Algorithm::RS256, None)).unwrap();
        jwk["alg"] = json!("RS256");
        jwk.to_string()
    }))
    .await;
    let answer = present(&server, &sign(Algorithm::PS256, None, &claims(&server))).await;
    assert_refused(&server, &answer, "fits the assertion's alg");
}

#[tokio::test]
async fn a_method_the_server_does_not_accept_is_refused() {
    // The default server takes Basic and body credentials; client_secret_jwt only
    // when asked for.
    let server = started(MockServer::builder().client(CLIENT, SECRET)).await;
    let answer = present(&server, &sign(Algorithm::HS256, None, &claims(&server))).await;
    assert_refused(&server, &answer, "method not accepted");
}

#[tokio::test]
async fn an_assertion_with_another_method_is_a_bad_request() {
    let server = server().await;
    let form = assertion_form(
        &sign(Algorithm::ES256, None, &claims(&server)),
        CLIENT_CREDENTIALS,
    );
    let answer = token_request(&http_client(), &server, Some(&basic(CLIENT, SECRET)), &form).await;
    answer.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
    assert_counts(&server, "client_assertions_refused=1");
}

#[tokio::test]
async fn a_client_with_only_a_key_must_use_it() {
    let server = started(MockServer::builder().client_public_key(CLIENT, EC_PUBLIC)).await;
    let form = format!("grant_type=client_credentials&client_id={CLIENT}");
    let answer = token_request(&http_client(), &server, None, &form).await;
    answer.assert_oauth_error(StatusCode::UNAUTHORIZED, "invalid_client");
    present(&server, &sign(Algorithm::ES256, None, &claims(&server)))
        .await
        .assert_token("Bearer");
}

#[tokio::test]
async fn the_metadata_document_lists_the_jwt_methods_and_their_algorithms() {
    let server = server().await;
    let url = server.metadata_url().expect("metadata");
    let document = send(&http_client(), get(&url)).await.json();
    assert_eq!(
        document["token_endpoint_auth_methods_supported"],
        json!(["client_secret_basic", "private_key_jwt", "client_secret_jwt"])
    );
    let algs = json!(["ES256", "EdDSA", "PS256", "RS256", "HS256", "HS384", "HS512"]);
    assert_eq!(document["token_endpoint_auth_signing_alg_values_supported"], algs);
    assert_eq!(
        document["revocation_endpoint_auth_signing_alg_values_supported"],
        algs
    );

    // Without a JWT method, no algorithms.
    let plain = started(MockServer::builder()).await;
    let document = send(&http_client(), get(&plain.metadata_url().unwrap()))
        .await
        .json();
    assert!(document
        .get("token_endpoint_auth_signing_alg_values_supported")
        .is_none());
}

#[test]
#[should_panic(expected = "private member `d`")]
fn registering_a_private_jwk_panics() {
    let _ = MockServer::builder().client_public_key(
        CLIENT,
        r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}"#,
    );
}
