//! News sentiment: validation, batching (several items per prompt, within a token budget), the
//! lexicon scorer used when no model answers, and per-symbol aggregates weighted by recency and
//! confidence. The router call itself is `narrative::ask`; the endpoint ties them together.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use switchyard_routing::catalog::TokenizerFamily;
use switchyard_routing::tokens;

/// Items per prompt, at most.
pub const MAX_ITEMS_PER_BATCH: usize = 8;
/// Prompt tokens of the items in one batch, at most (a single larger item goes alone, its body
/// shortened to fit).
pub const BATCH_TOKEN_BUDGET: u32 = 2_500;
/// Items per request, at most.
pub const MAX_ITEMS: usize = 200;
/// Default half-life of an item's weight in the per-symbol aggregate.
pub const DEFAULT_HALF_LIFE_HOURS: f64 = 24.0;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewsItem {
    pub headline: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    /// RFC 3339, e.g. `2026-11-20T14:30:00Z`.
    #[serde(default)]
    pub published_at: Option<String>,
    #[serde(default)]
    pub symbols: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentimentRequest {
    pub items: Vec<NewsItem>,
    /// Hours after which an item weighs half as much as the newest one (default 24).
    #[serde(default)]
    pub half_life_hours: Option<f64>,
}

/// One item's score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scored {
    pub index: usize,
    /// In [−1, 1].
    pub score: f64,
    pub label: String,
    /// In [0, 1].
    pub confidence: f64,
    pub rationale: String,
    pub entities: Vec<String>,
    /// `model` or `lexicon`.
    pub scored_by: &'static str,
}

/// One symbol's recency-weighted sentiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Aggregate {
    pub symbol: String,
    pub score: f64,
    pub label: String,
    pub items: usize,
}

/// Checks the request; the offending field's path and why.
pub fn validate(req: &SentimentRequest) -> Result<Vec<Option<SystemTime>>, (String, String)> {
    if req.items.is_empty() || req.items.len() > MAX_ITEMS {
        return Err((
            "items".into(),
            format!("must hold 1 to {MAX_ITEMS} items, got {}", req.items.len()),
        ));
    }
    if let Some(h) = req.half_life_hours
        && !(h.is_finite() && h > 0.0)
    {
        return Err(("half_life_hours".into(), "must be a positive number".into()));
    }
    let mut times = Vec::with_capacity(req.items.len());
    for (i, item) in req.items.iter().enumerate() {
        if item.headline.trim().is_empty() {
            return Err((format!("items[{i}].headline"), "must not be empty".into()));
        }
        for (j, s) in item.symbols.iter().flatten().enumerate() {
            if s.trim().is_empty() {
                return Err((
                    format!("items[{i}].symbols[{j}]"),
                    "must not be empty".into(),
                ));
            }
        }
        let t = match &item.published_at {
            None => None,
            Some(text) => Some(humantime::parse_rfc3339_weak(text.trim()).map_err(|e| {
                (
                    format!("items[{i}].published_at"),
                    format!("'{text}' is not an RFC 3339 time: {e}"),
                )
            })?),
        };
        times.push(t);
    }
    Ok(times)
}

/// Item text as the prompt carries it, the body shortened to `max_chars`.
fn item_text(item: &NewsItem, max_chars: usize) -> String {
    let mut text = item.headline.clone();
    if let Some(body) = &item.body {
        text.push('\n');
        text.extend(body.chars().take(max_chars));
    }
    text
}

/// Split item indices into batches: at most `MAX_ITEMS_PER_BATCH` items and about
/// `BATCH_TOKEN_BUDGET` prompt tokens each, in order. Returns each batch with the body length
/// (in characters) to keep for its items.
pub fn batches(items: &[NewsItem]) -> Vec<(Vec<usize>, usize)> {
    // A generous character cap for one body: a budget's worth at ~3 characters a token.
    let body_cap = BATCH_TOKEN_BUDGET as usize * 3;
    let mut out: Vec<(Vec<usize>, usize)> = Vec::new();
    let mut current = Vec::new();
    let mut used = 0u32;
    for (i, item) in items.iter().enumerate() {
        let cost = tokens::count_text(TokenizerFamily::O200k, &item_text(item, body_cap)).tokens;
        if !current.is_empty()
            && (current.len() == MAX_ITEMS_PER_BATCH || used + cost > BATCH_TOKEN_BUDGET)
        {
            out.push((std::mem::take(&mut current), body_cap));
            used = 0;
        }
        current.push(i);
        used += cost;
    }
    if !current.is_empty() {
        out.push((current, body_cap));
    }
    out
}

