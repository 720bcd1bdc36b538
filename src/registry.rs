//! The registry of credentials a layer serves, routed by API origin: [`CredentialRegistry`]
//! and its builder.

use std::{
    fmt,
    sync::{
        atomic::{fence, AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, PoisonError, Weak,
    },
    time::Duration,
};

use http::Uri;

use crate::{
    authorize::AuthorizedCode,
    credential::{CredentialState, Revoked},
    error::{Error, NotAuthorized},
    origin::Origin,
    redact::without_userinfo,
    stats::{CredentialStats, Stats},
    store::{MemoryStore, TokenStore},
    token_endpoint::CheckedCredential,
    transport::TokenTransport,
    Credential, CredentialKey, UserCredentialTemplate,
};

/// The credentials a layer attaches, each routed by its provider's API origins.
///
/// Cheap to clone: clones share one cache per credential, so a token fetched through
/// one clone is used by all.
///
/// # Example
///
/// ```no_run
/// use tower_oauth2::{Credential, CredentialRegistry, Provider};
///
/// # fn main() -> Result<(), tower_oauth2::Error> {
/// let github_like = Provider::standard("https://auth.example.com/token").api("https://api.example.com");
/// let billing = Provider::standard("https://login.billing.test/oauth2/token").api("https://billing.test");
/// let credentials = CredentialRegistry::builder()
///     .credential(Credential::client_credentials(github_like, "id-1", "secret-1"))
///     .credential(Credential::client_credentials(billing, "id-2", "secret-2").scopes(["invoices"]))
///     .build()?;
/// # let _ = credentials;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct CredentialRegistry {
    pub(crate) routing: Arc<RoutingTable>,
}

/// What a registry and its clones share: each credential's state, and the API origins
/// that route a request to it.
pub(crate) struct RoutingTable {
    /// The application's own credentials, routed by index on the hot path.
    pub(crate) states: Vec<Arc<CredentialState>>,
    routes: Vec<(Origin, usize)>,
    /// Users' credentials, one group per provider, routed by origin and then by subject.
    users: Vec<UserGroup>,
    user_routes: Vec<(Origin, usize)>,
    /// Redirects seen taking a token to another origin, warned about once each.
    #[cfg(any(feature = "follow-redirect", feature = "reqwest"))]
    pub(crate) crossings: crate::crossing::Crossings,
}

/// A user's credential (or why a request may not be sent for them), and which users'
/// origin the request was for.
pub(crate) type UserRoute = (Result<Arc<CredentialState>, Error>, Option<RouteRef>);

/// Which configured origin a routed request was for, and how it spelled it: enough to
/// write its authority again for a retry, without copying it on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RouteRef {
    users: bool,
    explicit: bool,
    position: u32,
}

impl RouteRef {
    /// Whether the request was routed to a users' origin (it carries a `Subject`).
    pub(crate) fn is_users(self) -> bool {
        self.users
    }
}

impl RoutingTable {
    /// The index of the credential whose origin `uri` belongs to.
    #[inline]
    pub(crate) fn route(&self, uri: &Uri) -> Option<usize> {
        self.route_ref(uri).map(|(index, _)| index)
    }

    /// [`route`](Self::route), and which of the credential's origins matched.
    #[inline]
    pub(crate) fn route_ref(&self, uri: &Uri) -> Option<(usize, RouteRef)> {
        let (https, authority) = crate::origin::scheme_and_authority(uri)?;
        self.routes
            .iter()
            .enumerate()
            .find_map(|(position, (origin, index))| {
                let explicit = origin.spelling(https, authority)?;
                let position = position as u32;
                Some((
                    *index,
                    RouteRef {
                        users: false,
                        explicit,
                        position,
                    },
                ))
            })
    }

    /// The authority of the origin `route` names, as the request spelled it.
    pub(crate) fn authority(&self, route: RouteRef) -> Option<&str> {
        let table = if route.users {
            &self.user_routes
        } else {
            &self.routes
        };
        let (origin, _) = table.get(route.position as usize)?;
        Some(origin.authority(route.explicit))
    }

