//! `[log]`: what the request log keeps beyond its fixed columns: the metadata tags
//! (`tags = ["team", "project"]`) a row carries, so spend can be reported per team.
//!
//! A tag comes from the request's `x-switchyard-tags: team=a, project=b` header (every door),
//! or from its body's `metadata` object of strings (`/v1/chat/completions`, `/v1/responses`,
//! `/ai/route`).
//! Only the names configured here are kept; others are ignored, unvalidated, and never
//! stored, so a client cannot grow the log or the report's groups with names of its own. A
//! kept value is checked (a 400 names the header or `metadata.NAME`): 1 to 64 letters,
//! digits, spaces or `._:/@+-`, starting with a letter or digit, so every value can be
//! written in the header, and none can start a spreadsheet formula in the CSV report.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

/// At most this many tag names in `[log] tags`, so a row holds at most this many tags.
pub const MAX_TAGS: usize = 8;
/// The longest tag name.
pub const TAG_NAME_MAX: usize = 32;
/// The longest tag value, in characters.
pub const TAG_VALUE_MAX: usize = 64;
/// The most `name=value` items one `x-switchyard-tags` header may list.
const HEADER_ITEMS_MAX: usize = 32;

/// `[log]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// Metadata tag names stored with each row (default none: nothing is stored).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A tag name: 1 to 32 lower-case ASCII letters, digits, `_` or `-`, starting with a letter.
pub fn valid_tag_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= TAG_NAME_MAX
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// A tag value (see the module docs); `Err` says what is wrong.
pub fn check_tag_value(value: &str) -> Result<(), String> {
    let mut chars = value.chars();
    let ok = chars.next().is_some_and(char::is_alphanumeric)
        && value.chars().count() <= TAG_VALUE_MAX
        && chars.all(|c| c.is_alphanumeric() || " ._:/@+-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "a tag value is 1 to {TAG_VALUE_MAX} letters, digits, spaces or ._:/@+- characters, \
             starting with a letter or digit"
        ))
    }
}

impl LogConfig {
    /// Errors as `(path, message)`.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        if self.tags.len() > MAX_TAGS {
            errors.push((
                "log.tags".to_owned(),
                format!("at most {MAX_TAGS} tag names"),
            ));
        }
        for (i, name) in self.tags.iter().enumerate() {
            if !valid_tag_name(name) {
                errors.push((
                    format!("log.tags[{i}]"),
                    format!(
                        "'{name}' is not a tag name: 1 to {TAG_NAME_MAX} lower-case letters, \
                         digits, _ or -, starting with a letter"
                    ),
                ));
            } else if self.tags[..i].contains(name) {
                errors.push((
                    format!("log.tags[{i}]"),
                    format!("'{name}' is listed twice"),
                ));
            }
        }
        errors
    }

    pub fn allows(&self, name: &str) -> bool {
        self.tags.iter().any(|t| t == name)
    }

    /// The allowed tags of one `x-switchyard-tags` value (`team=a, project=b`). `Err` is the
    /// message of a 400 naming the header.
    pub fn header_tags(&self, value: &[u8]) -> Result<BTreeMap<String, String>, String> {
        let mut out = BTreeMap::new();
        if self.tags.is_empty() {
            return Ok(out);
        }
        let text = std::str::from_utf8(value).map_err(|_| "is not UTF-8".to_owned())?;
        let items: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .collect();
        if items.len() > HEADER_ITEMS_MAX {
            return Err(format!("at most {HEADER_ITEMS_MAX} name=value items"));
        }
        for item in items {
            let Some((name, value)) = item.split_once('=') else {
                return Err(format!("'{}' is not name=value", clip(item)));
            };
            let (name, value) = (name.trim(), value.trim());
            if !self.allows(name) {
                continue;
            }
            check_tag_value(value).map_err(|m| format!("{name}: {m}"))?;
            if out
                .insert(name.to_owned(), value.to_owned())
                .is_some_and(|old| old != value)
            {
                return Err(format!("two values for the tag '{name}'"));
            }
        }
        Ok(out)
    }

    /// The allowed tags of a body's `metadata` object. `Err` is `(param, message)` for a 400
    /// (`metadata` or `metadata.NAME`).
    pub fn metadata_tags(
        &self,
        metadata: Option<&Value>,
    ) -> Result<BTreeMap<String, String>, (String, String)> {
        let mut out = BTreeMap::new();
        let Some(metadata) = metadata.filter(|_| !self.tags.is_empty()) else {
            return Ok(out);
        };
        let Some(object) = metadata.as_object() else {
            return Err(("metadata".into(), "must be an object of strings".into()));
        };
        for (name, value) in allowed(self, object) {
            let param = format!("metadata.{name}");
            let Some(text) = value.as_str() else {
                return Err((param, "a tag value must be a string".into()));
            };
            check_tag_value(text).map_err(|m| (param, m))?;
            out.insert(name.to_owned(), text.to_owned());
        }
        Ok(out)
    }
}

