//! Money: integer micro-dollars (1 USD = 1_000_000), prices in micro-dollars per million tokens.
//!
//! `cost = ceil((prompt_tokens * input_price + output_tokens * output_price) / 1_000_000)`,
//! computed in `u128` so it cannot overflow, rounded up so that an estimate never undershoots.

use crate::Candidate;

const PER_MILLION: u128 = 1_000_000;

/// Estimated cost in micro-dollars of `prompt_tokens` in and `output_tokens` out on `candidate`,
/// rounded up (saturates at `u64::MAX`).
pub fn estimate_cost(candidate: &Candidate, prompt_tokens: u32, output_tokens: u32) -> u64 {
    let scaled = u128::from(prompt_tokens) * u128::from(candidate.input_price)
        + u128::from(output_tokens) * u128::from(candidate.output_price);
    u64::try_from(scaled.div_ceil(PER_MILLION)).unwrap_or(u64::MAX)
}

/// [`estimate_cost`] with the candidate's own `prompt_tokens`.
pub fn request_cost(candidate: &Candidate, output_tokens: u32) -> u64 {
    estimate_cost(candidate, candidate.prompt_tokens, output_tokens)
}

/// The largest `max_tokens` for which `estimate_cost(candidate, prompt_tokens, max_tokens)` stays
/// within `budget` micro-dollars; `None` when the prompt alone is over the budget. Output that
/// costs nothing gives `u32::MAX`.
pub fn max_output_within(candidate: &Candidate, prompt_tokens: u32, budget: u64) -> Option<u32> {
    let allowed = u128::from(budget) * PER_MILLION;
    let input = u128::from(prompt_tokens) * u128::from(candidate.input_price);
    let room = allowed.checked_sub(input)?;
    if candidate.output_price == 0 {
        return Some(u32::MAX);
    }
    Some(u32::try_from(room / u128::from(candidate.output_price)).unwrap_or(u32::MAX))
}

/// Parse a decimal USD amount (`"0.05"`, `"2"`, `"$1.25"`) into micro-dollars, exactly (no
/// floats). Digits past the sixth decimal are truncated. `None` for anything else, negatives
/// included.
pub fn parse_usd_micros(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_prefix('$').unwrap_or(s).trim();
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, f),
        None => (s, ""),
    };
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(frac) {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut micros: u64 = 0;
    for i in 0..6 {
        let d = frac.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
        micros = micros * 10 + d;
    }
    whole.checked_mul(1_000_000)?.checked_add(micros)
}

/// Format micro-dollars as `$1.234567`.
pub fn format_usd(micros: u64) -> String {
    format!("${}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::candidate;

    #[test]
    fn cost_rounds_up_and_never_overflows() {
        // gpt-4o-mini: $0.15 / $0.60 per million.
        let c = candidate("m", 150_000, 600_000, 1000);
        assert_eq!(estimate_cost(&c, 1000, 256), 150 + 154); // 153.6 -> 154 (one rounding)
        assert_eq!(estimate_cost(&c, 0, 0), 0);
        assert_eq!(estimate_cost(&c, 1, 0), 1); // 0.15 -> 1
        let huge = candidate("h", u64::MAX, u64::MAX, 1000);
        assert_eq!(estimate_cost(&huge, u32::MAX, u32::MAX), u64::MAX);
        assert_eq!(request_cost(&c, 0), 150);
    }

    #[test]
    fn max_output_is_the_largest_that_fits() {
        let c = candidate("m", 150_000, 600_000, 1000);
        let m = max_output_within(&c, 1000, 1000).unwrap_or_default();
        assert!(estimate_cost(&c, 1000, m) <= 1000);
        assert!(estimate_cost(&c, 1000, m + 1) > 1000);
        assert_eq!(m, 1416);
        assert_eq!(max_output_within(&c, 1000, 149), None);
        assert_eq!(max_output_within(&c, 1000, 150), Some(0));
        let free_out = candidate("f", 1, 0, 1000);
        assert_eq!(max_output_within(&free_out, 10, 1), Some(u32::MAX));
    }

    #[test]
    fn usd_parsing_is_exact() {
        assert_eq!(parse_usd_micros("0.05"), Some(50_000));
        assert_eq!(parse_usd_micros(" $2 "), Some(2_000_000));
        assert_eq!(parse_usd_micros("1.2345678"), Some(1_234_567));
        assert_eq!(parse_usd_micros(".5"), Some(500_000));
        assert_eq!(parse_usd_micros("3."), Some(3_000_000));
        for bad in ["", ".", "-1", "1e3", "abc", "1.2.3", "99999999999999999999"] {
            assert_eq!(parse_usd_micros(bad), None, "{bad}");
        }
        assert_eq!(format_usd(1_234_567), "$1.234567");
        assert_eq!(format_usd(50), "$0.000050");
    }
}
