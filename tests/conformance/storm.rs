//! A 401 storm: concurrent callers whose token died at the server cause one refresh, and
//! each request is sent exactly twice.

use crate::common::*;

both!(
    multi_thread:
    a_401_storm_of_1000_callers_causes_one_refresh_and_two_sends_each,
);

async fn a_401_storm_of_1000_callers_causes_one_refresh_and_two_sends_each(kind: Kind) {
    let (server, credentials, adapter) = standard_setup(kind).await;
    // Open 1,000 pooled connections, so that the storm does not wait for handshakes.
    let warm = statuses(adapter.concurrently(things(&server, "warm", 1000)).await);
    assert_eq!(warm, vec![200; 1000]);

    server.revoke_all_access_tokens();
    // Every request reaches the API with the revoked token before any answer returns.
    server.set_resource_latency(Duration::from_millis(1000));
    server.reset_counters();
    let statuses = statuses(adapter.concurrently(things(&server, "storm", 1000)).await);

    assert_eq!(statuses, vec![200; 1000]);
    let counters = server.counters();
    assert_eq!(counters.token_requests, 1, "one refresh");
    assert_eq!(counters.resource_calls_by_status.get(&401), Some(&1000));
    assert_eq!(counters.resource_calls_by_status.get(&200), Some(&1000));
    for i in 0..1000 {
        let id = format!("storm-{i}");
        assert_eq!(counters.sends_by_request_id.get(&id), Some(&2), "{id}");
    }
    assert_eq!(refreshes_and_retries(&credentials), (1, 1000));
}
