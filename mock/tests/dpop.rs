//! DPoP (RFC 9449) on the standard server, over real HTTP on 127.0.0.1: the proofs the
//! token endpoint and the resource accept, the ones they refuse, and the nonce dance.
//! Proofs are signed here with fixed test keys through `jsonwebtoken`.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tower_oauth2_mock::{Fault, MockServer, MockServerBuilder, ResourceFault};

use support::*;

// Test keys, generated for these tests and used nowhere else.
const EC_KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgv9zlVQHNi9UAZIi4
2W/1u0kj75SZjAph1240WudIr0ChRANCAARkp9b1FRph1nvaN8s7XzfHkQ0cz+MY
ex7HkoGEMx1OYK8etdfxw4mxn2ix+hNWcVpGmJXxFz4vv9yjFX/tgn32
-----END PRIVATE KEY-----
";

const OTHER_EC_KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgeKbxuE/BN12QtGw8
/KjzkRiTWdpZrXVsQDizsauSrtChRANCAASPhq11GtenAkWPQ1lP0HRU3MX+bula
wcX56D2cjDc5PgszGqXhqRda2RhPOUh3VIwDtQtxqWjGfwlIg+fG0yu4
-----END PRIVATE KEY-----
";

const ED25519_KEY: &str = "\
-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIBOv1mtSDJ2I78Nj4zn2kYbgH7pl+DRw996OqIN4CUGc
-----END PRIVATE KEY-----
";

const RSA_KEY: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEogIBAAKCAQEAlTHSfOKFHR8D0jAE2TlXS23zlYQwH1ubPFAsynu87X0Bq2yQ
KSLBSIo5mMVj0Rs0C0e/ZBpI7ygklzZL1+bNnOQYUY9M6qOY9/z/pxvX5uluus9C
MzzP8MOiaBHAqaQ01XbxUjXFkE9hvCvlqiCz5VZk+wS5gJx9WsmrIHctpKeBDppn
Ajl5HxxtuiLNFlspsNIpvbUhWYoMYURgnGtc0xxAaT7IHlq3axz73gWtAN9G94Jd
hs++Nt43Z6tgKXBZ+W9UeN52954WAtDwkJh+dDyB/Egl4/8YFJM5iPMDa/WofE1c
GuZ8atkQifwxHLwk9cq3gaYmbXoqMSvtRvHVswIDAQABAoIBAD99zmfbNm7oLgYa
7VVMM7wj9I9ii+AsaenG7OjWs9YVZsp/DvKSmdK3ED/VcN8iRomuZOLC1NsCKGA5
eRlOXZ4w67B53W/VY1nVzy5ciQr5uGfDoBaSAKQjfU/wjh8jhGB7l8M2ovcA8UTV
IY2/EQ++LocswYzcC/TA8hSE42W4RLh73ltGDO52SPXfEtbgJXBDqpaqFg0EWYQA
9JT+7k9p9AgqA0V2NxP/yo6uzU/13T1NV/GAUwFxErmpeGY00XjlQXrBni8TeCfj
IZK6lKK6ei2E82I2PCug9NRWtxCaeGoq8O/m/n7qU+CUzQnZUhpAsGfFigK5SBuP
QNMMA+ECgYEAxZH8rrwMGLlYpGxHbcbXsHMfR8mA9KDCm24Dd33vLjGDZEwX5Z+q
wE72RnAJr5Se2cwnHzs0NVshjp5zHd4R6JNRxoi9B9hmL90LRpj3U/41YUWR1ml9
gk9XVnHxmtMLdiTNcDyhdZyJCZBkvbN9bFbsxgXgRNHhJTLC53RFWtkCgYEAwVFS
qk/LA23B9LNbaWO3bGMClaMqh7+H9HZlyUAVmt2pWal6kJ+uXPnCTfqXxkmLaD0f
F3X05VjmYpjmcAIljhOSar71T8KpTWqQwvjSR2Y62hKjSJC5APtALbiPAg6E9lL9
VPo6r/4XKm8YCFeeQXtt2CU8Ei4i7y1NUTc/pWsCgYB0l1FJgJmW4ZIo/ektJEHW
1CkqgQSD2HbfqI2NL5k9ZmTGhI05qf7nG/ID4Uwl/Iu9tdeEe7i0oAHumx0ODCX/
XSjOA5WiEpdDOavUzqJuQ78WlyqYIIq7orzEu9s7Zb4Gy3Mc//q8YFMSfM6mkEy8
6ZMyzPbrRfwaqpkQY7ImCQKBgFJyy63lkDErK5CgujjtlXo9lAmb6HSzBFoH8Qtv
MIe3SBX8iVCLOgNfZjZ5zSd9kF5pywvnfAYg70lX6tgUok3BHS43uUpGPIzPCWSO
WKio+iqtzkQRrUW04r9dOmjnJmAkLvWCL2uGE/0+GmLcc5t79/I6ly8tzCp0CMi9
poB3AoGAQXzp8pzxBm7PqtCgK4R1EuWsYBFylAtp+xfeXw8DBImKBe1LGygl6HDv
nbzjA034Z3Iuz42JNRJvsM//QLQ0A835NquTeVpOLP8qzLKS8UNjm9js1ITs1RCN
NRopsctcXRMbuD/MebonetDP9mI1Wx4JkvKD0NvI8Uu0C+TLC24=
-----END RSA PRIVATE KEY-----
";
/// A signing key and its public JWK.
struct Key {
    encoding: EncodingKey,
    algorithm: Algorithm,
    alg: &'static str,
    jwk: Value,
}

