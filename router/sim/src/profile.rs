//! Simulator knobs: the seeded RNG (SplitMix64), per-model profiles resolved over the defaults,
//! latency sampling, the fault-spec grammar and the table of scripted faults.
//! Pure data and arithmetic: no I/O, no awaits, so no lock here can be held across one.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::{LatencyDist, Profile};

/// Answer length when neither the profile nor the request says otherwise.
pub(crate) const DEFAULT_OUTPUT_TOKENS: u32 = 16;
/// Latencies above this (about 11 days) are clamped: they only come from typos.
const MAX_LATENCY_MS: f64 = 1.0e9;

/// Errors from scripting the simulator (bad fault spec, rate, count or profile).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error(
        "unknown fault spec `{0}` (expected 400|401|403|404|429[:SECS]|500|502|503|504|529|\
         quota|context|hang|reset|cut:N|malformed|stream-error|bad-json|tool-index|endless|\
         big-event:KIB|redirect)"
    )]
    BadFault(String),
    #[error("fault rate must be within 0..=1, got {0}")]
    BadRate(f64),
    #[error("fault count must be at least 1")]
    ZeroCount,
    #[error("{path}: {message}")]
    Config { path: String, message: String },
}

pub(crate) use switchyard_types::rng::{SplitMix64, mix};

/// FNV-1a: a hash of the model id that is stable across runs and Rust versions.
pub(crate) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

impl LatencyDist {
    /// A draw: Normal(mean, stddev) truncated at 0, or the lognormal of that mean and stddev,
    /// times `slow_factor` for a `slow_share` of draws. Draws from `rng` only when stddev > 0
    /// (and for the slow mode only when it is set), so adding a profile changes no other sequence.
    pub(crate) fn sample(&self, rng: &mut SplitMix64) -> Duration {
        let base = match self.dist {
            _ if self.stddev <= 0.0 => self.mean,
            super::Dist::Normal => self.mean + self.stddev * rng.normal(),
            super::Dist::Lognormal if self.mean > 0.0 => {
                let sigma2 = (1.0 + (self.stddev / self.mean).powi(2)).ln();
                let mu = self.mean.ln() - sigma2 / 2.0;
                (mu + sigma2.sqrt() * rng.normal()).exp()
            }
            super::Dist::Lognormal => self.mean,
        };
        let slow = self.slow_share > 0.0 && rng.next_f64() < self.slow_share;
        millis(if slow { base * self.slow_factor } else { base })
    }

    fn validate(&self, name: &str) -> Result<(), String> {
        let finite = [self.mean, self.stddev, self.slow_share, self.slow_factor]
            .iter()
            .all(|v| v.is_finite());
        if !(finite && self.mean >= 0.0 && self.stddev >= 0.0) {
            return Err(format!("{name}: mean and stddev must be finite and >= 0"));
        }
        if !(0.0..=1.0).contains(&self.slow_share) {
            return Err(format!("{name}: slow_share must be within 0..=1"));
        }
        if self.slow_share > 0.0 && self.slow_factor < 1.0 {
            return Err(format!("{name}: slow_factor must be at least 1"));
        }
        Ok(())
    }
}

/// Milliseconds (any f64) to a Duration: negative and NaN become zero, huge values are clamped.
pub(crate) fn millis(ms: f64) -> Duration {
    if ms.is_nan() || ms <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(ms.min(MAX_LATENCY_MS) / 1000.0).unwrap_or(Duration::ZERO)
}

/// A profile with every field filled in: model over defaults over built-in zeros.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub(crate) ttft: LatencyDist,
    pub(crate) tpot: LatencyDist,
    pub(crate) output_tokens: u32,
    pub(crate) error_rate: f64,
    pub(crate) error_fault: Fault,
}

