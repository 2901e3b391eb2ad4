//! `srctl events …`: the events service's read API (`--events-url`, same token flags).

use clap::Subcommand;
use serde_json::Value;

use crate::{Api, Result, show};

/// `srctl events …`
#[derive(Debug, Subcommand)]
pub enum EventsCmd {
    /// A tenant's OCSF events, newest first.
    List {
        /// Tenant id (UUID).
        tenant_id: String,
        /// Only this OCSF class (e.g. 1008).
        #[arg(long)]
        class_uid: Option<i32>,
        /// Only events at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Page size (1–1000, default 100).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after a previous page (its `next cursor`).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// A tenant's quarantined (rejected) messages.
    Quarantine {
        /// Tenant id (UUID).
        tenant_id: String,
        /// How many (1–1000, default 100).
        #[arg(long)]
        limit: Option<u32>,
    },
}

const EVENT_COLS: &[&str] = &[
    "time",
    "class_uid",
    "activity_id",
    "severity_id",
    "origin",
    "message",
    "uid",
];
const QUARANTINE_COLS: &[&str] = &["received_at", "kind", "subject", "reason", "id"];

fn path_with_query(path: &str, params: &[(&str, Option<String>)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        if let Some(v) = v {
            query.append_pair(k, v);
        }
    }
    let query = query.finish();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    }
}

/// Runs an `events` command against `api` (whose base is the events service).
pub(crate) async fn run(api: &Api, json_out: bool, cmd: &EventsCmd) -> Result<String> {
    let tenant_path = |t: &str, what: &str| {
        format!(
            "/tenants/{}/{what}",
            url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>()
        )
    };
    Ok(match cmd {
        EventsCmd::List {
            tenant_id,
            class_uid,
            since,
            limit,
            cursor,
        } => {
            let path = path_with_query(
                &tenant_path(tenant_id, "events"),
                &[
                    ("class_uid", class_uid.map(|c| c.to_string())),
                    ("since", since.clone()),
                    ("limit", limit.map(|l| l.to_string())),
                    ("cursor", cursor.clone()),
                ],
            );
            let page = api.send(reqwest::Method::GET, &path, None).await?;
            if json_out {
                show(true, &page, &[])
            } else {
                let mut out = show(false, &page["events"], EVENT_COLS);
                if let Value::String(next) = &page["next_cursor"] {
                    out.push_str(&format!("next cursor: {next}\n"));
                }
                out
            }
        }
        EventsCmd::Quarantine { tenant_id, limit } => {
            let path = path_with_query(
                &tenant_path(tenant_id, "quarantine"),
                &[("limit", limit.map(|l| l.to_string()))],
            );
            let page = api.send(reqwest::Method::GET, &path, None).await?;
            if json_out {
                show(true, &page, &[])
            } else {
                show(false, &page["quarantined"], QUARANTINE_COLS)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded_and_absent_ones_left_out() {
        assert_eq!(
            path_with_query(
                "/tenants/t/events",
                &[
                    ("class_uid", Some("1008".into())),
                    ("since", Some("2026-11-22T10:00:00+01:00".into())),
                    ("limit", None),
                ]
            ),
            "/tenants/t/events?class_uid=1008&since=2026-11-22T10%3A00%3A00%2B01%3A00"
        );
        assert_eq!(
            path_with_query("/tenants/t/quarantine", &[("limit", None)]),
            "/tenants/t/quarantine"
        );
    }
}
