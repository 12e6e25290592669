//! Gemini embeddings: `POST {base}/models/{model}:batchEmbedContents`, one `EmbedContentRequest`
//! per input, at most `MAX_BATCH` per call (the API's own limit); larger requests are sent as
//! several calls, one after another, whose bodies share one `max_response_bytes` budget.
//!
//! Gemini reports no token usage for embeddings: the answer's `prompt_tokens` is 0, and the
//! gateway fills in its own count when an upstream reports 0.

use serde::{Deserialize, Serialize};

use super::{GeminiProvider, map_error};
use crate::transport::read_body;
use crate::{Call, ProviderError, embed, over_limit, post_json};
use switchyard_types::ChatResponse;

/// The most requests one `batchEmbedContents` call may carry.
pub const MAX_BATCH: usize = 100;

const WHAT: &str = "Gemini BatchEmbedContentsResponse";

/// The body of one `batchEmbedContents` call.
#[derive(Debug, Serialize)]
pub struct WireBatch<'a> {
    requests: Vec<WireEmbedRequest<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct WireEmbedRequest<'a> {
    /// `models/{model}`: must name the model of the path.
    model: &'a str,
    content: WireContent<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_dimensionality: Option<u32>,
}

#[derive(Debug, Serialize)]
struct WireContent<'a> {
    parts: [WirePart<'a>; 1],
}

#[derive(Debug, Serialize)]
struct WirePart<'a> {
    text: &'a str,
}

/// One batch of inputs as Gemini wants it; `model` is `models/{id}`.
pub fn to_wire<'a>(model: &'a str, inputs: &'a [String], dimensions: Option<u32>) -> WireBatch<'a> {
    WireBatch {
        requests: inputs
            .iter()
            .map(|text| WireEmbedRequest {
                model,
                content: WireContent {
                    parts: [WirePart { text }],
                },
                output_dimensionality: dimensions,
            })
            .collect(),
    }
}

/// A `BatchEmbedContentsResponse`: `{"embeddings":[{"values":[..]}]}`, in request order.
#[derive(Debug, Deserialize)]
pub struct WireBatchResponse {
    #[serde(default)]
    embeddings: Vec<WireEmbedding>,
}

#[derive(Debug, Deserialize)]
struct WireEmbedding {
    #[serde(default)]
    values: Vec<f32>,
}

/// One batch's vectors, refused unless there is one per input of the batch.
pub fn from_wire(wire: WireBatchResponse, count: usize) -> Result<Vec<Vec<f32>>, ProviderError> {
    if wire.embeddings.len() != count {
        return Err(embed::refused(
            WHAT,
            format!("{} vectors for {count} inputs", wire.embeddings.len()),
        ));
    }
    Ok(wire.embeddings.into_iter().map(|e| e.values).collect())
}

impl GeminiProvider {
    /// An embeddings request (`call.request.embed` is set).
    pub async fn embed(&self, call: Call<'_>) -> Result<ChatResponse, ProviderError> {
        let inputs = embed::inputs(call.request)?;
        let id = call
            .upstream_model
            .strip_prefix("models/")
            .unwrap_or(call.upstream_model);
        let name = format!("models/{id}");
        let dimensions = embed::dimensions(call);
        let limit = self.settings.limits.max_response_bytes;
        let mut left = limit;
        let mut vectors = Vec::with_capacity(inputs.len());
        for batch in inputs.chunks(MAX_BATCH) {
            let body = to_wire(&name, batch, dimensions);
            let request = call.traced(self.post_method(id, "batchEmbedContents"));
            let response = post_json(request, &body, map_error).await?;
            let bytes = read_body(response, left).await.map_err(|e| {
                let over = e.kind == crate::ErrorKind::MalformedResponse && !e.retryable;
                if over && left < limit {
                    over_limit(format!("the answers' bodies together exceed {limit} bytes"))
                } else {
                    e
                }
            })?;
            left -= bytes.len();
            let wire: WireBatchResponse =
                serde_json::from_slice(&bytes).map_err(|e| ProviderError::malformed(WHAT, e))?;
            vectors.extend(from_wire(wire, batch.len())?);
        }
        let vectors = embed::check(WHAT, inputs.len(), dimensions, vectors)?;
        Ok(embed::answer(id, vectors, 0))
    }
}
