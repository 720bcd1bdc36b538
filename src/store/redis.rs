//! A store shared by replicas: tokens in Redis, with a refresh lease.
//!
//! Several processes that share one credential share its tokens here, and take turns
//! refreshing it through the [`RefreshCoordination`] this store offers (whose docs say
//! how the credential core uses it).
//!
//! The lease's design (keys, scripts, expiry, outages) is documented on [`RedisStore`],
//! where the application reads it.

use std::{
    error::Error as StdError,
    fmt, io,
    sync::Arc,
    time::{Duration, SystemTime},
};

use ::redis::{
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
    Client, Cmd, Pipeline, RedisError, RedisFuture, Script, Value,
};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use super::{
    format::{self, DecodeError},
    BoxFuture, Lease, LeaseSettings, RefreshCoordination, StoreError, StoreErrorKind, StoreOperation,
    StoredTokens, TokenStore,
};
use crate::CredentialKey;

/// The most a record may weigh, as in the file store; a bigger value is not one of ours.
const MAX_RECORD: usize = 1024 * 1024;

// =====================================================================================
// Scripts
// =====================================================================================

// Every script that writes the record or takes a lease ends by giving the fence counter
// (KEYS[fence]) the record's (KEYS[tokens]) lifetime, and never less than a lease
// (`ttl`): kept while the record is kept or absent, else expiring with it.
const ALIGN_FENCE: &str = r"
local function align_fence(fence, tokens, ttl)
  local left = redis.call('PTTL', tokens)
  if left < 0 then
    redis.call('PERSIST', fence)
  else
    redis.call('PEXPIRE', fence, math.max(left, tonumber(ttl)))
  end
end
";

// KEYS[1] fence counter, KEYS[2] lease, KEYS[3] tokens; ARGV[1] ttl in ms. The fencing
// number, or nil while the lease is held. A counter that does not exist (never made,
// expired with its record, or lost with a Redis that kept no data) starts again from
// Redis's clock in microseconds, above every number it granted before.
const TRY_LEASE: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then
  return false
end
if redis.call('EXISTS', KEYS[1]) == 0 then
  local now = redis.call('TIME')
  redis.call('SET', KEYS[1], now[1] .. string.rep('0', 6 - #now[2]) .. now[2])
end
local fence = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], fence, 'PX', ARGV[1])
align_fence(KEYS[1], KEYS[3], ARGV[1])
return fence
";

// KEYS[1] fence counter, KEYS[2] tokens; ARGV[1] fence, ARGV[2] record, ARGV[3] expiry in
// ms (0: none), ARGV[4] channel, ARGV[5] lease ttl in ms. 1 if written, 0 if a newer
// lease was granted. Numbers are compared as the decimal strings INCR writes: Lua's
// doubles lose digits past 2^53.
const SAVE_FENCED: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
if ARGV[3] == '0' then
  redis.call('SET', KEYS[2], ARGV[2])
else
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
align_fence(KEYS[1], KEYS[2], ARGV[5])
redis.call('PUBLISH', ARGV[4], 'saved')
return 1
";

// KEYS[1] lease; ARGV[1] fence, ARGV[2] channel. 1 if released, 0 if not held.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released')
  return 1
end
return 0
";

// KEYS[1] tokens, KEYS[2] fence counter; ARGV[1] record, ARGV[2] expiry in ms (0: none),
// ARGV[3] channel, ARGV[4] lease ttl in ms.
const SAVE: &str = r"
if ARGV[2] == '0' then
  redis.call('SET', KEYS[1], ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
align_fence(KEYS[2], KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[3], 'saved')
return 1
";

// KEYS[1] tokens, KEYS[2] fence counter; ARGV[1] channel. The counter goes with the
// record: a holder that refreshes through a delete finds no counter of its number, and
// does not write the deleted tokens back.
const DELETE: &str = r"
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('PUBLISH', ARGV[1], 'deleted')
return 1
";

struct Scripts {
    try_lease: Script,
    save_fenced: Script,
    release: Script,
    save: Script,
    delete: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            try_lease: Script::new(&format!("{ALIGN_FENCE}{TRY_LEASE}")),
            save_fenced: Script::new(&format!("{ALIGN_FENCE}{SAVE_FENCED}")),
            release: Script::new(RELEASE),
            save: Script::new(&format!("{ALIGN_FENCE}{SAVE}")),
            delete: Script::new(DELETE),
        }
    }
}

