use std::sync::Arc;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use sr_faker::{Config, Faker};
use sr_runtime::ManualClock;

use crate::common::{Client, start_with};

#[tokio::test]
async fn a_search_without_a_token_is_401() {
    let faker = start_with(10).await;
    let client = Client::connect(&faker).await;
    let page = client.raw(&[("aql", "in:devices")], None).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert_eq!(page.body["success"], false);
    assert_eq!(faker.stats().unauthorized, 1);
}

#[tokio::test]
async fn a_search_with_a_wrong_token_is_401_and_a_bearer_prefix_is_not_armis() {
    let faker = start_with(10).await;
    let client = Client::connect(&faker).await;
    let wrong = client
        .raw(&[("aql", "in:devices")], Some("not-a-token"))
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let bearer = format!("Bearer {}", client.token);
    let prefixed = client.raw(&[("aql", "in:devices")], Some(&bearer)).await;
    assert_eq!(prefixed.status, StatusCode::UNAUTHORIZED);
    assert_eq!(faker.stats().unauthorized, 2);
}

#[tokio::test]
async fn the_401_comes_before_any_parameter_check() {
    let faker = start_with(10).await;
    let client = Client::connect(&faker).await;
    let page = client.raw(&[("length", "ten")], None).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_wrong_or_missing_secret_key_is_401() {
    let faker = start_with(10).await;
    let client = Client::connect(&faker).await;
    for form in [
        &[("secret_key", "guess")][..],
        &[("secret", "faker-secret")][..],
        &[][..],
    ] {
        let (status, body) = client.token_response(form).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{form:?}");
        assert_eq!(body["success"], false);
    }
    let stats = faker.stats();
    assert_eq!((stats.secret_rejections, stats.tokens_issued), (3, 1));
}

#[tokio::test]
async fn a_token_expires_after_its_ttl_and_a_fresh_one_works() {
    // Whole seconds, so the microsecond expiry format loses nothing.
    let clock = ManualClock::new(DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    let mut config = Config::local(10);
    config.auth.token_ttl_secs = 60;
    let faker = Faker::build_with_clock(config, Arc::new(clock.clone()))
        .await
        .unwrap()
        .spawn();
    let mut client = Client::connect(&faker).await;

    let (_, body) = client
        .token_response(&[("secret_key", "faker-secret")])
        .await;
    let expires: DateTime<Utc> = body["data"]["expiration_utc"]
        .as_str()
        .unwrap()
        .parse()
        .expect("expiration_utc is RFC 3339");
    assert_eq!((expires - sr_runtime::Clock::now(&clock)).num_seconds(), 60);

    assert_eq!(
        client.page("in:devices", 10, 0).await.status,
        StatusCode::OK
    );
    clock.advance(chrono::Duration::seconds(59));
    assert_eq!(
        client.page("in:devices", 10, 0).await.status,
        StatusCode::OK
    );
    clock.advance(chrono::Duration::seconds(1));
    let expired = client.page("in:devices", 10, 0).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert!(expired.message().contains("expired"), "{}", expired.body);

    // The client's refresh-once-on-401 path: one new token, then the page.
    client.token = client.new_token("faker-secret").await;
    assert_eq!(
        client.page("in:devices", 10, 0).await.status,
        StatusCode::OK
    );
    let stats = faker.stats();
    assert_eq!((stats.tokens_issued, stats.unauthorized), (3, 1));
}

#[tokio::test]
async fn invalidated_tokens_are_refused_until_the_client_asks_again() {
    let faker = start_with(10).await;
    let mut client = Client::connect(&faker).await;
    assert_eq!(
        client.page("in:devices", 10, 0).await.status,
        StatusCode::OK
    );
    faker.invalidate_tokens();
    assert_eq!(
        client.page("in:devices", 10, 0).await.status,
        StatusCode::UNAUTHORIZED
    );
    client.token = client.new_token("faker-secret").await;
    assert_eq!(
        client.page("in:devices", 10, 0).await.status,
        StatusCode::OK
    );

    // The same through the control route.
    let r = client
        .http
        .post(format!("{}/faker/tokens/invalidate", client.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        client.page("in:devices", 10, 0).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(faker.stats().unauthorized, 2);
}

#[tokio::test]
async fn the_secret_key_is_configurable() {
    let mut config = Config::local(10);
    config.auth.secret_key = "other".into();
    let faker = Faker::start(config).await.unwrap();
    let client = Client {
        http: reqwest::Client::new(),
        base: faker.base_url(),
        token: String::new(),
    };
    let (status, _) = client
        .token_response(&[("secret_key", "faker-secret")])
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    client.new_token("other").await;
}