impl Key {
    fn new(algorithm: Algorithm, alg: &'static str, pem: &str) -> Key {
        let encoding = match algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_pem(pem.as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
            _ => EncodingKey::from_rsa_pem(pem.as_bytes()),
        }
        .expect("a test key");
        let jwk = Jwk::from_encoding_key(&encoding, algorithm).expect("a public JWK");
        let jwk = serde_json::to_value(jwk).expect("JWK as JSON");
        Key {
            encoding,
            algorithm,
            alg,
            jwk,
        }
    }

    fn es256() -> Key {
        Key::new(Algorithm::ES256, "ES256", EC_KEY)
    }

    fn other_es256() -> Key {
        Key::new(Algorithm::ES256, "ES256", OTHER_EC_KEY)
    }

    fn all() -> Vec<Key> {
        vec![
            Key::es256(),
            Key::new(Algorithm::EdDSA, "EdDSA", ED25519_KEY),
            Key::new(Algorithm::RS256, "RS256", RSA_KEY),
            Key::new(Algorithm::PS256, "PS256", RSA_KEY),
        ]
    }
}

/// The wall clock, as a proof's `iat` (RFC 9449 §4.2) and the mock read it.
#[allow(clippy::disallowed_methods)]
fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn fresh_jti() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "jti-{}-{}",
        NEXT.fetch_add(1, Ordering::Relaxed),
        fastrand::u64(..)
    )
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// The header and claims of a proof, for a test to change before signing.
#[derive(Clone)]
struct Proof {
    header: Value,
    claims: Value,
}

impl Proof {
    /// A valid proof of `key` for `method url`.
    fn new(key: &Key, method: &str, url: &str) -> Proof {
        Proof {
            header: json!({"typ": "dpop+jwt", "alg": key.alg, "jwk": key.jwk}),
            claims: json!({"htm": method, "htu": url, "iat": now(), "jti": fresh_jti()}),
        }
    }

    /// Sets a claim; `Value::Null` removes it.
    fn claim(mut self, name: &str, value: Value) -> Proof {
        set_member(&mut self.claims, name, value);
        self
    }

    /// Sets a header parameter; `Value::Null` removes it.
    fn header(mut self, name: &str, value: Value) -> Proof {
        set_member(&mut self.header, name, value);
        self
    }

    fn with_nonce(self, nonce: &str) -> Proof {
        self.claim("nonce", json!(nonce))
    }

    fn with_ath(self, token: &str) -> Proof {
        self.claim(
            "ath",
            json!(URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))),
        )
    }

    fn message(&self) -> String {
        format!("{}.{}", b64_json(&self.header), b64_json(&self.claims))
    }

    /// Signed with `key` (normally the key its `jwk` describes).
    fn sign(&self, key: &Key) -> String {
        self.sign_raw(&key.encoding, key.algorithm)
    }

    fn sign_raw(&self, encoding: &EncodingKey, algorithm: Algorithm) -> String {
        let message = self.message();
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), encoding, algorithm).expect("signing");
        format!("{message}.{signature}")
    }
}

fn set_member(object: &mut Value, name: &str, value: Value) {
    let object = object.as_object_mut().expect("a JSON object");
    if value.is_null() {
        object.remove(name);
    } else {
        object.insert(name.to_owned(), value);
    }
}

fn dpop_server() -> MockServerBuilder {
    MockServer::builder().dpop(true)
}

/// A token request with `form`, authenticated as the default client, carrying `proofs`
/// as `DPoP` headers.
async fn token_call(client: &HttpClient, server: &MockServer, form: &str, proofs: &[&[u8]]) -> Answer {
    let mut request = form_post(&server.token_url(), Some(&basic("client", "secret")), form);
    for proof in proofs {
        let value = HeaderValue::from_bytes(proof).expect("a header value");
        request.headers_mut().append("dpop", value);
    }
    send(client, request).await
}

/// A token request with `form` carrying the one proof `proof`.
async fn token_with_proof(client: &HttpClient, server: &MockServer, form: &str, proof: &str) -> Answer {
    token_call(client, server, form, &[proof.as_bytes()]).await
}

/// A token request of `form` with one fresh proof of `key`, carrying `nonce` if given.
async fn dpop_post(
    client: &HttpClient,
    server: &MockServer,
    key: &Key,
    form: &str,
    nonce: Option<&str>,
) -> Answer {
    let mut proof = Proof::new(key, "POST", &server.token_url());
    if let Some(nonce) = nonce {
        proof = proof.with_nonce(nonce);
    }
    token_call(client, server, form, &[proof.sign(key).as_bytes()]).await
}

/// A DPoP-bound access token for `key`, through the nonce dance if the server asks.
async fn dpop_token(client: &HttpClient, server: &MockServer, key: &Key) -> String {
    let mut answer = dpop_post(client, server, key, CLIENT_CREDENTIALS, None).await;
    if answer.status == StatusCode::BAD_REQUEST && answer.json()["error"] == "use_dpop_nonce" {
        let nonce = answer.header("dpop-nonce").expect("a DPoP-Nonce").to_owned();
        answer = dpop_post(client, server, key, CLIENT_CREDENTIALS, Some(&nonce)).await;
    }
    answer.assert_token("DPoP");
    answer.str_field("access_token")
}

