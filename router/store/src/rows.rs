//! Rows as the backends read and write them, and their conversion to and from the records of
//! `lib.rs` (lists as JSON text, integers narrowed with the column named in the error).

use std::collections::HashMap;

use super::*;

/// The longest client `x-request-id` the store keeps, in characters. The gateway refuses longer
/// ones; the store cuts them here as well, because an indexed value over Postgres' B-tree limit
/// (about 2.7 kB) would fail the whole batch it travels in.
pub const CLIENT_REQUEST_ID_MAX_CHARS: usize = 128;

/// `id` cut to [`CLIENT_REQUEST_ID_MAX_CHARS`] characters (on a character boundary).
pub(crate) fn clamp_client_id(id: &str) -> &str {
    match id.char_indices().nth(CLIENT_REQUEST_ID_MAX_CHARS) {
        Some((end, _)) => &id[..end],
        None => id,
    }
}

/// Deltas summed per `(key_id, period_start_ms)`, sorted by key: one statement cannot update
/// a row twice (Postgres), and concurrent writers then lock spend rows in the same order.
pub(crate) fn merge_deltas(deltas: &[SpendDelta]) -> BTreeMap<(&str, i64), SpendTotals> {
    let mut out: BTreeMap<(&str, i64), SpendTotals> = BTreeMap::new();
    for d in deltas {
        let t = out
            .entry((d.key_id.as_str(), d.period_start_ms))
            .or_default();
        *t = t.saturating_add(d.totals);
    }
    out
}

/// A list index as a column value.
pub(crate) fn idx(i: usize) -> i64 {
    i64::try_from(i).unwrap_or(i64::MAX)
}

pub(crate) fn json_list(v: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Decode(format!("cannot encode list: {e}")))
}

pub(crate) fn parse_list(s: &str, column: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(s)
        .map_err(|e| StoreError::Decode(format!("{column} is not a JSON list of strings: {e}")))
}

/// `tags` as stored: a JSON object of strings, NULL when there are none (so untagged rows cost
/// the report's index nothing).
pub(crate) fn json_tags(tags: &BTreeMap<String, String>) -> Result<Option<String>, StoreError> {
    if tags.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(tags)
        .map(Some)
        .map_err(|e| StoreError::Decode(format!("cannot encode tags: {e}")))
}

pub(crate) fn parse_tags(s: Option<&str>) -> Result<BTreeMap<String, String>, StoreError> {
    s.map_or_else(
        || Ok(BTreeMap::new()),
        |s| {
            serde_json::from_str(s).map_err(|e| {
                StoreError::Decode(format!(
                    "requests.tags is not a JSON object of strings: {e}"
                ))
            })
        },
    )
}

pub(crate) fn narrow<T: TryFrom<i64>>(v: i64, column: &str) -> Result<T, StoreError> {
    T::try_from(v).map_err(|_| StoreError::Decode(format!("{column} = {v} is out of range")))
}

pub(crate) fn narrow_opt<T: TryFrom<i64>>(
    v: Option<i64>,
    column: &str,
) -> Result<Option<T>, StoreError> {
    v.map(|v| narrow(v, column)).transpose()
}

#[derive(sqlx::FromRow)]
pub(crate) struct RequestRow {
    pub(crate) id: String,
    pub(crate) client_request_id: Option<String>,
    pub(crate) ts_ms: i64,
    pub(crate) key_id: Option<String>,
    pub(crate) endpoint: String,
    pub(crate) route: String,
    pub(crate) task: Option<String>,
    pub(crate) model: Option<String>,
    pub(crate) provider: Option<String>,
    pub(crate) status: i64,
    pub(crate) error_code: Option<String>,
    pub(crate) stream: bool,
    pub(crate) cache: String,
    pub(crate) prompt_tokens: i64,
    pub(crate) completion_tokens: i64,
    pub(crate) cached_tokens: i64,
    pub(crate) reasoning_tokens: i64,
    pub(crate) usage_estimated: bool,
    pub(crate) cost_picousd: i64,
    pub(crate) latency_ms: f64,
    pub(crate) ttft_ms: Option<f64>,
    pub(crate) overhead_ms: f64,
    pub(crate) shadow_of: Option<String>,
    pub(crate) response_text: Option<String>,
    /// JSON object of strings, or NULL (migration 0006).
    pub(crate) tags: Option<String>,
    pub(crate) billed: bool,
}

