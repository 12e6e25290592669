//! `${VAR}` and `${VAR:-default}` interpolation over every string of a parsed TOML document.
//!
//! `$${` writes a literal `${`. Values are never echoed in errors: a secret may be among them.

use std::collections::HashMap;

/// Where variables come from: explicit overrides first (the demo sets its simulator URL this
/// way), then the process environment.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    overrides: HashMap<String, String>,
    use_env: bool,
}

impl Vars {
    pub fn from_env() -> Self {
        Vars {
            overrides: HashMap::new(),
            use_env: true,
        }
    }

    /// Only the given variables, no environment (tests).
    pub fn only(pairs: &[(&str, &str)]) -> Self {
        Vars {
            overrides: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            use_env: false,
        }
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.overrides.insert(name.into(), value.into());
    }

    pub fn get(&self, name: &str) -> Option<String> {
        if let Some(v) = self.overrides.get(name) {
            return Some(v.clone());
        }
        if self.use_env {
            return std::env::var(name).ok();
        }
        None
    }
}

/// Interpolate one string. Errors describe the problem without the value.
pub fn interpolate(input: &str, vars: &Vars) -> Result<String, String> {
    if !input.contains('$') {
        return Ok(input.to_owned());
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| "unterminated ${…} (missing '}')".to_owned())?;
            let expr = &tail[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (expr, None),
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!("invalid variable name in ${{{expr}}}"));
            }
            match (vars.get(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => return Err(format!("env var {name} is not set")),
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Interpolate every string in a TOML value in place, collecting `(path, error)` pairs.
pub fn interpolate_tree(
    value: &mut toml::Value,
    path: &str,
    vars: &Vars,
    errors: &mut Vec<(String, String)>,
) {
    match value {
        toml::Value::String(s) => match interpolate(s, vars) {
            Ok(v) => *s = v,
            Err(e) => errors.push((path.to_owned(), e)),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, &format!("{path}[{i}]"), vars, errors);
            }
        }
        toml::Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                interpolate_tree(v, &child, vars, errors);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutes_defaults_and_escapes() {
        let vars = Vars::only(&[("KEY", "abc"), ("EMPTY", "")]);
        assert_eq!(interpolate("k=${KEY}", &vars).unwrap(), "k=abc");
        assert_eq!(interpolate("${MISSING:-x}", &vars).unwrap(), "x");
        assert_eq!(
            interpolate("${EMPTY:-fallback}", &vars).unwrap(),
            "fallback"
        );
        assert_eq!(
            interpolate("$${KEY} and $5", &vars).unwrap(),
            "${KEY} and $5"
        );
        assert_eq!(interpolate("${MISSING:-}", &vars).unwrap(), "");
    }

    #[test]
    fn missing_variables_are_named_without_values() {
        let vars = Vars::only(&[("SECRET", "sk-123")]);
        let err = interpolate("${NOPE}", &vars).unwrap_err();
        assert_eq!(err, "env var NOPE is not set");
        assert!(
            interpolate("${OPEN", &vars)
                .unwrap_err()
                .contains("unterminated")
        );
        assert!(
            interpolate("${a b}", &vars)
                .unwrap_err()
                .contains("invalid")
        );
    }

    #[test]
    fn tree_errors_carry_paths() {
        let mut v: toml::Value =
            toml::from_str("[providers.openai]\napi_key = \"${OPENAI_KEY_X}\"\n").unwrap();
        let mut errors = Vec::new();
        interpolate_tree(&mut v, "", &Vars::only(&[]), &mut errors);
        assert_eq!(
            errors,
            vec![(
                "providers.openai.api_key".to_owned(),
                "env var OPENAI_KEY_X is not set".to_owned()
            )]
        );
    }
}