impl Resolved {
    pub(crate) fn merge(model: Option<&Profile>, defaults: &Profile) -> Result<Self, String> {
        let pick = |f: fn(&Profile) -> Option<LatencyDist>| {
            model
                .and_then(f)
                .or_else(|| f(defaults))
                .unwrap_or_default()
        };
        let ttft = pick(|p| p.ttft_ms);
        let tpot = pick(|p| p.tpot_ms);
        ttft.validate("ttft_ms")?;
        tpot.validate("tpot_ms")?;
        let error_rate = model
            .and_then(|p| p.error_rate)
            .or(defaults.error_rate)
            .unwrap_or(0.0);
        if !(0.0..=1.0).contains(&error_rate) {
            return Err(format!(
                "error_rate: must be within 0..=1, got {error_rate}"
            ));
        }
        let spec = model
            .and_then(|p| p.error_fault.as_deref())
            .or(defaults.error_fault.as_deref())
            .unwrap_or("500");
        let error_fault = spec
            .parse::<Fault>()
            .map_err(|e| format!("error_fault: {e}"))?;
        let output_tokens = model
            .and_then(|p| p.output_tokens)
            .or(defaults.output_tokens)
            .unwrap_or(DEFAULT_OUTPUT_TOKENS);
        Ok(Self {
            ttft,
            tpot,
            output_tokens,
            error_rate,
            error_fault,
        })
    }

    /// Built-in zeros, used when a configured profile is invalid (after logging why).
    pub(crate) fn zero() -> Self {
        Self {
            ttft: LatencyDist::default(),
            tpot: LatencyDist::default(),
            output_tokens: DEFAULT_OUTPUT_TOKENS,
            error_rate: 0.0,
            error_fault: Fault::Internal,
        }
    }
}

/// One injectable failure. Parsed from the spec strings of `x-sim-fault`, the control API and
/// `error_fault`; `Display` gives the spec back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `400`: invalid request in the provider's shape.
    BadRequest,
    /// `401`: bad credentials.
    Unauthorized,
    /// `403`: permission denied.
    Forbidden,
    /// `404`: model not found.
    NotFound,
    /// `500`
    Internal,
    /// `502`
    BadGateway,
    /// `503`
    Unavailable,
    /// `504`
    GatewayTimeout,
    /// `529`: Anthropic overloaded_error; 503 overloaded elsewhere.
    Overloaded,
    /// `429` / `429:SECS`: rate limited, retry after SECS (default 1).
    RateLimited { retry_after_secs: u32 },
    /// `quota`: out of quota / spend limit (not worth retrying).
    Quota,
    /// `context`: prompt longer than the context window.
    ContextLength,
    /// `hang`: accept and never answer.
    Hang,
    /// `reset`: headers, then the connection drops.
    Reset,
    /// `cut:N`: N content chunks, then the connection drops without a terminator.
    Cut { chunks: u32 },
    /// `malformed`: 200 with invalid JSON (stream: the first frame).
    Malformed,
    /// `stream-error`: the provider's in-stream error after 2 chunks.
    StreamError,
    /// `bad-json`: a normal 200 answer whose JSON-mode content is not valid JSON (or, for a tool
    /// call, arguments that miss the schema) — a model that ignored the format.
    BadJson,
    /// `tool-index`: a hostile stream whose first chunk is a tool call at index 4294967295
    /// (Anthropic: a content block at that index; Gemini, which has no index on the wire:
    /// 1024 function calls in one frame). Complete answers are unaffected.
    ToolIndex,
    /// `endless`: a 200 whose body never ends (complete: JSON that never closes; stream: one
    /// `data:` line that never ends), until the client hangs up.
    Endless,
    /// `big-event:KIB`: the answer padded with KIB KiB of JSON whitespace (stream: inside its
    /// first content event; complete: inside the body). Still valid, only large.
    BigEvent { kib: u32 },
    /// `redirect`: 307 to the same simulator under another host name (127.0.0.1 ⇄ localhost),
    /// path `/_sim/redirected`, which counts whoever follows it (`/_sim/stats`).
    Redirect,
}