// =====================================================================================
// The store
// =====================================================================================

/// Tokens in Redis, shared by every replica of an application, with a refresh lease so
/// that the replicas refresh each credential once between them.
///
/// - **Keys** share one hash tag per credential and start with a prefix
///   ([`RedisStore::DEFAULT_PREFIX`] unless set), so several applications can share one
///   Redis, and each credential's keys live in one hash slot of a Redis Cluster, which
///   [`RedisStore::cluster_builder`] connects to; see [`RedisStore::keys`] and
///   [Keys](#keys) below.
/// - **Records** are the JSON a [`FileStore`](super::FileStore) writes, checked the same
///   way on load: a foreign, damaged or misplaced value is a [`StoreError`], never
///   another credential's tokens.
/// - **Coordination**: [`coordination`](TokenStore::coordination) offers a lease with a
///   fencing number per credential (see [`RefreshCoordination`]); waiting replicas
///   learn of saves by pub/sub, and poll every [`RedisStoreBuilder::poll_interval`].
/// - **Bounded**: every operation ends within the connect timeout plus the command
///   timeout; a dead Redis is a [`StoreError`] of kind [`Io`](StoreErrorKind::Io).
///   The connection reconnects by itself.
///
/// Building a store does not connect: the first operation does, so an application
/// starts while Redis is down. Operations must run within a Tokio runtime, the same
/// one throughout: the connection's background task runs on the runtime of the first
/// operation. `RedisStore` is cheap to clone; clones share the connection.
///
/// `Debug` shows the address and the prefix, never the URL's password.
///
/// ```no_run
/// use std::time::Duration;
/// use tower_oauth2::store::{LeaseSettings, RedisStore};
///
/// let store = RedisStore::builder("redis://127.0.0.1:6379")
///     .prefix("my-app")
///     .lease_settings(LeaseSettings::new(Duration::from_secs(15), Duration::from_secs(20)))
///     .command_timeout(Duration::from_millis(500))
///     .build()?;
/// # Ok::<(), tower_oauth2::store::StoreError>(())
/// ```
///
/// # Keys
///
/// Every key of one credential carries the same hash tag, `{<prefix>:<digest>}`, where
/// the digest is the lowercase hex SHA-256 of the key's canonical encoding (the one that
/// names a [`FileStore`](super::FileStore)'s files). Redis Cluster puts keys with one
/// hash tag in one slot, so the keys of one credential, which each Lua script touches
/// together, all live on one node of a cluster.
///
/// A store made by [`RedisStore::builder`] connects to one Redis server (a standalone
/// Redis, a primary, or a proxy in front of a cluster) and does not follow a cluster's
/// redirections: pointed at one node of a Redis Cluster, it fails (with
/// [`StoreErrorKind::Other`]) for every credential whose slot lives on another node.
/// For a cluster, use [`RedisStore::cluster_builder`]: its client sends each script to
/// the node of the credential's slot and follows redirections when slots move.
///
/// | key | holds |
/// | --- | --- |
/// | `{prefix:digest}:tokens` | the record, the same JSON a `FileStore` file holds |
/// | `{prefix:digest}:lease` | the current lease's fencing number, expiring after the lease's ttl |
/// | `{prefix:digest}:fence` | the last fencing number granted, expiring with the record (see [Expiry](#expiry)) |
///
/// and saves and releases are published on the channel `{prefix:digest}:changed`.
///
/// # Why Lua scripts
///
/// Each lease operation reads and writes in one step, which a Lua script makes atomic:
///
/// - **Taking the lease** increments the fence counter only when the lease is free, and
///   sets the lease in the same step (the lease key is set only when it does not exist,
///   as `SET NX` would, but with the check and the increment in one script). Incrementing first and then failing `SET NX`
///   would move the counter past the current holder's number, and the holder's fenced
///   save, which checks that its number is still the last one granted, would be refused
///   for a lease that nobody else got. With the script, fencing numbers count grants.
/// - **A fenced save** writes only while the fence counter still equals the lease's
///   number: a holder paused past its lease, after which another replica took the lease,
///   finds a greater number and writes nothing.
/// - **Releasing** deletes the lease only if it still holds this lease's number, so a
///   late release cannot free the lease of the replica that holds it now.
///
/// # Expiry
///
/// A record with only an access token expires with the access token. A record with a
/// refresh token is kept until it is deleted, unless
/// [`RedisStoreBuilder::refresh_token_lifetime`] says how long it lives after each save:
/// the refresh token is the grant, [`StoredTokens`] says nothing of when it dies, and
/// dropping one that still works loses the grant.
///
/// The fence counter lives as long as the record, and at least as long as a lease: each
/// save and each lease gives it the record's remaining lifetime (none while the record
/// is kept, or absent), and a delete removes it with the record. A counter that is
/// gone, because it expired or because Redis lost its data, starts again from Redis's
/// clock in microseconds (a number near 1.8 × 10¹⁵ in 2027) rather than from 1, so the
/// next fencing number is still greater than every number granted before, and a holder
/// paused across the counter's expiry cannot write.
///
/// # Redis down or restarted
///
/// Every operation answers within [`RedisStoreBuilder::connect_timeout`] plus
/// [`RedisStoreBuilder::command_timeout`], with a [`StoreError`] of kind
/// [`Io`](StoreErrorKind::Io) when Redis is down or slow. The connection is redis-rs's
/// `ConnectionManager`, which reconnects by itself: the same store works again once
/// Redis is back, with no rebuilding. A Redis without persistence comes back empty.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    /// The cluster's client, when the store talks to a Redis Cluster; `client` is then
    /// that of its first node, used for pub/sub only.
    cluster: Option<ClusterClient>,
    manager: OnceCell<Connection>,
    scripts: Scripts,
    prefix: Arc<str>,
    address: String,
    lease: LeaseSettings,
    connect_timeout: Duration,
    command_timeout: Duration,
    poll_interval: Duration,
    refresh_token_lifetime: Option<Duration>,
}

