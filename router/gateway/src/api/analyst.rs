//! The analyst endpoints: `POST /ai/analyze/market`, `POST /ai/sentiment/news`,
//! `POST /ai/optimize/portfolio`. Each computes its figures in Rust, then asks the router for the
//! language (`analyst::narrative`); when no model answers, the figures still come back with
//! `degraded: true`.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use futures::StreamExt;
use serde_json::{Value, json};

use super::ApiError;
use super::chat::body_json;
use crate::pipeline::{self, Target};
use crate::state::Gateway;
use switchyard_analyst::Completion;
use switchyard_analyst::indicators::{self, Params};
use switchyard_analyst::narrative::{self, Narrative};
use switchyard_analyst::portfolio::{self, PortfolioRequest};
use switchyard_analyst::prompts::Endpoint;
use switchyard_analyst::sentiment::{self, Scored, SentimentRequest};
use switchyard_analyst::series::{self, InputError, SymbolSeries};
use switchyard_analyst::signals;
use switchyard_analyst::{
    MarketSymbol, PortfolioFacts, PromptHolding, PromptItem, PromptSignal, market_context,
    portfolio_context, sentiment_context,
};
use switchyard_types::ChatRequest;

/// The analyst crate asks the gateway for its narratives through this: an ordinary routed
/// request, recorded in the current request's ledger.
impl switchyard_analyst::Complete for Gateway {
    async fn complete(
        &self,
        request: &ChatRequest,
        route: Option<&str>,
    ) -> Result<Completion, String> {
        let target = Target {
            name: route,
            ..Target::default()
        };
        let routed = pipeline::complete(self, request, &target)
            .await
            .map_err(|e| e.to_string())?;
        let routing = json!({
            "model": routed.model,
            "provider": routed.provider,
            "route": routed.route,
            "attempts": routed.attempts,
            "cost_usd": routed.cost_usd(),
            "latency_ms": routed.latency.as_secs_f64() * 1000.0,
            "reason": routed.decision.reason(),
        });
        Ok(Completion {
            response: routed.value,
            routing,
        })
    }
}

/// Ask for an endpoint's narrative with the configured route.
async fn ask(
    gw: &Gateway,
    endpoint: Endpoint,
    context: &Value,
    schema: Option<&Value>,
) -> Narrative {
    let Some(spec) = gw.analyst.prompts.spec(endpoint) else {
        return Narrative {
            value: None,
            repaired: false,
            error: Some("no prompt for this endpoint".into()),
            routing: Vec::new(),
        };
    };
    let user = match gw.analyst.prompts.render(endpoint, context) {
        Ok(text) => text,
        Err(e) => {
            return Narrative {
                value: None,
                repaired: false,
                error: Some(format!("prompt: {e}")),
                routing: Vec::new(),
            };
        }
    };
    narrative::ask(gw, spec, user, schema, gw.analyst.route.as_deref()).await
}

/// Batches scored concurrently, at most this many at a time.
const SENTIMENT_CONCURRENCY: usize = 4;

pub async fn sentiment(
    State(gw): State<Arc<Gateway>>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    news_sentiment(&gw, body).await.map(Json)
}

