use chrono::{Duration as Days, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use sr_core::TenantId;
use sr_core::ocsf::Activity;

use crate::common::{Env, event_at};

fn uids(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["uid"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_read_api_pages_newest_first_filters_by_class_and_time_and_isolates_tenants() {
    let env = Env::new();
    let app = env.start().await;
    let js = env.js().await;
    let tenant = TenantId::random();
    let other = TenantId::random();
    let base = Utc::now() - Days::hours(30);
    // 25 events one hour apart; every fifth is of another class (3002, category 3).
    let mut published = Vec::new();
    for i in 0..25 {
        let mut e = event_at(tenant, Activity::Update, base + Days::hours(i));
        if i % 5 == 0 {
            e.class_uid = 3002;
            e.category_uid = 3;
            e.type_uid = 300_203;
        }
        env.publish_event(&js, &e).await;
        published.push(e);
    }
    env.publish_event(&js, &event_at(other, Activity::Create, base))
        .await;
    env.wait_for_count(tenant, 25).await;
    env.wait_for_count(other, 1).await;
    let newest_first: Vec<String> = published
        .iter()
        .rev()
        .map(|e| e.metadata.uid.to_string())
        .collect();

    let path = format!("/api/v1/tenants/{tenant}/events");
    let (s, body) = app.get(&path).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(uids(&body), newest_first, "default limit holds all 25");
    assert!(body["next_cursor"].is_null());
    let first = &body["events"][0];
    assert_eq!(first["tenant_id"], tenant.to_string());
    assert_eq!(first["origin"], "sr-identity");
    assert_eq!(first["event"]["metadata"]["uid"], first["uid"]);
    assert!(first["observables"].is_array());

    // Pages of 10 with the cursor: 10 + 10 + 5, no overlap, same order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = match &cursor {
            Some(c) => format!("{path}?limit=10&cursor={c}"),
            None => format!("{path}?limit=10"),
        };
        let (s, page) = app.get(&q).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        seen.extend(uids(&page));
        pages += 1;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, newest_first);

    let (_, page) = app.get(&format!("{path}?class_uid=3002")).await;
    assert_eq!(uids(&page).len(), 5);
    assert!(
        page["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["class_uid"] == 3002)
    );
    // `since` is inclusive: the last 4 hours hold events 21..=24.
    let since = (base + Days::hours(21)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let (s, page) = app
        .get(&format!("{path}?since={}", url_encode(&since)))
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(uids(&page), newest_first[..4].to_vec());
    let (_, page) = app
        .get(&format!(
            "{path}?class_uid=1008&since={}&limit=2",
            url_encode(&since)
        ))
        .await;
    assert_eq!(uids(&page), newest_first[..2].to_vec());
    assert!(page["next_cursor"].is_string());

    // Another tenant sees only its own event.
    let (_, page) = app.get(&format!("/api/v1/tenants/{other}/events")).await;
    assert_eq!(uids(&page).len(), 1);
    app.stop().await;
}

fn url_encode(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}

#[tokio::test]
async fn the_read_api_requires_the_token_and_rejects_bad_parameters_with_json_errors() {
    let env = Env::new();
    let app = env.start().await;
    let tenant = TenantId::random();
    let path = format!("/api/v1/tenants/{tenant}/events");
    for token in [None, Some("wrong")] {
        let (s, body) = app.get_with(&path, token).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["status"], 401);
        assert_eq!(body["error"]["message"], "missing or invalid bearer token");
    }
    let (s, _) = app
        .get_with(&format!("/api/v1/tenants/{tenant}/quarantine"), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    for (query, needle) in [
        ("?limit=0", "limit"),
        ("?limit=1001", "limit"),
        ("?limit=x", "limit"),
        ("?since=yesterday", "RFC 3339"),
        ("?class_uid=abc", "class_uid"),
        ("?cursor=bogus", "cursor"),
    ] {
        let (s, body) = app.get(&format!("{path}{query}")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(needle),
            "{query}: {body}"
        );
    }
    let (s, body) = app.get("/api/v1/tenants/not-a-uuid/events").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, body) = app
        .get("/api/v1/tenants/00000000-0000-0000-0000-000000000000/events")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("nil"));
    let (s, body) = app.get("/api/v1/nothing").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{body}");
    // Ops endpoints stay open.
    let (s, _) = app.get_with("/healthz", None).await;
    assert_eq!(s, StatusCode::OK);
    let (s, metrics) = app.get_with("/metrics", None).await;
    assert_eq!(s, StatusCode::OK);
    let text = metrics.as_str().unwrap();
    for name in [
        "sr_events_stored_total",
        "sr_events_duplicates_total",
        "sr_events_consumer_pending",
        "sr_events_batch_seconds",
    ] {
        assert!(text.contains(name), "{name} missing from {text}");
    }
    app.stop().await;
}

#[tokio::test]
async fn the_quarantine_of_a_tenant_lists_reason_subject_and_body() {
    let env = Env::new();
    let app = env.start().await;
    let js = env.js().await;
    let tenant = TenantId::random();
    let subject = env.subject(tenant);
    env.publish(&js, &subject, b"not json at all".to_vec(), None)
        .await;
    let pool = env.db.pool().await;
    sr_testkit::eventually("quarantined", crate::common::WAIT, || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM quarantined_events")
                .fetch_one(&pool)
                .await
                .ok()?;
            (n == 1).then_some(())
        }
    })
    .await;
    let (s, body) = app
        .get(&format!("/api/v1/tenants/{tenant}/quarantine?limit=5"))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let q = &body["quarantined"][0];
    assert_eq!(q["kind"], "malformed");
    assert_eq!(q["subject"], subject);
    assert_eq!(q["raw"], "not json at all");
    assert_eq!(q["raw_base64"], "bm90IGpzb24gYXQgYWxs");
    assert!(q["reason"].as_str().unwrap().starts_with("malformed JSON"));
    let (_, body) = app
        .get(&format!(
            "/api/v1/tenants/{}/quarantine",
            TenantId::random()
        ))
        .await;
    assert_eq!(body["quarantined"].as_array().unwrap().len(), 0);
    app.stop().await;
}
