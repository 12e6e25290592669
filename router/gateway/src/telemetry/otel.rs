//! OpenTelemetry traces (`[telemetry.traces]`): one span per model request, with children for
//! routing, each policy, the cache lookup and each upstream attempt (retries and hedges too),
//! exported over OTLP/HTTP (protobuf) by the SDK's batch span processor on its own thread.
//! Attributes follow the GenAI semantic conventions (`gen_ai.*`) plus Switchyard's routing
//! facts (`switchyard.*`).
//!
//! Spans are built when the request's exchange finishes, from what it recorded (the log row,
//! with its attempts) and from a few instants noted on the way (`Marks`), with explicit start
//! and end times. Each attempt's span id is chosen when the attempt starts, because it goes
//! upstream in the `traceparent` header before the span can exist; so spans are handed to the
//! processor as finished `SpanData` instead of being started through a tracer, which picks its
//! own ids. Traces off: no exporter, no thread, and every hook is one branch on `None`; a
//! request that is not sampled records nothing either (it only forwards an unsampled
//! `traceparent`).
//!
//! IMPORTANT: prompt and completion text are exported only with `content = true`, bounded by
//! `max_content_bytes` per attribute. Nothing else carries request text: failed attempts are
//! described by kind and status, never by an upstream's message, and policy annotations are
//! not exported.

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, Sampler,
    SamplingDecision, ShouldSample, SpanData, SpanEvents, SpanLinks, SpanProcessor,
};
use tokio::time::Instant;

use crate::cache::Outcome;
use crate::config::{Config, ModelConfig, TracesConfig};
use crate::exchange::Exchange;
use crate::policy::PolicyRun;
use switchyard_providers::{ProviderKind, ProviderSettings, TraceParent};
use switchyard_routing::candidates::Decision;
use switchyard_store::{AttemptRecord, RequestRecord};
use switchyard_types::ids::{ModelId, ProviderId};
use switchyard_types::{ChatRequest, ChatResponse, FinishReason, StreamAccumulator};

mod content;
mod spans;

/// Marks of one kind kept per request, at most (a batch makes many calls; memory stays bounded).
const MAX_MARKS: usize = 256;

/// The exporter and what spans are built with; `None` in `Sinks` when traces are off.
pub struct Traces {
    processor: BatchSpanProcessor,
    sampler: Sampler,
    ids: RandomIdGenerator,
    propagator: TraceContextPropagator,
    scope: InstrumentationScope,
    /// `Some(max bytes)` when prompt and completion text may be exported.
    content: Option<usize>,
    models: HashMap<ModelId, Upstream>,
    providers: HashMap<ProviderId, String>,
    timeout: Duration,
}

/// What an attempt span says about the model it called.
struct Upstream {
    /// The id the provider knows the model by (`gen_ai.request.model` of the attempt).
    name: String,
    /// `gen_ai.provider.name`.
    provider: String,
    host: Option<(String, Option<u16>)>,
}

impl std::fmt::Debug for Traces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traces").finish_non_exhaustive()
    }
}

impl Traces {
    /// The exporter for `[telemetry.traces]`, or `None` when the section is absent. Needs the
    /// tokio runtime: exports run on it (see `OnRuntime`).
    pub fn start(config: &Config) -> Result<Option<Arc<Traces>>, String> {
        let Some(t) = &config.telemetry.traces else {
            return Ok(None);
        };
        let processor = processor(t)?;
        let models = config
            .models
            .values()
            .map(|m| (m.id.clone(), upstream(m, config.providers.get(&m.provider))))
            .collect();
        let providers = config
            .providers
            .values()
            .map(|p| (p.id.clone(), provider_name(p)))
            .collect();
        let ratio = Sampler::TraceIdRatioBased(t.sample_ratio);
        let scope = InstrumentationScope::builder("switchyard")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        tracing::info!(endpoint = %t.endpoint, ratio = t.sample_ratio, "exporting traces");
        Ok(Some(Arc::new(Traces {
            processor,
            sampler: Sampler::ParentBased(Box::new(ratio)),
            ids: RandomIdGenerator::default(),
            propagator: TraceContextPropagator::new(),
            scope,
            content: t.content.then_some(t.max_content_bytes),
            models,
            providers,
            timeout: t.timeout,
        })))
    }

