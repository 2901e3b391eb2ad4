use reqwest::StatusCode;

use crate::common::{Client, assert_each_id_once, ids, start_with};

#[tokio::test]
async fn fetching_5003_devices_in_pages_of_100_returns_each_id_once_and_next_reaches_0_at_the_end()
{
    let faker = start_with(5003).await;
    let client = Client::connect(&faker).await;
    let (devices, pages) = client.fetch_all("in:devices", 100).await;
    assert_each_id_once(&devices, 5003);
    assert_eq!(pages, 51);
    assert_eq!(ids(&devices), (1..=5003).collect::<Vec<_>>(), "id order");

    let last = client.page("in:devices", 100, 5000).await;
    assert_eq!(last.data()["count"], 3);
    assert_eq!(last.data()["next"], 0);
    assert_eq!(last.data()["prev"], 4900);
    let before = client.page("in:devices", 100, 4900).await;
    assert_eq!(before.data()["next"], 5000);
    let first = client.page("in:devices", 100, 0).await;
    assert!(first.data()["prev"].is_null());
    assert_eq!(first.data()["total"], 5003);
    assert_eq!(faker.stats().unauthorized, 0);
}

#[tokio::test]
async fn fetching_5003_devices_in_pages_of_1000_returns_each_id_once() {
    let faker = start_with(5003).await;
    let client = Client::connect(&faker).await;
    let (devices, pages) = client.fetch_all("in:devices", 1000).await;
    assert_each_id_once(&devices, 5003);
    assert_eq!(pages, 6);
}

#[tokio::test]
async fn a_length_above_1000_is_clamped_to_1000_not_rejected() {
    let faker = start_with(5003).await;
    let client = Client::connect(&faker).await;
    let page = client.page("in:devices", 5000, 0).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.data()["count"], 1000);
    assert_eq!(page.data()["next"], 1000);
    let (devices, pages) = client.fetch_all("in:devices", 1_000_000).await;
    assert_each_id_once(&devices, 5003);
    assert_eq!(pages, 6);
    let huge = client
        .raw(
            &[("aql", "in:devices"), ("length", "99999999999999999999999")],
            Some(&client.token),
        )
        .await;
    assert_eq!(huge.data()["count"], 1000);
}

#[tokio::test]
async fn an_inventory_that_divides_evenly_into_pages_ends_without_an_extra_empty_page() {
    for (n, length, want_pages) in [(5000u64, 100u64, 50u64), (1000, 1000, 1), (1, 1000, 1)] {
        let faker = start_with(n).await;
        let client = Client::connect(&faker).await;
        let (devices, pages) = client.fetch_all("in:devices", length).await;
        assert_each_id_once(&devices, n);
        assert_eq!(pages, want_pages, "n={n} length={length}");
        assert_eq!(faker.stats().pages_served, want_pages);
    }
}

#[tokio::test]
async fn an_empty_inventory_answers_one_empty_page_with_next_0() {
    let faker = start_with(0).await;
    let client = Client::connect(&faker).await;
    let page = client.page("in:devices", 100, 0).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.data()["count"], 0);
    assert_eq!(page.data()["total"], 0);
    assert_eq!(page.data()["next"], 0);
    assert_eq!(page.devices(), vec![]);
}

#[tokio::test]
async fn from_beyond_the_total_returns_empty_results_and_next_0() {
    let faker = start_with(5003).await;
    let client = Client::connect(&faker).await;
    for from in [5003, 5004, 1_000_000] {
        let page = client.page("in:devices", 100, from).await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(page.data()["count"], 0);
        assert_eq!(page.data()["next"], 0);
        assert_eq!(page.data()["total"], 5003);
    }
}

#[tokio::test]
async fn malformed_paging_parameters_are_400_json_errors() {
    let faker = start_with(10).await;
    let client = Client::connect(&faker).await;
    let cases: &[&[(&str, &str)]] = &[
        &[("aql", "in:devices"), ("length", "ten")],
        &[("aql", "in:devices"), ("length", "-1")],
        &[("aql", "in:devices"), ("length", "0")],
        &[("aql", "in:devices"), ("from", "1.5")],
        &[("aql", "in:devices"), ("from", "")],
        &[("length", "10")],
        &[("aql", "in:things")],
    ];
    for params in cases {
        let page = client.raw(params, Some(&client.token)).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{params:?}");
        assert_eq!(page.body["success"], false, "{params:?}");
        assert!(!page.message().is_empty(), "{params:?}");
    }
    assert_eq!(faker.stats().bad_requests, cases.len() as u64);
    assert_eq!(faker.stats().pages_served, 0);
}

#[tokio::test]
async fn missing_length_and_from_default_to_the_first_100_devices() {
    let faker = start_with(500).await;
    let client = Client::connect(&faker).await;
    let page = client
        .raw(&[("aql", "in:devices")], Some(&client.token))
        .await;
    assert_eq!(page.data()["count"], 100);
    assert_eq!(ids(&page.devices()), (1..=100).collect::<Vec<_>>());
}

#[tokio::test]
async fn served_devices_are_exactly_what_the_generator_says() {
    let faker = start_with(300).await;
    let client = Client::connect(&faker).await;
    let (devices, _) = client.fetch_all("in:devices", 1000).await;
    for (i, d) in devices.iter().enumerate() {
        assert_eq!(Some(d), faker.device(i as u64).as_ref());
    }
    assert_eq!(faker.stats().devices_served, 300);
}

#[tokio::test]
async fn injected_failures_answer_503_then_the_faker_serves_again() {
    let faker = start_with(10).await;
    let client = Client::connect(&faker).await;
    faker.fail_next_searches(2);
    for _ in 0..2 {
        let page = client.page("in:devices", 10, 0).await;
        assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(page.body["success"], false);
    }
    assert_eq!(
        client.page("in:devices", 10, 0).await.status,
        StatusCode::OK
    );
    let stats = faker.stats();
    assert_eq!((stats.injected_failures, stats.pages_served), (2, 1));
}
