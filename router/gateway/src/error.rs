//! `Error`: why the gateway refused or could not answer a request, as domain data. Keys, policies
//! and the pipeline return it; none of them knows HTTP. `api::error` alone maps it to a status,
//! OpenAI's error `type` and `code`, and a `retry-after` header.
//!
//! The `Display` text is what the client reads: it names the model, route, key or policy and the
//! class of failure, never an upstream's raw message (except for client errors the client must
//! fix: an upstream 400 or a context-length refusal).

use std::fmt;
use std::time::Duration;

use switchyard_types::error::{ErrorKind, ProviderError};

#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A missing or invalid field, named by its path (`messages[1].content`).
    InvalidParam {
        param: String,
        message: String,
    },
    /// No route or model by that name.
    ModelNotFound {
        model: String,
        available: Vec<String>,
    },
    /// Every candidate is out of service for now (breakers open, probing, disabled; some may be
    /// cooling down), with the soonest any of them may serve again when that is known.
    Unavailable {
        route: String,
        detail: String,
        retry_after: Option<Duration>,
    },
    /// Every candidate is cooling down after upstream 429s: a rate limit the client can wait
    /// out, `retry_after` being the soonest any of them is back.
    CoolingDown {
        route: String,
        detail: String,
        retry_after: Duration,
    },
    /// No candidate can serve this request as it is (capabilities, context, limits).
    NoEligibleModel {
        route: String,
        detail: String,
    },
    /// The prompt does not fit the model's context window (caught before any call).
    ContextLength {
        detail: String,
    },
    /// A routing policy refused the request with its own status (4xx or 503).
    PolicyDenied {
        status: u16,
        policy: String,
        code: String,
        reason: String,
    },
    /// A fail-closed policy could not run, so the request is refused rather than sent unchecked.
    PolicyFailed {
        policy: String,
        detail: String,
    },
    /// The request is over a policy's input limits (`[limits]` of its manifest): the caller's
    /// error, refused before any policy runs, and not counted against the policy's health.
    PolicyInputTooLarge {
        policy: String,
        detail: String,
    },
    /// No usable credentials for the gateway itself (virtual key or admin key).
    Unauthorized(String),
    /// The key is valid but may not do this (a route or model outside its allow-list), or the
    /// API is disabled.
    Forbidden {
        param: Option<String>,
        message: String,
    },
    /// The key's budget for the period is spent (or reserved by requests in flight).
    BudgetExceeded(String),
    /// Over the key's requests- or tokens-per-minute limit.
    RateLimited {
        message: String,
        retry_after: Duration,
    },
    /// The last upstream failure of a request whose attempts all failed; `attempts` summarises
    /// them when there were several.
    Upstream {
        model: String,
        error: ProviderError,
        attempts: Option<String>,
    },
    /// The shared counters (Redis) are unreachable and `[redis] on_failure = "closed"`.
    LimitsUnavailable(String),
    Internal(String),
}

impl Error {
    pub fn invalid_param(param: impl Into<String>, message: impl fmt::Display) -> Self {
        Error::InvalidParam {
            param: param.into(),
            message: message.to_string(),
        }
    }

