//! End-to-end harness: start the real `switchyard` binary on a free loopback port and hand
//! tests its base URL. The process is killed when the handle drops (or stopped with SIGTERM
//! by [`Running::terminate`]).
//!
//! Every process gets its own store by default: a fresh temporary directory per [`Running`]
//! (deleted when the handle drops) with `SWITCHYARD_STORE_URL=sqlite://<dir>/demo.db`, so tests
//! never share a request log, keys or spend. [`Running::builder`] passes other environment
//! variables or points the process at a given store (a restart test reuses one).
//!
//! The binary is `$SWITCHYARD_BIN`, or `target/<profile>/switchyard` beside this test binary
//! (`cargo build --workspace --bins` or `cargo test --workspace` builds it).
#![expect(
    clippy::panic,
    clippy::expect_used,
    reason = "a test harness: failing loudly with a message is its job"
)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod client;
pub mod pg;
pub mod redis;
pub use client::Client;
pub use pg::PgSchema;
pub use redis::RedisServer;

/// How long a process may take to exit after SIGTERM before the harness kills it and fails.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Variables of the caller's environment that would change what the gateway does; they are
/// removed unless a test sets them with [`Builder::env`].
const SCRUBBED_ENV: &[&str] = &[
    "SWITCHYARD_ADMIN_KEY",
    "SWITCHYARD_STORE_URL",
    "SWITCHYARD_SIM_KEY",
    "SWITCHYARD_SIM_URL",
    "SWITCHYARD_POLICIES",
    "RUST_LOG",
];

/// A running gateway process.
pub struct Running {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    log: Arc<Mutex<Vec<String>>>,
    /// One message per output reader (stdout, stderr) when it reaches the end of its pipe.
    readers_done: mpsc::Receiver<()>,
    readers_left: usize,
    store_url: String,
    db_path: Option<PathBuf>,
    /// The temporary store directory, when the harness made one; deleted on drop.
    _store_dir: Option<TempDir>,
    /// The `demo --config` file, when there is one; deleted on drop.
    _config: Option<tempfile::NamedTempFile>,
    exit: Option<ExitStatus>,
}

/// Options for starting a process: extra environment variables, the store.
#[derive(Debug, Default, Clone)]
pub struct Builder {
    env: Vec<(String, String)>,
    store_url: Option<String>,
}

impl Builder {
    /// Set an environment variable for the process (after the harness's defaults, so this
    /// also overrides `RUST_LOG`, `SWITCHYARD_POLICIES` or `SWITCHYARD_STORE_URL`).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Builder {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Use this store URL instead of a fresh temporary SQLite file (e.g. the store of an
    /// earlier process, or a Postgres schema). The caller keeps whatever it points at alive.
    pub fn store_url(mut self, url: impl Into<String>) -> Builder {
        self.store_url = Some(url.into());
        self
    }

    /// `switchyard demo` on an ephemeral port.
    pub fn demo(self) -> Running {
        self.start(&["demo", "--listen", "127.0.0.1:0"])
    }

    /// `switchyard demo` on an ephemeral port with `overrides` (TOML) merged over the demo's
    /// config (`demo --config`), e.g. `[auth] mode = "keys"` or a `[sim.models."gpt-4o"]` table.
    pub fn demo_with(self, overrides: &str) -> Running {
        let file = tempfile::Builder::new()
            .prefix("switchyard-e2e-")
            .suffix(".toml")
            .tempfile()
            .expect("create a temporary config file");
        std::fs::write(file.path(), overrides).expect("write the config overrides");
        let path = file.path().display().to_string();
        let mut running = self.start(&["demo", "--listen", "127.0.0.1:0", "--config", &path]);
        running._config = Some(file);
        running
    }

