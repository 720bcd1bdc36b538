//! The family of one `OAuth2` service's clones: what they share, the layer's
//! configuration and the spare inner service that retries are sent through.

use std::sync::{Arc, Mutex, PoisonError};

use super::OAuth2Layer;

/// What a family of clones of one [`OAuth2`](super::OAuth2) shares, also held by each
/// response future that may have to refresh and retry.
///
/// A clone shares its parent's until it has served enough requests to pay for its own
/// (see `OAuth2`'s docs): a reference count that only one clone, on one thread, writes
/// on every request.
///
/// Aligned to 128 bytes so that it starts two cache lines (an adjacent-line prefetch
/// pair) away from the `Arc`'s reference counts: clones per request on several threads
/// write the counts on every request, and every request reads the configuration here,
/// which must not move between cores with them.
#[repr(align(128))]
pub(crate) struct CloneFamily<S> {
    pub(crate) layer: OAuth2Layer,
    /// A clone of the inner service kept for retries, one for the whole family of
    /// clones. Retries are rare, so rather than cloning the inner service on every
    /// request (for a hyper client, reference counts every thread writes), a retry
    /// clones this one and polls it ready. Behind a mutex so that the future stays
    /// `Send` for inner services that are not `Sync`.
    spare: Arc<Mutex<S>>,
}

impl<S> CloneFamily<S> {
    pub(crate) fn new(layer: OAuth2Layer, spare: S) -> Self {
        Self {
            layer,
            spare: Arc::new(Mutex::new(spare)),
        }
    }

    /// The same configuration and spare, behind a reference count of its own.
    pub(crate) fn sibling(&self) -> Self {
        Self {
            layer: self.layer.clone(),
            spare: Arc::clone(&self.spare),
        }
    }
}

impl<S: Clone> CloneFamily<S> {
    /// A service to send a retry through (not ready yet).
    pub(crate) fn spare_service(&self) -> S {
        self.spare.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}
