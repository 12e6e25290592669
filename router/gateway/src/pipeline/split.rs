//! The route's canary split on the request path: the sticky value a request carries (its key,
//! its `user`, a field of its `metadata`), handed with the route to
//! `switchyard_routing::split::assign`, which puts the arm first.

use serde_json::Value;

use super::*;
use switchyard_routing::split::{self, Draw, SplitBy};

/// The decision with the route's split applied (as it was without a split). A request that
/// lacks the `split_by` value (no key in `open` mode, no `user`, no such metadata field) is
/// placed at random, and the explanation says so.
pub(super) fn assign(
    route: &RouteConfig,
    request: &ChatRequest,
    key: Option<&Arc<KeyState>>,
    mut decision: Decision,
) -> Decision {
    let Some(s) = &route.split else {
        return decision;
    };
    let value: Option<Cow<'_, str>> = match &s.by {
        SplitBy::Key => key.map(|k| Cow::Borrowed(k.id())),
        SplitBy::User => request.user.as_deref().map(Cow::Borrowed),
        SplitBy::Metadata(name) => metadata(request, name),
        SplitBy::Random => None,
    };
    let draw = match value.as_deref() {
        Some(v) if !v.is_empty() => Draw::Sticky(v),
        _ => Draw::Random(uniform()),
    };
    split::assign(s, &route.name, draw, &mut decision);
    decision
}

/// `metadata.NAME` of a chat request (OpenAI's `metadata` object), a string or a number.
fn metadata<'r>(request: &'r ChatRequest, name: &str) -> Option<Cow<'r, str>> {
    match request.extra.get("metadata")?.get(name)? {
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// A uniform draw in [0, 1) for splits and shadow sampling: SplitMix64's finaliser over the
/// clock and a counter (as `new_id`). Not for anything secret.
pub(super) fn uniform() -> f64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let z = switchyard_types::rng::mix(
        switchyard_types::unix_nanos() ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    (z >> 11) as f64 / (1u64 << 53) as f64
}
