//! `POST /ai/feedback`: how good an answer was, from the caller that asked for it. It is
//! stored with the request's row (`feedback` table: one per request, a second is 409) and
//! updates the quality estimate of the model that answered, on the route it used, for the
//! request's task tag (`switchyard_routing::quality`), which the score weighs when a route or
//! request sets `weights.quality`.
//!
//! Who may: in `keys` mode only the key that made the request; any other key gets the same 404
//! as an unknown id, so a key learns nothing of another's requests. In `open` mode, any caller.
//!
//! Replicas: each applies the feedback it receives at once, and rebuilds its estimates from the
//! store's recent feedback at start and every `[quality] refresh_s`, which brings in what other
//! replicas received (feedback a rebuild read too early waits for the next one).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::ApiError;
use super::chat::body_json;
use crate::config::AuthMode;
use crate::keys::Auth;
use crate::state::Gateway;
use switchyard_routing::quality::{CellView, Feedback};
use switchyard_store::{FeedbackLog, FeedbackRecord, RequestLog, StoreError};
use switchyard_types::clock::now_ms;

/// The longest `comment`, in characters.
pub const COMMENT_MAX_CHARS: usize = 2_000;
/// The longest `request_id` (`req_` and at most 64 letters or digits; the server's are 24 hex).
const REQUEST_ID_MAX_CHARS: usize = 68;

/// A validated feedback body.
#[derive(Debug, PartialEq)]
struct Given {
    request_id: String,
    score: f64,
    comment: Option<String>,
}

/// Read the body field by field, so every bad field is a 400 naming it (and a `null` is
/// refused like any other wrong type, as the document says).
fn parse(body: Value) -> Result<Given, ApiError> {
    let Value::Object(mut fields) = body else {
        return Err(ApiError::invalid_param("body", "must be a JSON object"));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["request_id", "score", "thumbs", "comment"].contains(&k.as_str()))
    {
        return Err(ApiError::invalid_param(
            unknown.clone(),
            "unknown field: expected request_id, score, thumbs, comment",
        ));
    }
    let request_id = request_id(&mut fields)?;
    let score = match (fields.remove("score"), fields.remove("thumbs")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid_param(
                "thumbs",
                "give `score` or `thumbs`, not both",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid_param(
                "score",
                "is required (or `thumbs`): a number from 0 to 1, or \"up\" / \"down\"",
            ));
        }
        (Some(v), None) => match v.as_f64() {
            Some(s) if v.is_number() && s.is_finite() && (0.0..=1.0).contains(&s) => s,
            _ => {
                return Err(ApiError::invalid_param(
                    "score",
                    "must be a number from 0 to 1",
                ));
            }
        },
        (None, Some(v)) => match v.as_str() {
            Some("up") => 1.0,
            Some("down") => 0.0,
            _ => {
                return Err(ApiError::invalid_param(
                    "thumbs",
                    "must be \"up\" or \"down\"",
                ));
            }
        },
    };
    let comment = match fields.remove("comment") {
        None => None,
        Some(Value::String(c)) if c.chars().count() <= COMMENT_MAX_CHARS => Some(c),
        Some(_) => {
            return Err(ApiError::invalid_param(
                "comment",
                format!("must be a string of at most {COMMENT_MAX_CHARS} characters"),
            ));
        }
    };
    Ok(Given {
        request_id,
        score,
        comment,
    })
}

fn request_id(fields: &mut Map<String, Value>) -> Result<String, ApiError> {
    let bad = || {
        ApiError::invalid_param(
            "request_id",
            "must be a request id the gateway returned in x-request-id (`req_` and 1 to 64 \
             letters or digits)",
        )
    };
    match fields.remove("request_id") {
        None => Err(ApiError::invalid_param("request_id", "is required")),
        Some(Value::String(id)) => {
            let shaped = id.len() <= REQUEST_ID_MAX_CHARS
                && id.strip_prefix("req_").is_some_and(|rest| {
                    !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric())
                });
            if shaped { Ok(id) } else { Err(bad()) }
        }
        Some(_) => Err(bad()),
    }
}

