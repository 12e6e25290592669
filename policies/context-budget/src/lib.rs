//! `context-budget`: fit the conversation into the route's token budget and the first candidate's
//! context window by dropping the oldest turns (never the system prompt, never the last
//! `keep_last_turns` turns), optionally leaving a note where they were.
//!
//! Limit = min(`token_budget` (request/route, else config `budget_tokens`),
//!             `context_window` − (`max_tokens`, else config `default_output`)).
//! The current size is `candidates[0].prompt_tokens`; whatever it has beyond the sum of the
//! messages' `tokens` is fixed overhead that dropping cannot reduce.

use switchyard_policy::prelude::*;

/// Defaults for the `[config]` keys.
pub const DEFAULT_KEEP_LAST_TURNS: u32 = 2;
/// Output reserved when the request has no `max_tokens`.
pub const DEFAULT_OUTPUT: u32 = 1024;

/// The component's entry point.
pub fn evaluate(ctx: RequestCtx) -> Decision {
    decide(&ctx)
}

switchyard_policy::export_policy!(evaluate);

fn u32_setting(cfg: &Config<'_>, key: &str, default: u32) -> u32 {
    cfg.u32_or(key, default).unwrap_or_else(|e| {
        log::warn(&format!("context-budget: {e}; using {default}"));
        default
    })
}

/// The pure decision.
pub fn decide(ctx: &RequestCtx) -> Decision {
    let Some(first) = ctx.candidates.first() else {
        return allow();
    };
    let cfg = ctx.config();
    let keep_last = u32_setting(&cfg, "keep_last_turns", DEFAULT_KEEP_LAST_TURNS);
    let default_output = u32_setting(&cfg, "default_output", DEFAULT_OUTPUT);
    let budget = ctx.token_budget.or_else(|| match cfg.u32("budget_tokens") {
        Ok(v) => v,
        Err(e) => {
            log::warn(&format!("context-budget: {e}; ignored"));
            None
        }
    });
    let reserve = ctx.max_tokens.unwrap_or(default_output);
    let window_room = first.context_window.saturating_sub(reserve);
    let limit = u64::from(budget.map_or(window_room, |b| b.min(window_room)));

    let current = u64::from(first.prompt_tokens);
    if current <= limit {
        return allow();
    }
    let overhead = current.saturating_sub(ctx.message_tokens());
    let keep_last = usize::try_from(keep_last).unwrap_or(usize::MAX);

    // With the note first; if the note itself is what does not fit, without it.
    let note = cfg.string("note");
    let attempts = [note, None];
    let attempts = if note.is_some() {
        &attempts[..]
    } else {
        &attempts[1..]
    };
    let mut best: Option<Fit> = None;
    for &note in attempts {
        let note_tokens = note.map_or(0, |n| u64::from(estimate_message_tokens(n)));
        let Some(room) = limit.checked_sub(overhead + note_tokens) else {
            continue;
        };
        let fit = drop_oldest_to_fit(&ctx.messages, room, true, keep_last);
        if fit.fits {
            let after = overhead + fit.tokens_after + note_tokens;
            return trimmed(ctx, &fit, note, current, after);
        }
        best.get_or_insert(fit);
    }

    let at_best = best.map_or(current, |f| overhead + f.tokens_after);
    let msg = format!(
        "cannot fit {current} tokens into {limit}: {at_best} at best, keeping the system prompt \
         and the last {keep_last} turns; left unchanged"
    );
    log::warn(&format!("context-budget: {msg}"));
    let mut d = DecisionBuilder::new();
    d.annotate("trim_skipped", msg);
    d.into_allow()
}

