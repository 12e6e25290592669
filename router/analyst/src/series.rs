//! Analyst input: OHLCV bars per symbol, from JSON (serde) or CSV, and their validation.
//!
//! Owns the shape of a price series and every rule a series must satisfy before any maths
//! runs. Every error carries the path of the offending field (`symbols[1].bars[7].close`,
//! `csv:line 12.close`) so the endpoint can answer 400 with it. Never computes indicators.

use std::collections::HashMap;

/// One OHLCV bar. `t` is an opaque, strictly increasing timestamp (the caller's unit).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Bar {
    pub t: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    #[serde(default)]
    pub volume: f64,
}

/// The bars of one symbol, oldest first.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymbolSeries {
    pub symbol: String,
    pub bars: Vec<Bar>,
}

impl SymbolSeries {
    pub fn closes(&self) -> Vec<f64> {
        self.bars.iter().map(|b| b.close).collect()
    }
    pub fn highs(&self) -> Vec<f64> {
        self.bars.iter().map(|b| b.high).collect()
    }
    pub fn lows(&self) -> Vec<f64> {
        self.bars.iter().map(|b| b.low).collect()
    }
    pub fn timestamps(&self) -> Vec<i64> {
        self.bars.iter().map(|b| b.t).collect()
    }
}

/// An input problem, with the JSON path of the offending field for the 400
/// (`symbols[1].bars[7].close`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct InputError {
    pub path: String,
    pub message: String,
}

impl InputError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// CSV columns; `Volume` is the only optional one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Symbol,
    T,
    Open,
    High,
    Low,
    Close,
    Volume,
}

impl Column {
    const ALL: [Column; 7] = [
        Column::Symbol,
        Column::T,
        Column::Open,
        Column::High,
        Column::Low,
        Column::Close,
        Column::Volume,
    ];

    fn name(self) -> &'static str {
        match self {
            Column::Symbol => "symbol",
            Column::T => "t",
            Column::Open => "open",
            Column::High => "high",
            Column::Low => "low",
            Column::Close => "close",
            Column::Volume => "volume",
        }
    }
}

/// Parse CSV text `symbol,t,open,high,low,close,volume` into series grouped by symbol in
/// first-seen order (rows keep their order within a symbol).
///
/// The header is required (column names are trimmed and case-insensitive, any order; `volume`
/// may be absent, and an empty volume cell means 0); blank lines are skipped; quoted fields
/// are rejected rather than half-supported. Errors name the 1-based physical line and, for a
/// bad value, the column: `csv:line 12.close`. Only syntax is checked here: call [`validate`]
/// afterwards for the price rules.
pub fn parse_csv(text: &str) -> Result<Vec<SymbolSeries>, InputError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((header_no, header)) = lines.next() else {
        return Err(InputError::new("csv", "no header line"));
    };
    let columns = parse_header(header_no, header)?;

    let mut out: Vec<SymbolSeries> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (line_no, line) in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != columns.len() {
            return Err(InputError::new(
                format!("csv:line {line_no}"),
                format!("expected {} fields, found {}", columns.len(), fields.len()),
            ));
        }
        let mut symbol = "";
        let mut bar = Bar {
            t: 0,
            open: 0.0,
            high: 0.0,
            low: 0.0,
            close: 0.0,
            volume: 0.0,
        };
        for (&column, &field) in columns.iter().zip(&fields) {
            let path = || format!("csv:line {line_no}.{}", column.name());
            if field.starts_with('"') {
                return Err(InputError::new(path(), "quoted fields are not supported"));
            }
            match column {
                Column::Symbol if field.is_empty() => {
                    return Err(InputError::new(path(), "must not be empty"));
                }
                Column::Symbol => symbol = field,
                Column::T => {
                    bar.t = field.parse().map_err(|_| {
                        InputError::new(path(), format!("`{field}` is not an integer"))
                    })?;
                }
                Column::Volume if field.is_empty() => bar.volume = 0.0,
                _ if field.is_empty() => return Err(InputError::new(path(), "missing value")),
                _ => {
                    let v = parse_number(field).ok_or_else(|| {
                        InputError::new(path(), format!("`{field}` is not a finite number"))
                    })?;
                    match column {
                        Column::Open => bar.open = v,
                        Column::High => bar.high = v,
                        Column::Low => bar.low = v,
                        Column::Close => bar.close = v,
                        _ => bar.volume = v,
                    }
                }
            }
        }
        match index.get(symbol) {
            Some(&i) => out[i].bars.push(bar),
            None => {
                index.insert(symbol.to_owned(), out.len());
                out.push(SymbolSeries {
                    symbol: symbol.to_owned(),
                    bars: vec![bar],
                });
            }
        }
    }
    Ok(out)
}

fn parse_header(line_no: usize, header: &str) -> Result<Vec<Column>, InputError> {
    let path = format!("csv:line {line_no}");
    let mut columns = Vec::new();
    for name in header.split(',').map(|n| n.trim().to_ascii_lowercase()) {
        let Some(&column) = Column::ALL.iter().find(|c| c.name() == name) else {
            return Err(InputError::new(path, format!("unknown column `{name}`")));
        };
        if columns.contains(&column) {
            return Err(InputError::new(path, format!("duplicate column `{name}`")));
        }
        columns.push(column);
    }
    if let Some(missing) = Column::ALL
        .iter()
        .find(|c| **c != Column::Volume && !columns.contains(c))
    {
        return Err(InputError::new(
            path,
            format!("missing column `{}`", missing.name()),
        ));
    }
    Ok(columns)
}

