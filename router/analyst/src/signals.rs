//! Rule-based signals read off an [`Analysis`], and a one-word stance voted from them.
//!
//! Deterministic and documented: every threshold is a constant below, every rule a few lines.
//! Reads only the analysis it is given; never recomputes an indicator, never predicts.
//!
//! Rules, in output order (a rule whose inputs are undefined emits nothing):
//! - trend `close_vs_sma`: close above / below the longest SMA → bullish / bearish.
//! - trend `sma_alignment`: shortest SMA above / below the longest (needs two windows).
//! - momentum `rsi`: RSI > [`RSI_OVERBOUGHT`] → bearish (overbought), < [`RSI_OVERSOLD`] →
//!   bullish (oversold), otherwise neutral.
//! - crossover `macd_cross`: MACD crossed its signal on the last bar.
//! - crossover `golden_cross` / `death_cross`: shortest SMA crossed the longest on the last bar.
//! - volatility `bollinger_upper` / `bollinger_lower`: close above the upper band → bearish
//!   (stretched, the mean-reversion reading), below the lower band → bullish.
//!
//! A cross "on the last bar" means `a − b` went from ≤ 0 to > 0 (up) or from ≥ 0 to < 0
//! (down) between the previous bar and the last one. Ties are neutral: a close exactly on an
//! SMA or band emits a neutral signal or none.

use serde::Serialize;

use super::indicators::Analysis;

/// RSI above this is overbought.
pub const RSI_OVERBOUGHT: f64 = 70.0;
/// RSI below this is oversold.
pub const RSI_OVERSOLD: f64 = 30.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalKind {
    Trend,
    Momentum,
    Volatility,
    Crossover,
}

impl SignalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SignalKind::Trend => "trend",
            SignalKind::Momentum => "momentum",
            SignalKind::Volatility => "volatility",
            SignalKind::Crossover => "crossover",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Bullish,
    Bearish,
    Neutral,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Bullish => "bullish",
            Direction::Bearish => "bearish",
            Direction::Neutral => "neutral",
        }
    }

    /// Bullish when `a > b`, bearish when `a < b`, neutral when equal.
    fn of(a: f64, b: f64) -> Self {
        if a > b {
            Direction::Bullish
        } else if a < b {
            Direction::Bearish
        } else {
            Direction::Neutral
        }
    }
}

/// One rule's reading. Serialises as `{"kind":"trend","name":…,"direction":"bullish",…}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Signal {
    pub kind: SignalKind,
    pub name: &'static str,
    pub direction: Direction,
    pub detail: String,
}

fn signal(kind: SignalKind, name: &'static str, direction: Direction, detail: String) -> Signal {
    Signal {
        kind,
        name,
        direction,
        detail,
    }
}

/// The last two values of a series, when both are defined.
fn last_two(v: &[Option<f64>]) -> Option<(f64, f64)> {
    match v {
        [.., Some(prev), Some(last)] => Some((*prev, *last)),
        _ => None,
    }
}

/// Direction of a cross of `a` over `b` between the previous bar and the last one.
fn cross(a: (f64, f64), b: (f64, f64)) -> Option<Direction> {
    let (before, after) = (a.0 - b.0, a.1 - b.1);
    if before <= 0.0 && after > 0.0 {
        Some(Direction::Bullish)
    } else if before >= 0.0 && after < 0.0 {
        Some(Direction::Bearish)
    } else {
        None
    }
}