    /// Run the binary with these arguments (plus `--log-format json`) and wait until it logs
    /// the address it listens on.
    pub fn start(self, args: &[&str]) -> Running {
        let (store_dir, store_url) = match self.store_url {
            Some(url) => (None, url),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("switchyard-e2e-")
                    .tempdir()
                    .expect("create a temporary store directory");
                let url = sqlite_url(&dir.path().join("demo.db"));
                (Some(dir), url)
            }
        };
        let db_path = sqlite_path(&store_url);
        let bin = binary();
        let mut cmd = Command::new(&bin);
        cmd.args(args).args(["--log-format", "json"]);
        for var in SCRUBBED_ENV {
            cmd.env_remove(var);
        }
        cmd.env("RUST_LOG", "info")
            // The demo runs the shipped policies (built by policies/build.sh) from the repository.
            .env("SWITCHYARD_POLICIES", repo_root().join("policies"))
            .env("SWITCHYARD_STORE_URL", &store_url);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        let (done_tx, readers_done) = mpsc::channel();
        pump(stderr, log.clone(), Some(addr_tx), done_tx.clone());
        pump(stdout, log.clone(), None, done_tx);
        let addr = match addr_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                // Let the readers take in what the process wrote before it died.
                for _ in 0..2 {
                    let _ = readers_done.recv_timeout(Duration::from_secs(2));
                }
                panic!(
                    "switchyard did not start; its output:\n{}",
                    log.lock().expect("log lock").join("\n")
                );
            }
        };
        Running {
            child,
            base_url: format!("http://{addr}"),
            log,
            readers_done,
            readers_left: 2,
            store_url,
            db_path,
            _store_dir: store_dir,
            _config: None,
            exit: None,
        }
    }
}

/// Read `pipe` line by line into `log` on a thread; report the listening address on `addr`
/// (stderr only) and the end of the pipe on `done`.
fn pump(
    pipe: impl Read + Send + 'static,
    log: Arc<Mutex<Vec<String>>>,
    addr: Option<mpsc::Sender<String>>,
    done: mpsc::Sender<()>,
) {
    std::thread::spawn(move || {
        let mut addr = addr;
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if addr.is_some()
                && let Some(found) = listening_addr(&line)
                && let Some(tx) = addr.take()
            {
                let _ = tx.send(found);
            }
            log.lock().expect("log lock").push(line);
        }
        let _ = done.send(());
    });
}

impl Running {
    /// `switchyard demo` on an ephemeral port, with its own temporary store.
    pub fn demo() -> Running {
        Builder::default().demo()
    }

    /// Run the binary with these arguments (plus `--log-format json`), with its own temporary
    /// store, and wait until it logs the address it listens on.
    pub fn start(args: &[&str]) -> Running {
        Builder::default().start(args)
    }

    /// Options: environment variables, the store.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The simulator's base URL, for a `demo` process (from its "simulator started" line).
    pub fn sim_url(&self) -> String {
        let event = self
            .log_event("simulator started")
            .expect("a demo process logs where its simulator listens");
        format!(
            "http://{}",
            event["sim"]
                .as_str()
                .expect("the event names the simulator's address")
        )
    }

    /// The store URL the process was given (`SWITCHYARD_STORE_URL`).
    pub fn store_url(&self) -> &str {
        &self.store_url
    }

