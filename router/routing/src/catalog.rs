//! The model catalog: context windows, output caps, prices, tokenizer family and capabilities;
//! for embedding models, the vector lengths they can output (`dimensions`); and latency priors
//! (`ttft_ms`, `tpot_ms`) that health assumes for a model before it has seen any traffic.
//!
//! The built-in entries are data (`router/data/catalog.toml`), not code; a user config adds or
//! overrides entries field by field with `[catalog."name"]` tables of the same shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

const BUILTIN: &str = include_str!("../../data/catalog.toml");

/// Who serves a model family. `Local` models cost nothing per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    OpenAi,
    Anthropic,
    Gemini,
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenizerFamily {
    O200k,
    Cl100k,
    Claude,
    Gemini,
    Llama,
}

/// What a model can do; a request needing a capability the model lacks is not sent to it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Capabilities {
    pub tools: bool,
    pub json_object: bool,
    pub json_schema: bool,
    pub vision: bool,
    pub streaming: bool,
    pub reasoning: bool,
}

impl TryFrom<Vec<String>> for Capabilities {
    type Error = String;

    fn try_from(names: Vec<String>) -> Result<Self, String> {
        let mut c = Capabilities::default();
        for name in names {
            let flag = match name.as_str() {
                "tools" => &mut c.tools,
                "json_object" => &mut c.json_object,
                "json_schema" => &mut c.json_schema,
                "vision" => &mut c.vision,
                "streaming" => &mut c.streaming,
                "reasoning" => &mut c.reasoning,
                other => {
                    return Err(format!(
                        "unknown capability '{other}' (expected tools, json_object, json_schema, \
                         vision, streaming or reasoning)"
                    ));
                }
            };
            *flag = true;
        }
        Ok(c)
    }
}

impl From<Capabilities> for Vec<String> {
    fn from(c: Capabilities) -> Self {
        let all = [
            ("tools", c.tools),
            ("json_object", c.json_object),
            ("json_schema", c.json_schema),
            ("vision", c.vision),
            ("streaming", c.streaming),
            ("reasoning", c.reasoning),
        ];
        all.into_iter()
            .filter(|(_, on)| *on)
            .map(|(n, _)| n.to_owned())
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongContext {
    /// Prompt tokens above which the higher prices apply.
    pub threshold: u32,
    pub input: f64,
    pub output: f64,
}

/// One catalog entry, complete.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogEntry {
    pub kind: ModelKind,
    pub upstream: String,
    pub context_window: u32,
    pub max_output: u32,
    /// USD per 1M input tokens.
    pub input: f64,
    /// USD per 1M output tokens (reasoning tokens are billed as output).
    pub output: f64,
    /// USD per 1M input tokens read from the provider's prompt cache (default: `input`).
    pub cached_input: Option<f64>,
    /// USD per 1M input tokens written to the provider's prompt cache (default: `input`).
    pub cache_write: Option<f64>,
    pub long_context: Option<LongContext>,
    pub tokenizer: TokenizerFamily,
    pub capabilities: Capabilities,
    pub deprecated: Option<String>,
    /// The vector lengths an embedding model can output, its default first; empty for a chat
    /// model. An embedding model has no output cap (`max_output` 0), output price or
    /// capabilities.
    pub dimensions: Vec<u32>,
    /// Typical time to first token, ms (for an embedding model: to the answer): the cold-start
    /// prior of the model's health, replaced by observations as traffic arrives.
    pub ttft_ms: Option<f64>,
    /// Typical time per output token, ms, likewise.
    pub tpot_ms: Option<f64>,
}

/// The largest latency prior accepted, ms (10 minutes).
pub const MAX_PRIOR_MS: f64 = 600_000.0;

/// The longest vector an embedding model may declare.
pub const MAX_DIMENSIONS: u32 = 65_536;

/// An entry as written in TOML: every field optional, so a user table can patch one field of
/// a built-in entry. A new entry must give the required fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogPatch {
    pub kind: Option<ModelKind>,
    pub upstream: Option<String>,
    pub context_window: Option<u32>,
    pub max_output: Option<u32>,
    pub input: Option<f64>,
    pub output: Option<f64>,
    pub cached_input: Option<f64>,
    pub cache_write: Option<f64>,
    pub long_context: Option<LongContext>,
    pub tokenizer: Option<TokenizerFamily>,
    pub capabilities: Option<Capabilities>,
    pub deprecated: Option<String>,
    /// Makes the entry an embedding model: the vector lengths it can output, default first.
    pub dimensions: Option<Vec<u32>>,
    pub ttft_ms: Option<f64>,
    pub tpot_ms: Option<f64>,
}