const POSITIVE: &[&str] = &[
    "beat",
    "beats",
    "surge",
    "surges",
    "soar",
    "soars",
    "jump",
    "jumps",
    "rally",
    "rallies",
    "gain",
    "gains",
    "growth",
    "grows",
    "record",
    "profit",
    "profits",
    "upgrade",
    "upgraded",
    "outperform",
    "strong",
    "stronger",
    "raises",
    "raised",
    "boost",
    "boosts",
    "exceeds",
    "expands",
    "wins",
    "approval",
    "approved",
    "bullish",
    "rebound",
    "dividend",
    "buyback",
    "optimistic",
    "improves",
    "improved",
    "tops",
    "higher",
];
const NEGATIVE: &[&str] = &[
    "miss",
    "misses",
    "plunge",
    "plunges",
    "slump",
    "slumps",
    "fall",
    "falls",
    "drop",
    "drops",
    "loss",
    "losses",
    "decline",
    "declines",
    "downgrade",
    "downgraded",
    "underperform",
    "weak",
    "weaker",
    "cuts",
    "cut",
    "lawsuit",
    "probe",
    "fraud",
    "recall",
    "layoffs",
    "bankruptcy",
    "default",
    "warning",
    "warns",
    "bearish",
    "halts",
    "delay",
    "delayed",
    "fine",
    "fined",
    "investigation",
    "lower",
    "slashes",
    "resigns",
];

/// The fallback scorer: a small hand-made finance lexicon. `score = (pos − neg) / (pos + neg)`,
/// neutral when no word matches; confidence grows with the number of matches (capped at 0.6 —
/// a word count is never as sure as a model).
pub fn lexicon_score(index: usize, item: &NewsItem) -> Scored {
    let text = item_text(item, usize::MAX).to_lowercase();
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    for word in text.split(|c: char| !c.is_alphanumeric()) {
        if POSITIVE.contains(&word) {
            pos.push(word.to_owned());
        } else if NEGATIVE.contains(&word) {
            neg.push(word.to_owned());
        }
    }
    let (p, n) = (pos.len() as f64, neg.len() as f64);
    let score = if p + n == 0.0 { 0.0 } else { (p - n) / (p + n) };
    let rationale = if p + n == 0.0 {
        "lexicon: no sentiment words found".to_owned()
    } else {
        format!(
            "lexicon: positive [{}], negative [{}]",
            pos.join(", "),
            neg.join(", ")
        )
    };
    Scored {
        index,
        score,
        label: label_for(score).to_owned(),
        confidence: (0.15 * (p + n)).min(0.6),
        rationale,
        entities: item.symbols.clone().unwrap_or_default(),
        scored_by: "lexicon",
    }
}

/// `positive` above 0.1, `negative` below −0.1, else `neutral`.
pub fn label_for(score: f64) -> &'static str {
    if score > 0.1 {
        "positive"
    } else if score < -0.1 {
        "negative"
    } else {
        "neutral"
    }
}

