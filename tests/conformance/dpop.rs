//! DPoP-bound credentials (RFC 9449) through both adapters, against the mock's strict
//! DPoP: every proof is checked (signature, `htm`, `htu`, `iat`, `ath`, the key the token
//! is bound to) and a reused `jti` is refused, so each count below is of proofs a real
//! server would have accepted.

use tower_oauth2::{
    dpop::DpopKey,
    jose::{SigningAlgorithm, SigningKey},
};
use tower_oauth2_mock::{Fault, ResourceFault};

use crate::{common::*, support::logs::Captured};

both!(
    every_request_carries_a_dpop_token_and_a_proof_of_its_own,
    the_nonce_dance_costs_one_extra_request_at_each_place,
    a_retry_after_a_dead_token_carries_a_new_proof,
    a_rotated_key_is_bound_to_the_next_token,
    a_bearer_token_is_refused_and_never_presented,
    nothing_of_the_proof_or_the_key_is_printed,
    a_users_tokens_are_bound_from_the_code_exchange_on,
    a_second_nonce_demand_is_returned_after_two_sends,
    a_dead_token_answer_to_the_nonce_retry_is_returned_after_two_sends,
    a_nonce_demand_answering_the_dead_token_retry_is_returned_and_blames_no_token,
    a_second_nonce_demand_at_the_token_endpoint_is_the_error_after_two_requests,
    nonces_announced_in_successes_cost_no_round_trip,
    rsa_and_loaded_keys_prove_possession_of_the_key_their_tokens_are_bound_to,
);
both!(multi_thread: a_dpop_storm_of_1000_callers_makes_one_token_request_and_1000_proofs);

/// A standard server demanding DPoP (and nonces, if `nonces`), a client-credentials
/// registry whose credential is bound to a new ES256 key, and the adapter of `kind`.
async fn dpop_setup(kind: Kind, nonces: bool) -> (MockServer, CredentialRegistry, Adapter, DpopKey) {
    let builder = MockServer::builder().client("client", "secret").dpop(true);
    let server = started(builder.dpop_nonces(nonces)).await;
    let key = DpopKey::generate().unwrap();
    let credentials = dpop_credentials(&server, &key);
    let adapter = Adapter::new(kind, &credentials);
    (server, credentials, adapter, key)
}

fn dpop_credentials(server: &MockServer, key: &DpopKey) -> CredentialRegistry {
    let credential = Credential::client_credentials(server.provider(), "client", "secret")
        .refresh_policy(steady_policy())
        .dpop(key.clone());
    CredentialRegistry::new(credential).unwrap()
}

async fn every_request_carries_a_dpop_token_and_a_proof_of_its_own(kind: Kind) {
    let (server, _credentials, adapter, _key) = dpop_setup(kind, false).await;
    for id in ["a", "b", "c"] {
        assert_eq!(status(&adapter, &server, id).await, 200);
        assert_eq!(sends(&server, id), 1);
    }
    // One proof at the token endpoint, one per API request, none seen twice.
    assert_counts(
        &server,
        "token_requests=1 dpop_proofs_accepted=4 dpop_distinct_jtis=4 dpop_proofs_refused=0 \
         dpop_replays=0 bearer_for_dpop_token=0",
    );
}

async fn a_dpop_storm_of_1000_callers_makes_one_token_request_and_1000_proofs(kind: Kind) {
    let (server, credentials, adapter, _key) = dpop_setup(kind, false).await;
    let statuses = statuses(adapter.concurrently(things(&server, "storm", 1000)).await);
    assert_eq!(statuses, vec![200; 1000]);
    assert_counts(
        &server,
        "token_requests=1 dpop_proofs_accepted=1001 dpop_distinct_jtis=1001 dpop_proofs_refused=0 \
         dpop_replays=0 bearer_for_dpop_token=0",
    );
    assert_eq!(credentials.stats()[0].token_requests, 1);
}

