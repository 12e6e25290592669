//! Prompt token counts, for context-fit checks and cost estimates before a request is sent.
//!
//! Owns the tokenizer tables (o200k_base and cl100k_base from `tiktoken-rs`), the mapping from a
//! catalog `TokenizerFamily` to an encoding plus safety margin, and the chat-prompt accounting of
//! the OpenAI cookbook. Counts for OpenAI families are exact once the tables are loaded; every
//! other count is an estimate rounded up, and says so (`exact: false`).
//!
//! IMPORTANT: this module must never block a request on loading a table, and never load one per
//! request. Tables load once per process on a background thread (`warm_up`); until then counting
//! falls back to a character estimate that errs high.

mod request;
mod tables;
#[cfg(test)]
mod tests;

use std::cell::OnceCell;

use crate::catalog::TokenizerFamily;
use switchyard_types::ChatRequest;

use request::Prompt;
use tables::{Counter, Encoding};
pub use tables::{is_loaded, load_blocking, warm_up, warm_up_for};

/// A prompt token count for one tokenizer family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCount {
    pub tokens: u32,
    /// Exact for OpenAI encodings once loaded; an estimate with a safety margin otherwise.
    pub exact: bool,
}

/// The exact encoding a family counts with.
const fn encoding_of(family: TokenizerFamily) -> Encoding {
    rule(family).0
}

/// How each family is counted: which exact encoding stands in for it, and the margin (in
/// percent of that encoding's count) that turns the stand-in into a safe estimate.
///
/// - `O200k`, `Cl100k`: the model's own encoding, so no margin.
/// - `Claude`: Anthropic publishes no tokenizer for Claude 3+ (its old one is "a very rough
///   approximation"). Offline practice is cl100k plus 20–35%, and the newer Claude tokenizers
///   give up to 1.35× the tokens of older ones for the same text; +25% covers the usual case
///   without making every Claude request look a third larger than it is.
/// - `Gemini`: Gemini uses a SentencePiece vocabulary (Gemma's, 262k entries) whose splits differ
///   from BPE; o200k, with a similarly large multilingual vocabulary, is the nearest stand-in we
///   have, and Google's rule of thumb (≈4 characters per token) sits near o200k on English.
///   +15% absorbs the vocabulary drift.
/// - `Llama`: Llama 3's tokenizer is tiktoken-style with cl100k's 100k merges plus 28k more, so it
///   rarely needs more tokens than cl100k; +15% also covers older Llama/Mistral SentencePiece
///   models served through the same family.
const fn rule(family: TokenizerFamily) -> (Encoding, u64) {
    match family {
        TokenizerFamily::O200k => (Encoding::O200k, 100),
        TokenizerFamily::Cl100k => (Encoding::Cl100k, 100),
        TokenizerFamily::Claude => (Encoding::Cl100k, 125),
        TokenizerFamily::Gemini => (Encoding::O200k, 115),
        TokenizerFamily::Llama => (Encoding::Cl100k, 115),
    }
}

/// The safety margin applied to a family's estimate (1.0 for exact OpenAI encodings).
pub fn margin(family: TokenizerFamily) -> f64 {
    rule(family).1 as f64 / 100.0
}

/// Tokens in `text` for `family` (no chat framing). Never waits for a table to load.
pub fn count_text(family: TokenizerFamily, text: &str) -> TokenCount {
    let (encoding, percent) = rule(family);
    let counter = encoding.counter();
    finish(counter.count(text), percent, counter.is_exact())
}

/// The prompt of a chat request as the model will see it: every message (text parts; images
/// counted with a fixed allowance: 765 tokens at `detail` high or auto, 85 at low; audio and file
/// parts 765), names, tool calls (name + arguments) and tool results, the chat overhead of the
/// OpenAI cookbook (3 per message, +1 per name, +3 reply priming), plus tool definitions and the
/// response_format schema serialised as JSON (counted as text; an approximation of how the
/// provider renders them).
///
/// `exact` is true only for an OpenAI family with its table loaded and a prompt of text alone:
/// images, audio, files, tool definitions and schemas make the count an approximation.
/// Never waits for a table to load. To count one request for several families, use
/// [`RequestTokens`], which tokenizes it at most once per encoding.
pub fn count_request(family: TokenizerFamily, request: &ChatRequest) -> TokenCount {
    RequestTokens::new(request).get(family)
}

/// One request's prompt counts for any number of families, tokenizing the request at most once
/// per encoding (Claude and Llama share cl100k's pass, Gemini shares o200k's). Lives as long as
/// the routing decision for one request; holds nothing beyond the two per-encoding totals.
pub struct RequestTokens<'a> {
    request: &'a ChatRequest,
    /// How to count with an encoding: `Encoding::counter` (exact once loaded, else the estimate);
    /// tests force one or the other. Asked once per encoding, so one request's counts agree.
    counter: fn(Encoding) -> Counter,
    o200k: OnceCell<(Prompt, bool)>,
    cl100k: OnceCell<(Prompt, bool)>,
    /// Time spent counting (the `count` stage of the overhead figures).
    spent: std::cell::Cell<std::time::Duration>,
}

impl<'a> RequestTokens<'a> {
    pub fn new(request: &'a ChatRequest) -> Self {
        Self::with_counter(request, Encoding::counter)
    }

    fn with_counter(request: &'a ChatRequest, counter: fn(Encoding) -> Counter) -> Self {
        RequestTokens {
            request,
            counter,
            o200k: OnceCell::new(),
            cl100k: OnceCell::new(),
            spent: std::cell::Cell::default(),
        }
    }

    /// Time spent counting so far.
    pub fn time_spent(&self) -> std::time::Duration {
        self.spent.get()
    }

    /// The prompt count for `family`; see [`count_request`].
    pub fn get(&self, family: TokenizerFamily) -> TokenCount {
        let (encoding, percent) = rule(family);
        let slot = match encoding {
            Encoding::O200k => &self.o200k,
            Encoding::Cl100k => &self.cl100k,
        };
        let (prompt, exact_counter) = slot.get_or_init(|| {
            let t = std::time::Instant::now();
            let counter = (self.counter)(encoding);
            let counted = (request::count(counter, self.request), counter.is_exact());
            self.spent.set(self.spent.get() + t.elapsed());
            counted
        });
        finish(
            prompt.tokens,
            percent,
            *exact_counter && !prompt.approximate,
        )
    }
}

/// Apply a family's margin (rounded up, in integers so 20 × 115% is 23, not 24) and saturate.
fn finish(base: u64, percent: u64, exact_base: bool) -> TokenCount {
    let tokens = base.saturating_mul(percent).div_ceil(100);
    TokenCount {
        tokens: u32::try_from(tokens).unwrap_or(u32::MAX),
        exact: exact_base && percent == 100,
    }
}
