//! `srctl devices …`: the canonical device inventory, read from DIRE's read API.

use clap::Subcommand;
use serde_json::Value;

use crate::{Api, Result, show, table};

/// `srctl devices …`
#[derive(Debug, Subcommand)]
pub enum DevicesCmd {
    /// List a tenant's devices in uid order (one page, or every page with `--all`).
    List {
        /// Tenant id (UUID).
        tenant_id: String,
        /// Only this partition.
        #[arg(long)]
        partition: Option<String>,
        /// Only the device holding this IP.
        #[arg(long)]
        ip: Option<String>,
        /// Only devices reported by this source (`armis`, `netbox`, `sweep`, …).
        #[arg(long)]
        source: Option<String>,
        /// Only host names starting with this prefix.
        #[arg(long)]
        hostname: Option<String>,
        /// Page size (1–1000, default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Start after this uid (the `next_cursor` of the previous page).
        #[arg(long)]
        cursor: Option<String>,
        /// Follow `next_cursor` to the last page.
        #[arg(long)]
        all: bool,
    },
    /// Show one device with its identifiers and merge history.
    Get {
        /// Tenant id (UUID).
        tenant_id: String,
        /// Device uid (`sr:…`).
        uid: String,
    },
    /// Count a tenant's devices, in total and per partition.
    Count {
        /// Tenant id (UUID).
        tenant_id: String,
    },
}

const DEVICE_COLS: &[&str] = &[
    "uid",
    "partition",
    "ip",
    "hostname",
    "discovery_sources",
    "is_available",
    "last_seen",
];

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v {
            q.append_pair(k, v);
        }
    }
    let q = q.finish();
    if q.is_empty() { q } else { format!("?{q}") }
}

/// Runs a `devices` command against DIRE.
///
/// # Errors
/// As [`crate::run`].
pub(crate) async fn run(api: &Api, json: bool, cmd: &DevicesCmd) -> Result<String> {
    use reqwest::Method as M;
    match cmd {
        DevicesCmd::List {
            tenant_id,
            partition,
            ip,
            source,
            hostname,
            limit,
            cursor,
            all,
        } => {
            let mut rows: Vec<Value> = Vec::new();
            let mut cursor = cursor.clone();
            loop {
                let path = format!(
                    "/tenants/{tenant_id}/devices{}",
                    query(&[
                        ("partition", partition.clone()),
                        ("ip", ip.clone()),
                        ("source", source.clone()),
                        ("hostname", hostname.clone()),
                        ("limit", limit.map(|l| l.to_string())),
                        ("cursor", cursor.clone()),
                    ])
                );
                let page = api.send(M::GET, &path, None).await?;
                rows.extend(page["devices"].as_array().cloned().unwrap_or_default());
                cursor = page["next_cursor"].as_str().map(str::to_owned);
                if !*all || cursor.is_none() {
                    break;
                }
            }
            if json {
                let body = serde_json::json!({ "devices": rows, "next_cursor": cursor });
                return Ok(show(true, &body, &[]));
            }
            let mut out = table(&rows, DEVICE_COLS);
            if let Some(c) = cursor {
                out.push_str(&format!("next page: --cursor {c}\n"));
            }
            Ok(out)
        }
        DevicesCmd::Get { tenant_id, uid } => {
            let mut device = api
                .send(M::GET, &format!("/tenants/{tenant_id}/devices/{uid}"), None)
                .await?;
            if json {
                return Ok(show(true, &device, &[]));
            }
            let take = |v: &mut Value, k: &str| {
                v.as_object_mut()
                    .and_then(|o| o.remove(k))
                    .and_then(|x| x.as_array().cloned())
                    .unwrap_or_default()
            };
            let identifiers = take(&mut device, "identifiers");
            let merges = take(&mut device, "merges");
            let mut out = show(false, &device, &[]);
            out.push_str("\nIDENTIFIERS\n");
            out.push_str(&table(&identifiers, &["type", "value", "created_at"]));
            out.push_str("\nMERGES\n");
            out.push_str(&table(
                &merges,
                &["from_uid", "to_uid", "merged_at", "reason"],
            ));
            Ok(out)
        }
        DevicesCmd::Count { tenant_id } => {
            let body = api
                .send(M::GET, &format!("/tenants/{tenant_id}/devices/count"), None)
                .await?;
            if json {
                return Ok(show(true, &body, &[]));
            }
            let rows: Vec<Value> = body["partitions"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(p, n)| serde_json::json!({ "partition": p, "devices": n }))
                        .collect()
                })
                .unwrap_or_default();
            Ok(format!(
                "total {}\n{}",
                body["total"],
                table(&rows, &["partition", "devices"])
            ))
        }
    }
}
