//! Technical indicators over one price series: pure functions plus [`analyse`], which runs
//! them all under validated [`Params`] and returns every value unrounded.
//!
//! Conventions (TA-Lib's unless noted, see each function): outputs are aligned with the input,
//! `None` until the window is full. Means are computed per window with a compensated sum of
//! deviations from the window's first value, so a constant window yields that value exactly
//! and σ exactly 0; this is O(len × window), hence [`MAX_WINDOW`]. Never rounds, never
//! panics, never reads anything but its arguments.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::series::{InputError, SymbolSeries, validate_series};

/// Largest window accepted by [`Params::validate`]; bounds the per-window work.
pub const MAX_WINDOW: usize = 1000;
/// Most windows accepted in each of `Params::sma` and `Params::ema`.
pub const MAX_WINDOWS: usize = 8;

/// Neumaier-compensated sum: the error does not grow with the number of terms.
fn sum(xs: impl IntoIterator<Item = f64>) -> f64 {
    let (mut s, mut c) = (0.0_f64, 0.0_f64);
    for x in xs {
        let t = s + x;
        c += if s.abs() >= x.abs() {
            (s - t) + x
        } else {
            (x - t) + s
        };
        s = t;
    }
    s + c
}

/// Mean as `x₀ + Σ(xᵢ − x₀)/n`: exact for a constant slice, and the differences of nearby
/// prices are exact (Sterbenz). Callers never pass an empty slice.
pub(crate) fn mean(xs: &[f64]) -> f64 {
    let x0 = xs.first().copied().unwrap_or(f64::NAN);
    x0 + sum(xs.iter().map(|x| x - x0)) / xs.len() as f64
}

/// Sum of squared deviations from `m`.
fn sum_sq_dev(xs: &[f64], m: f64) -> f64 {
    sum(xs.iter().map(|x| (x - m) * (x - m)))
}

fn rolling(x: &[f64], n: usize, f: impl Fn(&[f64]) -> f64) -> Vec<Option<f64>> {
    let mut out = vec![None; x.len()];
    if n == 0 {
        return out;
    }
    for (o, w) in out.iter_mut().skip(n - 1).zip(x.windows(n)) {
        *o = Some(f(w));
    }
    out
}

/// Simple returns `(cₜ − cₜ₋₁)/cₜ₋₁` (one rounding when the difference is exact, unlike
/// `cₜ/cₜ₋₁ − 1`); index 0 is `None`.
pub fn returns(close: &[f64]) -> Vec<Option<f64>> {
    let mut out = vec![None; close.len()];
    for (o, w) in out.iter_mut().skip(1).zip(close.windows(2)) {
        *o = Some((w[1] - w[0]) / w[0]);
    }
    out
}

/// Log returns `ln(cₜ/cₜ₋₁)`, computed as `ln_1p` of the simple return, which stays
/// accurate for the small returns of real prices; index 0 is `None`.
pub fn log_returns(close: &[f64]) -> Vec<Option<f64>> {
    returns(close)
        .into_iter()
        .map(|r| r.map(f64::ln_1p))
        .collect()
}

/// Simple moving average; first value at index `n − 1`.
pub fn sma(x: &[f64], n: usize) -> Vec<Option<f64>> {
    rolling(x, n, mean)
}

/// Exponential moving average, α = 2/(n+1), seeded at index `n − 1` with the SMA of the
/// first `n` values (TA-Lib's default), then `e += α·(x − e)` (TA-Lib's form, which keeps a
/// constant input exactly constant).
pub fn ema(x: &[f64], n: usize) -> Vec<Option<f64>> {
    let mut out = vec![None; x.len()];
    if n == 0 || x.len() < n {
        return out;
    }
    let alpha = 2.0 / (n as f64 + 1.0);
    let mut e = mean(&x[..n]);
    out[n - 1] = Some(e);
    for (o, &v) in out.iter_mut().zip(x).skip(n) {
        e += alpha * (v - e);
        *o = Some(e);
    }
    out
}

