//! Prompt templates of the analyst endpoints (`prompts/`): loaded and checked once, at startup.
//!
//! Checks, each a startup error naming the file: the manifest parses and has every endpoint; a
//! template compiles; it uses only variables its manifest entry declares; every declared variable
//! is one the endpoint supplies; the output schema uses only keywords `schema::validate` enforces;
//! and the template renders (strict undefined) with a sample context of the endpoint's real shape.
//! Built-in copies are compiled into the binary; `[analyst] prompts_dir` overrides them.

use std::collections::BTreeMap;
use std::path::Path;

use minijinja::{Environment, UndefinedBehavior};
use serde::Deserialize;
use serde_json::Value;

use super::schema;

/// The endpoints with a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    Market,
    Sentiment,
    Portfolio,
}

impl Endpoint {
    pub const ALL: [Endpoint; 3] = [Endpoint::Market, Endpoint::Sentiment, Endpoint::Portfolio];

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Market => "market",
            Endpoint::Sentiment => "sentiment",
            Endpoint::Portfolio => "portfolio",
        }
    }

    /// The variables the endpoint's code puts in the template context.
    pub fn supplies(self) -> &'static [&'static str] {
        match self {
            Endpoint::Market => &["symbols", "question", "horizon"],
            Endpoint::Sentiment => &["items"],
            Endpoint::Portfolio => &[
                "objective",
                "assets",
                "expected_return",
                "volatility",
                "sharpe",
                "risk_free_rate",
                "constraints",
            ],
        }
    }
}

