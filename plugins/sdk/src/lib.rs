//! Guest SDK for Switchyard routing policies: WebAssembly components for the
//! `switchyard:policy@0.1.0` world (see `plugins/wit/policy.wit`).
//!
//! A policy is one plain function from the request's context to a decision:
//!
//! ```ignore
//! use switchyard_policy::prelude::*;
//!
//! fn evaluate(ctx: RequestCtx) -> Decision {
//!     let mut d = DecisionBuilder::new();
//!     if ctx.header("x-team") == Some("research") {
//!         d.annotate("team", "research");
//!     }
//!     d.allow()
//! }
//!
//! switchyard_policy::export_policy!(evaluate);
//! ```
//!
//! Everything except [`log`] and [`count_tokens`] is pure Rust and runs natively, so the logic of
//! a policy can be unit tested with a plain `cargo test`. Those two call the host; natively they
//! fall back to a no-op and to [`estimate_tokens`]. With the `testing` feature, [`testing`] builds
//! request contexts for unit tests and runs a policy's manifest test cases (`policy.toml` +
//! `tests/*.json`) the way `switchyard policy test` does.
//!
//! Nothing in this crate panics on bad input: lookups return `Option`, parses return `Result`.

/// The code `wit_bindgen` generates for the `policy` world. Policy authors rarely need it: the
/// types are re-exported at the crate root and in [`prelude`], and [`export_policy!`] does the
/// exporting.
#[allow(
    missing_docs,
    unsafe_code,
    unsafe_op_in_unsafe_fn,
    clippy::all,
    clippy::pedantic,
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used
)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "policy",
        path: "../wit",
        pub_export_macro: true,
        default_bindings_module: "switchyard_policy::bindings",
        additional_derives: [PartialEq],
    });
}

mod check;
pub mod config;
pub mod cost;
pub mod decision;
pub mod log;
pub mod turns;

// Also in the crate's own unit tests, for the context builders.
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use bindings::switchyard::policy::host::Level;
pub use bindings::switchyard::policy::types::{
    Candidate, Decision, Denial, Edit, Message, NewMessage, RequestCtx, Role,
};
pub use config::{Config, ConfigError};
pub use cost::{estimate_cost, format_usd, max_output_within, parse_usd_micros, request_cost};
pub use decision::{DecisionBuilder, EditError, MAX_EDITS, allow, deny, validate};
pub use log::count_tokens;
pub use turns::{
    Fit, Turn, drop_oldest_to_fit, estimate_message_tokens, estimate_tokens, last_turns,
    message_tokens, system_prompt, turns,
};

/// Everything a policy usually needs: `use switchyard_policy::prelude::*;`.
pub mod prelude {
    pub use crate::log;
    pub use crate::{
        Candidate, Config, ConfigError, Decision, DecisionBuilder, Denial, Edit, Fit, Level,
        Message, NewMessage, RequestCtx, RequestCtxExt, Role, Turn, allow, count_tokens, deny,
        drop_oldest_to_fit, estimate_cost, estimate_message_tokens, estimate_tokens, format_usd,
        last_turns, max_output_within, message_tokens, parse_usd_micros, request_cost,
        system_prompt, turns,
    };
}

/// Convenience accessors on the request context.
pub trait RequestCtxExt {
    /// The manifest's `[config]` table.
    fn config(&self) -> Config<'_>;
    /// A request header on the host's allow-list (name compared case-insensitively).
    fn header(&self, name: &str) -> Option<&str>;
    /// The router's first choice, whose tokenizer counted the messages' `tokens`.
    fn first_candidate(&self) -> Option<&Candidate>;
    /// Sum of the messages' `tokens` (without the request's fixed overhead).
    fn message_tokens(&self) -> u64;
}

impl RequestCtxExt for RequestCtx {
    fn config(&self) -> Config<'_> {
        Config::new(&self.config)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn first_candidate(&self) -> Option<&Candidate> {
        self.candidates.first()
    }

    fn message_tokens(&self) -> u64 {
        message_tokens(&self.messages)
    }
}

/// Export a plain function `fn(RequestCtx) -> Decision` as the component's `evaluate`.
///
/// Use it once, at the top level of the policy crate (a `cdylib`):
///
/// ```ignore
/// fn evaluate(ctx: switchyard_policy::RequestCtx) -> switchyard_policy::Decision { /* ... */ }
/// switchyard_policy::export_policy!(evaluate);
/// ```
///
/// It defines a hidden type implementing the generated `Guest` trait by calling the function, and
/// hands it to the `export!` macro that `wit_bindgen` generated in [`bindings`], which emits the
/// canonical-ABI entry points (`evaluate`, `cabi_post_evaluate`) and the custom section that
/// describes the exports to `wasm-component-ld`.
#[macro_export]
macro_rules! export_policy {
    ($evaluate:path) => {
        #[doc(hidden)]
        pub struct __SwitchyardPolicyExport;

        impl $crate::bindings::Guest for __SwitchyardPolicyExport {
            fn evaluate(ctx: $crate::RequestCtx) -> $crate::Decision {
                $evaluate(ctx)
            }
        }

        $crate::bindings::export!(__SwitchyardPolicyExport with_types_in $crate::bindings);
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ctx, message};

    #[test]
    fn header_lookup_is_case_insensitive() {
        let mut c = ctx(vec![], vec![]);
        c.headers
            .push(("x-switchyard-sensitive".into(), "true".into()));
        assert_eq!(c.header("X-Switchyard-Sensitive"), Some("true"));
        assert_eq!(c.header("x-other"), None);
    }

    #[test]
    fn ctx_accessors() {
        let mut c = ctx(
            vec![message(Role::System, 5), message(Role::User, 7)],
            vec![],
        );
        c.config.push(("k".into(), "3".into()));
        assert_eq!(c.message_tokens(), 12);
        assert_eq!(c.config().u32_or("k", 1), Ok(3));
        assert!(c.first_candidate().is_none());
    }
}