impl CatalogPatch {
    /// Apply this patch over `base` (or build a new entry named `name` when there is none).
    /// Errors name the missing or invalid fields.
    pub fn apply(self, name: &str, base: Option<&CatalogEntry>) -> Result<CatalogEntry, String> {
        let mut missing = Vec::new();
        // `dimensions` given (even empty, which is refused below) makes an embedding model.
        let dimensions = self.dimensions.or_else(|| {
            base.filter(|b| b.is_embedding())
                .map(|b| b.dimensions.clone())
        });
        let embedding = dimensions.is_some();
        let dimensions = dimensions.unwrap_or_default();
        macro_rules! field {
            ($f:ident) => {
                match (self.$f, base) {
                    (Some(v), _) => Some(v),
                    (None, Some(b)) => Some(b.$f.clone()),
                    (None, None) => {
                        missing.push(stringify!($f));
                        None
                    }
                }
            };
        }
        let kind = field!(kind);
        let context_window = field!(context_window);
        // An embedding model produces no tokens: it has no output cap.
        let max_output = match (self.max_output, base) {
            (None, None) if embedding => Some(0),
            _ => field!(max_output),
        };
        let tokenizer = field!(tokenizer);
        let upstream = self
            .upstream
            .or_else(|| base.map(|b| b.upstream.clone()))
            .unwrap_or_else(|| name.to_owned());
        let (Some(kind), Some(context_window), Some(max_output), Some(tokenizer)) =
            (kind, context_window, max_output, tokenizer)
        else {
            return Err(format!("missing required fields: {}", missing.join(", ")));
        };
        let local = kind == ModelKind::Local;
        let price = |p: Option<f64>, b: Option<f64>| p.or(b).unwrap_or(0.0);
        let entry = CatalogEntry {
            kind,
            upstream,
            context_window,
            max_output,
            input: price(self.input, base.map(|b| b.input)),
            output: price(self.output, base.map(|b| b.output)),
            cached_input: self.cached_input.or(base.and_then(|b| b.cached_input)),
            cache_write: self.cache_write.or(base.and_then(|b| b.cache_write)),
            long_context: self.long_context.or(base.and_then(|b| b.long_context)),
            tokenizer,
            capabilities: self
                .capabilities
                .or(base.map(|b| b.capabilities))
                .unwrap_or_default(),
            deprecated: self.deprecated.or(base.and_then(|b| b.deprecated.clone())),
            dimensions,
            ttft_ms: self.ttft_ms.or(base.and_then(|b| b.ttft_ms)),
            tpot_ms: self.tpot_ms.or(base.and_then(|b| b.tpot_ms)),
        };
        let prices = [
            Some(entry.input),
            Some(entry.output),
            entry.cached_input,
            entry.cache_write,
        ];
        if prices.iter().flatten().any(|p| !p.is_finite() || *p < 0.0) {
            return Err("prices must be finite and non-negative".into());
        }
        if entry.context_window == 0 {
            return Err("context_window must be positive".into());
        }
        check_prior("ttft_ms", entry.ttft_ms, false)?;
        check_prior("tpot_ms", entry.tpot_ms, true)?;
        if embedding {
            check_embedding(&entry)?;
        } else {
            if !local && entry.input == 0.0 && entry.output == 0.0 {
                return Err("input and output prices are required for non-local models".into());
            }
            if entry.max_output == 0 {
                return Err("context_window and max_output must be positive".into());
            }
        }
        if entry.max_output > entry.context_window {
            return Err(format!(
                "max_output ({}) exceeds context_window ({})",
                entry.max_output, entry.context_window
            ));
        }
        Ok(entry)
    }
}