/// A resource request with an optional `Authorization` value and `DPoP` headers.
async fn resource_call(
    client: &HttpClient,
    method: Method,
    url: &str,
    authorization: Option<&str>,
    proofs: &[&[u8]],
) -> Answer {
    let mut request = Request::builder().method(method).uri(url);
    if let Some(authorization) = authorization {
        request = request.header(AUTHORIZATION, authorization);
    }
    for proof in proofs {
        request = request.header("dpop", HeaderValue::from_bytes(proof).expect("a header value"));
    }
    send(client, request.body(Full::<Bytes>::default()).expect("request")).await
}

/// `GET url` with `Authorization: DPoP token` and the `DPoP` headers `proofs`.
async fn dpop_auth_get(client: &HttpClient, url: &str, token: &str, proofs: &[&[u8]]) -> Answer {
    resource_call(client, Method::GET, url, Some(&format!("DPoP {token}")), proofs).await
}

/// `GET url` with `Authorization: DPoP token` and a valid proof of `key`.
async fn dpop_get(client: &HttpClient, url: &str, token: &str, key: &Key, nonce: Option<&str>) -> Answer {
    let mut proof = Proof::new(key, "GET", url).with_ath(token);
    if let Some(nonce) = nonce {
        proof = proof.with_nonce(nonce);
    }
    dpop_auth_get(client, url, token, &[proof.sign(key).as_bytes()]).await
}

/// A server of `builder`, a client to call it and the ES256 test key.
async fn setup(builder: MockServerBuilder) -> (MockServer, HttpClient, Key) {
    (started(builder).await, http_client(), Key::es256())
}

/// What [`setup`] gives, with a DPoP-bound access token for the key and the URL of the
/// resource `/things`.
async fn bound(builder: MockServerBuilder) -> (MockServer, HttpClient, Key, String, String) {
    let (server, client, key) = setup(builder).await;
    let token = dpop_token(&client, &server, &key).await;
    let url = server.api_url("/things");
    (server, client, key, token, url)
}

/// The RFC 7638 thumbprint of a public JWK: its required members, in lexical order,
/// without white space, hashed with SHA-256.
fn thumbprint(jwk: &Value) -> String {
    let members: &[&str] = match jwk["kty"].as_str() {
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("OKP") => &["crv", "kty", "x"],
        Some("RSA") => &["e", "kty", "n"],
        other => panic!("no thumbprint for kty {other:?}"),
    };
    let input: Vec<String> = members
        .iter()
        .map(|name| format!("\"{name}\":{}", jwk[*name]))
        .collect();
    URL_SAFE_NO_PAD.encode(Sha256::digest(format!("{{{}}}", input.join(",")).as_bytes()))
}

#[track_caller]
fn assert_challenge(answer: &Answer, challenge: &str) {
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "body: {:?}", answer.body);
    assert_eq!(
        answer.header(WWW_AUTHENTICATE),
        Some(challenge),
        "body: {:?}",
        answer.body
    );
}

#[tokio::test]
async fn a_valid_proof_gets_a_dpop_bound_token_with_every_algorithm() {
    let (server, client) = started_with_client(dpop_server()).await;
    for key in Key::all() {
        let token = dpop_token(&client, &server, &key).await;
        let answer = dpop_get(&client, &server.api_url("/things"), &token, &key, None).await;
        assert_eq!(answer.status, StatusCode::OK, "{}: {:?}", key.alg, answer.body);
        assert_eq!(answer.json()["placement"], "authorization_dpop");
        assert_eq!(
            answer.json()["cnf"],
            json!({"jkt": thumbprint(&key.jwk)}),
            "{}",
            key.alg
        );
        assert!(answer.header("dpop-nonce").is_none());
    }
    assert_counts(
        &server,
        "token_requests=4 token_errors=0 dpop_proofs_accepted=8 dpop_distinct_jtis=8 dpop_proofs_refused=0 resource_calls_authorized=4",
    );
}

#[tokio::test]
async fn the_metadata_document_names_the_proof_algorithms() {
    let client = http_client();
    let server = started(dpop_server()).await;
    let document = send(&client, get(&server.metadata_url().unwrap())).await.json();
    assert_eq!(
        document["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA", "RS256", "PS256"])
    );
    let plain = started(MockServer::builder()).await;
    let document = send(&client, get(&plain.metadata_url().unwrap())).await.json();
    assert!(document.get("dpop_signing_alg_values_supported").is_none());
}

#[tokio::test]
async fn without_dpop_the_header_is_ignored_and_tokens_are_bearer() {
    let (server, client) = started_with_client(MockServer::builder()).await;
    let key = Key::es256();
    let proof = Proof::new(&key, "POST", &server.token_url()).sign(&key);
    let answer = token_with_proof(&client, &server, CLIENT_CREDENTIALS, &proof).await;
    answer.assert_token("Bearer");
    let token = answer.str_field("access_token");
    assert_eq!(
        bearer_call(&client, &server, "/x", &token).await.status,
        StatusCode::OK
    );
    assert_counts(&server, "dpop_proofs_accepted=0 dpop_distinct_jtis=0");
}

#[tokio::test]
async fn the_emulators_do_not_do_dpop() {
    let (server, client) = started_with_client(MockServer::agrello().dpop(true).dpop_nonces(true)).await;
    let key = Key::es256();
    let refresh_token = server.issue_refresh_token("client", "");
    let proof = Proof::new(&key, "POST", &server.token_url()).sign(&key);
    let answer = token_with_proof(&client, &server, &refresh_form(&refresh_token), &proof).await;
    answer.assert_token("Bearer");
    assert!(answer.header("dpop-nonce").is_none());
}

