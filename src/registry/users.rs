//! Users in memory.
//!
//! Each provider's users live in a bounded concurrent table (quick_cache), keyed by
//! subject. A lookup takes the read side of one of the table's sharded locks, whose
//! readers on different threads write to different cache lines, and writes only to the
//! user's own state. Misses, the idle sweep and reading the counters take the group's
//! `cold` mutex: a miss costs a store read anyway.
//!
//! Never two states for one subject: a state someone else holds (a request in flight, a
//! token request's task, a logout) is pinned, so neither the count bound nor the idle
//! sweep removes it. The table's own `Arc` is then the only one, and the table's shard
//! lock keeps a lookup from cloning it while it is removed: an evicted state is dead,
//! and the next request builds the only one there is. Misses are built under `cold`, so
//! two requests missing at once build one state.

use std::{
    sync::{
        atomic::{fence, AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError, Weak,
    },
    time::Duration,
};

use crate::{
    credential::CredentialState,
    error::Error,
    stats::{CredentialStats, Stats},
    store::TokenStore,
    token_endpoint::CheckedCredential,
    transport::TokenTransport,
    UserCredentialTemplate,
};

/// The users of one provider: their credentials, created when first needed.
pub(super) struct UserGroup {
    pub(super) users: UserCredentialTemplate,
    pub(super) store: Arc<dyn TokenStore>,
    pub(super) transport: TokenTransport,
    pub(super) live: Arc<LiveUsers>,
    /// The `credential` of the entry [`CredentialRegistry::stats`](crate::CredentialRegistry::stats) gives the users no longer in
    /// memory.
    pub(super) retired_label: String,
}

type UserTable = quick_cache::sync::Cache<
    Arc<str>,
    Arc<CredentialState>,
    quick_cache::UnitWeighter,
    quick_cache::DefaultHashBuilder,
    Retire,
>;

/// The users of one provider that are in memory, and what evicts them.
pub(super) struct LiveUsers {
    table: UserTable,
    /// `2 × n + 1`, where `n` counts the periods of `period` since the first sweeper
    /// started, as of the last sweep. A request notes it in its user's `last_used` (see
    /// [`sweep`](Self::sweep)): so a lookup reads no clock, and writes its user's state
    /// only the first time after each sweep.
    tick: AtomicU64,
    period: Duration,
    /// Ticks after which an unused state is idle.
    idle_ticks: u64,
    /// Whether a sweeper task is running.
    sweeping: AtomicBool,
    /// Held to build a missing state, to sweep, and to read the counters, so that none
    /// of them sees an eviction half done.
    cold: Mutex<()>,
    /// The counts of the users evicted so far.
    retired: Arc<Stats>,
}

/// Sweeps per time-to-idle: a state is evicted between 1 + 1/SWEEPS and 1 + 2/SWEEPS times
/// the time-to-idle after its last use when sweeps are on time (see [`LiveUsers::sweep`]).
const SWEEPS_PER_IDLE: u32 = 4;

/// The most users whose room in the table is taken when the registry is built.
const RESERVED_USERS: usize = 100_000;

/// The table's shards. Lookups do not contend on them (each shard's lock is sharded per
/// thread); what they bound is the work of one insertion's eviction scan.
const SHARDS: usize = 8;

impl LiveUsers {
    pub(super) fn new(max_users: usize, idle_after: Duration) -> Self {
        let retired = Arc::new(Stats::default());
        // At least a millisecond (Tokio's timers' resolution), at most an hour (a long
        // time-to-idle is then kept more closely, and never overflows an instant).
        let period =
            (idle_after / SWEEPS_PER_IDLE).clamp(Duration::from_millis(1), Duration::from_secs(3600));
        let idle_ticks = u64::try_from(idle_after.as_nanos().div_ceil(period.as_nanos())).unwrap_or(u64::MAX);
        let reserved = max_users.min(RESERVED_USERS);
        let table = |capacity: usize| {
            let options = quick_cache::OptionsBuilder::new()
                .shards(SHARDS)
                .estimated_items_capacity(reserved)
                .weight_capacity(capacity as u64)
                .build()
                .expect("a positive capacity and the default allocations are valid options");
            UserTable::with_options(
                options,
                quick_cache::UnitWeighter,
                quick_cache::DefaultHashBuilder::default(),
                Retire {
                    retired: Arc::clone(&retired),
                },
            )
        };
        // Each shard holds an equal share, rounded up: the whole is rounded down instead,
        // so that no more than `max_users` are kept. Small tables have fewer shards (at
        // least 32 users each), so this takes off less than one user per shard.
        let mut users = table(max_users);
        let shards = users.num_shards();
        if !max_users.is_multiple_of(shards) {
            users = table(max_users - max_users % shards);
        }
        // The table's memory is taken now, once (about 100 bytes per user): its size is
        // part of the bound, and a table that grew with a burst of users would keep its
        // size after they left. Past `RESERVED_USERS` it grows as needed.
        users.reserve(reserved);
        Self {
            table: users,
            tick: AtomicU64::new(1),
            period,
            idle_ticks,
            sweeping: AtomicBool::new(false),
            cold: Mutex::new(()),
            retired,
        }
    }

    fn cold(&self) -> MutexGuard<'_, ()> {
        self.cold.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that `state` is used now: a write to the user's own state, once per tick.
    #[inline]
    fn touch(self: &Arc<Self>, state: &CredentialState) {
        let now = self.tick.load(Ordering::Relaxed);
        if state.last_used.load(Ordering::Relaxed) != now {
            state.last_used.store(now, Ordering::Relaxed);
        }
        if !self.sweeping.load(Ordering::Relaxed) {
            self.start_sweeper();
        }
    }

    /// Starts the task that advances the tick and evicts idle users, if none runs and
    /// there is a runtime to run it. It stops when the table is empty or the registry
    /// is gone, and the next lookup starts another.
    #[cold]
    fn start_sweeper(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let sweeper = Sweeper {
            live: Arc::downgrade(self),
            period: self.period,
            done: false,
        };
        runtime.spawn(sweeper.run());
    }

    /// One sweep, `now` periods after the first sweeper started: evicts the states idle
    /// for more than `idle_ticks` periods. Whether the table is empty afterwards (the
    /// sweeper then stops).
    ///
    /// A state's `last_used` is odd when it was used since a sweep (it holds the tick
    /// published then, which may be stale if the sweep ran late), and the sweep turns it
    /// into `2 × now`: used before the end of period `now`. So one is evicted only when
    /// more than `idle_ticks` whole periods have passed since its last use: between 1.25
    /// and 1.5 times the time-to-idle when sweeps are on time, later (never sooner) when
    /// they are not.
    fn sweep(&self, now: u64) -> bool {
        let _cold = self.cold();
        let now = now.max(self.tick.load(Ordering::Relaxed) / 2);
        // Published first: a request during the pass notes a tick the next sweep turns.
        self.tick.store(2 * now + 1, Ordering::Relaxed);
        self.table.retain(|_, state| {
            let used = state.last_used.load(Ordering::Relaxed);
            if used % 2 == 1 {
                state.last_used.store(2 * now, Ordering::Relaxed);
                return true;
            }
            !(now.saturating_sub(used / 2) > self.idle_ticks && retire(&self.retired, state))
        });
        let empty = self.table.is_empty();
        if empty {
            // Under `cold`, which every insertion holds: a state inserted after this
            // finds no sweeper and starts one.
            self.sweeping.store(false, Ordering::Release);
        }
        empty
    }

    /// The live users' counters, ordered by subject, then those of the users evicted.
    fn snapshots(&self, provider: &str, retired_label: &str) -> Vec<CredentialStats> {
        let _cold = self.cold();
        let mut users: Vec<_> = self.table.iter().collect();
        users.sort_by(|a, b| a.0.cmp(&b.0));
        let mut stats: Vec<_> = users.into_iter().map(|(_, state)| state.snapshot()).collect();
        stats.push(self.retired.snapshot(retired_label, provider, None));
        stats
    }
}

/// Whether `state` may go, only the table holding it; if so its counts are added to
/// `retired`, as it is about to be dropped.
fn retire(retired: &Stats, state: &Arc<CredentialState>) -> bool {
    if Arc::strong_count(state) > 1 {
        return false;
    }
    // Whoever dropped the last other `Arc` released its writes to the counters with it.
    fence(Ordering::Acquire);
    retired.add(&state.stats);
    true
}

/// The table's hooks: a state held outside the table is pinned, and an evicted one's
/// counts are kept.
#[derive(Clone)]
struct Retire {
    retired: Arc<Stats>,
}

impl quick_cache::Lifecycle<Arc<str>, Arc<CredentialState>> for Retire {
    type RequestState = ();

    fn is_pinned(&self, _subject: &Arc<str>, state: &Arc<CredentialState>) -> bool {
        Arc::strong_count(state) > 1
    }

    fn on_evict(&self, _: &mut (), _subject: Arc<str>, state: Arc<CredentialState>) {
        // Not pinned, so the table held the only `Arc`.
        let retired = retire(&self.retired, &state);
        debug_assert!(retired, "an evicted state was held elsewhere");
    }
}

/// The task that moves a group's tick on and evicts its idle users.
struct Sweeper {
    live: Weak<LiveUsers>,
    period: Duration,
    /// Whether it stopped by itself (the table emptied or the registry is gone).
    done: bool,
}

impl Sweeper {
    async fn run(mut self) {
        let (start, first) = match self.live.upgrade() {
            Some(live) => (tokio::time::Instant::now(), live.tick.load(Ordering::Relaxed) / 2),
            None => {
                self.done = true;
                return;
            }
        };
        // A sweep missed (a busy runtime) is skipped, not caught up: the tick is read off
        // the clock at each sweep, so a late one evicts all that it should.
        let mut sweeps = tokio::time::interval_at(start + self.period, self.period);
        sweeps.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            sweeps.tick().await;
            let Some(live) = self.live.upgrade() else {
                self.done = true;
                return;
            };
            let periods = start.elapsed().as_nanos() / self.period.as_nanos();
            if live.sweep(first + periods as u64) {
                self.done = true;
                return;
            }
        }
    }
}

