//! Tests for `indicators`, against values computed independently: by hand (shown in the
//! comments), by exact rational arithmetic outside this crate (Python `fractions`), or
//! published by StockCharts ChartSchool (cs-rsi.xls, cs-atr.xls, cs-bbands.xls).

use super::*;
use crate::series::flat_bars;

fn close_to(got: Option<f64>, want: f64, tol: f64) {
    let got = got.unwrap_or_else(|| panic!("expected {want}, got None"));
    assert!((got - want).abs() <= tol, "got {got}, want {want} ± {tol}");
}

fn defined_from(v: &[Option<f64>]) -> Option<usize> {
    v.iter().position(Option::is_some)
}

const ONE_TO_TEN: [f64; 10] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];

#[test]
fn sma_of_one_to_ten() {
    let s = sma(&ONE_TO_TEN, 3);
    assert_eq!(&s[..2], &[None, None]);
    // (1+2+3)/3 = 2, …, (8+9+10)/3 = 9: exact.
    let want: Vec<Option<f64>> = (2..=9).map(|v| Some(v as f64)).collect();
    assert_eq!(&s[2..], &want[..]);
    // Minimum length exactly at the window: only the last index is defined.
    let s10 = sma(&ONE_TO_TEN, 10);
    assert_eq!(defined_from(&s10), Some(9));
    assert_eq!(s10[9], Some(5.5));
    assert!(sma(&ONE_TO_TEN, 11).iter().all(Option::is_none));
    assert!(sma(&ONE_TO_TEN, 0).iter().all(Option::is_none));
    assert_eq!(sma(&ONE_TO_TEN, 1)[4], Some(5.0));
}

#[test]
fn constant_window_mean_is_exact() {
    // A naive left-to-right sum of twenty 0.1s is 2.0000000000000004; the mean must be 0.1.
    assert_eq!(sma(&[0.1; 20], 20)[19], Some(0.1));
    assert_eq!(mean(&[0.3; 7]), 0.3);
}

#[test]
fn ema_of_one_to_ten() {
    // n = 3: α = 1/2, seed at index 2 = mean(1,2,3) = 2, then e = e + (x − e)/2:
    // 2 + (4−2)/2 = 3, 3 + (5−3)/2 = 4, … so EMA[i] = i.
    let e = ema(&ONE_TO_TEN, 3);
    assert_eq!(defined_from(&e), Some(2));
    for (i, v) in e.iter().enumerate().skip(2) {
        assert_eq!(*v, Some(i as f64));
    }
    // n = 4: α = 0.4, seed 2.5 at index 3, 2.5 + 0.4·(5 − 2.5) = 3.5, … EMA[i] = i − 0.5.
    let e = ema(&ONE_TO_TEN, 4);
    assert_eq!(defined_from(&e), Some(3));
    for (i, v) in e.iter().enumerate().skip(3) {
        close_to(*v, i as f64 - 0.5, 1e-12);
    }
    assert_eq!(ema(&ONE_TO_TEN, 10)[9], Some(5.5));
    assert!(ema(&ONE_TO_TEN, 11).iter().all(Option::is_none));
}

#[test]
fn returns_and_log_returns() {
    let c = [100.0, 110.0, 99.0, 990.0];
    // 10/100 = 0.1, −11/110 = −0.1, a 10× gap: 891/99 = 9 — each one correctly rounded.
    assert_eq!(returns(&c), vec![None, Some(0.1), Some(-0.1), Some(9.0)]);
    let lr = log_returns(&c);
    assert_eq!(lr[0], None);
    // ln(1.1) = 0.0953101798043248600439…; ln(110.0/100.0) would be 5 ulps off.
    close_to(lr[1], 0.095_310_179_804_324_86, 2e-17);
    // ln(0.9) = −0.1053605156578263012275…
    close_to(lr[2], -0.105_360_515_657_826_3, 3e-17);
    close_to(lr[3], 10.0_f64.ln(), 1e-15);
    assert!(returns(&[]).is_empty());
}

