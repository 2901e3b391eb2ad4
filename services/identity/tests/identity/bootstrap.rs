use reqwest::StatusCode;
use sr_identity::App;

use crate::common::Env;

#[tokio::test]
async fn platform_tenant_id_is_created_once_and_reused_after_restart() {
    let env = Env::new();
    let app = env.start().await;
    let (s, first) = app.get("/api/v1/platform").await;
    assert_eq!(s, StatusCode::OK);
    let id = first["platform_tenant_id"].as_str().unwrap().to_owned();
    assert_ne!(id, "00000000-0000-0000-0000-000000000000");
    assert_eq!(first["slug"], "platform");
    assert_eq!(first["trust_domain"], "serviceradar.local");
    let sync_cert = std::fs::read_to_string(env.out("platform-sync/cert.pem")).unwrap();
    app.stop().await;

    let app = env.start().await;
    let (_, second) = app.get("/api/v1/platform").await;
    assert_eq!(second["platform_tenant_id"], id.as_str());
    let (_, tenants) = app.get("/api/v1/tenants").await;
    let platforms: Vec<_> = tenants
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["is_platform"] == true)
        .collect();
    assert_eq!(platforms.len(), 1);
    assert_eq!(platforms[0]["slug"], "platform");
    // The platform sync certificate is still valid, so it is kept as it was.
    assert_eq!(
        std::fs::read_to_string(env.out("platform-sync/cert.pem")).unwrap(),
        sync_cert
    );
    app.stop().await;
}

#[tokio::test]
async fn nil_platform_tenant_id_is_rejected_at_startup() {
    let env = Env::new();
    let mut cfg = env.config();
    cfg.bootstrap.platform_tenant_id = "00000000-0000-0000-0000-000000000000".into();
    let err = App::build(cfg).await.err().expect("startup must fail");
    assert!(err.to_string().contains("nil UUID"), "{err}");
}

#[tokio::test]
async fn configured_platform_tenant_id_is_used_and_cannot_change_later() {
    let env = Env::new();
    let mut cfg = env.config();
    let id = uuid::Uuid::new_v4().to_string();
    cfg.bootstrap.platform_tenant_id.clone_from(&id);
    let app = env.start_with(cfg.clone()).await;
    let (_, p) = app.get("/api/v1/platform").await;
    assert_eq!(p["platform_tenant_id"], id.as_str());
    app.stop().await;

    cfg.bootstrap.platform_tenant_id = uuid::Uuid::new_v4().to_string();
    let err = App::build(cfg)
        .await
        .err()
        .expect("a different id must be refused");
    assert!(err.to_string().contains("was created as"), "{err}");
}

#[tokio::test]
async fn changing_the_reserved_slug_after_bootstrap_is_refused() {
    let env = Env::new();
    env.start().await.stop().await;
    let mut cfg = env.config();
    cfg.bootstrap.platform_slug = "root".into();
    let err = App::build(cfg)
        .await
        .err()
        .expect("slug change must be refused");
    assert!(err.to_string().contains("platform_slug"), "{err}");
}

#[tokio::test]
async fn a_second_platform_tenant_cannot_exist() {
    let env = Env::new();
    let app = env.start().await;
    let pool = env.db.pool().await;
    let err = sqlx::query(
        "INSERT INTO tenants (id, slug, name, is_platform) VALUES ($1, 'other', 'x', TRUE)",
    )
    .bind(uuid::Uuid::new_v4())
    .execute(&pool)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("tenants_one_platform"), "{err}");
    let err = sqlx::query("INSERT INTO tenants (id, slug, name) VALUES ('00000000-0000-0000-0000-000000000000', 'zero', 'x')")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("check"), "{err}");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_first_starts_bootstrap_one_platform() {
    let env = Env::new();
    let (a, b) = tokio::join!(App::build(env.config()), App::build(env.config()));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.control().platform.tenant_id,
        b.control().platform.tenant_id
    );
    let pool = env.db.pool().await;
    let (tenants, roots, syncs): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM tenants), (SELECT count(*) FROM certificate_authorities WHERE kind = 'root'),
                (SELECT count(*) FROM sync_services WHERE is_platform_sync)",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((tenants, roots, syncs), (1, 1, 1));
}

#[tokio::test]
async fn without_an_encryption_key_outside_dev_mode_startup_fails() {
    let env = Env::new();
    let mut cfg = env.config();
    cfg.secrets.dev_mode = false;
    let err = App::build(cfg).await.err().expect("must fail");
    assert!(err.to_string().contains("encryption_key"), "{err}");
}

#[tokio::test]
async fn restarting_with_a_different_encryption_key_fails_clearly() {
    let env = Env::new();
    env.start().await.stop().await;
    let mut cfg = env.config();
    cfg.secrets.encryption_key = sr_identity::seal::Sealer::generate_key();
    let err = App::build(cfg).await.err().expect("must fail");
    assert!(err.to_string().contains("encryption key"), "{err}");
}

#[tokio::test]
async fn ops_endpoints_answer() {
    let env = Env::new();
    let app = env.start().await;
    let client = reqwest::Client::new();
    for (path, want) in [
        ("/healthz", "ok"),
        ("/readyz", "\"ready\":true"),
        ("/metrics", "sr_identity_events_published"),
    ] {
        let resp = client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let body = resp.text().await.unwrap();
        assert!(body.contains(want), "{path}: {body}");
    }
    app.stop().await;
}
