//! A route's traffic settings beyond its attempts: the canary `split` (with `split_by`) and the
//! `shadow` copy, as written, and their validation.

use std::collections::BTreeMap;

use serde::Deserialize;
use switchyard_routing::route::{ModelConfig, Shadow};
use switchyard_routing::split::{Split, SplitBy};
use switchyard_types::ids::ModelId;

/// `shadow = { model, sample, log_text, bill }` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawShadow {
    pub model: String,
    /// Required: a forgotten sample must not shadow every request.
    pub sample: f64,
    #[serde(default)]
    pub log_text: bool,
    #[serde(default)]
    pub bill: bool,
}

/// Validate `split` (arms: models of the route, weights finite and non-negative with a positive
/// sum) and `split_by`; errors as `(path, message)`.
pub(super) fn resolve_split(
    split: Option<&BTreeMap<String, f64>>,
    split_by: Option<&str>,
    path: &str,
    route_models: &[ModelId],
    errors: &mut Vec<(String, String)>,
) -> Option<Split> {
    let by = match split_by.map(SplitBy::parse) {
        None => SplitBy::default(),
        Some(Ok(by)) => by,
        Some(Err(e)) => {
            errors.push((format!("{path}.split_by"), e));
            SplitBy::default()
        }
    };
    let Some(split) = split else {
        if split_by.is_some() {
            errors.push((
                format!("{path}.split_by"),
                "goes with `split`, which this route does not set".into(),
            ));
        }
        return None;
    };
    if split.is_empty() {
        errors.push((
            format!("{path}.split"),
            "must name at least one of the route's models".into(),
        ));
        return None;
    }
    let before = errors.len();
    for (model, weight) in split {
        let at = format!("{path}.split.{}", super::super::quote_key(model));
        if !route_models.iter().any(|m| m.as_str() == model) {
            errors.push((at, format!("'{model}' is not a model of this route")));
        } else if !(weight.is_finite() && *weight >= 0.0) {
            errors.push((at, "must be a non-negative number".into()));
        }
    }
    if errors.len() > before {
        return None;
    }
    let arms = split.iter().map(|(m, w)| (ModelId::new(m), *w));
    let resolved = Split::new(arms, by);
    if resolved.is_none() {
        errors.push((
            format!("{path}.split"),
            "the weights must have a positive sum".into(),
        ));
    }
    resolved
}

