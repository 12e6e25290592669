//! Tests for `series`: CSV parsing and validation paths.

use super::*;

fn bar(t: i64, close: f64) -> Bar {
    Bar {
        t,
        open: close,
        high: close,
        low: close,
        close,
        volume: 1.0,
    }
}

fn series(symbol: &str, closes: &[f64]) -> SymbolSeries {
    SymbolSeries {
        symbol: symbol.to_owned(),
        bars: closes
            .iter()
            .enumerate()
            .map(|(i, &c)| bar(i as i64, c))
            .collect(),
    }
}

fn err(path: &str) -> impl Fn(InputError) -> String + '_ {
    move |e| {
        assert_eq!(e.path, path, "{e}");
        e.message
    }
}

#[test]
fn csv_header_in_any_order_groups_by_symbol_in_first_seen_order() {
    let text = "close,SYMBOL, t ,low,high,open,volume\r\n\
                10,BBB,1,9,11,10,100\r\n\
                \r\n\
                20,AAA,1,19,21,20,5.5\n\
                10.5,BBB,2,9.5,11,10,0\n";
    let got = parse_csv(text).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].symbol, "BBB");
    assert_eq!(got[1].symbol, "AAA");
    assert_eq!(
        got[0].bars[1],
        Bar {
            t: 2,
            open: 10.0,
            high: 11.0,
            low: 9.5,
            close: 10.5,
            volume: 0.0
        }
    );
    assert_eq!(got[1].bars[0].volume, 5.5);
}

#[test]
fn csv_without_volume_column_defaults_to_zero() {
    let got = parse_csv("symbol,t,open,high,low,close\nX,1,1,2,0.5,1.5\nX,2,1.5,2,1,2\n").unwrap();
    assert_eq!(got[0].bars.len(), 2);
    assert!(got[0].bars.iter().all(|b| b.volume == 0.0));
    assert!(validate(&got).is_ok());
}

#[test]
fn csv_bad_number_names_line_and_column() {
    let text = "symbol,t,open,high,low,close\nX,1,1,2,0.5,1.5\n\nX,2,1.5,2,1,abc\n";
    let e = parse_csv(text).unwrap_err();
    assert_eq!(e.path, "csv:line 4.close");
    assert_eq!(
        e.to_string(),
        "csv:line 4.close: `abc` is not a finite number"
    );
    let nan = parse_csv("symbol,t,open,high,low,close\nX,1,NaN,2,0.5,1.5\n").unwrap_err();
    assert_eq!(nan.path, "csv:line 2.open");
    let t = parse_csv("symbol,t,open,high,low,close\nX,1.5,1,2,0.5,1.5\n").unwrap_err();
    assert_eq!(t.path, "csv:line 2.t");
}

#[test]
fn csv_structural_errors() {
    let wrong_count = parse_csv("symbol,t,open,high,low,close\nX,1,1,2,0.5\n").unwrap_err();
    assert_eq!(wrong_count.path, "csv:line 2");
    assert!(wrong_count.message.contains("expected 6 fields, found 5"));
    let missing = parse_csv("symbol,t,open,high,low\n").unwrap_err();
    assert_eq!(missing.message, "missing column `close`");
    let unknown = parse_csv("symbol,t,open,high,low,close,vwap\n").unwrap_err();
    assert_eq!(unknown.message, "unknown column `vwap`");
    let dup = parse_csv("symbol,t,t,open,high,low,close\n").unwrap_err();
    assert_eq!(dup.message, "duplicate column `t`");
    let empty = parse_csv("\n  \n").unwrap_err();
    assert_eq!(empty.path, "csv");
    let quoted = parse_csv("symbol,t,open,high,low,close\n\"X\",1,1,2,0.5,1.5\n").unwrap_err();
    assert_eq!(quoted.path, "csv:line 2.symbol");
    let blank = parse_csv("symbol,t,open,high,low,close\nX,1,1,,0.5,1.5\n").unwrap_err();
    assert_eq!(blank.to_string(), "csv:line 2.high: missing value");
    let no_symbol = parse_csv("symbol,t,open,high,low,close\n,1,1,2,0.5,1.5\n").unwrap_err();
    assert_eq!(no_symbol.path, "csv:line 2.symbol");
}

