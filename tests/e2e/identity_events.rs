//! Identity publishes an OCSF event for every integration source change; the events
//! service stores each once, and srctl reads them back.

use std::time::Duration;

use clap::Parser as _;
use serde_json::json;
use sr_testkit::eventually;
use uuid::Uuid;

use crate::common::{EVENTS_TOKEN, Stack};

#[derive(Debug, sqlx::FromRow)]
struct Row {
    uid: Uuid,
    tenant_id: Uuid,
    origin: String,
    class_uid: i32,
    activity_id: i32,
    type_uid: i64,
    message: String,
    observables: serde_json::Value,
    unmapped: serde_json::Value,
}

async fn rows_for(pool: &sqlx::PgPool, correlation: &str) -> Vec<Row> {
    sqlx::query_as(
        "SELECT uid, tenant_id, origin, class_uid, activity_id, type_uid, message, observables, unmapped
         FROM ocsf_events WHERE correlation_uid = $1 ORDER BY time, activity_id",
    )
    .bind(correlation)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn wait_rows(pool: &sqlx::PgPool, correlation: &str, n: usize) -> Vec<Row> {
    eventually(
        &format!("{n} event rows for {correlation}"),
        Duration::from_secs(30),
        || async {
            let rows = rows_for(pool, correlation).await;
            (rows.len() == n).then_some(rows)
        },
    )
    .await
}

async fn srctl(base: &str, args: &[&str]) -> String {
    let mut argv = vec!["srctl", "--events-url", base, "--token", EVENTS_TOKEN];
    argv.extend_from_slice(args);
    srctl::run(srctl::Cli::try_parse_from(argv).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn integration_source_create_update_delete_in_identity_become_one_event_row_each() {
    let stack = Stack::new();
    let (identity, control, _) = stack.identity().await;
    let events = stack.events().await;
    let pool = stack.events_db.pool().await;

    let tenant = control
        .create_tenant(serde_json::from_value(json!({ "slug": "acme" })).unwrap())
        .await
        .unwrap();
    let sync = control
        .list_sync_services("acme")
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.is_platform_sync)
        .unwrap();
    let source = control
        .create_source(
            "acme",
            serde_json::from_value(json!({
                "name": "armis-prod",
                "source_type": "armis",
                "endpoint": "https://armis.example.com",
                "credentials": { "secret_key": "never-in-events" },
                "sync_service_id": sync.id,
                "queries": [{ "label": "all", "query": "in:devices" }],
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let correlation = format!("integration_source:{}", source.id);

    let rows = wait_rows(&pool, &correlation, 1).await;
    let created = &rows[0];
    assert_eq!(created.tenant_id, tenant.id);
    assert_eq!(created.origin, "sr-identity");
    assert_eq!(
        (created.class_uid, created.activity_id, created.type_uid),
        (1008, 1, 100_801)
    );
    assert_eq!(created.message, "Integration source 'armis-prod' created");
    let observed: Vec<(&str, &str)> = created
        .observables
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["name"].as_str().unwrap(), o["value"].as_str().unwrap()))
        .collect();
    let id = source.id.to_string();
    assert!(
        observed.contains(&("resource.uid", id.as_str())),
        "{observed:?}"
    );
    assert!(
        observed.contains(&("resource.name", "armis-prod")),
        "{observed:?}"
    );
    assert_eq!(created.unmapped["resource_type"], "integration_source");
    assert!(!created.unmapped.to_string().contains("never-in-events"));

    control
        .update_source(
            "acme",
            source.id,
            serde_json::from_value(json!({ "endpoint": "https://armis2.example.com" })).unwrap(),
        )
        .await
        .unwrap();
    let rows = wait_rows(&pool, &correlation, 2).await;
    assert_eq!(rows[1].activity_id, 3);
    assert_eq!(rows[1].type_uid, 100_803);

    control.delete_source("acme", source.id).await.unwrap();
    let rows = wait_rows(&pool, &correlation, 3).await;
    assert_eq!(rows[2].activity_id, 4);
    assert_eq!(rows[2].message, "Integration source 'armis-prod' deleted");
    let uids: std::collections::BTreeSet<Uuid> = rows.iter().map(|r| r.uid).collect();
    assert_eq!(uids.len(), 3);

    // srctl reads them back through the events service's API, newest first.
    let out = srctl(
        &events.base,
        &[
            "events",
            "list",
            &tenant.id.to_string(),
            "--class-uid",
            "1008",
        ],
    )
    .await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("TIME"), "{out}");
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[1].contains("deleted") && lines[3].contains("created"),
        "{out}"
    );
    let out = srctl(
        &events.base,
        &[
            "--json",
            "events",
            "list",
            &tenant.id.to_string(),
            "--limit",
            "2",
            "--since",
            "2000-01-01T00:00:00Z",
        ],
    )
    .await;
    let page: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    assert!(page["next_cursor"].is_string());
    let out = srctl(
        &events.base,
        &["events", "quarantine", &tenant.id.to_string()],
    )
    .await;
    assert_eq!(out.lines().count(), 1, "only the header: {out}");

    events.stop().await;
    identity.stop().await;
}
