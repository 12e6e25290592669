//! End-to-end harness: start the real `switchyard` binary on a free loopback port and hand
//! tests its base URL. The process is killed when the handle drops.
//!
//! The binary is `$SWITCHYARD_BIN`, or `target/<profile>/switchyard` beside this test binary
//! (`cargo build --workspace --bins` or `cargo test --workspace` builds it).
#![expect(
    clippy::panic,
    clippy::expect_used,
    reason = "a test harness: failing loudly with a message is its job"
)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running gateway process.
pub struct Running {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    /// `switchyard demo` on an ephemeral port.
    pub fn demo() -> Running {
        Running::start(&["demo", "--listen", "127.0.0.1:0"])
    }

    /// Run the binary with these arguments (plus `--log-format json`) and wait until it
    /// logs the address it listens on.
    pub fn start(args: &[&str]) -> Running {
        let bin = binary();
        let mut child = Command::new(&bin)
            .args(args)
            .args(["--log-format", "json"])
            .env("RUST_LOG", "info")
            // The demo runs the shipped policies (built by policies/build.sh) from the repository.
            .env("SWITCHYARD_POLICIES", repo_root().join("policies"))
            .current_dir(repo_root())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = listening_addr(&line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr);
                }
                sink.lock().expect("log lock").push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "switchyard did not start; its log:\n{}",
                    log.lock().expect("log lock").join("\n")
                );
            }
        };
        Running {
            child,
            base_url: format!("http://{addr}"),
            log,
        }
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
