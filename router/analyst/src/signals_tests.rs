//! Tests for `signals`, on analyses of hand-built price paths.

use super::*;
use crate::indicators::{Params, analyse};
use crate::series::flat_bars;

fn analysis(closes: &[f64], p: &Params) -> Analysis {
    let series = flat_bars(closes);
    analyse(&series, p, "symbols[0]").unwrap()
}

fn summary(s: &[Signal]) -> Vec<(&'static str, &'static str, &'static str)> {
    s.iter()
        .map(|s| (s.kind.as_str(), s.name, s.direction.as_str()))
        .collect()
}

/// 59 bars flat at 100, then one bar at `last`.
fn flat_then(last: f64) -> Vec<f64> {
    let mut c = vec![100.0; 59];
    c.push(last);
    c
}

#[test]
fn a_jump_up_fires_every_rule() {
    // Last bar 130: close > SMA50 and SMA20 (101.5) > SMA50 (100.6); both SMAs were 100 the
    // bar before, so SMA20 − SMA50 went 0 → +0.9: golden cross. Gains only → RSI 100 >
    // 70. MACD line 30·(2/13 − 2/27) ≈ 2.393 vs signal 0.2·2.393: crossed up from 0 = 0.
    // Bollinger(20): one outlier in 20 sits 19/√20 ≈ 4.25σ from the mean > 2σ.
    let a = analysis(&flat_then(130.0), &Params::default());
    let s = signals(&a);
    assert_eq!(
        summary(&s),
        vec![
            ("trend", "close_vs_sma", "bullish"),
            ("trend", "sma_alignment", "bullish"),
            ("momentum", "rsi", "bearish"),
            ("crossover", "macd_cross", "bullish"),
            ("crossover", "golden_cross", "bullish"),
            ("volatility", "bollinger_upper", "bearish"),
        ]
    );
    assert_eq!(s[0].detail, "close 130 is above SMA(50) 100.6");
    assert_eq!(s[2].detail, "RSI(14) 100 is overbought (> 70)");
    // +1 +1 −1 +1 +1 −1 = +2.
    assert_eq!(stance(&s), "bullish");
}

#[test]
fn a_jump_down_mirrors_every_rule() {
    let s = signals(&analysis(&flat_then(70.0), &Params::default()));
    assert_eq!(
        summary(&s),
        vec![
            ("trend", "close_vs_sma", "bearish"),
            ("trend", "sma_alignment", "bearish"),
            ("momentum", "rsi", "bullish"),
            ("crossover", "macd_cross", "bearish"),
            ("crossover", "death_cross", "bearish"),
            ("volatility", "bollinger_lower", "bullish"),
        ]
    );
    assert_eq!(stance(&s), "bearish");
}

#[test]
fn a_flat_series_is_neutral() {
    let s = signals(&analysis(&[100.0; 60], &Params::default()));
    assert_eq!(
        summary(&s),
        vec![
            ("trend", "close_vs_sma", "neutral"),
            ("trend", "sma_alignment", "neutral"),
            ("momentum", "rsi", "neutral"),
        ]
    );
    assert_eq!(s[2].detail, "RSI(14) 50 is between 30 and 70");
    assert_eq!(stance(&s), "neutral");
}

#[test]
fn crosses_only_on_the_last_bar() {
    let small = Params {
        sma: vec![2, 3],
        ema: vec![2],
        rsi: 2,
        macd: (2, 3, 2),
        bollinger: (3, 2.0),
        atr: 2,
        periods_per_year: 252.0,
    };
    // SMA2 / SMA3: index 4: 9.5 < 9.667; index 5: 10.5 > 10.333 → golden cross.
    let golden = signals(&analysis(&[10.0, 10.0, 10.0, 10.0, 9.0, 12.0], &small));
    assert!(summary(&golden).contains(&("crossover", "golden_cross", "bullish")));
    // Mirror: 10.5 > 10.333, then 9.5 < 9.667 → death cross.
    let death = signals(&analysis(&[10.0, 10.0, 10.0, 10.0, 11.0, 8.0], &small));
    assert!(summary(&death).contains(&("crossover", "death_cross", "bearish")));
    // The cross happened a bar earlier: none now.
    let earlier = signals(&analysis(&[10.0, 10.0, 10.0, 9.0, 12.0, 13.0], &small));
    assert!(!summary(&earlier).iter().any(|s| s.1.ends_with("_cross")));
}

#[test]
fn cross_rule() {
    assert_eq!(cross((-1.0, 1.0), (0.0, 0.0)), Some(Direction::Bullish));
    assert_eq!(cross((0.0, 1.0), (0.0, 0.0)), Some(Direction::Bullish));
    assert_eq!(cross((1.0, -1.0), (0.0, 0.0)), Some(Direction::Bearish));
    assert_eq!(cross((1.0, 2.0), (0.0, 0.0)), None);
    assert_eq!(cross((-1.0, 0.0), (0.0, 0.0)), None);
}

#[test]
fn stance_votes() {
    let sig = |d| signal(SignalKind::Trend, "t", d, String::new());
    assert_eq!(stance(&[]), "neutral");
    let (up, down, flat) = (Direction::Bullish, Direction::Bearish, Direction::Neutral);
    assert_eq!(stance(&[sig(up), sig(down), sig(flat)]), "neutral");
    assert_eq!(stance(&[sig(up), sig(up), sig(down)]), "bullish");
    assert_eq!(stance(&[sig(flat), sig(down)]), "bearish");
}

#[test]
fn signal_json_shape() {
    let s = signal(
        SignalKind::Volatility,
        "bollinger_upper",
        Direction::Bearish,
        "d".into(),
    );
    assert_eq!(
        serde_json::to_value(&s).unwrap(),
        serde_json::json!({"kind": "volatility", "name": "bollinger_upper",
                           "direction": "bearish", "detail": "d"})
    );
}
