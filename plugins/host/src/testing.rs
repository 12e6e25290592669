//! A manifest's test cases: each an input context and the exact decision it must produce. They run
//! at every load (a module that fails its own tests never serves) and in `switchyard policy test`.

use std::time::Duration;

use crate::ctx::{Decision, PolicyInput};
use crate::error::PolicyError;
use crate::manifest::{Manifest, TestSpec};
use crate::policy::LoadedPolicy;

/// Deadline for a test case: cases check decisions; fuel (in `policy test`) checks cost.
pub const SELF_TEST_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct CaseResult {
    pub name: String,
    /// `None` = passed.
    pub failure: Option<String>,
    pub elapsed: Duration,
    pub fuel: Option<u64>,
    pub peak_memory: usize,
}

/// Reads a case's input and expected decision.
pub fn read_case(manifest: &Manifest, spec: &TestSpec) -> Result<(PolicyInput, Decision), String> {
    let read = |p: &std::path::Path| -> Result<String, String> {
        std::fs::read_to_string(manifest.dir.join(p)).map_err(|e| format!("{}: {e}", p.display()))
    };
    let input: PolicyInput = serde_json::from_str(&read(&spec.input)?)
        .map_err(|e| format!("{}: {e}", spec.input.display()))?;
    let expect: Decision = serde_json::from_str(&read(&spec.expect)?)
        .map_err(|e| format!("{}: {e}", spec.expect.display()))?;
    Ok((input, expect))
}

/// Runs every case of the policy's manifest.
pub fn run_cases(policy: &LoadedPolicy) -> Vec<CaseResult> {
    policy
        .manifest
        .tests
        .iter()
        .map(|spec| {
            let mut out = CaseResult {
                name: spec.name.clone(),
                failure: None,
                elapsed: Duration::ZERO,
                fuel: None,
                peak_memory: 0,
            };
            match read_case(&policy.manifest, spec) {
                Err(e) => out.failure = Some(e),
                Ok((input, expect)) => match policy.evaluate_within(&input, SELF_TEST_TIMEOUT) {
                    Err(e) => out.failure = Some(describe(&e)),
                    Ok(ev) => {
                        out.elapsed = ev.elapsed;
                        out.fuel = ev.fuel;
                        out.peak_memory = ev.peak_memory;
                        if ev.decision != expect {
                            out.failure = Some(format!(
                                "expected {}\n     got {}",
                                json(&expect),
                                json(&ev.decision)
                            ));
                        }
                    }
                },
            }
            out
        })
        .collect()
}

fn describe(e: &PolicyError) -> String {
    format!("the policy failed: {e}")
}

fn json(d: &Decision) -> String {
    serde_json::to_string(d).unwrap_or_else(|e| e.to_string())
}