    pub fn model_not_found(model: &str, available: &[&str]) -> Self {
        Error::ModelNotFound {
            model: model.to_owned(),
            available: available.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    pub fn unavailable(route: &str, detail: &str, retry_after: Option<Duration>) -> Self {
        Error::Unavailable {
            route: route.to_owned(),
            detail: detail.to_owned(),
            retry_after,
        }
    }

    pub fn cooling_down(route: &str, detail: &str, retry_after: Duration) -> Self {
        Error::CoolingDown {
            route: route.to_owned(),
            detail: detail.to_owned(),
            retry_after,
        }
    }

    pub fn no_eligible_model(route: &str, detail: &str) -> Self {
        Error::NoEligibleModel {
            route: route.to_owned(),
            detail: detail.to_owned(),
        }
    }

    pub fn context_length(detail: &str) -> Self {
        Error::ContextLength {
            detail: detail.to_owned(),
        }
    }

    pub fn policy_denied(status: u16, policy: &str, code: &str, reason: &str) -> Self {
        Error::PolicyDenied {
            status,
            policy: policy.to_owned(),
            code: code.to_owned(),
            reason: reason.to_owned(),
        }
    }

    pub fn policy_failed(policy: &str, detail: &str) -> Self {
        Error::PolicyFailed {
            policy: policy.to_owned(),
            detail: detail.to_owned(),
        }
    }

    pub fn policy_input_too_large(policy: &str, detail: &str) -> Self {
        Error::PolicyInputTooLarge {
            policy: policy.to_owned(),
            detail: detail.to_owned(),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Error::Unauthorized(message.into())
    }

    pub fn forbidden(param: Option<String>, message: impl Into<String>) -> Self {
        Error::Forbidden {
            param,
            message: message.into(),
        }
    }

    pub fn budget_exceeded(message: impl Into<String>) -> Self {
        Error::BudgetExceeded(message.into())
    }

    pub fn rate_limited(message: impl Into<String>, retry_after: Duration) -> Self {
        Error::RateLimited {
            message: message.into(),
            retry_after,
        }
    }

    pub fn upstream(model: &str, error: &ProviderError) -> Self {
        Error::Upstream {
            model: model.to_owned(),
            error: error.clone(),
            attempts: None,
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }

    pub fn limits_unavailable(message: impl Into<String>) -> Self {
        Error::LimitsUnavailable(message.into())
    }

    /// How long the client should wait before trying again, when that is known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } | Error::CoolingDown { retry_after, .. } => {
                Some(*retry_after)
            }
            Error::Unavailable { retry_after, .. } => *retry_after,
            Error::LimitsUnavailable(_) => Some(Duration::from_secs(1)),
            Error::Upstream { error, .. } => error.retry_after,
            _ => None,
        }
    }
}

/// What the client is told an upstream failure means.
fn upstream_wording(kind: ErrorKind) -> &'static str {
    use ErrorKind as K;
    match kind {
        K::RateLimited => "is rate limited upstream",
        K::QuotaExhausted => "has exhausted its upstream quota",
        K::Overloaded => "is overloaded upstream",
        K::Timeout => "did not answer in time",
        K::ContextLength => "cannot fit this prompt in its context window",
        K::InvalidRequest => "rejected the request",
        K::Auth | K::PermissionDenied => "refused the gateway's credentials",
        K::NotFound => "is not known to its provider",
        K::Unsupported => "cannot take this request",
        K::Server | K::Connect | K::StreamCut | K::MalformedResponse => "failed upstream",
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidParam { param, message } => write!(f, "Invalid '{param}': {message}"),
            Error::ModelNotFound { model, available } => write!(
                f,
                "The model '{model}' does not exist or you do not have access to it. \
                 Available: {}.",
                available.join(", ")
            ),
            Error::Unavailable { route, detail, .. } => {
                write!(f, "No model of {route} is available right now: {detail}")
            }
            Error::CoolingDown {
                route,
                detail,
                retry_after,
            } => write!(
                f,
                "Every model of {route} is rate limited upstream: {detail}. Retry in {} s.",
                retry_after.as_secs().max(1)
            ),
            Error::NoEligibleModel { route, detail } => {
                write!(
                    f,
                    "No model of route '{route}' can serve this request: {detail}"
                )
            }
            Error::ContextLength { detail } => write!(f, "The prompt is too long: {detail}"),
            Error::PolicyDenied {
                policy,
                code,
                reason,
                ..
            } => write!(f, "Policy '{policy}' denied the request ({code}): {reason}"),
            Error::PolicyFailed { policy, detail } => {
                write!(
                    f,
                    "Policy '{policy}' could not run and fails closed: {detail}"
                )
            }
            Error::PolicyInputTooLarge { policy, detail } => write!(
                f,
                "The request is too large for policy '{policy}': {detail}"
            ),
            Error::Unauthorized(m)
            | Error::BudgetExceeded(m)
            | Error::Internal(m)
            | Error::LimitsUnavailable(m) => f.write_str(m),
            Error::Forbidden { message, .. } | Error::RateLimited { message, .. } => {
                f.write_str(message)
            }
            Error::Upstream {
                model,
                error,
                attempts,
            } => {
                if let Some(summary) = attempts {
                    write!(f, "{summary}. Last: ")?;
                }
                let what = upstream_wording(error.kind);
                // A client error is the client's to fix: show the provider's own words (or,
                // for `Unsupported`, the translator's). For the rest the provider's message
                // stays in the log.
                if matches!(
                    error.kind,
                    ErrorKind::InvalidRequest | ErrorKind::ContextLength | ErrorKind::Unsupported
                ) {
                    write!(f, "Model '{model}' {what}: {}", error.message)
                } else {
                    write!(f, "Model '{model}' {what} ({})", error.kind.label())
                }
            }
        }
    }
}

impl std::error::Error for Error {}
