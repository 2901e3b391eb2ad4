use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Env, armis_source};

#[tokio::test]
async fn tenants_are_created_listed_and_validated() {
    let env = Env::new();
    let app = env.start().await;
    let (s, t) = app
        .post("/api/v1/tenants", json!({ "slug": "acme", "name": "Acme" }))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    assert_eq!(
        (t["slug"].as_str(), t["is_platform"].as_bool()),
        (Some("acme"), Some(false))
    );
    for (slug, status, needle) in [
        ("ACME", StatusCode::UNPROCESSABLE_ENTITY, "invalid slug"),
        (
            "platform",
            StatusCode::UNPROCESSABLE_ENTITY,
            "slug is reserved for the platform tenant",
        ),
        (
            "Platform",
            StatusCode::UNPROCESSABLE_ENTITY,
            "slug is reserved for the platform tenant",
        ),
        ("a_b", StatusCode::UNPROCESSABLE_ENTITY, "invalid slug"),
        ("", StatusCode::UNPROCESSABLE_ENTITY, "invalid slug"),
        ("acme", StatusCode::CONFLICT, "already exists"),
    ] {
        let (s, b) = app.post("/api/v1/tenants", json!({ "slug": slug })).await;
        assert_eq!(s, status, "{slug}: {b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(needle),
            "{slug}: {b}"
        );
        assert_eq!(b["error"]["status"], status.as_u16());
    }
    // Case-insensitive uniqueness at the database level too.
    let err = sqlx::query("INSERT INTO tenants (id, slug, name) VALUES ($1, 'acme', 'dup')")
        .bind(uuid::Uuid::new_v4())
        .execute(&env.db.pool().await)
        .await;
    assert!(err.is_err());
    let (_, list) = app.get("/api/v1/tenants").await;
    let slugs: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["slug"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, vec!["platform", "acme"]);
    app.stop().await;
}

