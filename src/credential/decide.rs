//! What `acquire` and `refresh_early` do, decided from what they saw.
//!
//! Both read the credential's state under the slot's lock and then act on it. The
//! decision in between is a pure function of a few plain values, so that each branch,
//! and the order in which the checks are made, is pinned by a table of cases instead of
//! by staging a token endpoint, a clock and a failing request for each.

/// Why a token request is made; shown in spans and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reason {
    /// No token yet, or the last one expired.
    Missing,
    /// The token is in its refresh window.
    Early,
    /// An API answer said the token is dead.
    DeadToken,
}

impl Reason {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Early => "early",
            Reason::DeadToken => "dead_token",
        }
    }
}

/// The current token, as far as a decision cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TokenView {
    pub(super) generation: u64,
    /// Not `EXPIRED` (by its timer, or by an earlier dead-token answer).
    pub(super) usable: bool,
}

/// What a caller saw under the slot's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seen {
    /// The current token, if there is one.
    pub(super) current: Option<TokenView>,
    /// The generation an API answer declared dead, if the caller got such an answer.
    pub(super) dead: Option<u64>,
    /// Whether dead-token answers for the current token are being returned as they are,
    /// because it was refused as soon as it was fetched.
    pub(super) ignoring_dead_for_current: bool,
    /// Whether a token request is in flight.
    pub(super) in_flight: bool,
    /// Whether earlier failures hold further token requests back.
    pub(super) backing_off: bool,
    /// Whether the caller runs within a Tokio runtime, where a token request can run.
    pub(super) runtime: bool,
}

/// What `acquire` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Decision {
    /// Mark the current token `EXPIRED` first: an API answer declared it dead. Done
    /// whatever the action, so that no caller attaches it again.
    pub(super) expire_current: bool,
    pub(super) action: Action,
}

/// How `acquire` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    /// With the current token.
    Use,
    /// With the outcome of the token request in flight.
    Join,
    /// With the error of the failures being backed off from; no request is made.
    Refuse,
    /// With a configuration error: token requests run as Tokio tasks.
    NoRuntime,
    /// With the outcome of a token request started now.
    Refresh(Reason),
}

/// What `acquire` does with what it saw. In order:
///
/// 1. a current token that a dead-token answer names is answered as it is if such
///    answers are being ignored for it, and else expired and refreshed (below); a usable
///    token that no answer names is used;
/// 2. a token request in flight is joined, before the backoff is consulted;
/// 3. while backing off, the last error is the answer;
/// 4. without a runtime, no request can run;
/// 5. else a token request starts.
pub(super) fn decide(seen: &Seen) -> Decision {
    let mut expire_current = false;
    let mut reason = Reason::Missing;
    if let Some(current) = seen.current {
        let declared_dead = seen.dead == Some(current.generation);
        if declared_dead && seen.ignoring_dead_for_current {
            return Decision {
                expire_current: false,
                action: Action::Use,
            };
        } else if declared_dead {
            expire_current = true;
            reason = Reason::DeadToken;
        } else if current.usable {
            return Decision {
                expire_current: false,
                action: Action::Use,
            };
        }
    }
    let action = if seen.in_flight {
        Action::Join
    } else if seen.backing_off {
        Action::Refuse
    } else if !seen.runtime {
        Action::NoRuntime
    } else {
        Action::Refresh(reason)
    };
    Decision {
        expire_current,
        action,
    }
}

