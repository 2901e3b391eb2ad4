use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;
use sr_faker::{Config, Device, Generator};

use crate::common::{Client, primary_ip, start};

fn primaries(g: &Generator, epoch: u64) -> Vec<String> {
    (0..g.count())
        .map(|i| primary_ip(&g.device(i, epoch).unwrap()).to_owned())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn churn_swaps_exactly_the_configured_fraction_of_pairs_and_keeps_the_set_of_ips() {
    let g = Generator::new(1, 5003, 0.05);
    assert_eq!(g.swapped_pairs(), 125, "round(0.05 * 2501)");
    let base = primaries(&g, 0);
    for epoch in 1..=3 {
        let now = primaries(&g, epoch);
        let changed: Vec<usize> = (0..base.len()).filter(|&i| base[i] != now[i]).collect();
        assert_eq!(
            changed.len(),
            250,
            "epoch {epoch}: two devices per swapped pair"
        );
        for &i in &changed {
            let j = base.iter().position(|ip| *ip == now[i]).unwrap();
            assert_eq!(
                now[j], base[i],
                "epoch {epoch}: {i} and {j} swapped with each other"
            );
        }
        assert_eq!(
            sorted(now),
            sorted(base.clone()),
            "the set of IPs is unchanged"
        );
        for i in [0u64, 17, 5002] {
            let (a, b) = (g.device(i, 0).unwrap(), g.device(i, epoch).unwrap());
            assert_eq!(
                Device {
                    ip_address: String::new(),
                    ..a
                },
                Device {
                    ip_address: String::new(),
                    ..b
                },
                "only IPs churn"
            );
        }
    }
}

#[test]
fn churn_is_deterministic_per_epoch_and_each_epoch_swaps_other_pairs() {
    let a = Generator::new(9, 10_000, 0.1);
    let b = Generator::new(9, 10_000, 0.1);
    let swapped = |g: &Generator, epoch| -> HashSet<u64> {
        let p = g.pairing(epoch);
        (0..g.count()).filter(|&i| p.partner(i).is_some()).collect()
    };
    assert!(swapped(&a, 0).is_empty(), "epoch 0 is the base layout");
    for epoch in [1, 2, 1000] {
        assert_eq!(primaries(&a, epoch), primaries(&b, epoch), "epoch {epoch}");
        assert_eq!(swapped(&a, epoch).len(), 1000);
    }
    let (e1, e2) = (swapped(&a, 1), swapped(&a, 2));
    assert!(
        e1.intersection(&e2).count() < 400,
        "epochs pick different pairs"
    );
    let other_seed = Generator::new(10, 10_000, 0.1);
    assert_ne!(swapped(&other_seed, 1), e1);
}

#[test]
fn a_zero_fraction_never_moves_an_ip() {
    let g = Generator::new(1, 1000, 0.0);
    assert_eq!(primaries(&g, 5), primaries(&g, 0));
}

#[tokio::test]
async fn paging_within_an_epoch_is_consistent_and_advancing_churns_the_served_ips() {
    let mut config = Config::local(5003);
    config.churn.fraction = 0.05;
    let faker = start(config).await;
    let client = Client::connect(&faker).await;

    let first = client.page("in:devices", 10, 0).await;
    assert_eq!(first.epoch, Some(0));
    let (base, _) = client.fetch_all("in:devices", 1000).await;

    let r: Value = client
        .http
        .post(format!("{}/faker/churn/advance", client.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["epoch"], 1);
    assert_eq!(faker.churn_epoch(), 1);
    assert_eq!(client.page("in:devices", 10, 0).await.epoch, Some(1));

    let (churned, _) = client.fetch_all("in:devices", 100).await;
    let changed = base
        .iter()
        .zip(&churned)
        .filter(|(a, b)| primary_ip(a) != primary_ip(b))
        .count();
    assert_eq!(changed, 250);
    let ips = |v: &[Device]| sorted(v.iter().map(|d| primary_ip(d).to_owned()).collect());
    assert_eq!(ips(&base), ips(&churned));
    for (i, d) in churned.iter().enumerate() {
        assert_eq!(Some(d), faker.device_at(i as u64, 1).as_ref());
    }
    assert_eq!(faker.advance_churn(), 2);
}

#[tokio::test]
async fn the_churn_timer_advances_the_epoch_on_its_own() {
    let mut config = Config::local(10);
    config.churn.interval_secs = 1;
    let faker = start(config).await;
    let handle = faker.handle();
    sr_testkit::eventually("the churn timer ticks", Duration::from_secs(15), || {
        let h = handle.clone();
        async move { (h.churn_epoch() >= 1).then_some(()) }
    })
    .await;
    let status: Value = reqwest::get(format!("{}/faker/status", faker.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(status["churn"]["epoch"].as_u64().unwrap() >= 1);
    assert_eq!(status["churn"]["interval_secs"], 1);
}
