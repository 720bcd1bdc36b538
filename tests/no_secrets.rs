//! No secret ever reaches `Debug`, `Display` or `tracing` output, even from an
//! authorization server that quotes its requests back.

mod support;

use std::{
    error::Error as _,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt};
use tower_oauth2::{
    providers,
    secret::{ClientSecret, Password},
    ClientAuth, Credential, CredentialRegistry, Error, OAuth2Layer, Provider, RefreshPolicy, Revocation,
    TokenTransport,
};

use support::{logs::Captured, *};

const CODE: &str = "authorization-code-never-printed";

#[tokio::test(start_paused = true)]
async fn a_code_exchange_in_the_header_dialect_and_a_logout_print_no_secret() {
    let (captured, _guard) = Captured::install();

    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let api = Api::new();
    // iOFFICE's dialect (parameters as headers, header revocation) against the stand-in,
    // whose API reads the `Authorization` header.
    let provider = tower_oauth2::providers::ioffice("https://site.example.com")
        .api_origins([support::API])
        .token_placement(tower_oauth2::TokenPlacement::AuthorizationBearer);
    let credential = Credential::authorization_code(
        provider,
        "client-id",
        Some(ClientSecret::new(CLIENT_SECRET)),
        CODE,
        "https://app.example.com/cb",
    );
    let mut printed = format!("{credential:?}\n");
    let credentials = CredentialRegistry::builder()
        .credential(credential)
        .transport(endpoint.transport())
        .build()
        .unwrap();
    let client = OAuth2Layer::new(credentials.clone()).layer(api.clone());
    client.clone().oneshot(get("exchange")).await.unwrap();
    credentials.invalidate_all();
    client.clone().oneshot(get("refresh")).await.unwrap();
    let key = credentials.keys().remove(0);
    let revoked = credentials.revoke(&key).await;
    let after = client.clone().oneshot(get("after")).await.unwrap_err();
    printed.push_str(&format!(
        "{revoked:?} {after} {after:?} {key} {key:?} {credentials:?}\n"
    ));

    let logs = captured.text();
    assert!(logs.contains("token installed"), "the run was traced:\n{logs}");
    assert_eq!(endpoint.requests(), 2, "a code exchange and a refresh");
    assert_eq!(
        endpoint.revocations().len(),
        2,
        "the refresh and access tokens were revoked"
    );
    for output in [&logs, &printed] {
        for secret in [CLIENT_SECRET, CODE, "tok-", "refresh-1", "refresh-2"] {
            assert!(!output.contains(secret), "`{secret}` leaked into:\n{output}");
        }
    }
}

// ===== an authorization server that quotes its requests back =====

/// A client secret with characters that change under form and percent encoding.
const SECRET: &str = "hunter2 & co/+=?";
const REFRESH: &str = "refresh+token/never printed";
const PASSWORD: &str = "pa ss&word=never-printed";
const ACCESS: &str = "access-token-never-printed";

/// How the hostile server quotes what it was sent.
#[derive(Debug, Clone, Copy)]
enum Quote {
    /// In `error_description` and `error_uri`, with a `400`.
    Description,
    /// As the `error` code itself, with a `401`.
    ErrorCode,
    /// In a plain-text body and in its `Content-Type`.
    PlainText,
}

/// Everything the request carried, as the server could quote it: the body as sent and
/// form-decoded, every header value, and the `Basic` credentials decoded.
async fn everything(req: Request<Full<Bytes>>) -> String {
    let (parts, body) = req.into_parts();
    let body = String::from_utf8_lossy(&body.collect().await.unwrap().to_bytes()).into_owned();
    let mut quoted = format!("body={body} ");
    for (name, value) in form_urlencoded::parse(body.as_bytes()) {
        quoted.push_str(&format!("{name}:{value} "));
    }
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if let Some(basic) = value.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD.decode(basic).unwrap();
            quoted.push_str(&format!("basic-decoded={} ", String::from_utf8_lossy(&decoded)));
        }
        quoted.push_str(&format!("{name}={value} "));
    }
    // Control characters and a terminal escape, as a hostile server would add.
    quoted.push_str("\nFORGED LOG LINE\r\u{1b}[2J");
    quoted
}

