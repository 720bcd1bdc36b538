//! What the unit tests of this module share: a credential whose token endpoint is a
//! function in the test. Its token URL is on 127.0.0.1 and is never dialled: the
//! transport answers every request itself and counts them.

use std::{
    convert::Infallible,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;

use super::CredentialState;
use crate::{token_endpoint::CheckedCredential, Credential, Provider, RefreshPolicy, TokenTransport};

/// No jitter: refresh points and backoffs are exact (the first backoff is 100 ms, half
/// the 200 ms step).
pub(super) fn policy() -> RefreshPolicy {
    RefreshPolicy::default().random(|| 0.0)
}

/// A client-credentials credential whose token endpoint issues `tok-1`, `tok-2`, ...,
/// valid for an hour, and how many token requests it was sent.
pub(super) fn credential() -> (Arc<CredentialState>, Arc<AtomicUsize>) {
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&requests);
    let transport = TokenTransport::new(tower::service_fn(move |_: Request<Full<Bytes>>| {
        let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            let body = format!(r#"{{"access_token":"tok-{n}","token_type":"Bearer","expires_in":3600}}"#);
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(body)))
                    .unwrap(),
            )
        }
    }));
    let provider = Provider::standard("http://127.0.0.1:9/token");
    let credential = Credential::client_credentials(provider, "client", "secret").refresh_policy(policy());
    let config = CheckedCredential::new(credential).unwrap();
    (
        Arc::new(CredentialState::with_store(config, transport, None, false)),
        requests,
    )
}
