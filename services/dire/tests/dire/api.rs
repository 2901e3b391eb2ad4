//! The read API and `srctl devices`.

use std::collections::BTreeSet;

use clap::Parser as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sr_core::TenantId;

use crate::common::*;

/// 25 devices: odd ones `cam-N` in `default`, even ones `prn-N` in `p2`; 1–5 also swept.
async fn inventory(env: &Env, t: TenantId) {
    let mut updates: Vec<Value> = (1..=25)
        .map(|i| {
            let (host, partition) = if i % 2 == 1 {
                ("cam", "default")
            } else {
                ("prn", "p2")
            };
            let u = armis(&i.to_string(), &format!("10.1.0.{i}"), 0);
            with(
                with(u, "hostname", json!(format!("{host}-{i:02}"))),
                "partition",
                json!(partition),
            )
        })
        .collect();
    for i in (1..=5).step_by(2) {
        updates.push(json!({"ip": format!("10.1.0.{i}"), "source": "sweep",
            "timestamp": ts(1), "is_available": true}));
    }
    env.ingest(t, &updates).await;
}

#[tokio::test]
async fn read_api_pages_filters_and_requires_a_token() {
    let env = Env::new();
    let app = env.start().await;
    let t = TenantId::random();
    inventory(&env, t).await;
    let base = format!("/api/v1/tenants/{t}/devices");

    for token in [None, Some("wrong")] {
        let (s, body) = app.get_with(&base, token).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["status"], 401, "{body}");
    }
    let (s, _) = app.get_with("/healthz", None).await;
    assert!(s.is_success(), "ops endpoints stay open");

    // Cursor paging visits every device once, in uid order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}?limit=10&cursor={c}"),
            None => format!("{base}?limit=10"),
        };
        let (s, page) = app.get(&path).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        let devices = page["devices"].as_array().unwrap();
        assert!(devices.len() <= 10);
        seen.extend(
            devices
                .iter()
                .map(|d| d["uid"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 25);
    let (_, all) = app.get(&base).await;
    assert_eq!(
        all["devices"].as_array().unwrap().len(),
        25,
        "default limit 100"
    );
    assert_eq!(all["next_cursor"], Value::Null);

    let count = |v: &Value| v["devices"].as_array().unwrap().len();
    let (_, by_ip) = app.get(&format!("{base}?ip=10.1.0.3")).await;
    assert_eq!(count(&by_ip), 1);
    assert_eq!(by_ip["devices"][0]["hostname"], "cam-03");
    let (_, p2) = app.get(&format!("{base}?partition=p2")).await;
    assert_eq!(count(&p2), 12);
    let (_, swept) = app.get(&format!("{base}?source=sweep")).await;
    assert_eq!(count(&swept), 3);
    assert!(
        swept["devices"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["is_available"] == true)
    );
    let (_, cams) = app.get(&format!("{base}?hostname=cam-1")).await;
    assert_eq!(count(&cams), 5, "cam-11 … cam-19: {cams}");
    let (_, none) = app.get(&format!("{base}?partition=p2&hostname=cam")).await;
    assert_eq!(count(&none), 0);

    for bad in ["limit=0", "limit=1001", "limit=x", "ip=10.1"] {
        let (s, body) = app.get(&format!("{base}?{bad}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
    let (s, _) = app.get("/api/v1/tenants/not-a-uuid/devices").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, other) = app
        .get(&format!("/api/v1/tenants/{}/devices", TenantId::random()))
        .await;
    assert_eq!(count(&other), 0, "tenants never see each other's devices");

    let (s, c) = app.get(&format!("{base}/count")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(c["total"], 25);
    assert_eq!(c["partitions"], json!({"default": 13, "p2": 12}));

    let uid = &seen[0];
    let (s, d) = app.get(&format!("{base}/{uid}")).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["uid"], uid.as_str());
    assert_eq!(d["identifiers"][0]["type"], "armis_device_id");
    assert_eq!(d["merges"], json!([]));
    assert_eq!(d["sweep_hints"][0]["source"], "armis");
    let (s, _) = app
        .get(&format!("{base}/sr:00000000-0000-4000-8000-000000000000"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    app.stop().await;
}

/// The page order above is Rust's byte order on any server: every key column compares as
/// bytes (collation "C"), whatever the database's default collation is.
#[tokio::test]
async fn key_columns_compare_as_bytes() {
    let env = Env::new();
    let app = env.start().await;
    let keys = "('devices', 'partition'), ('devices', 'uid'), ('identifiers', 'partition'),
        ('identifiers', 'type'), ('identifiers', 'value'), ('identifiers', 'device_uid'),
        ('merge_audit', 'partition'), ('merge_audit', 'from_uid'), ('merge_audit', 'to_uid'),
        ('scope_epochs', 'partition')";
    let byte_order = env
        .scalar(&format!(
            "SELECT count(*) FROM (VALUES {keys}) AS k(tbl, col)
               JOIN pg_attribute a ON a.attrelid = k.tbl::regclass AND a.attname = k.col
               JOIN pg_collation c ON c.oid = a.attcollation
              WHERE c.collname = 'C'"
        ))
        .await;
    assert_eq!(byte_order, 10);
    app.stop().await;
}

async fn srctl(base: &str, args: &[&str]) -> srctl::Result<String> {
    let mut argv = vec!["srctl", "--dire-url", base, "--token", TOKEN];
    argv.extend_from_slice(args);
    srctl::run(srctl::Cli::try_parse_from(argv).unwrap()).await
}

#[tokio::test]
async fn srctl_lists_gets_and_counts_devices() {
    let env = Env::new();
    let app = env.start().await;
    let t = TenantId::random();
    let tenant = t.to_string();
    inventory(&env, t).await;

    let out = srctl(&app.base, &["devices", "list", &tenant, "--limit", "10"])
        .await
        .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("UID"), "{out}");
    assert_eq!(lines.len(), 12, "header, 10 rows, next page hint: {out}");
    assert!(lines[11].starts_with("next page: --cursor sr:"), "{out}");

    let all = srctl(
        &app.base,
        &[
            "--json", "devices", "list", &tenant, "--limit", "7", "--all",
        ],
    )
    .await
    .unwrap();
    let all: Value = serde_json::from_str(&all).unwrap();
    assert_eq!(all["devices"].as_array().unwrap().len(), 25);

    let filtered = srctl(
        &app.base,
        &[
            "devices",
            "list",
            &tenant,
            "--partition",
            "p2",
            "--hostname",
            "prn-2",
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        filtered.lines().count(),
        1 + 3,
        "prn-20, prn-22, prn-24: {filtered}"
    );

    let uid = all["devices"][0]["uid"].as_str().unwrap();
    let shown = srctl(&app.base, &["devices", "get", &tenant, uid])
        .await
        .unwrap();
    assert!(
        shown.contains("IDENTIFIERS") && shown.contains("armis_device_id"),
        "{shown}"
    );

    let counted = srctl(&app.base, &["devices", "count", &tenant])
        .await
        .unwrap();
    assert!(counted.starts_with("total 25"), "{counted}");
    assert!(counted.contains("p2"), "{counted}");

    let err = srctl(&app.base, &["devices", "count", "not-a-uuid"])
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("400"), "{err}");
    app.stop().await;
}