fn allowed<'a>(
    cfg: &'a LogConfig,
    object: &'a Map<String, Value>,
) -> impl Iterator<Item = (&'a String, &'a Value)> {
    object.iter().filter(|(k, _)| cfg.allows(k))
}

/// The start of a client's text, for an error message.
fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> LogConfig {
        LogConfig {
            tags: vec!["team".into(), "project".into()],
        }
    }

    #[test]
    fn names_are_checked_with_their_path() {
        let bad = LogConfig {
            tags: vec!["team".into(), "Team".into(), "team".into(), "a b".into()],
        };
        let paths: Vec<String> = bad.validate().into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["log.tags[1]", "log.tags[2]", "log.tags[3]"]);
        let many = LogConfig {
            tags: (0..9).map(|i| format!("t{i}")).collect(),
        };
        assert_eq!(many.validate()[0].0, "log.tags");
        assert!(cfg().validate().is_empty());
        assert!(!valid_tag_name(&"a".repeat(33)) && valid_tag_name(&"a".repeat(32)));
    }

    #[test]
    fn a_bad_log_section_is_a_config_error_with_its_path() {
        let vars = crate::config::Vars::only(&[]);
        let paths = |text: &str| -> Vec<String> {
            match crate::config::load_str(text, &vars) {
                Ok(_) => Vec::new(),
                // (A config without models is an error of its own: not this test's.)
                Err(e) => {
                    e.0.into_iter()
                        .map(|e| e.path)
                        .filter(|p| p.starts_with("log"))
                        .collect()
                }
            }
        };
        assert_eq!(
            paths("[log]\ntags = [\"team\", \"Team\"]\n"),
            ["log.tags[1]"]
        );
        assert_eq!(paths("[log]\ntag = [\"team\"]\n"), ["log.tag"]);
        assert_eq!(paths("[log]\ntags = \"team\"\n"), ["log.tags"]);
        assert!(paths("[log]\ntags = [\"team\"]\n").is_empty());
    }

    #[test]
    fn header_keeps_allowed_names_and_refuses_bad_values() {
        let tags = cfg()
            .header_tags(b" team = red , other=whatever!!, project=p-1,")
            .unwrap();
        assert_eq!(
            tags,
            BTreeMap::from([
                ("project".to_owned(), "p-1".to_owned()),
                ("team".to_owned(), "red".to_owned()),
            ])
        );
        for bad in [
            &b"team"[..],
            b"team=",
            b"team==x",
            b"team=-x",
            b"team=\x01",
            b"team=a,team=b",
            b"\xff",
        ] {
            assert!(cfg().header_tags(bad).is_err(), "{bad:?}");
        }
        let long = format!("team={}", "x".repeat(65));
        assert!(cfg().header_tags(long.as_bytes()).is_err());
        let many = "other=1,".repeat(33);
        assert!(cfg().header_tags(many.as_bytes()).is_err());
        // Nothing allowed: nothing parsed, nothing refused.
        assert!(
            LogConfig::default()
                .header_tags(b"\xff garbage")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn metadata_keeps_allowed_string_values() {
        let m = json!({"team": "Équipe 7", "task": "x", "user": 5});
        assert_eq!(
            cfg().metadata_tags(Some(&m)).unwrap(),
            BTreeMap::from([("team".to_owned(), "Équipe 7".to_owned())])
        );
        let err = cfg()
            .metadata_tags(Some(&json!({"project": 5})))
            .unwrap_err();
        assert_eq!(err.0, "metadata.project");
        let err = cfg()
            .metadata_tags(Some(&json!({"team": "=cmd()"})))
            .unwrap_err();
        assert_eq!(err.0, "metadata.team");
        assert_eq!(
            cfg().metadata_tags(Some(&json!("x"))).unwrap_err().0,
            "metadata"
        );
        assert!(cfg().metadata_tags(None).unwrap().is_empty());
    }
}
