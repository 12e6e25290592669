//! Conversation structure: the system prompt, turns, and dropping the oldest turns to fit a
//! token budget.
//!
//! A **turn** starts at a user message and runs until the next user message, so it holds the
//! user's message, the assistant's answer and any tool calls and tool results in between: dropping
//! whole turns never leaves a tool result without its call. Messages before the first user message
//! (other than system messages) form a turn of their own. **System messages are never part of a
//! turn**: they are not dropped with the turn they sit in.
//!
//! The **system prompt** is the run of system messages at the start of the conversation.

use std::ops::Range;

use crate::{Message, Role};

/// One turn of the conversation: indices into the messages as received, ascending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// The messages of the turn (never a system message).
    pub indices: Vec<usize>,
    /// Sum of the messages' `tokens`.
    pub tokens: u64,
}

impl Turn {
    /// Index of the turn's first message.
    pub fn first(&self) -> Option<usize> {
        self.indices.first().copied()
    }

    /// Index of the turn's last message.
    pub fn last(&self) -> Option<usize> {
        self.indices.last().copied()
    }
}

/// Sum of the messages' `tokens`.
pub fn message_tokens(messages: &[Message]) -> u64 {
    messages.iter().map(|m| u64::from(m.tokens)).sum()
}

/// The leading system messages (`0..0` when the conversation does not start with one).
pub fn system_prompt(messages: &[Message]) -> Range<usize> {
    let n = messages
        .iter()
        .take_while(|m| m.role == Role::System)
        .count();
    0..n
}

/// Group the messages into turns, oldest first (see the module docs).
pub fn turns(messages: &[Message]) -> Vec<Turn> {
    let mut out: Vec<Turn> = Vec::new();
    let mut open = false;
    for (i, m) in messages.iter().enumerate() {
        if m.role == Role::System {
            continue;
        }
        if m.role == Role::User || !open {
            out.push(Turn {
                indices: Vec::new(),
                tokens: 0,
            });
            open = true;
        }
        if let Some(t) = out.last_mut() {
            t.indices.push(i);
            t.tokens += u64::from(m.tokens);
        }
    }
    out
}

/// Indices (ascending) of the messages in the last `n` turns.
pub fn last_turns(messages: &[Message], n: usize) -> Vec<usize> {
    let ts = turns(messages);
    let skip = ts.len().saturating_sub(n);
    ts.into_iter().skip(skip).flat_map(|t| t.indices).collect()
}

/// What [`drop_oldest_to_fit`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fit {
    /// Indices of the messages to drop, ascending (whole turns, oldest first).
    pub drop: Vec<usize>,
    /// Sum of the messages' tokens before dropping.
    pub tokens_before: u64,
    /// Sum of the tokens of the messages that remain.
    pub tokens_after: u64,
    /// Whether `tokens_after <= budget`. When `false`, `drop` is everything that could be
    /// dropped, and the caller decides whether dropping it is still worth it.
    pub fits: bool,
}

/// Drop the oldest turns until the messages' `tokens` add up to at most `budget`.
///
/// Never drops a system message inside the conversation, the last `keep_last_turns` turns, or the
/// turn holding the last message (so at least one turn is always kept). With
/// `keep_system_prompt = false`, the leading system prompt is dropped as the very last resort,
/// after every droppable turn (never when it is the last message). Returns the plan; it does not
/// call the host.
pub fn drop_oldest_to_fit(
    messages: &[Message],
    budget: u64,
    keep_system_prompt: bool,
    keep_last_turns: usize,
) -> Fit {
    let before = message_tokens(messages);
    let mut tokens = before;
    let mut drop = Vec::new();
    let ts = turns(messages);
    let droppable = ts.len().saturating_sub(keep_last_turns.max(1));
    for t in ts.iter().take(droppable) {
        if tokens <= budget {
            break;
        }
        drop.extend_from_slice(&t.indices);
        tokens = tokens.saturating_sub(t.tokens);
    }
    if tokens > budget && !keep_system_prompt {
        let last = messages.len().saturating_sub(1);
        for i in system_prompt(messages).filter(|&i| i != last) {
            drop.push(i);
            tokens = tokens.saturating_sub(messages.get(i).map_or(0, |m| u64::from(m.tokens)));
        }
    }
    drop.sort_unstable();
    Fit {
        drop,
        tokens_before: before,
        tokens_after: tokens,
        fits: tokens <= budget,
    }
}

/// A conservative token estimate for text the host has not counted: one token per three bytes,
/// rounded up. Real tokenizers average about four bytes per token on English text.
pub fn estimate_tokens(text: &str) -> u32 {
    u32::try_from(text.len().div_ceil(3)).unwrap_or(u32::MAX)
}