    /// The credential of user `subject` for the provider whose origin `uri` belongs to:
    /// `None` when the origin belongs to no provider (the request passes through),
    /// `NotAuthorized` when it belongs to one that serves no users.
    /// With it, which users' origin matched (`None` when the origin is the
    /// application's only).
    pub(crate) fn route_user(&self, uri: &Uri, subject: &Subject) -> Option<UserRoute> {
        let (https, authority) = crate::origin::scheme_and_authority(uri)?;
        let group = self
            .user_routes
            .iter()
            .enumerate()
            .find_map(|(position, (origin, index))| {
                Some((origin.spelling(https, authority)?, position, index))
            });
        match group {
            Some((explicit, position, index)) => {
                let route = RouteRef {
                    users: true,
                    explicit,
                    position: position as u32,
                };
                Some((self.users[*index].request(&subject.0), Some(route)))
            }
            None => {
                let index = self.route(uri)?;
                let refused = Error::NotAuthorized(NotAuthorized {
                    provider: self.states[index].config.provider_name().clone(),
                    subject: Some(subject.0.clone()),
                });
                Some((Err(refused), None))
            }
        }
    }

    /// Whether `uri`'s origin is an API origin of any credential, the application's or
    /// users'.
    #[cfg(feature = "reqwest")]
    pub(crate) fn serves(&self, uri: &Uri) -> bool {
        let Some((https, authority)) = crate::origin::scheme_and_authority(uri) else {
            return false;
        };
        self.routes
            .iter()
            .chain(&self.user_routes)
            .any(|(origin, _)| origin.matches(https, authority))
    }

    /// Whether `uri`'s origin is one of `state`'s provider's API origins: `state` is
    /// the application's credential `index`, or a user's (`for_user`).
    #[cfg(feature = "follow-redirect")]
    pub(crate) fn is_origin_of(&self, uri: &Uri, index: usize, user: Option<&CredentialState>) -> bool {
        let Some((https, authority)) = crate::origin::scheme_and_authority(uri) else {
            return false;
        };
        match user {
            None => self.route(uri) == Some(index),
            Some(state) => self
                .user_routes
                .iter()
                .filter(|(origin, _)| origin.matches(https, authority))
                .any(|(_, group)| {
                    self.users[*group].users.client.provider.name
                        == state.config.credential.client.provider.name
                }),
        }
    }

    /// Where every provider of the registry puts its tokens: the application's
    /// credentials' and users'.
    #[cfg(feature = "follow-redirect")]
    pub(crate) fn placements(&self) -> impl Iterator<Item = &crate::provider::TokenPlacement> {
        let own = self
            .states
            .iter()
            .map(|s| &s.config.credential.client.provider.placement);
        let users = self.users.iter().map(|g| &g.users.client.provider.placement);
        own.chain(users)
    }

    fn user_group(&self, provider: &str) -> Result<&UserGroup, Error> {
        self.users
            .iter()
            .find(|g| g.users.client.provider.name_ref() == provider)
            .ok_or_else(|| Error::config(format!("no users are registered for provider `{provider}`")))
    }
}

/// Names the user a request acts for: put it in the request's extensions, and the layer
/// attaches that user's token for the provider the request goes to.
///
/// A user with no stored grant gets [`Error::NotAuthorized`] and the request is not
/// sent. Requests without a `Subject` use the application's own credential.
///
/// ```
/// use tower_oauth2::Subject;
///
/// let mut request = http::Request::get("https://api.agrello.io/v1/documents").body(()).unwrap();
/// request.extensions_mut().insert(Subject::new("user-42"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subject(Arc<str>);

impl Subject {
    /// The user with this id (the application's own id for them).
    pub fn new(subject: impl Into<Arc<str>>) -> Self {
        Self(subject.into())
    }