/// Whether `refresh_early` starts the background refresh of token `generation`: only if
/// that token is still the current one, nothing is in flight and nothing holds requests
/// back. The caller claims the token's early refresh before it asks, so each token asks
/// once; after a failed request, `rearm_early_refresh_after_backoff` lets it ask again.
pub(super) fn should_refresh_early(seen: &Seen, generation: u64) -> bool {
    seen.runtime
        && seen
            .current
            .is_some_and(|current| current.generation == generation)
        && !seen.in_flight
        && !seen.backing_off
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 7;
    const OLDER: u64 = 6;

    /// No token, nothing in flight, no backoff, within a runtime: the row every case
    /// starts from.
    const NOTHING: Seen = Seen {
        current: None,
        dead: None,
        ignoring_dead_for_current: false,
        in_flight: false,
        backing_off: false,
        runtime: true,
    };

    const USABLE: Option<TokenView> = Some(TokenView {
        generation: NOW,
        usable: true,
    });

    const EXPIRED: Option<TokenView> = Some(TokenView {
        generation: NOW,
        usable: false,
    });

    fn keep(action: Action) -> Decision {
        Decision {
            expire_current: false,
            action,
        }
    }

    fn expire(action: Action) -> Decision {
        Decision {
            expire_current: true,
            action,
        }
    }

    #[test]
    fn each_branch_and_each_precedence_of_acquire() {
        use Action::*;
        #[rustfmt::skip]
        let table: &[(&str, Seen, Decision)] = &[
            // A usable token is used, whatever else is going on.
            ("usable", Seen { current: USABLE, ..NOTHING }, keep(Use)),
            ("usable, older generation declared dead", Seen { current: USABLE, dead: Some(OLDER), ..NOTHING }, keep(Use)),
            ("usable + in flight", Seen { current: USABLE, in_flight: true, ..NOTHING }, keep(Use)),
            ("usable + backing off", Seen { current: USABLE, backing_off: true, ..NOTHING }, keep(Use)),
            ("usable + no runtime", Seen { current: USABLE, runtime: false, ..NOTHING }, keep(Use)),
            // No usable token: join, else refuse, else no runtime, else refresh.
            ("no token", NOTHING, keep(Refresh(Reason::Missing))),
            ("expired", Seen { current: EXPIRED, ..NOTHING }, keep(Refresh(Reason::Missing))),
            ("expired, older generation declared dead", Seen { current: EXPIRED, dead: Some(OLDER), ..NOTHING }, keep(Refresh(Reason::Missing))),
            ("no token, a generation declared dead", Seen { dead: Some(NOW), ..NOTHING }, keep(Refresh(Reason::Missing))),
            ("no token + in flight", Seen { in_flight: true, ..NOTHING }, keep(Join)),
            ("no token + backing off", Seen { backing_off: true, ..NOTHING }, keep(Refuse)),
            ("no token + no runtime", Seen { runtime: false, ..NOTHING }, keep(NoRuntime)),
            ("in flight before backing off", Seen { in_flight: true, backing_off: true, ..NOTHING }, keep(Join)),
            ("in flight before no runtime", Seen { in_flight: true, runtime: false, ..NOTHING }, keep(Join)),
            ("backing off before no runtime", Seen { backing_off: true, runtime: false, ..NOTHING }, keep(Refuse)),
            ("expired + in flight", Seen { current: EXPIRED, in_flight: true, ..NOTHING }, keep(Join)),
            ("expired + backing off", Seen { current: EXPIRED, backing_off: true, ..NOTHING }, keep(Refuse)),
            // The current generation declared dead: expired first, whatever follows.
            ("dead", Seen { current: USABLE, dead: Some(NOW), ..NOTHING }, expire(Refresh(Reason::DeadToken))),
            ("dead, already expired", Seen { current: EXPIRED, dead: Some(NOW), ..NOTHING }, expire(Refresh(Reason::DeadToken))),
            ("dead + in flight", Seen { current: USABLE, dead: Some(NOW), in_flight: true, ..NOTHING }, expire(Join)),
            ("dead + backing off", Seen { current: USABLE, dead: Some(NOW), backing_off: true, ..NOTHING }, expire(Refuse)),
            ("dead + no runtime", Seen { current: USABLE, dead: Some(NOW), runtime: false, ..NOTHING }, expire(NoRuntime)),
            ("dead + in flight + backing off", Seen { current: USABLE, dead: Some(NOW), in_flight: true, backing_off: true, ..NOTHING }, expire(Join)),
            // ... unless dead-token answers for it are being ignored: then it is the answer.
            ("dead but ignored", Seen { current: USABLE, dead: Some(NOW), ignoring_dead_for_current: true, ..NOTHING }, keep(Use)),
            ("dead but ignored, already expired", Seen { current: EXPIRED, dead: Some(NOW), ignoring_dead_for_current: true, ..NOTHING }, keep(Use)),
            ("dead but ignored + in flight", Seen { current: USABLE, dead: Some(NOW), ignoring_dead_for_current: true, in_flight: true, ..NOTHING }, keep(Use)),
            ("dead but ignored + backing off", Seen { current: USABLE, dead: Some(NOW), ignoring_dead_for_current: true, backing_off: true, ..NOTHING }, keep(Use)),
            // Ignoring is about dead-token answers only: it keeps no expired token alive.
            ("ignoring, no answer, expired", Seen { current: EXPIRED, ignoring_dead_for_current: true, ..NOTHING }, keep(Refresh(Reason::Missing))),
        ];
        for (case, seen, expected) in table {
            assert_eq!(decide(seen), *expected, "{case}: {seen:?}");
        }
    }

    /// Every input `acquire` can see, so that the invariants below are checked for all.
    fn every_seen() -> Vec<Seen> {
        let currents = [None, USABLE, EXPIRED];
        let deads = [None, Some(NOW), Some(OLDER)];
        let mut all = Vec::new();
        for current in currents {
            for dead in deads {
                for bits in 0..16u8 {
                    all.push(Seen {
                        current,
                        dead,
                        // `acquire` sees the flag only for a current token.
                        ignoring_dead_for_current: current.is_some() && bits & 1 != 0,
                        in_flight: bits & 2 != 0,
                        backing_off: bits & 4 != 0,
                        runtime: bits & 8 != 0,
                    });
                }
            }
        }
        all
    }

    #[test]
    fn acquire_is_never_told_to_act_on_what_it_did_not_see() {
        let all = every_seen();
        assert_eq!(all.len(), 3 * 3 * 16);
        for seen in &all {
            let decision = decide(seen);
            let possible = match decision.action {
                Action::Use => seen.current.is_some(),
                Action::Join => seen.in_flight,
                Action::Refuse => seen.backing_off,
                Action::NoRuntime => !seen.runtime,
                Action::Refresh(_) => seen.runtime,
            };
            assert!(possible, "{decision:?} for {seen:?}");
            // Only an answer naming the current token expires it, and never one ignored.
            let names_current = seen.current.is_some_and(|c| seen.dead == Some(c.generation));
            assert_eq!(
                decision.expire_current,
                names_current && !seen.ignoring_dead_for_current,
                "{seen:?}"
            );
            if decision.expire_current {
                assert_ne!(decision.action, Action::Use, "an expired token used: {seen:?}");
            }
        }
    }

    #[test]
    fn each_gate_of_an_early_refresh() {
        let current = Seen {
            current: Some(TokenView {
                generation: NOW,
                usable: true,
            }),
            ..NOTHING
        };
        #[rustfmt::skip]
        let table: &[(&str, Seen, u64, bool)] = &[
            ("its token is current", current, NOW, true),
            ("its token is current though expired", Seen { current: EXPIRED, ..current }, NOW, true),
            ("a newer token is current", current, OLDER, false),
            ("no token", NOTHING, NOW, false),
            ("in flight", Seen { in_flight: true, ..current }, NOW, false),
            ("backing off", Seen { backing_off: true, ..current }, NOW, false),
            ("no runtime", Seen { runtime: false, ..current }, NOW, false),
        ];
        for (case, seen, generation, expected) in table {
            assert_eq!(should_refresh_early(seen, *generation), *expected, "{case}");
        }
    }
}