    /// Export every span handed over so far (tests; the processor also exports on its own
    /// every `batch_delay_ms`).
    pub async fn flush(self: &Arc<Self>) -> Result<(), String> {
        let me = self.clone();
        // The processor blocks until its thread has exported, and the export itself runs on
        // this runtime: wait on a blocking thread, never on a runtime worker.
        tokio::task::spawn_blocking(move || me.processor.force_flush())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// Export what is left and stop the processor's thread (after the server has drained).
    pub async fn shutdown(self: &Arc<Self>) {
        let me = self.clone();
        let deadline = self.timeout + Duration::from_secs(1);
        let done =
            tokio::task::spawn_blocking(move || me.processor.shutdown_with_timeout(deadline));
        match done.await {
            Ok(Ok(())) => tracing::info!("traces flushed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "traces not flushed"),
            Err(e) => tracing::warn!(error = %e, "traces not flushed"),
        }
    }

    /// The trace of a new request: the incoming `traceparent` honoured (the request's span is
    /// its child, sampled as it says), else a new trace sampled at `sample_ratio`.
    fn begin(&self, headers: &HeaderMap, started: Instant) -> Box<Trace> {
        let cx = self
            .propagator
            .extract(&opentelemetry_http::HeaderExtractor(headers));
        let incoming = cx.span().span_context().clone();
        let remote = incoming.is_valid();
        let trace_id = if remote {
            incoming.trace_id()
        } else {
            self.ids.new_trace_id()
        };
        let kind = SpanKind::Server;
        let result = self
            .sampler
            .should_sample(Some(&cx), trace_id, "request", &kind, &[], &[]);
        let sampled = matches!(result.decision, SamplingDecision::RecordAndSample);
        let flags = if sampled {
            TraceFlags::SAMPLED
        } else {
            TraceFlags::default()
        };
        let span_id = self.ids.new_span_id();
        let context = SpanContext::new(trace_id, span_id, flags, false, result.trace_state);
        let wall = SystemTime::now()
            .checked_sub(started.elapsed())
            .unwrap_or_else(SystemTime::now);
        Box::new(Trace {
            context,
            parent: remote.then(|| incoming.span_id()),
            start: started,
            wall,
            content: self.content,
            marks: sampled.then(Mutex::default),
        })
    }

    /// Build the request's spans from its finished row and marks, and hand them to the
    /// processor (a bounded queue: never waits).
    pub fn export(&self, trace: &Trace, row: &RequestRecord) {
        let Some(marks) = trace.take_marks() else {
            return;
        };
        for span in spans::build(self, trace, &marks, row, Instant::now()) {
            self.processor.on_end(span);
        }
    }
}

/// The batch processor over the OTLP/HTTP protobuf exporter, with the service's resource.
fn processor(t: &TracesConfig) -> Result<BatchSpanProcessor, String> {
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| "telemetry.traces: the exporter needs the tokio runtime".to_owned())?;
    let client = reqwest::Client::builder()
        .timeout(t.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("telemetry.traces: HTTP client: {e}"))?;
    let headers = t
        .headers
        .iter()
        .map(|(name, value)| (name.clone(), value.expose().to_owned()))
        .collect();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(t.endpoint.clone())
        .with_timeout(t.timeout)
        .with_headers(headers)
        .with_http_client(OnRuntime { client, handle })
        .build()
        .map_err(|e| format!("telemetry.traces: {e}"))?;
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(t.batch_delay)
        .build();
    let mut processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch)
        .build();
    let resource = Resource::builder()
        .with_service_name(t.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    processor.set_resource(&resource);
    Ok(processor)
}

/// The exporter's HTTP client: our reqwest client (through opentelemetry-http's impl), run on
/// the gateway's runtime. The batch processor exports from its own thread with a plain
/// executor, where reqwest (tokio sockets) cannot run; the request is spawned onto the runtime
/// and the thread waits for its answer.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    handle: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OnRuntime {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let sent = self
            .handle
            .spawn(async move { client.send_bytes(request).await });
        match sent.await {
            Ok(answer) => answer,
            Err(e) => Err(Box::new(e)),
        }
    }
}

fn upstream(m: &ModelConfig, provider: Option<&ProviderSettings>) -> Upstream {
    let host = provider
        .and_then(|p| p.base_url.parse::<http::Uri>().ok())
        .and_then(|u| Some((u.host()?.to_owned(), u.port_u16())));
    Upstream {
        name: m.upstream.clone(),
        provider: provider.map_or_else(|| m.provider.to_string(), provider_name),
        host,
    }
}

/// `gen_ai.provider.name`: the convention's name for a known API, the configured provider's
/// name for an OpenAI-compatible server (Ollama, vLLM, a hosted one).
fn provider_name(p: &ProviderSettings) -> String {
    match p.kind {
        ProviderKind::OpenAi => "openai".to_owned(),
        ProviderKind::Anthropic => "anthropic".to_owned(),
        ProviderKind::Gemini => "gcp.gemini".to_owned(),
        ProviderKind::OpenAiCompatible => p.id.to_string(),
    }
}