/// Configures a [`RedisStore`]; from [`RedisStore::builder`].
#[derive(Clone)]
#[must_use]
pub struct RedisStoreBuilder {
    url: String,
    /// The nodes of a Redis Cluster; empty for one server at `url`.
    cluster_nodes: Vec<String>,
    prefix: String,
    lease: LeaseSettings,
    connect_timeout: Duration,
    command_timeout: Duration,
    poll_interval: Duration,
    refresh_token_lifetime: Option<Duration>,
}

// Written by hand: the URL may hold a password.
impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("cluster_nodes", &self.cluster_nodes.len())
            .field("prefix", &self.prefix)
            .field("lease", &self.lease)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("refresh_token_lifetime", &self.refresh_token_lifetime)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    /// The prefix of every key, [`RedisStore::DEFAULT_PREFIX`] by default. It may not
    /// be empty nor contain `{` or `}`, which would break the hash tag.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How the credential core uses the lease ([`LeaseSettings::default`] unless set).
    pub fn lease_settings(mut self, settings: LeaseSettings) -> Self {
        self.lease = settings;
        self
    }

    /// The longest a connection attempt may take, 1 s by default.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The longest Redis may take to answer a command, 1 s by default.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// How often a replica waiting for another's refresh checks whether the lease is
    /// gone (a holder that died lets it expire without a word), 200 ms by default.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long a record that holds a refresh token is kept after its last save. `None`
    /// by default: such a record is kept until it is deleted.
    ///
    /// A stored record does not say when its refresh token dies (token responses
    /// rarely do), and deleting a refresh token that still works loses the grant: every
    /// replica then needs a new authorization, and a rotating grant cannot be got back
    /// from anywhere. So by default nothing is guessed, and a credential costs its keys
    /// until it is deleted (a logout or revocation does that). An application whose
    /// provider's refresh tokens are known to die after some time (say 90 days of
    /// disuse) sets that time here, and the record, with its fence counter, expires
    /// that long after each save (never before its access token does).
    pub fn refresh_token_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.refresh_token_lifetime = lifetime;
        self
    }

    /// The store. It does not connect yet.
    ///
    /// # Errors
    ///
    /// A [`StoreError`] of operation [`Open`](StoreOperation::Open) and kind
    /// [`Other`](StoreErrorKind::Other) if the URL is not a Redis URL, the prefix is
    /// unusable or a duration is zero.
    pub fn build(self) -> Result<RedisStore, StoreError> {
        let refuse = |what: &'static str| {
            StoreError::unkeyed(StoreOperation::Open, StoreErrorKind::Other).with_detail(what)
        };
        if self.prefix.is_empty() || self.prefix.contains(['{', '}']) {
            return Err(refuse("the key prefix must be non-empty, without `{` or `}`"));
        }
        if [self.connect_timeout, self.command_timeout, self.poll_interval].contains(&Duration::ZERO) {
            return Err(refuse("timeouts and the poll interval must be longer than zero"));
        }
        if !self.cluster_nodes.is_empty() && self.cluster_nodes.iter().any(String::is_empty) {
            return Err(refuse("a Redis Cluster node's URL is empty"));
        }
        if self.refresh_token_lifetime == Some(Duration::ZERO) {
            return Err(refuse("the refresh token lifetime must be longer than zero"));
        }
        // Only the error's category is kept (see `cause`): a parse error's detail could
        // quote the URL, password included.
        let client = Client::open(self.url.as_str())
            .map_err(|e| refuse("not a usable Redis URL").with_source(cause(&e)))?;
        let cluster = match self.cluster_nodes.is_empty() {
            true => None,
            false => Some(
                ClusterClientBuilder::new(self.cluster_nodes.iter().map(String::as_str))
                    .connection_timeout(self.connect_timeout)
                    .response_timeout(self.command_timeout)
                    // One quick retry after a redirection or a lost node: the caller's
                    // bound is what counts.
                    .retries(1)
                    .min_retry_wait(20)
                    .max_retry_wait(200)
                    .build()
                    .map_err(|e| refuse("not a usable list of Redis Cluster nodes").with_source(cause(&e)))?,
            ),
        };
        let address = client.get_connection_info().addr().to_string();
        Ok(RedisStore {
            inner: Arc::new(Inner {
                client,
                cluster,
                manager: OnceCell::new(),
                scripts: Scripts::new(),
                prefix: self.prefix.into(),
                address,
                lease: self.lease,
                connect_timeout: self.connect_timeout,
                command_timeout: self.command_timeout,
                poll_interval: self.poll_interval,
                refresh_token_lifetime: self.refresh_token_lifetime,
            }),
        })
    }
}

