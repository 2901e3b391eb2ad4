//! Layered configuration: built-in defaults, then an optional TOML file, then environment
//! variables `SR_<SERVICE>__SECTION__KEY` plus conventional aliases (`DATABASE_URL`, …).
//!
//! Layers are merged as JSON trees and deserialised once, so a service's `Config` with
//! `#[serde(deny_unknown_fields)]` rejects unknown keys from any layer. Every problem found
//! is reported together.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

/// Conventional variables every service understands, mapped to config keys.
pub const STANDARD_ALIASES: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("NATS_URL", "nats.url"),
    ("RUST_LOG", "telemetry.log"),
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "telemetry.otlp_endpoint"),
];

/// Everything wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    /// One line per problem.
    pub problems: Vec<String>,
}

impl ConfigError {
    /// An error with one problem.
    pub fn one(problem: impl Into<String>) -> Self {
        Self {
            problems: vec![problem.into()],
        }
    }
}

/// Builds `C` from its defaults, an optional TOML file and the given environment.
///
/// `aliases` maps whole variable names to dotted keys; they apply only when the key exists
/// in `C` (a service without a database ignores `DATABASE_URL`).
///
/// # Errors
/// [`ConfigError`] listing every unreadable layer, bad value and unknown key.
pub fn load<C: Serialize + DeserializeOwned + Default>(
    service: &str,
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    aliases: &[(&str, &str)],
) -> Result<C, ConfigError> {
    let mut problems = Vec::new();
    let mut tree = serde_json::to_value(C::default())
        .map_err(|e| ConfigError::one(format!("defaults do not serialise: {e}")))?;

    if let Some(path) = file {
        match std::fs::read_to_string(path) {
            Ok(text) => match toml::from_str::<toml::Value>(&text) {
                Ok(parsed) => match serde_json::to_value(parsed) {
                    Ok(layer) => merge(&mut tree, layer),
                    Err(e) => problems.push(format!("{}: {e}", path.display())),
                },
                Err(e) => problems.push(format!("{}: {e}", path.display())),
            },
            Err(e) => problems.push(format!("cannot read config file {}: {e}", path.display())),
        }
    }

    let prefix = format!("SR_{}__", service.to_ascii_uppercase().replace('-', "_"));
    let mut env: Vec<(String, String)> = env.into_iter().collect();
    env.sort();
    // Aliases first, so the service-specific variables win over conventional ones.
    for (name, value) in &env {
        if let Some((_, key)) = aliases.iter().find(|(alias, _)| alias == name) {
            let path: Vec<String> = key.split('.').map(str::to_owned).collect();
            if lookup(&tree, &path).is_some() {
                set_path(&mut tree, &path, value, name, &mut problems);
            }
        }
    }
    for (name, value) in &env {
        if let Some(rest) = name.strip_prefix(&prefix) {
            let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if path.iter().any(String::is_empty) {
                problems.push(format!("{name}: empty key segment"));
                continue;
            }
            set_path(&mut tree, &path, value, name, &mut problems);
        }
    }

    let parsed = serde_json::from_value::<C>(tree);
    match parsed {
        Ok(config) if problems.is_empty() => Ok(config),
        Ok(_) => Err(ConfigError { problems }),
        Err(e) => {
            problems.push(e.to_string());
            Err(ConfigError { problems })
        }
    }
}

/// [`load`] with the process environment and [`STANDARD_ALIASES`]; the only place that reads it.
///
/// # Errors
/// As [`load`].
pub fn load_from_process<C: Serialize + DeserializeOwned + Default>(
    service: &str,
    file: Option<&Path>,
) -> Result<C, ConfigError> {
    load(service, file, std::env::vars(), STANDARD_ALIASES)
}

fn merge(base: &mut Value, layer: Value) {
    match (base, layer) {
        (Value::Object(base), Value::Object(layer)) => {
            for (k, v) in layer {
                match base.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        base.insert(k, v);
                    }
                }
            }
        }
        (base, layer) => *base = layer,
    }
}

fn lookup<'a>(tree: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(tree, |node, key| node.get(key))
}