/// One request's trace: its context (the request span's ids) and, when sampled, the marks the
/// pipeline leaves for the spans built at the end.
pub struct Trace {
    context: SpanContext,
    /// The incoming `traceparent`'s span: the request span's (remote) parent.
    parent: Option<SpanId>,
    /// When the request arrived (the admission middleware's clock), and the wall time then.
    start: Instant,
    wall: SystemTime,
    content: Option<usize>,
    /// `None`: not sampled, nothing is recorded.
    marks: Option<Mutex<Marks>>,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace")
            .field("trace_id", &self.context.trace_id())
            .field("sampled", &self.marks.is_some())
            .finish_non_exhaustive()
    }
}

/// What the pipeline noted for the spans: instants and the facts only it knows.
#[derive(Debug, Default)]
struct Marks {
    routing: Vec<RoutingMark>,
    policies: Vec<PolicyMark>,
    cache: Vec<CacheMark>,
    attempts: Vec<AttemptMark>,
    /// From the first routing: what the client asked for.
    request: Option<RequestFacts>,
    /// From the answer: why it stopped, and its text (with `content`).
    finish_reasons: Vec<&'static str>,
    input: Option<String>,
    output: Option<String>,
}

#[derive(Debug)]
struct RoutingMark {
    start: Instant,
    end: Instant,
    route: String,
    /// Every candidate, eligible ones first in rank order.
    candidates: Vec<String>,
    /// The eligible candidates' scores, in rank order (lower is better).
    scores: Vec<f64>,
    filtered: Vec<String>,
    reason: String,
    count: Duration,
    prompt_tokens: u32,
}

#[derive(Debug)]
struct PolicyMark {
    start: Instant,
    end: Instant,
    name: String,
    outcome: &'static str,
    edits: usize,
    error: Option<String>,
}

#[derive(Debug)]
struct CacheMark {
    start: Instant,
    end: Instant,
    outcome: &'static str,
}

#[derive(Debug)]
struct AttemptMark {
    model: ModelId,
    span_id: SpanId,
    start: Instant,
}

#[derive(Debug)]
struct RequestFacts {
    model: String,
    max_tokens: Option<u32>,
    embeddings: bool,
}

impl Trace {
    fn marks(&self) -> Option<std::sync::MutexGuard<'_, Marks>> {
        self.marks.as_ref()?.lock().ok()
    }

    fn take_marks(&self) -> Option<Marks> {
        self.marks().map(|mut m| std::mem::take(&mut *m))
    }

    /// The wall time of `at` (the request's clock, anchored at its start).
    fn wall(&self, at: Instant) -> SystemTime {
        self.wall + at.saturating_duration_since(self.start)
    }

    /// The `traceparent` for an upstream call: a new attempt span (noted, to be built at the
    /// end) when sampled, else the unsampled request's own context.
    fn attempt(&self, model: &ModelId) -> TraceParent {
        let sampled = self.marks.is_some();
        let span_id = match self.marks() {
            Some(mut m) if m.attempts.len() < MAX_MARKS => {
                let id = RandomIdGenerator::default().new_span_id();
                let start = Instant::now();
                let model = model.clone();
                m.attempts.push(AttemptMark {
                    model,
                    span_id: id,
                    start,
                });
                id
            }
            _ => self.context.span_id(),
        };
        TraceParent {
            trace_id: self.context.trace_id().to_bytes(),
            span_id: span_id.to_bytes(),
            sampled,
        }
    }
}

/// Where a request's trace starts (the admission middleware): `None` when traces are off.
pub fn begin(traces: Option<&Traces>, headers: &HeaderMap, started: Instant) -> Option<Box<Trace>> {
    traces.map(|t| t.begin(headers, started))
}

/// The current request's `traceparent` for an attempt on `model` (the attempt loop).
pub fn attempt(model: &ModelConfig) -> Option<TraceParent> {
    crate::exchange::with_current(|ex| ex.trace().map(|t| t.attempt(&model.id))).flatten()
}

fn sampled(ex: Option<&Exchange>) -> Option<&Trace> {
    ex?.trace().filter(|t| t.marks.is_some())
}