/// The Redis keys and channel of one credential (see [`RedisStore`'s keys](RedisStore#keys)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisKeys {
    /// The hash tag every key below starts with: `{prefix:digest}`.
    pub tag: String,
    /// The record.
    pub tokens: String,
    /// The lease, holding its fencing number.
    pub lease: String,
    /// The last fencing number granted.
    pub fence: String,
    /// The pub/sub channel on which saves, deletes and releases are announced.
    pub channel: String,
}

impl RedisKeys {
    fn new(prefix: &str, key: &CredentialKey) -> Self {
        let tag = format!("{{{prefix}:{}}}", format::file_stem(key));
        Self {
            tokens: format!("{tag}:tokens"),
            lease: format!("{tag}:lease"),
            fence: format!("{tag}:fence"),
            channel: format!("{tag}:changed"),
            tag,
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("address", &self.inner.address)
            .field("cluster", &self.inner.cluster.is_some())
            .field("prefix", &self.inner.prefix)
            .field("lease", &self.inner.lease)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The prefix of every key unless [`RedisStoreBuilder::prefix`] sets another.
    pub const DEFAULT_PREFIX: &'static str = "tower-oauth2";

    /// A builder for a store at `url` (`redis://[:password@]host:port[/db]`, or
    /// `rediss://` with a TLS feature of redis-rs enabled by the application).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            cluster_nodes: Vec::new(),
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            lease: LeaseSettings::default(),
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
            poll_interval: Duration::from_millis(200),
            refresh_token_lifetime: None,
        }
    }

