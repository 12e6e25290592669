//! One wasmtime engine per process: pooling allocator, epoch interruption driven by a 1 ms ticker
//! thread, and an on-disk cache of compiled components that only ever holds our own artefacts.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::{LoadError, PolicyError};
use crate::manifest::MAX_MEMORY_MB;

/// The epoch ticks once per this interval; deadlines are counted in ticks.
pub const TICK: Duration = Duration::from_millis(1);

/// How the engine is built.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Count instructions (for `switchyard policy test`); slows guests about 2×, so never in serving.
    pub fuel: bool,
    /// Where compiled components are cached; `None` = compile every time.
    pub cache_dir: Option<PathBuf>,
    /// Instance slots = the most evaluations that may run at once.
    pub slots: u32,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            fuel: false,
            cache_dir: None,
            slots: 128,
        }
    }
}

/// The shared engine. Cheap to clone behind an `Arc`; the ticker stops when the last one drops.
pub struct PolicyEngine {
    pub(crate) engine: Engine,
    pub(crate) fuel: bool,
    cache_dir: Option<PathBuf>,
    pooling: bool,
    slots: usize,
    in_flight: AtomicUsize,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("fuel", &self.fuel)
            .field("pooling", &self.pooling)
            .field("slots", &self.slots)
            .finish()
    }
}

impl PolicyEngine {
    pub fn new(opts: EngineOptions) -> Result<Arc<PolicyEngine>, LoadError> {
        let slots = opts.slots.max(1);
        let base = |pooling: Option<&PoolingAllocationConfig>| {
            let mut c = Config::new();
            c.epoch_interruption(true)
                .consume_fuel(opts.fuel)
                .max_wasm_stack(512 << 10)
                .memory_init_cow(true);
            if let Some(p) = pooling {
                c.allocation_strategy(InstanceAllocationStrategy::Pooling(p.clone()));
            }
            c
        };
        let mut p = PoolingAllocationConfig::new();
        p.total_component_instances(slots)
            .total_core_instances(slots * 16)
            .total_memories(slots * 2)
            .total_tables(slots * 16)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(32)
            .max_memory_size((MAX_MEMORY_MB << 20) as usize)
            .table_elements(20_000)
            .max_unused_warm_slots(slots.min(32))
            // A policy touches little memory (the shipped ones: 128 KiB). Resetting that much
            // with memset on reuse is cheaper than madvise, which takes the process's mmap lock
            // and serialises concurrent evaluations on different threads.
            .linear_memory_keep_resident(256 << 10)
            .table_keep_resident(64 << 10);
        // The pool reserves address space up front; hosts with a small virtual address limit
        // refuse it, and then on-demand allocation is the honest fallback.
        let (engine, pooling) = match Engine::new(&base(Some(&p))) {
            Ok(e) => (e, true),
            Err(err) => {
                tracing::warn!(error = %err, "pooling allocator unavailable; allocating instances on demand");
                let e = Engine::new(&base(None)).map_err(|e| LoadError::Compile(e.to_string()))?;
                (e, false)
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = engine.clone();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("policy-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    ticker.increment_epoch();
                }
            })
            .map_err(|e| LoadError::Compile(format!("cannot start the epoch ticker: {e}")))?;
        if let Some(dir) = &opts.cache_dir {
            create_private_dir(dir).map_err(|e| LoadError::Io {
                path: dir.clone(),
                message: e.to_string(),
            })?;
        }
        Ok(Arc::new(PolicyEngine {
            engine,
            fuel: opts.fuel,
            cache_dir: opts.cache_dir,
            pooling,
            slots: slots as usize,
            in_flight: AtomicUsize::new(0),
            stop,
        }))
    }

    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// Compiles `wasm` (whose digest is `sha256`), through the on-disk cache when there is one.
    pub fn compile(&self, wasm: &[u8], sha256: &str) -> Result<Component, LoadError> {
        let Some(dir) = &self.cache_dir else {
            return Component::new(&self.engine, wasm)
                .map_err(|e| LoadError::Compile(format!("{e:#}")));
        };
        let path = dir.join(format!("{sha256}-{}.cwasm", self.compatibility_key()));
        if path.is_file() {
            match load_cached(&self.engine, &path) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding an unusable compiled policy");
                }
            }
        }
        let bytes = self
            .engine
            .precompile_component(wasm)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let io = |e: std::io::Error| LoadError::Io {
            path: path.clone(),
            message: e.to_string(),
        };
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, &bytes).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        load_cached(&self.engine, &path).map_err(|e| LoadError::Compile(format!("{e:#}")))
    }

    /// A digest of everything that makes a compiled artefact valid for this engine (wasmtime's own
    /// compatibility hash covers the version and the configuration).
    pub fn compatibility_key(&self) -> String {
        let mut h = ShaHasher(Sha256::new());
        self.engine.precompile_compatibility_hash().hash(&mut h);
        hex(&h.0.finalize()[..12])
    }

    /// Takes an instance slot, or says the pool is full (never waits).
    pub(crate) fn acquire(&self) -> Result<SlotGuard<'_>, PolicyError> {
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if now >= self.slots {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(PolicyError::PoolExhausted(now));
        }
        Ok(SlotGuard(&self.in_flight))
    }
}

impl Drop for PolicyEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub(crate) struct SlotGuard<'a>(&'a AtomicUsize);

impl SlotGuard<'_> {
    /// Evaluations in flight now, this one included.
    pub(crate) fn in_flight(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Loads a compiled component this engine wrote.
#[allow(unsafe_code)]
fn load_cached(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: `deserialize_file` trusts its input to be wasmtime output. The only files read here
    // are ones `compile` wrote itself, into a directory the gateway created with mode 0700, under a
    // name derived from the module's sha256 and this engine's compatibility hash; wasmtime also
    // refuses artefacts from another version or configuration. Authors' `.cwasm` are never read.
    unsafe { Component::deserialize_file(engine, path) }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Feeds `Hash` input into SHA-256, so the key is stable across processes and Rust versions.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(D[(b >> 4) as usize] as char);
        s.push(D[(b & 15) as usize] as char);
    }
    s
}
