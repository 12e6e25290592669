//! Analyst endpoints end to end, in-process against the simulator: structured narratives are
//! validated, the repair retry happens on invalid JSON, and answers degrade (figures still
//! there) when every model fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::http::StatusCode;
use serde_json::{Value, json};
use switchyard_analyst::narrative;
use switchyard_analyst::prompts::Endpoint;
use switchyard_sim::FaultMode;

use crate::common::{post_json as post, setup};

fn news() -> Value {
    json!({"items": [
        {"headline": "ACME beats estimates and raises guidance", "source": "Wire",
         "published_at": "2026-11-20T12:00:00Z", "symbols": ["ACME"]},
        {"headline": "Regulator opens probe into BOLT accounting", "body": "Shares fell 8%.",
         "published_at": "2026-11-19T09:30:00Z", "symbols": ["BOLT"]},
        {"headline": "ACME and BOLT announce a joint venture", "symbols": ["ACME", "BOLT"]}
    ]})
}

#[tokio::test]
async fn sentiment_scores_every_item_through_the_router() {
    let s = setup().await;
    let (status, v) = post(&s.gw, "/ai/sentiment/news", news()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["degraded"], false, "{v}");
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    for (i, item) in items.iter().enumerate() {
        assert_eq!(item["index"], i);
        assert_eq!(item["scored_by"], "model");
        let score = item["score"].as_f64().unwrap();
        assert!((-1.0..=1.0).contains(&score));
        assert!(["positive", "negative", "neutral"].contains(&item["label"].as_str().unwrap()));
    }
    let symbols: Vec<&str> = v["aggregates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["symbol"].as_str().unwrap())
        .collect();
    assert_eq!(symbols, vec!["ACME", "BOLT"]);
    // Three short items fit one prompt: one routed call.
    assert_eq!(v["routing"].as_array().unwrap().len(), 1);
    assert!(v["routing"][0]["model"].is_string());
}

#[tokio::test]
async fn sentiment_degrades_to_the_lexicon_when_every_model_fails() {
    let s = setup().await;
    s.sim
        .sim
        .set_fault("*", "500", FaultMode::Rate(1.0))
        .unwrap();
    let (status, v) = post(&s.gw, "/ai/sentiment/news", news()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["degraded"], true);
    let items = v["items"].as_array().unwrap();
    assert!(items.iter().all(|i| i["scored_by"] == "lexicon"));
    assert_eq!(items[0]["label"], "positive", "{}", items[0]);
    assert_eq!(items[1]["label"], "negative", "{}", items[1]);
}

#[tokio::test]
async fn sentiment_rejects_bad_input_by_name() {
    let s = setup().await;
    let (status, v) = post(
        &s.gw,
        "/ai/sentiment/news",
        json!({"items": [{"headline": "ok"}, {"headline": "x", "published_at": "last week"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["param"], "items[1].published_at");
    let (status, v) = post(&s.gw, "/ai/sentiment/news", json!({"items": []})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["param"], "items");
    let (status, v) = post(
        &s.gw,
        "/ai/sentiment/news",
        json!({"items": [{"title": "x"}]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn an_invalid_json_answer_is_repaired_with_one_retry() {
    let s = setup().await;
    let spec =
        s.gw.analyst
            .prompts
            .spec(Endpoint::Portfolio)
            .unwrap()
            .clone();
    let user =
        s.gw.analyst
            .prompts
            .render(
                Endpoint::Portfolio,
                &switchyard_analyst::sample_context(Endpoint::Portfolio),
            )
            .unwrap();
    for model in [
        "gpt-4o-mini",
        "claude-3-5-haiku",
        "gemini-2.0-flash",
        "llama3.2",
    ] {
        // The first answer ignores the format; the second is fine.
        s.sim
            .sim
            .set_fault("*", "bad-json", FaultMode::Count(1))
            .unwrap();
        let n = narrative::ask(&*s.gw, &spec, user.clone(), None, Some(model)).await;
        assert!(n.value.is_some(), "{model}: {:?}", n.error);
        assert!(n.repaired, "{model}");
        assert_eq!(n.routing.len(), 2, "{model}");
        assert!(n.value.unwrap()["commentary"].is_string());
    }
    // Invalid twice: no narrative, and the reason says why.
    s.sim
        .sim
        .set_fault("*", "bad-json", FaultMode::Count(2))
        .unwrap();
    let n = narrative::ask(&*s.gw, &spec, user, None, Some("gpt-4o-mini")).await;
    assert!(n.value.is_none());
    assert!(n.error.unwrap().contains("not valid JSON"));
}

fn example(name: &str) -> Value {
    let path = format!(
        "{}/../../examples/analyst/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn market_analysis_returns_indicators_signals_and_a_validated_narrative() {
    let s = setup().await;
    for file in ["market.json", "market-csv.json"] {
        let (status, v) = post(&s.gw, "/ai/analyze/market", example(file)).await;
        assert_eq!(status, StatusCode::OK, "{file}: {v}");
        assert_eq!(v["degraded"], false, "{file}: {}", v["narrative_error"]);
        let first = &v["symbols"][0];
        assert_eq!(first["analysis"]["symbol"], "ACME");
        let latest = &first["analysis"]["latest"];
        for key in [
            "rsi",
            "macd",
            "bollinger",
            "atr",
            "realised_volatility",
            "max_drawdown",
            "sma",
            "ema",
        ] {
            assert!(
                !latest[key].is_null(),
                "{file}: latest.{key} missing: {latest}"
            );
        }
        let rsi = latest["rsi"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&rsi));
        assert!(first["signals"].is_array() && first["stance"].is_string());
        let narrative = &v["narrative"];
        assert!(narrative["summary"].is_string(), "{narrative}");
        assert!(
            ["bullish", "bearish", "neutral"].contains(&narrative["outlook"].as_str().unwrap())
        );
        assert!(v["routing"][0]["model"].is_string());
    }
}

#[tokio::test]
async fn market_indicators_survive_when_every_model_fails() {
    let s = setup().await;
    s.sim
        .sim
        .set_fault("*", "503", FaultMode::Rate(1.0))
        .unwrap();
    let (status, v) = post(&s.gw, "/ai/analyze/market", example("market.json")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["degraded"], true);
    assert!(v["narrative"].is_null());
    assert!(v["symbols"][0]["analysis"]["latest"]["rsi"].is_number());
}

#[tokio::test]
async fn market_input_errors_name_the_field() {
    let s = setup().await;
    let mut bad = example("market.json");
    bad["symbols"][1]["bars"][5]["close"] = json!(-3.0);
    let (status, v) = post(&s.gw, "/ai/analyze/market", bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]["param"]
            .as_str()
            .unwrap()
            .starts_with("symbols[1].bars[5]"),
        "{v}"
    );

    let mut short = example("market.json");
    short["symbols"][1]["bars"]
        .as_array_mut()
        .unwrap()
        .truncate(40);
    let (status, v) = post(&s.gw, "/ai/analyze/market", short).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");

    let mut tiny = example("market.json");
    tiny["symbols"].as_array_mut().unwrap().truncate(1);
    tiny["symbols"][0]["bars"]
        .as_array_mut()
        .unwrap()
        .truncate(30);
    let (status, v) = post(&s.gw, "/ai/analyze/market", tiny).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("SMA(50)"),
        "{v}"
    );

    let csv = json!({"csv": "symbol,t,open,high,low,close\nACME,1,1,1,1,x\n"});
    let (status, v) = post(&s.gw, "/ai/analyze/market", csv).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]["param"]
            .as_str()
            .unwrap()
            .starts_with("csv:line 2"),
        "{v}"
    );
}

#[tokio::test]
async fn portfolio_weights_come_with_a_validated_commentary() {
    let s = setup().await;
    let (status, v) = post(&s.gw, "/ai/optimize/portfolio", example("portfolio.json")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let p = &v["portfolio"];
    let weights: Vec<f64> = p["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["weight"].as_f64().unwrap())
        .collect();
    assert_eq!(weights.len(), 3);
    assert!(
        (weights.iter().sum::<f64>() - 1.0).abs() < 1e-9,
        "{weights:?}"
    );
    assert!(
        weights.iter().all(|w| (-1e-12..=0.6 + 1e-9).contains(w)),
        "{weights:?}"
    );
    assert!(p["sharpe"].is_number() && p["volatility"].as_f64().unwrap() > 0.0);
    assert_eq!(p["frontier"].as_array().unwrap().len(), 5);
    assert_eq!(v["degraded"], false, "{}", v["commentary_error"]);
    assert!(v["commentary"]["commentary"].is_string());
}

#[tokio::test]
async fn portfolio_rejects_impossible_problems_by_name() {
    let s = setup().await;
    let cov = |c: f64| json!([[0.04, c], [c, 0.09]]);
    let cases = [
        // Perfectly correlated: singular.
        (
            json!({"assets": [{"symbol": "A", "expected_return": 0.1}, {"symbol": "B", "expected_return": 0.2}],
                "covariance": cov(0.06), "objective": "min_variance"}),
            "covariance",
        ),
        // Two assets can't each hold at most 40%.
        (
            json!({"assets": [{"symbol": "A", "expected_return": 0.1}, {"symbol": "B", "expected_return": 0.2}],
                "covariance": cov(0.0), "objective": "min_variance", "constraints": {"max_weight": 0.4}}),
            "constraints",
        ),
        (
            json!({"assets": [{"symbol": "A", "prices": [1.0, 1.1, 1.2]}, {"symbol": "B", "prices": [1.0, 1.1]}],
                "objective": "min_variance"}),
            "assets[1].prices",
        ),
        (
            json!({"assets": [{"symbol": "A", "expected_return": 0.1}, {"symbol": "B", "expected_return": 0.2}],
                "covariance": cov(0.0), "objective": "target_return", "target_return": 0.5}),
            "target_return",
        ),
    ];
    for (body, param) in cases {
        let (status, v) = post(&s.gw, "/ai/optimize/portfolio", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{param}: {v}");
        assert!(
            v["error"]["param"].as_str().unwrap().starts_with(param),
            "{param}: {v}"
        );
    }
}