/// A latency prior must be finite and at most `MAX_PRIOR_MS`; positive, or zero where
/// `zero_ok` (an embedding model streams no tokens).
pub fn check_prior(name: &str, ms: Option<f64>, zero_ok: bool) -> Result<(), String> {
    let Some(ms) = ms else {
        return Ok(());
    };
    let low_ok = if zero_ok { ms >= 0.0 } else { ms > 0.0 };
    if !(ms.is_finite() && low_ok && ms <= MAX_PRIOR_MS) {
        let low = if zero_ok { "0" } else { "above 0" };
        return Err(format!(
            "{name} must be a number of milliseconds from {low} to {MAX_PRIOR_MS}, got {ms}"
        ));
    }
    Ok(())
}

/// What an embedding model (an entry with `dimensions`) must be: a non-empty list of distinct
/// lengths in 1..=`MAX_DIMENSIONS`, an input price unless local, and nothing a chat model has.
fn check_embedding(entry: &CatalogEntry) -> Result<(), String> {
    if entry.dimensions.is_empty() {
        return Err("dimensions must not be empty (omit it for a chat model)".into());
    }
    if let Some(bad) = entry
        .dimensions
        .iter()
        .find(|d| !(1..=MAX_DIMENSIONS).contains(*d))
    {
        return Err(format!(
            "dimensions: {bad} is not a vector length (1..={MAX_DIMENSIONS})"
        ));
    }
    for (i, d) in entry.dimensions.iter().enumerate() {
        if entry.dimensions[..i].contains(d) {
            return Err(format!("dimensions: {d} is listed twice"));
        }
    }
    if entry.capabilities != Capabilities::default() {
        let names: Vec<String> = entry.capabilities.into();
        return Err(format!(
            "an embedding model (it has dimensions) cannot list chat capabilities: {}",
            names.join(", ")
        ));
    }
    if entry.max_output != 0 {
        return Err("an embedding model (it has dimensions) has no max_output".into());
    }
    if entry.output != 0.0 || entry.long_context.is_some() {
        return Err(
            "an embedding model (it has dimensions) has no output price or long_context tier"
                .into(),
        );
    }
    if entry.kind != ModelKind::Local && entry.input == 0.0 {
        return Err("an input price is required for a non-local embedding model".into());
    }
    if entry.kind == ModelKind::Anthropic {
        return Err("Anthropic has no embeddings API: kind cannot be anthropic".into());
    }
    Ok(())
}

impl CatalogEntry {
    pub fn is_local(&self) -> bool {
        self.kind == ModelKind::Local
    }

    /// An embedding model (it lists `dimensions`), not a chat model.
    pub fn is_embedding(&self) -> bool {
        !self.dimensions.is_empty()
    }

    /// The vector length this model outputs when the request does not ask for one.
    pub fn default_dimensions(&self) -> Option<u32> {
        self.dimensions.first().copied()
    }

    /// Whether this embedding model can output vectors of `length`.
    pub fn can_output(&self, length: u32) -> bool {
        self.dimensions.contains(&length)
    }

    /// What an answer with this usage cost, USD: `usage_cost_pico` in dollars (one pricing
    /// rule for headers, health figures and spend).
    pub fn usage_cost(&self, usage: &switchyard_types::Usage) -> f64 {
        self.usage_cost_pico(usage) as f64 / 1e12
    }