impl Drop for Sweeper {
    /// The task was dropped before the table emptied (its runtime shut down): the next
    /// lookup starts another, on a live runtime.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(live) = self.live.upgrade() {
            live.sweeping.store(false, Ordering::Release);
        }
    }
}

impl UserGroup {
    /// Drops the cached token of every user in memory.
    pub(super) fn invalidate_all(&self) {
        for (_, state) in self.live.table.iter() {
            state.invalidate();
        }
    }

    /// `subject`'s state for one of their requests: counted as a cache hit when their
    /// token is fresh (the write goes to the user's own counters).
    #[inline]
    pub(super) fn request(&self, subject: &Arc<str>) -> Result<Arc<CredentialState>, Error> {
        let state = self.state(subject)?;
        if state
            .current
            .load()
            .as_ref()
            .is_some_and(|token| token.is_fresh())
        {
            state.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(state)
    }

    /// `subject`'s state, from the table or restored from the store.
    #[inline]
    pub(super) fn state(&self, subject: &Arc<str>) -> Result<Arc<CredentialState>, Error> {
        let state = match self.live.table.get(&**subject) {
            Some(state) => state,
            None => self.restore(subject)?,
        };
        self.live.touch(&state);
        Ok(state)
    }

    /// A state for `subject`, who is not in memory: one that starts from the store.
    #[cold]
    #[inline(never)]
    fn restore(&self, subject: &Arc<str>) -> Result<Arc<CredentialState>, Error> {
        let _cold = self.live.cold();
        // Another request may have restored them while this one waited.
        if let Some(state) = self.live.table.get(&**subject) {
            return Ok(state);
        }
        let config = CheckedCredential::new(self.users.credential_for(subject))?;
        let state = Arc::new(CredentialState::with_store(
            config,
            self.transport.clone(),
            Some(Arc::clone(&self.store)),
            true,
        ));
        state
            .last_used
            .store(self.live.tick.load(Ordering::Relaxed), Ordering::Relaxed);
        // Inserted while held here, so pinned: it is admitted even when every state in
        // its shard is in use, and what is evicted to make room is some other idle user.
        self.live.table.insert(Arc::clone(subject), Arc::clone(&state));
        Ok(state)
    }

    pub(super) fn stats(&self) -> Vec<CredentialStats> {
        self.live
            .snapshots(self.users.client.provider.name_ref(), &self.retired_label)
    }
}