    /// The SQLite database file, when the store is SQLite.
    pub fn db_path(&self) -> Option<&Path> {
        self.db_path.as_deref()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send SIGTERM and return at once (the process drains and exits on its own; see
    /// [`Running::wait_exit`]). Does nothing once the process has been waited for.
    pub fn sigterm(&self) {
        if self.exit.is_some() {
            return;
        }
        // The workspace forbids `unsafe`, so no `libc::kill`. The child is not reaped before
        // `wait_exit`, so its pid cannot have been reused.
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap_or_else(|e| panic!("cannot run `kill -TERM {pid}`: {e}"));
        assert!(status.success(), "`kill -TERM {pid}` failed: {status}");
    }

    /// Wait (at most [`EXIT_TIMEOUT`]) for the process to exit, then for its output to be read
    /// to the end. Panics with the log if it does not exit in time (after killing it).
    pub fn wait_exit(&mut self) -> ExitStatus {
        if let Some(status) = self.exit {
            return status;
        }
        let deadline = Instant::now() + EXIT_TIMEOUT;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "switchyard did not exit within {EXIT_TIMEOUT:?}; its log:\n{}",
                        self.log_lines().join("\n")
                    );
                }
                Err(e) => panic!("cannot wait for switchyard: {e}"),
            }
        };
        self.exit = Some(status);
        // The pipes close when the process is gone; give the readers a bounded time to finish.
        let drained = Instant::now() + Duration::from_secs(5);
        while self.readers_left > 0 {
            let left = drained.saturating_duration_since(Instant::now());
            if self.readers_done.recv_timeout(left).is_err() {
                break;
            }
            self.readers_left -= 1;
        }
        status
    }

    /// SIGTERM, then wait for the exit (bounded, see [`Running::wait_exit`]).
    pub fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait_exit()
    }

    /// Every line the process wrote so far, stderr (the JSON log) and stdout interleaved in
    /// the order they were read.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Everything the process logged so far (same as [`Running::log_lines`]).
    pub fn log(&self) -> Vec<String> {
        self.log_lines()
    }

    /// The JSON log events (lines that parse as JSON objects).
    pub fn log_events(&self) -> Vec<serde_json::Value> {
        self.log_lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(serde_json::Value::is_object)
            .collect()
    }

    /// The last JSON log event whose `message` is `message`.
    pub fn log_event(&self, message: &str) -> Option<serde_json::Value> {
        self.log_events()
            .into_iter()
            .rev()
            .find(|e| e.get("message").and_then(serde_json::Value::as_str) == Some(message))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `sqlite://` URL of a database file.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// The file of a `sqlite://PATH[?…]` URL.
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://")?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// The address in the `switchyard listening` JSON log line.
fn listening_addr(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("message")?.as_str()? != "switchyard listening" {
        return None;
    }
    Some(v.get("addr")?.as_str()?.to_owned())
}

/// The repository's root (this crate lives in `tests/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .expect("tests/ has a parent")
}

/// The one row of the request the client knows as `id`: its own `x-request-id`, or the `req_…`
/// id the gateway echoed when it sent none. Panics if there are several.
pub async fn row_for(
    store: &switchyard_store::Store,
    id: &str,
) -> Option<switchyard_store::RequestRecord> {
    use switchyard_store::RequestLog;
    if let Some(row) = RequestLog::get_request(store, id)
        .await
        .expect("read a row")
    {
        return Some(row);
    }
    let mut rows = RequestLog::requests_by_client_id(store, id)
        .await
        .expect("read rows by client id");
    assert!(
        rows.len() <= 1,
        "{} rows for the client id {id}",
        rows.len()
    );
    rows.pop()
}

pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SWITCHYARD_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-binary> → target/<profile>/switchyard
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary lives in target/<profile>/deps");
    let bin = profile_dir.join(format!("switchyard{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --workspace --bins` first, or set SWITCHYARD_BIN",
        bin.display()
    );
    bin
}

/// `n` random bytes as lower-case hex (from `/dev/urandom`), for secrets and unique ids.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The models `switchyard demo` serves, one or more of each provider kind.
pub const DEMO_MODELS: &[&str] = &[
    "gpt-4o-mini",
    "gpt-4o",
    "claude-3-5-haiku",
    "claude-sonnet-4-5",
    "gemini-2.0-flash",
    "gemini-2.5-flash",
    "llama3.2",
];

impl Running {
    /// A new virtual key named `name`, made with the admin key: its secret and its id.
    pub async fn create_key(
        &self,
        http: &reqwest::Client,
        admin: &str,
        name: &str,
    ) -> (String, String) {
        let created: serde_json::Value = http
            .post(format!("{}/admin/keys", self.base_url))
            .bearer_auth(admin)
            .json(&serde_json::json!({"name": name}))
            .send()
            .await
            .expect("POST /admin/keys")
            .json()
            .await
            .expect("the created key as JSON");
        let field = |f: &str| {
            created[f]
                .as_str()
                .unwrap_or_else(|| panic!("no {f} in {created}"))
                .to_owned()
        };
        (field("key"), field("id"))
    }
}