    /// The user's id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// =====================================================================================
// Users in memory
//
// Each provider's users live in a bounded concurrent table (quick_cache), keyed by
// subject. A lookup takes the read side of one of the table's sharded locks, whose
// readers on different threads write to different cache lines, and writes only to the
// user's own state. Misses, the idle sweep and reading the counters take the group's
// `cold` mutex: a miss costs a store read anyway.
//
// Never two states for one subject: a state someone else holds (a request in flight, a
// token request's task, a logout) is pinned, so neither the count bound nor the idle
// sweep removes it. The table's own `Arc` is then the only one, and the table's shard
// lock keeps a lookup from cloning it while it is removed: an evicted state is dead,
// and the next request builds the only one there is. Misses are built under `cold`, so
// two requests missing at once build one state.

/// The users of one provider: their credentials, created when first needed.
struct UserGroup {
    users: UserCredentialTemplate,
    store: Arc<dyn TokenStore>,
    transport: TokenTransport,
    live: Arc<LiveUsers>,
    /// The `credential` of the entry [`CredentialRegistry::stats`] gives the users no longer in
    /// memory.
    retired_label: String,
}

type UserTable = quick_cache::sync::Cache<
    Arc<str>,
    Arc<CredentialState>,
    quick_cache::UnitWeighter,
    quick_cache::DefaultHashBuilder,
    Retire,
>;

/// The users of one provider that are in memory, and what evicts them.
struct LiveUsers {
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
    fn new(max_users: usize, idle_after: Duration) -> Self {
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
    /// `subject`'s state for one of their requests: counted as a cache hit when their
    /// token is fresh (the write goes to the user's own counters).
    #[inline]
    fn request(&self, subject: &Arc<str>) -> Result<Arc<CredentialState>, Error> {
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
    fn state(&self, subject: &Arc<str>) -> Result<Arc<CredentialState>, Error> {
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

    fn stats(&self) -> Vec<CredentialStats> {
        self.live
            .snapshots(self.users.client.provider.name_ref(), &self.retired_label)
    }
}

impl CredentialRegistry {
    /// A registry of one credential, with the default transport.
    pub fn new(credential: Credential) -> Result<Self, Error> {
        Self::builder().credential(credential).build()
    }

    /// Starts an empty registry.
    pub fn builder() -> CredentialRegistryBuilder {
        CredentialRegistryBuilder {
            credentials: Vec::new(),
            users: Vec::new(),
            transport: None,
            store: None,
        }
    }

    /// Completes a user's login: exchanges `code` (from
    /// [`PendingAuthorization::complete`](crate::authorize::PendingAuthorization::complete))
    /// in the provider's dialect, stores the tokens under the user's key, and from then
    /// on attaches them to requests carrying `Subject(subject)`.
    ///
    /// A new login replaces whatever the user had before.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when no users are registered for `provider`; the provider's
    /// answer when it refuses the code (a replayed or expired code is
    /// [`Error::ReauthorizationRequired`]); [`Error::Store`] when the tokens cannot be
    /// saved, in which case they are not used either.
    pub async fn login(&self, provider: &str, subject: &str, code: AuthorizedCode) -> Result<(), Error> {
        let group = self.routing.user_group(provider)?;
        let state = group.state(&Arc::from(subject))?;
        state.authorize(code.into_pending()).await.map(drop)
    }

    /// Logs a user out of a provider: forgets their tokens, deletes them from the store
    /// and revokes them in the provider's dialect when it has a revocation endpoint. A
    /// user no longer in memory is read back from the store first, so their stored tokens
    /// are revoked all the same.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when no users are registered for `provider`; [`Error::Store`]
    /// when the store cannot delete; the provider's answer when revoking fails (the
    /// tokens are forgotten and deleted all the same).
    pub async fn logout(&self, provider: &str, subject: &str) -> Result<Revoked, Error> {
        let group = self.routing.user_group(provider)?;
        // Read back from the store if the user is not in memory. The state stays (now
        // without tokens, and evicted when idle like any other) rather than being removed
        // while a request in flight may still hold it.
        let state = group.state(&Arc::from(subject))?;
        state.revoke().await
    }

    /// The key under which `subject`'s tokens for `provider` are kept.
    pub fn user_key(&self, provider: &str, subject: &str) -> Result<CredentialKey, Error> {
        Ok(self.routing.user_group(provider)?.users.key_for(subject))
    }

    /// The user credentials registered for `provider`.
    pub fn users(&self, provider: &str) -> Result<&UserCredentialTemplate, Error> {
        Ok(&self.routing.user_group(provider)?.users)
    }

    /// Counters for every credential: the application's in registration order, then, for
    /// each provider whose users are served, its users in memory (ordered by subject)
    /// followed by one entry for its users no longer in memory.
    ///
    /// That last entry sums the counts of the users evicted since the registry was built
    /// (see [Users in memory](UserCredentialTemplate#users-in-memory)); its `credential` is the
    /// users' key without a subject, followed by ` (evicted users)`. With it, sums over
    /// this list never go down: a user evicted and brought back is counted once, their
    /// counts before the eviction in that entry and those after in their own. Each
    /// provider's users are read under one lock, so an eviction is seen whole.
    pub fn stats(&self) -> Vec<CredentialStats> {
        let mut stats: Vec<CredentialStats> = self.routing.states.iter().map(|s| s.snapshot()).collect();
        for group in &self.routing.users {
            stats.extend(group.stats());
        }
        stats
    }

    /// Each provider whose users are served, with the counters of all its users: one
    /// snapshot per user in memory, and one of the users evicted since the registry was
    /// built, read under one lock so that an eviction counts once.
    #[cfg(feature = "metrics")]
    pub(crate) fn users_stats(&self) -> Vec<(&str, Vec<CredentialStats>)> {
        self.routing
            .users
            .iter()
            .map(|group| (group.users.client.provider.name_ref(), group.stats()))
            .collect()
    }

    /// The keys of the credentials, in registration order.
    pub fn keys(&self) -> Vec<CredentialKey> {
        self.routing
            .states
            .iter()
            .map(|s| s.credential_key().clone())
            .collect()
    }

    /// Logs a credential out: forgets its tokens here and revokes them at the provider,
    /// in the provider's dialect (RFC 7009, or a header such as iOFFICE's `x-token`).
    ///
    /// The tokens are forgotten even when revoking them fails. Afterwards a
    /// client-credentials credential fetches a new token on its next request; one that
    /// needs a user's authorization fails with
    /// [`Error::ReauthorizationRequired`] until it is registered again.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if no credential has this key; the provider's answer when the
    /// revocation endpoint refuses or cannot be reached.
    pub async fn revoke(&self, key: &CredentialKey) -> Result<Revoked, Error> {
        let state = self
            .routing
            .states
            .iter()
            .find(|s| s.credential_key() == key)
            .ok_or_else(|| Error::config(format!("no credential `{key}` in this registry")))?;
        state.revoke().await
    }

    /// Drops every cached token, those of the users in memory included; the next request
    /// of each credential fetches a new one. Users no longer in memory have nothing
    /// cached here: their next request reads the store.
    pub fn invalidate_all(&self) {
        for state in &self.routing.states {
            state.invalidate();
        }
        for group in &self.routing.users {
            for (_, state) in group.live.table.iter() {
                state.invalidate();
            }
        }
    }
}

impl fmt::Debug for CredentialRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.routing.states.iter().map(|s| s.key()))
            .finish()
    }
}

/// Builds [`CredentialRegistry`]; every setting is checked in [`build`](Self::build).
pub struct CredentialRegistryBuilder {
    credentials: Vec<Credential>,
    users: Vec<UserCredentialTemplate>,
    transport: Option<TokenTransport>,
    store: Option<Arc<dyn TokenStore>>,
}

impl fmt::Debug for CredentialRegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialRegistryBuilder")
            .field("credentials", &self.credentials)
            .field("users", &self.users)
            .field("transport", &self.transport)
            .field("store", &self.store.as_ref().map(|_| ".."))
            .finish()
    }
}