impl Fault {
    /// The fault as an HTTP error response, if it is one. `stream-error` on a non-streaming
    /// request becomes the overload error that the stream would have carried.
    pub(crate) fn http_error(self, stream: bool) -> Option<Fault> {
        match self {
            Fault::Hang
            | Fault::Reset
            | Fault::Cut { .. }
            | Fault::Malformed
            | Fault::BadJson
            | Fault::ToolIndex
            | Fault::Endless
            | Fault::BigEvent { .. }
            | Fault::Redirect => None,
            Fault::StreamError if stream => None,
            Fault::StreamError => Some(Fault::Overloaded),
            other => Some(other),
        }
    }
}

impl FromStr for Fault {
    type Err = SimError;

    fn from_str(s: &str) -> Result<Self, SimError> {
        let bad = || SimError::BadFault(s.to_owned());
        let spec = s.trim();
        let fault = match spec {
            "400" => Fault::BadRequest,
            "401" => Fault::Unauthorized,
            "403" => Fault::Forbidden,
            "404" => Fault::NotFound,
            "500" => Fault::Internal,
            "502" => Fault::BadGateway,
            "503" => Fault::Unavailable,
            "504" => Fault::GatewayTimeout,
            "529" => Fault::Overloaded,
            "429" => Fault::RateLimited {
                retry_after_secs: 1,
            },
            "quota" => Fault::Quota,
            "context" => Fault::ContextLength,
            "hang" => Fault::Hang,
            "reset" => Fault::Reset,
            "malformed" => Fault::Malformed,
            "stream-error" => Fault::StreamError,
            "bad-json" => Fault::BadJson,
            "tool-index" => Fault::ToolIndex,
            "endless" => Fault::Endless,
            "redirect" => Fault::Redirect,
            _ => match spec.split_once(':') {
                Some(("429", secs)) => Fault::RateLimited {
                    retry_after_secs: secs.parse().map_err(|_| bad())?,
                },
                Some(("cut", n)) => Fault::Cut {
                    chunks: n.parse().map_err(|_| bad())?,
                },
                // Up to 1 GiB: enough to cross any sane bound, small enough to generate.
                Some(("big-event", kib)) => match kib.parse() {
                    Ok(kib @ 1..=1_048_576) => Fault::BigEvent { kib },
                    _ => return Err(bad()),
                },
                _ => return Err(bad()),
            },
        };
        Ok(fault)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::BadRequest => f.write_str("400"),
            Fault::Unauthorized => f.write_str("401"),
            Fault::Forbidden => f.write_str("403"),
            Fault::NotFound => f.write_str("404"),
            Fault::Internal => f.write_str("500"),
            Fault::BadGateway => f.write_str("502"),
            Fault::Unavailable => f.write_str("503"),
            Fault::GatewayTimeout => f.write_str("504"),
            Fault::Overloaded => f.write_str("529"),
            Fault::RateLimited { retry_after_secs } => write!(f, "429:{retry_after_secs}"),
            Fault::Quota => f.write_str("quota"),
            Fault::ContextLength => f.write_str("context"),
            Fault::Hang => f.write_str("hang"),
            Fault::Reset => f.write_str("reset"),
            Fault::Cut { chunks } => write!(f, "cut:{chunks}"),
            Fault::Malformed => f.write_str("malformed"),
            Fault::StreamError => f.write_str("stream-error"),
            Fault::BadJson => f.write_str("bad-json"),
            Fault::ToolIndex => f.write_str("tool-index"),
            Fault::Endless => f.write_str("endless"),
            Fault::BigEvent { kib } => write!(f, "big-event:{kib}"),
            Fault::Redirect => f.write_str("redirect"),
        }
    }
}

/// How a scripted fault fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultMode {
    /// Each request fails with this probability (0..=1), until cleared.
    Rate(f64),
    /// The next N requests fail, then the fault is gone.
    Count(u32),
}

impl FaultMode {
    pub(crate) fn validate(self) -> Result<Self, SimError> {
        match self {
            FaultMode::Rate(p) if !(0.0..=1.0).contains(&p) => Err(SimError::BadRate(p)),
            FaultMode::Count(0) => Err(SimError::ZeroCount),
            ok => Ok(ok),
        }
    }
}

