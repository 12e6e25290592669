//! Error bodies of the OpenAI dialects: `{"error":{"message","type","param","code"}}` with each
//! server's statuses, wording and retry headers (OpenAI adds `retry-after-ms`; Ollama derives its
//! `type` from the status: `invalid_request_error`, `not_found_error`, else `api_error`).

use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde_json::json;

use super::call::Reject;
use super::openai::Quirks;
use super::profile::Fault;
use super::wire::{json_response, put};

const NO_KEY: &str = "You didn't provide an API key. You need to provide your API key in an \
    Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the \
    password field (i.e. user:YOUR_KEY) when using HTTP Basic Auth. You can obtain an API key \
    from https://platform.openai.com/account/api-keys.";
const BAD_KEY: &str = "Incorrect API key provided: sk-sim***. You can find your API key at \
    https://platform.openai.com/account/api-keys.";
const QUOTA: &str = "You exceeded your current quota, please check your plan and billing \
    details. For more information on this error, read the docs: \
    https://platform.openai.com/docs/guides/error-codes/api-errors.";
const SERVER: &str = "The server had an error while processing your request. Sorry about that!";
const OLLAMA_BUSY: &str = "server busy, please try again.  maximum pending requests exceeded";

/// The four fields of the error object, plus the status.
struct Oops {
    status: u16,
    message: String,
    ty: &'static str,
    param: Option<String>,
    code: Option<&'static str>,
}

fn oops(status: u16, message: impl Into<String>, ty: &'static str) -> Oops {
    Oops {
        status,
        message: message.into(),
        ty,
        param: None,
        code: None,
    }
}

impl Oops {
    fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
}

/// The in-stream error object (OpenAI's SDK treats any data frame with `error` as fatal).
pub(super) fn stream_error(q: &Quirks) -> String {
    let (message, ty) = if q.ollama {
        (OLLAMA_BUSY, "api_error")
    } else {
        (SERVER, "server_error")
    };
    json!({"error": {"message": message, "type": ty, "param": null, "code": null}}).to_string()
}

/// The error response for `r`, per dialect, with its retry headers.
pub(super) fn error(q: &Quirks, r: &Reject, model: &str, rid: &str, prompt: u32) -> Response {
    let mut headers = HeaderMap::new();
    if !q.ollama {
        put(&mut headers, "x-request-id", rid);
    }
    let o = match r {
        Reject::Invalid {
            message,
            param,
            code,
        } => Oops {
            status: 400,
            message: message.clone(),
            ty: "invalid_request_error",
            param: param.clone(),
            code: *code,
        },
        Reject::NoAuth => oops(401, NO_KEY, "invalid_request_error"),
        Reject::Fault(f) => {
            let tokens = q.context_window + u64::from(prompt);
            if let Some(secs) = retry_after(*f) {
                put(&mut headers, "retry-after", secs.to_string());
                if !q.ollama {
                    put(
                        &mut headers,
                        "retry-after-ms",
                        (u64::from(secs) * 1000).to_string(),
                    );
                }
            }
            if q.ollama {
                ollama_fault(*f, model, q.context_window, tokens)
            } else {
                openai_fault(*f, model, q.context_window, tokens, &mut headers)
            }
        }
    };
    let Oops {
        status,
        message,
        ty,
        param,
        code,
    } = o;
    let body = json!({"error": {"message": message, "type": ty, "param": param, "code": code}});
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(status, body.to_string(), headers)
}

fn retry_after(f: Fault) -> Option<u32> {
    match f {
        Fault::RateLimited { retry_after_secs } => Some(retry_after_secs),
        Fault::Unavailable | Fault::Overloaded => Some(1),
        _ => None,
    }
}

fn openai_fault(f: Fault, model: &str, window: u64, tokens: u64, h: &mut HeaderMap) -> Oops {
    match f {
        Fault::BadRequest => oops(400, "Invalid request (simulated).", "invalid_request_error"),
        Fault::Unauthorized => oops(401, BAD_KEY, "invalid_request_error").code("invalid_api_key"),
        Fault::Forbidden => oops(
            403,
            "Country, region, or territory not supported",
            "request_forbidden",
        )
        .code("unsupported_country_region_territory"),
        Fault::NotFound => oops(
            404,
            format!("The model `{model}` does not exist or you do not have access to it."),
            "invalid_request_error",
        )
        .code("model_not_found"),
        Fault::RateLimited {
            retry_after_secs: s,
        } => {
            put(h, "x-ratelimit-remaining-requests", "0");
            put(h, "x-ratelimit-reset-requests", format!("{s}s"));
            let message = format!(
                "Rate limit reached for {model} in organization org-sim on requests per min \
                 (RPM): Limit 10000, Used 10000, Requested 1. Please try again in {s}s. Visit \
                 https://platform.openai.com/account/rate-limits to learn more."
            );
            oops(429, message, "requests").code("rate_limit_exceeded")
        }
        Fault::Quota => oops(429, QUOTA, "insufficient_quota").code("insufficient_quota"),
        Fault::ContextLength => {
            let message = format!(
                "This model's maximum context length is {window} tokens. However, your messages \
                 resulted in {tokens} tokens. Please reduce the length of the messages."
            );
            let mut o = oops(400, message, "invalid_request_error").code("context_length_exceeded");
            o.param = Some("messages".to_owned());
            o
        }
        Fault::BadGateway => oops(502, "Bad gateway.", "cf_bad_gateway"),
        Fault::GatewayTimeout => oops(504, "Gateway timeout.", "cf_gateway_timeout"),
        Fault::Unavailable | Fault::Overloaded => oops(
            503,
            "The server is overloaded or not ready yet.",
            "service_unavailable_error",
        )
        .code("server_is_overloaded"),
        _ => oops(500, SERVER, "server_error"),
    }
}

fn ollama_fault(f: Fault, model: &str, window: u64, tokens: u64) -> Oops {
    let (status, message) = match f {
        Fault::BadRequest => (400, "invalid request (simulated)".to_owned()),
        Fault::Unauthorized => (401, "unauthorized".to_owned()),
        Fault::Forbidden => (403, "forbidden".to_owned()),
        Fault::NotFound => (
            404,
            format!("model \"{model}\" not found, try pulling it first"),
        ),
        Fault::RateLimited { .. } => (429, "too many requests".to_owned()),
        Fault::Quota => (429, "you have reached your weekly usage limit".to_owned()),
        Fault::ContextLength => (
            400,
            format!("the input length ({tokens} tokens) exceeds the context length ({window})"),
        ),
        Fault::BadGateway => (502, "bad gateway".to_owned()),
        Fault::GatewayTimeout => (504, "gateway timeout".to_owned()),
        Fault::Unavailable | Fault::Overloaded => (503, OLLAMA_BUSY.to_owned()),
        _ => (500, "the model failed to generate a response".to_owned()),
    };
    let ty = match status {
        400 => "invalid_request_error",
        404 => "not_found_error",
        _ => "api_error",
    };
    oops(status, message, ty)
}
