//! Real `redis-server` processes for the tests: each on a free loopback port, with no
//! persistence unless asked, killed when dropped.
//!
//! A missing `redis-server` fails the test with the command that installs it: Redis
//! tests never skip. `.ci/run` and `scripts/test` install it.
#![allow(dead_code, unreachable_pub)]
// Real processes live on the real clock: Tokio's paused clock cannot wait for them.
#![allow(clippy::disallowed_methods)]

use std::{
    fs,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    thread,
    time::{Duration, Instant},
};

/// One `redis-server` child process on 127.0.0.1.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: PathBuf,
    persistent: bool,
    /// Started as a node of a Redis Cluster (`--cluster-enabled yes`).
    cluster_node: bool,
}

impl RedisServer {
    /// A server without persistence (`--save "" --appendonly no`).
    pub fn start() -> Self {
        Self::start_with(false, false)
    }

    /// A server with an append-only file synced on every write, so a restart keeps the
    /// data, as production Redis for rotating grants must.
    pub fn start_persistent() -> Self {
        Self::start_with(true, false)
    }

    /// A server without persistence that is a node of a cluster still to be formed
    /// (see [`RedisCluster`]), on a port whose cluster bus port (+10000) is free too.
    pub fn start_cluster_node() -> Self {
        Self::start_with(false, true)
    }

    fn start_with(persistent: bool, cluster_node: bool) -> Self {
        static SERIAL: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tower-oauth2-redis-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("a temporary directory for redis-server");
        // A free port can be taken by someone else before redis-server binds it: try a
        // few.
        for _ in 0..5 {
            let port = match cluster_node {
                true => free_port_with_bus(),
                false => free_port(),
            };
            let mut server = RedisServer {
                port,
                child: None,
                dir: dir.clone(),
                persistent,
                cluster_node,
            };
            if server.spawn() {
                return server;
            }
        }
        panic!(
            "redis-server did not start on any of 5 free ports; see {}",
            dir.display()
        );
    }

    /// Starts the process on this server's port; whether it answers PING.
    fn spawn(&mut self) -> bool {
        let log = self.dir.join("redis.log");
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.persistent {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        if self.cluster_node {
            command
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .args(["--cluster-config-file", &format!("nodes-{}.conf", self.port)]);
        }
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) => panic!(
                "cannot run redis-server ({e}): the Redis tests need it on PATH. Install it with \
                 `apt-get install -y redis-server`, or run scripts/test, which does"
            ),
        };
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                eprintln!(
                    "redis-server on port {} exited with {status}: {}",
                    self.port,
                    fs::read_to_string(&log).unwrap_or_default()
                );
                self.child = None;
                return false;
            }
            if ping(self.port) {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server: SIGTERM and a wait when persistent (it writes its data), SIGKILL
    /// otherwise.
    pub fn stop(&mut self) {
        if self.persistent {
            if let Some(child) = self.child.as_mut() {
                // kill(1) rather than libc::kill, which would need `unsafe`.
                let _ = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    if child.try_wait().ok().flatten().is_some() {
                        self.child = None;
                        return;
                    }
                    thread::sleep(Duration::from_millis(10));
                }
            }
        }
        self.kill();
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart a stopped server");
        let deadline = Instant::now() + Duration::from_secs(10);
        // The port can linger briefly after the old process died.
        while Instant::now() < deadline {
            if self.spawn() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not restart on port {}", self.port);
    }

    /// `GET name` as `T`, over a connection of its own: what a test reads behind the
    /// store's back.
    pub async fn get<T: redis::FromRedisValue>(&self, name: &str) -> T {
        let mut connection = redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        redis::cmd("GET")
            .arg(name)
            .query_async(&mut connection)
            .await
            .unwrap()
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the server.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().expect("a running server");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .expect("kill(1)");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(pid) = self.pid() {
            // A test that failed between SIGSTOP and SIGCONT leaves it paused: SIGKILL
            // ends it anyway, but a resumed server also closes its clients at once.
            let _ = Command::new("kill").args(["-CONT", &pid.to_string()]).status();
        }
        self.kill();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A free port below 55536 whose cluster bus port, 10000 above, is free too.
fn free_port_with_bus() -> u16 {
    for _ in 0..100 {
        let port = free_port();
        if port < 55_536 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair for a Redis Cluster node");
}

/// A Redis Cluster of three primaries on loopback ports, formed with
/// `redis-cli --cluster create`, its 16384 slots split between them.
#[derive(Debug)]
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_cluster_node()).collect();
        let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-cli ({e}): it comes with redis-server (`apt-get install -y redis-server`)")
            });
        assert!(
            output.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // Every node must see the whole cluster before a client asks for its slots.
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &nodes {
            loop {
                let info = Command::new("redis-cli")
                    .args(["-p", &node.port.to_string(), "cluster", "info"])
                    .stdin(Stdio::null())
                    .output()
                    .expect("redis-cli");
                let info = String::from_utf8_lossy(&info.stdout);
                if info.contains("cluster_state:ok") && info.contains("cluster_known_nodes:3") {
                    break;
                }
                assert!(Instant::now() < deadline, "the cluster did not form: {info}");
                thread::sleep(Duration::from_millis(50));
            }
        }
        RedisCluster { nodes }
    }

    /// `redis://127.0.0.1:<port>` of each node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The port of the node that serves `key`'s hash slot.
    pub fn port_of(&self, key: &str) -> u16 {
        let slot = redis_cli(self.nodes[0].port, &["cluster", "keyslot", key]);
        let slot: u16 = slot.trim().parse().expect("a slot number");
        let nodes = redis_cli(self.nodes[0].port, &["cluster", "nodes"]);
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port: u16 = fields[1].split(['@', ':']).nth(1).unwrap().parse().unwrap();
            for range in &fields[8..] {
                let (start, end) = range.split_once('-').unwrap_or((range, range));
                if (start.parse::<u16>().unwrap()..=end.parse::<u16>().unwrap()).contains(&slot) {
                    return port;
                }
            }
        }
        panic!("no node serves slot {slot}: {nodes}");
    }
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut answer = [0u8; 7];
    stream.read_exact(&mut answer).is_ok() && &answer == b"+PONG\r\n"
}

/// The key of an application credential of the provider `acme` acting for `subject`.
pub fn key(subject: &str) -> tower_oauth2::CredentialKey {
    let provider = tower_oauth2::Provider::standard("https://auth.example.com/token").name("acme");
    tower_oauth2::Credential::client_credentials(provider, "app", "client-secret")
        .scopes(["read"])
        .subject(subject)
        .key()
}