#[tokio::test]
async fn a_refresh_without_a_proof_is_invalid_grant_and_uses_nothing_up() {
    let (server, client, key) = setup(dpop_server()).await;
    let refresh_token = server.issue_refresh_token("client", "read");

    let answer = token_call(&client, &server, &refresh_form(&refresh_token), &[]).await;
    answer.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");

    let proof = Proof::new(&key, "POST", &server.token_url()).sign(&key);
    let answer = token_with_proof(&client, &server, &refresh_form(&refresh_token), &proof).await;
    let body = answer.assert_token("DPoP");
    assert!(body["refresh_token"].is_string(), "rotated: {body}");
    assert_counts(
        &server,
        "refresh_token_grants=2 token_errors=1 dpop_proofs_accepted=1",
    );
}

#[tokio::test]
async fn a_code_exchange_without_a_proof_is_invalid_grant_and_keeps_the_code() {
    let (server, client, key) = setup(dpop_server()).await;
    let redirect_uri = "https://app.example/cb";
    let code = server.issue_authorization_code("client", redirect_uri, "read");
    let form = exchange_form(&code, Some(redirect_uri));

    token_call(&client, &server, &form, &[])
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
    let proof = Proof::new(&key, "POST", &server.token_url()).sign(&key);
    let answer = token_with_proof(&client, &server, &form, &proof).await;
    answer.assert_token("DPoP");
}

#[tokio::test]
async fn the_token_endpoint_refuses_each_broken_proof() {
    let (server, client, key) = setup(dpop_server()).await;
    let url = server.token_url();
    let other_host = url.replace("127.0.0.1", "localhost");
    let good = || Proof::new(&key, "POST", &url);
    let mut private_jwk = key.jwk.clone();
    set_member(
        &mut private_jwk,
        "d",
        json!("v9zlVQHNi9UAZIi42W_1u0kj75SZjAph1240WudIr0A"),
    );
    let hmac = EncodingKey::from_secret(b"a shared secret is no proof of possession").unwrap();

    let cases: Vec<(&str, String)> = vec![
        ("htm GET", good().claim("htm", json!("GET")).sign(&key)),
        ("htm lower case", good().claim("htm", json!("post")).sign(&key)),
        ("htm missing", good().claim("htm", Value::Null).sign(&key)),
        (
            "htu of another path",
            good()
                .claim("htu", json!(url.replace("/oauth/token", "/oauth/tokens")))
                .sign(&key),
        ),
        (
            "htu of another host",
            good().claim("htu", json!(other_host)).sign(&key),
        ),
        (
            "htu https",
            good()
                .claim("htu", json!(url.replace("http:", "https:")))
                .sign(&key),
        ),
        ("htu missing", good().claim("htu", Value::Null).sign(&key)),
        ("iat stale", good().claim("iat", json!(now() - 120)).sign(&key)),
        (
            "iat in the future",
            good().claim("iat", json!(now() + 120)).sign(&key),
        ),
        ("iat missing", good().claim("iat", Value::Null).sign(&key)),
        (
            "iat a string",
            good().claim("iat", json!(now().to_string())).sign(&key),
        ),
        ("jti missing", good().claim("jti", Value::Null).sign(&key)),
        ("jti empty", good().claim("jti", json!("")).sign(&key)),
        (
            "ath at the token endpoint",
            good().with_ath("some-token").sign(&key),
        ),
        ("typ JWT", good().header("typ", json!("JWT")).sign(&key)),
        ("typ missing", good().header("typ", Value::Null).sign(&key)),
        (
            "alg none",
            format!("{}.", good().header("alg", json!("none")).message()),
        ),
        (
            "alg HS256",
            good()
                .header("alg", json!("HS256"))
                .sign_raw(&hmac, Algorithm::HS256),
        ),
        (
            "alg not the key's",
            good().header("alg", json!("EdDSA")).sign(&key),
        ),
        ("jwk missing", good().header("jwk", Value::Null).sign(&key)),
        (
            "jwk with a private member",
            good().header("jwk", private_jwk).sign(&key),
        ),
        ("signed by another key", good().sign(&Key::other_es256())),
        (
            "signature cut",
            good().sign(&key).trim_end_matches(|c| c != '.').to_owned(),
        ),
        ("crit header", good().header("crit", json!(["exp"])).sign(&key)),
    ];
    let refresh_token = server.issue_refresh_token("client", "read");
    for (n, (case, proof)) in cases.iter().enumerate() {
        let answer = token_with_proof(&client, &server, &refresh_form(&refresh_token), proof).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{case}: {:?}",
            answer.body
        );
        assert_eq!(answer.json()["error"], "invalid_dpop_proof", "{case}");
        assert!(answer.header(WWW_AUTHENTICATE).is_none(), "{case}");
        assert_eq!(server.counters().dpop_proofs_refused, n as u64 + 1, "{case}");
    }
    // Two proofs, each valid on its own.
    let (first, second) = (good().sign(&key), good().sign(&key));
    let answer = token_call(
        &client,
        &server,
        CLIENT_CREDENTIALS,
        &[first.as_bytes(), second.as_bytes()],
    )
    .await;
    answer.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof");

    // Nothing was used up.
    let answer = token_with_proof(
        &client,
        &server,
        &refresh_form(&refresh_token),
        &good().sign(&key),
    )
    .await;
    answer.assert_token("DPoP");
    assert_counts(
        &server,
        "dpop_proofs_accepted=1 dpop_distinct_jtis=1 dpop_replays=0",
    );
}

