//! Money is integer picodollars (`i64`): every catalog price is a whole number of them per token,
//! so a key's spend is exactly the sum of its answers' costs, on every store backend. Dollars
//! (`f64`) appear only at the edges: config values in, reports out.

/// Picodollars per USD.
pub const PICO: f64 = 1e12;

/// Dollars (from config or a request) to picodollars, rounded.
pub fn usd_to_pico(usd: f64) -> i64 {
    (usd * PICO).round() as i64
}

/// Picodollars to dollars, for reports.
pub fn pico_to_usd(p: i64) -> f64 {
    p as f64 / PICO
}
