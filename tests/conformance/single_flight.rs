//! Concurrent callers needing a token cause one token request: at cold start, at expiry,
//! and in the refresh window, where they keep using the current token meanwhile.

use crate::common::*;

both!(
    expiry_with_1000_concurrent_callers_makes_one_refresh,
    a_token_in_its_refresh_window_is_used_while_one_refresh_runs,
);
both!(
    multi_thread:
    cold_start_with_1000_concurrent_callers_makes_one_token_request,
);

async fn cold_start_with_1000_concurrent_callers_makes_one_token_request(kind: Kind) {
    let (server, credentials, adapter) = standard_setup(kind).await;
    server.set_token_latency(Duration::from_millis(20));

    let statuses = statuses(adapter.concurrently(things(&server, "cold", 1000)).await);

    assert_eq!(statuses, vec![200; 1000]);
    let counters = server.counters();
    let counts = "token_requests=1 client_credentials_grants=1 max_concurrent_token_requests=1";
    assert_counts(&server, counts);
    assert_eq!(counters.resource_calls_by_status.get(&200), Some(&1000));
    assert_eq!(credentials.stats()[0].token_requests, 1);
}

async fn expiry_with_1000_concurrent_callers_makes_one_refresh(kind: Kind) {
    let server = standard_with_lifetime(Duration::from_secs(120)).await;
    let credentials = client_credentials(server.provider());
    let adapter = Adapter::new(kind, &credentials);
    assert_eq!(status(&adapter, &server, "first").await, 200);
    server.set_token_latency(Duration::from_millis(20));

    // Past the expiry: nobody may use the token in hand.
    advance(Duration::from_secs(121)).await;
    let statuses = statuses(adapter.concurrently(things(&server, "expired", 1000)).await);

    assert_eq!(statuses, vec![200; 1000]);
    let counters = server.counters();
    assert_eq!(counters.token_requests, 2, "one refresh for 1000 callers");
    assert_eq!(counters.max_concurrent_token_requests, 1);
    assert_eq!(counters.resource_calls_by_status.get(&200), Some(&1001));
    assert_eq!(
        counters.resource_calls_by_status.get(&401),
        None,
        "no call with the expired token"
    );
    let stats = &credentials.stats()[0];
    assert_eq!((stats.token_requests, stats.early_refreshes), (2, 0));
}

async fn a_token_in_its_refresh_window_is_used_while_one_refresh_runs(kind: Kind) {
    let server = standard_with_lifetime(Duration::from_secs(120)).await;
    let credentials = client_credentials(server.provider());
    let adapter = Adapter::new(kind, &credentials);
    assert_eq!(status(&adapter, &server, "first").await, 200);

    // Into the refresh window (the refresh point is 60 s before expiry).
    advance(Duration::from_secs(61)).await;
    let statuses = statuses(adapter.concurrently(things(&server, "in-window", 100)).await);
    assert_eq!(statuses, vec![200; 100]);
    assert!((0..100).all(|i| sends(&server, &format!("in-window-{i}")) == 1));
    eventually("the early refresh", || server.counters().token_requests == 2).await;
    assert_eq!(status(&adapter, &server, "after").await, 200);
    assert_eq!(server.counters().token_requests, 2);
    let stats = &credentials.stats()[0];
    assert_eq!((stats.token_requests, stats.early_refreshes), (2, 1));
}