/// `str::parse::<f64>` also accepts `NaN` and `inf`; a price file never means those.
fn parse_number(field: &str) -> Option<f64> {
    field.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Validate every series: at least one symbol; non-empty, unique symbols; then
/// [`validate_series`] for each, with paths `symbols[i]…`. Stops at the first problem.
pub fn validate(series: &[SymbolSeries]) -> Result<(), InputError> {
    if series.is_empty() {
        return Err(InputError::new(
            "symbols",
            "at least one symbol is required",
        ));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, s) in series.iter().enumerate() {
        let prefix = format!("symbols[{i}]");
        validate_series(s, &prefix)?;
        if let Some(first) = seen.insert(s.symbol.as_str(), i) {
            return Err(InputError::new(
                format!("{prefix}.symbol"),
                format!("duplicate symbol `{}` (also symbols[{first}])", s.symbol),
            ));
        }
    }
    Ok(())
}

/// Validate one series, reporting paths under `prefix` (e.g. `symbols[0]`): non-empty
/// symbol, ≥ 2 bars, strictly increasing `t`, prices finite and > 0, volume finite and ≥ 0,
/// `low ≤ min(open, close)` and `high ≥ max(open, close)`.
pub fn validate_series(s: &SymbolSeries, prefix: &str) -> Result<(), InputError> {
    if s.symbol.trim().is_empty() {
        return Err(InputError::new(
            format!("{prefix}.symbol"),
            "must not be empty",
        ));
    }
    if s.bars.len() < 2 {
        return Err(InputError::new(
            format!("{prefix}.bars"),
            format!("at least 2 bars are required, found {}", s.bars.len()),
        ));
    }
    for (k, b) in s.bars.iter().enumerate() {
        let path = |field: &str| format!("{prefix}.bars[{k}].{field}");
        if k > 0 && b.t <= s.bars[k - 1].t {
            return Err(InputError::new(
                path("t"),
                format!(
                    "timestamps must strictly increase: {} follows {}",
                    b.t,
                    s.bars[k - 1].t
                ),
            ));
        }
        for (field, v) in [
            ("open", b.open),
            ("high", b.high),
            ("low", b.low),
            ("close", b.close),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(InputError::new(
                    path(field),
                    format!("must be a finite number > 0, found {v}"),
                ));
            }
        }
        if !(b.volume.is_finite() && b.volume >= 0.0) {
            return Err(InputError::new(
                path("volume"),
                format!("must be a finite number ≥ 0, found {}", b.volume),
            ));
        }
        if b.low > b.open.min(b.close) {
            return Err(InputError::new(
                path("low"),
                format!(
                    "low {} is above min(open, close) = {}",
                    b.low,
                    b.open.min(b.close)
                ),
            ));
        }
        if b.high < b.open.max(b.close) {
            return Err(InputError::new(
                path("high"),
                format!(
                    "high {} is below max(open, close) = {}",
                    b.high,
                    b.open.max(b.close)
                ),
            ));
        }
    }
    Ok(())
}

/// Require series analysed together to share length and timestamps (compared with
/// `symbols[0]`). Only for callers that combine series bar by bar.
pub fn check_aligned(series: &[SymbolSeries]) -> Result<(), InputError> {
    let Some((first, rest)) = series.split_first() else {
        return Ok(());
    };
    for (i, s) in rest.iter().enumerate().map(|(i, s)| (i + 1, s)) {
        if s.bars.len() != first.bars.len() {
            return Err(InputError::new(
                format!("symbols[{i}].bars"),
                format!(
                    "series of unequal lengths: `{}` has {} bars, `{}` has {}",
                    s.symbol,
                    s.bars.len(),
                    first.symbol,
                    first.bars.len()
                ),
            ));
        }
        if let Some(k) = (0..s.bars.len()).find(|&k| s.bars[k].t != first.bars[k].t) {
            return Err(InputError::new(
                format!("symbols[{i}].bars[{k}].t"),
                format!(
                    "timestamp {} does not match symbols[0].bars[{k}].t = {}",
                    s.bars[k].t, first.bars[k].t
                ),
            ));
        }
    }
    Ok(())
}

/// A series whose bars all open, close, and range at one price each (t = 1000, 1001, …): for
/// tests of indicators and signals on hand-built price paths.
#[cfg(test)]
pub(crate) fn flat_bars(closes: &[f64]) -> SymbolSeries {
    SymbolSeries {
        symbol: "X".into(),
        bars: closes
            .iter()
            .enumerate()
            .map(|(i, &c)| Bar {
                t: 1000 + i as i64,
                open: c,
                high: c,
                low: c,
                close: c,
                volume: 0.0,
            })
            .collect(),
    }
}

#[cfg(test)]
#[path = "series_tests.rs"]
mod tests;
