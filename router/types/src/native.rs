//! What the hub request carries besides the hub fields, from the door it came through:
//!
//! - `Native`: the client's own Anthropic Messages body, kept byte for byte, so that an Anthropic
//!   upstream receives what the client sent (`cache_control`, thinking signatures, citations,
//!   block types the hub does not model) rather than a translation of it;
//! - `EmbedSpec`: the request is for embeddings (one input per user message), not a chat.

use std::fmt;
use std::sync::Arc;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// A JSON object whose members are kept in order and as the exact text the client sent.
#[derive(Debug, Clone, Default)]
pub struct RawObject(pub Vec<(String, Box<RawValue>)>);

impl RawObject {
    pub fn get(&self, name: &str) -> Option<&RawValue> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| &**v)
    }

    /// Replace a member's value (or append it), keeping the order of the others.
    pub fn set(&mut self, name: &str, value: Box<RawValue>) {
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(k, _)| k != name);
    }
}

impl PartialEq for RawObject {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|((a, x), (b, y))| a == b && x.get() == y.get())
    }
}

impl Serialize for RawObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    if out.iter().any(|(seen, _): &(String, _)| *seen == k) {
                        return Err(serde::de::Error::custom(format!("duplicate field `{k}`")));
                    }
                    out.push((k, v));
                }
                Ok(RawObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The wire format a native body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeFormat {
    /// Anthropic Messages (`POST /v1/messages`).
    AnthropicMessages,
}

/// A request's original body, for upstreams that speak its wire format.
#[derive(Debug, Clone, PartialEq)]
pub struct Native {
    pub format: NativeFormat,
    /// The client's body, member by member as sent. The provider replaces `model`, `stream` and
    /// `max_tokens` (the hub's values) and sends every other member unchanged.
    pub body: RawObject,
    /// The first part of the body only this format's upstreams can serve (its parameter path
    /// and what it is). Routing keeps such a request on models of this format.
    pub only_native: Option<(String, String)>,
    /// Request headers of this format that upstreams of the format take (`anthropic-beta`).
    pub headers: Vec<(String, String)>,
}

/// The request is for embeddings: each user message of the hub request is one input, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EmbedSpec {
    /// The vector length the client asked for (models that can shorten their output).
    pub dimensions: Option<u32>,
    /// How the client wants the vectors: floats, or base64 of little-endian f32s.
    pub base64: bool,
}

/// Where native bodies are shared: cloning a request (policies edit a copy) must not copy the
/// body.
pub type SharedNative = Arc<Native>;
