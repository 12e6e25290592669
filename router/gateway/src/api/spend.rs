//! `GET /ai/spend`: spend and usage from the request log, grouped by key, model, route,
//! provider or one `[log] tags` tag, per hour or UTC day, as JSON or CSV.
//!
//! `?group_by=key|model|route|provider|tag` (default `key`; `tag` needs `tag=NAME`),
//! `period=hour|day` (default `day`), `from`/`to` (RFC 3339 or unix seconds; default the last
//! 24 h; `from <= ts < to`), `format=json|csv` (default JSON, or CSV when `Accept` asks for
//! `text/csv`). Every parameter is checked, an unknown or repeated one too (400 naming it).
//! A range is at most 366 days (31 for `period=hour`) and a report at most [`MAX_ROWS`] rows.
//!
//! Who sees what (`admit`): the admin key, a key with the `dashboard` scope, a dashboard
//! session, and anyone in `open` mode see every key's rows; any other virtual key sees only
//! its own, whatever it groups by. Costs are integer picodollars, summed in SQL from the same
//! figures the keys' ledger was given, so a key's row equals its spend for that period to the
//! picodollar (shadows a route does not bill are left out, as the ledger left them out).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::ApiError;
use crate::config::valid_tag_name;
use crate::state::Gateway;
use switchyard_store::{GroupBy, Period, ReportQuery, ReportRow, SpendReport};
use switchyard_types::clock::{now_ms, parse_rfc3339_ms, rfc3339_ms};
use switchyard_types::money::pico_to_usd;

/// The most rows one report returns; a larger one is refused (narrow the range).
pub const MAX_ROWS: usize = 50_000;
const DAY_MS: i64 = 86_400_000;
/// The longest range, and the longest with `period=hour`.
const MAX_DAYS: i64 = 366;
const MAX_HOURLY_DAYS: i64 = 31;
const PARAMS: [&str; 6] = ["group_by", "period", "from", "to", "tag", "format"];

/// Whose rows a caller may see (set by `admit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    /// A virtual key without the `dashboard` scope: its own rows.
    Own(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

/// A checked request.
#[derive(Debug)]
struct Ask {
    group_by: GroupBy,
    period: Period,
    from_ms: i64,
    to_ms: i64,
    format: Format,
}

fn bad(param: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::invalid_param(param, message)
}

/// The query string's pairs; a parameter not in [`PARAMS`], or given twice, is refused.
fn params(query: Option<&str>) -> Result<BTreeMap<&'static str, String>, ApiError> {
    let uri: Uri = format!("/?{}", query.unwrap_or(""))
        .parse()
        .map_err(|_| bad("query", "the query string cannot be read"))?;
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map_err(|e| bad("query", format!("the query string cannot be read: {e}")))?;
    let mut out = BTreeMap::new();
    for (name, value) in pairs {
        let Some(known) = PARAMS.iter().find(|p| **p == name) else {
            let shown: String = name.chars().take(40).collect();
            return Err(bad(
                &shown,
                format!(
                    "unknown parameter '{shown}' (expected one of {})",
                    PARAMS.join(", ")
                ),
            ));
        };
        if out.insert(*known, value).is_some() {
            return Err(bad(known, format!("'{known}' is given twice")));
        }
    }
    Ok(out)
}

/// `YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|±HH:MM)`: exactly the document's pattern, so that nothing
/// the document calls invalid is taken (the parser alone is more lenient).
fn rfc3339_shape(text: &str) -> bool {
    let b = text.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let head = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    if !head {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return false;
        }
        rest = &frac[n..];
    }
    match rest {
        [b'Z'] => true,
        [sign, h1, h2, b':', m1, m2] => {
            (*sign == b'+' || *sign == b'-') && [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit())
        }
        _ => false,
    }
}

/// An instant: RFC 3339, or whole unix seconds (at most 12 digits).
fn instant(param: &str, text: &str) -> Result<i64, ApiError> {
    let parsed = if (1..=12).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<i64>().ok().and_then(|s| s.checked_mul(1000))
    } else if rfc3339_shape(text) {
        parse_rfc3339_ms(text)
    } else {
        None
    };
    // Both ends of jiff's range hold; beyond year 9999 is no report anyone asks for.
    parsed
        .filter(|ms| (0..=253_402_300_799_999).contains(ms))
        .ok_or_else(|| {
            bad(
                param,
                format!(
                    "{param} must be an RFC 3339 time (2026-12-04T00:00:00Z) or unix seconds \
                     between 1970 and 9999"
                ),
            )
        })
}