#[tokio::test]
async fn requests_without_the_admin_token_or_with_bad_bodies_get_json_errors() {
    let env = Env::new();
    let app = env.start().await;
    let client = reqwest::Client::new();
    let resp = client
        .get(format!("{}/api/v1/tenants", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["status"], 401);
    let resp = client
        .get(format!("{}/api/v1/tenants", app.base))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    let resp = client
        .post(format!("{}/api/v1/tenants", app.base))
        .bearer_auth(&app.token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"]["message"].as_str().is_some(), "{body}");

    let (s, b) = app
        .post("/api/v1/tenants", json!({ "slug": "x", "colour": "red" }))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("colour"),
        "{b}"
    );
    let (s, b) = app.get("/api/v1/tenants/nope/integration-sources").await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    let (s, _) = app.get("/api/v1/no-such-route").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = app
        .get("/api/v1/tenants/platform/integration-sources/not-a-uuid")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    app.stop().await;
}

#[tokio::test]
async fn integration_source_validation_returns_the_right_status() {
    let env = Env::new();
    let app = env.start().await;
    app.tenant("acme").await;
    app.tenant("globex").await;
    let platform_sync = app.platform_sync_id("acme").await;
    let globex_sync = app.edge_sync("globex", "gx-sync").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = "/api/v1/tenants/acme/integration-sources";

    let (s, created) = app
        .post(path, armis_source("armis-main", &platform_sync))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["discovery_interval"], "2h");
    assert_eq!(created["poll_interval"], "5m");
    assert_eq!(created["sweep_interval"], "1h");
    assert_eq!(created["page_size"], 100);
    assert_eq!(created["partition"], "default");

    let cases: Vec<(&str, serde_json::Value, StatusCode, &str)> = vec![
        (
            "missing sync",
            {
                let mut b = armis_source("a1", &platform_sync);
                b.as_object_mut().unwrap().remove("sync_service_id");
                b
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "sync_service_id is required",
        ),
        (
            "foreign sync",
            armis_source("a2", &globex_sync),
            StatusCode::UNPROCESSABLE_ENTITY,
            "neither the platform sync nor a sync service of tenant acme",
        ),
        (
            "unknown sync",
            armis_source("a3", &uuid::Uuid::new_v4().to_string()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "neither the platform sync",
        ),
        (
            "duplicate name",
            armis_source("armis-main", &platform_sync),
            StatusCode::CONFLICT,
            "already has an integration source named",
        ),
        (
            "bad endpoint",
            {
                let mut b = armis_source("a4", &platform_sync);
                b["endpoint"] = json!("ftp://x");
                b
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "endpoint must be an http(s) URL",
        ),
        (
            "not a url",
            {
                let mut b = armis_source("a5", &platform_sync);
                b["endpoint"] = json!("armis");
                b
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "endpoint must be an http(s) URL",
        ),
        (
            "bad interval",
            {
                let mut b = armis_source("a6", &platform_sync);
                b["poll_interval"] = json!("5x");
                b
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "poll_interval",
        ),
        (
            "interval too short",
            {
                let mut b = armis_source("a7", &platform_sync);
                b["discovery_interval"] = json!("10s");
                b
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "discovery_interval must be between",
        ),
        (
            "negative interval",
            {
                let mut b = armis_source("a8", &platform_sync);
                b["sweep_interval"] = json!(-5);
                b
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "sweep_interval",
        ),
        (
            "bad cidr",
            {
                let mut b = armis_source("a9", &platform_sync);
                b["network_blacklist"] = json!(["10.0.0.0/33"]);
                b
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "not a CIDR",
        ),
        (
            "bad type",
            {
                let mut b = armis_source("a10", &platform_sync);
                b["source_type"] = json!("snmp");
                b
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "armis or netbox",
        ),
        (
            "no queries",
            {
                let mut b = armis_source("a11", &platform_sync);
                b["queries"] = json!([]);
                b
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "at least one query",
        ),
        (
            "bad mode",
            {
                let mut b = armis_source("a12", &platform_sync);
                b["queries"][0]["sweep_modes"] = json!(["udp"]);
                b
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown sweep mode",
        ),
        (
            "page size",
            {
                let mut b = armis_source("a13", &platform_sync);
                b["page_size"] = json!(5000);
                b
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "page_size",
        ),
        (
            "bad partition",
            {
                let mut b = armis_source("a14", &platform_sync);
                b["partition"] = json!("a b");
                b
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "partition",
        ),
        (
            "unknown field",
            {
                let mut b = armis_source("a15", &platform_sync);
                b["colour"] = json!(1);
                b
            },
            StatusCode::UNPROCESSABLE_ENTITY,
            "colour",
        ),
    ];
    for (what, body, status, needle) in cases {
        let (s, b) = app.post(path, body).await;
        assert_eq!(s, status, "{what}: {b}");
        assert!(
            b["error"]["message"].as_str().unwrap().contains(needle),
            "{what}: {b}"
        );
    }
    // Intervals in plain seconds and NetBox without queries are fine.
    let (s, b) = app
        .post(
            path,
            json!({ "name": "nb", "source_type": "netbox", "endpoint": "http://netbox.local:8000", "sync_service_id": platform_sync,
                    "credentials": { "api_token": "t" }, "poll_interval": 600, "network_blacklist": ["10.1.2.3/8"] }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["poll_interval"], "10m");
    assert_eq!(b["network_blacklist"], json!(["10.0.0.0/8"]));

    let (_, list) = app.get(path).await;
    assert_eq!(
        list.as_array().unwrap().len(),
        2,
        "failed creations stored nothing"
    );
    app.stop().await;
}

#[tokio::test]
async fn credentials_are_stored_encrypted_and_never_returned() {
    let env = Env::new();
    let app = env.start().await;
    app.tenant("acme").await;
    let sync = app.platform_sync_id("acme").await;
    let (s, created) = app
        .post(
            "/api/v1/tenants/acme/integration-sources",
            armis_source("armis", &sync),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(!created.to_string().contains("super-secret-value-123"));
    assert_eq!(created["credential_keys"], json!(["secret_key"]));
    let id = created["id"].as_str().unwrap();
    let (_, fetched) = app
        .get(&format!("/api/v1/tenants/acme/integration-sources/{id}"))
        .await;
    assert!(!fetched.to_string().contains("super-secret-value-123"));
    let (_, list) = app.get("/api/v1/tenants/acme/integration-sources").await;
    assert!(!list.to_string().contains("super-secret-value-123"));

    let raw: Vec<u8> = sqlx::query_scalar("SELECT credentials_sealed FROM integration_sources")
        .fetch_one(&env.db.pool().await)
        .await
        .unwrap();
    assert!(raw.len() > 28);
    assert!(
        !raw.windows(b"super-secret".len())
            .any(|w| w == b"super-secret"),
        "secret visible in the raw column"
    );
    let dump: String = sqlx::query_scalar("SELECT row_to_json(s)::text FROM integration_sources s")
        .fetch_one(&env.db.pool().await)
        .await
        .unwrap();
    assert!(!dump.contains("super-secret"), "{dump}");
    let key_rows: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT key_sealed FROM certificate_authorities")
            .fetch_all(&env.db.pool().await)
            .await
            .unwrap();
    assert!(
        key_rows
            .iter()
            .all(|k| !k.windows(11).any(|w| w == b"PRIVATE KEY")),
        "CA keys stored in clear"
    );
    app.stop().await;
}

#[tokio::test]
async fn sources_are_updated_enabled_disabled_and_deleted() {
    let env = Env::new();
    let app = env.start().await;
    app.tenant("acme").await;
    let sync = app.platform_sync_id("acme").await;
    let (_, created) = app
        .post(
            "/api/v1/tenants/acme/integration-sources",
            armis_source("armis", &sync),
        )
        .await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/api/v1/tenants/acme/integration-sources/{id}");
    let (s, b) = app
        .patch(
            &path,
            json!({ "page_size": 500, "discovery_interval": "1d" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["page_size"].as_i64(), b["discovery_interval"].as_str()),
        (Some(500), Some("1d"))
    );
    assert_eq!(b["name"], "armis", "untouched fields are kept");
    let (s, b) = app
        .patch(&path, json!({ "discovery_interval": "1y" }))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let (_, b) = app.patch(&path, json!({ "enabled": false })).await;
    assert_eq!(b["enabled"], false);
    let (s, _) = app.delete(&path).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app.get(&path).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app.delete(&path).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A source of one tenant is invisible through another tenant's path.
    app.tenant("globex").await;
    let (_, other) = app
        .post(
            "/api/v1/tenants/acme/integration-sources",
            armis_source("armis2", &sync),
        )
        .await;
    let (s, _) = app
        .get(&format!(
            "/api/v1/tenants/globex/integration-sources/{}",
            other["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    app.stop().await;
}

#[tokio::test]
async fn source_creation_fails_clearly_when_no_sync_service_is_usable() {
    let env = Env::new();
    let mut cfg = env.config();
    cfg.bootstrap.platform_sync = false;
    let app = env.start_with(cfg).await;
    app.tenant("acme").await;
    let (_, syncs) = app.get("/api/v1/tenants/acme/sync-services").await;
    assert_eq!(syncs, json!([]));
    let (s, b) = app
        .post(
            "/api/v1/tenants/acme/integration-sources",
            armis_source("armis", &uuid::Uuid::new_v4().to_string()),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no sync service is available"),
        "{b}"
    );
    app.stop().await;
}