impl CredentialRegistryBuilder {
    /// Serves users of a provider: requests carrying a [`Subject`] to the provider's
    /// API origins get that user's token. At most one per provider; the same origins
    /// may also have an application credential, used for requests without a subject.
    pub fn users(mut self, users: UserCredentialTemplate) -> Self {
        self.users.push(users);
        self
    }

    /// Where tokens are kept between restarts (default: in memory only). Users' refresh
    /// tokens, and the application's, are saved here before the tokens that come with
    /// them are used, and read back after a restart.
    ///
    /// This is the default: a credential with a store of its own
    /// ([`Credential::store`]) or users with theirs ([`UserCredentialTemplate::store`]) use that
    /// one instead, and never this one.
    pub fn store(mut self, store: impl TokenStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// Adds a credential.
    pub fn credential(mut self, credential: Credential) -> Self {
        self.credentials.push(credential);
        self
    }

    /// The client token requests go through (default: [`TokenTransport::https`]).
    pub fn transport(mut self, transport: TokenTransport) -> Self {
        self.transport = Some(transport);
        self
    }

    /// Checks the configuration and builds the registry.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when a URL does not parse, a token URL or API origin uses plain
    /// http to a host other than loopback, a provider has no API origin, two credentials
    /// claim the same origin or have the same key, a scope is not a valid scope token, a
    /// secret is missing, a preset was given an unusable deployment or site, or a grant
    /// needs refresh tokens from a provider that issues none.
    pub fn build(self) -> Result<CredentialRegistry, Error> {
        let transport = match self.transport {
            Some(transport) => transport,
            None => default_transport()?,
        };
        let configured_store = self.store.clone();
        let mut states = Vec::with_capacity(self.credentials.len());
        let mut routes: Vec<(Origin, usize)> = Vec::new();
        for (index, credential) in self.credentials.into_iter().enumerate() {
            let provider = &credential.client.provider;
            if provider.api_origins.is_empty() {
                return Err(Error::config(format!(
                    "provider `{}` has no API origin; add one with `Provider::api`",
                    provider.name
                )));
            }
            let key = credential.key();
            if states
                .iter()
                .any(|s: &Arc<CredentialState>| *s.credential_key() == key)
            {
                return Err(Error::config(format!(
                    "credential `{key}` is registered twice; its tokens would be shared"
                )));
            }
            for input in &provider.api_origins {
                let origin = Origin::parse("API origin", input)?;
                if routes.iter().any(|(known, _)| *known == origin) {
                    return Err(Error::config(format!(
                        "API origin `{}` is claimed by two credentials",
                        without_userinfo(input)
                    )));
                }
                routes.push((origin, index));
            }
            let store = match &credential.client.store {
                Some(own) => Some(Arc::clone(&own.0)),
                None => configured_store.clone(),
            };
            states.push(Arc::new(CredentialState::with_store(
                CheckedCredential::new(credential)?,
                transport.clone(),
                store,
                false,
            )));
        }
        let store = configured_store.unwrap_or_else(|| Arc::new(MemoryStore::new()));
        let mut users = Vec::with_capacity(self.users.len());
        let mut user_routes: Vec<(Origin, usize)> = Vec::new();
        for (index, template) in self.users.into_iter().enumerate() {
            let provider = &template.client.provider;
            if users
                .iter()
                .any(|g: &UserGroup| g.users.client.provider.name == provider.name)
            {
                return Err(Error::config(format!(
                    "users of provider `{}` are registered twice",
                    provider.name
                )));
            }
            if provider.api_origins.is_empty() {
                return Err(Error::config(format!(
                    "provider `{}` has no API origin; add one with `Provider::api`",
                    provider.name
                )));
            }
            for input in &provider.api_origins {
                let origin = Origin::parse("API origin", input)?;
                if user_routes.iter().any(|(known, _)| *known == origin) {
                    return Err(Error::config(format!(
                        "API origin `{}` serves the users of two providers",
                        without_userinfo(input)
                    )));
                }
                user_routes.push((origin, index));
            }
            // Checked now, so that a bad template fails the build, not a user's request.
            CheckedCredential::new(template.credential_for("-"))?;
            if template.max_users == 0 {
                return Err(Error::config(format!(
                    "users of provider `{}`: `max_users` is zero, so no user could be served",
                    provider.name
                )));
            }
            if template.idle_after.is_zero() {
                return Err(Error::config(format!(
                    "users of provider `{}`: `idle_after` is zero, so every user would be read back from the store on every request",
                    provider.name
                )));
            }
            let retired_label = format!("{} (evicted users)", template.key_for("-").without_subject());
            users.push(UserGroup {
                live: Arc::new(LiveUsers::new(template.max_users, template.idle_after)),
                store: match &template.client.store {
                    Some(own) => Arc::clone(&own.0),
                    None => Arc::clone(&store),
                },
                users: template,
                transport: transport.clone(),
                retired_label,
            });
        }
        Ok(CredentialRegistry {
            routing: Arc::new(RoutingTable {
                states,
                routes,
                users,
                user_routes,
                #[cfg(any(feature = "follow-redirect", feature = "reqwest"))]
                crossings: Default::default(),
            }),
        })
    }
}

#[cfg(feature = "hyper-transport")]
fn default_transport() -> Result<TokenTransport, Error> {
    TokenTransport::https()
}

#[cfg(not(feature = "hyper-transport"))]
fn default_transport() -> Result<TokenTransport, Error> {
    Err(Error::config(
        "no token transport: enable the `hyper-transport` feature or call `CredentialRegistryBuilder::transport`",
    ))
}