#[test]
fn max_drawdown_of_a_known_path() {
    // Peak 120 (index 1), trough 60 (index 4): (120 − 60)/120 = 0.5; the later 130 → 125
    // fall (3.8 %) is smaller.
    let d = max_drawdown(&[100.0, 120.0, 90.0, 110.0, 60.0, 130.0, 125.0]);
    assert_eq!(
        d,
        Drawdown {
            value: 0.5,
            peak_index: 1,
            trough_index: 4
        }
    );
    // Equal highs: the latest one is the peak.
    let d = max_drawdown(&[10.0, 8.0, 10.0, 5.0]);
    assert_eq!((d.value, d.peak_index, d.trough_index), (0.5, 2, 3));
    let rising = max_drawdown(&ONE_TO_TEN);
    assert_eq!(
        (rising.value, rising.peak_index, rising.trough_index),
        (0.0, 0, 0)
    );
    assert_eq!(max_drawdown(&[5.0; 4]).value, 0.0);
}

#[test]
fn realised_volatility_of_known_log_returns() {
    // Closes 1,2,1,2,1: log returns ±ln 2, mean 0, sample variance 4·ln²2/3, so
    // σ·√252 = 2·ln 2·√(252/3) = 2·ln 2·√84 = 12.70559769064469…
    let v = realised_volatility(&[1.0, 2.0, 1.0, 2.0, 1.0], 252.0);
    close_to(v, 12.705_597_690_644_69, 1e-13);
    // periods_per_year = 1: 2·ln 2/√3.
    close_to(
        realised_volatility(&[1.0, 2.0, 1.0, 2.0, 1.0], 1.0),
        2.0 * 2.0_f64.ln() / 3.0_f64.sqrt(),
        1e-15,
    );
    assert_eq!(realised_volatility(&[1.0, 2.0], 252.0), None);
    assert_eq!(realised_volatility(&[3.0; 10], 252.0), Some(0.0));
}

/// StockCharts' RSI worked example (QQQQ closes, cs-rsi.xls).
const RSI_CLOSES: [f64; 33] = [
    44.3389, 44.0902, 44.1497, 43.6124, 44.3278, 44.8264, 45.0955, 45.4245, 45.8433, 46.0826,
    45.8931, 46.0328, 45.6140, 46.2820, 46.2820, 46.0028, 46.0328, 46.4116, 46.2222, 45.6439,
    46.2122, 46.2521, 45.7137, 46.4515, 45.7835, 45.3548, 44.0288, 44.1783, 44.2181, 44.5672,
    43.4205, 42.6628, 43.1314,
];

#[test]
fn rsi_matches_wilder_stockcharts_example() {
    // By hand, index 14: gains over the first 14 changes 0.0595 + 0.7154 + 0.4986 + 0.2691
    // + 0.3290 + 0.4188 + 0.2393 + 0.1397 + 0.6680 = 3.3374, losses 0.2487 + 0.5373 + 0.1895
    // + 0.4188 = 1.3943; RSI = 100·3.3374/(3.3374 + 1.3943) = 70.53279 (published 70.53).
    // Later values: Wilder recursion in exact rationals, matching every published figure.
    let r = rsi(&RSI_CLOSES, 14);
    assert_eq!(defined_from(&r), Some(14));
    let exact = [
        (14, 70.532_789_483_695_08),
        (15, 66.318_561_805_172_35),
        (16, 66.549_829_935_527_65),
        (17, 69.406_305_338_844_38),
        (18, 66.355_169_056_271_82),
        (19, 57.974_855_714_308_18),
        (24, 54.707_573_081_261_34),
        (26, 39.989_823_145_376_63),
        (32, 37.772_952_114_434_844),
    ];
    for (i, want) in exact {
        close_to(r[i], want, 1e-9);
    }
    let published = [
        70.53, 66.32, 66.55, 69.41, 66.36, 57.97, 62.93, 63.26, 56.06, 62.38, 54.71, 50.42, 39.99,
        41.46, 41.87, 45.46, 37.30, 33.08, 37.77,
    ];
    for (i, want) in published.into_iter().enumerate() {
        close_to(r[14 + i], want, 0.005);
    }
}

