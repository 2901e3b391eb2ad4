//! `srctl sweep …`: the sweepgen read API (an agent's compiled sweep config, its version and
//! the compiler's warnings).

use clap::Subcommand;
use serde_json::{Value, json};

use crate::{Api, Result, table};

/// `srctl sweep …`
#[derive(Debug, Subcommand)]
pub enum SweepCmd {
    /// Show the sweep config sweepgen compiled for an agent.
    Show {
        /// Tenant id (UUID).
        tenant_id: String,
        /// Agent id (the certificate's component id).
        agent_id: String,
        /// Partition of the agent.
        #[arg(long, default_value = "default")]
        partition: String,
    },
}

const TARGET_COLS: &[&str] = &[
    "network",
    "sweep_modes",
    "ports",
    "source",
    "query_label",
    "device_uid",
];

fn joined(v: &Value) -> String {
    match v {
        Value::Array(items) => items
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Renders the read API's answer: a summary, the targets as a table, then the warnings.
#[must_use]
pub fn render(v: &Value) -> String {
    let sweep = &v["sweep"];
    let summary = [
        ("agent_id", joined(&v["agent_id"])),
        ("tenant_id", joined(&v["tenant_id"])),
        ("partition", joined(&v["partition"])),
        ("config_version", joined(&v["config_version"])),
        ("config_timestamp", joined(&v["config_timestamp"])),
        (
            "sweep_interval",
            format!("{}s", joined(&sweep["sweep_interval_sec"])),
        ),
        ("sweep_modes", joined(&sweep["sweep_modes"])),
        ("ports", joined(&sweep["ports"])),
        ("networks", joined(&sweep["networks"])),
        ("targets", joined(&v["target_count"])),
        (
            "warnings",
            v["warnings"].as_array().map_or(0, Vec::len).to_string(),
        ),
    ];
    let mut out: String = summary
        .iter()
        .map(|(k, val)| format!("{k:<16}  {val}\n"))
        .collect();
    let rows: Vec<Value> = sweep["device_targets"]
        .as_array()
        .map(|targets| {
            targets
                .iter()
                .map(|t| {
                    json!({
                        "network": t["network"],
                        "sweep_modes": t["sweep_modes"],
                        "ports": t["ports"],
                        "source": t["source"],
                        "query_label": t["query_label"],
                        "device_uid": t["metadata"]["device_uid"],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    if !rows.is_empty() {
        out.push('\n');
        out.push_str(&table(&rows, TARGET_COLS));
    }
    if let Some(warnings) = v["warnings"].as_array().filter(|w| !w.is_empty()) {
        out.push_str("\nWARNINGS\n");
        for w in warnings {
            out.push_str(&format!("- {}\n", joined(&w["message"])));
        }
    }
    out
}

/// Runs a sweep command against the sweepgen read API.
///
/// # Errors
/// As [`crate::run`].
pub(crate) async fn run(api: &Api, json_out: bool, cmd: &SweepCmd) -> Result<String> {
    match cmd {
        SweepCmd::Show {
            tenant_id,
            agent_id,
            partition,
        } => {
            let mut url =
                url::Url::parse("http://x/").map_err(|e| crate::CliError::Input(e.to_string()))?;
            url.path_segments_mut()
                .map_err(|()| crate::CliError::Input("bad URL".to_owned()))?
                .extend(["tenants", tenant_id, "agents", agent_id, "sweep"]);
            url.query_pairs_mut().append_pair("partition", partition);
            let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
            let v = api.send(reqwest::Method::GET, &path, None).await?;
            Ok(if json_out {
                serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
            } else {
                render(&v)
            })
        }
    }
}
