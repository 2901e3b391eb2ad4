use reqwest::StatusCode;
use serde_json::Value;

use crate::common::{Client, start_with};

#[tokio::test]
async fn ops_endpoints_and_status_are_served_on_the_api_port() {
    let faker = start_with(123).await;
    let client = Client::connect(&faker).await;
    client.fetch_all("in:devices", 100).await;
    let base = faker.base_url();
    for path in ["/healthz", "/readyz"] {
        let r = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
    }
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("sr_faker_pages_served_total 2"),
        "{metrics}"
    );
    assert!(metrics.contains("sr_faker_devices_served_total 123"));
    let status: Value = reqwest::get(format!("{base}/faker/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["devices"], 123);
    assert_eq!(status["stats"]["pages_served"], 2);
    assert_eq!(status["churn"]["epoch"], 0);
}

#[tokio::test]
async fn unknown_routes_are_json_404s() {
    let faker = start_with(1).await;
    let r = reqwest::get(format!("{}/api/v1/devices/", faker.base_url()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["success"], false);
}

#[tokio::test]
async fn stopping_a_faker_frees_its_port() {
    let faker = start_with(1).await;
    let addr = faker.addr();
    faker.stop().await.unwrap();
    assert!(
        reqwest::get(format!("http://{addr}/healthz"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn an_invalid_config_is_refused_at_build_with_every_problem() {
    let mut config = sr_faker::Config::local(sr_faker::MAX_DEVICES + 1);
    config.churn.fraction = -0.5;
    match sr_faker::Faker::build(config).await {
        Err(sr_faker::Error::Config(e)) => assert_eq!(e.problems.len(), 2, "{e}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("an invalid config was accepted"),
    }
}
