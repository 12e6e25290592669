//! Thin wrappers over the host's imports.
//!
//! The host caps `log` per evaluation (32 calls, 8 KiB); past the cap a call is a no-op, so
//! logging can never fail a request. `count-tokens` needs the `count-tokens` capability and is
//! capped in total bytes; past the cap the evaluation fails.
//!
//! Natively (unit tests on the build machine) there is no host: [`log`](fn@log) does nothing and
//! [`count_tokens`] falls back to [`estimate_tokens`](crate::estimate_tokens), so policy logic that
//! logs can be tested with `cargo test`.

use crate::Level;

/// Write `msg` to the gateway's log at `level`.
pub fn log(level: Level, msg: &str) {
    #[cfg(target_arch = "wasm32")]
    crate::bindings::switchyard::policy::host::log(level, msg);
    #[cfg(not(target_arch = "wasm32"))]
    let _ = (level, msg);
}

/// [`log`](fn@log) at `debug`.
pub fn debug(msg: &str) {
    log(Level::Debug, msg);
}

/// [`log`](fn@log) at `info`.
pub fn info(msg: &str) {
    log(Level::Info, msg);
}

/// [`log`](fn@log) at `warn`.
pub fn warn(msg: &str) {
    log(Level::Warn, msg);
}

/// [`log`](fn@log) at `error`.
pub fn error(msg: &str) {
    log(Level::Error, msg);
}

/// Count `text` with `model`'s tokenizer (the first candidate's when `model` is unknown). Needs
/// the `count-tokens` capability. Natively: [`estimate_tokens`](crate::estimate_tokens).
pub fn count_tokens(model: &str, text: &str) -> u32 {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::switchyard::policy::host::count_tokens(model, text)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = model;
        crate::estimate_tokens(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_fallbacks_do_not_reach_the_host() {
        info("hello");
        debug("d");
        warn("w");
        error("e");
        assert_eq!(count_tokens("m", "abcdef"), 2);
    }
}
