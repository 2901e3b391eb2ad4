//! `docs/configuration.md` lists every configuration key of every service with its default,
//! taken from the services' own config structs: a key added, renamed or re-defaulted without
//! the reference changing fails here. `SR_PRINT_CONFIG_DEFAULTS=1` prints the rows this test
//! expects (key and default columns) for updating the reference.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// Each service: its heading in the reference, the env prefix, and its defaults.
fn services() -> Vec<(&'static str, BTreeMap<String, String>)> {
    vec![
        ("sr-identity", flat(&sr_identity::Config::default())),
        ("sr-gateway", flat(&sr_gateway::Config::default())),
        ("sr-sync", flat(&sr_sync::Config::default())),
        ("sr-dire", flat(&sr_dire::Config::default())),
        ("sr-sweepgen", flat(&sr_sweepgen::Config::default())),
        ("sr-events", flat(&sr_events::Config::default())),
        ("sr-faker", flat(&sr_faker::Config::default())),
    ]
}

fn flat<C: Serialize>(config: &C) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    walk("", &serde_json::to_value(config).unwrap(), &mut out);
    out
}

fn walk(prefix: &str, v: &Value, out: &mut BTreeMap<String, String>) {
    match v {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                walk(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

/// The `| `key` | `default` |` rows under each `## <service>` heading of the reference.
fn documented(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut section = None;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            section = h
                .split_whitespace()
                .next()
                .map(|s| s.trim_matches('`').to_owned());
            continue;
        }
        let Some(s) = &section else { continue };
        let cells: Vec<&str> = line.split(" | ").collect();
        if cells.len() < 3 || !line.starts_with("| `") {
            continue;
        }
        let key = cells[0].trim_start_matches("| ").trim_matches('`');
        let default = cells[1].trim();
        let default = default
            .strip_prefix("`` ")
            .and_then(|d| d.strip_suffix(" ``"))
            .or_else(|| default.strip_prefix('`').and_then(|d| d.strip_suffix('`')))
            .unwrap_or(default);
        out.entry(s.clone())
            .or_default()
            .insert(key.to_owned(), default.to_owned());
    }
    out
}

/// A default as the reference writes it (backticks doubled around values holding one).
fn cell(default: &str) -> String {
    if default.contains('`') {
        format!("`` {default} ``")
    } else {
        format!("`{default}`")
    }
}

#[test]
fn the_configuration_reference_lists_every_key_with_its_default() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/configuration.md");
    let text = std::fs::read_to_string(path).expect("docs/configuration.md");
    let docs = documented(&text);
    let print = std::env::var_os("SR_PRINT_CONFIG_DEFAULTS").is_some();
    let mut problems = Vec::new();
    for (service, defaults) in services() {
        if print {
            println!("## {service}");
            for (k, v) in &defaults {
                println!("| `{k}` | {} |", cell(v));
            }
        }
        let Some(listed) = docs.get(service) else {
            problems.push(format!("no section `## {service}`"));
            continue;
        };
        for (key, default) in &defaults {
            match listed.get(key) {
                None => problems.push(format!("{service}: `{key}` is not documented")),
                Some(d) if d != default => problems.push(format!(
                    "{service}: `{key}` is documented with default {d}, the code has {default}"
                )),
                Some(_) => {}
            }
        }
        for key in listed.keys() {
            if !defaults.contains_key(key) {
                problems.push(format!(
                    "{service}: `{key}` is documented but no such key exists"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docs/configuration.md drifted:\n{}",
        problems.join("\n")
    );
}
