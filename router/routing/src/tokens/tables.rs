//! The two BPE tables (o200k_base, cl100k_base): loaded once per process, in the background.
//!
//! Each table sits in a `OnceLock`. The request path only ever calls `OnceLock::get`, which never
//! waits: a table that is not loaded yet (or is being loaded right now) yields the character
//! estimate instead. Building a table decodes its embedded rank file (1.7 MB for cl100k, 3.6 MB
//! for o200k): ~0.1 s and ~0.25 s, and ~70 MB resident for both — far too slow to do per request
//! and too slow to make a request wait for.

use std::sync::{Once, OnceLock};
use std::time::Instant;

use tiktoken_rs::CoreBPE;

/// A table that failed to build stays `Some(None)`: counting keeps estimating and nothing retries
/// (the tables are embedded in the binary, so a failure would repeat every time).
type Table = OnceLock<Option<CoreBPE>>;

static O200K: Table = OnceLock::new();
static CL100K: Table = OnceLock::new();
/// One background load per table, started at most once each.
static LOAD_O200K: Once = Once::new();
static LOAD_CL100K: Once = Once::new();

/// The exact encodings the crate embeds; every tokenizer family counts with one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    O200k,
    Cl100k,
}

impl Encoding {
    const ALL: [Encoding; 2] = [Encoding::O200k, Encoding::Cl100k];

    fn table(self) -> &'static Table {
        match self {
            Encoding::O200k => &O200K,
            Encoding::Cl100k => &CL100K,
        }
    }

    fn load_once(self) -> &'static Once {
        match self {
            Encoding::O200k => &LOAD_O200K,
            Encoding::Cl100k => &LOAD_CL100K,
        }
    }

    /// Start loading this table on a background thread, unless that has been started already.
    pub(super) fn warm_up(self) {
        self.load_once().call_once(|| {
            spawn_loader(move || {
                self.load();
            });
        });
    }

    fn name(self) -> &'static str {
        match self {
            Encoding::O200k => "o200k_base",
            Encoding::Cl100k => "cl100k_base",
        }
    }

    /// Build the table if no one has yet; blocks until it exists. Never on the request path.
    pub(super) fn load(self) -> Option<&'static CoreBPE> {
        self.table()
            .get_or_init(|| {
                let started = Instant::now();
                let built = match self {
                    Encoding::O200k => tiktoken_rs::o200k_base(),
                    Encoding::Cl100k => tiktoken_rs::cl100k_base(),
                };
                let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
                match built {
                    Ok(bpe) => {
                        tracing::info!(encoding = self.name(), elapsed_ms, "tokenizer loaded");
                        Some(bpe)
                    }
                    Err(e) => {
                        tracing::error!(encoding = self.name(), error = %e,
                            "tokenizer failed to load; token counts stay estimates");
                        None
                    }
                }
            })
            .as_ref()
    }

    /// How to count with this encoding right now, without waiting. Asking for a table that is
    /// not there yet starts the background load (once), so a server that forgot `warm_up` still
    /// gets exact counts soon.
    pub(super) fn counter(self) -> Counter {
        match self.table().get() {
            Some(Some(bpe)) => Counter::Exact(bpe),
            Some(None) => Counter::Estimate,
            None => {
                self.warm_up();
                Counter::Estimate
            }
        }
    }
}

/// Counts text pieces with a loaded table, or estimates them from their characters.
#[derive(Clone, Copy)]
pub(super) enum Counter {
    Exact(&'static CoreBPE),
    Estimate,
}

impl Counter {
    /// Tokens in one piece of text. Special-token text such as `<|endoftext|>` in a prompt is
    /// counted as ordinary text, as the API treats user content (and it is cheaper: one regex
    /// pass instead of two).
    pub(super) fn count(self, text: &str) -> u64 {
        match self {
            Counter::Exact(bpe) => bpe.encode_ordinary(text).len() as u64,
            Counter::Estimate => estimate(text),
        }
    }