    /// A builder for a store on a Redis Cluster, found through `nodes` (URLs as for
    /// [`builder`](Self::builder); one reachable node is enough, the others are
    /// discovered). Commands go to the node that holds each credential's hash slot, and
    /// follow the cluster's redirections when slots move; saves are announced by
    /// pub/sub through the first node, and waiting replicas also poll, so they see
    /// changes with that node down too.
    ///
    /// An empty `nodes`, or one that is not a Redis URL, fails
    /// [`build`](RedisStoreBuilder::build).
    pub fn cluster_builder<I, S>(nodes: I) -> RedisStoreBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        let mut builder = Self::builder(nodes.first().cloned().unwrap_or_default());
        builder.cluster_nodes = nodes;
        builder
    }

    /// A store at `url` with every default; see [`builder`](Self::builder).
    ///
    /// # Errors
    ///
    /// As [`RedisStoreBuilder::build`].
    pub fn new(url: impl Into<String>) -> Result<RedisStore, StoreError> {
        Self::builder(url).build()
    }

    /// The prefix of every key.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The Redis keys and channel of `key`'s credential.
    pub fn keys(&self, key: &CredentialKey) -> RedisKeys {
        RedisKeys::new(&self.inner.prefix, key)
    }

    /// The lease's ttl in whole milliseconds, at least 1.
    fn lease_ttl_ms(&self) -> u64 {
        u64::try_from(self.inner.lease.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// How long a record of `tokens` saved now lives; see [`expiry_ms`].
    fn expiry_ms(&self, tokens: &StoredTokens) -> Option<u64> {
        expiry_ms(tokens, super::wall_clock_now(), self.inner.refresh_token_lifetime)
    }

    /// The longest any operation takes before it fails.
    fn bound(&self) -> Duration {
        self.inner.connect_timeout + self.inner.command_timeout
    }

    async fn connection(&self) -> Result<Connection, Failure> {
        let inner = &self.inner;
        if let Some(cluster) = &inner.cluster {
            // Made on first use, so that building needs no runtime and no Redis; a
            // failed attempt leaves nothing behind, and the next operation tries again.
            // The cluster connection then reconnects to its nodes by itself.
            let connection = inner
                .manager
                .get_or_try_init(|| async {
                    cluster
                        .get_async_connection()
                        .await
                        .map(Connection::Cluster)
                        .map_err(|e| Failure::redis("connecting to the cluster", &e))
                })
                .await?;
            return Ok(connection.clone());
        }
        // Lazily, so that building needs no runtime and no Redis. Creating the manager
        // does not connect: its first command does, and it reconnects after a failure.
        let manager = inner
            .manager
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(inner.connect_timeout))
                    .set_response_timeout(Some(inner.command_timeout))
                    // One quick retry per reconnection: the caller's bound is what
                    // counts, and the next command starts a new reconnection anyway.
                    .set_number_of_retries(1)
                    .set_min_delay(Duration::from_millis(20))
                    .set_max_delay(Duration::from_millis(200));
                inner
                    .client
                    .get_connection_manager_lazy(config)
                    .map(Connection::Server)
                    .map_err(|e| Failure::redis("setting up the connection", &e))
            })
            .await?;
        Ok(manager.clone())
    }

    /// Runs `work` on the connection within the store's bound.
    async fn run<T, F, Fut>(&self, step: &'static str, work: F) -> Result<T, Failure>
    where
        F: FnOnce(Connection) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let attempt = async {
            let connection = self.connection().await?;
            work(connection).await.map_err(|e| Failure::redis(step, &e))
        };
        match tokio::time::timeout(self.bound(), attempt).await {
            Ok(result) => result,
            Err(_) => Err(Failure::timeout(step, self.bound())),
        }
    }

    async fn load_record(&self, key: &CredentialKey) -> Result<Option<StoredTokens>, Failure> {
        let keys = self.keys(key);
        let value: Option<Vec<u8>> = self
            .run("reading the record", |mut c| async move {
                ::redis::cmd("GET").arg(&keys.tokens).query_async(&mut c).await
            })
            .await?;
        let Some(bytes) = value else {
            return Ok(None);
        };
        if bytes.len() > MAX_RECORD {
            return Err(Failure::decode(DecodeError::Corrupt("larger than 1 MiB".into())));
        }
        format::decode(key, &bytes).map(Some).map_err(Failure::decode)
    }

    async fn save_record(&self, key: &CredentialKey, tokens: &StoredTokens) -> Result<(), Failure> {
        let keys = self.keys(key);
        let record = format::encode(key, tokens);
        let expiry = self.expiry_ms(tokens).unwrap_or(0);
        let ttl = self.lease_ttl_ms();
        let script = &self.inner.scripts.save;
        self.run("writing the record", |mut c| async move {
            script
                .key(&keys.tokens)
                .key(&keys.fence)
                .arg(record)
                .arg(expiry)
                .arg(&keys.channel)
                .arg(ttl)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(drop)
    }

    async fn delete_record(&self, key: &CredentialKey) -> Result<(), Failure> {
        let keys = self.keys(key);
        let script = &self.inner.scripts.delete;
        self.run("deleting the record", |mut c| async move {
            script
                .key(&keys.tokens)
                .key(&keys.fence)
                .arg(&keys.channel)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(drop)
    }

    async fn lease(&self, key: &CredentialKey) -> Result<Option<Lease>, Failure> {
        let keys = self.keys(key);
        let ttl = self.lease_ttl_ms();
        let script = &self.inner.scripts.try_lease;
        let fence: Option<u64> = self
            .run("taking the lease", |mut c| async move {
                script
                    .key(&keys.fence)
                    .key(&keys.lease)
                    .key(&keys.tokens)
                    .arg(ttl)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(fence.map(|fence| Lease { fence }))
    }

    async fn fenced(
        &self,
        key: &CredentialKey,
        tokens: &StoredTokens,
        lease: &Lease,
    ) -> Result<bool, Failure> {
        let keys = self.keys(key);
        let record = format::encode(key, tokens);
        let expiry = self.expiry_ms(tokens).unwrap_or(0);
        let ttl = self.lease_ttl_ms();
        let script = &self.inner.scripts.save_fenced;
        let written: i64 = self
            .run("writing the record under the lease", |mut c| async move {
                script
                    .key(&keys.fence)
                    .key(&keys.tokens)
                    .arg(lease.fence.to_string())
                    .arg(record)
                    .arg(expiry)
                    .arg(&keys.channel)
                    .arg(ttl)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(written == 1)
    }

    async fn unlease(&self, key: &CredentialKey, lease: &Lease) -> Result<(), Failure> {
        let keys = self.keys(key);
        let script = &self.inner.scripts.release;
        self.run("releasing the lease", |mut c| async move {
            script
                .key(&keys.lease)
                .arg(lease.fence.to_string())
                .arg(&keys.channel)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(drop)
    }

    /// Waits for a message on `key`'s channel, or for its lease to be gone, checked
    /// every poll interval; the caller bounds the whole wait.
    async fn wait_for_change(&self, key: &CredentialKey) -> Result<(), Failure> {
        let keys = self.keys(key);
        let inner = &self.inner;
        let subscribed = tokio::time::timeout(self.bound(), async {
            let mut pubsub = inner
                .client
                .get_async_pubsub()
                .await
                .map_err(|e| Failure::redis("connecting to wait for a change", &e))?;
            pubsub
                .subscribe(&keys.channel)
                .await
                .map_err(|e| Failure::redis("subscribing to changes", &e))?;
            Ok::<_, Failure>(pubsub)
        })
        .await
        .map_err(|_| Failure::timeout("subscribing to changes", self.bound()))
        .and_then(|subscribed| subscribed);
        let mut messages = match (subscribed, &inner.cluster) {
            (Ok(pubsub), _) => Some(pubsub.into_on_message()),
            // On a cluster, the node that relays the messages may be down while the
            // credential's own node is not: polling alone still sees every change.
            (Err(_), Some(_)) => None,
            (Err(err), None) => return Err(err),
        };
        loop {
            // Subscribed first, then checked: a release between the caller's last read
            // and the subscription is seen here, and one after it is a message.
            let lease = keys.lease.clone();
            let held: bool = self
                .run("checking the lease", |mut c| async move {
                    ::redis::cmd("EXISTS").arg(lease).query_async(&mut c).await
                })
                .await?;
            if !held {
                return Ok(());
            }
            let Some(messages) = messages.as_mut() else {
                tokio::time::sleep(inner.poll_interval).await;
                continue;
            };
            match tokio::time::timeout(inner.poll_interval, messages.next()).await {
                // A save, a delete or a release.
                Ok(Some(_)) => return Ok(()),
                // The subscription's connection is gone: the caller reads again.
                Ok(None) => return Ok(()),
                Err(_) => {}
            }
        }
    }
}

/// The store's connection: to one server, or to a cluster.
#[derive(Clone)]
enum Connection {
    Server(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Server(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Server(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
        }
    }
}

// =====================================================================================
// The traits
// =====================================================================================

impl TokenStore for RedisStore {
    fn load<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Option<StoredTokens>, StoreError>> {
        Box::pin(async move {
            self.load_record(key)
                .await
                .map_err(|f| f.into_error(StoreOperation::Load, key))
        })
    }

    fn save<'a>(
        &'a self,
        key: &'a CredentialKey,
        tokens: &'a StoredTokens,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.save_record(key, tokens)
                .await
                .map_err(|f| f.into_error(StoreOperation::Save, key))
        })
    }

    fn delete<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.delete_record(key)
                .await
                .map_err(|f| f.into_error(StoreOperation::Delete, key))
        })
    }

    fn coordination(&self) -> Option<&dyn RefreshCoordination> {
        Some(self)
    }
}

impl RefreshCoordination for RedisStore {
    fn settings(&self) -> LeaseSettings {
        self.inner.lease
    }

    fn try_lease<'a>(&'a self, key: &'a CredentialKey) -> BoxFuture<'a, Result<Option<Lease>, StoreError>> {
        Box::pin(async move {
            self.lease(key)
                .await
                .map_err(|f| f.into_error(StoreOperation::Lease, key))
        })
    }

    fn save_fenced<'a>(
        &'a self,
        key: &'a CredentialKey,
        tokens: &'a StoredTokens,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            self.fenced(key, tokens, lease)
                .await
                .map_err(|f| f.into_error(StoreOperation::Save, key))
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a CredentialKey,
        lease: &'a Lease,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.unlease(key, lease)
                .await
                .map_err(|f| f.into_error(StoreOperation::Lease, key))
        })
    }

    fn changed<'a>(
        &'a self,
        key: &'a CredentialKey,
        at_most: Duration,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            match tokio::time::timeout(at_most, self.wait_for_change(key)).await {
                Ok(result) => result.map_err(|f| f.into_error(StoreOperation::Lease, key)),
                // The caller's bound: a wake-up like any other.
                Err(_) => Ok(()),
            }
        })
    }
}