/// Every rule of the module header, in that order.
pub fn signals(a: &Analysis) -> Vec<Signal> {
    let mut out = Vec::new();
    let close = a.last_close;
    let short = a.series.sma.iter().next();
    let long = a.series.sma.iter().next_back();

    if let Some((&n, v)) = long
        && let Some(sma) = v.last().copied().flatten()
    {
        let dir = Direction::of(close, sma);
        let rel = relation(dir);
        out.push(signal(
            SignalKind::Trend,
            "close_vs_sma",
            dir,
            format!("close {close} is {rel} SMA({n}) {sma}"),
        ));
    }

    let pair = short.zip(long).filter(|((s, _), (l, _))| s < l);
    if let Some(((&s, sv), (&l, lv))) = pair
        && let (Some(sp), Some(lp)) = (last_two(sv), last_two(lv))
    {
        let dir = Direction::of(sp.1, lp.1);
        let rel = relation(dir);
        out.push(signal(
            SignalKind::Trend,
            "sma_alignment",
            dir,
            format!("SMA({s}) {} is {rel} SMA({l}) {}", sp.1, lp.1),
        ));
    }

    if let Some(rsi) = a.latest.rsi {
        let n = a.params.rsi;
        let (dir, zone) = if rsi > RSI_OVERBOUGHT {
            (
                Direction::Bearish,
                format!("overbought (> {RSI_OVERBOUGHT})"),
            )
        } else if rsi < RSI_OVERSOLD {
            (Direction::Bullish, format!("oversold (< {RSI_OVERSOLD})"))
        } else {
            (
                Direction::Neutral,
                format!("between {RSI_OVERSOLD} and {RSI_OVERBOUGHT}"),
            )
        };
        out.push(signal(
            SignalKind::Momentum,
            "rsi",
            dir,
            format!("RSI({n}) {rsi} is {zone}"),
        ));
    }

    let m = &a.series.macd;
    if let (Some(line), Some(sig)) = (last_two(&m.macd), last_two(&m.signal))
        && let Some(dir) = cross(line, sig)
    {
        let way = crossed(dir);
        out.push(signal(
            SignalKind::Crossover,
            "macd_cross",
            dir,
            format!(
                "MACD {} crossed {way} its signal {} on the last bar",
                line.1, sig.1
            ),
        ));
    }

    if let Some(((&s, sv), (&l, lv))) = pair
        && let (Some(sp), Some(lp)) = (last_two(sv), last_two(lv))
        && let Some(dir) = cross(sp, lp)
    {
        let name = match dir {
            Direction::Bullish => "golden_cross",
            _ => "death_cross",
        };
        let way = crossed(dir);
        out.push(signal(
            SignalKind::Crossover,
            name,
            dir,
            format!(
                "SMA({s}) {} crossed {way} SMA({l}) {} on the last bar",
                sp.1, lp.1
            ),
        ));
    }

    let b = &a.latest.bollinger;
    if let (Some(upper), Some(lower)) = (b.upper, b.lower) {
        let n = a.params.bollinger.0;
        if close > upper {
            out.push(signal(
                SignalKind::Volatility,
                "bollinger_upper",
                Direction::Bearish,
                format!("close {close} is above the upper Bollinger band ({n}) {upper}"),
            ));
        } else if close < lower {
            out.push(signal(
                SignalKind::Volatility,
                "bollinger_lower",
                Direction::Bullish,
                format!("close {close} is below the lower Bollinger band ({n}) {lower}"),
            ));
        }
    }
    out
}

fn relation(dir: Direction) -> &'static str {
    match dir {
        Direction::Bullish => "above",
        Direction::Bearish => "below",
        Direction::Neutral => "equal to",
    }
}

fn crossed(dir: Direction) -> &'static str {
    match dir {
        Direction::Bullish => "above",
        _ => "below",
    }
}

/// One vote per signal: bullish +1, bearish −1, neutral 0. A positive total is
/// `"bullish"`, a negative one `"bearish"`, zero (or no signals) `"neutral"`.
pub fn stance(signals: &[Signal]) -> &'static str {
    let score: i64 = signals
        .iter()
        .map(|s| match s.direction {
            Direction::Bullish => 1,
            Direction::Bearish => -1,
            Direction::Neutral => 0,
        })
        .sum();
    match score.cmp(&0) {
        std::cmp::Ordering::Greater => "bullish",
        std::cmp::Ordering::Less => "bearish",
        std::cmp::Ordering::Equal => "neutral",
    }
}

#[cfg(test)]
#[path = "signals_tests.rs"]
mod tests;