/// Per-symbol sentiment: the mean of its items' scores weighted by confidence (at least 0.05)
/// × 0.5^(age / half-life), age measured from the newest item (an undated item counts as newest).
pub fn aggregate(
    items: &[NewsItem],
    times: &[Option<SystemTime>],
    scored: &[Scored],
    half_life_hours: f64,
) -> Vec<Aggregate> {
    let newest = times.iter().flatten().max().copied();
    let mut order: Vec<String> = Vec::new();
    let mut sums: std::collections::HashMap<String, (f64, f64, usize)> = Default::default();
    for s in scored {
        let (Some(item), Some(t)) = (items.get(s.index), times.get(s.index)) else {
            continue;
        };
        let age = match (newest, t) {
            (Some(newest), Some(t)) => newest.duration_since(*t).unwrap_or(Duration::ZERO),
            _ => Duration::ZERO,
        };
        let decay = 0.5f64.powf(age.as_secs_f64() / 3600.0 / half_life_hours);
        let w = s.confidence.max(0.05) * decay;
        for sym in item.symbols.iter().flatten() {
            let sym = sym.trim().to_uppercase();
            let e = sums.entry(sym.clone()).or_insert_with(|| {
                order.push(sym.clone());
                (0.0, 0.0, 0)
            });
            e.0 += w * s.score;
            e.1 += w;
            e.2 += 1;
        }
    }
    order
        .into_iter()
        .filter_map(|sym| {
            let (ws, w, n) = sums.get(&sym).copied()?;
            let score = if w > 0.0 { ws / w } else { 0.0 };
            Some(Aggregate {
                label: label_for(score).to_owned(),
                symbol: sym,
                score,
                items: n,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(headline: &str, at: Option<&str>, symbols: &[&str]) -> NewsItem {
        NewsItem {
            headline: headline.into(),
            body: None,
            source: None,
            published_at: at.map(str::to_owned),
            symbols: Some(symbols.iter().map(|s| (*s).to_owned()).collect()),
        }
    }

    #[test]
    fn the_lexicon_scores_direction_and_stays_modest() {
        let up = lexicon_score(
            0,
            &item(
                "ACME beats estimates, shares surge to a record",
                None,
                &["ACME"],
            ),
        );
        assert!(up.score > 0.9 && up.label == "positive", "{up:?}");
        assert!(up.confidence <= 0.6);
        let down = lexicon_score(
            1,
            &item("Regulator opens fraud probe; shares plunge", None, &[]),
        );
        assert_eq!(down.label, "negative");
        let flat = lexicon_score(
            2,
            &item("ACME to hold annual meeting on Tuesday", None, &[]),
        );
        assert_eq!((flat.score, flat.label.as_str()), (0.0, "neutral"));
    }

    #[test]
    fn aggregates_weight_recent_items_more() {
        let items = vec![
            item("old", Some("2026-11-18T12:00:00Z"), &["ACME"]),
            item("new", Some("2026-11-20T12:00:00Z"), &["acme", "BOLT"]),
        ];
        let req = SentimentRequest {
            items: items.clone(),
            half_life_hours: None,
        };
        let times = validate(&req).unwrap();
        let scored = vec![
            Scored {
                index: 0,
                score: -1.0,
                label: "negative".into(),
                confidence: 1.0,
                rationale: String::new(),
                entities: vec![],
                scored_by: "model",
            },
            Scored {
                index: 1,
                score: 1.0,
                label: "positive".into(),
                confidence: 1.0,
                rationale: String::new(),
                entities: vec![],
                scored_by: "model",
            },
        ];
        let agg = aggregate(&items, &times, &scored, 24.0);
        // Two days old = two half-lives: weight 0.25 against 1.
        let acme = agg.iter().find(|a| a.symbol == "ACME").unwrap();
        assert!((acme.score - (1.0 - 0.25) / 1.25).abs() < 1e-12, "{acme:?}");
        assert_eq!(acme.items, 2);
        assert_eq!(agg.iter().find(|a| a.symbol == "BOLT").unwrap().score, 1.0);
    }

    #[test]
    fn batches_respect_the_item_count_and_the_token_budget() {
        let short: Vec<NewsItem> = (0..20)
            .map(|i| item(&format!("headline {i}"), None, &[]))
            .collect();
        let b = batches(&short);
        assert_eq!(
            b.iter().map(|(ix, _)| ix.len()).collect::<Vec<_>>(),
            vec![8, 8, 4]
        );
        let mut long = item("long", None, &[]);
        long.body = Some("word ".repeat(1500));
        let mixed = vec![long.clone(), long.clone(), item("short", None, &[])];
        let b = batches(&mixed);
        assert_eq!(
            b.iter().map(|(ix, _)| ix.clone()).collect::<Vec<_>>(),
            vec![vec![0], vec![1, 2]]
        );
    }

    #[test]
    fn bad_input_is_named() {
        let mut req = SentimentRequest {
            items: vec![item("x", Some("yesterday"), &[])],
            half_life_hours: None,
        };
        assert_eq!(validate(&req).unwrap_err().0, "items[0].published_at");
        req.items[0].published_at = None;
        req.items[0].headline = " ".into();
        assert_eq!(validate(&req).unwrap_err().0, "items[0].headline");
        req.items.clear();
        assert_eq!(validate(&req).unwrap_err().0, "items");
    }
}