#[test]
fn rsi_of_the_two_decimal_rounding_of_the_example() {
    // The often-quoted 2-decimal closes do not give 70.53: gains sum to 3.34, losses to
    // 1.40, so RSI = 100·3.34/4.74 = 16700/237 = 70.4641350… (0.07 below StockCharts).
    let c = [
        44.34, 44.09, 44.15, 43.61, 44.33, 44.83, 45.10, 45.42, 45.84, 46.08, 45.89, 46.03, 45.61,
        46.28, 46.28,
    ];
    let r = rsi(&c, 14);
    assert_eq!(defined_from(&r), Some(14)); // minimum length: n + 1 closes
    close_to(r[14], 16700.0 / 237.0, 1e-9);
    assert!(rsi(&c[..14], 14).iter().all(Option::is_none));
}

#[test]
fn rsi_extremes_and_flat() {
    let up = rsi(&ONE_TO_TEN, 3);
    assert!(up[3..].iter().all(|v| *v == Some(100.0)));
    let down: Vec<f64> = ONE_TO_TEN.iter().rev().copied().collect();
    assert!(rsi(&down, 3)[3..].iter().all(|v| *v == Some(0.0)));
    assert!(rsi(&[7.0; 10], 3)[3..].iter().all(|v| *v == Some(50.0)));
    // A flat start then one gain: losses stay 0 → 100.
    assert_eq!(rsi(&[7.0, 7.0, 7.0, 7.0, 8.0], 3)[4], Some(100.0));
}

#[test]
fn macd_alignment_and_reference_values() {
    // c[i] = 100 + (37·i mod 23) − (i mod 4)/2, exact in binary; reference values from exact
    // rational EMAs (SMA seeds, α = 2/(n+1)), rounded to f64 once.
    let c: Vec<f64> = (0..40)
        .map(|i| 100.0 + ((i * 37) % 23) as f64 - 0.5 * (i % 4) as f64)
        .collect();
    let m = macd(&c, 12, 26, 9);
    assert_eq!(defined_from(&m.macd), Some(25));
    assert_eq!(defined_from(&m.signal), Some(33));
    assert_eq!(defined_from(&m.histogram), Some(33));
    close_to(ema(&c, 12)[11], 109.166_666_666_666_67, 1e-12);
    close_to(ema(&c, 12)[25], 109.024_245_612_885_52, 1e-12);
    close_to(ema(&c, 26)[25], 109.75, 1e-12);
    close_to(m.macd[25], -0.725_754_387_114_477_4, 1e-12);
    close_to(m.macd[33], -0.528_558_810_784_202_2, 1e-12);
    close_to(m.signal[33], -0.304_805_887_315_45, 1e-12);
    close_to(m.histogram[33], -0.223_752_923_468_752_17, 1e-12);
    close_to(m.macd[39], 0.272_977_891_178_664_9, 1e-12);
    close_to(m.signal[39], 0.044_128_223_402_455_82, 1e-12);
    close_to(m.histogram[39], 0.228_849_667_776_209_1, 1e-12);
}

#[test]
fn macd_of_a_constant_series_is_zero() {
    let m = macd(&[42.5; 34], 12, 26, 9);
    assert!(m.macd[25..].iter().all(|v| *v == Some(0.0)));
    assert_eq!(m.signal[33], Some(0.0));
    assert_eq!(m.histogram[33], Some(0.0));
    assert!(
        macd(&[42.5; 33], 12, 26, 9)
            .signal
            .iter()
            .all(Option::is_none)
    );
}