async fn the_nonce_dance_costs_one_extra_request_at_each_place(kind: Kind) {
    let (server, credentials, adapter, _key) = dpop_setup(kind, true).await;

    // Cold: the token endpoint asks for a nonce once, then the API does.
    assert_eq!(status(&adapter, &server, "first").await, 200);
    assert_eq!(sends(&server, "first"), 2);
    assert_counts(
        &server,
        "token_requests=2 dpop_nonce_demanded_token=1 dpop_nonce_demanded_resource=1 \
         dpop_proofs_refused=0 dpop_replays=0",
    );

    // The nonce every answer carries is remembered: a steady stream needs no extra trip.
    for id in ["steady-1", "steady-2", "steady-3"] {
        assert_eq!(status(&adapter, &server, id).await, 200);
        assert_eq!(sends(&server, id), 1, "{id}");
    }
    assert_counts(&server, "dpop_nonce_demanded_resource=1");

    // New nonces at both places: one extra API request...
    server.rotate_dpop_nonces();
    assert_eq!(status(&adapter, &server, "rotated").await, 200);
    assert_eq!(sends(&server, "rotated"), 2);
    assert_counts(
        &server,
        "dpop_nonce_demanded_resource=2 dpop_nonce_demanded_token=1",
    );

    // ...and one extra token request at the next refresh, whose retry then goes through
    // with the nonce the API gave last.
    server.revoke_all_access_tokens();
    assert_eq!(status(&adapter, &server, "refreshed").await, 200);
    assert_eq!(sends(&server, "refreshed"), 2);
    assert_counts(
        &server,
        "token_requests=4 dpop_nonce_demanded_token=2 dpop_nonce_demanded_resource=2 \
         dpop_proofs_refused=0 dpop_replays=0 bearer_for_dpop_token=0",
    );
    assert_eq!(
        credentials.stats()[0].token_requests,
        2,
        "two tokens, each after one nonce round"
    );
}

async fn a_retry_after_a_dead_token_carries_a_new_proof(kind: Kind) {
    let (server, credentials, adapter, _key) = dpop_setup(kind, false).await;
    assert_eq!(status(&adapter, &server, "warm").await, 200);
    server.revoke_all_access_tokens();
    let answers = statuses(adapter.concurrently(things(&server, "dead", 20)).await);
    assert_eq!(answers, vec![200; 20]);
    for i in 0..20 {
        assert_eq!(sends(&server, &format!("dead-{i}")), 2);
    }
    // Had a retry carried its first proof again, the server would have refused it as a
    // replay.
    assert_counts(
        &server,
        "token_requests=2 dpop_replays=0 dpop_proofs_refused=0 dpop_proofs_accepted=43 dpop_distinct_jtis=43",
    );
    assert_eq!(refreshes_and_retries(&credentials), (1, 20));
}

async fn a_rotated_key_is_bound_to_the_next_token(kind: Kind) {
    let (server, credentials, adapter, key) = dpop_setup(kind, false).await;
    assert_eq!(status(&adapter, &server, "before").await, 200);
    let old = key.thumbprint();
    key.rotate(SigningKey::generate(SigningAlgorithm::EdDsa).unwrap());
    assert_ne!(key.thumbprint(), old);
    // The token in use is bound to the old key: refused once, refreshed with a proof of
    // the new key, and the retry goes through.
    assert_eq!(status(&adapter, &server, "after").await, 200);
    assert_eq!(sends(&server, "after"), 2);
    assert_eq!(status(&adapter, &server, "steady").await, 200);
    assert_eq!(sends(&server, "steady"), 1);
    assert_counts(&server, "token_requests=2 dpop_proofs_refused=0 dpop_replays=0");
    assert_eq!(refreshes_and_retries(&credentials), (1, 1));
}

async fn a_bearer_token_is_refused_and_never_presented(kind: Kind) {
    // A server that knows nothing of DPoP issues bearer tokens.
    let server = started(MockServer::builder().client("client", "secret")).await;
    let key = DpopKey::generate().unwrap();
    let credentials = dpop_credentials(&server, &key);
    let adapter = Adapter::new(kind, &credentials);
    let err = adapter
        .send(Call::get(server.api_url("/things")).id("bearer"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Malformed(_)), "{err:?}");
    assert!(err.to_string().contains("DPoP"), "{err}");
    assert_eq!(sends(&server, "bearer"), 0, "the API never saw the token");
    assert_counts(&server, "token_requests=1");
}

