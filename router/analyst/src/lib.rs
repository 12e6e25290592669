//! Analyst endpoints: deterministic maths in Rust (indicators, signals, the portfolio optimiser,
//! a lexicon scorer), language from the router (`narrative`), both in one answer.
//!
//! This crate owns the prompt contexts: the endpoints build them with the functions below, and
//! `sample_context` builds one of the same shape at startup, so a template that reads a field
//! the code does not supply fails when Switchyard starts, not on an analyst's request.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod indicators;
pub mod narrative;
pub mod portfolio;
pub mod prompts;
pub mod schema;
pub mod sentiment;
pub mod series;
pub mod signals;

use serde::Serialize;
use serde_json::{Value, json};

use prompts::{Endpoint, Prompts};
use switchyard_types::{ChatRequest, ChatResponse};

/// What the analyst endpoints need of the gateway: one routed request answered completely
/// (policies, cache, fallback and the request's ledger all apply, as to any request). The
/// gateway implements it; this crate never sees the gateway itself.
pub trait Complete: Sync {
    /// Route `request` over `route` (a route or a model; `None` = the default route). The error
    /// is a message for the answer's `error` field.
    fn complete(
        &self,
        request: &ChatRequest,
        route: Option<&str>,
    ) -> impl Future<Output = Result<Completion, String>> + Send;
}

/// A routed answer and how it was routed.
#[derive(Debug, Clone)]
pub struct Completion {
    pub response: ChatResponse,
    /// Model, provider, route, attempts, `cost_usd`, `latency_ms` and the decision's reason,
    /// reported in the analyst answer's `routing`.
    pub routing: Value,
}

/// `[analyst]`: where the analyst endpoints' prompts come from and how their narratives route.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalystConfig {
    /// A folder laid out like `prompts/` (default: the copies built into the binary).
    pub prompts_dir: Option<std::path::PathBuf>,
    /// The route (or model) narratives are asked of (default `auto`).
    pub route: Option<String>,
}

/// The analyst endpoints' shared state.
#[derive(Debug)]
pub struct Analyst {
    pub prompts: Prompts,
    /// Route (or model) for narratives; `None` = the default route.
    pub route: Option<String>,
}

impl Analyst {
    pub fn new(config: &AnalystConfig) -> Result<Analyst, String> {
        let prompts = match &config.prompts_dir {
            Some(dir) => Prompts::from_dir(dir),
            None => Prompts::builtin(),
        }
        .map_err(|e| format!("analyst prompts: {e}"))?;
        Ok(Analyst {
            prompts,
            route: config.route.clone(),
        })
    }
}

/// One instrument in the market prompt.
#[derive(Debug, Clone, Serialize)]
pub struct MarketSymbol {
    pub symbol: String,
    pub bars: usize,
    pub last_close: f64,
    /// The latest value of every indicator (rendered as JSON in the prompt).
    pub figures: Value,
    pub signals: Vec<PromptSignal>,
    pub stance: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PromptSignal {
    pub name: String,
    pub direction: String,
    pub detail: String,
}

pub fn market_context(symbols: &[MarketSymbol], question: Option<&str>, horizon: &str) -> Value {
    json!({"symbols": symbols, "question": question, "horizon": horizon})
}

/// One news item in the sentiment prompt (`index` is its position in the request).
#[derive(Debug, Clone, Serialize)]
pub struct PromptItem {
    pub index: usize,
    pub headline: String,
    pub body: Option<String>,
    pub source: Option<String>,
    pub published_at: Option<String>,
    pub symbols: Vec<String>,
}

pub fn sentiment_context(items: &[PromptItem]) -> Value {
    json!({"items": items})
}

/// One holding in the portfolio prompt.
#[derive(Debug, Clone, Serialize)]
pub struct PromptHolding {
    pub symbol: String,
    pub weight: f64,
    pub expected_return: Option<f64>,
}

pub struct PortfolioFacts<'a> {
    pub objective: &'a str,
    pub holdings: &'a [PromptHolding],
    pub expected_return: f64,
    pub volatility: f64,
    pub sharpe: f64,
    pub risk_free_rate: f64,
    pub constraints: Value,
}

pub fn portfolio_context(f: &PortfolioFacts<'_>) -> Value {
    json!({
        "objective": f.objective,
        "assets": f.holdings,
        "expected_return": f.expected_return,
        "volatility": f.volatility,
        "sharpe": f.sharpe,
        "risk_free_rate": f.risk_free_rate,
        "constraints": f.constraints,
    })
}

/// A context of the endpoint's real shape, for the startup render check.
pub fn sample_context(endpoint: Endpoint) -> Value {
    match endpoint {
        Endpoint::Market => market_context(
            &[MarketSymbol {
                symbol: "ACME".into(),
                bars: 60,
                last_close: 101.5,
                figures: json!({"rsi": 55.0, "sma": {"20": 100.0}}),
                signals: vec![PromptSignal {
                    name: "trend".into(),
                    direction: "bullish".into(),
                    detail: "close above SMA(50)".into(),
                }],
                stance: "bullish".into(),
            }],
            Some("Is the trend intact?"),
            "1 month",
        ),
        Endpoint::Sentiment => sentiment_context(&[PromptItem {
            index: 0,
            headline: "ACME beats estimates".into(),
            body: Some("Revenue rose 12%.".into()),
            source: Some("Wire".into()),
            published_at: Some("2026-11-20T12:00:00Z".into()),
            symbols: vec!["ACME".into()],
        }]),
        Endpoint::Portfolio => portfolio_context(&PortfolioFacts {
            objective: "max_sharpe",
            holdings: &[PromptHolding {
                symbol: "ACME".into(),
                weight: 1.0,
                expected_return: Some(0.08),
            }],
            expected_return: 0.08,
            volatility: 0.2,
            sharpe: 0.4,
            risk_free_rate: 0.0,
            constraints: json!({"long_only": true}),
        }),
    }
}