/// Routing is done (`pipeline::plan`): candidates, scores and the reason, timed from `started`.
pub fn routed(
    ex: Option<&Exchange>,
    started: Instant,
    decision: &Decision,
    name: &str,
    request: &ChatRequest,
) {
    let Some(mut m) = sampled(ex).and_then(Trace::marks) else {
        return;
    };
    if m.routing.len() >= MAX_MARKS {
        return;
    }
    let eligible = decision.eligible();
    let filtered = decision.candidates.iter().filter_map(|c| {
        let f = c.filtered.as_ref()?;
        Some(format!("{}: {f}", c.model))
    });
    m.routing.push(RoutingMark {
        start: started,
        end: Instant::now(),
        route: decision.route.clone(),
        candidates: decision
            .candidates
            .iter()
            .map(|c| c.model.to_string())
            .collect(),
        scores: eligible
            .iter()
            .map(|c| c.terms.map_or(0.0, |t| t.score))
            .collect(),
        filtered: filtered.collect(),
        reason: decision.reason(),
        count: decision.count_time,
        prompt_tokens: eligible.first().map_or(0, |c| c.prompt_tokens),
    });
    m.request.get_or_insert_with(|| RequestFacts {
        model: name.to_owned(),
        max_tokens: request.max_tokens,
        embeddings: request.embed.is_some(),
    });
}

/// The route's policies ran (`pipeline::plan_with_policies`), from `started`, in order. Each
/// one's evaluation time is its own; they are laid end to end from the step's start.
pub fn policies(ex: Option<&Exchange>, started: Instant, runs: &[PolicyRun]) {
    let Some(mut m) = sampled(ex).and_then(Trace::marks) else {
        return;
    };
    let end = Instant::now();
    let mut at = started;
    for r in runs.iter().take(MAX_MARKS.saturating_sub(m.policies.len())) {
        let stop = (at + Duration::from_micros(r.elapsed_us)).min(end);
        m.policies.push(PolicyMark {
            start: at,
            end: stop,
            name: r.policy.clone(),
            outcome: r.outcome,
            edits: r.edits,
            error: r.error.clone(),
        });
        at = stop;
    }
}

/// The cache lookup is done (`pipeline/cache_step.rs`), from `started`; `request` is the
/// prompt as it goes upstream (after policy edits), kept only with `content`.
pub fn cache(ex: Option<&Exchange>, started: Instant, outcome: Outcome, request: &ChatRequest) {
    let Some(trace) = sampled(ex) else {
        return;
    };
    let input = trace.content.map(|max| content::input(request, max));
    let Some(mut m) = trace.marks() else {
        return;
    };
    if m.cache.len() < MAX_MARKS {
        let end = Instant::now();
        let outcome = outcome.as_str();
        m.cache.push(CacheMark {
            start: started,
            end,
            outcome,
        });
    }
    if m.input.is_none() {
        m.input = input;
    }
}

/// A complete answer (from upstream or the cache): why it stopped, and its text (`content`).
pub fn answered(ex: Option<&Exchange>, response: &ChatResponse) {
    let Some(trace) = sampled(ex) else {
        return;
    };
    let output = trace.content.map(|max| content::output_of(response, max));
    if let Some(mut m) = trace.marks() {
        let reasons = response
            .choices
            .iter()
            .map(|c| finish_reason(c.finish_reason));
        let room = MAX_MARKS.saturating_sub(m.finish_reasons.len());
        m.finish_reasons.extend(reasons.take(room));
        m.output = m.output.take().or(output);
    }
}

/// A streamed answer ended (`pipeline/tap.rs`).
pub fn streamed(ex: Option<&Exchange>, acc: &StreamAccumulator) {
    let Some(trace) = sampled(ex) else {
        return;
    };
    let output = trace.content.map(|max| content::output_of_stream(acc, max));
    if let Some(mut m) = trace.marks() {
        if m.finish_reasons.len() < MAX_MARKS {
            m.finish_reasons.extend(acc.finish.map(finish_reason));
        }
        m.output = m.output.take().or(output);
    }
}

fn finish_reason(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::FunctionCall => "function_call",
    }
}

fn strings<I: IntoIterator<Item = S>, S: Into<StringValue>>(items: I) -> Value {
    Value::Array(Array::String(items.into_iter().map(Into::into).collect()))
}

/// Attempt records that called an upstream, per model, in order: the k-th attempt mark of a
/// model is its k-th record (calls to one model are sequential; a hedge is another model).
fn records_by_model(records: &[AttemptRecord]) -> HashMap<&str, VecDeque<&AttemptRecord>> {
    let mut out: HashMap<&str, VecDeque<&AttemptRecord>> = HashMap::new();
    for r in records.iter().filter(|r| r.outcome != "skipped") {
        out.entry(r.model.as_str()).or_default().push_back(r);
    }
    out
}

#[cfg(test)]
mod tests;