fn conflict(code: &'static str, message: String) -> ApiError {
    ApiError {
        status: StatusCode::CONFLICT,
        message,
        kind: "invalid_request_error",
        param: Some("request_id".into()),
        code: Some(code),
        retry_after: None,
    }
}

fn store_failed(e: &StoreError) -> ApiError {
    tracing::warn!(error = %e, "feedback: store failed");
    ApiError::internal("The request log could not be read or written; try again")
}

pub async fn give(
    State(gw): State<Arc<Gateway>>,
    auth: Option<Extension<Auth>>,
    body: Body,
) -> Result<Response, ApiError> {
    let given = parse(body_json(&gw, body).await?)?;
    let Some(store) = &gw.store else {
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "Feedback needs the request log: this gateway has no [store]".into(),
            kind: "api_error",
            param: None,
            code: Some("store_unavailable"),
            retry_after: None,
        });
    };
    let unknown = || ApiError::no_such("request", &given.request_id);
    let row = RequestLog::get_request(store, &given.request_id)
        .await
        .map_err(|e| store_failed(&e))?
        .ok_or_else(unknown)?;
    // Another key's request answers exactly as an unknown one.
    if gw.keys.mode() == AuthMode::Keys {
        let caller = match auth.as_deref() {
            Some(Auth::Key(k)) => Some(k.id()),
            _ => None,
        };
        if caller.is_none() || caller != row.key_id.as_deref() {
            return Err(unknown());
        }
    }
    let Some(model) = row.model.clone() else {
        return Err(conflict(
            "not_answered",
            format!(
                "Request '{}' got no model's answer (status {}): there is nothing to rate",
                row.id, row.status
            ),
        ));
    };
    let record = FeedbackRecord {
        request_id: row.id.clone(),
        ts_ms: now_ms(),
        key_id: row.key_id.clone(),
        model,
        route: row.route.clone(),
        task: row.task.clone(),
        score: given.score,
        comment: given.comment,
    };
    if !store
        .add_feedback(&record)
        .await
        .map_err(|e| store_failed(&e))?
    {
        return Err(conflict(
            "feedback_exists",
            format!(
                "Request '{}' already has feedback; it is kept, not replaced",
                row.id
            ),
        ));
    }
    let now = Instant::now();
    gw.quality
        .observe(&feedback_of(&record), Duration::ZERO, now);
    let estimate = gw
        .quality
        .estimate(&record.model, &record.route, record.task.as_deref(), now);
    let body = json!({
        "request_id": record.request_id,
        "model": record.model,
        "route": record.route,
        "task": record.task,
        "score": record.score,
        "quality": estimate,
    });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

fn feedback_of(f: &FeedbackRecord) -> Feedback<'_> {
    Feedback {
        model: &f.model,
        route: &f.route,
        task: f.task.as_deref(),
        score: f.score,
    }
}

/// Rebuild the estimates from the store's recent feedback (newest `rebuild_rows` within the
/// decay horizon). Returns the rows read.
pub(crate) async fn rebuild(gw: &Gateway) -> Result<usize, StoreError> {
    let Some(store) = &gw.store else {
        return Ok(0);
    };
    let cfg = gw.quality.config();
    let now_ms = now_ms();
    let horizon = i64::try_from(cfg.horizon().as_millis()).unwrap_or(i64::MAX);
    let limit = i64::try_from(cfg.rebuild_rows).unwrap_or(i64::MAX);
    let rows = store
        .recent_feedback(now_ms.saturating_sub(horizon), limit)
        .await?;
    let age = |f: &FeedbackRecord| {
        Duration::from_millis(u64::try_from(now_ms.saturating_sub(f.ts_ms)).unwrap_or(0))
    };
    gw.quality.rebuild(
        rows.iter().map(|f| (feedback_of(f), age(f))),
        Instant::now(),
    );
    Ok(rows.len())
}