    pub(super) fn is_exact(self) -> bool {
        matches!(self, Counter::Exact(_))
    }
}

/// The pre-load estimate, built to err high: it walks the bytes once and mimics the pieces the
/// BPE pre-tokenizer cuts text into, giving each piece at least as many tokens as the encodings
/// usually need.
///
/// - a run of ASCII letters: one token per 4 letters, rounded up, plus one at each lower→upper
///   case change (English words average under 5 letters and are mostly one token; camelCase and
///   base64 split at case changes);
/// - a run of digits: one token per 3 (both encodings cut numbers into groups of at most 3),
///   plus one for a space before it (a space is never merged into a number);
/// - every other ASCII character (punctuation, symbols): one token each;
/// - whitespace: free when single (it joins the next word), one token per longer run;
/// - non-ASCII text: two tokens per three UTF-8 bytes, rounded up (≈1.3 per Cyrillic or accented
///   letter, 2 per CJK character, 2.7 per emoji; cl100k needs about 1–1.5 per CJK character).
///
/// Measured on 400-byte chunks of this repository's prose, Markdown tables, Rust, TOML and
/// Cargo.lock, and on CJK, Cyrillic and emoji samples, it never fell below the larger of the two
/// exact counts (1.05–2.3× above it; English prose ≈1.3×). Long random strings are its blind
/// spot: base64 needs up to ~20% more tokens than estimated, hex about as many. Erring high is
/// the point: a context-fit check made before the tables load must not let an oversized prompt
/// through, and the window is short (the tables load at startup).
pub(super) fn estimate(text: &str) -> u64 {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Class {
        Letter,
        Digit,
        Space,
        Symbol,
        NonAscii,
    }
    let run_tokens = |class: Class, run: u64| match class {
        Class::Letter => run.div_ceil(4),
        Class::Digit => run.div_ceil(3),
        Class::Space => u64::from(run >= 2),
        // Counted per byte as they are seen.
        Class::Symbol | Class::NonAscii => 0,
    };
    let (mut tokens, mut non_ascii_bytes, mut run) = (0u64, 0u64, 0u64);
    let mut class = Class::Space;
    let mut prev = 0u8;
    for &b in text.as_bytes() {
        let next = match b {
            b'a'..=b'z' | b'A'..=b'Z' => Class::Letter,
            b'0'..=b'9' => Class::Digit,
            b' ' | b'\t' | b'\n' | b'\r' => Class::Space,
            0x80.. => Class::NonAscii,
            _ => Class::Symbol,
        };
        if next != class {
            tokens += run_tokens(class, run);
            if next == Class::Digit && prev == b' ' {
                tokens += 1;
            }
            (class, run) = (next, 0);
        } else if next == Class::Letter && b.is_ascii_uppercase() && prev.is_ascii_lowercase() {
            tokens += 1;
        }
        run += 1;
        match next {
            Class::Symbol => tokens += 1,
            Class::NonAscii => non_ascii_bytes += 1,
            _ => {}
        }
        prev = b;
    }
    tokens + run_tokens(class, run) + (2 * non_ascii_bytes).div_ceil(3)
}

/// Start loading both tables on background threads and return at once. Safe to call any
/// number of times from anywhere; each table is loaded once. Readiness must not wait on it.
pub fn warm_up() {
    for encoding in Encoding::ALL {
        encoding.warm_up();
    }
}

/// As [`warm_up`], only for the tables these families count with: a gateway whose models are
/// all o200k (or all cl100k-based) never builds the other table, about 30–40 MB resident.
pub fn warm_up_for(families: impl IntoIterator<Item = crate::catalog::TokenizerFamily>) {
    for family in families {
        super::encoding_of(family).warm_up();
    }
}

/// Run `load` on a detached, named thread. Detached on purpose: it only fills the `OnceLock`s,
/// so shutdown has nothing to wait for. If the thread cannot be spawned, counts stay estimates.
pub(super) fn spawn_loader(load: impl FnOnce() + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name("tokenizer-load".to_owned())
        .spawn(load);
    if let Err(e) = spawned {
        tracing::warn!(
            error = %e,
            "could not start the tokenizer loader; token counts stay estimates"
        );
    }
}

/// Whether every table that was asked for is loaded (so OpenAI-family counts are exact); a table
/// no configured model counts with is never asked for.
pub fn is_loaded() -> bool {
    // A table nobody asked for (no configured model counts with it) is never loaded.
    Encoding::ALL.iter().all(|e| {
        matches!(e.table().get(), Some(Some(_)))
            || (!e.load_once().is_completed() && e.table().get().is_none())
    })
}

/// Load both tables on the calling thread and return once they exist. For tests and offline
/// tools that want exact counts; never call it on a request path.
pub fn load_blocking() {
    for encoding in Encoding::ALL {
        encoding.load();
    }
}
