//! Error bodies of the OpenAI dialects: `{"error":{"message","type","param","code"}}` with each
//! server's statuses, wording and retry headers (OpenAI: `retry-after-ms` too; Ollama: its own
//! types `invalid_request_error` / `not_found_error` / `api_error`).

use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::json;

use super::exchange::Reject;
use super::openai::Quirks;
use super::profile::Fault;
use super::wire::{json_response, put};

/// The in-stream error object (OpenAI's SDK treats any data frame with `error` as fatal).
pub(super) fn stream_error(q: &Quirks) -> String {
    let (message, ty) = if q.ollama {
        (
            "server busy, please try again.  maximum pending requests exceeded",
            "api_error",
        )
    } else {
        (
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
        )
    };
    json!({"error": {"message": message, "type": ty, "param": null, "code": null}}).to_string()
}

/// Status, message, type, param, code and extra headers of an error, per dialect.
pub(super) fn error(q: &Quirks, r: &Reject, model: &str, rid: &str, prompt: u32) -> Response {
    let mut headers = HeaderMap::new();
    if !q.ollama {
        put(&mut headers, "x-request-id", rid);
    }
    let retry = |h: &mut HeaderMap, secs: u32| {
        put(h, "retry-after", secs.to_string());
        if !q.ollama {
            put(h, "retry-after-ms", (u64::from(secs) * 1000).to_string());
        }
    };
    let tokens = q.context_window + u64::from(prompt);
    let window = q.context_window;
    let (status, message, ty, param, code): (u16, String, &str, Option<String>, Option<&str>) = match r {
        Reject::Invalid { message, param, code } => (400, message.clone(), "invalid_request_error", param.clone(), *code),
        Reject::NoAuth => (401, "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (i.e. user:YOUR_KEY) when using HTTP Basic Auth. You can obtain an API key from https://platform.openai.com/account/api-keys.".into(), "invalid_request_error", None, None),
        Reject::Fault(f) => match (f, q.ollama) {
            (Fault::BadRequest, _) => (400, "Invalid request: the simulator was asked to reject it.".into(), "invalid_request_error", None, None),
            (Fault::Unauthorized, false) => (401, "Incorrect API key provided: sk-sim***. You can find your API key at https://platform.openai.com/account/api-keys.".into(), "invalid_request_error", None, Some("invalid_api_key")),
            (Fault::Unauthorized, true) => (401, "unauthorized".into(), "api_error", None, None),
            (Fault::Forbidden, false) => (403, "Country, region, or territory not supported".into(), "request_forbidden", None, Some("unsupported_country_region_territory")),
            (Fault::Forbidden, true) => (403, "forbidden".into(), "api_error", None, None),
            (Fault::NotFound, false) => (404, format!("The model `{model}` does not exist or you do not have access to it."), "invalid_request_error", None, Some("model_not_found")),
            (Fault::NotFound, true) => (404, format!("model \"{model}\" not found, try pulling it first"), "not_found_error", None, None),
            (Fault::RateLimited { retry_after_secs: s }, ollama) => {
                retry(&mut headers, *s);
                if ollama {
                    (429, "too many requests".into(), "api_error", None, None)
                } else {
                    put(&mut headers, "x-ratelimit-remaining-requests", "0");
                    put(&mut headers, "x-ratelimit-reset-requests", format!("{s}s"));
                    (429, format!("Rate limit reached for {model} in organization org-sim on requests per min (RPM): Limit 10000, Used 10000, Requested 1. Please try again in {s}s. Visit https://platform.openai.com/account/rate-limits to learn more."), "requests", None, Some("rate_limit_exceeded"))
                }
            }
            (Fault::Quota, false) => (429, "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.".into(), "insufficient_quota", None, Some("insufficient_quota")),
            (Fault::Quota, true) => (429, "you (sim) have reached your weekly usage limit, upgrade for higher limits".into(), "api_error", None, None),
            (Fault::ContextLength, false) => (400, format!("This model's maximum context length is {window} tokens. However, your messages resulted in {tokens} tokens. Please reduce the length of the messages."), "invalid_request_error", Some("messages".into()), Some("context_length_exceeded")),
            (Fault::ContextLength, true) => (400, format!("the input length ({tokens} tokens) exceeds the context length ({window} tokens)"), "invalid_request_error", None, None),
            (Fault::BadGateway, false) => (502, "Bad gateway.".into(), "cf_bad_gateway", None, None),
            (Fault::GatewayTimeout, false) => (504, "Gateway timeout.".into(), "cf_gateway_timeout", None, None),
            (Fault::Unavailable | Fault::Overloaded, ollama) => {
                retry(&mut headers, 1);
                if ollama {
                    (503, "server busy, please try again.  maximum pending requests exceeded".into(), "api_error", None, None)
                } else {
                    (503, "The server is overloaded or not ready yet.".into(), "service_unavailable_error", None, Some("server_is_overloaded"))
                }
            }
            (other, _) => {
                let status = match other {
                    Fault::BadGateway => 502,
                    Fault::GatewayTimeout => 504,
                    _ => 500,
                };
                let message = if q.ollama { "the model failed to generate a response" } else { "The server had an error while processing your request. Sorry about that!" };
                (status, message.into(), if q.ollama { "api_error" } else { "server_error" }, None, None)
            }
        },
    };
    let body = json!({"error": {"message": message, "type": ty, "param": param, "code": code}})
        .to_string();
    json_response(
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
        headers,
    )
}