const BUILTIN: &[(&str, &str)] = &[
    (
        "manifest.toml",
        include_str!("../../../prompts/manifest.toml"),
    ),
    (
        "market.jinja",
        include_str!("../../../prompts/market.jinja"),
    ),
    (
        "market.schema.json",
        include_str!("../../../prompts/market.schema.json"),
    ),
    (
        "sentiment.jinja",
        include_str!("../../../prompts/sentiment.jinja"),
    ),
    (
        "sentiment.schema.json",
        include_str!("../../../prompts/sentiment.schema.json"),
    ),
    (
        "portfolio.jinja",
        include_str!("../../../prompts/portfolio.jinja"),
    ),
    (
        "portfolio.schema.json",
        include_str!("../../../prompts/portfolio.schema.json"),
    ),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestEntry {
    template: String,
    schema: String,
    variables: Vec<String>,
    system: String,
    max_tokens: u32,
    temperature: f64,
}

/// One endpoint's prompt: its system message, its output schema and its sampling settings.
#[derive(Debug, Clone)]
pub struct PromptSpec {
    pub endpoint: Endpoint,
    pub system: String,
    pub schema: Value,
    pub max_tokens: u32,
    pub temperature: f64,
}

/// All endpoints' prompts, checked.
#[derive(Debug)]
pub struct Prompts {
    env: Environment<'static>,
    specs: BTreeMap<Endpoint, PromptSpec>,
}

impl Prompts {
    /// The copies compiled into the binary.
    pub fn builtin() -> Result<Prompts, String> {
        Prompts::load(|name| {
            BUILTIN
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, text)| (*text).to_owned())
                .ok_or_else(|| format!("{name}: no such built-in prompt file"))
        })
    }

    /// A prompts folder (same layout as `prompts/`).
    pub fn from_dir(dir: &Path) -> Result<Prompts, String> {
        Prompts::load(|name| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))
        })
    }

    fn load(read: impl Fn(&str) -> Result<String, String>) -> Result<Prompts, String> {
        let manifest: BTreeMap<String, ManifestEntry> =
            toml::from_str(&read("manifest.toml")?).map_err(|e| format!("manifest.toml: {e}"))?;
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        let mut specs = BTreeMap::new();
        for endpoint in Endpoint::ALL {
            let name = endpoint.name();
            let entry = manifest
                .get(name)
                .ok_or_else(|| format!("manifest.toml: no [{name}] entry"))?;
            let source = read(&entry.template)?;
            env.add_template_owned(name.to_owned(), source)
                .map_err(|e| format!("{}: {e}", entry.template))?;
            let template = env
                .get_template(name)
                .map_err(|e| format!("{}: {e}", entry.template))?;
            let mut used: Vec<String> = template.undeclared_variables(false).into_iter().collect();
            used.sort();
            for var in &used {
                if !entry.variables.contains(var) {
                    return Err(format!(
                        "{}: uses `{var}`, which manifest.toml does not declare for [{name}]",
                        entry.template
                    ));
                }
            }
            for var in &entry.variables {
                if !endpoint.supplies().contains(&var.as_str()) {
                    return Err(format!(
                        "manifest.toml [{name}]: the endpoint supplies no variable `{var}` \
                         (it supplies {})",
                        endpoint.supplies().join(", ")
                    ));
                }
            }
            let schema_text = read(&entry.schema)?;
            let schema: Value = serde_json::from_str(&schema_text)
                .map_err(|e| format!("{}: not JSON: {e}", entry.schema))?;
            schema::check_supported(&schema, &entry.schema)?;
            if !(0.0..=2.0).contains(&entry.temperature) || entry.max_tokens == 0 {
                return Err(format!(
                    "manifest.toml [{name}]: temperature must be in [0, 2] and max_tokens positive"
                ));
            }
            specs.insert(
                endpoint,
                PromptSpec {
                    endpoint,
                    system: entry.system.clone(),
                    schema,
                    max_tokens: entry.max_tokens,
                    temperature: entry.temperature,
                },
            );
        }
        let prompts = Prompts { env, specs };
        for endpoint in Endpoint::ALL {
            prompts
                .render(endpoint, &super::sample_context(endpoint))
                .map_err(|e| {
                    format!(
                        "{}: does not render with a sample context: {e}",
                        endpoint.name()
                    )
                })?;
        }
        Ok(prompts)
    }

    pub fn spec(&self, endpoint: Endpoint) -> Option<&PromptSpec> {
        self.specs.get(&endpoint)
    }

    /// The user message for an endpoint. Strict undefined: a missing variable is an error.
    pub fn render(&self, endpoint: Endpoint, context: &Value) -> Result<String, String> {
        let template = self
            .env
            .get_template(endpoint.name())
            .map_err(|e| e.to_string())?;
        template
            .render(minijinja::value::Serde(context))
            .map_err(|e| {
                let mut msg = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(&format!(": {s}"));
                    src = s.source();
                }
                msg
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> BTreeMap<String, String> {
        BUILTIN
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect()
    }

    fn load_with(files: BTreeMap<String, String>) -> Result<Prompts, String> {
        Prompts::load(|name| {
            files
                .get(name)
                .cloned()
                .ok_or_else(|| format!("{name}: missing"))
        })
    }

    #[test]
    fn the_builtin_prompts_load_and_render() {
        let p = Prompts::builtin().unwrap();
        let text = p
            .render(Endpoint::Market, &crate::sample_context(Endpoint::Market))
            .unwrap();
        assert!(text.contains("ACME"), "{text}");
        assert_eq!(p.spec(Endpoint::Sentiment).unwrap().temperature, 0.0);
    }

    #[test]
    fn an_undeclared_variable_is_a_startup_error() {
        let mut f = files();
        let t = f["market.jinja"].clone() + "\n{{ mood }}";
        f.insert("market.jinja".into(), t);
        let err = load_with(f).unwrap_err();
        assert!(err.contains("market.jinja: uses `mood`"), "{err}");
    }

    #[test]
    fn a_variable_the_endpoint_does_not_supply_is_a_startup_error() {
        let mut f = files();
        let m = f["manifest.toml"].replace(
            r#"variables = ["symbols", "question", "horizon"]"#,
            r#"variables = ["symbols", "question", "horizon", "weather"]"#,
        );
        f.insert("manifest.toml".into(), m);
        let err = load_with(f).unwrap_err();
        assert!(err.contains("supplies no variable `weather`"), "{err}");
    }

    #[test]
    fn a_misspelt_attribute_fails_the_sample_render_at_startup() {
        let mut f = files();
        let t = f["portfolio.jinja"].replace("a.symbol", "a.symbl");
        f.insert("portfolio.jinja".into(), t);
        let err = load_with(f).unwrap_err();
        assert!(err.contains("portfolio: does not render"), "{err}");
    }

    #[test]
    fn an_unsupported_schema_keyword_is_a_startup_error() {
        let mut f = files();
        let s = f["market.schema.json"].replace(r#""minLength": 1"#, r#""pattern": "^[A-Z]""#);
        f.insert("market.schema.json".into(), s);
        let err = load_with(f).unwrap_err();
        assert!(err.contains("unsupported keyword `pattern`"), "{err}");
    }
}