fn ask(gw: &Gateway, query: Option<&str>, headers: &HeaderMap) -> Result<Ask, ApiError> {
    let p = params(query)?;
    let get = |name: &str| p.get(name).map(String::as_str);
    let tag = get("tag");
    let group_by = match get("group_by").unwrap_or("key") {
        "key" => GroupBy::Key,
        "model" => GroupBy::Model,
        "route" => GroupBy::Route,
        "provider" => GroupBy::Provider,
        "tag" => {
            let Some(name) = tag else {
                return Err(bad(
                    "tag",
                    "group_by=tag needs tag=NAME (a [log] tags name)",
                ));
            };
            if !valid_tag_name(name) {
                return Err(bad(
                    "tag",
                    "a tag name is 1 to 32 lower-case letters, digits, _ or -",
                ));
            }
            if !gw.config.log.allows(name) {
                return Err(bad(
                    "tag",
                    format!("'{name}' is not a tag this gateway keeps ([log] tags)"),
                ));
            }
            GroupBy::Tag(name.to_owned())
        }
        _ => {
            return Err(bad(
                "group_by",
                "group_by must be key, model, route, provider or tag",
            ));
        }
    };
    if tag.is_some() && !matches!(group_by, GroupBy::Tag(_)) {
        return Err(bad("tag", "tag is only for group_by=tag"));
    }
    let period = match get("period").unwrap_or("day") {
        "hour" => Period::Hour,
        "day" => Period::Day,
        _ => return Err(bad("period", "period must be hour or day")),
    };
    let to_ms = get("to").map_or(Ok(now_ms()), |t| instant("to", t))?;
    let from_ms = get("from").map_or(Ok(to_ms.saturating_sub(DAY_MS)), |f| instant("from", f))?;
    if from_ms > to_ms {
        return Err(bad("from", "from must not be after to"));
    }
    let span = to_ms - from_ms;
    if span > MAX_DAYS * DAY_MS {
        return Err(bad(
            "to",
            format!("a report covers at most {MAX_DAYS} days"),
        ));
    }
    if period == Period::Hour && span > MAX_HOURLY_DAYS * DAY_MS {
        return Err(bad(
            "period",
            format!("period=hour covers at most {MAX_HOURLY_DAYS} days: use period=day"),
        ));
    }
    let format = match get("format") {
        Some("json") => Format::Json,
        Some("csv") => Format::Csv,
        Some(_) => return Err(bad("format", "format must be json or csv")),
        None if wants_csv(headers) => Format::Csv,
        None => Format::Json,
    };
    Ok(Ask {
        group_by,
        period,
        from_ms,
        to_ms,
        format,
    })
}

/// `Accept` names `text/csv` before (or without) JSON.
fn wants_csv(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let position = |mime: &str| {
        accept
            .split(',')
            .position(|m| m.split(';').next().is_some_and(|t| t.trim() == mime))
    };
    match (position("text/csv"), position("application/json")) {
        (Some(csv), Some(json)) => csv < json,
        (Some(_), None) => true,
        _ => false,
    }
}

fn group_name(g: &GroupBy) -> &'static str {
    match g {
        GroupBy::Key => "key",
        GroupBy::Model => "model",
        GroupBy::Route => "route",
        GroupBy::Provider => "provider",
        GroupBy::Tag(_) => "tag",
    }
}

/// Totals over the rows, saturating like the store's sums.
fn total(rows: &[ReportRow]) -> ReportRow {
    rows.iter().fold(
        ReportRow {
            group: None,
            period_start_ms: 0,
            requests: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            cost_picousd: 0,
        },
        |t, r| ReportRow {
            requests: t.requests.saturating_add(r.requests),
            prompt_tokens: t.prompt_tokens.saturating_add(r.prompt_tokens),
            completion_tokens: t.completion_tokens.saturating_add(r.completion_tokens),
            cost_picousd: t.cost_picousd.saturating_add(r.cost_picousd),
            ..t
        },
    )
}

fn figures(r: &ReportRow) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("requests".into(), json!(r.requests));
    m.insert("prompt_tokens".into(), json!(r.prompt_tokens));
    m.insert("completion_tokens".into(), json!(r.completion_tokens));
    m.insert("cost_picousd".into(), json!(r.cost_picousd));
    m.insert("cost_usd".into(), json!(pico_to_usd(r.cost_picousd)));
    m
}

fn json_report(ask: &Ask, scope: &Scope, rows: &[ReportRow]) -> Value {
    let lines: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut m = Map::new();
            m.insert("group".into(), json!(r.group));
            m.insert("period_start".into(), json!(rfc3339_ms(r.period_start_ms)));
            m.insert("period_start_ms".into(), json!(r.period_start_ms));
            m.extend(figures(r));
            Value::Object(m)
        })
        .collect();
    json!({
        "group_by": group_name(&ask.group_by),
        "tag": match &ask.group_by { GroupBy::Tag(t) => Some(t.as_str()), _ => None },
        "period": ask.period.as_str(),
        "from": rfc3339_ms(ask.from_ms),
        "to": rfc3339_ms(ask.to_ms),
        "from_ms": ask.from_ms,
        "to_ms": ask.to_ms,
        "key_id": match scope { Scope::Own(k) => Some(k.as_str()), Scope::All => None },
        "rows": lines,
        "total": Value::Object(figures(&total(rows))),
    })
}

/// RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled. Groups are
/// ids, config names and checked tag values (which cannot start a formula), but quote anyway.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv_report(rows: &[ReportRow]) -> String {
    let mut out = String::from(
        "group,period_start,requests,prompt_tokens,completion_tokens,cost_picousd,cost_usd\r\n",
    );
    for r in rows {
        out.push_str(&format!(
            "{},{},{},{},{},{},{:.12}\r\n",
            csv_field(r.group.as_deref().unwrap_or("")),
            rfc3339_ms(r.period_start_ms),
            r.requests,
            r.prompt_tokens,
            r.completion_tokens,
            r.cost_picousd,
            pico_to_usd(r.cost_picousd),
        ));
    }
    out
}

pub async fn report(
    State(gw): State<Arc<Gateway>>,
    scope: Option<Extension<Scope>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // `admit` always sets the scope; without it (a test calling the handler) nothing is shown.
    let Some(Extension(scope)) = scope else {
        return Err(ApiError::internal("no caller scope"));
    };
    let ask = ask(&gw, query.as_deref(), &headers)?;
    let Some(store) = &gw.store else {
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "Spend reports need the request log: this gateway has no [store]".into(),
            kind: "api_error",
            param: None,
            code: Some("store_unavailable"),
            retry_after: None,
        });
    };
    let query = ReportQuery {
        group_by: ask.group_by.clone(),
        period: ask.period,
        from_ms: ask.from_ms,
        to_ms: ask.to_ms,
        key_id: match &scope {
            Scope::Own(k) => Some(k.clone()),
            Scope::All => None,
        },
        limit: i64::try_from(MAX_ROWS + 1).unwrap_or(i64::MAX),
    };
    let rows = store.spend_report(&query).await.map_err(|e| {
        tracing::warn!(error = %e, "spend report: store failed");
        ApiError::internal("The request log could not be read; try again")
    })?;
    if rows.len() > MAX_ROWS {
        return Err(bad(
            "to",
            format!(
                "the report has more than {MAX_ROWS} rows: narrow from/to, use period=day or \
                 group by fewer values"
            ),
        ));
    }
    Ok(match ask.format {
        Format::Json => Json(json_report(&ask, &scope, &rows)).into_response(),
        Format::Csv => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            )],
            csv_report(&rows),
        )
            .into_response(),
    })
}

/// The `[log] tags` of a body's `metadata` object (`/ai/route`), on the current exchange: a bad
/// value of an allowed tag is a 400 naming `metadata.NAME`, as is one that differs from the
/// `x-switchyard-tags` header's.
pub(crate) fn tag_from_metadata(
    gw: &Gateway,
    metadata: Option<&Map<String, Value>>,
) -> Result<(), ApiError> {
    let Some(metadata) = metadata else {
        return Ok(());
    };
    let tags = gw
        .config
        .log
        .metadata_tags(Some(&Value::Object(metadata.clone())))
        .map_err(|(param, m)| bad(&param, m))?;
    if let Some(ex) = crate::exchange::current() {
        ex.add_tags(tags).map_err(|name| {
            bad(
                &format!("metadata.{name}"),
                "differs from the x-switchyard-tags header's value",
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_prefers_the_first_named_type() {
        let h = |v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT, HeaderValue::from_static(v));
            m
        };
        assert!(wants_csv(&h("text/csv")));
        assert!(wants_csv(&h("text/csv;q=0.9, application/json")));
        assert!(!wants_csv(&h("application/json, text/csv")));
        assert!(!wants_csv(&h("*/*")));
        assert!(!wants_csv(&HeaderMap::new()));
    }

    #[test]
    fn instants_are_rfc3339_or_unix_seconds() {
        assert_eq!(instant("from", "1796342400").unwrap(), 1_796_342_400_000);
        assert_eq!(
            instant("from", "2026-12-04T00:00:00Z").unwrap(),
            1_796_342_400_000
        );
        assert_eq!(
            instant("to", "2026-12-04T01:00:00.5+01:00").unwrap(),
            1_796_342_400_500
        );
        for bad in [
            "",
            "-5",
            "1e9",
            "2026-12-04",
            "2026-12-04T00:00:00z",
            "2026-12-04 00:00:00Z",
            "2026-12-04T00:00Z",
            "2026-13-04T00:00:00Z",
            "99999999999999999999",
            "now",
        ] {
            let e = instant("from", bad).unwrap_err();
            assert_eq!(e.param.as_deref(), Some("from"), "{bad}");
        }
    }

    #[test]
    fn params_refuse_unknown_and_repeated_names() {
        assert_eq!(
            params(Some("period=hour&x=1"))
                .unwrap_err()
                .param
                .as_deref(),
            Some("x")
        );
        assert_eq!(
            params(Some("period=hour&period=day"))
                .unwrap_err()
                .param
                .as_deref(),
            Some("period")
        );
        assert_eq!(params(None).unwrap().len(), 0);
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