#[tokio::test]
async fn htu_names_the_host_the_request_was_sent_to() {
    let (server, client, key) = setup(dpop_server()).await;
    let authority = server.addr().to_string();
    let localhost = format!("localhost:{}", server.addr().port());
    let as_localhost = |proof: &str| {
        let mut request = form_post(
            &server.token_url(),
            Some(&basic("client", "secret")),
            CLIENT_CREDENTIALS,
        );
        request
            .headers_mut()
            .insert(HOST, HeaderValue::from_str(&localhost).unwrap());
        request
            .headers_mut()
            .insert("dpop", HeaderValue::from_str(proof).unwrap());
        request
    };
    let for_ip = Proof::new(&key, "POST", &format!("http://{authority}/oauth/token")).sign(&key);
    let answer = send(&client, as_localhost(&for_ip)).await;
    answer.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof");
    let for_name = Proof::new(&key, "POST", &format!("http://{localhost}/oauth/token")).sign(&key);
    send(&client, as_localhost(&for_name)).await.assert_token("DPoP");
}

#[tokio::test]
async fn htu_ignores_the_query_and_the_fragment() {
    let (server, client, key) = setup(dpop_server()).await;
    let htu = format!("{}?ignored=1#also", server.token_url());
    let proof = Proof::new(&key, "POST", &htu).sign(&key);
    token_with_proof(&client, &server, CLIENT_CREDENTIALS, &proof)
        .await
        .assert_token("DPoP");
}

#[tokio::test]
async fn a_replayed_proof_is_refused_at_the_token_endpoint() {
    let (server, client, key) = setup(dpop_server()).await;
    let proof = Proof::new(&key, "POST", &server.token_url());
    let signed = proof.sign(&key);
    token_with_proof(&client, &server, CLIENT_CREDENTIALS, &signed)
        .await
        .assert_token("DPoP");
    let answer = token_with_proof(&client, &server, CLIENT_CREDENTIALS, &signed).await;
    answer.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof");
    // The same jti in a proof signed again (another iat) is a replay too.
    let again = proof.claim("iat", json!(now() - 1)).sign(&key);
    let answer = token_with_proof(&client, &server, CLIENT_CREDENTIALS, &again).await;
    answer.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof");
    assert_counts(
        &server,
        "dpop_proofs_accepted=1 dpop_replays=2 dpop_proofs_refused=2 dpop_distinct_jtis=1",
    );
}

#[tokio::test]
async fn the_token_endpoint_demands_its_nonce_once_per_rotation() {
    let (server, client, key) = setup(dpop_server().dpop_nonces(true)).await;
    let refresh_token = server.issue_refresh_token("client", "read");
    let form = refresh_form(&refresh_token);

    let answer = dpop_post(&client, &server, &key, &form, None).await;
    answer.assert_oauth_error(StatusCode::BAD_REQUEST, "use_dpop_nonce");
    assert!(answer.header(WWW_AUTHENTICATE).is_none());
    let nonce = answer.header("dpop-nonce").expect("DPoP-Nonce").to_owned();

    // The refresh token was not used up by the nonce demand.
    let answer = dpop_post(&client, &server, &key, &form, Some(&nonce)).await;
    let body = answer.assert_token("DPoP");
    assert_eq!(answer.header("dpop-nonce"), Some(nonce.as_str()));
    let refresh_token = body["refresh_token"].as_str().unwrap().to_owned();

    // The same nonce keeps working until it is rotated.
    dpop_post(&client, &server, &key, CLIENT_CREDENTIALS, Some(&nonce))
        .await
        .assert_token("DPoP");

    server.rotate_dpop_nonces();
    let answer = dpop_post(
        &client,
        &server,
        &key,
        &refresh_form(&refresh_token),
        Some(&nonce),
    )
    .await;
    answer.assert_oauth_error(StatusCode::BAD_REQUEST, "use_dpop_nonce");
    let rotated = answer.header("dpop-nonce").expect("DPoP-Nonce").to_owned();
    assert_ne!(rotated, nonce);
    let answer = dpop_post(
        &client,
        &server,
        &key,
        &refresh_form(&refresh_token),
        Some(&rotated),
    )
    .await;
    answer.assert_token("DPoP");
    assert_eq!(answer.header("dpop-nonce"), Some(rotated.as_str()));

    assert_counts(
        &server,
        "token_requests=5 dpop_nonce_demanded_token=2 dpop_proofs_accepted=3 dpop_distinct_jtis=5 dpop_proofs_refused=0",
    );
}