/// Wilder smoothing of `v[first..]`: the seed at `first + n − 1` is the mean of
/// `v[first..first + n]`, then `s = (s·(n − 1) + v)/n`.
fn wilder(v: &[f64], n: usize, first: usize) -> Vec<Option<f64>> {
    let mut out = vec![None; v.len()];
    let Some(seed_end) = first.checked_add(n) else {
        return out;
    };
    if n == 0 || v.len() < seed_end {
        return out;
    }
    let nf = n as f64;
    let mut s = mean(&v[first..seed_end]);
    out[seed_end - 1] = Some(s);
    for (o, &x) in out.iter_mut().zip(v).skip(seed_end) {
        s = (s * (nf - 1.0) + x) / nf;
        *o = Some(s);
    }
    out
}

/// Wilder's RSI. Changes start at index 1; the first averages (index `n`) are the simple
/// means of the first `n` gains and losses, then Wilder smoothing. RSI is computed as
/// `100·G/(G+L)`, algebraically `100 − 100/(1+RS)` but without dividing by a zero loss
/// (TA-Lib's form): all gains → 100, all losses → 0; flat (G = L = 0) → 50 by our convention
/// (TA-Lib returns 0 there; "no movement" is neither overbought nor oversold).
pub fn rsi(close: &[f64], n: usize) -> Vec<Option<f64>> {
    let change = |i: usize| if i == 0 { 0.0 } else { close[i] - close[i - 1] };
    let gains: Vec<f64> = (0..close.len()).map(|i| change(i).max(0.0)).collect();
    let losses: Vec<f64> = (0..close.len()).map(|i| (-change(i)).max(0.0)).collect();
    let avg_gain = wilder(&gains, n, 1);
    let avg_loss = wilder(&losses, n, 1);
    avg_gain
        .iter()
        .zip(&avg_loss)
        .map(|(g, l)| {
            let (g, l) = ((*g)?, (*l)?);
            Some(if g + l == 0.0 {
                50.0
            } else {
                100.0 * (g / (g + l))
            })
        })
        .collect()
}

/// MACD line, signal and histogram, aligned with the input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MacdSeries {
    pub macd: Vec<Option<f64>>,
    pub signal: Vec<Option<f64>>,
    pub histogram: Vec<Option<f64>>,
}

/// MACD = EMA(fast) − EMA(slow), both the standalone [`ema`] (StockCharts' definition); the
/// signal is the EMA of the MACD line seeded with the SMA of its first `signal` defined
/// values. For (12, 26, 9) the line starts at index 25 and the signal and histogram at 33,
/// TA-Lib's alignment. (TA-Lib's `TA_MACD` re-seeds its fast EMA at index 25, so its first
/// values differ slightly from EMA12 − EMA26; the gap decays by 11/13 a bar.)
pub fn macd(close: &[f64], fast: usize, slow: usize, signal: usize) -> MacdSeries {
    let line: Vec<Option<f64>> = ema(close, fast)
        .into_iter()
        .zip(ema(close, slow))
        .map(|(f, s)| Some(f? - s?))
        .collect();
    let mut sig = vec![None; close.len()];
    if let Some(start) = line.iter().position(Option::is_some) {
        let defined: Vec<f64> = line[start..].iter().flatten().copied().collect();
        for (o, v) in sig[start..].iter_mut().zip(ema(&defined, signal)) {
            *o = v;
        }
    }
    let histogram = line
        .iter()
        .zip(&sig)
        .map(|(m, s)| Some((*m)? - (*s)?))
        .collect();
    MacdSeries {
        macd: line,
        signal: sig,
        histogram,
    }
}

/// Bollinger bands and their derived ratios, aligned with the input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BollingerSeries {
    pub middle: Vec<Option<f64>>,
    pub upper: Vec<Option<f64>>,
    pub lower: Vec<Option<f64>>,
    /// `(close − lower)/(upper − lower)`; `None` where the bands have zero width.
    pub percent_b: Vec<Option<f64>>,
    /// `(upper − lower)/middle` as a fraction (Bollinger's definition; StockCharts shows ×100).
    pub bandwidth: Vec<Option<f64>>,
}

