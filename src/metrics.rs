//! The counters of [`CredentialRegistry::stats`], published through the [`metrics`](https://docs.rs/metrics)
//! facade, to whatever recorder the application installed (a Prometheus exporter, StatsD,
//! ...).
//!
//! The counters live in the registry whatever recorder there is; publishing reads them
//! and hands the recorder their current values. [`CredentialRegistry::record_metrics`] does
//! that once, for example right before a scrape; [`CredentialRegistry::spawn_metrics_exporter`]
//! does it on an interval, in a task of its own.
//!
//! # Metrics
//!
//! | name | kind | unit | what |
//! | --- | --- | --- | --- |
//! | `oauth2_cache_hits_total` | counter | count | requests that found a fresh token in their service clone (see [`CredentialStats::cache_hits`]) |
//! | `oauth2_token_requests_total` | counter, label `grant` | count | token requests sent, successful or not, by grant: `client_credentials`, `refresh_token`, `authorization_code` |
//! | `oauth2_early_refreshes_total` | counter | count | refreshes started because a token entered its refresh window |
//! | `oauth2_dead_token_refreshes_total` | counter | count | refreshes started because an API answer declared the token dead |
//! | `oauth2_retries_total` | counter | count | requests sent a second time after a dead-token answer |
//! | `oauth2_failures_total` | counter | count | token requests that failed |
//! | `oauth2_seconds_until_refresh` | gauge | seconds | how long until the current token enters its refresh window (zero once it has) |
//!
//! Counters are set to the registry's totals with `Counter::absolute`, which recorders
//! treat as "at least": they only go up. The gauge is set only while there is a usable
//! token; without one it is left as it was.
//!
//! # Labels
//!
//! Every series has two labels:
//!
//! - `provider`: the provider's name;
//! - `credential`: for the application's own credentials, the credential's key
//!   (`provider/client/grant/scopes`, as [`CredentialKey`](crate::CredentialKey) prints
//!   it) without any subject; for users' credentials, `users`.
//!
//! Users' credentials are summed per provider into one `credential="users"` series, and
//! no label names a user: one series per user would grow with the user base, and users'
//! ids may be personal data. The sums include the users evicted from memory since (see
//! [Users in memory](crate::UserCredentialTemplate#users-in-memory)), so they never go down. For
//! the same reason an application credential registered with a
//! subject is labelled without it, and credentials whose labels then coincide are
//! summed. The gauge of a sum is the soonest refresh among its tokens.
//!
//! No label carries a secret: client ids, grants and scopes are not.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! # use std::convert::Infallible;
//! # use bytes::Bytes;
//! # use http::{Request, Response};
//! # use http_body_util::Full;
//! use tower_oauth2::{Credential, CredentialRegistry, Provider};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower_oauth2::BoxError> {
//! # let token_endpoint = tower_oauth2::TokenTransport::new(tower::service_fn(|_req: Request<Full<Bytes>>| async {
//! #     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
//! #         br#"{"access_token":"abc","token_type":"Bearer","expires_in":3600}"#,
//! #     ))))
//! # }));
//! let provider = Provider::standard("https://auth.example.com/oauth/token").api("https://api.example.com");
//! let credentials = CredentialRegistry::builder()
//!     .credential(Credential::client_credentials(provider, "client-id", "client-secret"))
//! #   .transport(token_endpoint)
//!     .build()?;
//!
//! // Install the application's recorder first (metrics-exporter-prometheus's
//! // `PrometheusBuilder::install`, or any `metrics::set_global_recorder`), then:
//! let exporter = credentials.spawn_metrics_exporter(Duration::from_secs(15))?;
//!
//! // ... hand `credentials` to an `OAuth2Layer` and serve ...
//!
//! // The task ends when every clone of `credentials` is gone, or when aborted.
//! exporter.abort();
//! # Ok(())
//! # }
//! ```

use std::{
    collections::BTreeMap,
    sync::{Arc, Once},
    time::Duration,
};

use metrics::{counter, describe_counter, describe_gauge, gauge, Label, Unit};
use tokio::{task::JoinHandle, time::MissedTickBehavior};

use crate::{stats::CredentialStats, CredentialRegistry, Error};

const CACHE_HITS: &str = "oauth2_cache_hits_total";
const TOKEN_REQUESTS: &str = "oauth2_token_requests_total";
const EARLY_REFRESHES: &str = "oauth2_early_refreshes_total";
const DEAD_TOKEN_REFRESHES: &str = "oauth2_dead_token_refreshes_total";
const RETRIES: &str = "oauth2_retries_total";
const FAILURES: &str = "oauth2_failures_total";
const UNTIL_REFRESH: &str = "oauth2_seconds_until_refresh";

/// The `credential` label of every user's credential at a provider, summed.
const USERS: &str = "users";

impl CredentialRegistry {
    /// Publishes the counters of every credential through the `metrics` facade, to the
    /// recorder in force on this thread: see the [module docs](crate::metrics) for the
    /// metrics, their labels and an example.
    ///
    /// Reads the same counters as [`stats`](Self::stats) (atomic loads, and each user
    /// group's cold-path lock while its users are read, as `stats` takes it), sums users'
    /// credentials per provider, and sets each series to its current value: calling it
    /// more or less often changes no value, only how fresh it is.
    ///
    /// The first call in the process also describes the metrics (unit and help text) to
    /// the recorder in force then: install the recorder before.
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn record_metrics(&self) {
        static DESCRIBE: Once = Once::new();
        DESCRIBE.call_once(describe);

        // Keyed by (provider, credential label): credentials whose labels coincide are
        // summed rather than overwriting each other's series.
        let mut series: BTreeMap<(String, String), Series> = BTreeMap::new();
        for state in &self.routing.states {
            let stats = state.snapshot();
            let label = state.credential_key().without_subject().to_string();
            series
                .entry((stats.provider.clone(), label))
                .or_default()
                .add(&stats);
        }
        for (provider, users) in self.users_stats() {
            let sum = series.entry((provider.to_owned(), USERS.to_owned())).or_default();
            for stats in &users {
                sum.add(stats);
            }
        }
        for ((provider, credential), values) in &series {
            values.publish(provider, credential);
        }
    }