async fn news_sentiment(gw: &Gateway, body: Body) -> Result<Value, ApiError> {
    let req: SentimentRequest = body_json(gw, body).await?;
    let times = sentiment::validate(&req).map_err(|(p, m)| ApiError::invalid_param(p, m))?;
    let schema = gw
        .analyst
        .prompts
        .spec(Endpoint::Sentiment)
        .map(|s| s.schema.clone());
    let batches = sentiment::batches(&req.items);
    let results: Vec<(Vec<usize>, Narrative)> = futures::stream::iter(batches)
        .map(|(indices, body_cap)| {
            let items: Vec<PromptItem> = indices
                .iter()
                .map(|&i| {
                    let it = &req.items[i];
                    PromptItem {
                        index: i,
                        headline: it.headline.clone(),
                        body: it.body.as_ref().map(|b| b.chars().take(body_cap).collect()),
                        source: it.source.clone(),
                        published_at: it.published_at.clone(),
                        symbols: it.symbols.clone().unwrap_or_default(),
                    }
                })
                .collect();
            // Exactly one result per item in this batch.
            let mut schema = schema.clone().unwrap_or(Value::Null);
            schema["properties"]["items"]["minItems"] = json!(items.len());
            schema["properties"]["items"]["maxItems"] = json!(items.len());
            async move {
                let n = ask(
                    gw,
                    Endpoint::Sentiment,
                    &sentiment_context(&items),
                    Some(&schema),
                )
                .await;
                (indices, n)
            }
        })
        .buffered(SENTIMENT_CONCURRENCY)
        .collect()
        .await;

    let mut scored: Vec<Scored> = Vec::with_capacity(req.items.len());
    let mut routing = Vec::new();
    let mut degraded = false;
    let mut notes = Vec::new();
    for (indices, n) in results {
        routing.extend(n.routing.iter().cloned());
        let answers = n.value.as_ref().and_then(|v| v["items"].as_array());
        match answers {
            // Results map to items by position; the schema made their count exact.
            Some(list) => {
                for (&i, a) in indices.iter().zip(list) {
                    let score = a["score"].as_f64().unwrap_or(0.0).clamp(-1.0, 1.0);
                    scored.push(Scored {
                        index: i,
                        score,
                        label: a["label"].as_str().unwrap_or("neutral").to_owned(),
                        confidence: a["confidence"].as_f64().unwrap_or(0.0).clamp(0.0, 1.0),
                        rationale: a["rationale"].as_str().unwrap_or_default().to_owned(),
                        entities: a["entities"]
                            .as_array()
                            .map(|e| {
                                e.iter()
                                    .filter_map(|s| s.as_str().map(str::to_owned))
                                    .collect()
                            })
                            .unwrap_or_default(),
                        scored_by: "model",
                    });
                }
            }
            None => {
                degraded = true;
                if let Some(e) = &n.error {
                    notes.push(e.clone());
                }
                scored.extend(
                    indices
                        .iter()
                        .map(|&i| sentiment::lexicon_score(i, &req.items[i])),
                );
            }
        }
    }
    scored.sort_by_key(|s| s.index);
    let half_life = req
        .half_life_hours
        .unwrap_or(sentiment::DEFAULT_HALF_LIFE_HOURS);
    let aggregates = sentiment::aggregate(&req.items, &times, &scored, half_life);
    let cost: f64 = routing.iter().filter_map(|r| r["cost_usd"].as_f64()).sum();
    Ok(json!({
        "items": scored,
        "aggregates": aggregates,
        "degraded": degraded,
        "notes": notes,
        "half_life_hours": half_life,
        "cost_usd": cost,
        "routing": routing,
    }))
}

/// `POST /ai/analyze/market` body.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketRequest {
    #[serde(default)]
    pub symbols: Option<Vec<SymbolSeries>>,
    /// `symbol,t,open,high,low,close,volume` text, instead of `symbols`.
    #[serde(default)]
    pub csv: Option<String>,
    #[serde(default)]
    pub question: Option<String>,
    #[serde(default)]
    pub horizon: Option<String>,
    /// Indicator windows (defaults: SMA 20/50, EMA 12/26, RSI 14, MACD 12/26/9, Bollinger 20/2).
    #[serde(default, deserialize_with = "switchyard_types::strict::object")]
    pub params: Option<Params>,
}

const DEFAULT_HORIZON: &str = "the next few weeks";

fn input_error(e: InputError) -> ApiError {
    ApiError::invalid_param(e.path, e.message)
}

pub async fn market(State(gw): State<Arc<Gateway>>, body: Body) -> Result<Json<Value>, ApiError> {
    analyze_market(&gw, body).await.map(Json)
}

