use std::sync::Arc;

use tower_layer::Layer;

use super::OAuth2;
use crate::{protocol::Plan, registry::CredentialRegistry};

/// Default most bytes of a request body kept for a replay.
pub(crate) const DEFAULT_REPLAY_LIMIT: usize = 64 * 1024;

/// Applies [`OAuth2`] to a service. See the [module docs](crate::layer) for an example.
#[derive(Debug, Clone)]
pub struct OAuth2Layer {
    pub(crate) credentials: CredentialRegistry,
    pub(crate) replay_limit: usize,
    pub(crate) retry: bool,
    /// Where each credential's token goes and how to tell a dead-token answer,
    /// precomputed from the providers once for all clones (read, never written, after
    /// this).
    pub(crate) plans: Arc<[Plan]>,
}

impl OAuth2Layer {
    /// A layer attaching `credentials`.
    pub fn new(credentials: CredentialRegistry) -> Self {
        Self {
            plans: Plan::all(&credentials.routing),
            credentials,
            replay_limit: DEFAULT_REPLAY_LIMIT,
            retry: true,
        }
    }

    /// The most bytes of a request body kept so the request can be retried (default
    /// 64 KiB). Larger bodies are sent once.
    pub fn replay_limit(mut self, bytes: usize) -> Self {
        self.replay_limit = bytes;
        self
    }

    /// Whether a request answered with a dead-token status is sent once more with a
    /// fresh token (default `true`). With `false`, the token is still refreshed for the
    /// requests that follow, and no request is ever sent twice or copied for a retry.
    /// [`NoRetry`](crate::NoRetry) does the same for a single request.
    pub fn retry_dead_tokens(mut self, retry: bool) -> Self {
        self.retry = retry;
        self
    }

    /// The credentials, e.g. to read their [`stats`](CredentialRegistry::stats).
    pub fn credentials(&self) -> &CredentialRegistry {
        &self.credentials
    }
}

impl<S: Clone> Layer<S> for OAuth2Layer {
    type Service = OAuth2<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OAuth2::new(inner, self.clone())
    }
}
