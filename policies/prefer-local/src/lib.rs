//! `prefer-local`: for short prompts and sensitive requests, try the models on the operator's own
//! hardware first.
//!
//! Short: `candidates[0].prompt_tokens <= short_prompt_tokens` (default 256). Sensitive: the
//! `x-switchyard-sensitive` header is true, or a `sensitive_markers` entry (comma-separated,
//! case-insensitive) occurs in a message (needs `read-content`). Then local candidates move to the
//! front, each group keeping the router's order.

use switchyard_policy::prelude::*;

/// Prompts up to this many tokens count as short.
pub const DEFAULT_SHORT_PROMPT_TOKENS: u32 = 256;
/// The request header that marks a request as sensitive.
pub const SENSITIVE_HEADER: &str = "x-switchyard-sensitive";

/// The component's entry point.
pub fn evaluate(ctx: RequestCtx) -> Decision {
    decide(&ctx)
}

switchyard_policy::export_policy!(evaluate);

/// Why local models should go first, if they should.
pub fn reason(ctx: &RequestCtx) -> Option<String> {
    let cfg = ctx.config();
    if ctx
        .header(SENSITIVE_HEADER)
        .and_then(switchyard_policy::config::parse_bool)
        == Some(true)
    {
        return Some(format!("sensitive ({SENSITIVE_HEADER})"));
    }
    let markers: Vec<String> = cfg
        .list("sensitive_markers")
        .iter()
        .map(|m| m.to_lowercase())
        .collect();
    if !markers.is_empty() {
        let hit = ctx
            .messages
            .iter()
            .filter_map(|m| m.content.as_deref())
            .any(|text| {
                let text = text.to_lowercase();
                markers.iter().any(|m| text.contains(m.as_str()))
            });
        if hit {
            return Some("sensitive (marker in content)".into());
        }
    }
    let short = cfg
        .u32_or("short_prompt_tokens", DEFAULT_SHORT_PROMPT_TOKENS)
        .unwrap_or_else(|e| {
            log::warn(&format!(
                "prefer-local: {e}; using {DEFAULT_SHORT_PROMPT_TOKENS}"
            ));
            DEFAULT_SHORT_PROMPT_TOKENS
        });
    let tokens = ctx.first_candidate()?.prompt_tokens;
    (tokens <= short).then(|| format!("short prompt ({tokens} <= {short} tokens)"))
}

/// Candidate indices with the local ones first, both groups in the router's order.
pub fn local_first(candidates: &[Candidate]) -> Vec<usize> {
    let (local, remote): (Vec<usize>, Vec<usize>) =
        (0..candidates.len()).partition(|&i| candidates.get(i).is_some_and(|c| c.local));
    local.into_iter().chain(remote).collect()
}

/// The pure decision.
pub fn decide(ctx: &RequestCtx) -> Decision {
    let Some(why) = reason(ctx) else {
        return allow();
    };
    let mut d = DecisionBuilder::new();
    if !ctx.candidates.iter().any(|c| c.local) {
        d.annotate("prefer_local", format!("{why}; no local candidate"));
        return d.into_allow();
    }
    let order = local_first(&ctx.candidates);
    if order.iter().enumerate().all(|(pos, &i)| pos == i) {
        d.annotate(
            "prefer_local",
            format!("{why}; local candidates already first"),
        );
    } else {
        log::info(&format!("prefer-local: {why}"));
        d.set_candidates(order);
        d.annotate("prefer_local", format!("{why}; local candidates first"));
    }
    d.into_allow()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_policy::Edit;
    use switchyard_policy::testing::{self, candidate, edits, text_message};

    fn cand(model: &str, local: bool, prompt_tokens: u32) -> Candidate {
        let (provider, input_price, output_price) = if local {
            ("ollama", 0, 0)
        } else {
            ("openai", 150_000, 600_000)
        };
        Candidate {
            provider: provider.into(),
            local,
            ..candidate(model, input_price, output_price, prompt_tokens)
        }
    }

    fn ctx(prompt_tokens: u32, locals: &[bool]) -> RequestCtx {
        let message = text_message(Role::User, prompt_tokens, "Patient record for Mr. X");
        let candidates = locals
            .iter()
            .enumerate()
            .map(|(i, &l)| cand(&format!("m{i}"), l, prompt_tokens))
            .collect();
        testing::ctx(vec![message], candidates)
    }

    #[test]
    fn stable_local_first_order() {
        let c = ctx(1, &[false, true, false, true]);
        assert_eq!(local_first(&c.candidates), vec![1, 3, 0, 2]);
    }

    #[test]
    fn short_prompts_go_local() {
        let c = ctx(100, &[false, false, true]);
        assert_eq!(
            edits(&decide(&c)),
            vec![
                Edit::SetCandidates(vec![2, 0, 1]),
                Edit::Annotate((
                    "prefer_local".into(),
                    "short prompt (100 <= 256 tokens); local candidates first".into()
                )),
            ]
        );
        assert_eq!(decide(&ctx(257, &[false, true])), allow());
    }

    #[test]
    fn sensitive_header_or_marker() {
        let mut c = ctx(5000, &[false, true]);
        c.headers
            .push(("x-switchyard-sensitive".into(), "TRUE".into()));
        assert_eq!(edits(&decide(&c))[0], Edit::SetCandidates(vec![1, 0]));
        c.headers[0].1 = "false".into();
        assert_eq!(decide(&c), allow());
        c.config
            .push(("sensitive_markers".into(), "confidential, PATIENT".into()));
        assert!(matches!(&edits(&decide(&c))[1], Edit::Annotate((_, v)) if v.contains("marker")));
    }

    #[test]
    fn no_local_candidate_or_already_first() {
        let e = edits(&decide(&ctx(10, &[false, false])));
        assert!(matches!(&e[..], [Edit::Annotate((_, v))] if v.ends_with("no local candidate")));
        let e = edits(&decide(&ctx(10, &[true, false])));
        assert!(matches!(&e[..], [Edit::Annotate((_, v))] if v.ends_with("already first")));
    }

    #[test]
    fn manifest_cases() {
        let n =
            switchyard_policy::testing::run_manifest_tests(env!("CARGO_MANIFEST_DIR"), evaluate);
        assert_eq!(n, Ok(4));
    }
}
