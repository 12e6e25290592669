//! THE ORDER OF STEPS for one chat request. Only this file knows it:
//!
//! admit (api/) → resolve the model → check capabilities → execute (one attempt) → respond.
//!
//! Later steps slot in here in this order: count → candidates and score → policies → cache →
//! execute (attempt loop with fallback) → record.

use crate::api::ApiError;
use crate::config::ModelConfig;
use crate::execute::{self, Primed};
use crate::ids::{ModelId, ProviderId};
use crate::providers::{Call, Provider};
use crate::state::Gateway;
use crate::types::{ChatRequest, ChatResponse, ResponseFormat};

/// What was produced, and by whom.
pub struct Outcome<T> {
    pub value: T,
    pub model: ModelId,
    pub provider: ProviderId,
    pub attempts: u32,
}

/// A complete answer.
pub async fn complete(
    gw: &Gateway,
    request: &ChatRequest,
) -> Result<Outcome<ChatResponse>, ApiError> {
    let (model, provider) = resolve(gw, request)?;
    let call = call_for(model, request);
    match provider.chat(call).await {
        Ok(response) => Ok(Outcome {
            value: response,
            model: model.id.clone(),
            provider: model.provider.clone(),
            attempts: 1,
        }),
        Err(e) => Err(upstream_error(model, &e)),
    }
}

/// A streamed answer, primed: its first content token has arrived, nothing has been sent yet.
pub async fn stream(gw: &Gateway, request: &ChatRequest) -> Result<Outcome<Primed>, ApiError> {
    let (model, provider) = resolve(gw, request)?;
    let call = call_for(model, request);
    let primed = match provider.chat_stream(call).await {
        Ok(s) => execute::prime(s).await,
        Err(e) => Err(e),
    };
    match primed {
        Ok(primed) => Ok(Outcome {
            value: primed,
            model: model.id.clone(),
            provider: model.provider.clone(),
            attempts: 1,
        }),
        Err(e) => Err(upstream_error(model, &e)),
    }
}

fn call_for<'a>(model: &'a ModelConfig, request: &'a ChatRequest) -> Call<'a> {
    Call {
        request,
        upstream_model: &model.upstream,
        default_max_tokens: model.entry.max_output,
    }
}

fn upstream_error(model: &ModelConfig, e: &crate::providers::ProviderError) -> ApiError {
    tracing::warn!(
        model = %model.id,
        provider = %model.provider,
        kind = e.kind.label(),
        status = e.status,
        upstream_message = %e.message,
        "upstream call failed"
    );
    ApiError::upstream(model.id.as_str(), e)
}

/// The configured model a request names, its provider, and whether it can serve the request.
pub fn resolve<'g>(
    gw: &'g Gateway,
    request: &ChatRequest,
) -> Result<(&'g ModelConfig, &'g Provider), ApiError> {
    let Some(model) = gw.model(&request.model) else {
        let names: Vec<&str> = gw.config.models.keys().map(ModelId::as_str).collect();
        return Err(ApiError::model_not_found(&request.model, &names));
    };
    let caps = model.entry.capabilities;
    let lacks = |param: &str, what: &str| {
        Err(ApiError::invalid_param(
            param,
            format!("model '{}' does not support {what}", model.id),
        ))
    };
    if request.has_tools() && !caps.tools {
        return lacks("tools", "tools");
    }
    match &request.response_format {
        Some(ResponseFormat::JsonSchema { .. }) if !caps.json_schema => {
            return lacks("response_format", "JSON schema output");
        }
        Some(ResponseFormat::JsonObject) if !caps.json_object => {
            return lacks("response_format", "JSON mode");
        }
        _ => {}
    }
    if request.stream && !caps.streaming {
        return lacks("stream", "streaming");
    }
    if let Some(max) = request.max_tokens
        && max > model.entry.max_output
    {
        return Err(ApiError::invalid_param(
            "max_tokens",
            format!(
                "{max} exceeds model '{}''s maximum output of {} tokens",
                model.id, model.entry.max_output
            ),
        ));
    }
    let provider = gw.provider(&model.provider).ok_or_else(|| {
        ApiError::internal(format!("provider '{}' is not running", model.provider))
    })?;
    Ok((model, provider))
}