/// Faults scripted at run time, keyed by model id (`*` = every model). One entry per key:
/// scripting a key again replaces its fault.
#[derive(Debug, Default)]
pub(crate) struct FaultTable {
    /// Fast path: most requests find the table empty without taking the lock.
    active: AtomicBool,
    entries: Mutex<HashMap<String, (Fault, FaultMode)>>,
}

impl FaultTable {
    pub(crate) fn set(&self, model: &str, fault: Fault, mode: FaultMode) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.insert(model.to_owned(), (fault, mode));
        self.active.store(true, Ordering::Release);
    }

    pub(crate) fn clear(&self) -> usize {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let n = entries.len();
        entries.clear();
        self.active.store(false, Ordering::Release);
        n
    }

    /// The scripted fault for this request, if one fires: the model's own entry first, then `*`.
    pub(crate) fn draw(&self, model: &str, rng: &mut SplitMix64) -> Option<Fault> {
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut fired = None;
        for key in [model, "*"] {
            let Some((fault, mode)) = entries.get_mut(key) else {
                continue;
            };
            let fault = *fault;
            match mode {
                FaultMode::Count(n) => {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        entries.remove(key);
                    }
                    fired = Some(fault);
                }
                FaultMode::Rate(p) => {
                    if rng.next_f64() < *p {
                        fired = Some(fault);
                    }
                }
            }
            if fired.is_some() {
                break;
            }
        }
        if entries.is_empty() {
            self.active.store(false, Ordering::Release);
        }
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_specs_round_trip() {
        for spec in [
            "400",
            "401",
            "403",
            "404",
            "500",
            "502",
            "503",
            "504",
            "529",
            "429:7",
            "quota",
            "context",
            "hang",
            "reset",
            "cut:3",
            "malformed",
            "stream-error",
            "bad-json",
            "tool-index",
            "endless",
            "big-event:2048",
            "redirect",
        ] {
            let fault: Fault = spec.parse().unwrap();
            assert_eq!(fault.to_string(), spec);
        }
        assert_eq!(
            "429".parse::<Fault>().unwrap(),
            Fault::RateLimited {
                retry_after_secs: 1
            }
        );
        assert!("418".parse::<Fault>().is_err());
        assert!("cut:x".parse::<Fault>().is_err());
        assert!("big-event:0".parse::<Fault>().is_err());
        assert!("big-event:99999999".parse::<Fault>().is_err());
    }

    #[test]
    fn splitmix_is_reproducible_and_latency_truncated() {
        let mut a = SplitMix64::new(7);
        let mut b = SplitMix64::new(7);
        assert_eq!(a.next_u64(), b.next_u64());
        let d = LatencyDist {
            mean: -5.0,
            stddev: 0.0,
            ..Default::default()
        };
        assert_eq!(d.sample(&mut a), Duration::ZERO);
        let d = LatencyDist {
            mean: 10.0,
            stddev: 3.0,
            ..Default::default()
        };
        let total: f64 = (0..2000)
            .map(|_| d.sample(&mut a).as_secs_f64() * 1000.0)
            .sum();
        assert!((total / 2000.0 - 10.0).abs() < 0.5);
    }

    /// The issue's heavy-tailed profile: lognormal around 100 ms, 5 % of draws 10× slower.
    fn heavy_tailed() -> LatencyDist {
        LatencyDist {
            mean: 100.0,
            stddev: 30.0,
            dist: crate::Dist::Lognormal,
            slow_share: 0.05,
            slow_factor: 10.0,
        }
    }

    #[test]
    fn the_slow_mode_takes_its_share_within_a_binomial_bound() {
        const N: u32 = 10_000;
        let d = heavy_tailed();
        let mut rng = SplitMix64::new(42);
        let draws: Vec<f64> = (0..N)
            .map(|_| d.sample(&mut rng).as_secs_f64() * 1000.0)
            .collect();
        // A fast draw above 400 ms is 4.9 σ of the lognormal away, a slow one below it needs a
        // base under 40 ms (3 σ): 400 ms separates the modes.
        let (slow, fast): (Vec<f64>, Vec<f64>) = draws.iter().partition(|&&ms| ms > 400.0);
        let expected = f64::from(N) * d.slow_share;
        let sd = (expected * (1.0 - d.slow_share)).sqrt();
        let n = slow.len() as f64;
        assert!(
            (n - expected).abs() <= 4.0 * sd,
            "{n} slow draws of {N}, expected {expected} ± {:.0}",
            4.0 * sd
        );
        // The fast mode is the lognormal asked for: its mean, always positive, right-skewed.
        let mean = fast.iter().sum::<f64>() / fast.len() as f64;
        assert!((mean - 100.0).abs() < 2.0, "fast mean {mean}");
        assert!(fast.iter().all(|&ms| ms > 0.0));
        let mut sorted = fast.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        assert!(median < mean, "median {median} vs mean {mean}");
        // The slow mode is 10× the body: around a second.
        let slow_mean = slow.iter().sum::<f64>() / n;
        assert!(
            (900.0..1100.0).contains(&slow_mean),
            "slow mean {slow_mean}"
        );
        // Without a slow share, no draw is slow.
        let body = LatencyDist {
            slow_share: 0.0,
            ..d
        };
        assert!((0..N).all(|_| body.sample(&mut rng) < Duration::from_millis(400)));
    }

    #[test]
    fn a_lognormal_profile_parses_from_toml_and_bad_ones_are_refused() {
        let p: Profile = toml::from_str(
            r#"ttft_ms = { mean = 100, stddev = 30, dist = "lognormal", slow_share = 0.05, slow_factor = 10 }
tpot_ms = { mean = 5 }"#,
        )
        .unwrap();
        let ttft = p.ttft_ms.unwrap();
        assert_eq!(ttft.dist, crate::Dist::Lognormal);
        assert_eq!((ttft.mean, ttft.stddev), (100.0, 30.0));
        assert_eq!((ttft.slow_share, ttft.slow_factor), (0.05, 10.0));
        let tpot = p.tpot_ms.unwrap();
        assert_eq!((tpot.dist, tpot.slow_share), (crate::Dist::Normal, 0.0));
        assert_eq!(tpot.slow_factor, 10.0, "the default factor");
        assert!(Resolved::merge(Some(&p), &Profile::default()).is_ok());
        // An unknown shape or field is a parse error; out-of-range numbers fail validation.
        assert!(toml::from_str::<Profile>(r#"ttft_ms = { mean = 1, dist = "pareto" }"#).is_err());
        assert!(toml::from_str::<Profile>(r#"ttft_ms = { mean = 1, slow = 0.1 }"#).is_err());
        for (bad, what) in [
            ("ttft_ms = { mean = 1, slow_share = 1.5 }", "slow_share"),
            (
                "ttft_ms = { mean = 1, slow_share = 0.1, slow_factor = 0.5 }",
                "slow_factor",
            ),
            ("tpot_ms = { mean = -1 }", "tpot_ms"),
        ] {
            let p: Profile = toml::from_str(bad).unwrap();
            let err = Resolved::merge(Some(&p), &Profile::default()).unwrap_err();
            assert!(err.contains(what), "{bad}: {err}");
        }
    }

    #[test]
    fn counted_faults_expire_and_wildcard_applies() {
        let table = FaultTable::default();
        let mut rng = SplitMix64::new(1);
        table.set("m", Fault::Internal, FaultMode::Count(2));
        table.set("*", Fault::Quota, FaultMode::Rate(1.0));
        assert_eq!(table.draw("m", &mut rng), Some(Fault::Internal));
        assert_eq!(table.draw("m", &mut rng), Some(Fault::Internal));
        assert_eq!(table.draw("m", &mut rng), Some(Fault::Quota));
        assert_eq!(table.draw("other", &mut rng), Some(Fault::Quota));
        assert_eq!(table.clear(), 1);
        assert_eq!(table.draw("m", &mut rng), None);
    }
}