/// Sets `path` to `raw`, typed after the value already there (string, number, bool, list).
fn set_path(tree: &mut Value, path: &[String], raw: &str, var: &str, problems: &mut Vec<String>) {
    let mut node = tree;
    for key in &path[..path.len() - 1] {
        if !node.is_object() {
            problems.push(format!("{var}: {key} is not a section"));
            return;
        }
        let Value::Object(map) = node else { return };
        node = map
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    let Value::Object(map) = node else {
        problems.push(format!(
            "{var}: parent of {} is not a section",
            path.join(".")
        ));
        return;
    };
    let last = &path[path.len() - 1];
    let typed = match map.get(last) {
        Some(Value::String(_)) => Value::String(raw.to_owned()),
        Some(Value::Bool(_)) => match raw.trim() {
            "true" | "1" | "yes" => Value::Bool(true),
            "false" | "0" | "no" => Value::Bool(false),
            _ => {
                problems.push(format!("{var}: expected true or false, got {raw:?}"));
                return;
            }
        },
        Some(Value::Number(_)) => match serde_json::from_str::<Value>(raw.trim()) {
            Ok(n @ Value::Number(_)) => n,
            _ => {
                problems.push(format!("{var}: expected a number, got {raw:?}"));
                return;
            }
        },
        Some(Value::Array(_)) => match serde_json::from_str::<Value>(raw) {
            Ok(list @ Value::Array(_)) => list,
            _ => Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ),
        },
        _ => serde_json::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.to_owned())),
    };
    map.insert(last.clone(), typed);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Db {
        url: String,
        max_connections: u32,
    }
    impl Default for Db {
        fn default() -> Self {
            Self {
                url: "postgres://default".into(),
                max_connections: 4,
            }
        }
    }
    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Cfg {
        database: Db,
        dev_mode: bool,
        names: Vec<String>,
        token: Option<String>,
    }
    impl Default for Cfg {
        fn default() -> Self {
            Self {
                database: Db::default(),
                dev_mode: false,
                names: vec!["a".into()],
                token: None,
            }
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_then_file_then_env_in_that_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(
            &file,
            "dev_mode = true\n[database]\nurl = \"postgres://file\"\nmax_connections = 9\n",
        )
        .unwrap();
        let cfg: Cfg = load(
            "identity",
            Some(&file),
            env(&[
                ("SR_IDENTITY__DATABASE__MAX_CONNECTIONS", "12"),
                ("SR_IDENTITY__NAMES", "x, y"),
            ]),
            STANDARD_ALIASES,
        )
        .unwrap();
        assert_eq!(cfg.database.url, "postgres://file");
        assert_eq!(cfg.database.max_connections, 12);
        assert!(cfg.dev_mode);
        assert_eq!(cfg.names, vec!["x", "y"]);
    }

    #[test]
    fn conventional_variables_apply_and_prefixed_ones_win() {
        let cfg: Cfg = load(
            "identity",
            None,
            env(&[("DATABASE_URL", "postgres://alias")]),
            STANDARD_ALIASES,
        )
        .unwrap();
        assert_eq!(cfg.database.url, "postgres://alias");
        let cfg: Cfg = load(
            "identity",
            None,
            env(&[
                ("DATABASE_URL", "postgres://alias"),
                ("SR_IDENTITY__DATABASE__URL", "postgres://mine"),
            ]),
            STANDARD_ALIASES,
        )
        .unwrap();
        assert_eq!(cfg.database.url, "postgres://mine");
        // NATS_URL does not exist in this config and is ignored rather than rejected.
        let cfg: Cfg = load(
            "identity",
            None,
            env(&[("NATS_URL", "nats://x")]),
            STANDARD_ALIASES,
        )
        .unwrap();
        assert_eq!(cfg, Cfg::default());
    }

    #[test]
    fn optional_values_accept_strings_from_env() {
        let cfg: Cfg = load("identity", None, env(&[("SR_IDENTITY__TOKEN", "abc")]), &[]).unwrap();
        assert_eq!(cfg.token.as_deref(), Some("abc"));
    }

    #[test]
    fn every_problem_is_reported_together() {
        let err = load::<Cfg>(
            "identity",
            Some(Path::new("/nonexistent/c.toml")),
            env(&[
                ("SR_IDENTITY__DEV_MODE", "maybe"),
                ("SR_IDENTITY__DATABASE__MAX_CONNECTIONS", "many"),
            ]),
            &[],
        )
        .unwrap_err();
        assert_eq!(err.problems.len(), 3, "{err}");
        assert!(err.to_string().contains("cannot read config file"));
        assert!(err.to_string().contains("expected true or false"));
        assert!(err.to_string().contains("expected a number"));
    }

    #[test]
    fn unknown_keys_are_rejected_from_file_and_env() {
        let err = load::<Cfg>(
            "identity",
            None,
            env(&[("SR_IDENTITY__DATABASE__URLL", "x")]),
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `urll`"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "colour = 1\n").unwrap();
        let err = load::<Cfg>("identity", Some(&file), env(&[]), &[]).unwrap_err();
        assert!(err.to_string().contains("unknown field `colour`"), "{err}");
        std::fs::write(&file, "this is = not toml [").unwrap();
        assert!(load::<Cfg>("identity", Some(&file), env(&[]), &[]).is_err());
    }
}