    /// What an answer with this usage cost, in integer picodollars (1e-12 USD): uncached input
    /// at the input price, cache reads and writes at their own prices (input price when the
    /// catalog has none), output — which includes reasoning tokens — at the output price; the
    /// long-context tier when the prompt is above its threshold. Local models cost nothing.
    /// Every price is a whole number of picodollars per token (prices per 1M tokens with up to
    /// six decimals), so sums of these are exact.
    pub fn usage_cost_pico(&self, usage: &switchyard_types::Usage) -> i64 {
        if self.is_local() {
            return 0;
        }
        let (input, output) = match self.long_context {
            Some(tier) if usage.prompt_tokens > tier.threshold => (tier.input, tier.output),
            _ => (self.input, self.output),
        };
        // $ per 1M tokens → picodollars per token.
        let per_token = |usd_per_m: f64| (usd_per_m * 1e6).round() as i64;
        let cached = usage.cached_tokens().min(usage.prompt_tokens);
        let written = usage
            .cache_write_tokens()
            .min(usage.prompt_tokens.saturating_sub(cached));
        let plain = usage.prompt_tokens - cached - written;
        i64::from(plain) * per_token(input)
            + i64::from(cached) * per_token(self.cached_input.unwrap_or(input))
            + i64::from(written) * per_token(self.cache_write.unwrap_or(input))
            + i64::from(usage.completion_tokens) * per_token(output)
    }
}

/// All known models, by catalog name.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    entries: BTreeMap<String, CatalogEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    models: BTreeMap<String, CatalogPatch>,
}

impl Catalog {
    /// The built-in catalog. Its data file is checked by a unit test, so an error here means a
    /// broken build; it is still reported, never panicked on.
    pub fn builtin() -> Result<Catalog, String> {
        let file: CatalogFile = toml::from_str(BUILTIN).map_err(|e| e.to_string())?;
        let mut entries = BTreeMap::new();
        for (name, patch) in file.models {
            let entry = patch
                .apply(&name, None)
                .map_err(|e| format!("built-in catalog entry {name}: {e}"))?;
            entries.insert(name, entry);
        }
        Ok(Catalog { entries })
    }

    pub fn get(&self, name: &str) -> Option<&CatalogEntry> {
        self.entries.get(name)
    }

    pub fn insert(&mut self, name: String, entry: CatalogEntry) {
        self.entries.insert(name, entry);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &CatalogEntry)> {
        self.entries.iter()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_covers_the_reference_models() {
        let c = Catalog::builtin().unwrap();
        for name in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.1-mini",
            "o3-mini",
            "claude-3-5-sonnet",
            "claude-sonnet-4",
            "claude-3-5-haiku",
            "gemini-1.5-pro",
            "gemini-2.0-flash",
            "gemini-2.5-pro",
            "gemini-2.5-flash",
            "llama3.2",
        ] {
            assert!(c.get(name).is_some(), "{name} missing from the catalog");
        }
        let mini = c.get("gpt-4o-mini").unwrap();
        assert_eq!(mini.input, 0.15);
        assert_eq!(mini.output, 0.60);
        assert_eq!(mini.cached_input, Some(0.075));
        assert_eq!(mini.context_window, 128_000);
        assert!(mini.capabilities.tools && mini.capabilities.json_schema);
        assert!(c.get("llama3.2").unwrap().is_local());
        assert_eq!(c.get("llama3.2").unwrap().input, 0.0);
    }

    #[test]
    fn usage_cost_prices_cache_reads_writes_and_reasoning() {
        use switchyard_types::Usage;
        let c = Catalog::builtin().unwrap();
        let mini = c.get("gpt-4o-mini").unwrap();
        // 1M prompt tokens of which 400k cached; 1M output incl. reasoning.
        let u = Usage::new(1_000_000, 1_000_000)
            .with_cache(400_000, 0)
            .with_reasoning(300_000);
        let want = (600_000.0 * 0.15 + 400_000.0 * 0.075 + 1_000_000.0 * 0.60) / 1e6;
        assert!((mini.usage_cost(&u) - want).abs() < 1e-12);
        let haiku = c.get("claude-3-5-haiku").unwrap();
        let u = Usage::new(1000, 100).with_cache(200, 300);
        let want = (500.0 * 0.80 + 200.0 * 0.08 + 300.0 * 1.00 + 100.0 * 4.00) / 1e6;
        assert!((haiku.usage_cost(&u) - want).abs() < 1e-15);
        assert_eq!(c.get("llama3.2").unwrap().usage_cost(&u), 0.0);
    }

