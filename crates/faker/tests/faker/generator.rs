use std::collections::HashSet;
use std::net::Ipv4Addr;

use sr_faker::generator::{code3, contract_ip, format_mac};
use sr_faker::{Config, Faker, Generator};

use crate::common::{Client, primary_ip, start};

#[test]
fn macs_are_unique_across_1_000_000_generated_indices() {
    let g = Generator::new(1, 1_000_000, 0.0);
    let mut seen = HashSet::with_capacity(1_400_000);
    let mut extras = 0;
    for i in 0..1_000_000 {
        assert!(seen.insert(g.primary_mac(i)), "primary MAC of {i} repeats");
        for k in 1..=g.traits(i).extra_macs {
            assert!(
                seen.insert(g.extra_mac(i, k)),
                "extra MAC {k} of {i} repeats"
            );
            extras += 1;
        }
    }
    // Some devices list extra MACs, most do not.
    assert!((100_000..500_000).contains(&extras), "{extras}");
}

#[test]
fn primary_macs_do_not_repeat_past_65_536_devices_where_the_reference_wrapped() {
    let g = Generator::new(1, 16_000_000, 0.0);
    for i in [0u64, 65_536, 131_072, 15_000_000] {
        assert_ne!(g.primary_mac(i), g.primary_mac(i + 65_536));
        assert_ne!(g.primary_mac(i), g.primary_mac(i + 1));
    }
}

#[test]
fn the_ip_formula_matches_the_contract_for_sample_indices() {
    let cases = [
        (0u64, Ipv4Addr::new(172, 16, 0, 1)),
        (253, Ipv4Addr::new(172, 16, 0, 254)),
        (254, Ipv4Addr::new(172, 16, 1, 1)),
        (65_023, Ipv4Addr::new(172, 16, 255, 254)),
        (65_024, Ipv4Addr::new(172, 17, 0, 1)),
        (999_999, Ipv4Addr::new(172, 31, 97, 2)),
    ];
    let g = Generator::new(1, 1_000_000, 0.0);
    for (i, want) in cases {
        // The contract's formula, written out.
        let formula = Ipv4Addr::new(
            172,
            (16 + (i / 254) / 256) as u8,
            ((i / 254) % 256) as u8,
            ((i % 254) + 1) as u8,
        );
        assert_eq!(formula, want, "i={i}");
        assert_eq!(contract_ip(i), want, "i={i}");
        let d = g.device(i, 0).unwrap();
        assert_eq!(primary_ip(&d), want.to_string(), "i={i}");
    }
}

#[test]
fn devices_carry_every_armis_field_with_the_contract_name() {
    let g = Generator::new(1, 100_000, 0.0);
    let mut names = HashSet::new();
    for i in [0u64, 1, 253, 254, 9_999, 99_999] {
        let d = g.device(i, 0).unwrap();
        assert_eq!(d.id, i + 1);
        let want = format!(
            "FAKER-{}-{}-{:05}",
            code3(&d.manufacturer),
            code3(&d.device_type),
            i + 1
        );
        assert_eq!(d.name, want);
        assert!(names.insert(d.name.clone()));
        assert_eq!(
            d.mac_address.split(',').next().unwrap(),
            format_mac(g.primary_mac(i))
        );
        for field in [
            &d.category,
            &d.model,
            &d.operating_system,
            &d.first_seen,
            &d.last_seen,
        ] {
            assert!(!field.is_empty());
        }
        assert!(d.first_seen < d.last_seen);
        chrono::DateTime::parse_from_rfc3339(&d.first_seen).unwrap();
        assert!((1..=10).contains(&d.risk_level));
    }
    assert_eq!(g.device(100_000, 0), None, "past the end");

    let json = serde_json::to_value(g.device(0, 0).unwrap()).unwrap();
    for key in [
        "id",
        "ipAddress",
        "macAddress",
        "name",
        "type",
        "category",
        "manufacturer",
        "model",
        "operatingSystem",
        "firstSeen",
        "lastSeen",
        "riskLevel",
        "tags",
    ] {
        assert!(json.get(key).is_some(), "{key} missing in {json}");
    }
    assert!(json["tags"].is_array());
}

#[test]
fn some_devices_list_extra_ips_and_macs_and_no_extra_ip_is_anyone_s_primary() {
    let g = Generator::new(1, 20_000, 0.0);
    let mut primaries = HashSet::new();
    let mut extras = Vec::new();
    let mut multi_mac = 0;
    for i in 0..20_000 {
        let d = g.device(i, 0).unwrap();
        let mut ips = d.ip_address.split(',');
        primaries.insert(ips.next().unwrap().to_owned());
        extras.extend(ips.map(str::to_owned));
        multi_mac += usize::from(d.mac_address.contains(','));
    }
    assert!(!extras.is_empty() && extras.len() < 10_000);
    assert!(multi_mac > 1_000 && multi_mac < 10_000);
    assert!(extras.iter().all(|ip| !primaries.contains(ip)));
    assert_eq!(primaries.len(), 20_000);
}

#[test]
fn the_same_seed_gives_the_same_devices_and_another_seed_does_not() {
    let a = Generator::new(7, 1000, 0.05);
    let b = Generator::new(7, 1000, 0.05);
    let c = Generator::new(8, 1000, 0.05);
    let mut differ = 0;
    for i in 0..1000 {
        assert_eq!(a.device(i, 3), b.device(i, 3));
        differ += usize::from(a.device(i, 0) != c.device(i, 0));
    }
    assert!(differ > 900, "{differ}");
}

#[tokio::test]
async fn a_restarted_faker_with_the_same_seed_serves_identical_pages() {
    let mut config = Config::local(2_500);
    config.devices.seed = 42;
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let faker = start(config.clone()).await;
        let client = Client::connect(&faker).await;
        faker.advance_churn();
        let (devices, _) = client.fetch_all("in:devices", 1000).await;
        bodies.push(serde_json::to_string(&devices).unwrap());
        faker.stop().await.unwrap();
    }
    assert_eq!(bodies[0], bodies[1]);

    config.devices.seed = 43;
    let other = Faker::start(config).await.unwrap();
    let client = Client::connect(&other).await;
    other.advance_churn();
    let (devices, _) = client.fetch_all("in:devices", 1000).await;
    assert_ne!(serde_json::to_string(&devices).unwrap(), bodies[0]);
}