// =====================================================================================
// Errors
// =====================================================================================

/// A Redis failure in our words: its category and code, never its detail, which may
/// quote a value or a script.
#[derive(Debug)]
struct RedisCause(String);

impl fmt::Display for RedisCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for RedisCause {}

fn cause(err: &RedisError) -> Arc<dyn StdError + Send + Sync> {
    let mut words = format!("Redis: {}", err.category());
    if let Some(code) = err.code() {
        words.push_str(" (");
        words.push_str(code);
        words.push(')');
    }
    if let Some(kind) = io_kind(err) {
        words.push_str(": ");
        words.push_str(&io::Error::from(kind).to_string());
    }
    Arc::new(RedisCause(words))
}

fn io_kind(err: &RedisError) -> Option<io::ErrorKind> {
    if err.is_timeout() {
        Some(io::ErrorKind::TimedOut)
    } else if err.is_connection_refusal() {
        Some(io::ErrorKind::ConnectionRefused)
    } else if err.is_connection_dropped() {
        Some(io::ErrorKind::ConnectionReset)
    } else {
        None
    }
}

/// A failure before the key is known to the error.
struct Failure {
    kind: StoreErrorKind,
    detail: std::borrow::Cow<'static, str>,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

impl Failure {
    fn redis(step: &'static str, err: &RedisError) -> Self {
        let kind = if err.code() == Some("WRONGTYPE") {
            return Self {
                kind: StoreErrorKind::Corrupt,
                detail: "the key holds another kind of Redis value".into(),
                source: Some(cause(err)),
            };
        } else if err.is_io_error()
            || err.is_timeout()
            || err.is_connection_refusal()
            || err.is_connection_dropped()
        {
            StoreErrorKind::Io
        } else {
            StoreErrorKind::Other
        };
        Self {
            kind,
            detail: step.into(),
            source: Some(cause(err)),
        }
    }