    #[test]
    fn a_patch_overrides_one_field() {
        let c = Catalog::builtin().unwrap();
        let base = c.get("gpt-4o-mini").unwrap();
        let patch = CatalogPatch {
            input: Some(0.2),
            ..CatalogPatch::default()
        };
        let e = patch.apply("gpt-4o-mini", Some(base)).unwrap();
        assert_eq!(e.input, 0.2);
        assert_eq!(e.output, base.output);
        assert_eq!(e.upstream, base.upstream);
    }

    #[test]
    fn a_new_entry_must_be_complete() {
        let err = CatalogPatch {
            kind: Some(ModelKind::OpenAi),
            ..CatalogPatch::default()
        }
        .apply("mine", None)
        .unwrap_err();
        assert!(err.contains("context_window"), "{err}");
        assert!(err.contains("tokenizer"), "{err}");
    }

    #[test]
    fn embedding_models_list_their_lengths_and_nothing_a_chat_model_has() {
        let c = Catalog::builtin().unwrap();
        let small = c.get("text-embedding-3-small").unwrap();
        assert!(small.is_embedding());
        assert_eq!(small.default_dimensions(), Some(1536));
        assert!(small.can_output(512) && !small.can_output(3072));
        assert_eq!((small.max_output, small.output), (0, 0.0));
        assert_eq!(small.tokenizer, TokenizerFamily::Cl100k);
        assert_eq!(small.input, 0.02);
        let gemini = c.get("gemini-embedding-001").unwrap();
        assert_eq!(gemini.dimensions, vec![3072, 1536, 768]);
        assert_eq!(gemini.kind, ModelKind::Gemini);
        assert_eq!(c.get("text-embedding-3-large").unwrap().input, 0.13);
        let nomic = c.get("nomic-embed-text").unwrap();
        assert!(nomic.is_local() && nomic.is_embedding());
        assert_eq!(nomic.dimensions, vec![768]);
        // Chat models have none.
        let mini = c.get("gpt-4o-mini").unwrap();
        assert!(!mini.is_embedding() && mini.dimensions.is_empty());
        assert_eq!(mini.default_dimensions(), None);
        // Input is priced like a prompt; nothing is output.
        let u = switchyard_types::Usage::new(1_000_000, 0);
        assert_eq!(small.usage_cost_pico(&u), 20_000_000_000);
        assert_eq!(nomic.usage_cost_pico(&u), 0);
    }

    fn embedding(dimensions: Vec<u32>) -> CatalogPatch {
        CatalogPatch {
            kind: Some(ModelKind::OpenAi),
            context_window: Some(8191),
            input: Some(0.02),
            tokenizer: Some(TokenizerFamily::Cl100k),
            dimensions: Some(dimensions),
            ..CatalogPatch::default()
        }
    }

