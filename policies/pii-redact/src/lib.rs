//! `pii-redact`: replace e-mail addresses, phone numbers, card numbers and IBANs in every message
//! with `[EMAIL]`, `[PHONE]`, `[CARD]`, `[IBAN]` before the prompt leaves the gateway.
//!
//! Needs `read-content`. Only messages that changed get a `replace-message` edit; one annotation
//! gives the counts per kind (never the values). The scanners are in [`scan`].

pub mod scan;

use switchyard_policy::prelude::*;

/// The component's entry point.
pub fn evaluate(ctx: RequestCtx) -> Decision {
    decide(&ctx)
}

switchyard_policy::export_policy!(evaluate);

/// The pure decision.
pub fn decide(ctx: &RequestCtx) -> Decision {
    let mut d = DecisionBuilder::new();
    let mut counts = scan::Counts::default();
    let mut withheld = false;
    for (i, m) in ctx.messages.iter().enumerate() {
        let Some(text) = m.content.as_deref() else {
            withheld |= m.content_len > 0;
            continue;
        };
        let (redacted, c) = scan::redact(text);
        if c.total() > 0 {
            d.replace_message(i, m.role, redacted);
            counts.add(c);
        }
    }
    if counts.total() > 0 {
        let summary = counts.summary();
        log::info(&format!("pii-redact: redacted {summary}"));
        d.annotate("redacted", summary);
    }
    if withheld {
        // The manifest grants read-content; without it there is nothing this policy can check.
        log::warn("pii-redact: message content withheld (read-content not granted)");
        d.annotate("pii_redact", "content withheld: grant read-content");
    }
    d.into_allow()
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_policy::Edit;
    use switchyard_policy::testing::{ctx, edits, message, text_message};

    #[test]
    fn replaces_only_changed_messages_and_counts() {
        let c = ctx(
            vec![
                text_message(Role::System, 1, "Be kind."),
                text_message(
                    Role::User,
                    1,
                    "I am jo@example.com, card 4111 1111 1111 1111.",
                ),
                text_message(Role::Assistant, 1, "Noted."),
                text_message(Role::Tool, 1, "phone: +49 30 1234567"),
            ],
            vec![],
        );
        assert_eq!(
            edits(&decide(&c)),
            vec![
                Edit::ReplaceMessage((
                    1,
                    NewMessage {
                        role: Role::User,
                        content: "I am [EMAIL], card [CARD].".into()
                    }
                )),
                Edit::ReplaceMessage((
                    3,
                    NewMessage {
                        role: Role::Tool,
                        content: "phone: [PHONE]".into()
                    }
                )),
                Edit::Annotate(("redacted".into(), "email=1 phone=1 card=1".into())),
            ]
        );
    }

    #[test]
    fn clean_text_is_a_no_op() {
        let text = "Ship order 4111111111111112 on 2024-01-15 for $1299.00";
        let c = ctx(vec![text_message(Role::User, 1, text)], vec![]);
        assert_eq!(decide(&c), allow());
    }

    #[test]
    fn withheld_content_is_reported() {
        let withheld = Message {
            content_len: 12,
            ..message(Role::User, 1)
        };
        let e = edits(&decide(&ctx(vec![withheld], vec![])));
        assert!(matches!(&e[..], [Edit::Annotate((k, _))] if k == "pii_redact"));
    }

    #[test]
    fn manifest_cases() {
        let n =
            switchyard_policy::testing::run_manifest_tests(env!("CARGO_MANIFEST_DIR"), evaluate);
        assert_eq!(n, Ok(3));
    }
}