#[test]
fn bollinger_uses_population_sigma() {
    // 1..5, n = 5: mean 3, Σ(x − 3)² = 4+1+0+1+4 = 10, σ = √(10/5) = √2 (sample σ would be
    // √2.5). Bands 3 ± 2√2; bandwidth 4√2/3; %b of 5 = (5 − 3 + 2√2)/(4√2) = 0.85355…
    let b = bollinger(&[1.0, 2.0, 3.0, 4.0, 5.0], 5, 2.0);
    assert_eq!(defined_from(&b.middle), Some(4));
    assert_eq!(b.middle[4], Some(3.0));
    close_to(b.upper[4], 3.0 + 2.0 * 2.0_f64.sqrt(), 1e-15);
    close_to(b.lower[4], 3.0 - 2.0 * 2.0_f64.sqrt(), 1e-15);
    close_to(b.bandwidth[4], 4.0 * 2.0_f64.sqrt() / 3.0, 1e-15);
    close_to(b.percent_b[4], 0.853_553_390_593_273_7, 1e-15);
    // Two values 2, 4: population σ = 1 exactly.
    let b = bollinger(&[2.0, 4.0], 2, 1.5);
    assert_eq!((b.upper[1], b.lower[1]), (Some(4.5), Some(1.5)));
}

#[test]
fn bollinger_matches_stockcharts_example() {
    // SPY closes from cs-bbands.xls; (index, middle, upper, lower) as published (6 dp).
    let c = [
        86.1557, 89.0867, 88.7829, 90.3228, 89.0671, 91.1453, 89.4397, 89.175, 86.9302, 87.6752,
        86.9596, 89.4299, 89.3221, 88.7241, 87.4497, 87.2634, 89.4985, 87.9006, 89.126, 90.7043,
        92.9001, 92.9784, 91.8021, 92.6647, 92.6843, 92.3021, 92.7725, 92.5373, 92.949, 93.2039,
        91.0669, 89.8318, 89.7435, 90.3994, 90.7387, 88.0177, 88.0867, 88.8439, 90.7781, 90.5416,
        91.3894, 90.65,
    ];
    let b = bollinger(&c, 20, 2.0);
    assert_eq!(defined_from(&b.middle), Some(19));
    for (i, mid, up, lo) in [
        (19, 88.70794, 91.291862, 86.124018),
        (20, 89.04516, 91.949268, 86.141052),
        (29, 90.65863, 95.043001, 86.274259),
        (40, 91.1666, 94.369251, 87.963949),
        (41, 91.05018, 94.148503, 87.951857),
    ] {
        close_to(b.middle[i], mid, 1e-9);
        close_to(b.upper[i], up, 1e-6);
        close_to(b.lower[i], lo, 1e-6);
    }
}

#[test]
fn bollinger_of_a_flat_series() {
    let b = bollinger(&[5.0; 4], 3, 2.0);
    assert_eq!(b.upper[3], Some(5.0));
    assert_eq!(b.lower[3], Some(5.0));
    assert_eq!(b.bandwidth[3], Some(0.0));
    assert_eq!(b.percent_b[3], None);
}

#[test]
fn atr_with_gaps_by_hand() {
    // (h, l, c): TR₀ = 10 − 9 = 1; TR₁ = max(1, |10.5−9.5|, |9.5−9.5|) = 1;
    // gap up: TR₂ = max(1, |13−10| = 3, |12−10|) = 3; TR₃ = max(0.75, 0.25, 0.5) = 0.75;
    // gap down: TR₄ = max(1, |11−12.25| = 1.25, |10−12.25| = 2.25) = 2.25.
    let h = [10.0, 10.5, 13.0, 12.75, 11.0];
    let l = [9.0, 9.5, 12.0, 12.0, 10.0];
    let c = [9.5, 10.0, 12.5, 12.25, 10.5];
    assert_eq!(true_range(&h, &l, &c), vec![1.0, 1.0, 3.0, 0.75, 2.25]);
    // ATR(3): index 3 = (TR₁ + TR₂ + TR₃)/3 = 4.75/3 = 19/12; index 4 = (19/12·2 + 2.25)/3
    // = 65/36. (StockCharts' seeding would give (1 + 1 + 3)/3 at index 2.)
    let a = atr(&h, &l, &c, 3);
    assert_eq!(&a[..3], &[None, None, None]);
    close_to(a[3], 19.0 / 12.0, 1e-15);
    close_to(a[4], 65.0 / 36.0, 1e-15);
    // Minimum length n + 1: four bars give exactly one value.
    assert_eq!(defined_from(&atr(&h[..4], &l[..4], &c[..4], 3)), Some(3));
    assert!(
        atr(&h[..3], &l[..3], &c[..3], 3)
            .iter()
            .all(Option::is_none)
    );
}

