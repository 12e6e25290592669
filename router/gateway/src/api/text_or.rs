//! `TextOr<T>`: a member that is a string or an array of `T` (Anthropic's `content` and
//! `system`, the Responses API's `input`). Unlike an untagged enum it keeps the error of the
//! array's element, with its path (`messages[0].content[2].tool_use_id: missing field`), rather
//! than "did not match any variant".

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::SeqAccessDeserializer;
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, PartialEq)]
pub enum TextOr<T> {
    Text(String),
    Items(Vec<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for TextOr<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = TextOr<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<TextOr<T>, E> {
                Ok(TextOr::Text(s.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<TextOr<T>, E> {
                Ok(TextOr::Text(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<TextOr<T>, A::Error> {
                Vec::<T>::deserialize(SeqAccessDeserializer::new(seq)).map(TextOr::Items)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::TextOr;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Item {
        #[allow(dead_code)]
        id: u32,
    }

    #[test]
    fn a_string_or_items_and_the_items_error_keeps_its_path() {
        let t: TextOr<Item> = serde_json::from_str("\"hi\"").unwrap();
        assert_eq!(t, TextOr::Text("hi".into()));
        let t: TextOr<Item> = serde_json::from_str(r#"[{"id":1}]"#).unwrap();
        assert_eq!(t, TextOr::Items(vec![Item { id: 1 }]));
        let mut de = serde_json::Deserializer::from_str(r#"{"c":[{"id":1},{}]}"#);
        #[derive(Debug, serde::Deserialize)]
        struct Outer {
            #[allow(dead_code)]
            c: TextOr<Item>,
        }
        let e = serde_path_to_error::deserialize::<_, Outer>(&mut de).unwrap_err();
        assert_eq!(e.path().to_string(), "c[1]");
        assert!(e.inner().to_string().contains("missing field `id`"));
        assert!(serde_json::from_str::<TextOr<Item>>("7").is_err());
    }
}
