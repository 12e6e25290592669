//! Generated content: the word list (each word is one token in o200k and cl100k, with or without
//! its leading space, checked against the tiktoken vocabularies), deterministic text, honest
//! token arithmetic, and the JSON-Schema filler used for tool arguments and JSON mode.
//! Pure functions of their inputs and the RNG; never reads the clock.

use serde_json::{Map, Value};

use super::profile::SplitMix64;

/// 256 words, so one RNG byte picks one.
#[rustfmt::skip]
const WORDS: [&str; 256] = [
    "the", "cat", "model", "route", "time", "people", "way", "day", "man", "thing", "woman", "life",
    "child", "world", "school", "state", "family", "student", "group", "country", "problem", "hand",
    "part", "place", "case", "week", "company", "system", "program", "question", "work",
    "government", "number", "night", "point", "home", "water", "room", "mother", "area", "money",
    "story", "fact", "month", "lot", "right", "study", "book", "eye", "job", "word", "business",
    "issue", "side", "kind", "head", "house", "service", "friend", "father", "power", "hour",
    "game", "line", "end", "member", "law", "car", "city", "community", "name", "team", "minute",
    "idea", "kid", "body", "information", "back", "parent", "face", "others", "level", "office",
    "door", "health", "person", "art", "war", "history", "party", "result", "change", "reason",
    "research", "girl", "moment", "air", "teacher", "force", "education", "and", "of", "to", "in",
    "is", "that", "for", "it", "with", "as", "was", "on", "be", "at", "by", "this", "have", "from",
    "or", "one", "had", "not", "but", "what", "all", "were", "when", "we", "there", "can", "an",
    "your", "which", "their", "said", "if", "do", "will", "each", "about", "how", "up", "out",
    "them", "then", "she", "many", "some", "so", "these", "would", "other", "into", "has", "more",
    "her", "two", "like", "him", "see", "could", "no", "make", "than", "first", "been", "its",
    "who", "now", "my", "made", "over", "did", "down", "only", "find", "use", "may", "long",
    "little", "very", "after", "called", "just", "where", "most", "know", "get", "through", "much",
    "good", "new", "write", "our", "used", "me", "any", "same", "look", "think", "also", "around",
    "another", "came", "come", "three", "must", "because", "does", "even", "well", "such", "here",
    "take", "why", "help", "put", "different", "away", "again", "off", "went", "old", "great",
    "tell", "men", "say", "small", "every", "found", "still", "between", "should", "big", "give",
    "set", "own", "under", "read", "last", "never", "us", "left", "along", "while", "might", "next",
    "sound", "below", "something", "thought", "both", "few", "those", "always", "show",
];

/// Appends `n` words: the first without a leading space, the others with one, so the
/// words tokenize to exactly `n` tokens.
pub(crate) fn push_words(out: &mut String, rng: &mut SplitMix64, n: u32) {
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[(rng.next_u64() >> 56) as usize]);
    }
}

pub(crate) fn words(rng: &mut SplitMix64, n: u32) -> String {
    let mut out = String::with_capacity(n as usize * 7);
    push_words(&mut out, rng, n);
    out
}