#[test]
fn atr_on_stockcharts_data() {
    // QQQQ bars from cs-atr.xls.
    let h = [
        48.7, 48.72, 48.9, 48.87, 48.82, 49.05, 49.2, 49.35, 49.92, 50.19, 50.12, 49.66, 49.88,
        50.19, 50.36, 50.57, 50.65, 50.43, 49.63, 50.33, 50.29, 50.17, 49.32, 48.5, 48.3201, 46.8,
        47.8, 48.39, 48.66, 48.79,
    ];
    let l = [
        47.79, 48.14, 48.39, 48.37, 48.24, 48.635, 48.94, 48.86, 49.5, 49.87, 49.2, 48.9, 49.43,
        49.725, 49.26, 50.09, 50.3, 49.21, 48.98, 49.61, 49.2, 49.43, 48.08, 47.64, 41.55, 44.2833,
        47.31, 47.2, 47.9, 47.7301,
    ];
    let c = [
        48.16, 48.61, 48.75, 48.63, 48.74, 49.03, 49.07, 49.32, 49.91, 50.13, 49.53, 49.5, 49.75,
        50.03, 50.31, 50.52, 50.41, 49.34, 49.37, 50.23, 49.2375, 49.93, 48.43, 48.18, 46.57,
        45.41, 47.77, 47.72, 48.62, 47.85,
    ];
    let published_tr = [
        0.91, 0.58, 0.51, 0.5, 0.58, 0.415, 0.26, 0.49, 0.6, 0.32, 0.93, 0.76, 0.45, 0.465, 1.1,
        0.48, 0.35, 1.22, 0.65, 0.96, 1.09, 0.9325, 1.85, 0.86, 6.7701, 2.5167, 2.39, 1.19, 0.94,
        1.0599,
    ];
    let tr = true_range(&h, &l, &c);
    for (got, want) in tr.iter().zip(published_tr) {
        close_to(Some(*got), want, 1e-12);
    }
    // StockCharts' ATR column (seeded with TR₀..TR₁₃) reproduces our Wilder recursion.
    let sc = wilder(&tr, 14, 0);
    assert_eq!(defined_from(&sc), Some(13));
    for (i, want) in [(13, 0.555), (14, 0.593929), (24, 1.209229), (29, 1.316482)] {
        close_to(sc[i], want, 1e-6);
    }
    // TA-Lib seeding: index 14 = (TR₁ + … + TR₁₄)/14 = 7.96/14; index 29 from exact rationals.
    let a = atr(&h, &l, &c, 14);
    assert_eq!(defined_from(&a), Some(14));
    close_to(a[14], 7.96 / 14.0, 1e-12);
    close_to(a[29], 1.308_139_118_318_535, 1e-12);
}