    #[test]
    fn embedding_entries_are_validated() {
        let ok = embedding(vec![1024, 256]).apply("mine", None).unwrap();
        assert_eq!(ok.max_output, 0);
        assert_eq!(ok.default_dimensions(), Some(1024));
        let bad = |patch: CatalogPatch, want: &str| {
            let err = patch.apply("mine", None).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        };
        bad(embedding(vec![]), "must not be empty");
        bad(embedding(vec![0]), "0 is not a vector length");
        bad(embedding(vec![65_537]), "65537 is not a vector length");
        bad(embedding(vec![512, 512]), "512 is listed twice");
        let mut p = embedding(vec![768]);
        p.capabilities = Some(Capabilities {
            tools: true,
            streaming: true,
            ..Capabilities::default()
        });
        bad(p, "cannot list chat capabilities: tools, streaming");
        let mut p = embedding(vec![768]);
        p.max_output = Some(100);
        bad(p, "has no max_output");
        let mut p = embedding(vec![768]);
        p.output = Some(1.0);
        bad(p, "no output price");
        let mut p = embedding(vec![768]);
        p.input = None;
        bad(p, "an input price is required");
        let mut p = embedding(vec![768]);
        p.kind = Some(ModelKind::Local);
        p.input = None;
        assert!(p.apply("mine", None).is_ok());
        let mut p = embedding(vec![768]);
        p.kind = Some(ModelKind::Anthropic);
        bad(p, "Anthropic has no embeddings API");
        // A chat model still needs its output cap; turning one into an embedding model by a
        // patch keeps its capabilities, which is refused.
        let c = Catalog::builtin().unwrap();
        let patch = CatalogPatch {
            dimensions: Some(vec![1536]),
            ..CatalogPatch::default()
        };
        let err = patch
            .apply("gpt-4o-mini", c.get("gpt-4o-mini"))
            .unwrap_err();
        assert!(err.contains("chat capabilities"), "{err}");
        // Patching an embedding entry keeps its lengths.
        let patch = CatalogPatch {
            input: Some(0.03),
            ..CatalogPatch::default()
        };
        let base = c.get("text-embedding-3-small");
        let e = patch.apply("text-embedding-3-small", base).unwrap();
        assert_eq!((e.input, e.dimensions.len()), (0.03, 5));
    }

    #[test]
    fn dimensions_parse_from_toml() {
        let patch: CatalogPatch = toml::from_str(
            "kind = \"local\"\ncontext_window = 512\ntokenizer = \"llama\"\ndimensions = [384]",
        )
        .unwrap();
        let e = patch.apply("minilm", None).unwrap();
        assert_eq!(e.dimensions, vec![384]);
        assert!(toml::from_str::<CatalogPatch>("dimensions = [-1]").is_err());
    }

    #[test]
    fn every_chat_model_has_latency_priors_and_they_are_checked() {
        let c = Catalog::builtin().unwrap();
        for (name, e) in c.iter() {
            assert!(e.ttft_ms.is_some(), "{name} has no ttft_ms prior");
            if !e.is_embedding() {
                assert!(e.tpot_ms.is_some(), "{name} has no tpot_ms prior");
            }
        }
        // Local models are slower to first token than the hosted small models.
        let flash = c.get("gemini-2.0-flash").unwrap();
        let llama = c.get("llama3.2").unwrap();
        assert!(llama.ttft_ms > flash.ttft_ms);
        let base = c.get("gpt-4o-mini");
        let patch = |ttft: f64, tpot: f64| CatalogPatch {
            ttft_ms: Some(ttft),
            tpot_ms: Some(tpot),
            ..CatalogPatch::default()
        };
        let e = patch(250.0, 0.0).apply("gpt-4o-mini", base).unwrap();
        assert_eq!((e.ttft_ms, e.tpot_ms), (Some(250.0), Some(0.0)));
        for (ttft, tpot, want) in [
            (0.0, 5.0, "ttft_ms"),
            (-1.0, 5.0, "ttft_ms"),
            (f64::NAN, 5.0, "ttft_ms"),
            (700_000.0, 5.0, "ttft_ms"),
            (100.0, -2.0, "tpot_ms"),
            (100.0, f64::INFINITY, "tpot_ms"),
        ] {
            let err = patch(ttft, tpot).apply("gpt-4o-mini", base).unwrap_err();
            assert!(err.contains(want), "{ttft}/{tpot}: {err}");
        }
    }

    #[test]
    fn unknown_capabilities_are_rejected() {
        let err = Capabilities::try_from(vec!["telepathy".to_owned()]).unwrap_err();
        assert!(err.contains("telepathy"));
    }
}
