//! SplitMix64 (Steele, Lea & Flood 2014): a tiny, fast, seedable generator. The simulator uses
//! it for reproducible answers, latencies and faults; the executor for backoff jitter; `new_id`
//! for identifiers. Not for anything secret.

/// A SplitMix64 sequence.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal via Box–Muller.
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]: ln is finite
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// An independent generator for one purpose (text, latency, faults, ids), so that e.g. the
    /// answer text does not change when a latency profile is added.
    pub fn fork(&self, purpose: u64) -> Self {
        Self(mix(self.0 ^ purpose.wrapping_mul(0xD1B5_4A32_D192_ED03)))
    }
}

/// SplitMix64's output function; also used to combine seed parts.
pub fn mix(x: u64) -> u64 {
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