#[test]
fn params_defaults_and_validation() {
    let p: Params = serde_json::from_str("{}").unwrap();
    assert_eq!(p, Params::default());
    assert_eq!(p.sma, vec![20, 50]);
    let p: Params = serde_json::from_str(r#"{"rsi": 7, "macd": [5, 35, 5]}"#).unwrap();
    assert_eq!((p.rsi, p.macd, p.atr), (7, (5, 35, 5), 14));
    assert!(serde_json::from_str::<Params>(r#"{"rsi_period": 7}"#).is_err());
    assert!(Params::default().validate().is_ok());

    let bad = |p: Params, path: &str| assert_eq!(p.validate().unwrap_err().path, path);
    let d = Params::default;
    bad(
        Params {
            macd: (26, 12, 9),
            ..d()
        },
        "params.macd",
    );
    bad(
        Params {
            macd: (12, 12, 9),
            ..d()
        },
        "params.macd",
    );
    bad(
        Params {
            bollinger: (20, 0.0),
            ..d()
        },
        "params.bollinger[1]",
    );
    bad(
        Params {
            bollinger: (20, f64::NAN),
            ..d()
        },
        "params.bollinger[1]",
    );
    bad(
        Params {
            sma: vec![20, 0],
            ..d()
        },
        "params.sma[1]",
    );
    bad(
        Params {
            ema: vec![MAX_WINDOW + 1],
            ..d()
        },
        "params.ema[0]",
    );
    bad(
        Params {
            sma: vec![5; MAX_WINDOWS + 1],
            ..d()
        },
        "params.sma",
    );
    bad(Params { rsi: 0, ..d() }, "params.rsi");
    bad(Params { atr: 0, ..d() }, "params.atr");
    bad(
        Params {
            periods_per_year: -1.0,
            ..d()
        },
        "params.periods_per_year",
    );
}

#[test]
fn analyse_requires_enough_bars_for_the_longest_window() {
    let p = Params::default();
    let closes: Vec<f64> = (0..50).map(|i| 100.0 + i as f64).collect();
    let a = analyse(&flat_bars(&closes), &p, "symbols[0]").unwrap();
    // Exactly 50 bars: SMA(50) defined at the last index only.
    assert_eq!(defined_from(&a.series.sma[&50]), Some(49));
    assert_eq!(a.latest.sma[&50], Some(124.5));

    let e = analyse(&flat_bars(&closes[..49]), &p, "symbols[0]").unwrap_err();
    assert_eq!(e.path, "symbols[0].bars");
    assert_eq!(
        e.message,
        "49 bars are too few for SMA(50), which needs at least 50"
    );

    let small = Params {
        sma: vec![2],
        ema: vec![2],
        macd: (2, 3, 2),
        bollinger: (2, 2.0),
        atr: 2,
        ..p
    };
    let e = analyse(&flat_bars(&closes[..14]), &small, "symbols[3]").unwrap_err();
    assert_eq!(
        e.to_string(),
        "symbols[3].bars: 14 bars are too few for RSI(14), which needs at least 15"
    );
    assert!(analyse(&flat_bars(&closes[..15]), &small, "symbols[3]").is_ok());
    let e = analyse(&flat_bars(&[f64::NAN, 1.0]), &small, "symbols[1]").unwrap_err();
    assert_eq!(e.path, "symbols[1].bars[0].open");
}

#[test]
fn analyse_a_flat_series() {
    let a = analyse(&flat_bars(&[100.0; 60]), &Params::default(), "s").unwrap();
    assert_eq!(a.latest.rsi, Some(50.0));
    assert_eq!(a.latest.bollinger.bandwidth, Some(0.0));
    assert_eq!(a.latest.bollinger.percent_b, None);
    assert_eq!(a.latest.atr, Some(0.0));
    assert_eq!(a.latest.realised_volatility, Some(0.0));
    assert_eq!(a.latest.max_drawdown.value, 0.0);
    assert_eq!(a.latest.macd.histogram, Some(0.0));
    assert_eq!((a.total_return, a.last_return), (0.0, Some(0.0)));
}

#[test]
fn analyse_summary_and_json_shape() {
    // 60 bars rising by 1, then a gap down to half.
    let mut closes: Vec<f64> = (0..60).map(|i| 100.0 + i as f64).collect();
    closes.push(79.5);
    let a = analyse(&flat_bars(&closes), &Params::default(), "symbols[0]").unwrap();
    assert_eq!((a.bars, a.last_t, a.last_close), (61, 1060, 79.5));
    assert_eq!(a.last_return, Some(-0.5)); // (79.5 − 159)/159
    assert_eq!(a.total_return, -0.205); // (79.5 − 100)/100
    let dd = a.latest.max_drawdown;
    assert_eq!((dd.value, dd.peak_t, dd.trough_t), (0.5, 1059, 1060));
    assert_eq!(a.latest.rsi, a.series.rsi[60]);

    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(
        json["latest"]["sma"]["20"],
        serde_json::json!(a.latest.sma[&20])
    );
    assert_eq!(json["series"]["sma"]["50"][48], serde_json::Value::Null);
    assert_eq!(
        json["series"]["macd"]["signal"].as_array().unwrap().len(),
        61
    );
    assert_eq!(json["params"]["macd"], serde_json::json!([12, 26, 9]));
    assert!(json["latest"]["bollinger"]["percent_b"].is_f64());
}