#[tokio::test]
async fn the_resource_demands_its_own_nonce_once_per_rotation() {
    let (server, client, key, token, url) = bound(dpop_server().dpop_nonces(true)).await;

    let answer = dpop_get(&client, &url, &token, &key, None).await;
    assert_challenge(&answer, r#"DPoP error="use_dpop_nonce""#);
    let nonce = answer.header("dpop-nonce").expect("DPoP-Nonce").to_owned();

    let answer = dpop_get(&client, &url, &token, &key, Some(&nonce)).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    assert_eq!(answer.header("dpop-nonce"), Some(nonce.as_str()));
    let answer = dpop_get(&client, &url, &token, &key, Some(&nonce)).await;
    assert_eq!(answer.status, StatusCode::OK);

    server.rotate_dpop_nonces();
    let answer = dpop_get(&client, &url, &token, &key, Some(&nonce)).await;
    assert_challenge(&answer, r#"DPoP error="use_dpop_nonce""#);
    let rotated = answer.header("dpop-nonce").expect("DPoP-Nonce").to_owned();
    assert_ne!(rotated, nonce);
    assert_eq!(
        dpop_get(&client, &url, &token, &key, Some(&rotated)).await.status,
        StatusCode::OK
    );

    assert_counts(
        &server,
        "dpop_nonce_demanded_resource=2 dpop_nonce_demanded_token=1 resource_calls_authorized=3",
    );
}

#[tokio::test]
async fn the_token_endpoint_nonce_is_not_the_resource_nonce() {
    let (server, client, key) = setup(dpop_server().dpop_nonces(true)).await;
    let answer = dpop_post(&client, &server, &key, CLIENT_CREDENTIALS, None).await;
    let token_nonce = answer.header("dpop-nonce").unwrap().to_owned();
    let token = dpop_post(&client, &server, &key, CLIENT_CREDENTIALS, Some(&token_nonce))
        .await
        .str_field("access_token");

    let answer = dpop_get(&client, &server.api_url("/x"), &token, &key, Some(&token_nonce)).await;
    assert_challenge(&answer, r#"DPoP error="use_dpop_nonce""#);
    assert_ne!(answer.header("dpop-nonce"), Some(token_nonce.as_str()));
}

#[tokio::test]
async fn the_resource_refuses_a_dpop_bound_token_sent_as_bearer() {
    let (server, client, key, token, url) = bound(dpop_server()).await;
    let proof = Proof::new(&key, "GET", &url).with_ath(&token).sign(&key);
    let answer = resource_call(
        &client,
        Method::GET,
        &url,
        Some(&format!("Bearer {token}")),
        &[proof.as_bytes()],
    )
    .await;
    assert_challenge(&answer, r#"DPoP error="invalid_token""#);
    let answer = send(&client, bearer_get(&url, &token)).await;
    assert_challenge(&answer, r#"DPoP error="invalid_token""#);
    assert_counts(&server, "bearer_for_dpop_token=2 resource_calls_authorized=0");
}

#[tokio::test]
async fn the_resource_refuses_each_broken_proof() {
    let (server, client, key, token, url) = bound(dpop_server()).await;
    let good = || Proof::new(&key, "GET", &url).with_ath(&token);
    let cases: Vec<(&str, String)> = vec![
        (
            "ath of another token",
            Proof::new(&key, "GET", &url).with_ath("another-token").sign(&key),
        ),
        ("ath missing", Proof::new(&key, "GET", &url).sign(&key)),
        ("htm POST", good().claim("htm", json!("POST")).sign(&key)),
        (
            "htu of another path",
            good().claim("htu", json!(server.api_url("/other"))).sign(&key),
        ),
        (
            "htu of the token endpoint",
            good().claim("htu", json!(server.token_url())).sign(&key),
        ),
        ("iat stale", good().claim("iat", json!(now() - 120)).sign(&key)),
        ("typ JWT", good().header("typ", json!("JWT")).sign(&key)),
        ("signed by another key", good().sign(&Key::other_es256())),
    ];
    for (n, (case, proof)) in cases.iter().enumerate() {
        let answer = dpop_auth_get(&client, &url, &token, &[proof.as_bytes()]).await;
        assert_challenge(&answer, r#"DPoP error="invalid_dpop_proof""#);
        assert_eq!(server.counters().dpop_proofs_refused, n as u64 + 1, "{case}");
    }
    let answer = dpop_auth_get(&client, &url, &token, &[]).await;
    assert_challenge(&answer, r#"DPoP error="invalid_dpop_proof""#);
    let answer = resource_call(&client, Method::GET, &url, None, &[]).await;
    assert_challenge(&answer, r#"DPoP algs="ES256 EdDSA RS256 PS256""#);

    // The query is not part of htu; the token still works with a good proof.
    let with_query = format!("{url}?page=2");
    let proof = Proof::new(&key, "GET", &url).with_ath(&token).sign(&key);
    let answer = dpop_auth_get(&client, &with_query, &token, &[proof.as_bytes()]).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
}

#[tokio::test]
async fn a_replayed_proof_is_refused_at_the_resource() {
    let (server, client, key, token, url) = bound(dpop_server()).await;
    let proof = Proof::new(&key, "GET", &url).with_ath(&token).sign(&key);
    let first = dpop_auth_get(&client, &url, &token, &[proof.as_bytes()]).await;
    assert_eq!(first.status, StatusCode::OK);
    let second = dpop_auth_get(&client, &url, &token, &[proof.as_bytes()]).await;
    assert_challenge(&second, r#"DPoP error="invalid_dpop_proof""#);
    assert_counts(&server, "dpop_replays=1 resource_calls_authorized=1");
}

#[tokio::test]
async fn the_resource_refuses_a_proof_of_another_key_and_unknown_tokens() {
    let (server, client, key, token, url) = bound(dpop_server()).await;
    let other = Key::other_es256();
    assert_challenge(
        &dpop_get(&client, &url, &token, &other, None).await,
        r#"DPoP error="invalid_token""#,
    );
    let unknown = "A".repeat(40);
    assert_challenge(
        &dpop_get(&client, &url, &unknown, &key, None).await,
        r#"DPoP error="invalid_token""#,
    );
    server.revoke_all_access_tokens();
    assert_challenge(
        &dpop_get(&client, &url, &token, &key, None).await,
        r#"DPoP error="invalid_token""#,
    );
}

#[tokio::test]
async fn a_refresh_binds_the_new_token_to_the_new_key() {
    let (server, client) = started_with_client(dpop_server()).await;
    let (old_key, new_key) = (Key::es256(), Key::other_es256());
    let url = server.token_url();
    let refresh_token = server.issue_refresh_token("client", "read");
    let proof = Proof::new(&old_key, "POST", &url).sign(&old_key);
    let answer = token_with_proof(&client, &server, &refresh_form(&refresh_token), &proof).await;
    let old_token = answer.str_field("access_token");
    let refresh_token = answer.str_field("refresh_token");

    let proof = Proof::new(&new_key, "POST", &url).sign(&new_key);
    let answer = token_with_proof(&client, &server, &refresh_form(&refresh_token), &proof).await;
    answer.assert_token("DPoP");
    let new_token = answer.str_field("access_token");

    let api = server.api_url("/things");
    assert_eq!(
        dpop_get(&client, &api, &new_token, &new_key, None).await.status,
        StatusCode::OK
    );
    assert_challenge(
        &dpop_get(&client, &api, &new_token, &old_key, None).await,
        r#"DPoP error="invalid_token""#,
    );
    assert_eq!(
        dpop_get(&client, &api, &old_token, &old_key, None).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn malformed_and_huge_proofs_are_answered_not_panicked_on() {
    let (server, client, key, token, api) = bound(dpop_server()).await;
    let huge = format!(
        "{}.{}.{}",
        "e".repeat(30_000),
        "e".repeat(30_000),
        "e".repeat(30_000)
    );
    let nested = URL_SAFE_NO_PAD.encode("[".repeat(10_000));
    let proofs: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"x".to_vec(),
        b"a.b.c".to_vec(),
        b"...".to_vec(),
        b"e30.e30.e30.e30".to_vec(),
        format!("{nested}.{nested}.AA").into_bytes(),
        huge.into_bytes(),
        vec![0xff, b'.', 0xfe, b'.', 0x80],
        format!("{}.e30.AA", b64_json(&json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}}))).into_bytes(),
        format!("{}.e30.AA", b64_json(&json!({"typ": "dpop+jwt", "alg": "RS256", "jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}}))).into_bytes(),
        format!("{}.e30.AA", b64_json(&json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": {"kty": "OKP", "crv": "Ed25519", "x": "!!"}}))).into_bytes(),
    ];
    for proof in &proofs {
        let answer = token_call(&client, &server, CLIENT_CREDENTIALS, &[proof]).await;
        answer.assert_oauth_error(StatusCode::BAD_REQUEST, "invalid_dpop_proof");
        let answer = dpop_auth_get(&client, &api, &token, &[proof]).await;
        assert_challenge(&answer, r#"DPoP error="invalid_dpop_proof""#);
    }
    // Still serving.
    assert_eq!(
        dpop_get(&client, &api, &token, &key, None).await.status,
        StatusCode::OK
    );
    let n = proofs.len() as u64;
    assert_counts(
        &server,
        &format!("dpop_proofs_refused={} token_errors={n}", 2 * n),
    );
}

#[tokio::test]
async fn every_fresh_proof_is_a_distinct_jti() {
    let (server, client, key, token, api) = bound(dpop_server()).await;
    for _ in 0..100 {
        assert_eq!(
            dpop_get(&client, &api, &token, &key, None).await.status,
            StatusCode::OK
        );
    }
    assert_counts(
        &server,
        "dpop_distinct_jtis=101 dpop_proofs_accepted=101 resource_calls_authorized=100",
    );
    server.reset_counters();
    assert_counts(&server, "dpop_distinct_jtis=0 dpop_proofs_accepted=0");
}

#[tokio::test]
#[should_panic(expected = "dpop_nonces(true)")]
async fn rotating_nonces_on_a_server_without_them_is_a_test_bug() {
    let server = started(dpop_server()).await;
    server.rotate_dpop_nonces();
}

#[tokio::test]
async fn resource_faults_demand_a_nonce_again_or_refuse_a_live_token() {
    let server = started(dpop_server().dpop_nonces(true)).await;
    let client = http_client();
    let key = Key::es256();
    let token = dpop_token(&client, &server, &key).await;
    let url = server.api_url("/things");
    let answer = dpop_get(&client, &url, &token, &key, None).await;
    let nonce = answer.header("dpop-nonce").expect("DPoP-Nonce").to_owned();
    assert_eq!(
        dpop_get(&client, &url, &token, &key, Some(&nonce)).await.status,
        StatusCode::OK
    );

    server.fail_next_resource_requests(2, ResourceFault::DemandDpopNonce);
    server.fail_next_resource_requests(1, ResourceFault::InvalidToken);
    // A demand even with the current nonce, each with a nonce of its own that
    // replaces the one before.
    let answer = dpop_get(&client, &url, &token, &key, Some(&nonce)).await;
    assert_challenge(&answer, r#"DPoP error="use_dpop_nonce""#);
    let first = answer.header("dpop-nonce").expect("DPoP-Nonce").to_owned();
    let answer = dpop_get(&client, &url, &token, &key, Some(&first)).await;
    assert_challenge(&answer, r#"DPoP error="use_dpop_nonce""#);
    let second = answer.header("dpop-nonce").expect("DPoP-Nonce").to_owned();
    assert!(nonce != first && first != second && nonce != second);
    // A live token refused as a dead one.
    let answer = dpop_get(&client, &url, &token, &key, Some(&second)).await;
    assert_challenge(&answer, r#"DPoP error="invalid_token""#);
    assert_eq!(answer.header("dpop-nonce"), Some(second.as_str()));

    // The faults are used up: the token is still good, with the latest nonce only.
    let answer = dpop_get(&client, &url, &token, &key, Some(&first)).await;
    assert_challenge(&answer, r#"DPoP error="use_dpop_nonce""#);
    assert_eq!(
        dpop_get(&client, &url, &token, &key, Some(&second)).await.status,
        StatusCode::OK
    );
    assert_counts(
        &server,
        "resource_calls=7 resource_calls_authorized=2 dpop_nonce_demanded_resource=4 \
         dpop_proofs_refused=0 dpop_replays=0",
    );
}

#[tokio::test]
async fn without_dpop_an_invalid_token_fault_is_a_bearer_challenge() {
    let server = started(MockServer::builder().client("client", "secret")).await;
    let client = http_client();
    server.fail_next_resource_requests(1, ResourceFault::InvalidToken);
    let answer = send(&client, bearer_get(&server.api_url("/things"), "anything")).await;
    assert_challenge(&answer, r#"Bearer realm="mock", error="invalid_token""#);
    server.fail_next_resource_requests(1, ResourceFault::DemandDpopNonce);
    let answer = send(&client, bearer_get(&server.api_url("/things"), "anything")).await;
    assert_challenge(&answer, r#"DPoP error="use_dpop_nonce""#);
    assert!(answer.header("dpop-nonce").is_some_and(|nonce| !nonce.is_empty()));
}

#[tokio::test]
async fn rotating_on_success_announces_the_next_nonce_in_each_success() {
    let server = started(dpop_server().rotate_dpop_nonces_on_success(true)).await;
    let client = http_client();
    let key = Key::es256();

    // The token endpoint: each token answer names the nonce the next request needs.
    let answer = dpop_post(&client, &server, &key, CLIENT_CREDENTIALS, None).await;
    answer.assert_oauth_error(StatusCode::BAD_REQUEST, "use_dpop_nonce");
    let demanded = answer.header("dpop-nonce").expect("DPoP-Nonce").to_owned();
    let answer = dpop_post(&client, &server, &key, CLIENT_CREDENTIALS, Some(&demanded)).await;
    let token = answer.assert_token("DPoP")["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let next = answer.header("dpop-nonce").expect("DPoP-Nonce").to_owned();
    assert_ne!(next, demanded);
    let answer = dpop_post(&client, &server, &key, CLIENT_CREDENTIALS, Some(&demanded)).await;
    answer.assert_oauth_error(StatusCode::BAD_REQUEST, "use_dpop_nonce");
    assert_eq!(
        answer.header("dpop-nonce"),
        Some(next.as_str()),
        "a refusal rotates nothing"
    );
    let answer = dpop_post(&client, &server, &key, CLIENT_CREDENTIALS, Some(&next)).await;
    answer.assert_token("DPoP");
    assert_ne!(answer.header("dpop-nonce"), Some(next.as_str()));

    // The resource, likewise, with nonces of its own.
    let url = server.api_url("/things");
    let answer = dpop_get(&client, &url, &token, &key, None).await;
    assert_challenge(&answer, r#"DPoP error="use_dpop_nonce""#);
    let mut nonce = answer.header("dpop-nonce").expect("DPoP-Nonce").to_owned();
    for _ in 0..3 {
        let answer = dpop_get(&client, &url, &token, &key, Some(&nonce)).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        let announced = answer.header("dpop-nonce").expect("DPoP-Nonce").to_owned();
        assert_ne!(announced, nonce);
        nonce = announced;
    }
    assert_counts(
        &server,
        "token_requests=4 dpop_nonce_demanded_token=2 dpop_nonce_demanded_resource=1 \
         resource_calls_authorized=3 dpop_proofs_refused=0",
    );
}

#[tokio::test]
async fn a_token_fault_demands_a_nonce_again_with_a_new_one() {
    let server = started(dpop_server().dpop_nonces(true)).await;
    let client = http_client();
    let key = Key::es256();
    let answer = dpop_post(&client, &server, &key, CLIENT_CREDENTIALS, None).await;
    let nonce = answer.header("dpop-nonce").expect("DPoP-Nonce").to_owned();

    server.fail_next_token_requests(1, Fault::DemandDpopNonce);
    let answer = dpop_post(&client, &server, &key, CLIENT_CREDENTIALS, Some(&nonce)).await;
    answer.assert_oauth_error(StatusCode::BAD_REQUEST, "use_dpop_nonce");
    let rotated = answer.header("dpop-nonce").expect("DPoP-Nonce").to_owned();
    assert_ne!(rotated, nonce);
    // The nonce it announced replaced the one before.
    dpop_post(&client, &server, &key, CLIENT_CREDENTIALS, Some(&nonce))
        .await
        .assert_oauth_error(StatusCode::BAD_REQUEST, "use_dpop_nonce");
    dpop_post(&client, &server, &key, CLIENT_CREDENTIALS, Some(&rotated))
        .await
        .assert_token("DPoP");
    assert_counts(
        &server,
        "token_requests=4 token_errors=3 dpop_nonce_demanded_token=3 dpop_proofs_accepted=1",
    );
}