async fn nothing_of_the_proof_or_the_key_is_printed(kind: Kind) {
    let (captured, _guard) = Captured::install_at(tracing::Level::TRACE);
    let (server, credentials, adapter, key) = dpop_setup(kind, true).await;
    assert_eq!(status(&adapter, &server, "one").await, 200);
    server.revoke_all_access_tokens();
    assert_eq!(status(&adapter, &server, "two").await, 200);

    let printed = format!("{key:?} {credentials:?} {:?}", key.current());
    let logs = captured.text();
    assert!(logs.contains("token installed"), "the run was traced:\n{logs}");
    assert!(
        logs.contains("DPoP nonce"),
        "the nonce rounds were traced:\n{logs}"
    );
    for text in [&printed, &logs] {
        // Every JWS starts with a base64url JSON object: `eyJ`.
        assert!(!text.contains("eyJ"), "a proof was printed: {text}");
    }
    assert!(
        printed.contains(&key.thumbprint()),
        "the public thumbprint names the key"
    );
}

async fn a_users_tokens_are_bound_from_the_code_exchange_on(kind: Kind) {
    use crate::subjects::{log_in, REDIRECT};
    let builder = MockServer::builder().client("client", "secret").dpop(true);
    let server = started(builder.user("alice", "alice-pw")).await;
    let users = UserCredentialTemplate::new(server.provider(), "client", Some("secret".into()))
        .redirect_uri(REDIRECT)
        .refresh_policy(steady_policy())
        .dpop(DpopKey::generate().unwrap());
    let credentials = CredentialRegistry::builder().users(users).build().unwrap();
    log_in(&credentials, "alice").await;
    let adapter = Adapter::new(kind, &credentials);
    let call = |id: &str| Call::get(server.api_url("/things")).id(id).subject("alice");

    let answer = adapter.send(call("first")).await.unwrap();
    assert_eq!(
        (answer.status, answer.json()["placement"].clone()),
        (200, json!("authorization_dpop"))
    );
    server.revoke_all_access_tokens();
    assert_eq!(adapter.send(call("refreshed")).await.unwrap().status, 200);
    assert_eq!(sends(&server, "refreshed"), 2);
    // The code exchange and one refresh, each with a proof; three API requests.
    assert_counts(
        &server,
        "token_requests=2 dpop_proofs_accepted=5 dpop_proofs_refused=0 dpop_replays=0 bearer_for_dpop_token=0",
    );
}