/// The hostile server's answer to `req`.
async fn quoted_answer(quote: Quote, req: Request<Full<Bytes>>) -> Response<Full<Bytes>> {
    let quoted = everything(req).await;
    let json = |status: StatusCode, value: serde_json::Value| {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(value.to_string())))
            .unwrap()
    };
    match quote {
        Quote::Description => json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({
                "error": "invalid_request",
                "error_description": format!("refused: {quoted}"),
                "error_uri": format!("https://idp.example.com/help?{quoted}"),
            }),
        ),
        Quote::ErrorCode => json(StatusCode::UNAUTHORIZED, serde_json::json!({ "error": quoted })),
        Quote::PlainText => {
            let visible: String = quoted
                .chars()
                .filter(|c| c.is_ascii_graphic() || *c == ' ')
                .collect();
            Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .header("content-type", format!("text/plain; echo={visible}"))
                .body(Full::new(Bytes::from(quoted)))
                .unwrap()
        }
    }
}

/// A token endpoint that quotes every request back, and the bodies it was sent.
fn quoting_transport(quote: Quote) -> (TokenTransport, Arc<Mutex<Vec<String>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&bodies);
    let transport = TokenTransport::new(tower::service_fn(move |req: Request<Full<Bytes>>| {
        let seen = Arc::clone(&seen);
        async move {
            let (parts, body) = req.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&body).into_owned());
            let req = Request::from_parts(parts, Full::new(body));
            Ok::<_, std::convert::Infallible>(quoted_answer(quote, req).await)
        }
    }));
    (transport, bodies)
}

/// Every way an error can be printed: `Display`, `Debug`, and each error of its
/// source chain, both ways.
fn every_rendering(err: &Error) -> String {
    let mut printed = format!("{err}\n{err:?}\n{err:#?}\n");
    let mut source = err.source();
    while let Some(cause) = source {
        printed.push_str(&format!("{cause}\n{cause:?}\n"));
        source = cause.source();
    }
    printed
}

/// The forms a secret can be quoted in: as it is, form- and percent-encoded.
fn forms(secret: &str) -> Vec<String> {
    let form: String = form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let percent = form.replace('+', "%20");
    vec![secret.to_owned(), form, percent]
}

fn assert_clean(what: &str, output: &str, secrets: &[&str]) {
    for secret in secrets {
        for form in forms(secret) {
            assert!(!output.contains(&form), "{what}: `{form}` leaked into:\n{output}");
        }
    }
    let basic = base64::engine::general_purpose::STANDARD.encode("client-id:hunter2+%26+co%2F%2B%3D%3F");
    assert!(
        !output.contains(&basic),
        "{what}: the Basic credentials leaked into:\n{output}"
    );
}

/// No line of the output was started by the server: every line is one the subscriber
/// wrote (it starts with a timestamp), so none was forged by a quoted newline.
fn assert_no_forged_lines(logs: &str) {
    for line in logs.lines() {
        assert!(
            line.starts_with(|c: char| c.is_ascii_digit()) && !line.contains('\u{1b}'),
            "a forged or escaped line: {line:?}\n{logs}"
        );
    }
}

fn assert_error_text_is_safe(err: &Error) {
    let display = err.to_string();
    assert!(
        !display.chars().any(|c| c.is_control()),
        "a control character in {display:?}"
    );
    if let Error::OAuth(oauth) = err {
        let description = oauth.description().unwrap_or_default();
        assert!(description.chars().count() <= 257, "capped: {description}");
        assert!(oauth.error().chars().count() <= 65, "capped: {}", oauth.error());
    }
}

/// The error of a request whose token request the hostile server answered, what was
/// logged meanwhile, and the form parameters the server was sent.
async fn fetch_error(credential: Credential, quote: Quote) -> (Error, String, Vec<(String, String)>) {
    let (captured, _guard) = Captured::install();
    let (transport, bodies) = quoting_transport(quote);
    let credentials = CredentialRegistry::builder()
        .credential(credential.refresh_policy(RefreshPolicy::default().random(no_jitter)))
        .transport(transport)
        .build()
        .unwrap();
    let client = OAuth2Layer::new(credentials).layer(Api::new());
    let err = client.oneshot(get("quoted")).await.unwrap_err();
    let body = bodies.lock().unwrap().concat();
    let sent = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    (err, captured.text(), sent)
}

