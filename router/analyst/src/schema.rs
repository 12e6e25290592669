//! JSON Schema validation for model answers — the subset our output schemas use: `type` (one or
//! several), `properties`, `required`, `additionalProperties: false`, `items`, `enum`, `minimum`,
//! `maximum`, `minItems`, `maxItems`, `minLength`, `maxLength`. A schema using anything else is
//! rejected when the prompts load (`check_supported`), so validation never silently skips a rule.

use serde_json::Value;

const KEYWORDS: &[&str] = &[
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "description",
    "title",
];

/// Every keyword of `schema` (recursively) is one this validator enforces; errors name the path.
pub fn check_supported(schema: &Value, path: &str) -> Result<(), String> {
    let Value::Object(obj) = schema else {
        return Err(format!("{path}: a schema must be an object"));
    };
    for (key, value) in obj {
        if !KEYWORDS.contains(&key.as_str()) {
            return Err(format!("{path}: unsupported keyword `{key}`"));
        }
        match key.as_str() {
            "properties" => {
                let Value::Object(props) = value else {
                    return Err(format!("{path}.properties: must be an object"));
                };
                for (name, sub) in props {
                    check_supported(sub, &format!("{path}.properties.{name}"))?;
                }
            }
            "items" => check_supported(value, &format!("{path}.items"))?,
            "additionalProperties" if !value.is_boolean() => {
                return Err(format!(
                    "{path}.additionalProperties: only true/false is supported"
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Check `value` against `schema`; the first violation, with its JSON path (`$.risks[2]`).
pub fn validate(value: &Value, schema: &Value) -> Result<(), String> {
    walk(value, schema, "$")
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(v: &Value, want: &str) -> bool {
    let got = type_name(v);
    got == want
        || (want == "number" && got == "integer")
        || (want == "integer" && v.as_f64().is_some_and(|f| f.fract() == 0.0))
}

fn walk(value: &Value, schema: &Value, path: &str) -> Result<(), String> {
    let Value::Object(s) = schema else {
        return Ok(());
    };
    if let Some(t) = s.get("type") {
        let ok = match t {
            Value::String(want) => type_matches(value, want),
            Value::Array(options) => options
                .iter()
                .filter_map(Value::as_str)
                .any(|want| type_matches(value, want)),
            _ => true,
        };
        if !ok {
            return Err(format!("{path}: expected {t}, got {}", type_name(value)));
        }
    }
    if let Some(Value::Array(allowed)) = s.get("enum")
        && !allowed.contains(value)
    {
        return Err(format!(
            "{path}: {value} is not one of {}",
            Value::Array(allowed.clone())
        ));
    }
    if let Some(x) = value.as_f64() {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64)
            && x < min
        {
            return Err(format!("{path}: {x} is below the minimum {min}"));
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64)
            && x > max
        {
            return Err(format!("{path}: {x} is above the maximum {max}"));
        }
    }
    if let Value::String(text) = value {
        let len = text.chars().count() as u64;
        if let Some(min) = s.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            return Err(format!("{path}: shorter than {min} characters"));
        }
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            return Err(format!("{path}: longer than {max} characters"));
        }
    }
    if let Value::Array(items) = value {
        let n = items.len() as u64;
        if let Some(min) = s.get("minItems").and_then(Value::as_u64)
            && n < min
        {
            return Err(format!("{path}: {n} items, at least {min} required"));
        }
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
            && n > max
        {
            return Err(format!("{path}: {n} items, at most {max} allowed"));
        }
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                walk(item, item_schema, &format!("{path}[{i}]"))?;
            }
        }
    }
    if let Value::Object(obj) = value {
        if let Some(Value::Array(required)) = s.get("required") {
            for key in required.iter().filter_map(Value::as_str) {
                if !obj.contains_key(key) {
                    return Err(format!("{path}: missing required property `{key}`"));
                }
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (key, v) in obj {
            match props.and_then(|p| p.get(key)) {
                Some(sub) => walk(v, sub, &format!("{path}.{key}"))?,
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return Err(format!("{path}: unexpected property `{key}`"));
                }
                None => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "summary": {"type": "string", "minLength": 1},
                "outlook": {"enum": ["bullish", "bearish", "neutral"]},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                "levels": {"type": "array", "maxItems": 2,
                           "items": {"type": "object", "required": ["price"],
                                     "properties": {"price": {"type": "number"}}}},
                "note": {"type": ["string", "null"]}
            },
            "required": ["summary", "outlook", "confidence"],
            "additionalProperties": false
        })
    }

    #[test]
    fn a_valid_answer_passes() {
        let v = json!({"summary": "Up.", "outlook": "bullish", "confidence": 1,
                       "levels": [{"price": 10.5}], "note": null});
        assert_eq!(validate(&v, &schema()), Ok(()));
        check_supported(&schema(), "$").unwrap();
    }

    #[test]
    fn violations_name_their_path() {
        let cases = [
            (
                json!({"outlook": "bullish", "confidence": 0.5}),
                "missing required property `summary`",
            ),
            (
                json!({"summary": "x", "outlook": "sideways", "confidence": 0.5}),
                "$.outlook",
            ),
            (
                json!({"summary": "x", "outlook": "neutral", "confidence": 1.5}),
                "$.confidence: 1.5 is above",
            ),
            (
                json!({"summary": "", "outlook": "neutral", "confidence": 0}),
                "$.summary: shorter",
            ),
            (
                json!({"summary": "x", "outlook": "neutral", "confidence": 0, "levels": [{"price": "ten"}]}),
                "$.levels[0].price",
            ),
            (
                json!({"summary": "x", "outlook": "neutral", "confidence": 0, "extra": 1}),
                "unexpected property `extra`",
            ),
            (
                json!({"summary": "x", "outlook": "neutral", "confidence": 0, "levels": [{"price": 1}, {"price": 2}, {"price": 3}]}),
                "at most 2",
            ),
            (json!("just text"), "$: expected \"object\""),
        ];
        for (value, want) in cases {
            let err = validate(&value, &schema()).unwrap_err();
            assert!(err.contains(want), "{value}: {err}");
        }
    }

    #[test]
    fn unsupported_keywords_are_refused_up_front() {
        let s = json!({"type": "object", "properties": {"a": {"type": "string", "pattern": "^x"}}});
        let err = check_supported(&s, "market").unwrap_err();
        assert!(
            err.contains("market.properties.a: unsupported keyword `pattern`"),
            "{err}"
        );
    }
}