/// Validate `shadow`: the model exists and does what the route's models do (chat or
/// embeddings), and `sample` is in [0, 1]. The shadow model may be one of the route's own (to
/// compare a fallback with the usual winner); a request that model answered itself is not
/// shadowed.
pub(super) fn resolve_shadow(
    raw: Option<&RawShadow>,
    path: &str,
    route_models: &[ModelId],
    models: &BTreeMap<ModelId, ModelConfig>,
    errors: &mut Vec<(String, String)>,
) -> Option<Shadow> {
    let raw = raw?;
    let path = format!("{path}.shadow");
    let before = errors.len();
    match models.get(raw.model.as_str()) {
        None => errors.push((
            format!("{path}.model"),
            format!("no model named '{}'", raw.model),
        )),
        Some(m) => {
            let embeds = route_models
                .first()
                .and_then(|id| models.get(id))
                .map(|r| r.entry.is_embedding());
            if let Some(embeds) = embeds
                && embeds != m.entry.is_embedding()
            {
                let (it, route) = if embeds {
                    ("a chat model", "make embeddings")
                } else {
                    ("an embedding model", "chat")
                };
                errors.push((
                    format!("{path}.model"),
                    format!("'{}' is {it}; the route's models {route}", raw.model),
                ));
            }
        }
    }
    if !(raw.sample.is_finite() && (0.0..=1.0).contains(&raw.sample)) {
        errors.push((
            format!("{path}.sample"),
            "must be a share between 0 and 1".into(),
        ));
    }
    if errors.len() > before {
        return None;
    }
    Some(Shadow {
        model: ModelId::new(&raw.model),
        sample: raw.sample,
        log_text: raw.log_text,
        bill: raw.bill,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Vars, load_str};
    use switchyard_routing::split::SplitBy;
    use switchyard_types::ids::ModelId;

    const BASE: &str = r#"
[providers.openai]
kind = "openai"
api_key = "sk-test"
[providers.local]
kind = "openai-compatible"
dialect = "ollama"
base_url = "http://127.0.0.1:11434/v1"
[models."gpt-4o-mini"]
provider = "openai"
[models."gpt-4o"]
provider = "openai"
[models.llama]
provider = "local"
catalog = "llama3.2"
[models.embed]
provider = "openai"
catalog = "text-embedding-3-small"
"#;

    #[test]
    fn a_split_and_a_shadow_resolve() {
        let text = format!(
            "{BASE}\n[routes.canary]\nmodels = [\"gpt-4o-mini\", \"gpt-4o\", \"llama\"]\n\
             split = {{ \"gpt-4o-mini\" = 90, \"gpt-4o\" = 10.5 }}\nsplit_by = \"metadata.tenant\"\n\
             shadow = {{ model = \"llama\", sample = 0.25, log_text = true }}\n"
        );
        let c = load_str(&text, &Vars::only(&[])).unwrap();
        let r = &c.routes["canary"];
        let split = r.split.as_ref().unwrap();
        assert_eq!(split.by, SplitBy::Metadata("tenant".into()));
        // Name order, shares of the sum.
        assert_eq!(split.arms[0].model.as_str(), "gpt-4o");
        assert!((split.arms[0].share - 10.5 / 100.5).abs() < 1e-12);
        assert!((split.arms[1].share - 90.0 / 100.5).abs() < 1e-12);
        let shadow = r.shadow.as_ref().unwrap();
        assert_eq!(shadow.model, ModelId::new("llama"));
        assert_eq!(shadow.sample, 0.25);
        assert!(shadow.log_text && !shadow.bill);
        // Defaults: sticky by key; no split or shadow unless asked.
        let text = format!(
            "{BASE}\n[routes.a]\nmodels = [\"gpt-4o-mini\", \"gpt-4o\"]\n\
             split = {{ \"gpt-4o\" = 1 }}\n[routes.b]\nmodels = [\"gpt-4o\"]\n"
        );
        let c = load_str(&text, &Vars::only(&[])).unwrap();
        assert_eq!(c.routes["a"].split.as_ref().unwrap().by, SplitBy::Key);
        assert!(c.routes["b"].split.is_none() && c.routes["b"].shadow.is_none());
    }

    #[test]
    fn bad_splits_and_shadows_are_refused_by_path() {
        let routes = r#"
[routes.r1]
models = ["gpt-4o-mini", "gpt-4o"]
split = { "gpt-4o-mini" = -1, "llama" = 5, "gpt-4o" = nan }
split_by = "cookie"
[routes.r2]
models = ["gpt-4o-mini", "gpt-4o"]
split = { "gpt-4o-mini" = 0, "gpt-4o" = 0 }
[routes.r3]
models = ["gpt-4o"]
split_by = "user"
split = {}
[routes.r4]
models = ["gpt-4o"]
shadow = { model = "nope", sample = 1.5 }
[routes.r5]
models = ["gpt-4o"]
shadow = { model = "embed", sample = inf }
[routes.r6]
models = ["embed"]
shadow = { model = "gpt-4o", sample = 0.1 }
"#;
        let errs = load_str(&format!("{BASE}{routes}"), &Vars::only(&[]))
            .unwrap_err()
            .to_string();
        for (path, what) in [
            ("routes.r1.split.gpt-4o-mini", "non-negative"),
            ("routes.r1.split.llama", "not a model of this route"),
            ("routes.r1.split.gpt-4o:", "non-negative"),
            ("routes.r1.split_by", "\"metadata.NAME\""),
            ("routes.r2.split", "positive sum"),
            ("routes.r3.split", "at least one"),
            ("routes.r4.shadow.model", "no model named 'nope'"),
            ("routes.r4.shadow.sample", "between 0 and 1"),
            ("routes.r5.shadow.model", "is an embedding model"),
            ("routes.r5.shadow.sample", "between 0 and 1"),
            ("routes.r6.shadow.model", "is a chat model"),
        ] {
            let line = errs
                .lines()
                .find(|l| l.contains(path) && l.contains(what))
                .unwrap_or_else(|| panic!("no error at {path} ({what}) in:\n{errs}"));
            assert!(!line.is_empty());
        }
        // `split_by` alone, and a shadow without its sample.
        let text = format!(
            "{BASE}\n[routes.r]\nmodels = [\"gpt-4o\"]\nsplit_by = \"key\"\n\
             [routes.s]\nmodels = [\"gpt-4o\"]\nshadow = {{ model = \"llama\" }}\n"
        );
        let errs = load_str(&text, &Vars::only(&[])).unwrap_err().to_string();
        assert!(errs.contains("routes.r.split_by"), "{errs}");
        assert!(errs.contains("sample"), "{errs}");
    }
}
