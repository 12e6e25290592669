//! The policy folder: load every policy in it, swap in a new set atomically when it changes, and
//! keep the previous version of a policy serving when its new version is broken.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::engine::{PolicyEngine, sha256_hex};
use crate::error::LoadError;
use crate::manifest::{FailureMode, Manifest};
use crate::policy::{LoadedPolicy, TokenCounter};
use crate::stats::StatsSnapshot;
use crate::testing::run_cases;

/// The policies in force, in the order they run (manifest `order`, then name), and the policy
/// folders that have no version serving because loading failed.
#[derive(Debug, Default)]
pub struct PolicySet {
    pub policies: Vec<Arc<LoadedPolicy>>,
    pub unloaded: Vec<Unloaded>,
}

impl PolicySet {
    pub fn for_route<'a>(&'a self, route: &'a str) -> impl Iterator<Item = &'a Arc<LoadedPolicy>> {
        self.policies
            .iter()
            .filter(move |p| p.manifest.applies_to(route))
    }

    /// The policies that should run on `route` but are not loaded: a fail-closed one among them
    /// must refuse the route's requests (a safeguard that is not there must not be skipped).
    pub fn unloaded_for<'a>(&'a self, route: &'a str) -> impl Iterator<Item = &'a Unloaded> {
        self.unloaded.iter().filter(move |u| u.applies_to(route))
    }

    pub fn is_empty(&self) -> bool {
        self.policies.is_empty() && self.unloaded.is_empty()
    }
}

/// A policy folder whose policy failed to load, with no older version serving in its place.
/// What its manifest declares is read leniently, because the manifest itself may be what failed:
/// a manifest that cannot be read at all, or names a failure mode that is neither `open` nor
/// `closed`, is taken as fail-closed on every route (its author's intent is unknown, and a
/// safeguard must not fall open on a typo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unloaded {
    /// The manifest's `name`, or the folder's name.
    pub name: String,
    pub routes: Vec<String>,
    pub failure_mode: FailureMode,
    pub error: String,
}

impl Unloaded {
    pub fn applies_to(&self, route: &str) -> bool {
        self.routes.iter().any(|r| r == "*" || r == route)
    }

    fn read(dir: &Path, folder_name: &str, error: String) -> Unloaded {
        let closed_everywhere = |name: String| Unloaded {
            name,
            routes: vec!["*".to_owned()],
            failure_mode: FailureMode::Closed,
            error: error.clone(),
        };
        let Some(table) = std::fs::read_to_string(dir.join("policy.toml"))
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
        else {
            return closed_everywhere(folder_name.to_owned());
        };
        let name = match table.get("name").and_then(toml::Value::as_str) {
            Some(n) if !n.is_empty() => n.to_owned(),
            _ => folder_name.to_owned(),
        };
        let failure_mode = match table.get("failure_mode") {
            None => FailureMode::default(),
            Some(v) if v.as_str() == Some("open") => FailureMode::Open,
            Some(_) => FailureMode::Closed,
        };
        let routes = match table.get("routes") {
            None => vec!["*".to_owned()],
            Some(v) => {
                let list: Option<Vec<String>> = v.as_array().and_then(|a| {
                    a.iter()
                        .map(|r| r.as_str().map(str::to_owned))
                        .collect::<Option<Vec<_>>>()
                });
                match list {
                    Some(l) if !l.is_empty() => l,
                    _ => return closed_everywhere(name),
                }
            }
        };
        Unloaded {
            name,
            routes,
            failure_mode,
            error,
        }
    }
}

/// One policy folder's state, for `/ai/policies`.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyStatus {
    pub name: String,
    pub version: Option<String>,
    pub abi: Option<String>,
    pub sha256: Option<String>,
    pub path: String,
    /// `active`, `failed` (never loaded), or `stale` (an older version serves; the new one failed).
    pub status: &'static str,
    /// Why the last load of this folder failed, if it did.
    pub load_error: Option<String>,
    pub order: Option<i32>,
    pub routes: Vec<String>,
    pub failure_mode: Option<&'static str>,
    pub capabilities: Vec<&'static str>,
    pub module_bytes: Option<usize>,
    pub loaded_at: Option<u64>,
    #[serde(flatten)]
    pub stats: Option<StatsSnapshot>,
}