/// At start: learn from the store's feedback, then keep re-learning every `refresh_s` (other
/// replicas' feedback) while the gateway lives.
pub(crate) async fn learn(gw: &Arc<Gateway>) {
    match rebuild(gw).await {
        Ok(n) => tracing::info!(feedback = n, "quality estimates rebuilt from the store"),
        Err(e) => tracing::warn!(error = %e, "cannot read feedback from the store"),
    }
    let every = gw.quality.config().refresh_s;
    if every == 0 || gw.store.is_none() {
        return;
    }
    let weak = Arc::downgrade(gw);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(every));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(gw) = weak.upgrade() else { return };
            if let Err(e) = rebuild(&gw).await {
                tracing::warn!(error = %e, "quality refresh failed");
            }
        }
    });
}

/// One model's quality for `/ai/performance`: over every route (the prior when it has no
/// feedback), then per route, with its task tags.
pub(crate) fn performance(model: &str, cells: &[CellView], prior: f64) -> Value {
    let figures = |c: &CellView| {
        json!({
            "quality": c.quality,
            "evidence": c.evidence,
            "feedback": c.feedback,
            "positive": c.positive,
            "negative": c.negative,
        })
    };
    let mine = cells.iter().filter(|c| c.model == model);
    let mut out = json!({
        "quality": prior, "evidence": 0.0, "feedback": 0, "positive": 0, "negative": 0,
    });
    let mut routes = Map::new();
    for c in mine {
        match (&c.route, &c.task) {
            (None, _) => out = figures(c),
            (Some(r), None) => {
                let entry = routes
                    .entry(r.clone())
                    .or_insert_with(|| json!({"tasks": {}}));
                let tasks = entry["tasks"].take();
                *entry = figures(c);
                entry["tasks"] = tasks;
            }
            (Some(r), Some(t)) => {
                let entry = routes
                    .entry(r.clone())
                    .or_insert_with(|| json!({"tasks": {}}));
                entry["tasks"][t] = figures(c);
            }
        }
    }
    out["routes"] = Value::Object(routes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(body: Value) -> Option<String> {
        parse(body).err().and_then(|e| e.param)
    }

    #[test]
    fn each_bad_field_is_named() {
        let id = "req_0123456789abcdef01234567";
        assert_eq!(param(json!([1])), Some("body".into()));
        assert_eq!(param(json!({"score": 1})), Some("request_id".into()));
        assert_eq!(
            param(json!({"request_id": 5, "score": 1})),
            Some("request_id".into())
        );
        assert_eq!(
            param(json!({"request_id": "abc", "score": 1})),
            Some("request_id".into())
        );
        assert_eq!(
            param(json!({"request_id": "req_", "score": 1})),
            Some("request_id".into())
        );
        let long = format!("req_{}", "a".repeat(65));
        assert_eq!(
            param(json!({"request_id": long, "score": 1})),
            Some("request_id".into())
        );
        assert_eq!(param(json!({"request_id": id})), Some("score".into()));
        assert_eq!(
            param(json!({"request_id": id, "score": 1.5})),
            Some("score".into())
        );
        assert_eq!(
            param(json!({"request_id": id, "score": -0.1})),
            Some("score".into())
        );
        assert_eq!(
            param(json!({"request_id": id, "score": "1"})),
            Some("score".into())
        );
        assert_eq!(
            param(json!({"request_id": id, "score": null})),
            Some("score".into())
        );
        assert_eq!(
            param(json!({"request_id": id, "thumbs": "meh"})),
            Some("thumbs".into())
        );
        assert_eq!(
            param(json!({"request_id": id, "thumbs": "up", "score": 1})),
            Some("thumbs".into())
        );
        let essay = "x".repeat(COMMENT_MAX_CHARS + 1);
        assert_eq!(
            param(json!({"request_id": id, "thumbs": "up", "comment": essay})),
            Some("comment".into())
        );
        assert_eq!(
            param(json!({"request_id": id, "thumbs": "up", "extra": 1})),
            Some("extra".into())
        );
        assert_eq!(
            parse(json!({"request_id": id, "thumbs": "down", "comment": "é".repeat(2000)}))
                .unwrap()
                .score,
            0.0
        );
        assert_eq!(
            parse(json!({"request_id": id, "score": 1})).unwrap().score,
            1.0
        );
    }
}