    fn timeout(step: &'static str, bound: Duration) -> Self {
        Self {
            kind: StoreErrorKind::Io,
            detail: format!("{step}: Redis did not answer within {bound:?}").into(),
            source: Some(Arc::new(io::Error::from(io::ErrorKind::TimedOut))),
        }
    }

    fn decode(err: DecodeError) -> Self {
        let (kind, detail) = match err {
            DecodeError::Corrupt(reason) => (StoreErrorKind::Corrupt, reason),
            DecodeError::KeyMismatch => (StoreErrorKind::KeyMismatch, "".into()),
            DecodeError::UnsupportedVersion(version) => {
                (StoreErrorKind::UnsupportedVersion, version.to_string().into())
            }
        };
        Self {
            kind,
            detail,
            source: None,
        }
    }

    fn into_error(self, operation: StoreOperation, key: &CredentialKey) -> StoreError {
        let mut err = StoreError::keyed(operation, self.kind, key);
        if !self.detail.is_empty() {
            err = err.with_detail(self.detail);
        }
        if let Some(source) = self.source {
            err = err.with_source(source);
        }
        err
    }
}

/// How long the record lives, in milliseconds, `None` for ever: while it holds a refresh
/// token, `refresh_token_lifetime` (but not less than the access token's life); else
/// until the access token expires (at least 1 ms: a record saved already expired goes at
/// once), and for ever if nothing says when.
fn expiry_ms(
    tokens: &StoredTokens,
    wall_now: SystemTime,
    refresh_token_lifetime: Option<Duration>,
) -> Option<u64> {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
    let access_left = tokens
        .expires_at
        .map(|at| at.duration_since(wall_now).unwrap_or(Duration::ZERO));
    if tokens.refresh_token.is_some() {
        let lifetime = refresh_token_lifetime?;
        return Some(ms(access_left.map_or(lifetime, |left| left.max(lifetime))));
    }
    access_left.map(ms)
}
