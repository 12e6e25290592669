//! `switchyard policy test DIR` and `switchyard policy inspect FILE.wasm`.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use switchyard_plugins::testing::{read_case, run_cases};
use switchyard_plugins::{EngineOptions, LoadedPolicy, Manifest, PolicyEngine, TokenCounter};

use super::CatalogCounter;
use switchyard_routing::catalog::Catalog;

/// Timed runs per case for the latency figures.
const TIMED_RUNS: usize = 200;

fn counter() -> Result<Arc<dyn TokenCounter>, String> {
    switchyard_routing::tokens::load_blocking();
    Ok(Arc::new(CatalogCounter::of_catalog(&Catalog::builtin()?)))
}

fn engine(fuel: bool) -> Result<Arc<PolicyEngine>, String> {
    PolicyEngine::new(EngineOptions {
        fuel,
        cache_dir: None,
        slots: 4,
    })
    .map_err(|e| e.to_string())
}

/// Runs a manifest's cases: once under fuel (instructions, memory), then timed without fuel,
/// as the gateway runs them. Returns the report, and whether every case passed.
pub fn test(dir: &Path) -> Result<(String, bool), String> {
    let counter = counter()?;
    let manifest = Manifest::load(dir).map_err(|e| e.to_string())?;
    let metered = LoadedPolicy::load(&engine(true)?, manifest.clone(), counter.clone())
        .map_err(|e| e.to_string())?;
    let serving = LoadedPolicy::load(&engine(false)?, manifest.clone(), counter)
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({} bytes, sha256 {}, {} case(s), fuel budget {})",
        manifest.id(),
        metered.wasm_bytes,
        metered.sha256,
        manifest.tests.len(),
        manifest.limits.test_fuel
    );
    let mut all_ok = true;
    for (case, spec) in run_cases(&metered).into_iter().zip(&manifest.tests) {
        let mut times: Vec<Duration> = Vec::new();
        if case.failure.is_none()
            && let Ok((input, _)) = read_case(&manifest, spec)
        {
            for _ in 0..TIMED_RUNS {
                if let Ok(ev) = serving.evaluate(&input) {
                    times.push(ev.elapsed);
                }
            }
        }
        times.sort();
        let pct = |q: f64| {
            times
                .get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1e6)
        };
        match &case.failure {
            None => {
                let _ = writeln!(
                    out,
                    "  ok    {:<50} fuel {:>9}  p50 {:>7.1} µs  p99 {:>7.1} µs  memory {} KiB",
                    case.name,
                    case.fuel.unwrap_or(0),
                    pct(0.5),
                    pct(0.99),
                    case.peak_memory / 1024
                );
            }
            Some(f) => {
                all_ok = false;
                let _ = writeln!(out, "  FAIL  {}\n        {f}", case.name);
            }
        }
    }
    if manifest.tests.is_empty() {
        let _ = writeln!(out, "  (no [[tests]] in policy.toml)");
    }
    Ok((out, all_ok))
}

/// A component's imports, exports and ABI.
pub fn inspect(file: &Path) -> Result<String, String> {
    let wasm = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let i = switchyard_plugins::inspect::inspect(&*engine(false)?, &wasm)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} ({} bytes, sha256 {})",
        file.display(),
        i.bytes,
        i.sha256
    );
    let _ = writeln!(
        out,
        "abi:      {}",
        i.abi
            .as_deref()
            .unwrap_or("(imports nothing from switchyard:policy)")
    );
    let _ = writeln!(out, "host functions used: {}", list(&i.needs));
    let _ = writeln!(out, "imports:  {}", list(&i.imports));
    let _ = writeln!(out, "exports:  {}", list(&i.exports));
    let _ = writeln!(
        out,
        "verdict:  {}",
        if i.compatible {
            format!("loadable by this gateway ({})", switchyard_plugins::ABI)
        } else {
            format!(
                "NOT loadable: a policy exports `evaluate` from {}",
                switchyard_plugins::ABI
            )
        }
    );
    Ok(out)
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(", ")
    }
}