async fn analyze_market(gw: &Gateway, body: Body) -> Result<Value, ApiError> {
    let req: MarketRequest = body_json(gw, body).await?;
    let (series, prefix) = match (req.symbols, req.csv) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_param(
                "csv",
                "give `symbols` or `csv`, not both",
            ));
        }
        (Some(s), None) => (s, "symbols"),
        (None, Some(text)) => (series::parse_csv(&text).map_err(input_error)?, "csv"),
        (None, None) => {
            return Err(ApiError::invalid_param(
                "symbols",
                "give `symbols` or `csv`",
            ));
        }
    };
    if series.is_empty() {
        return Err(ApiError::invalid_param(prefix, "holds no series"));
    }
    series::validate(&series).map_err(input_error)?;
    // Several instruments are analysed over one common period.
    if series.len() > 1 {
        series::check_aligned(&series).map_err(input_error)?;
    }
    let params = req.params.unwrap_or_default();
    let mut analyses = Vec::with_capacity(series.len());
    for (i, s) in series.iter().enumerate() {
        let a = indicators::analyse(s, &params, &format!("{prefix}[{i}]")).map_err(input_error)?;
        let sig = signals::signals(&a);
        let stance = signals::stance(&sig);
        analyses.push((a, sig, stance));
    }
    let prompt_symbols: Vec<MarketSymbol> = analyses
        .iter()
        .map(|(a, sig, stance)| MarketSymbol {
            symbol: a.symbol.clone(),
            bars: a.bars,
            last_close: a.last_close,
            figures: json!({
                "last_return": a.last_return,
                "total_return": a.total_return,
                "latest": a.latest,
            }),
            signals: sig
                .iter()
                .map(|s| PromptSignal {
                    name: s.name.to_owned(),
                    direction: s.direction.as_str().to_owned(),
                    detail: s.detail.clone(),
                })
                .collect(),
            stance: (*stance).to_owned(),
        })
        .collect();
    let horizon = req.horizon.as_deref().unwrap_or(DEFAULT_HORIZON);
    let context = market_context(&prompt_symbols, req.question.as_deref(), horizon);
    let n = ask(gw, Endpoint::Market, &context, None).await;
    let symbols: Vec<Value> = analyses
        .iter()
        .map(|(a, sig, stance)| json!({"analysis": a, "signals": sig, "stance": stance}))
        .collect();
    Ok(json!({
        "symbols": symbols,
        "question": req.question,
        "horizon": horizon,
        "narrative": n.value,
        "degraded": n.value.is_none(),
        "narrative_error": n.error,
        "repaired": n.repaired,
        "cost_usd": n.cost_usd(),
        "routing": n.routing,
    }))
}

pub async fn portfolio(
    State(gw): State<Arc<Gateway>>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    optimize_portfolio(&gw, body).await.map(Json)
}

async fn optimize_portfolio(gw: &Gateway, body: Body) -> Result<Value, ApiError> {
    let req: PortfolioRequest = body_json(gw, body).await?;
    // Up to ~100 ms of arithmetic for large problems: off the async workers.
    let (req, solved) = tokio::task::spawn_blocking(move || {
        let solved = portfolio::optimise(&req);
        (req, solved)
    })
    .await
    .map_err(|e| ApiError::internal(format!("optimiser task failed: {e}")))?;
    let result = solved.map_err(input_error)?;
    let holdings: Vec<PromptHolding> = result
        .weights
        .iter()
        .map(|w| PromptHolding {
            symbol: w.symbol.clone(),
            weight: w.weight,
            expected_return: Some(w.expected_return),
        })
        .collect();
    let c = req.constraints.clone().unwrap_or_default();
    let constraints = json!({
        "long_only": c.long_only.unwrap_or(true),
        "min_weight": c.min_weight,
        "max_weight": c.max_weight,
    });
    let objective = serde_json::to_value(result.objective)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let facts = PortfolioFacts {
        objective: &objective,
        holdings: &holdings,
        expected_return: result.expected_return,
        volatility: result.volatility,
        sharpe: result.sharpe,
        risk_free_rate: result.risk_free_rate,
        constraints: constraints.clone(),
    };
    let n = ask(gw, Endpoint::Portfolio, &portfolio_context(&facts), None).await;
    Ok(json!({
        "portfolio": result,
        "constraints": constraints,
        "commentary": n.value,
        "degraded": n.value.is_none(),
        "commentary_error": n.error,
        "repaired": n.repaired,
        "cost_usd": n.cost_usd(),
        "routing": n.routing,
    }))
}
