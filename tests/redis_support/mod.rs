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
}

impl RedisServer {
    /// A server without persistence (`--save "" --appendonly no`).
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// A server with an append-only file synced on every write, so a restart keeps the
    /// data, as production Redis for rotating grants must.
    pub fn start_persistent() -> Self {
        Self::start_with(true)
    }

    fn start_with(persistent: bool) -> Self {
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
            let port = free_port();
            let mut server = RedisServer {
                port,
                child: None,
                dir: dir.clone(),
                persistent,
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
