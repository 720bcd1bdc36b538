//! The retry rules: a dead-token answer is retried once, with the same body; a second
//! dead answer is returned as it is; a body that cannot be replayed is sent once; a
//! request or an adapter can turn retries off. And origins other than the provider's
//! never get a token.

use crate::common::*;

both!(
    a_dead_token_answer_is_retried_once_with_the_body_byte_identical,
    a_second_dead_answer_is_returned_as_it_is_after_exactly_two_sends,
    a_streamed_body_is_sent_once_and_its_401_returned_yet_the_token_is_refreshed,
    no_retry_on_a_request_or_retries_off_send_once_but_still_refresh,
    foreign_origins_and_plain_http_to_other_hosts_get_no_token,
);

async fn a_dead_token_answer_is_retried_once_with_the_body_byte_identical(kind: Kind) {
    let (server, credentials, adapter) = standard_setup(kind).await;
    assert_eq!(status(&adapter, &server, "warm").await, 200);
    server.revoke_all_access_tokens();
    server.reset_counters();

    let payload = Bytes::from((0..60_000u32).map(|i| (i % 253) as u8).collect::<Vec<_>>());
    let call = Call::post(server.api_url("/upload"), payload.clone()).id("upload");
    assert_eq!(adapter.send(call).await.unwrap().status, 200);

    let counters = server.counters();
    assert_eq!(sends(&server, "upload"), 2);
    assert_eq!(counters.bodies, vec![payload.clone(), payload]);
    assert_eq!(counters.resource_calls_by_status.get(&401), Some(&1));
    assert_eq!(counters.resource_calls_by_status.get(&200), Some(&1));
    assert_eq!(counters.token_requests, 1, "one refresh");
    assert_eq!(refreshes_and_retries(&credentials), (1, 1));
}

async fn a_second_dead_answer_is_returned_as_it_is_after_exactly_two_sends(kind: Kind) {
    let server = standard_server().await;
    // The server never looks in this header: every request is refused, with any token.
    let provider = server
        .provider()
        .token_placement(TokenPlacement::Header("x-not-read".parse().unwrap()));
    let credentials = client_credentials(provider);
    let adapter = Adapter::new(kind, &credentials);

    let answer = adapter
        .send(Call::get(server.api_url("/things")).id("doomed"))
        .await
        .unwrap();
    assert_eq!(answer.status, 401);
    let challenge = answer.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    assert_eq!(sends(&server, "doomed"), 2);
    assert_eq!(
        server.counters().token_requests,
        2,
        "the first token, then one refresh"
    );

    // The fresh token was refused too, so the refusal is not about the token: the next
    // requests are answered as they are, without hammering the token endpoint.
    for i in 0..10 {
        let id = format!("next-{i}");
        assert_eq!(status(&adapter, &server, &id).await, 401);
        assert_eq!(sends(&server, &id), 1, "{id}");
    }
    assert_eq!(server.counters().token_requests, 2);
    assert_eq!(refreshes_and_retries(&credentials), (1, 1));
}

async fn a_streamed_body_is_sent_once_and_its_401_returned_yet_the_token_is_refreshed(kind: Kind) {
    let (server, credentials, adapter) = standard_setup(kind).await;
    assert_eq!(status(&adapter, &server, "warm").await, 200);
    server.revoke_all_access_tokens();
    server.reset_counters();

    let call = Call::streamed(server.api_url("/upload"), ["a streamed ", "body"]).id("streamed");
    assert_eq!(adapter.send(call).await.unwrap().status, 401);
    assert_eq!(sends(&server, "streamed"), 1);
    assert_eq!(
        server.counters().bodies,
        vec![Bytes::from_static(b"a streamed body")]
    );

    // The dead answer still refreshed the token: the next request carries the new one.
    eventually("the refresh", || server.counters().token_requests == 1).await;
    assert_eq!(status(&adapter, &server, "after").await, 200);
    assert_eq!(sends(&server, "after"), 1);
    assert_eq!(server.counters().token_requests, 1);
    assert_eq!(refreshes_and_retries(&credentials), (1, 0));
}

async fn no_retry_on_a_request_or_retries_off_send_once_but_still_refresh(kind: Kind) {
    let (server, credentials, adapter) = standard_setup(kind).await;
    let never = Adapter::with_retries(kind, &credentials, false);
    assert_eq!(status(&adapter, &server, "warm").await, 200);

    // `NoRetry` in one request's extensions.
    server.revoke_all_access_tokens();
    let once = Call::get(server.api_url("/things")).id("once").no_retry();
    assert_eq!(adapter.send(once).await.unwrap().status, 401);
    assert_eq!(sends(&server, "once"), 1);
    eventually("the refresh", || server.counters().token_requests == 2).await;
    assert_eq!(status(&adapter, &server, "later").await, 200);
    assert_eq!(sends(&server, "later"), 1);

    // Every request of an adapter built with `retry_dead_tokens(false)`.
    server.revoke_all_access_tokens();
    assert_eq!(status(&never, &server, "never").await, 401);
    assert_eq!(sends(&server, "never"), 1);
    eventually("the refresh", || server.counters().token_requests == 3).await;
    assert_eq!(status(&never, &server, "never-later").await, 200);
    assert_eq!(refreshes_and_retries(&credentials), (2, 0));
}

async fn foreign_origins_and_plain_http_to_other_hosts_get_no_token(kind: Kind) {
    let server = standard_server().await;
    let port = server.addr().port();
    // The server's token is also the token of `https://api.example.test:PORT`:
    // routed over https only.
    let provider = server.provider().api(format!("https://api.example.test:{port}"));
    let adapter = Adapter::new(kind, &client_credentials(provider));

    // Both names reach the server's own address (the adapters resolve every name to
    // 127.0.0.1), where any token sent would be accepted.
    for (id, url) in [
        // The same address under another origin.
        ("other-origin", format!("http://localhost:{port}/api/things")),
        // Plain http to a host whose token goes over https only.
        ("plain-http", format!("http://api.example.test:{port}/api/things")),
    ] {
        let answer = adapter.send(Call::get(&url).id(id)).await.unwrap();
        assert_eq!(answer.status, 401, "{url}");
        assert_eq!(sends(&server, id), 1, "{url}");
    }
    let counters = server.counters();
    assert_eq!(counters.resource_calls_authorized, 0);
    assert_eq!(counters.token_requests, 0, "no token was even fetched");

    // The registry refuses a plain http origin that is not loopback in the first place.
    let provider = server.provider().api(format!("http://api.example.test:{port}"));
    let err =
        CredentialRegistry::new(Credential::client_credentials(provider, "client", "secret")).unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err}");
    assert!(err.to_string().contains("plain http"), "{err}");

    // The server's own origin does get the token.
    let adapter = Adapter::new(kind, &client_credentials(server.provider()));
    assert_eq!(status(&adapter, &server, "own").await, 200);
}