/// Bollinger bands: middle = SMA(n), bands = middle ± k·σ with the **population** σ
/// (divide by n), as TA-Lib and StockCharts. `percent_b` and `bandwidth` are computed from
/// σ directly (`0.5 + (c − m)/(2kσ)`, `2kσ/m`), not from the rounded bands.
pub fn bollinger(close: &[f64], n: usize, k: f64) -> BollingerSeries {
    let len = close.len();
    let mut b = BollingerSeries {
        middle: vec![None; len],
        upper: vec![None; len],
        lower: vec![None; len],
        percent_b: vec![None; len],
        bandwidth: vec![None; len],
    };
    if n == 0 {
        return b;
    }
    for (w, i) in close.windows(n).zip(n - 1..) {
        let m = mean(w);
        let width = k * (sum_sq_dev(w, m) / n as f64).sqrt();
        b.middle[i] = Some(m);
        b.upper[i] = Some(m + width);
        b.lower[i] = Some(m - width);
        b.bandwidth[i] = Some(2.0 * width / m);
        b.percent_b[i] = (width > 0.0).then(|| 0.5 + (close[i] - m) / (2.0 * width));
    }
    b
}

/// True range: `TR₀ = h₀ − l₀`, then `max(h − l, |h − cₜ₋₁|, |l − cₜ₋₁|)`. The output has
/// the length of the shortest input.
pub fn true_range(high: &[f64], low: &[f64], close: &[f64]) -> Vec<f64> {
    let len = high.len().min(low.len()).min(close.len());
    (0..len)
        .map(|i| {
            let range = high[i] - low[i];
            if i == 0 {
                return range;
            }
            let prev = close[i - 1];
            range.max((high[i] - prev).abs()).max((low[i] - prev).abs())
        })
        .collect()
}

/// Wilder's ATR with TA-Lib's seeding: the first ATR, at index `n`, is the mean of
/// `TR₁..=TRₙ` (TR₀ has no previous close and is left out), then `(prev·(n−1) + TR)/n`.
/// StockCharts instead seeds at index `n − 1` with `TR₀..TRₙ₋₁`.
pub fn atr(high: &[f64], low: &[f64], close: &[f64], n: usize) -> Vec<Option<f64>> {
    wilder(&true_range(high, low, close), n, 1)
}

/// Annualised realised volatility: sample standard deviation (n − 1) of the log returns
/// × √`periods_per_year`. `None` with fewer than two returns.
pub fn realised_volatility(close: &[f64], periods_per_year: f64) -> Option<f64> {
    let lr: Vec<f64> = log_returns(close).into_iter().flatten().collect();
    if lr.len() < 2 {
        return None;
    }
    let var = sum_sq_dev(&lr, mean(&lr)) / (lr.len() - 1) as f64;
    Some(var.sqrt() * periods_per_year.sqrt())
}

/// Largest peak-to-trough fall, as a positive fraction of the peak.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Drawdown {
    pub value: f64,
    pub peak_index: usize,
    pub trough_index: usize,
}

/// Maximum drawdown `(peak − trough)/peak`. The peak is the latest bar at the running high
/// before the trough; the trough is the first bar reaching the largest fall. A series that
/// never falls gives value 0 at indices 0, 0.
pub fn max_drawdown(close: &[f64]) -> Drawdown {
    let mut best = Drawdown {
        value: 0.0,
        peak_index: 0,
        trough_index: 0,
    };
    let mut peak = 0;
    for (i, &c) in close.iter().enumerate() {
        if c >= close[peak] {
            peak = i;
        }
        let dd = (close[peak] - c) / close[peak];
        if dd > best.value {
            best = Drawdown {
                value: dd,
                peak_index: peak,
                trough_index: i,
            };
        }
    }
    best
}

/// Windows and constants for [`analyse`]. Every field is optional in JSON.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    pub sma: Vec<usize>,
    pub ema: Vec<usize>,
    pub rsi: usize,
    /// (fast, slow, signal).
    pub macd: (usize, usize, usize),
    /// (window, k).
    pub bollinger: (usize, f64),
    pub atr: usize,
    pub periods_per_year: f64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            sma: vec![20, 50],
            ema: vec![12, 26],
            rsi: 14,
            macd: (12, 26, 9),
            bollinger: (20, 2.0),
            atr: 14,
            periods_per_year: 252.0,
        }
    }
}

