//! [`CredentialKey`]: what identifies a credential's tokens, in the cache, the store and
//! log lines.

use std::{fmt, sync::Arc};

use crate::redact::write_escaped;

/// What identifies a credential's tokens: provider, client id, grant, sorted scopes and
/// subject. A token is only ever attached for the key it was requested under.
///
/// `Display` prints `provider/client/grant/scopes` and `/subject` when there is one,
/// with control characters escaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CredentialKey {
    provider: Arc<str>,
    client_id: Arc<str>,
    grant: &'static str,
    scopes: Arc<[String]>,
    subject: Option<Arc<str>>,
}

impl CredentialKey {
    pub(crate) fn new(
        provider: Arc<str>,
        client_id: Arc<str>,
        grant: &'static str,
        scopes: Arc<[String]>,
        subject: Option<Arc<str>>,
    ) -> Self {
        Self {
            provider,
            client_id,
            grant,
            scopes,
            subject,
        }
    }

    /// The provider's name.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// The client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The grant's name (`client_credentials`, `refresh_token`, `authorization_code`).
    pub fn grant(&self) -> &str {
        self.grant
    }

    /// The scopes, sorted.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The subject, if the credential acts for a user.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// This key with no subject: what may name the credential where a user's id must
    /// not appear (metric labels, warnings, the entry of evicted users in stats).
    pub(crate) fn without_subject(&self) -> Self {
        Self {
            subject: None,
            ..self.clone()
        }
    }
}

impl fmt::Display for CredentialKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Escaped: the subject is a user's id, and keys are printed in log lines.
        write_escaped(
            f,
            format_args!(
                "{}/{}/{}/{}",
                self.provider,
                self.client_id,
                self.grant,
                self.scopes.join(" ")
            ),
        )?;
        if let Some(subject) = &self.subject {
            write_escaped(f, format_args!("/{subject}"))?;
        }
        Ok(())
    }
}
