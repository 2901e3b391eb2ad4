use std::collections::HashSet;

use reqwest::StatusCode;
use sr_faker::Query;

use crate::common::{Client, assert_each_id_once, ids, start_with};

#[tokio::test]
async fn a_type_filter_returns_exactly_the_devices_of_that_type_in_id_order() {
    let faker = start_with(5003).await;
    let client = Client::connect(&faker).await;
    let (cameras, _) = client.fetch_all("in:devices type:Camera", 100).await;
    let want: Vec<u64> = (0..5003)
        .filter(|&i| faker.device(i).unwrap().device_type == "Camera")
        .map(|i| i + 1)
        .collect();
    assert!(want.len() > 200 && want.len() < 800, "{}", want.len());
    assert_eq!(ids(&cameras), want);
    assert!(cameras.iter().all(|d| d.name.contains("-CAM-")));
}

#[tokio::test]
async fn overlapping_queries_give_overlapping_subsets_whose_union_a_client_can_aggregate() {
    let faker = start_with(5003).await;
    let client = Client::connect(&faker).await;
    let (cameras, _) = client.fetch_all("in:devices type:Camera", 1000).await;
    let (corporate, _) = client.fetch_all("in:devices tag:Corporate", 1000).await;
    let (both, _) = client
        .fetch_all("in:devices type:Camera tag:Corporate", 1000)
        .await;
    let (either_type, _) = client
        .fetch_all(r#"in:devices type:Camera,"Access Point""#, 1000)
        .await;
    let set = |v: &[sr_faker::Device]| v.iter().map(|d| d.id).collect::<HashSet<_>>();
    let (c, t, b) = (set(&cameras), set(&corporate), set(&both));
    assert!(!b.is_empty());
    assert_eq!(b, c.intersection(&t).copied().collect());
    assert!(
        corporate
            .iter()
            .all(|d| d.tags.iter().any(|t| t == "Corporate"))
    );
    assert!(set(&either_type).is_superset(&c));
    assert!(either_type.len() > cameras.len());
}

#[tokio::test]
async fn an_id_range_selects_exactly_those_ids() {
    let faker = start_with(20_000).await;
    let client = Client::connect(&faker).await;
    let (devices, pages) = client.fetch_all("in:devices id:1..5003", 100).await;
    assert_each_id_once(&devices, 5003);
    assert_eq!(pages, 51);
    let (two, _) = client.fetch_all("in:devices id:7,19000..19001", 100).await;
    assert_eq!(ids(&two), vec![7, 19000, 19001]);
}

#[tokio::test]
async fn names_compare_case_insensitively_and_unknown_names_select_nothing() {
    let faker = start_with(2000).await;
    let client = Client::connect(&faker).await;
    let (a, _) = client.fetch_all("in:devices type:camera", 1000).await;
    let (b, _) = client.fetch_all("in:devices type:CAMERA", 1000).await;
    assert_eq!(ids(&a), ids(&b));
    let none = client.page("in:devices type:Toaster", 100, 0).await;
    assert_eq!(none.status, StatusCode::OK);
    assert_eq!(none.data()["total"], 0);
    assert_eq!(none.data()["next"], 0);
}

#[tokio::test]
async fn an_unsupported_filter_is_a_400_that_names_it() {
    let faker = start_with(10).await;
    let client = Client::connect(&faker).await;
    let page = client
        .page(r#"in:devices boundaries:"Corporate""#, 100, 0)
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.message().contains("boundaries"), "{}", page.body);
}

#[test]
fn the_documented_examples_parse() {
    for q in [
        "in:devices",
        "in:devices type:Camera",
        r#"in:devices type:"Access Point",Router"#,
        "in:devices tag:Corporate riskLevel:8..10",
        "in:devices id:1..5000",
        r#"in:devices timeFrame:"7 Days" orderBy=id category:IoT manufacturer:Axis"#,
    ] {
        Query::parse(q).unwrap();
    }
}
