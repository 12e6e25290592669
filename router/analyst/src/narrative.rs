//! The language half of an analyst answer: render the endpoint's prompt, ask the router (through
//! the `Complete` trait) for a JSON answer under the endpoint's schema, so policies, caching and
//! fallback apply as to any request; validate it, and on an invalid answer ask once more with the
//! validation error (the repair retry). If no model produces a valid answer the caller gets `None` and marks its
//! answer degraded; the deterministic figures never depend on the model.

use serde::Serialize;
use serde_json::Value;

use super::prompts::PromptSpec;
use super::schema;
use crate::Complete;
use switchyard_routing::route::DEFAULT_ROUTE;
use switchyard_types::{ChatRequest, JsonSchemaFormat, Message, ResponseFormat, Role};

/// What the router produced for one prompt.
#[derive(Debug, Clone, Serialize)]
pub struct Narrative {
    /// The validated answer; `None` when no model produced one.
    pub value: Option<Value>,
    /// A second request repaired an invalid first answer.
    pub repaired: bool,
    /// Why there is no value (no model available, invalid twice, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Routing information of the call(s) made: model, provider, attempts, cost.
    pub routing: Vec<Value>,
}

impl Narrative {
    pub fn cost_usd(&self) -> f64 {
        self.routing
            .iter()
            .filter_map(|r| r["cost_usd"].as_f64())
            .sum()
    }
}

/// Ask for a schema-valid answer to `user` (the rendered prompt) under `spec`.
/// `schema` overrides the spec's schema (sentiment sizes its item array per batch).
pub async fn ask(
    router: &impl Complete,
    spec: &PromptSpec,
    user: String,
    schema: Option<&Value>,
    route: Option<&str>,
) -> Narrative {
    let schema = schema.unwrap_or(&spec.schema);
    let mut request = ChatRequest::new(
        route.unwrap_or(DEFAULT_ROUTE),
        vec![
            Message::new(Role::System, spec.system.clone()),
            Message::new(Role::User, user),
        ],
    );
    request.max_tokens = Some(spec.max_tokens);
    request.temperature = Some(spec.temperature);
    request.response_format = Some(ResponseFormat::JsonSchema {
        json_schema: JsonSchemaFormat {
            name: format!("{}_answer", spec.endpoint.name()),
            description: None,
            schema: Some(schema.clone()),
            strict: Some(true),
        },
    });
    let mut narrative = Narrative {
        value: None,
        repaired: false,
        error: None,
        routing: Vec::new(),
    };
    for attempt in 0..2 {
        let done = match router.complete(&request, route).await {
            Ok(done) => done,
            Err(message) => {
                tracing::warn!(endpoint = spec.endpoint.name(), error = %message, "no narrative");
                narrative.error = Some(message);
                return narrative;
            }
        };
        narrative.routing.push(done.routing);
        let text = done
            .response
            .message()
            .map(Message::text)
            .unwrap_or_default();
        let problem = match serde_json::from_str::<Value>(text.trim()) {
            Ok(value) => match schema::validate(&value, schema) {
                Ok(()) => {
                    narrative.value = Some(value);
                    narrative.repaired = attempt == 1;
                    narrative.error = None;
                    return narrative;
                }
                Err(e) => format!("it does not match the required schema: {e}"),
            },
            Err(e) => format!("it is not valid JSON: {e}"),
        };
        tracing::info!(endpoint = spec.endpoint.name(), %problem, attempt, "invalid narrative");
        narrative.error = Some(format!("the model's answer was invalid: {problem}"));
        // The repair retry: show the model its answer and what is wrong with it.
        request.messages.push(Message::new(Role::Assistant, text));
        request.messages.push(Message::new(
            Role::User,
            format!(
                "That answer cannot be used: {problem}. Reply again with only the JSON object, \
                 matching the schema exactly."
            ),
        ));
    }
    narrative
}