/// Splits generated text into its tokens: a new piece starts at every space.
pub(crate) fn word_pieces(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest
            .char_indices()
            .skip(1)
            .find(|&(_, c)| c == ' ')
            .map_or(rest.len(), |(i, _)| i);
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

/// Splits text into pieces of at most 4 bytes on char boundaries: the stream chunks (and the
/// token count) of JSON content and tool arguments, where words do not apply.
pub(crate) fn chunk4(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(4);
        while !rest.is_char_boundary(end) {
            end += 1;
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

pub(crate) fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Keys whose values are identifiers, media or markup rather than prompt text.
const NOT_TEXT: &[&str] = &[
    "role",
    "type",
    "id",
    "tool_call_id",
    "tool_use_id",
    "cache_control",
    "image_url",
    "source",
    "inlineData",
    "inline_data",
    "fileData",
    "file_data",
    "mimeType",
    "signature",
    "thoughtSignature",
];

pub(crate) fn text_chars(v: &Value) -> usize {
    match v {
        Value::String(s) => s.chars().count(),
        Value::Array(items) => items.iter().map(text_chars).sum(),
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| !NOT_TEXT.contains(&k.as_str()))
            .map(|(_, v)| text_chars(v))
            .sum(),
        _ => 0,
    }
}

/// The prompt-token estimate: per message (and the system prompt, if any) ceil(chars/4) + 3,
/// plus 3 for the reply primer. Chars are those of the message's text, not of its JSON.
pub(crate) fn prompt_tokens<'a>(
    system: Option<&Value>,
    messages: impl IntoIterator<Item = &'a Value>,
) -> u32 {
    let one = |v: &Value| text_chars(v).div_ceil(4) + 3;
    let system = system.filter(|s| text_chars(s) > 0).map_or(0, one);
    let total = 3 + system + messages.into_iter().map(one).sum::<usize>();
    count_u32(total)
}

/// How the schema filler fills strings.
pub(crate) enum Strings<'a> {
    /// Tool arguments: every string is "sample".
    Sample,
    /// JSON mode: every string is three generated words.
    Words(&'a mut SplitMix64),
}

const MAX_DEPTH: usize = 12;

/// A JSON instance of `schema`: strings per `strings`, numbers and integers 1, booleans true,
/// enum/const their first value, arrays one item (or minItems), objects every property.
/// Understands `$ref` into `$defs`/`definitions`, `anyOf`/`oneOf`/`allOf` (first branch),
/// type lists (first non-null) and Gemini's upper-case type names.
pub(crate) fn fill_schema(schema: &Value, strings: &mut Strings<'_>) -> Value {
    fill(schema, schema, strings, 0)
}

fn fill(schema: &Value, root: &Value, strings: &mut Strings<'_>, depth: usize) -> Value {
    let Some(obj) = schema.as_object() else {
        return Value::Object(Map::new());
    };
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    if let Some(target) = obj.get("$ref").and_then(Value::as_str) {
        return match resolve_ref(root, target) {
            Some(s) => fill(s, root, strings, depth + 1),
            None => Value::Object(Map::new()),
        };
    }
    if let Some(v) = obj.get("const") {
        return v.clone();
    }
    if let Some(first) = obj
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        let first = obj.get(key).and_then(Value::as_array).and_then(|branches| {
            branches
                .iter()
                .find(|b| b.get("type").and_then(Value::as_str) != Some("null"))
        });
        if let Some(branch) = first {
            return fill(branch, root, strings, depth + 1);
        }
    }
    let ty = match obj.get("type") {
        Some(Value::String(t)) => t.to_ascii_lowercase(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| !t.eq_ignore_ascii_case("null"))
            .unwrap_or("null")
            .to_ascii_lowercase(),
        _ if obj.contains_key("properties") => "object".to_owned(),
        _ if obj.contains_key("items") => "array".to_owned(),
        _ => "object".to_owned(),
    };
    match ty.as_str() {
        "string" => Value::String(fill_string(obj, strings)),
        "integer" | "number" => Value::from(1),
        "boolean" => Value::Bool(true),
        "null" => Value::Null,
        "array" => {
            let items = obj.get("items").unwrap_or(&Value::Null);
            let n = obj
                .get("minItems")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .clamp(1, 8);
            let arr = (0..n)
                .map(|_| match items {
                    Value::Null => Value::String(fill_string(&Map::new(), strings)),
                    s => fill(s, root, strings, depth + 1),
                })
                .collect();
            Value::Array(arr)
        }
        _ => {
            let mut out = Map::new();
            if let Some(props) = obj.get("properties").and_then(Value::as_object) {
                for (name, sub) in props {
                    out.insert(name.clone(), fill(sub, root, strings, depth + 1));
                }
            }
            Value::Object(out)
        }
    }
}

fn fill_string(obj: &Map<String, Value>, strings: &mut Strings<'_>) -> String {
    let format = obj.get("format").and_then(Value::as_str).unwrap_or("");
    let fixed = match format {
        "date-time" => "2025-01-01T00:00:00Z",
        "date" => "2025-01-01",
        "time" => "00:00:00",
        "email" => "sample@example.com",
        "uri" | "url" => "https://example.com/sample",
        "uuid" => "00000000-0000-4000-8000-000000000000",
        _ => "",
    };
    if !fixed.is_empty() {
        return fixed.to_owned();
    }
    match strings {
        Strings::Sample => "sample".to_owned(),
        Strings::Words(rng) => words(rng, 3),
    }
}

fn resolve_ref<'a>(root: &'a Value, target: &str) -> Option<&'a Value> {
    let path = target.strip_prefix("#/")?;
    path.split('/').try_fold(root, |node, seg| {
        node.get(seg.replace("~1", "/").replace("~0", "~"))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn words_are_seeded_and_split_into_single_tokens() {
        let a = words(&mut SplitMix64::new(3), 12);
        let b = words(&mut SplitMix64::new(3), 12);
        assert_eq!(a, b);
        assert!(!a.starts_with(' '));
        let pieces: Vec<_> = word_pieces(&a).collect();
        assert_eq!(pieces.len(), 12);
        assert_eq!(pieces.concat(), a);
        assert!(pieces[1..].iter().all(|p| p.starts_with(' ')));
        assert_eq!(chunk4("héllo wörld").collect::<String>(), "héllo wörld");
    }

    #[test]
    fn prompt_estimate_follows_the_formula() {
        let msgs = [
            json!({"role":"user","content":"12345678"}),
            json!({"role":"assistant","content":"x"}),
        ];
        // (2 + 3) + (1 + 3) + 3
        assert_eq!(prompt_tokens(None, &msgs), 12);
        assert_eq!(prompt_tokens(Some(&json!("abcd")), &msgs), 16);
    }

    #[test]
    fn schema_filler_covers_the_types() {
        let schema = json!({
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "n": {"type": "integer"},
                "x": {"type": ["number", "null"]},
                "ok": {"type": "BOOLEAN"},
                "unit": {"enum": ["c", "f"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "loc": {"$ref": "#/$defs/loc"}
            },
            "$defs": {"loc": {"type": "object", "properties": {"lat": {"type": "number"}}}}
        });
        let v = fill_schema(&schema, &mut Strings::Sample);
        assert_eq!(
            v,
            json!({"city": "sample", "n": 1, "x": 1, "ok": true, "unit": "c", "tags": ["sample"],
                "loc": {"lat": 1}})
        );
        let mut rng = SplitMix64::new(1);
        let v = fill_schema(&json!({"type":"string"}), &mut Strings::Words(&mut rng));
        assert_eq!(v.as_str().map(|s| word_pieces(s).count()), Some(3));
    }
}
