//! `GET /openapi.json`: the OpenAPI 3.1 document of every endpoint (`data/openapi.json`).
//! A test checks that it describes exactly the paths and methods of `api::endpoints()`.

use std::sync::OnceLock;

use axum::Json;
use serde_json::Value;

const DOCUMENT: &str = include_str!("../../../data/openapi.json");

/// The parsed document (parsed once; a broken file is a test failure, served as `{}`).
pub fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| serde_json::from_str(DOCUMENT).unwrap_or_default())
}

pub async fn document() -> Json<&'static Value> {
    Json(spec())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn the_document_describes_exactly_the_routers_endpoints() {
        let doc: Value = serde_json::from_str(DOCUMENT).expect("openapi.json parses");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("path item") {
                if method == "parameters" {
                    continue;
                }
                assert!(
                    op["operationId"].is_string(),
                    "{method} {path} has no operationId"
                );
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{method} {path} has no responses"
                );
                documented.insert((method.to_ascii_uppercase(), path.clone()));
            }
        }
        let served: BTreeSet<(String, String)> = crate::api::endpoints()
            .iter()
            .flat_map(|e| {
                e.methods
                    .iter()
                    .map(|m| (m.as_str().to_owned(), e.path.to_owned()))
            })
            .collect();
        let missing: Vec<_> = served.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(missing.is_empty(), "served but not documented: {missing:?}");
        assert!(extra.is_empty(), "documented but not served: {extra:?}");
    }

    #[test]
    fn every_reference_resolves() {
        let doc: Value = serde_json::from_str(DOCUMENT).expect("openapi.json parses");
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(!refs.is_empty());
        for r in refs {
            let pointer = r.strip_prefix('#').expect("local reference");
            assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
        }
    }

    fn collect_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| collect_refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
            _ => {}
        }
    }
}