#[test]
fn valid_input_passes() {
    assert!(validate(&[series("A", &[1.0, 2.0]), series("B", &[3.0, 4.0, 5.0])]).is_ok());
}

#[test]
fn validation_names_the_exact_path() {
    let mut s = series("A", &[1.0, 2.0, 3.0, 4.0]);
    s.bars[3].close = f64::NAN;
    let msg = validate(&[series("OK", &[1.0, 2.0]), s]).map_err(err("symbols[1].bars[3].close"));
    assert!(msg.unwrap_err().contains("NaN"));

    let mut s = series("A", &[1.0, 2.0, 3.0]);
    s.bars[1].open = -2.0;
    let _ = validate(&[s])
        .map_err(err("symbols[0].bars[1].open"))
        .unwrap_err();

    let mut s = series("A", &[1.0, 2.0, 3.0]);
    s.bars[2].low = 3.5; // above close 3 (and above high: low is checked first)
    let msg = validate(&[s])
        .map_err(err("symbols[0].bars[2].low"))
        .unwrap_err();
    assert_eq!(msg, "low 3.5 is above min(open, close) = 3");

    let mut s = series("A", &[1.0, 2.0, 3.0]);
    s.bars[0].high = 0.5;
    let _ = validate(&[s])
        .map_err(err("symbols[0].bars[0].high"))
        .unwrap_err();

    let mut s = series("A", &[1.0, 2.0, 3.0]);
    s.bars[2].t = 1;
    let msg = validate(&[s])
        .map_err(err("symbols[0].bars[2].t"))
        .unwrap_err();
    assert_eq!(msg, "timestamps must strictly increase: 1 follows 1");

    let mut s = series("A", &[1.0, 2.0]);
    s.bars[1].volume = -1.0;
    let _ = validate(&[s])
        .map_err(err("symbols[0].bars[1].volume"))
        .unwrap_err();

    let mut s = series("A", &[1.0, 2.0]);
    s.bars[0].close = f64::INFINITY;
    s.bars[0].high = f64::INFINITY;
    let _ = validate(&[s])
        .map_err(err("symbols[0].bars[0].high"))
        .unwrap_err();
}

#[test]
fn validation_of_symbols_and_lengths() {
    let _ = validate(&[]).map_err(err("symbols")).unwrap_err();
    let _ = validate(&[series(" ", &[1.0, 2.0])])
        .map_err(err("symbols[0].symbol"))
        .unwrap_err();
    let msg = validate(&[series("A", &[1.0, 2.0]), series("A", &[1.0, 2.0])])
        .map_err(err("symbols[1].symbol"))
        .unwrap_err();
    assert_eq!(msg, "duplicate symbol `A` (also symbols[0])");
    let msg = validate(&[series("A", &[1.0])])
        .map_err(err("symbols[0].bars"))
        .unwrap_err();
    assert_eq!(msg, "at least 2 bars are required, found 1");
}

#[test]
fn alignment_requires_equal_lengths_and_timestamps() {
    let a = series("A", &[1.0, 2.0, 3.0]);
    assert!(check_aligned(&[a.clone(), series("B", &[4.0, 5.0, 6.0])]).is_ok());
    assert!(check_aligned(&[]).is_ok());
    let msg = check_aligned(&[a.clone(), series("B", &[4.0, 5.0])])
        .map_err(err("symbols[1].bars"))
        .unwrap_err();
    assert_eq!(msg, "series of unequal lengths: `B` has 2 bars, `A` has 3");
    let mut b = series("B", &[4.0, 5.0, 6.0]);
    b.bars[2].t = 7;
    let _ = check_aligned(&[a, b])
        .map_err(err("symbols[1].bars[2].t"))
        .unwrap_err();
}

#[test]
fn json_rejects_unknown_fields_and_defaults_volume() {
    let ok: SymbolSeries = serde_json::from_str(
        r#"{"symbol":"X","bars":[{"t":1,"open":1,"high":2,"low":0.5,"close":1.5}]}"#,
    )
    .unwrap();
    assert_eq!(ok.bars[0].volume, 0.0);
    let bad = serde_json::from_str::<SymbolSeries>(
        r#"{"symbol":"X","bars":[{"t":1,"open":1,"high":2,"low":0.5,"close":1.5,"vwap":1}]}"#,
    );
    assert!(bad.is_err());
}