impl Params {
    /// Windows in 1..=[`MAX_WINDOW`], at most [`MAX_WINDOWS`] SMA/EMA windows, MACD
    /// fast < slow, Bollinger k and `periods_per_year` finite and > 0. Paths `params.…`.
    pub fn validate(&self) -> Result<(), InputError> {
        let window = |path: String, n: usize| {
            if (1..=MAX_WINDOW).contains(&n) {
                Ok(())
            } else {
                Err(InputError::new(
                    path,
                    format!("window must be between 1 and {MAX_WINDOW}, found {n}"),
                ))
            }
        };
        for (name, list) in [("sma", &self.sma), ("ema", &self.ema)] {
            if list.len() > MAX_WINDOWS {
                return Err(InputError::new(
                    format!("params.{name}"),
                    format!("at most {MAX_WINDOWS} windows, found {}", list.len()),
                ));
            }
            for (i, &n) in list.iter().enumerate() {
                window(format!("params.{name}[{i}]"), n)?;
            }
        }
        window("params.rsi".into(), self.rsi)?;
        let (fast, slow, signal) = self.macd;
        window("params.macd[0]".into(), fast)?;
        window("params.macd[1]".into(), slow)?;
        window("params.macd[2]".into(), signal)?;
        if fast >= slow {
            return Err(InputError::new(
                "params.macd",
                format!("fast period {fast} must be shorter than slow period {slow}"),
            ));
        }
        window("params.bollinger[0]".into(), self.bollinger.0)?;
        let positive = |path: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(InputError::new(
                    path,
                    format!("must be finite and > 0, found {v}"),
                ))
            }
        };
        positive("params.bollinger[1]", self.bollinger.1)?;
        window("params.atr".into(), self.atr)?;
        positive("params.periods_per_year", self.periods_per_year)
    }

    /// Bars each indicator needs for its first value, as (label, bars).
    fn requirements(&self) -> Vec<(String, usize)> {
        let (fast, slow, signal) = self.macd;
        let mut r: Vec<(String, usize)> = Vec::new();
        r.extend(self.sma.iter().map(|&n| (format!("SMA({n})"), n)));
        r.extend(self.ema.iter().map(|&n| (format!("EMA({n})"), n)));
        r.push((format!("RSI({})", self.rsi), self.rsi + 1));
        r.push((
            format!("MACD({fast}, {slow}, {signal})"),
            fast.max(slow) + signal - 1,
        ));
        let (bn, bk) = self.bollinger;
        r.push((format!("Bollinger({bn}, {bk})"), bn));
        r.push((format!("ATR({})", self.atr), self.atr + 1));
        r
    }
}

/// Latest MACD values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MacdPoint {
    pub macd: Option<f64>,
    pub signal: Option<f64>,
    pub histogram: Option<f64>,
}

/// Latest Bollinger values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BollingerPoint {
    pub upper: Option<f64>,
    pub middle: Option<f64>,
    pub lower: Option<f64>,
    pub percent_b: Option<f64>,
    pub bandwidth: Option<f64>,
}

/// Maximum drawdown with the timestamps of its peak and trough.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DrawdownPoint {
    pub value: f64,
    pub peak_t: i64,
    pub trough_t: i64,
}

/// The latest value of every indicator (`None` → JSON null only where undefined: `percent_b`
/// of zero-width bands, volatility with two bars).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latest {
    pub sma: BTreeMap<usize, Option<f64>>,
    pub ema: BTreeMap<usize, Option<f64>>,
    pub rsi: Option<f64>,
    pub macd: MacdPoint,
    pub bollinger: BollingerPoint,
    pub atr: Option<f64>,
    pub realised_volatility: Option<f64>,
    pub max_drawdown: DrawdownPoint,
}

