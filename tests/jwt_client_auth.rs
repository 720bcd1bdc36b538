//! JWT client authentication (`private_key_jwt`, `client_secret_jwt`; RFC 7523 §2.2)
//! over real HTTP, against the mock server, which checks every assertion with code of
//! its own (`jsonwebtoken`, RustCrypto) and refuses a reused `jti`.
#![cfg(all(feature = "jose", feature = "hyper-transport"))]

mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};
use serde_json::Value;
use support::mock::{assert_counts, started};
use tower::{Layer, ServiceExt};
use tower_oauth2::{
    jose::{HmacAlgorithm, SigningAlgorithm, SigningKey},
    AssertionAudience, ClientAuth, Credential, CredentialRegistry, Error, OAuth2, OAuth2Layer, Provider,
    RefreshPolicy, Revocation, Revoked, TokenRequest, TokenTransport,
};
use tower_oauth2_mock::{AcceptedClientAuth, MockServer, MockServerBuilder};

const CLIENT: &str = "jwt-client";
const SECRET: &str = "a-secret-of-sixty-four-bytes-for-hs512-0123456789abcdef012345678";

type Http = Client<HttpConnector, Full<Bytes>>;

fn http() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// A plain hyper client that also keeps the body of every request it sends.
fn recording_transport() -> (TokenTransport, Arc<Mutex<Vec<String>>>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&sent);
    let client = http();
    let transport = TokenTransport::new(tower::service_fn(move |request: TokenRequest| {
        let (client, seen) = (client.clone(), Arc::clone(&seen));
        async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.expect("a full body").to_bytes();
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            client.request(Request::from_parts(parts, Full::new(body))).await
        }
    }));
    (transport, sent)
}

/// The `client_assertion` of a form body, and its claims.
fn assertion_of(body: &str) -> (String, Value) {
    let assertion = form_urlencoded::parse(body.as_bytes())
        .find(|(name, _)| name == "client_assertion")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| panic!("no client_assertion in {body}"));
    let payload = assertion.split('.').nth(1).expect("a compact JWS");
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    (assertion, serde_json::from_slice(&claims).expect("JSON claims"))
}