    /// Spawns a task that calls [`record_metrics`](Self::record_metrics) now and then
    /// every `every` (a tick missed under load is skipped, not caught up), until it is
    /// aborted or every clone of these credentials has been dropped: the task does not
    /// keep them alive. See the [module docs](crate::metrics) for an example.
    ///
    /// The task publishes to the global recorder: install it first.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when called outside a Tokio runtime, or when `every` is zero.
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn spawn_metrics_exporter(&self, every: Duration) -> Result<JoinHandle<()>, Error> {
        if every.is_zero() {
            return Err(Error::config(
                "the metrics export period must be longer than zero",
            ));
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(Error::config(
                "the metrics exporter runs as a Tokio task; call `spawn_metrics_exporter` within a Tokio runtime",
            ));
        };
        let routing = Arc::downgrade(&self.routing);
        Ok(runtime.spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                let Some(routing) = routing.upgrade() else {
                    return;
                };
                CredentialRegistry { routing }.record_metrics();
            }
        }))
    }
}

fn describe() {
    describe_counter!(
        CACHE_HITS,
        Unit::Count,
        "Requests that found a fresh token in their service clone (published by each clone every 1,024 hits and when it is dropped)"
    );
    describe_counter!(
        TOKEN_REQUESTS,
        Unit::Count,
        "Token requests sent, successful or not, by grant"
    );
    describe_counter!(
        EARLY_REFRESHES,
        Unit::Count,
        "Refreshes started because a token entered its refresh window"
    );
    describe_counter!(
        DEAD_TOKEN_REFRESHES,
        Unit::Count,
        "Refreshes started because an API answer declared the token dead"
    );
    describe_counter!(
        RETRIES,
        Unit::Count,
        "Requests sent a second time after a dead-token answer"
    );
    describe_counter!(FAILURES, Unit::Count, "Token requests that failed");
    describe_gauge!(
        UNTIL_REFRESH,
        Unit::Seconds,
        "Time until the current token enters its refresh window (zero once it has); the soonest of a sum"
    );
}

/// One series' values: one credential's counters, or the sum of several.
#[derive(Debug, Default)]
struct Series {
    cache_hits: u64,
    client_credentials: u64,
    refresh_token: u64,
    authorization_code: u64,
    early_refreshes: u64,
    dead_token_refreshes: u64,
    retries: u64,
    failures: u64,
    until_refresh: Option<Duration>,
}

impl Series {
    fn add(&mut self, stats: &CredentialStats) {
        self.cache_hits += stats.cache_hits;
        self.client_credentials += stats.client_credentials_requests;
        self.refresh_token += stats.refresh_token_requests;
        self.authorization_code += stats.authorization_code_requests;
        self.early_refreshes += stats.early_refreshes;
        self.dead_token_refreshes += stats.dead_token_refreshes;
        self.retries += stats.retries;
        self.failures += stats.failures;
        self.until_refresh = match (self.until_refresh, stats.until_refresh) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }

    fn publish(&self, provider: &str, credential: &str) {
        let labels = vec![
            Label::new("provider", provider.to_owned()),
            Label::new("credential", credential.to_owned()),
        ];
        counter!(CACHE_HITS, labels.iter()).absolute(self.cache_hits);
        for (grant, count) in [
            ("client_credentials", self.client_credentials),
            ("refresh_token", self.refresh_token),
            ("authorization_code", self.authorization_code),
        ] {
            let mut by_grant = labels.clone();
            by_grant.push(Label::new("grant", grant));
            counter!(TOKEN_REQUESTS, by_grant).absolute(count);
        }
        counter!(EARLY_REFRESHES, labels.iter()).absolute(self.early_refreshes);
        counter!(DEAD_TOKEN_REFRESHES, labels.iter()).absolute(self.dead_token_refreshes);
        counter!(RETRIES, labels.iter()).absolute(self.retries);
        counter!(FAILURES, labels.iter()).absolute(self.failures);
        if let Some(until_refresh) = self.until_refresh {
            gauge!(UNTIL_REFRESH, labels.iter()).set(until_refresh.as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(requests: u64, until_refresh: Option<u64>) -> CredentialStats {
        CredentialStats {
            token_requests: requests,
            refresh_token_requests: requests,
            failures: 1,
            until_refresh: until_refresh.map(Duration::from_secs),
            ..CredentialStats::default()
        }
    }

    #[test]
    fn a_sum_adds_counters_and_keeps_the_soonest_refresh() {
        let mut sum = Series::default();
        for s in [
            stats(2, None),
            stats(3, Some(90)),
            stats(4, Some(30)),
            stats(0, None),
        ] {
            sum.add(&s);
        }
        assert_eq!((sum.refresh_token, sum.failures), (9, 4));
        assert_eq!(sum.until_refresh, Some(Duration::from_secs(30)));

        let mut none = Series::default();
        none.add(&stats(1, None));
        assert_eq!(none.until_refresh, None);
    }
}