/// Every indicator as a full series aligned with `t`, for charting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndicatorSeries {
    pub t: Vec<i64>,
    pub close: Vec<f64>,
    pub returns: Vec<Option<f64>>,
    pub log_returns: Vec<Option<f64>>,
    pub sma: BTreeMap<usize, Vec<Option<f64>>>,
    pub ema: BTreeMap<usize, Vec<Option<f64>>>,
    pub rsi: Vec<Option<f64>>,
    pub macd: MacdSeries,
    pub bollinger: BollingerSeries,
    pub atr: Vec<Option<f64>>,
}

/// Result of [`analyse`]; full f64 precision throughout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub symbol: String,
    pub params: Params,
    pub bars: usize,
    pub last_t: i64,
    pub last_close: f64,
    pub last_return: Option<f64>,
    /// `(last − first)/first`.
    pub total_return: f64,
    pub latest: Latest,
    pub series: IndicatorSeries,
}

fn last(v: &[Option<f64>]) -> Option<f64> {
    v.last().copied().flatten()
}

/// Validate `series` (paths under `prefix`, e.g. `symbols[0]`) and `p`, check the series is
/// long enough for the most demanding window (`symbols[0].bars: 30 bars are too few for
/// SMA(50), which needs at least 50`), then compute everything.
pub fn analyse(series: &SymbolSeries, p: &Params, prefix: &str) -> Result<Analysis, InputError> {
    p.validate()?;
    validate_series(series, prefix)?;
    let len = series.bars.len();
    if let Some((label, need)) = p
        .requirements()
        .into_iter()
        .reduce(|a, b| if b.1 > a.1 { b } else { a })
        .filter(|(_, need)| *need > len)
    {
        return Err(InputError::new(
            format!("{prefix}.bars"),
            format!("{len} bars are too few for {label}, which needs at least {need}"),
        ));
    }

    let close = series.closes();
    let t = series.timestamps();
    let (first, last_close) = (close[0], close[len - 1]);
    let sma_s: BTreeMap<usize, Vec<Option<f64>>> =
        p.sma.iter().map(|&n| (n, sma(&close, n))).collect();
    let ema_s: BTreeMap<usize, Vec<Option<f64>>> =
        p.ema.iter().map(|&n| (n, ema(&close, n))).collect();
    let (fast, slow, signal) = p.macd;
    let series_out = IndicatorSeries {
        returns: returns(&close),
        log_returns: log_returns(&close),
        rsi: rsi(&close, p.rsi),
        macd: macd(&close, fast, slow, signal),
        bollinger: bollinger(&close, p.bollinger.0, p.bollinger.1),
        atr: atr(&series.highs(), &series.lows(), &close, p.atr),
        sma: sma_s,
        ema: ema_s,
        t: t.clone(),
        close: close.clone(),
    };
    let dd = max_drawdown(&close);
    let s = &series_out;
    let latest = Latest {
        sma: s.sma.iter().map(|(&n, v)| (n, last(v))).collect(),
        ema: s.ema.iter().map(|(&n, v)| (n, last(v))).collect(),
        rsi: last(&s.rsi),
        macd: MacdPoint {
            macd: last(&s.macd.macd),
            signal: last(&s.macd.signal),
            histogram: last(&s.macd.histogram),
        },
        bollinger: BollingerPoint {
            upper: last(&s.bollinger.upper),
            middle: last(&s.bollinger.middle),
            lower: last(&s.bollinger.lower),
            percent_b: last(&s.bollinger.percent_b),
            bandwidth: last(&s.bollinger.bandwidth),
        },
        atr: last(&s.atr),
        realised_volatility: realised_volatility(&close, p.periods_per_year),
        max_drawdown: DrawdownPoint {
            value: dd.value,
            peak_t: t[dd.peak_index],
            trough_t: t[dd.trough_index],
        },
    };
    Ok(Analysis {
        symbol: series.symbol.clone(),
        params: p.clone(),
        bars: len,
        last_t: t[len - 1],
        last_close,
        last_return: last(&s.returns),
        total_return: (last_close - first) / first,
        latest,
        series: series_out,
    })
}

#[cfg(test)]
#[path = "indicators_tests.rs"]
mod tests;
