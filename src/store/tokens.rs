//! What a store keeps for one credential.

use std::{fmt, time::SystemTime};

use crate::secret::{AccessToken, RefreshToken};

/// What a store keeps for one credential (one provider, client, grant, scopes and
/// subject; see [`CredentialKey`](crate::CredentialKey)).
///
/// Every field is optional: a store may keep only the refresh token (the one value that
/// cannot be recovered without the user), or also the access token so a restarted
/// process does not need a token request before its first call.
///
/// `Debug` shows which tokens are present, never their values.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tower_oauth2::{secret::{AccessToken, RefreshToken}, store::StoredTokens};
///
/// let tokens = StoredTokens::new()
///     .with_refresh_token(RefreshToken::new("rt"))
///     .with_access_token(AccessToken::new("at"))
///     .with_expires_at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_900_000_000))
///     .with_scope("read write");
/// assert_eq!(tokens.scope.as_deref(), Some("read write"));
/// assert!(format!("{tokens:?}").contains("refresh_token: Some(***)"));
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredTokens {
    /// The refresh token, if the credential has one.
    pub refresh_token: Option<RefreshToken>,
    /// The access token, if the store keeps it.
    pub access_token: Option<AccessToken>,
    /// When the access token expires, on the wall clock: stored tokens outlive the
    /// process, and a `tokio::time::Instant` means nothing after a restart.
    pub expires_at: Option<SystemTime>,
    /// The scope the server granted, as it wrote it.
    pub scope: Option<String>,
}

impl StoredTokens {
    /// Nothing stored yet; add what there is with the `with_*` setters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the refresh token.
    pub fn with_refresh_token(mut self, refresh_token: RefreshToken) -> Self {
        self.refresh_token = Some(refresh_token);
        self
    }

    /// Sets the access token.
    pub fn with_access_token(mut self, access_token: AccessToken) -> Self {
        self.access_token = Some(access_token);
        self
    }

    /// Sets when the access token expires.
    pub fn with_expires_at(mut self, expires_at: SystemTime) -> Self {
        self.expires_at = Some(expires_at);
        self
    }

    /// Sets the granted scope.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }
}

// Written by hand so that a token can never reach a log line, whatever the field types
// become: only the presence of each token is shown.
impl fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let present = |some: bool| if some { "Some(***)" } else { "None" };
        f.debug_struct("StoredTokens")
            .field(
                "refresh_token",
                &format_args!("{}", present(self.refresh_token.is_some())),
            )
            .field(
                "access_token",
                &format_args!("{}", present(self.access_token.is_some())),
            )
            .field("expires_at", &self.expires_at)
            .field("scope", &self.scope)
            .finish()
    }
}

/// The wall clock, read only where time crosses a process boundary (saving and restoring
/// an expiry; the `iat` and `exp` of signed proofs and assertions, which a server
/// compares with its own clock); everything else measures time with
/// `tokio::time::Instant`.
#[allow(clippy::disallowed_methods)]
pub(crate) fn wall_clock_now() -> SystemTime {
    SystemTime::now()
}

impl StoredTokens {
    /// What to keep of `tokens`, their expiry moved from `now` to the wall clock.
    pub(crate) fn of(tokens: &crate::TokenSet, now: tokio::time::Instant, wall_now: SystemTime) -> Self {
        Self {
            refresh_token: tokens.refresh_token().cloned(),
            access_token: Some(tokens.access_token().clone()),
            expires_at: Some(wall_now + tokens.expires_at().saturating_duration_since(now)),
            scope: tokens.scope().map(str::to_owned),
        }
    }

    /// The stored access token as a token set, if it has at least `at_least` to live.
    ///
    /// Its lifetime is believed up to `at_most` (the provider's longest): a store holds
    /// whatever was written to it, and an expiry in the year 3000, from a bug or a
    /// tampered file, must not keep a token in use for centuries.
    pub(crate) fn live_tokens(
        &self,
        now: tokio::time::Instant,
        wall_now: SystemTime,
        at_least: std::time::Duration,
        at_most: std::time::Duration,
    ) -> Option<crate::TokenSet> {
        let access = self.access_token.clone()?;
        let left = self.expires_at?.duration_since(wall_now).ok()?;
        if left < at_least {
            return None;
        }
        if left > at_most {
            tracing::warn!(
                left_s = left.as_secs(),
                clamped_to_s = at_most.as_secs(),
                "a stored token claims to live longer than the provider's longest lifetime; clamping"
            );
        }
        let mut tokens = crate::TokenSet::new(access, crate::token::instant_after(now, left.min(at_most)));
        tokens.set_refresh_token(self.refresh_token.clone());
        if let Some(scope) = &self.scope {
            tokens = tokens.with_scope(scope.clone());
        }
        Some(tokens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_expiry_is_believed_up_to_the_longest_lifetime() {
        use std::time::Duration;
        let now = tokio::time::Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let day = Duration::from_secs(24 * 3600);
        let second = Duration::from_secs(1);
        for (stored_left, believed) in [
            (Duration::from_secs(600), Duration::from_secs(600)),
            (day, day),
            (Duration::from_secs(1000 * 365 * 24 * 3600), day),
            // Far past anything an `Instant` can hold: no overflow, no panic.
            (Duration::from_secs(u64::MAX / 4), day),
        ] {
            let tokens = StoredTokens::new()
                .with_access_token(AccessToken::new("at"))
                .with_expires_at(wall + stored_left);
            let live = tokens.live_tokens(now, wall, second, day).unwrap();
            assert_eq!(live.expires_at() - now, believed, "stored {stored_left:?}");
        }
        let almost_dead = StoredTokens::new()
            .with_access_token(AccessToken::new("at"))
            .with_expires_at(wall + Duration::from_millis(500));
        assert!(almost_dead.live_tokens(now, wall, second, day).is_none());
    }

    #[test]
    fn debug_shows_presence_not_values() {
        let tokens = StoredTokens::new()
            .with_refresh_token(RefreshToken::new("refresh-value"))
            .with_access_token(AccessToken::new("access-value"));
        let printed = format!("{tokens:?} {tokens:#?}");
        assert!(!printed.contains("-value"), "{printed}");
        assert!(printed.contains("refresh_token: Some(***)"), "{printed}");
        assert_eq!(
            format!("{:?}", StoredTokens::new()),
            "StoredTokens { refresh_token: None, access_token: None, expires_at: None, scope: None }"
        );
    }
}