/// [`estimate_tokens`] plus 4 tokens of per-message framing (role markers).
pub fn estimate_message_tokens(text: &str) -> u32 {
    estimate_tokens(text).saturating_add(4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::message as msg;

    fn tool(role: Role, tokens: u32) -> Message {
        Message {
            tool_related: true,
            ..msg(role, tokens)
        }
    }

    fn convo() -> Vec<Message> {
        vec![
            msg(Role::System, 10),    // 0
            msg(Role::User, 100),     // 1  turn 0
            msg(Role::Assistant, 50), // 2
            msg(Role::User, 20),      // 3  turn 1
            tool(Role::Assistant, 5), // 4
            tool(Role::Tool, 300),    // 5
            msg(Role::System, 7),     // 6  (never in a turn)
            msg(Role::Assistant, 30), // 7
            msg(Role::User, 40),      // 8  turn 2
            msg(Role::Assistant, 60), // 9
            msg(Role::User, 8),       // 10 turn 3
        ]
    }

    #[test]
    fn groups_turns() {
        let ts = turns(&convo());
        let idx: Vec<Vec<usize>> = ts.iter().map(|t| t.indices.clone()).collect();
        assert_eq!(
            idx,
            vec![vec![1, 2], vec![3, 4, 5, 7], vec![8, 9], vec![10]]
        );
        assert_eq!(ts[1].tokens, 20 + 5 + 300 + 30);
        assert_eq!(ts[0].first(), Some(1));
        assert_eq!(ts[1].last(), Some(7));
        assert_eq!(system_prompt(&convo()), 0..1);
        assert_eq!(last_turns(&convo(), 2), vec![8, 9, 10]);
        assert_eq!(last_turns(&convo(), 9).len(), 9);
        assert!(turns(&[]).is_empty());
    }

    #[test]
    fn leading_assistant_is_its_own_turn() {
        let m = vec![
            msg(Role::System, 1),
            msg(Role::Assistant, 2),
            msg(Role::User, 3),
        ];
        let idx: Vec<Vec<usize>> = turns(&m).into_iter().map(|t| t.indices).collect();
        assert_eq!(idx, vec![vec![1], vec![2]]);
        assert_eq!(system_prompt(&[msg(Role::User, 1)]), 0..0);
    }

    #[test]
    fn drops_oldest_whole_turns_only_as_needed() {
        let m = convo(); // total 630
        let fit = drop_oldest_to_fit(&m, 600, true, 2);
        assert_eq!(fit.drop, vec![1, 2]);
        assert_eq!(
            (fit.tokens_before, fit.tokens_after, fit.fits),
            (630, 480, true)
        );

        let fit = drop_oldest_to_fit(&m, 200, true, 2);
        assert_eq!(fit.drop, vec![1, 2, 3, 4, 5, 7]);
        assert_eq!((fit.tokens_after, fit.fits), (125, true));

        let fit = drop_oldest_to_fit(&m, 630, true, 2);
        assert!(fit.drop.is_empty() && fit.fits);
    }

    #[test]
    fn reports_when_it_cannot_fit() {
        let m = convo();
        let fit = drop_oldest_to_fit(&m, 50, true, 2);
        assert_eq!(
            fit.drop,
            vec![1, 2, 3, 4, 5, 7],
            "everything droppable, nothing more"
        );
        assert_eq!((fit.tokens_after, fit.fits), (125, false));
        // keep_last_turns = 0 still keeps the turn with the last message.
        let fit = drop_oldest_to_fit(&m, 0, true, 0);
        assert_eq!(fit.drop, vec![1, 2, 3, 4, 5, 7, 8, 9]);
        assert!(!fit.fits);
    }

    #[test]
    fn system_prompt_only_as_last_resort() {
        let m = convo();
        let fit = drop_oldest_to_fit(&m, 600, false, 2);
        assert_eq!(fit.drop, vec![1, 2], "not needed, so kept");
        let fit = drop_oldest_to_fit(&m, 0, false, 2);
        assert_eq!(fit.drop, vec![0, 1, 2, 3, 4, 5, 7]);
        assert_eq!(fit.tokens_after, 115);
        let only_system = vec![msg(Role::System, 5)];
        assert!(
            drop_oldest_to_fit(&only_system, 0, false, 0)
                .drop
                .is_empty()
        );
    }

    #[test]
    fn estimates() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("abcd"), 2);
        assert_eq!(estimate_message_tokens("abc"), 5);
    }
}
