//! A typed view over the manifest's `[config]` table.
//!
//! The host hands every value over as a string (`keep_last_turns = 2` arrives as `"2"`,
//! `enabled = true` as `"true"`). [`Config`] looks keys up and parses them; a missing key is
//! `None` / the default, a malformed value is a [`ConfigError`] naming the key.

use std::fmt;
use std::str::FromStr;

/// A value in `[config]` that does not parse as the type the policy expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The config key.
    pub key: String,
    /// The value as received.
    pub value: String,
    /// What was expected, e.g. "an unsigned 32-bit integer".
    pub expected: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config `{}` = {:?}: expected {}",
            self.key, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

/// Borrowed view over `ctx.config` (`list<tuple<string, string>>`).
#[derive(Debug, Clone, Copy)]
pub struct Config<'a> {
    entries: &'a [(String, String)],
}

impl<'a> Config<'a> {
    /// Wrap the `config` list of a request context.
    pub fn new(entries: &'a [(String, String)]) -> Self {
        Self { entries }
    }

    /// The raw string for `key` (the last one wins if a key repeats); `None` when absent.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// The trimmed string for `key`, `None` when absent or blank.
    pub fn string(&self, key: &str) -> Option<&'a str> {
        self.get(key).map(str::trim).filter(|s| !s.is_empty())
    }

    /// The trimmed string for `key`, or `default` when absent or blank.
    pub fn str_or(&self, key: &str, default: &'a str) -> &'a str {
        self.string(key).unwrap_or(default)
    }

    fn parse<T: FromStr>(
        &self,
        key: &str,
        expected: &'static str,
    ) -> Result<Option<T>, ConfigError> {
        match self.string(key) {
            None => Ok(None),
            Some(v) => v.parse::<T>().map(Some).map_err(|_| ConfigError {
                key: key.to_owned(),
                value: v.to_owned(),
                expected,
            }),
        }
    }

    /// `key` as a `u32`; `Ok(None)` when absent.
    pub fn u32(&self, key: &str) -> Result<Option<u32>, ConfigError> {
        self.parse(key, "an unsigned 32-bit integer")
    }

    /// `key` as a `u32`, or `default` when absent.
    pub fn u32_or(&self, key: &str, default: u32) -> Result<u32, ConfigError> {
        self.u32(key).map(|v| v.unwrap_or(default))
    }

    /// `key` as a `u64`; `Ok(None)` when absent.
    pub fn u64(&self, key: &str) -> Result<Option<u64>, ConfigError> {
        self.parse(key, "an unsigned 64-bit integer")
    }

    /// `key` as a `u64`, or `default` when absent.
    pub fn u64_or(&self, key: &str, default: u64) -> Result<u64, ConfigError> {
        self.u64(key).map(|v| v.unwrap_or(default))
    }

    /// `key` as a finite `f64`; `Ok(None)` when absent.
    pub fn f64(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        const EXPECTED: &str = "a finite number";
        match self.parse::<f64>(key, EXPECTED)? {
            Some(v) if !v.is_finite() => Err(ConfigError {
                key: key.to_owned(),
                value: self.get(key).unwrap_or_default().to_owned(),
                expected: EXPECTED,
            }),
            v => Ok(v),
        }
    }

    /// `key` as a finite `f64`, or `default` when absent.
    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64, ConfigError> {
        self.f64(key).map(|v| v.unwrap_or(default))
    }

    /// `key` as a boolean (`true/false`, `yes/no`, `on/off`, `1/0`, any case); `Ok(None)` when
    /// absent.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.string(key) {
            None => Ok(None),
            Some(v) => parse_bool(v).map(Some).ok_or_else(|| ConfigError {
                key: key.to_owned(),
                value: v.to_owned(),
                expected: "a boolean (true/false)",
            }),
        }
    }

    /// `key` as a boolean, or `default` when absent.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        self.bool(key).map(|v| v.unwrap_or(default))
    }

    /// `key` as a comma-separated list: items trimmed, empty items skipped; empty when absent.
    pub fn list(&self, key: &str) -> Vec<&'a str> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Iterate over all `(key, value)` pairs as received.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Parse a boolean the way [`Config::bool`] does (also handy for header values).
pub fn parse_bool(v: &str) -> Option<bool> {
    let v = v.trim();
    const TRUE: [&str; 4] = ["true", "yes", "on", "1"];
    const FALSE: [&str; 4] = ["false", "no", "off", "0"];
    if TRUE.iter().any(|t| v.eq_ignore_ascii_case(t)) {
        Some(true)
    } else if FALSE.iter().any(|f| v.eq_ignore_ascii_case(f)) {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn entries() -> Vec<(String, String)> {
        [
            ("n", "42"),
            ("neg", "-1"),
            ("f", "0.25"),
            ("inf", "inf"),
            ("b", "Yes"),
            ("bad", "maybe"),
            ("s", "  hello "),
            ("blank", "   "),
            ("l", "a, B ,,c"),
            ("n", "43"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    #[test]
    fn strings() {
        let e = entries();
        let c = Config::new(&e);
        assert_eq!(c.get("s"), Some("  hello "));
        assert_eq!(c.string("s"), Some("hello"));
        assert_eq!(c.string("blank"), None);
        assert_eq!(c.str_or("missing", "d"), "d");
        assert!(c.contains("blank"));
        assert!(!c.contains("missing"));
        assert_eq!(c.iter().count(), 10);
    }

    #[test]
    fn numbers() {
        let e = entries();
        let c = Config::new(&e);
        assert_eq!(c.u32("n"), Ok(Some(43)), "last one wins");
        assert_eq!(c.u32("missing"), Ok(None));
        assert_eq!(c.u32_or("missing", 7), Ok(7));
        assert_eq!(c.u64_or("n", 7), Ok(43));
        let err = c.u32("neg").unwrap_err();
        assert_eq!(err.key, "neg");
        assert!(err.to_string().contains("unsigned"));
        assert_eq!(c.f64("f"), Ok(Some(0.25)));
        assert_eq!(c.f64_or("n", 1.0), Ok(43.0));
        assert!(c.f64("inf").is_err());
        assert!(c.f64("s").is_err());
    }

    #[test]
    fn bools_and_lists() {
        let e = entries();
        let c = Config::new(&e);
        assert_eq!(c.bool("b"), Ok(Some(true)));
        assert!(c.bool("bad").is_err());
        assert_eq!(c.bool_or("missing", false), Ok(false));
        assert_eq!(c.list("l"), vec!["a", "B", "c"]);
        assert!(c.list("missing").is_empty());
        assert_eq!(parse_bool("OFF"), Some(false));
        assert_eq!(parse_bool("2"), None);
    }
}