/// The `WWW-Authenticate` of an answer, for the assertions on refusals.
fn challenge(answer: &Answer) -> &str {
    answer
        .headers
        .get(http::header::WWW_AUTHENTICATE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
}

async fn a_second_nonce_demand_is_returned_after_two_sends(kind: Kind) {
    let (server, credentials, adapter, _key) = dpop_setup(kind, true).await;
    assert_eq!(status(&adapter, &server, "warm").await, 200);
    assert_eq!(
        refreshes_and_retries(&credentials),
        (0, 1),
        "the cold nonce round"
    );

    // The nonce retry is the request's one retry: a second demand is the answer.
    server.fail_next_resource_requests(2, ResourceFault::DemandDpopNonce);
    let answer = adapter
        .send(Call::get(server.api_url("/things")).id("demanded-twice"))
        .await
        .unwrap();
    assert_eq!(answer.status, 401);
    assert_eq!(challenge(&answer), r#"DPoP error="use_dpop_nonce""#);
    assert_eq!(sends(&server, "demanded-twice"), 2, "no third send");
    assert_eq!(refreshes_and_retries(&credentials), (0, 2));

    // The nonce that refusal carried was remembered: the next request goes through once.
    assert_eq!(status(&adapter, &server, "after").await, 200);
    assert_eq!(sends(&server, "after"), 1);
    // One token, after one nonce round at the token endpoint: the demands refreshed
    // nothing.
    assert_counts(
        &server,
        "token_requests=2 dpop_nonce_demanded_token=1 dpop_nonce_demanded_resource=3 \
         dpop_proofs_refused=0 dpop_replays=0 bearer_for_dpop_token=0",
    );
    assert_eq!(credentials.stats()[0].token_requests, 1);
}

async fn a_dead_token_answer_to_the_nonce_retry_is_returned_after_two_sends(kind: Kind) {
    let (server, credentials, adapter, _key) = dpop_setup(kind, true).await;
    assert_eq!(status(&adapter, &server, "warm").await, 200);

    // The nonce retry kept its token; a dead answer to it is returned, not retried.
    server.fail_next_resource_requests(1, ResourceFault::DemandDpopNonce);
    server.fail_next_resource_requests(1, ResourceFault::InvalidToken);
    let answer = adapter
        .send(Call::get(server.api_url("/things")).id("dead-on-retry"))
        .await
        .unwrap();
    assert_eq!(answer.status, 401);
    assert_eq!(challenge(&answer), r#"DPoP error="invalid_token""#);
    assert_eq!(sends(&server, "dead-on-retry"), 2, "no third send");

    // That token is then refreshed once, for the next request, which goes out once.
    assert_eq!(status(&adapter, &server, "next").await, 200);
    assert_eq!(sends(&server, "next"), 1);
    // Two token requests for the cold token (one nonce round), one for the refresh.
    assert_counts(
        &server,
        "token_requests=3 dpop_nonce_demanded_token=1 dpop_nonce_demanded_resource=2 \
         dpop_proofs_refused=0 dpop_replays=0 bearer_for_dpop_token=0",
    );
    let stats = &credentials.stats()[0];
    assert_eq!((stats.token_requests, stats.retries), (2, 2));
}

async fn a_nonce_demand_answering_the_dead_token_retry_is_returned_and_blames_no_token(kind: Kind) {
    let (server, credentials, adapter, _key) = dpop_setup(kind, true).await;
    assert_eq!(status(&adapter, &server, "warm").await, 200);

    // A dead answer, a refresh, and a retry the server answers with a nonce demand: the
    // one retry is spent, so that demand is the answer.
    server.fail_next_resource_requests(1, ResourceFault::InvalidToken);
    server.fail_next_resource_requests(1, ResourceFault::DemandDpopNonce);
    let answer = adapter
        .send(Call::get(server.api_url("/things")).id("demand-on-retry"))
        .await
        .unwrap();
    assert_eq!(answer.status, 401);
    assert_eq!(challenge(&answer), r#"DPoP error="use_dpop_nonce""#);
    assert_eq!(sends(&server, "demand-on-retry"), 2, "no third send");
    assert_eq!(refreshes_and_retries(&credentials), (1, 2));

    // The demand was about the proof: the fresh token is not taken for one the server
    // refuses, so the next dead answer is refreshed and retried as usual.
    server.revoke_all_access_tokens();
    assert_eq!(status(&adapter, &server, "later").await, 200);
    assert_eq!(sends(&server, "later"), 2);
    assert_eq!(refreshes_and_retries(&credentials), (2, 3));
    assert_counts(
        &server,
        "token_requests=4 dpop_nonce_demanded_token=1 dpop_nonce_demanded_resource=2 \
         dpop_proofs_refused=0 dpop_replays=0 bearer_for_dpop_token=0",
    );
}

async fn a_second_nonce_demand_at_the_token_endpoint_is_the_error_after_two_requests(kind: Kind) {
    let (server, credentials, adapter, _key) = dpop_setup(kind, true).await;
    server.fail_next_token_requests(2, Fault::DemandDpopNonce);
    let err = adapter
        .send(Call::get(server.api_url("/things")).id("cold"))
        .await
        .unwrap_err();
    match &err {
        Error::OAuth(oauth) => assert_eq!((oauth.status().as_u16(), oauth.error()), (400, "use_dpop_nonce")),
        other => panic!("expected the token endpoint's answer, got {other:?}"),
    }
    assert_eq!(sends(&server, "cold"), 0);
    assert_counts(&server, "token_requests=2 dpop_nonce_demanded_token=2");

    // After the failure's back-off, the next token request carries the nonce of the
    // second demand, which was remembered: no third demand.
    advance(Duration::from_secs(60)).await;
    assert_eq!(status(&adapter, &server, "next").await, 200);
    assert_counts(
        &server,
        "token_requests=3 dpop_nonce_demanded_token=2 dpop_proofs_refused=0 dpop_replays=0",
    );
    assert_eq!(credentials.stats()[0].token_requests, 2);
}

async fn nonces_announced_in_successes_cost_no_round_trip(kind: Kind) {
    // Every success moves the nonce of the place that gave it and announces the new one:
    // only a client that reads `DPoP-Nonce` on successes keeps up without a challenge.
    let builder = MockServer::builder().client("client", "secret").dpop(true);
    let server = started(builder.rotate_dpop_nonces_on_success(true)).await;
    let key = DpopKey::generate().unwrap();
    let credentials = dpop_credentials(&server, &key);
    let adapter = Adapter::new(kind, &credentials);

    // Cold: one challenge at each place, as always.
    assert_eq!(status(&adapter, &server, "first").await, 200);
    assert_eq!(sends(&server, "first"), 2);
    assert_counts(
        &server,
        "token_requests=2 dpop_nonce_demanded_token=1 dpop_nonce_demanded_resource=1",
    );

    // Then each request carries the nonce the previous success announced.
    for id in ["steady-1", "steady-2", "steady-3"] {
        assert_eq!(status(&adapter, &server, id).await, 200);
        assert_eq!(sends(&server, id), 1, "{id}");
    }
    assert_counts(&server, "dpop_nonce_demanded_resource=1");

    // Likewise at the token endpoint: each refresh carries the nonce the last token
    // answer announced.
    for id in ["refreshed-1", "refreshed-2"] {
        server.revoke_all_access_tokens();
        assert_eq!(status(&adapter, &server, id).await, 200);
        assert_eq!(sends(&server, id), 2, "{id}: the dead answer and the retry");
    }
    assert_counts(
        &server,
        "token_requests=4 dpop_nonce_demanded_token=1 dpop_nonce_demanded_resource=1 \
         dpop_proofs_refused=0 dpop_replays=0 bearer_for_dpop_token=0",
    );
    assert_eq!(credentials.stats()[0].token_requests, 3);
}

fn key_file(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// A test key's RFC 7638 thumbprint, as computed outside this repository's code.
fn expected_thumbprint(name: &str) -> String {
    let thumbprints: Value = serde_json::from_str(&key_file("thumbprints.json")).unwrap();
    thumbprints[name].as_str().unwrap().to_owned()
}

async fn rsa_and_loaded_keys_prove_possession_of_the_key_their_tokens_are_bound_to(kind: Kind) {
    let rsa = || SigningKey::from_pem(&key_file("rsa-2048.pem")).unwrap();
    let cases = [
        (
            "RS256 from PEM",
            rsa().with_algorithm(SigningAlgorithm::Rs256).unwrap(),
            "rsa-2048",
        ),
        (
            "PS256 from PEM",
            rsa().with_algorithm(SigningAlgorithm::Ps256).unwrap(),
            "rsa-2048",
        ),
        (
            "ES256 from PEM",
            SigningKey::from_pem(&key_file("ec-p256.pem")).unwrap(),
            "ec-p256",
        ),
        (
            "ES256 from JWK",
            SigningKey::from_jwk(&key_file("ec-p256.jwk")).unwrap(),
            "ec-p256",
        ),
    ];
    for (case, signing_key, name) in cases {
        let algorithm = signing_key.algorithm();
        let server = started(MockServer::builder().client("client", "secret").dpop(true)).await;
        let key = DpopKey::new(signing_key);
        let credentials = dpop_credentials(&server, &key);
        let adapter = Adapter::new(kind, &credentials);

        let answer = adapter
            .send(Call::get(server.api_url("/things")).id(case))
            .await
            .unwrap();
        assert_eq!(answer.status, 200, "{case}: {:?}", answer.body);
        assert_eq!(answer.json()["placement"], "authorization_dpop", "{case}");
        let expected = expected_thumbprint(name);
        assert_eq!(key.thumbprint(), expected, "{case}");
        assert_eq!(answer.json()["cnf"], json!({ "jkt": expected }), "{case}");
        assert_eq!(key.current().algorithm(), algorithm, "{case}");
        let counts = server.counters();
        assert_eq!(
            (
                counts.token_requests,
                counts.dpop_proofs_accepted,
                counts.dpop_proofs_refused,
                counts.bearer_for_dpop_token,
            ),
            (1, 2, 0, 0),
            "{case}: one token request and one API request, each with an accepted proof"
        );
    }
}
