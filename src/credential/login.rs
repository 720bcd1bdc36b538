//! A user's login: the credential starts over from a new authorization code.
//!
//! Whatever the credential held before (a refresh token, a dead one, failures being
//! backed off from) belongs to an earlier authorization and is dropped; the code is
//! exchanged through the same single flight as any token request, after the one in
//! flight (if any) has ended.

use std::sync::Arc;

use super::{decide::Reason, CredentialState, Outcome};
use crate::{error::Error, token_endpoint::PendingCode};

impl CredentialState {
    /// Starts over from a new authorization: exchanges `code` (after any token request in
    /// flight ends) and installs and stores the result, whatever came before.
    pub(crate) async fn authorize(self: &Arc<Self>, code: PendingCode) -> Outcome {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(Error::config(
                "token requests run as Tokio tasks; call within a Tokio runtime",
            ));
        };
        let pending = loop {
            let pending = {
                let mut slot = self.lock();
                match &slot.inflight {
                    Some(pending) => pending.clone(),
                    None => {
                        slot.code = Some(code);
                        slot.refresh_token = None;
                        slot.dead_refresh = None;
                        slot.forget_failures();
                        break self.start_refresh(&runtime, &mut slot, Reason::Missing);
                    }
                }
            };
            let _ = pending.await;
        };
        pending.await
    }
}