impl RequestRow {
    pub(crate) fn into_record(
        self,
        attempts: Vec<AttemptRow>,
        policies: Vec<PolicyRow>,
    ) -> Result<RequestRecord, StoreError> {
        Ok(RequestRecord {
            id: self.id,
            client_request_id: self.client_request_id,
            ts_ms: self.ts_ms,
            key_id: self.key_id,
            endpoint: self.endpoint,
            route: self.route,
            task: self.task,
            model: self.model,
            provider: self.provider,
            status: narrow(self.status, "requests.status")?,
            error_code: self.error_code,
            stream: self.stream,
            cache: self.cache,
            prompt_tokens: narrow(self.prompt_tokens, "requests.prompt_tokens")?,
            completion_tokens: narrow(self.completion_tokens, "requests.completion_tokens")?,
            cached_tokens: narrow(self.cached_tokens, "requests.cached_tokens")?,
            reasoning_tokens: narrow(self.reasoning_tokens, "requests.reasoning_tokens")?,
            usage_estimated: self.usage_estimated,
            cost_picousd: self.cost_picousd,
            latency_ms: self.latency_ms,
            ttft_ms: self.ttft_ms,
            overhead_ms: self.overhead_ms,
            shadow_of: self.shadow_of,
            response_text: self.response_text,
            tags: parse_tags(self.tags.as_deref())?,
            billed: self.billed,
            attempts: attempts
                .into_iter()
                .map(AttemptRow::into_record)
                .collect::<Result<_, _>>()?,
            policies: policies
                .into_iter()
                .map(PolicyRow::into_record)
                .collect::<Result<_, _>>()?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AttemptRow {
    pub(crate) request_id: String,
    pub(crate) model: String,
    pub(crate) provider: String,
    pub(crate) outcome: String,
    pub(crate) status: Option<i64>,
    pub(crate) latency_ms: f64,
    pub(crate) detail: Option<String>,
    pub(crate) cost_picousd: Option<i64>,
}

impl AttemptRow {
    pub(crate) fn into_record(self) -> Result<AttemptRecord, StoreError> {
        Ok(AttemptRecord {
            model: self.model,
            provider: self.provider,
            outcome: self.outcome,
            status: narrow_opt(self.status, "attempts.status")?,
            latency_ms: self.latency_ms,
            detail: self.detail,
            cost_picousd: self.cost_picousd,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct PolicyRow {
    pub(crate) request_id: String,
    pub(crate) policy: String,
    pub(crate) outcome: String,
    pub(crate) annotations: String,
}

impl PolicyRow {
    pub(crate) fn into_record(self) -> Result<PolicyRecord, StoreError> {
        Ok(PolicyRecord {
            annotations: parse_list(&self.annotations, "policy_annotations.annotations")?,
            policy: self.policy,
            outcome: self.outcome,
        })
    }
}

/// Requests (in the order given) joined with their children, which may come in any request
/// order but in `idx` order within a request.
pub(crate) fn assemble(
    requests: Vec<RequestRow>,
    attempts: Vec<AttemptRow>,
    policies: Vec<PolicyRow>,
) -> Result<Vec<RequestRecord>, StoreError> {
    let mut attempts_of: HashMap<String, Vec<AttemptRow>> = HashMap::new();
    for a in attempts {
        attempts_of.entry(a.request_id.clone()).or_default().push(a);
    }
    let mut policies_of: HashMap<String, Vec<PolicyRow>> = HashMap::new();
    for p in policies {
        policies_of.entry(p.request_id.clone()).or_default().push(p);
    }
    requests
        .into_iter()
        .map(|r| {
            let a = attempts_of.remove(&r.id).unwrap_or_default();
            let p = policies_of.remove(&r.id).unwrap_or_default();
            r.into_record(a, p)
        })
        .collect()
}

#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) hash: String,
    pub(crate) prefix: String,
    pub(crate) created_ms: i64,
    pub(crate) revoked_ms: Option<i64>,
    pub(crate) routes: String,
    pub(crate) models: String,
    pub(crate) budget_picousd: Option<i64>,
    pub(crate) budget_period: String,
    pub(crate) rpm: Option<i64>,
    pub(crate) tpm: Option<i64>,
    pub(crate) scopes: String,
}

impl KeyRow {
    pub(crate) fn into_record(self) -> Result<KeyRecord, StoreError> {
        Ok(KeyRecord {
            routes: parse_list(&self.routes, "api_keys.routes")?,
            models: parse_list(&self.models, "api_keys.models")?,
            scopes: parse_list(&self.scopes, "api_keys.scopes")?,
            rpm: narrow_opt(self.rpm, "api_keys.rpm")?,
            tpm: narrow_opt(self.tpm, "api_keys.tpm")?,
            id: self.id,
            name: self.name,
            hash: self.hash,
            prefix: self.prefix,
            created_ms: self.created_ms,
            revoked_ms: self.revoked_ms,
            budget_picousd: self.budget_picousd,
            budget_period: self.budget_period,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SpendRow {
    pub(crate) period_start_ms: i64,
    #[sqlx(flatten)]
    pub(crate) totals: SpendTotals,
}
