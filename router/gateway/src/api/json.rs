//! JSON bodies as JSON Schema reads them, where serde reads them otherwise. The OpenAPI
//! document is checked against the gateway's behaviour (schemathesis, `.ci/schemathesis.sh`);
//! these are the places where serde's defaults disagreed with the document:
//!
//! - `9.0` is an integer to JSON Schema; serde refuses it for `u32`. `normalise` turns a whole
//!   float into the integer it is (exactly: only within the integer types' range).
//! - A `type` member is a string in every API served here (and in JSON Schema); serde takes a
//!   number as a variant's index. `normalise` refuses a numeric `type`.
//! - serde reads a struct from an array, by position; `switchyard_types::strict::object`
//!   refuses anything but an object for the members it is put on.

use serde_json::{Number, Value};

/// Normalise a body in place (see the module): `path` is the path so far, for the error.
pub fn normalise(value: &mut Value, path: &mut String) -> Result<(), (String, String)> {
    match value {
        Value::Number(n) => {
            if let Some(whole) = whole(n) {
                *n = whole;
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                normalise(item, path)?;
                path.truncate(len);
            }
        }
        Value::Object(members) => {
            if let Some(Value::Number(_)) = members.get("type") {
                let at = if path.is_empty() {
                    "type".to_owned()
                } else {
                    format!("{path}.type")
                };
                return Err((at, "must be a string".to_owned()));
            }
            for (k, v) in members.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                normalise(v, path)?;
                path.truncate(len);
            }
        }
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
    Ok(())
}

/// The integer a whole float is, when an integer type can hold it exactly.
fn whole(n: &Number) -> Option<Number> {
    let f = n.as_f64().filter(|_| n.is_f64())?;
    if f.fract() != 0.0 || !f.is_finite() {
        return None;
    }
    // Only where a float holds every integer exactly (|f| ≤ 2^53): beyond, a float is the
    // rounding of some integer written out of range (`-9223372036854775809`), which must stay
    // refused, not become the nearest integer that fits.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if (0.0..=EXACT).contains(&f) {
        Some(Number::from(f as u64))
    } else if (-EXACT..0.0).contains(&f) {
        Some(Number::from(f as i64))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn whole_floats_become_integers_and_numeric_types_are_refused() {
        let mut v = json!({"max_tokens": 9.0, "t": 0.5, "n": [-2.0, 1e300], "big": 1e19,
                           "seed": -9223372036854775809.0});
        normalise(&mut v, &mut String::new()).unwrap();
        assert_eq!(v["max_tokens"], json!(9));
        assert!(v["max_tokens"].is_u64());
        assert_eq!(v["t"], json!(0.5));
        assert!(v["n"][0].is_i64());
        assert!(v["n"][1].is_f64(), "beyond every integer type: left alone");
        assert!(
            v["big"].is_f64(),
            "beyond 2^53: a rounded float, left alone"
        );
        assert!(v["seed"].is_f64());
        let mut v = json!({"messages": [{"content": [{"type": 0, "text": ""}]}]});
        let (param, _) = normalise(&mut v, &mut String::new()).unwrap_err();
        assert_eq!(param, "messages[0].content[0].type");
    }

    #[test]
    fn object_members_refuse_arrays() {
        use serde::Deserialize;
        use switchyard_types::strict::object;
        #[derive(Debug, Deserialize)]
        struct Inner {
            #[allow(dead_code)]
            a: Option<u32>,
        }
        #[derive(Debug, Deserialize)]
        struct Outer {
            #[serde(default, deserialize_with = "object")]
            inner: Option<Inner>,
        }
        assert!(
            serde_json::from_value::<Outer>(json!({"inner": {"a": 1}}))
                .unwrap()
                .inner
                .is_some()
        );
        assert!(
            serde_json::from_value::<Outer>(json!({"inner": null}))
                .unwrap()
                .inner
                .is_none()
        );
        assert!(
            serde_json::from_value::<Outer>(json!({}))
                .unwrap()
                .inner
                .is_none()
        );
        assert!(serde_json::from_value::<Outer>(json!({"inner": [null]})).is_err());
    }
}
