//! A real `redis-server` for a test: its own process on a free loopback port, in a temporary
//! directory, killed when the handle drops. `kill` and `restart` simulate an outage (the data
//! survives a restart when `appendonly` is on, as on a counters' server in production).
//!
//! Without a `redis-server` binary the test is skipped (`RedisServer::start` returns `None`),
//! unless `SWITCHYARD_REQUIRE_REDIS=1` (as `.ci/run` sets): then it fails.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub struct RedisServer {
    pub port: u16,
    dir: TempDir,
    bin: PathBuf,
    extra: Vec<String>,
    child: Option<Child>,
}

fn find_binary() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SWITCHYARD_REDIS_SERVER") {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/redis-server", "/usr/local/bin/redis-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl RedisServer {
    /// A counters-like server: `noeviction`, append-only file fsynced on every write (so a
    /// SIGKILL loses nothing it acknowledged).
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_with(&[
            "--maxmemory-policy",
            "noeviction",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ])
    }

    /// A server with these extra arguments (e.g. a cache: `--maxmemory-policy allkeys-lru`).
    pub fn start_with(args: &[&str]) -> Option<RedisServer> {
        let Some(bin) = find_binary() else {
            assert!(
                std::env::var("SWITCHYARD_REQUIRE_REDIS").as_deref() != Ok("1"),
                "redis-server not found and SWITCHYARD_REQUIRE_REDIS=1 (install redis-server)"
            );
            eprintln!("redis-server not found: test skipped");
            return None;
        };
        let mut server = RedisServer {
            port: free_port(),
            dir: tempfile::Builder::new()
                .prefix("switchyard-redis-")
                .tempdir()
                .expect("a temporary directory"),
            bin,
            extra: args.iter().map(|s| (*s).to_owned()).collect(),
            child: None,
        };
        server.launch();
        Some(server)
    }

    fn launch(&mut self) {
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.command(&["PING"]).as_deref() == Some("+PONG") {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING", self.port);
    }

    /// `redis://127.0.0.1:PORT/0`
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// SIGKILL the server (an outage).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port, with the same data directory.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// One command over RESP (inline arguments as bulk strings); the first reply line, or for
    /// a bulk string its value. `None` when the server does not answer.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).ok()?;
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).ok()?;
        let line = line.trim_end().to_owned();
        if let Some(len) = line.strip_prefix('$') {
            let n: i64 = len.parse().ok()?;
            if n < 0 {
                return Some(String::new());
            }
            let mut value = String::new();
            r.read_line(&mut value).ok()?;
            return Some(value.trim_end().to_owned());
        }
        Some(line)
    }

    /// `HGET key field` as a number (0 when absent).
    pub fn hget_i64(&self, key: &str, field: &str) -> i64 {
        self.command(&["HGET", key, field])
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