fn standard(client_auth: ClientAuth) -> Provider {
    Provider::standard("https://auth.example.com/oauth/token")
        .name("example")
        .client_auth(client_auth)
        .api(API)
}

#[tokio::test(start_paused = true)]
async fn quoted_requests_never_bring_a_secret_back_out() {
    let cases: Vec<(&str, Credential)> = vec![
        (
            "client credentials, Basic",
            Credential::client_credentials(standard(ClientAuth::Basic), "client-id", SECRET),
        ),
        (
            "client credentials, in the body",
            Credential::client_credentials(standard(ClientAuth::RequestBody), "client-id", SECRET),
        ),
        (
            "refresh token, Basic",
            Credential::refresh_token(
                standard(ClientAuth::Basic),
                "client-id",
                Some(ClientSecret::new(SECRET)),
                REFRESH,
            ),
        ),
        (
            "iOFFICE refresh token in headers",
            Credential::refresh_token(
                providers::ioffice("https://site.example.com").api_origins([API]),
                "client-id",
                Some(ClientSecret::new(SECRET)),
                REFRESH,
            )
            .redirect_uri("https://app.example.com/cb"),
        ),
    ];
    let mut tried = 0;
    for (name, credential) in cases {
        for quote in [Quote::Description, Quote::ErrorCode, Quote::PlainText] {
            let (err, logs, _) = fetch_error(credential.clone(), quote).await;
            let what = format!("{name}, {quote:?}");
            assert!(err.is_token_error(), "{what}: {err}");
            assert!(
                logs.contains("token request failed"),
                "{what}: the failure was logged:\n{logs}"
            );
            assert_clean(&what, &every_rendering(&err), &[SECRET, REFRESH]);
            assert_clean(&what, &logs, &[SECRET, REFRESH]);
            assert_no_forged_lines(&logs);
            assert_error_text_is_safe(&err);
            tried += 1;
        }
    }
    assert_eq!(tried, 12);
}

/// A client assertion quoted back, alone at the head of `error_description` so that
/// the cap on quoted text cannot hide it, never comes back out: not whole, and not its
/// claims or its signature alone.
#[cfg(feature = "jose")]
#[tokio::test(start_paused = true)]
async fn a_quoted_client_assertion_never_comes_back_out() {
    use tower_oauth2::jose::{HmacAlgorithm, SigningAlgorithm, SigningKey};

    let sent = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&sent);
    let transport = TokenTransport::new(tower::service_fn(move |req: Request<Full<Bytes>>| {
        let seen = Arc::clone(&seen);
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let assertion = form_urlencoded::parse(&body)
                .find(|(name, _)| name == "client_assertion")
                .map(|(_, value)| value.into_owned())
                .expect("an assertion");
            seen.lock().unwrap().push(assertion.clone());
            // The whole assertion, and its claims and signature on their own.
            let parts: Vec<&str> = assertion.split('.').collect();
            let answer = serde_json::json!({
                "error": "invalid_client",
                "error_description": format!(
                    "{assertion} is refused (claims {}, signature {})",
                    parts[1], parts[2]
                ),
            });
            let response = Response::builder()
                .status(StatusCode::UNAUTHORIZED)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(answer.to_string())))
                .unwrap();
            Ok::<_, std::convert::Infallible>(response)
        }
    }));
    let key = SigningKey::generate(SigningAlgorithm::EdDsa).unwrap();
    for client_auth in [
        ClientAuth::PrivateKeyJwt,
        ClientAuth::ClientSecretJwt(HmacAlgorithm::Hs256),
    ] {
        let (captured, _guard) = Captured::install();
        let credential = Credential::client_credentials(standard(client_auth), "client-id", SECRET)
            .client_assertion_key(key.clone())
            .refresh_policy(RefreshPolicy::default().random(no_jitter));
        let credentials = CredentialRegistry::builder()
            .credential(credential)
            .transport(transport.clone())
            .build()
            .unwrap();
        let client = OAuth2Layer::new(credentials).layer(Api::new());
        let err = client.oneshot(get("quoted")).await.unwrap_err();
        let printed = every_rendering(&err);
        assert!(printed.contains("[redacted] is refused"), "{printed}");
        // Neither its claims nor its signature: only its header, which holds no more
        // than the algorithm and the type, could be left.
        let assertion = sent.lock().unwrap().pop().expect("an assertion was sent");
        let logs = captured.text();
        for output in [&printed, &logs] {
            for part in assertion.split('.').skip(1) {
                assert!(!output.contains(part), "{client_auth:?}: `{part}` in\n{output}");
            }
        }
        assert_clean(&format!("{client_auth:?}"), &printed, &[SECRET]);
        assert_clean(&format!("{client_auth:?}"), &logs, &[SECRET]);
    }
}