/// What a reload did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadReport {
    pub loaded: Vec<String>,
    pub unchanged: Vec<String>,
    pub removed: Vec<String>,
    pub failed: Vec<ReloadFailure>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReloadFailure {
    pub path: String,
    pub error: String,
    /// The version still serving in its place, if any.
    pub kept: Option<String>,
}

struct Slot {
    digest: String,
    policy: Option<Arc<LoadedPolicy>>,
    last_error: Option<String>,
    /// What the manifest of a failed load declares, while no version serves.
    unloaded: Option<Unloaded>,
    name: String,
    loaded_at: Option<u64>,
}

/// Owns the policy folder and the live [`PolicySet`].
pub struct Registry {
    engine: Arc<PolicyEngine>,
    dir: Option<PathBuf>,
    counter: Arc<dyn TokenCounter>,
    current: ArcSwap<PolicySet>,
    slots: Mutex<BTreeMap<PathBuf, Slot>>,
    reloads: AtomicU64,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("dir", &self.dir).finish()
    }
}

impl Registry {
    /// A registry over `dir` (or none: no policies). Call [`Registry::reload`] to load.
    pub fn new(
        engine: Arc<PolicyEngine>,
        dir: Option<PathBuf>,
        counter: Arc<dyn TokenCounter>,
    ) -> Registry {
        Registry {
            engine,
            dir,
            counter,
            current: ArcSwap::from_pointee(PolicySet::default()),
            slots: Mutex::new(BTreeMap::new()),
            reloads: AtomicU64::new(0),
        }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    pub fn engine(&self) -> &Arc<PolicyEngine> {
        &self.engine
    }

    /// The set in force now. Callers keep their `Arc` for the whole request, so a swap never
    /// changes the policies under a request in flight.
    pub fn current(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Loads one policy folder: manifest, module, link, self-test.
    pub fn load_dir(&self, dir: &Path) -> Result<LoadedPolicy, LoadError> {
        load_policy(&self.engine, dir, self.counter.clone())
    }

    /// Re-reads the folder. Changed policies are compiled and self-tested, then the whole set is
    /// swapped at once; a policy whose new version fails keeps its old version serving.
    /// Blocking (compiles): call it off the async runtime.
    pub fn reload(&self) -> ReloadReport {
        let Ok(mut slots) = self.slots.lock() else {
            return ReloadReport::default();
        };
        let mut report = ReloadReport::default();
        let found = match &self.dir {
            Some(d) => policy_dirs(d),
            None => Vec::new(),
        };
        let removed: Vec<PathBuf> = slots
            .keys()
            .filter(|k| !found.contains(k))
            .cloned()
            .collect();
        for k in removed {
            if let Some(s) = slots.remove(&k) {
                report.removed.push(s.name);
            }
        }
        for dir in &found {
            let digest = folder_digest(dir);
            let slot = slots.entry(dir.clone()).or_insert_with(|| Slot {
                digest: String::new(),
                policy: None,
                last_error: None,
                unloaded: None,
                name: dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                loaded_at: None,
            });
            if slot.digest == digest && (slot.policy.is_some() || slot.last_error.is_some()) {
                if let Some(p) = &slot.policy {
                    report.unchanged.push(p.manifest.id());
                }
                continue;
            }
            slot.digest = digest;
            match load_policy(&self.engine, dir, self.counter.clone()) {
                Ok(p) => {
                    report.loaded.push(p.manifest.id());
                    tracing::info!(policy = %p.manifest.id(), sha256 = %p.sha256, "policy loaded");
                    slot.name = p.manifest.name.clone();
                    slot.policy = Some(Arc::new(p));
                    slot.last_error = None;
                    slot.unloaded = None;
                    slot.loaded_at = Some(unix_now());
                }
                Err(e) => {
                    let kept = slot.policy.as_ref().map(|p| p.manifest.id());
                    tracing::error!(path = %dir.display(), error = %e, kept = ?kept, "policy failed to load");
                    report.failed.push(ReloadFailure {
                        path: dir.display().to_string(),
                        error: e.to_string(),
                        kept,
                    });
                    slot.last_error = Some(e.to_string());
                    let folder = dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    slot.unloaded = Some(Unloaded::read(dir, &folder, e.to_string()));
                }
            }
        }
        // Two folders may not serve the same policy name; the first (by path) wins.
        let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
        let mut policies = Vec::new();
        let mut unloaded = Vec::new();
        for (path, slot) in slots.iter_mut() {
            let Some(p) = &slot.policy else {
                if let Some(u) = &slot.unloaded {
                    if u.failure_mode == FailureMode::Closed {
                        tracing::error!(policy = %u.name, routes = ?u.routes, "a fail-closed policy is not loaded: its routes answer 503");
                    }
                    unloaded.push(u.clone());
                }
                continue;
            };
            if let Some(first) = seen.get(&p.manifest.name) {
                let e = LoadError::Duplicate(p.manifest.name.clone());
                report.failed.push(ReloadFailure {
                    path: path.display().to_string(),
                    error: format!("{e} (also in {})", first.display()),
                    kept: None,
                });
                slot.last_error = Some(e.to_string());
                continue;
            }
            seen.insert(p.manifest.name.clone(), path.clone());
            policies.push(p.clone());
        }
        policies.sort_by(|a, b| {
            (a.manifest.order, &a.manifest.name).cmp(&(b.manifest.order, &b.manifest.name))
        });
        self.current
            .store(Arc::new(PolicySet { policies, unloaded }));
        self.reloads.fetch_add(1, Ordering::Relaxed);
        report
    }

    /// Every policy folder and how it stands.
    pub fn statuses(&self) -> Vec<PolicyStatus> {
        let Ok(slots) = self.slots.lock() else {
            return Vec::new();
        };
        let live = self.current();
        slots
            .iter()
            .map(|(path, s)| {
                let serving = s
                    .policy
                    .as_ref()
                    .filter(|p| live.policies.iter().any(|l| Arc::ptr_eq(l, p)));
                let status = match (serving, &s.last_error) {
                    (Some(_), None) => "active",
                    (Some(_), Some(_)) => "stale",
                    (None, _) => "failed",
                };
                let m = serving.map(|p| &p.manifest);
                let declared = s.unloaded.as_ref().filter(|_| serving.is_none());
                PolicyStatus {
                    name: m.map(|m| m.name.clone()).unwrap_or_else(|| s.name.clone()),
                    version: m.map(|m| m.version.clone()),
                    abi: m.map(|m| m.abi.clone()),
                    sha256: serving.map(|p| p.sha256.clone()),
                    path: path.display().to_string(),
                    status,
                    load_error: s.last_error.clone(),
                    order: m.map(|m| m.order),
                    routes: m
                        .map(|m| m.routes.clone())
                        .or_else(|| declared.map(|u| u.routes.clone()))
                        .unwrap_or_default(),
                    failure_mode: m
                        .map(|m| m.failure_mode.as_str())
                        .or_else(|| declared.map(|u| u.failure_mode.as_str())),
                    capabilities: m
                        .map(|m| m.capabilities.iter().map(|c| c.as_str()).collect())
                        .unwrap_or_default(),
                    module_bytes: serving.map(|p| p.wasm_bytes),
                    loaded_at: serving.and(s.loaded_at),
                    stats: serving.map(|p| p.stats.snapshot()),
                }
            })
            .collect()
    }

    /// Polls the folder every `interval`; after a change has been quiet for `debounce`, reloads.
    /// The thread ends when the registry is dropped.
    pub fn watch(self: &Arc<Self>, interval: Duration, debounce: Duration) {
        let Some(dir) = self.dir.clone() else { return };
        let weak: Weak<Registry> = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("policy-watch".into())
            .spawn(move || {
                let mut seen = fingerprint(&dir);
                loop {
                    std::thread::sleep(interval);
                    let Some(reg) = weak.upgrade() else { return };
                    let mut now = fingerprint(&dir);
                    if now == seen {
                        continue;
                    }
                    // Editors and `cp` write in steps: wait until the folder stops changing.
                    loop {
                        std::thread::sleep(debounce);
                        let again = fingerprint(&dir);
                        if again == now {
                            break;
                        }
                        now = again;
                    }
                    seen = now;
                    let r = reg.reload();
                    tracing::info!(loaded = ?r.loaded, failed = r.failed.len(), removed = ?r.removed, "policy folder changed; reloaded");
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the policy folder watcher");
        }
    }
}

/// Loads and self-tests the policy in `dir`.
pub fn load_policy(
    engine: &Arc<PolicyEngine>,
    dir: &Path,
    counter: Arc<dyn TokenCounter>,
) -> Result<LoadedPolicy, LoadError> {
    let manifest = Manifest::load(dir)?;
    let policy = LoadedPolicy::load(engine, manifest, counter)?;
    for case in run_cases(&policy) {
        if let Some(message) = case.failure {
            return Err(LoadError::SelfTest {
                name: case.name,
                message,
            });
        }
    }
    Ok(policy)
}

/// Folders holding a `policy.toml`: `dir` itself, or its direct subfolders.
fn policy_dirs(dir: &Path) -> Vec<PathBuf> {
    if dir.join("policy.toml").is_file() {
        return vec![dir.to_path_buf()];
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("policy.toml").is_file())
        .collect();
    out.sort();
    out
}

/// The manifest text, the module and the test files: what a load depends on.
fn folder_digest(dir: &Path) -> String {
    let mut bytes = Vec::new();
    for f in files(dir, 3) {
        if let Ok(b) = std::fs::read(&f.0) {
            bytes.extend_from_slice(f.0.to_string_lossy().as_bytes());
            bytes.extend_from_slice(&sha256_hex(&b).into_bytes());
        }
    }
    sha256_hex(&bytes)
}

type FileStamp = (PathBuf, u64, Option<SystemTime>);

/// Cheap change detection: names, sizes and modification times.
fn fingerprint(dir: &Path) -> Vec<FileStamp> {
    files(dir, 3)
}

fn files(dir: &Path, depth: u32) -> Vec<FileStamp> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(md) = e.metadata() else { continue };
        if md.is_dir() {
            let name = e.file_name();
            if depth > 0 && name != "target" && !name.to_string_lossy().starts_with('.') {
                out.extend(files(&p, depth - 1));
            }
        } else if !p.extension().is_some_and(|x| x == "rs" || x == "lock") {
            out.push((p, md.len(), md.modified().ok()));
        }
    }
    out.sort();
    out
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(manifest: Option<&str>) -> Unloaded {
        let dir = tempfile::tempdir().unwrap();
        if let Some(m) = manifest {
            std::fs::write(dir.path().join("policy.toml"), m).unwrap();
        }
        Unloaded::read(dir.path(), "folder", "e".into())
    }

    #[test]
    fn an_unloaded_policy_is_closed_unless_its_manifest_says_open() {
        let declared = read(Some(
            "name = \"guard\"\nfailure_mode = \"closed\"\nroutes = [\"a\", \"b\"]\nbogus = 1",
        ));
        assert_eq!(declared.name, "guard");
        assert_eq!(declared.routes, ["a", "b"]);
        assert_eq!(declared.failure_mode, FailureMode::Closed);
        assert!(declared.applies_to("b") && !declared.applies_to("c"));
        // The manifest's defaults: open, every route.
        let defaults = read(Some("name = \"opt\""));
        assert_eq!(defaults.failure_mode, FailureMode::Open);
        assert!(defaults.applies_to("anything"));
        // Whatever cannot be read as open is closed, on every route it might name.
        for broken in [
            None,
            Some("name = \"x\"\nfailure_mode = open"),
            Some("failure_mode = \"maybe\"\nroutes = [\"a\"]"),
            Some("failure_mode = \"open\"\nroutes = []"),
            Some("failure_mode = \"open\"\nroutes = [1]"),
        ] {
            let u = read(broken);
            assert_eq!(u.failure_mode, FailureMode::Closed, "{broken:?}");
            if broken.is_none_or(|b| !b.contains("maybe")) {
                assert!(u.applies_to("any"), "{broken:?}");
            }
        }
        assert_eq!(read(None).name, "folder");
    }
}