fn trimmed(ctx: &RequestCtx, fit: &Fit, note: Option<&str>, before: u64, after: u64) -> Decision {
    let mut d = DecisionBuilder::new();
    d.drop_messages(fit.drop.iter().copied());
    if let Some(note) = note {
        d.insert_message(system_prompt(&ctx.messages).end, Role::System, note);
    }
    let what = format!(
        "dropped {} messages, {before} -> {after} tokens",
        fit.drop.len()
    );
    log::info(&format!("context-budget: {what}"));
    d.annotate("trimmed", what);
    d.into_allow()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_policy::testing::{candidate, ctx, edits, message};
    use switchyard_policy::{Edit, validate};

    /// system(10) + 4 turns of user(100)+assistant(100) + final user(50) = 860, overhead 20.
    fn long() -> RequestCtx {
        let mut m = vec![message(Role::System, 10)];
        for _ in 0..4 {
            m.push(message(Role::User, 100));
            m.push(message(Role::Assistant, 100));
        }
        m.push(message(Role::User, 50));
        let mut c = ctx(m, vec![candidate("m", 1, 1, 880)]);
        c.max_tokens = Some(256);
        c
    }

    #[test]
    fn within_budget_is_a_no_op() {
        let mut c = long();
        c.token_budget = Some(880);
        assert_eq!(decide(&c), allow());
        c.candidates.clear();
        assert_eq!(decide(&c), allow());
    }

    #[test]
    fn drops_oldest_turns_and_reports() {
        let mut c = long();
        c.token_budget = Some(500);
        let d = decide(&c);
        assert_eq!(validate(&d, &c), Ok(()));
        // 880 -> drop the two oldest turns (400) -> 480 <= 500.
        assert_eq!(
            edits(&d),
            vec![
                Edit::DropMessage(1),
                Edit::DropMessage(2),
                Edit::DropMessage(3),
                Edit::DropMessage(4),
                Edit::Annotate((
                    "trimmed".into(),
                    "dropped 4 messages, 880 -> 480 tokens".into()
                )),
            ]
        );
    }

    #[test]
    fn inserts_the_note_after_the_system_prompt() {
        let mut c = long();
        c.token_budget = Some(500);
        c.config.push(("note".into(), "[trimmed]".into())); // 9 bytes -> 3 + 4 = 7 tokens
        let e = edits(&decide(&c));
        assert_eq!(e.len(), 6);
        assert_eq!(
            e[4],
            Edit::InsertMessage((
                1,
                NewMessage {
                    role: Role::System,
                    content: "[trimmed]".into()
                }
            ))
        );
        assert_eq!(
            e[5],
            Edit::Annotate((
                "trimmed".into(),
                "dropped 4 messages, 880 -> 487 tokens".into()
            ))
        );
        // 480 + 7 > 484: a third turn goes.
        c.token_budget = Some(484);
        assert_eq!(edits(&decide(&c)).len(), 8);
    }

    #[test]
    fn window_minus_output_is_the_limit_without_a_budget() {
        let mut c = long();
        c.candidates[0].context_window = 1000;
        c.max_tokens = Some(400); // room 600: drop one turn -> 680? no, two -> 480
        let e = edits(&decide(&c));
        assert_eq!(e.len(), 5);
        c.max_tokens = None;
        c.config.push(("default_output".into(), "100".into())); // room 900: fits
        assert_eq!(decide(&c), allow());
        c.config.push(("budget_tokens".into(), "700".into())); // one turn: 680
        assert_eq!(edits(&decide(&c)).len(), 3);
    }

    #[test]
    fn cannot_fit_leaves_the_request_unchanged() {
        let mut c = long();
        c.token_budget = Some(200); // at best 20 + 10 + 200 + 50 = 280 (the last 2 turns stay)
        c.config.push(("note".into(), "n".into()));
        let e = edits(&decide(&c));
        assert_eq!(e.len(), 1);
        assert!(
            matches!(&e[0], Edit::Annotate((k, v)) if k == "trim_skipped" && v.contains("280 at best"))
        );
    }

    #[test]
    fn keep_last_turns_is_configurable_and_bad_values_fall_back() {
        let mut c = long();
        c.token_budget = Some(200); // needs keep_last_turns = 1: 20 + 10 + 50 = 80
        c.config.push(("keep_last_turns".into(), "1".into()));
        assert_eq!(edits(&decide(&c)).len(), 9);
        c.config.push(("keep_last_turns".into(), "lots".into())); // falls back to 2: 280 > 200
        assert!(matches!(&edits(&decide(&c))[0], Edit::Annotate((k, _)) if k == "trim_skipped"));
    }

    #[test]
    fn manifest_cases() {
        let n =
            switchyard_policy::testing::run_manifest_tests(env!("CARGO_MANIFEST_DIR"), evaluate);
        assert_eq!(n, Ok(4));
    }
}