#[cfg(feature = "jose")]
#[tokio::test(start_paused = true)]
async fn a_quoted_dpop_proof_never_comes_back_out() {
    use tower_oauth2::dpop::DpopKey;

    for quote in [Quote::Description, Quote::ErrorCode, Quote::PlainText] {
        for nonce_round_first in [false, true] {
            let what = format!("{quote:?}, nonce round first: {nonce_round_first}");
            // The token endpoint asks for a nonce first if told to, then quotes the
            // request's proof, and every proof it saw before, at the start of its answer
            // (where no cap on the answer's length could cut them off).
            let proofs = Arc::new(Mutex::new(Vec::<String>::new()));
            let seen = Arc::clone(&proofs);
            let transport = TokenTransport::new(tower::service_fn(move |req: Request<Full<Bytes>>| {
                let seen = Arc::clone(&seen);
                async move {
                    let proof = req.headers().get("dpop").expect("a DPoP proof");
                    let proof = proof.to_str().unwrap().to_owned();
                    let earlier = {
                        let mut seen = seen.lock().unwrap();
                        let earlier = seen.join(" and ");
                        seen.push(proof.clone());
                        earlier
                    };
                    let response = || Response::builder().status(StatusCode::BAD_REQUEST);
                    let json = |value: serde_json::Value| {
                        let response = response().header("content-type", "application/json");
                        response.body(Full::new(Bytes::from(value.to_string()))).unwrap()
                    };
                    // Each part on its own too, as a server that decoded the proof
                    // might quote it.
                    let parts: Vec<&str> = proof.split('.').rev().collect();
                    let quoted = format!(
                        "{proof} is refused; so were {earlier}. Parts: {}.",
                        parts.join(" ")
                    );
                    let answer = match quote {
                        _ if nonce_round_first && earlier.is_empty() => {
                            let mut answer = json(serde_json::json!({ "error": "use_dpop_nonce" }));
                            answer
                                .headers_mut()
                                .insert("dpop-nonce", "the-servers-nonce".parse().unwrap());
                            answer
                        }
                        Quote::Description => json(serde_json::json!({
                            "error": "invalid_dpop_proof",
                            "error_description": quoted,
                        })),
                        Quote::ErrorCode => json(serde_json::json!({ "error": quoted })),
                        Quote::PlainText => response()
                            .header("content-type", format!("text/plain; echo={proof}"))
                            .body(Full::new(Bytes::from(quoted)))
                            .unwrap(),
                    };
                    Ok::<_, std::convert::Infallible>(answer)
                }
            }));
            let (captured, _guard) = Captured::install();
            let credential = Credential::client_credentials(standard(ClientAuth::Basic), "client-id", SECRET)
                .dpop(DpopKey::generate().unwrap())
                .refresh_policy(RefreshPolicy::default().random(no_jitter));
            let credentials = CredentialRegistry::builder()
                .credential(credential)
                .transport(transport)
                .build()
                .unwrap();
            let client = OAuth2Layer::new(credentials).layer(Api::new());
            let err = client.oneshot(get("quoted")).await.unwrap_err();
            let printed = every_rendering(&err);
            let logs = captured.text();

            let proofs = proofs.lock().unwrap().clone();
            assert_eq!(proofs.len(), 1 + usize::from(nonce_round_first), "{what}");
            // The quote is kept, with the proofs taken out of it (of a plain-text
            // answer, only its `Content-Type` is kept; an error code is cut short).
            let kept = match (quote, nonce_round_first) {
                (Quote::PlainText, _) => "echo=[redacted]",
                (Quote::ErrorCode, _) => "[redacted] is refused; so were ",
                (_, false) => "[redacted] is refused; so were . Parts: [redacted] [redacted] [redacted].",
                (_, true) => {
                    "[redacted] is refused; so were [redacted]. Parts: [redacted] [redacted] [redacted]."
                }
            };
            assert!(printed.contains(kept), "{what}: {printed}");
            // No part of any proof: not its header (the public key), claims or signature.
            for output in [&printed, &logs] {
                for proof in &proofs {
                    for part in proof.split('.') {
                        assert!(!output.contains(part), "{what}: `{part}` in\n{output}");
                    }
                }
            }
            assert_clean(&what, &printed, &[SECRET]);
            assert_clean(&what, &logs, &[SECRET]);
            assert_no_forged_lines(&logs);
            assert_error_text_is_safe(&err);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_code_exchange_quoted_back_keeps_the_code_and_the_pkce_verifier_secret() {
    let provider = standard(ClientAuth::Basic)
        .authorize_url("https://auth.example.com/authorize")
        .pkce(true);
    let pending = provider
        .authorization("client-id", "https://app.example.com/cb")
        .start()
        .unwrap();
    let callback = format!("?code=the%2Bcode%20never%20printed&state={}", pending.state());
    let credential = pending.complete(&callback).unwrap().into_credential(
        provider,
        "client-id",
        Some(ClientSecret::new(SECRET)),
    );
    for quote in [Quote::Description, Quote::ErrorCode, Quote::PlainText] {
        let (err, logs, sent) = fetch_error(credential.clone(), quote).await;
        let verifier = sent
            .iter()
            .find(|(name, _)| name == "code_verifier")
            .map(|(_, value)| value.clone())
            .expect("the verifier was sent");
        assert!(verifier.len() >= 43);
        let secrets = [SECRET, "the+code never printed", verifier.as_str()];
        assert_clean(&format!("{quote:?}"), &every_rendering(&err), &secrets);
        assert_clean(&format!("{quote:?}"), &logs, &secrets);
        assert_no_forged_lines(&logs);
        assert_error_text_is_safe(&err);
        if let (Quote::Description, Error::ReauthorizationRequired(_) | Error::OAuth(_)) = (quote, &err) {
            let printed = err.to_string();
            assert!(printed.contains("code_verifier:[redacted]"), "{printed}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_revocation_quoted_back_keeps_the_revoked_tokens_secret() {
    let (captured, _guard) = Captured::install();
    let provider = standard(ClientAuth::RequestBody).revocation(Revocation::Rfc7009 {
        url: "https://auth.example.com/oauth/revoke".into(),
    });
    let transport = TokenTransport::new(tower::service_fn(|req: Request<Full<Bytes>>| async move {
        if req.uri().path().ends_with("/revoke") {
            return Ok::<_, std::convert::Infallible>(quoted_answer(Quote::Description, req).await);
        }
        let body = format!(r#"{{"access_token":"{ACCESS}","expires_in":3600,"refresh_token":"{REFRESH}"}}"#);
        Ok(Response::new(Full::new(Bytes::from(body))))
    }));
    let credentials = CredentialRegistry::builder()
        .credential(Credential::refresh_token(
            provider,
            "client-id",
            Some(ClientSecret::new(SECRET)),
            "first-refresh-token",
        ))
        .transport(transport)
        .build()
        .unwrap();
    let client = OAuth2Layer::new(credentials.clone()).layer(Api::new());
    let _ = client.oneshot(get("before")).await.unwrap();
    let key = credentials.keys().remove(0);
    let err = credentials.revoke(&key).await.unwrap_err();
    assert!(matches!(err, Error::OAuth(_)), "{err}");
    let secrets = [SECRET, REFRESH, ACCESS];
    assert_clean("revocation", &every_rendering(&err), &secrets);
    assert_clean("revocation", &captured.text(), &secrets);
    assert_error_text_is_safe(&err);
}

#[tokio::test]
async fn an_ioffice_code_request_quoted_back_keeps_the_password_secret() {
    let (captured, _guard) = Captured::install();
    let err = providers::ioffice::request_code(
        &quoting_transport(Quote::ErrorCode).0,
        "https://site.example.com",
        "client-id",
        "alice@example.com",
        &Password::new(PASSWORD),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::OAuth(_)), "{err}");
    assert_clean(
        "iOFFICE code request",
        &every_rendering(&err),
        &[PASSWORD, "alice@example.com"],
    );
    // The direct code request writes no log line at all, at any level: neither the
    // password nor the username can reach a log. A line added later fails here first,
    // and must then pass the same check as the error.
    assert_eq!(captured.text(), "", "the iOFFICE code request logged something");
    assert_error_text_is_safe(&err);
}

// ===== values users control never forge a log line =====

#[tokio::test(start_paused = true)]
async fn a_newline_in_a_subject_never_starts_a_log_line_of_its_own() {
    let (captured, _guard) = Captured::install();
    let forged = "mallory\n2026-12-06T00:00:00.000000Z  INFO admin: logged in as root\u{1b}[2K\u{202e}";
    let endpoint = TokenEndpoint::new(Duration::from_secs(3600));
    let credentials = CredentialRegistry::builder()
        .users(tower_oauth2::UserCredentialTemplate::new(
            standard(ClientAuth::Basic),
            "client-id",
            Some(ClientSecret::new(SECRET)),
        ))
        .transport(endpoint.transport())
        .build()
        .unwrap();
    let client = OAuth2Layer::new(credentials.clone()).layer(Api::new());
    let mut request = get("forged");
    request
        .extensions_mut()
        .insert(tower_oauth2::Subject::new(forged));
    let err = client.oneshot(request).await.unwrap_err();
    assert!(matches!(err, Error::NotAuthorized(_)), "{err}");
    assert_eq!(endpoint.requests(), 0);

    let logs = captured.text();
    assert!(
        logs.contains("token request failed"),
        "the failure was logged:\n{logs}"
    );
    assert!(
        logs.contains("mallory\\n2026"),
        "the subject is shown, escaped:\n{logs}"
    );
    assert_no_forged_lines(&logs);
    let key = credentials.user_key("example", forged).unwrap();
    for printed in [err.to_string(), key.to_string(), every_rendering(&err)] {
        assert!(
            !printed.contains('\n') || printed.lines().all(|l| !l.starts_with("2026")),
            "{printed:?}"
        );
    }
    for printed in [err.to_string(), key.to_string()] {
        assert!(!printed.chars().any(char::is_control), "{printed:?}");
        assert!(!printed.contains('\u{202e}'), "{printed:?}");
    }
}

// ===== URLs with a password =====

#[test]
fn a_password_in_a_configured_url_is_never_printed() {
    let provider = Provider::standard("https://client:hunter22@auth.example.com/token")
        .api("https://u:api-pass@api.example.com")
        .authorize_url("https://u:authorize-pass@auth.example.com/authorize")
        .revocation(Revocation::Rfc7009 {
            url: "https://u:revoke-pass@auth.example.com/revoke".into(),
        });
    let printed = format!("{provider:?} {provider:#?}");
    for password in ["hunter22", "api-pass", "authorize-pass", "revoke-pass"] {
        assert!(!printed.contains(password), "{printed}");
    }
    assert!(
        printed.contains("https://[redacted]@auth.example.com/token"),
        "{printed}"
    );
    let header = Revocation::Header {
        url: "https://u:p4ss@site.example.com/revoke".into(),
        header: http::HeaderName::from_static("x-token"),
    };
    assert_eq!(
        format!("{header:?}"),
        r#"Header { url: "https://[redacted]@site.example.com/revoke", header: "x-token" }"#
    );

    // Nor in the message of a configuration error that quotes the URL.
    let insecure = Provider::standard("http://client:hunter22@auth.example.com/token").api(API);
    let err = CredentialRegistry::builder()
        .credential(Credential::client_credentials(insecure, "id", "secret"))
        .transport(TokenEndpoint::new(Duration::from_secs(60)).transport())
        .build()
        .unwrap_err();
    let printed = format!("{err} {err:?}");
    assert!(matches!(err, Error::Config(_)), "{printed}");
    assert!(!printed.contains("hunter22"), "{printed}");
}