fn key_file(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// The standard server, with `CLIENT` registered with its secret and `key`'s public
/// JWK, accepting both JWT methods.
fn server_with(key: &SigningKey) -> MockServerBuilder {
    MockServer::builder()
        .client(CLIENT, SECRET)
        .client_public_key(CLIENT, key.public_jwk())
        .client_auth(&[
            AcceptedClientAuth::PrivateKeyJwt,
            AcceptedClientAuth::ClientSecretJwt,
        ])
}

fn provider(server: &MockServer, client_auth: ClientAuth) -> Provider {
    Provider::standard(server.token_url())
        .name("mock")
        .client_auth(client_auth)
        .api(server.base_url())
}

/// Client credentials for `CLIENT`, authenticating with `key`.
fn signed_by(server: &MockServer, key: &SigningKey) -> Credential {
    Credential::client_credentials_with_key(provider(server, ClientAuth::Basic), CLIENT, key.clone())
}

struct Layered {
    client: OAuth2<Http>,
    credentials: CredentialRegistry,
    sent: Arc<Mutex<Vec<String>>>,
}

fn layered(credential: Credential) -> Layered {
    let (transport, sent) = recording_transport();
    let credentials = CredentialRegistry::builder()
        .credential(credential)
        .transport(transport)
        .build()
        .unwrap();
    Layered {
        client: OAuth2Layer::new(credentials.clone()).layer(http()),
        credentials,
        sent,
    }
}

impl Layered {
    /// One API call through the layer: its status, or the error.
    async fn call(&self, server: &MockServer) -> Result<StatusCode, Error> {
        let request = Request::get(server.api_url("/things"))
            .body(Full::default())
            .unwrap();
        let response = self.client.clone().oneshot(request).await?;
        Ok(response.status())
    }

    fn sent(&self) -> Vec<String> {
        self.sent.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn each_algorithm_and_key_source_gets_a_token() {
    let rsa = SigningKey::from_pem(&key_file("rsa-2048.pem")).unwrap();
    let keys = [
        SigningKey::generate(SigningAlgorithm::Es256)
            .unwrap()
            .with_key_id("generated-1"),
        SigningKey::generate(SigningAlgorithm::EdDsa).unwrap(),
        SigningKey::from_pem(&key_file("ec-p256.pem")).unwrap(),
        SigningKey::from_pem(&key_file("ec-p256-sec1.pem"))
            .unwrap()
            .with_key_id("sec1"),
        SigningKey::from_pem(&key_file("ed25519.pem")).unwrap(),
        rsa.clone(),
        rsa.with_algorithm(SigningAlgorithm::Ps256)
            .unwrap()
            .with_key_id("rsa-pss"),
        SigningKey::from_pem(&key_file("rsa-2048-pkcs1.pem")).unwrap(),
        SigningKey::from_jwk(&key_file("ec-p256.jwk")).unwrap(),
        SigningKey::from_jwk(&key_file("ed25519.jwk")).unwrap(),
        SigningKey::from_jwk(&key_file("rsa-2048.jwk")).unwrap(),
    ];
    for key in keys {
        let server = started(server_with(&key)).await;
        let layered = layered(signed_by(&server, &key));
        assert_eq!(layered.call(&server).await.unwrap(), StatusCode::OK, "{key:?}");
        assert_counts(
            &server,
            "token_requests=1 client_assertions_accepted=1 client_assertions_refused=0",
        );
        let (assertion, claims) = assertion_of(&layered.sent()[0]);
        let header: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(assertion.split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], key.algorithm().as_str(), "{key:?}");
        assert_eq!(header.get("kid").and_then(Value::as_str), key.key_id(), "{key:?}");
        assert_eq!(claims["iss"], CLIENT);
        assert_eq!(claims["sub"], CLIENT);
        assert_eq!(claims["aud"], server.token_url());
        let (iat, exp) = (claims["iat"].as_u64().unwrap(), claims["exp"].as_u64().unwrap());
        assert_eq!(exp - iat, 60);
        assert_eq!(claims["jti"].as_str().unwrap().len(), 22);
    }
}

#[tokio::test]
async fn client_secret_jwt_with_each_hmac() {
    let key = SigningKey::generate(SigningAlgorithm::Es256).unwrap();
    for algorithm in [HmacAlgorithm::Hs256, HmacAlgorithm::Hs384, HmacAlgorithm::Hs512] {
        let server = started(server_with(&key)).await;
        let credential = Credential::client_credentials(
            provider(&server, ClientAuth::ClientSecretJwt(algorithm)),
            CLIENT,
            SECRET,
        );
        let layered = layered(credential);
        assert_eq!(layered.call(&server).await.unwrap(), StatusCode::OK);
        assert_counts(&server, "client_assertions_accepted=1");
        // The secret itself never travels.
        let body = &layered.sent()[0];
        assert!(
            !body.contains(SECRET) && !body.contains("client_secret"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn the_code_exchange_the_refresh_and_the_revocation_carry_assertions() {
    let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
    let server = started(server_with(&key)).await;
    let redirect_uri = "https://app.example.com/cb";
    let code = server.issue_authorization_code(CLIENT, redirect_uri, "read");
    let provider = provider(&server, ClientAuth::PrivateKeyJwt).revocation(Revocation::Rfc7009 {
        url: server.revocation_url().unwrap(),
    });
    let credential =
        Credential::authorization_code(provider, CLIENT, None, code, redirect_uri).client_assertion_key(key);
    let layered = layered(credential);

    assert_eq!(layered.call(&server).await.unwrap(), StatusCode::OK);
    layered.credentials.invalidate_all();
    assert_eq!(layered.call(&server).await.unwrap(), StatusCode::OK);
    let key = layered.credentials.keys().remove(0);
    let revoked = layered.credentials.revoke(&key).await.unwrap();
    assert!(
        matches!(revoked, Revoked::AtProvider { tokens: 2 }),
        "{revoked:?}"
    );

    assert_counts(
        &server,
        "authorization_code_grants=1 refresh_token_grants=1 revocations=2 \
         client_assertions_accepted=4 client_assertions_refused=0",
    );
    let sent = layered.sent();
    assert_eq!(sent.len(), 4, "{sent:?}");
    let jtis: std::collections::BTreeSet<String> = sent
        .iter()
        .map(|body| assertion_of(body).1["jti"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(jtis.len(), 4, "a jti per request: {jtis:?}");
}

#[tokio::test]
async fn every_token_request_has_its_own_jti_and_a_reused_one_is_refused() {
    let key = SigningKey::generate(SigningAlgorithm::Es256).unwrap();
    let server = started(server_with(&key)).await;
    let no_backoff = RefreshPolicy::default().backoff(Duration::ZERO, Duration::ZERO);
    let layered = layered(signed_by(&server, &key).refresh_policy(no_backoff));
    // A token request that fails is tried again with a new assertion.
    server.fail_next_token_requests(1, tower_oauth2_mock::Fault::ServerError);
    assert!(layered.call(&server).await.is_err());
    assert_eq!(layered.call(&server).await.unwrap(), StatusCode::OK);
    layered.credentials.invalidate_all();
    assert_eq!(layered.call(&server).await.unwrap(), StatusCode::OK);

    let sent = layered.sent();
    assert_eq!(sent.len(), 3);
    let assertions: Vec<(String, Value)> = sent.iter().map(|body| assertion_of(body)).collect();
    let jtis: std::collections::BTreeSet<&str> = assertions
        .iter()
        .map(|(_, claims)| claims["jti"].as_str().unwrap())
        .collect();
    assert_eq!(jtis.len(), 3, "{jtis:?}");
    assert_counts(
        &server,
        "token_requests=3 client_assertions_accepted=2 client_assertion_replays=0",
    );

    // The server would have refused the same assertion twice.
    let replay = Request::post(server.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(sent[1].clone())))
        .unwrap();
    let answer = http().request(replay).await.unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    assert_counts(&server, "client_assertion_replays=1");
}

#[tokio::test]
async fn the_issuer_as_audience_for_a_server_that_demands_it() {
    let key = SigningKey::generate(SigningAlgorithm::Es256).unwrap();
    let server =
        started(server_with(&key).assertion_audience(tower_oauth2_mock::AcceptedAssertionAudience::Issuer))
            .await;

    // The token endpoint, the default, is refused there.
    let layered_default = layered(signed_by(&server, &key));
    match layered_default.call(&server).await {
        Err(Error::OAuth(e)) => assert_eq!(e.error(), "invalid_client"),
        other => panic!("{other:?}"),
    }

    // The issuer, named outright, or read from the metadata discovery fetched.
    let named = Credential::client_credentials(
        provider(&server, ClientAuth::PrivateKeyJwt)
            .client_assertion_audience(AssertionAudience::Value(server.base_url())),
        CLIENT,
        SECRET,
    )
    .client_assertion_key(key.clone());
    assert_eq!(layered(named).call(&server).await.unwrap(), StatusCode::OK);

    let discovered = Provider::discover(&server.base_url(), &TokenTransport::new(http()))
        .await
        .unwrap()
        .name("mock")
        .api(server.base_url())
        .client_auth(ClientAuth::PrivateKeyJwt)
        .client_assertion_audience(AssertionAudience::Issuer);
    let credential = Credential::client_credentials(discovered, CLIENT, SECRET).client_assertion_key(key);
    let layered = layered(credential);
    assert_eq!(layered.call(&server).await.unwrap(), StatusCode::OK);
    assert_eq!(assertion_of(&layered.sent()[0]).1["aud"], server.base_url());
    assert_counts(
        &server,
        "client_assertions_accepted=2 client_assertions_refused=1",
    );
}

#[tokio::test]
async fn a_refused_assertion_is_invalid_client_and_never_printed() {
    let (captured, _guard) = support::logs::Captured::install();
    let registered = SigningKey::generate(SigningAlgorithm::Es256).unwrap();
    let other = SigningKey::generate(SigningAlgorithm::Es256).unwrap();
    let server = started(server_with(&registered)).await;

    let seed = server.issue_refresh_token(CLIENT, "read");
    let credentials = [
        signed_by(&server, &other),
        Credential::refresh_token(
            provider(&server, ClientAuth::PrivateKeyJwt),
            CLIENT,
            None,
            seed.as_str(),
        )
        .client_assertion_key(other.clone()),
    ];
    for credential in credentials {
        let layered = layered(credential);
        let err = layered.call(&server).await.unwrap_err();
        // Not `ReauthorizationRequired`: the grant is fine, the client is not.
        let Error::OAuth(oauth) = &err else {
            panic!("{err:?}")
        };
        assert_eq!((oauth.status().as_u16(), oauth.error()), (401, "invalid_client"));
        assert_eq!(oauth.code(), tower_oauth2::error::OAuthErrorCode::InvalidClient);
        let (assertion, _) = assertion_of(&layered.sent()[0]);
        let printed = format!("{err}\n{err:?}\n{err:#?}\n{:?}", layered.credentials);
        for part in assertion.split('.') {
            assert!(!printed.contains(part), "a part of the assertion in:\n{printed}");
        }
        assert!(!captured.text().contains(assertion.split('.').nth(1).unwrap()));
    }
    assert_counts(
        &server,
        "client_assertions_accepted=0 client_assertions_refused=2",
    );
}

#[tokio::test]
async fn a_jwt_method_without_its_key_or_secret_is_a_configuration_error() {
    let server = started(MockServer::builder()).await;
    let key = SigningKey::generate(SigningAlgorithm::Es256).unwrap();
    let config_error = |credential: Credential| match CredentialRegistry::new(credential) {
        Err(Error::Config(e)) => e.message().to_owned(),
        other => panic!("{other:?}"),
    };

    let no_key = Credential::client_credentials(provider(&server, ClientAuth::PrivateKeyJwt), CLIENT, SECRET);
    assert!(config_error(no_key).contains("client_assertion_key"));

    let no_secret = Credential::refresh_token(
        provider(&server, ClientAuth::ClientSecretJwt(HmacAlgorithm::Hs256)),
        CLIENT,
        None,
        "refresh",
    );
    assert!(config_error(no_secret).contains("none was given"));

    let not_discovered = Credential::client_credentials(
        provider(&server, ClientAuth::PrivateKeyJwt).client_assertion_audience(AssertionAudience::Issuer),
        CLIENT,
        SECRET,
    )
    .client_assertion_key(key.clone());
    assert!(config_error(not_discovered).contains("was not discovered"));

    let empty = Credential::client_credentials(
        provider(&server, ClientAuth::PrivateKeyJwt)
            .client_assertion_audience(AssertionAudience::Value(String::new())),
        CLIENT,
        SECRET,
    )
    .client_assertion_key(key.clone());
    assert!(config_error(empty).contains("audience"));

    // The key is shown by its algorithm, id and thumbprint only.
    let jwk: Value = serde_json::from_str(&key_file("ec-p256.jwk")).unwrap();
    let from_jwk = SigningKey::from_jwk(&key_file("ec-p256.jwk")).unwrap();
    let credential = signed_by(&server, &from_jwk);
    let printed = format!("{credential:?}");
    assert!(printed.contains(from_jwk.thumbprint()), "{printed}");
    assert!(!printed.contains(jwk["d"].as_str().unwrap()), "{printed}");
}

#[tokio::test]
async fn a_dpop_nonce_retry_carries_a_new_assertion() {
    let key = SigningKey::generate(SigningAlgorithm::Es256).unwrap();
    let server = started(server_with(&key).dpop(true).dpop_nonces(true)).await;
    let dpop = tower_oauth2::dpop::DpopKey::generate().unwrap();
    let layered = layered(signed_by(&server, &key).dpop(dpop));
    assert_eq!(layered.call(&server).await.unwrap(), StatusCode::OK);
    // The server checked the first assertion (using up its jti) before it asked for a
    // nonce; the second request would have been refused with the same one.
    assert_counts(
        &server,
        "token_requests=2 dpop_nonce_demanded_token=1 client_assertions_accepted=2 \
         client_assertion_replays=0 token_errors=1",
    );
    let sent = layered.sent();
    assert_ne!(assertion_of(&sent[0]).1["jti"], assertion_of(&sent[1]).1["jti"]);
}
