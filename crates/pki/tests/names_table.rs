#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Table tests for tenant slugs, component common names, component types and SPIFFE IDs.

use sr_pki::names::{self, parse_cn};
use sr_pki::{ComponentName, ComponentType, NameError, NamePart, SlugProblem, SpiffeId};

fn name(component_id: &str, partition: &str, tenant_slug: &str) -> ComponentName {
    ComponentName {
        component_id: component_id.to_owned(),
        partition: partition.to_owned(),
        tenant_slug: tenant_slug.to_owned(),
    }
}

#[test]
fn slug_validation_follows_the_contract_pattern_exactly() {
    let max = "a".repeat(63);
    let over = "a".repeat(64);
    let cases: &[(&str, Result<(), SlugProblem>)] = &[
        ("acme", Ok(())),
        ("platform", Ok(())),
        ("a", Ok(())),
        ("0", Ok(())),
        ("acme-corp-2", Ok(())),
        ("-", Ok(())),
        ("-leading-and-trailing-", Ok(())),
        (&max, Ok(())),
        ("", Err(SlugProblem::Empty)),
        (&over, Err(SlugProblem::TooLong { len: 64 })),
        ("Acme", Err(SlugProblem::InvalidChar { found: 'A' })),
        ("acme_corp", Err(SlugProblem::InvalidChar { found: '_' })),
        ("acme.corp", Err(SlugProblem::InvalidChar { found: '.' })),
        ("acme corp", Err(SlugProblem::InvalidChar { found: ' ' })),
        ("acmé", Err(SlugProblem::InvalidChar { found: 'é' })),
        ("acme\n", Err(SlugProblem::InvalidChar { found: '\n' })),
    ];
    for &(slug, expected) in cases {
        let got = names::validate_slug(slug);
        let expected = expected.map_err(|problem| NameError::InvalidSlug { problem });
        assert_eq!(got, expected, "slug {slug:?}");
    }
}

#[test]
fn common_name_parsing_accepts_valid_names_and_names_each_failure_precisely() {
    let long = "x".repeat(64);
    let max = "x".repeat(63);
    let slug_64 = "a".repeat(64);
    let cn_long_component = format!("{long}.default.acme.serviceradar");
    let cn_long_partition = format!("sync-1.{long}.acme.serviceradar");
    let cn_max = format!("{max}.{max}.{}.serviceradar", "a".repeat(63));
    let cn_long_slug = format!("sync-1.default.{slug_64}.serviceradar");

    let cases: Vec<(&str, Result<ComponentName, NameError>)> = vec![
        // valid
        (
            "sync-1.default.acme.serviceradar",
            Ok(name("sync-1", "default", "acme")),
        ),
        (
            "platform-sync.platform.platform.serviceradar",
            Ok(name("platform-sync", "platform", "platform")),
        ),
        (
            "Agent_01.Site-A.acme-2.serviceradar",
            Ok(name("Agent_01", "Site-A", "acme-2")),
        ),
        (&cn_max, Ok(name(&max, &max, &"a".repeat(63)))),
        // wrong number of parts (a dot inside a part always shows up here)
        (
            "sync-1.acme.serviceradar",
            Err(NameError::WrongPartCount { found: 3 }),
        ),
        (
            "sync-1.default.acme.extra.serviceradar",
            Err(NameError::WrongPartCount { found: 5 }),
        ),
        (
            "sync.1.default.acme.serviceradar",
            Err(NameError::WrongPartCount { found: 5 }),
        ),
        ("", Err(NameError::WrongPartCount { found: 1 })),
        ("serviceradar", Err(NameError::WrongPartCount { found: 1 })),
        (
            "...",
            Err(NameError::EmptyPart {
                which: NamePart::Suffix,
            }),
        ),
        // wrong suffix
        (
            "sync-1.default.acme.servicerader",
            Err(NameError::WrongSuffix {
                found: "servicerader".to_owned(),
            }),
        ),
        (
            "sync-1.default.acme.ServiceRadar",
            Err(NameError::WrongSuffix {
                found: "ServiceRadar".to_owned(),
            }),
        ),
        (
            "sync-1.default.acme.serviceradar ",
            Err(NameError::WrongSuffix {
                found: "serviceradar ".to_owned(),
            }),
        ),
        // empty parts, each position
        (
            ".default.acme.serviceradar",
            Err(NameError::EmptyPart {
                which: NamePart::ComponentId,
            }),
        ),
        (
            "a..b.serviceradar",
            Err(NameError::EmptyPart {
                which: NamePart::Partition,
            }),
        ),
        (
            "sync-1.default..serviceradar",
            Err(NameError::EmptyPart {
                which: NamePart::TenantSlug,
            }),
        ),
        (
            "sync-1.default.acme.",
            Err(NameError::EmptyPart {
                which: NamePart::Suffix,
            }),
        ),
        // invalid characters
        (
            "sync 1.default.acme.serviceradar",
            Err(NameError::InvalidChars {
                which: NamePart::ComponentId,
                found: ' ',
            }),
        ),
        (
            "sync-1.def/ault.acme.serviceradar",
            Err(NameError::InvalidChars {
                which: NamePart::Partition,
                found: '/',
            }),
        ),
        (
            "sync*.default.acme.serviceradar",
            Err(NameError::InvalidChars {
                which: NamePart::ComponentId,
                found: '*',
            }),
        ),
        (
            "sÿnc.default.acme.serviceradar",
            Err(NameError::InvalidChars {
                which: NamePart::ComponentId,
                found: 'ÿ',
            }),
        ),
        // too long
        (
            &cn_long_component,
            Err(NameError::TooLong {
                which: NamePart::ComponentId,
                len: 64,
            }),
        ),
        (
            &cn_long_partition,
            Err(NameError::TooLong {
                which: NamePart::Partition,
                len: 64,
            }),
        ),
        // invalid slug
        (
            "sync-1.default.Acme.serviceradar",
            Err(NameError::InvalidSlug {
                problem: SlugProblem::InvalidChar { found: 'A' },
            }),
        ),
        (
            "sync-1.default.acme_corp.serviceradar",
            Err(NameError::InvalidSlug {
                problem: SlugProblem::InvalidChar { found: '_' },
            }),
        ),
        (
            &cn_long_slug,
            Err(NameError::InvalidSlug {
                problem: SlugProblem::TooLong { len: 64 },
            }),
        ),
    ];

    for (cn, expected) in cases {
        assert_eq!(parse_cn(cn), expected, "cn {cn:?}");
        assert_eq!(cn.parse::<ComponentName>(), expected, "FromStr of {cn:?}");
    }
}

#[test]
fn component_id_is_checked_before_partition_and_partition_before_slug() {
    assert_eq!(
        parse_cn("a b.c d.E.serviceradar"),
        Err(NameError::InvalidChars {
            which: NamePart::ComponentId,
            found: ' '
        })
    );
    assert_eq!(
        parse_cn("ab.c d.E.serviceradar"),
        Err(NameError::InvalidChars {
            which: NamePart::Partition,
            found: ' '
        })
    );
}

#[test]
fn to_cn_writes_the_four_parts_in_contract_order() {
    let n = ComponentName::new("sync-1", "default", "acme").unwrap();
    assert_eq!(n.to_cn(), "sync-1.default.acme.serviceradar");
    assert_eq!(n.to_string(), n.to_cn());
    assert_eq!(
        ComponentName::new("sync.1", "default", "acme"),
        Err(NameError::InvalidChars {
            which: NamePart::ComponentId,
            found: '.'
        })
    );
}

#[test]
fn name_error_messages_say_what_was_expected() {
    let cases = [
        (
            parse_cn("a.b.serviceradar").unwrap_err(),
            "common name must have exactly 4 dot-separated parts \
             (<component_id>.<partition>.<tenant_slug>.serviceradar), found 3",
        ),
        (
            parse_cn("a.b.c.example").unwrap_err(),
            "common name must end in \".serviceradar\", found suffix \"example\"",
        ),
        (
            parse_cn("a..c.serviceradar").unwrap_err(),
            "common name part partition is empty",
        ),
        (
            parse_cn("a.b.C.serviceradar").unwrap_err(),
            "invalid tenant slug: character 'C' is not allowed (only a-z, 0-9 and '-')",
        ),
        (
            SpiffeId::parse("spiffe://td/robot/a/b/c").unwrap_err(),
            "unknown component type \"robot\" \
             (expected agent, sync, gateway, identity, dire, sweepgen or events)",
        ),
    ];
    for (err, message) in cases {
        assert_eq!(err.to_string(), message);
    }
}

#[test]
fn wrong_suffix_errors_clip_long_input() {
    let suffix = "z".repeat(1000);
    let err = parse_cn(&format!("a.b.c.{suffix}")).unwrap_err();
    let NameError::WrongSuffix { found } = err else {
        panic!("expected WrongSuffix, got {err:?}");
    };
    assert!(found.len() < 100, "echoed {} bytes", found.len());
}

#[test]
fn component_types_round_trip_through_their_lower_case_names_and_serde() {
    let expected = [
        "agent", "sync", "gateway", "identity", "dire", "sweepgen", "events",
    ];
    assert_eq!(ComponentType::ALL.len(), expected.len());
    for (ty, text) in ComponentType::ALL.into_iter().zip(expected) {
        assert_eq!(ty.as_str(), text);
        assert_eq!(ty.to_string(), text);
        assert_eq!(text.parse::<ComponentType>(), Ok(ty));
        assert_eq!(serde_json::to_string(&ty).unwrap(), format!("\"{text}\""));
        assert_eq!(
            serde_json::from_str::<ComponentType>(&format!("\"{text}\"")).unwrap(),
            ty
        );
    }
    for bad in ["Agent", "SYNC", "", "poller", "sweep-gen", " agent"] {
        assert!(
            matches!(
                bad.parse::<ComponentType>(),
                Err(NameError::UnknownComponentType { .. })
            ),
            "{bad:?} should be rejected"
        );
        assert!(serde_json::from_str::<ComponentType>(&format!("\"{bad}\"")).is_err());
    }
}

fn spiffe(ty: ComponentType, slug: &str, partition: &str, id: &str) -> SpiffeId {
    SpiffeId {
        trust_domain: "serviceradar.local".to_owned(),
        component_type: ty,
        tenant_slug: slug.to_owned(),
        partition: partition.to_owned(),
        component_id: id.to_owned(),
    }
}

#[test]
fn spiffe_ids_parse_for_every_component_type_and_round_trip() {
    for ty in ComponentType::ALL {
        let uri = format!("spiffe://serviceradar.local/{ty}/platform/platform/{ty}-0");
        let expected = spiffe(ty, "platform", "platform", &format!("{ty}-0"));
        assert_eq!(SpiffeId::parse(&uri), Ok(expected.clone()), "{uri}");
        assert_eq!(expected.to_uri(), uri);
        assert_eq!(expected.to_string(), uri);
        assert_eq!(uri.parse::<SpiffeId>(), Ok(expected));
    }
}

#[test]
fn spiffe_parsing_rejects_each_malformation_precisely() {
    let long_td = format!("spiffe://{}/sync/acme/p/c", "a".repeat(256));
    let cases: Vec<(&str, NameError)> = vec![
        (
            "spiffe://serviceradar.local/sync/platform/platform",
            NameError::SpiffeWrongSegmentCount { found: 3 },
        ),
        (
            "spiffe://serviceradar.local/sync/platform/platform/platform-sync/extra",
            NameError::SpiffeWrongSegmentCount { found: 5 },
        ),
        (
            "spiffe://serviceradar.local/sync/platform/platform/platform-sync/",
            NameError::SpiffeWrongSegmentCount { found: 5 },
        ),
        (
            "spiffe://serviceradar.local",
            NameError::SpiffeWrongSegmentCount { found: 0 },
        ),
        (
            "https://serviceradar.local/sync/platform/platform/platform-sync",
            NameError::SpiffeWrongScheme,
        ),
        (
            "SPIFFE://serviceradar.local/sync/platform/platform/platform-sync",
            NameError::SpiffeWrongScheme,
        ),
        (
            "spiffe:/serviceradar.local/sync/platform/platform/platform-sync",
            NameError::SpiffeWrongScheme,
        ),
        ("", NameError::SpiffeWrongScheme),
        (
            "spiffe:///sync/platform/platform/platform-sync",
            NameError::SpiffeEmptyTrustDomain,
        ),
        ("spiffe://", NameError::SpiffeEmptyTrustDomain),
        (
            "spiffe://ServiceRadar.local/sync/platform/platform/platform-sync",
            NameError::SpiffeTrustDomainInvalidChar { found: 'S' },
        ),
        (
            "spiffe://serviceradar.local:8443/sync/platform/platform/platform-sync",
            NameError::SpiffeTrustDomainInvalidChar { found: ':' },
        ),
        (
            "spiffe://user@serviceradar.local/sync/platform/platform/platform-sync",
            NameError::SpiffeTrustDomainInvalidChar { found: '@' },
        ),
        (&long_td, NameError::SpiffeTrustDomainTooLong { len: 256 }),
        (
            "spiffe://serviceradar.local/robot/platform/platform/platform-sync",
            NameError::UnknownComponentType {
                found: "robot".to_owned(),
            },
        ),
        (
            "spiffe://serviceradar.local/Sync/platform/platform/platform-sync",
            NameError::UnknownComponentType {
                found: "Sync".to_owned(),
            },
        ),
        (
            "spiffe://serviceradar.local//platform/platform/platform-sync",
            NameError::SpiffeEmptySegment {
                which: NamePart::ComponentType,
            },
        ),
        (
            "spiffe://serviceradar.local/sync//platform/platform-sync",
            NameError::SpiffeEmptySegment {
                which: NamePart::TenantSlug,
            },
        ),
        (
            "spiffe://serviceradar.local/sync/platform//platform-sync",
            NameError::SpiffeEmptySegment {
                which: NamePart::Partition,
            },
        ),
        (
            "spiffe://serviceradar.local/sync/platform/platform/",
            NameError::SpiffeEmptySegment {
                which: NamePart::ComponentId,
            },
        ),
        (
            "spiffe://serviceradar.local/sync/platform/platform/platform-sync?x=1",
            NameError::SpiffeQuery,
        ),
        (
            "spiffe://serviceradar.local/sync/platform/platform/platform-sync#frag",
            NameError::SpiffeFragment,
        ),
        (
            "spiffe://serviceradar.local/sync/platform/platform/platform%2Dsync",
            NameError::SpiffePercentEncoded,
        ),
        (
            "spiffe://serviceradar.local/sync/Platform/platform/platform-sync",
            NameError::InvalidSlug {
                problem: SlugProblem::InvalidChar { found: 'P' },
            },
        ),
        (
            "spiffe://serviceradar.local/sync/platform/plat.form/platform-sync",
            NameError::InvalidChars {
                which: NamePart::Partition,
                found: '.',
            },
        ),
        (
            "spiffe://serviceradar.local/sync/platform/platform/..",
            NameError::InvalidChars {
                which: NamePart::ComponentId,
                found: '.',
            },
        ),
    ];
    for (uri, expected) in cases {
        assert_eq!(SpiffeId::parse(uri), Err(expected), "uri {uri:?}");
    }
}

#[test]
fn spiffe_for_component_copies_the_cn_parts_and_checks_the_trust_domain() {
    let n = ComponentName::new("platform-sync", "platform", "platform").unwrap();
    let id = SpiffeId::for_component("serviceradar.local", ComponentType::Sync, &n).unwrap();
    assert_eq!(
        id.to_uri(),
        "spiffe://serviceradar.local/sync/platform/platform/platform-sync"
    );
    assert_eq!(id.component_name(), n);
    assert_eq!(
        SpiffeId::for_component("", ComponentType::Sync, &n),
        Err(NameError::SpiffeEmptyTrustDomain)
    );
}

#[test]
fn deserialising_names_validates_them_like_the_parsers_do() {
    let good = serde_json::json!({
        "component_id": "sync-1", "partition": "default", "tenant_slug": "acme"
    });
    let n: ComponentName = serde_json::from_value(good.clone()).unwrap();
    assert_eq!(n, ComponentName::new("sync-1", "default", "acme").unwrap());
    assert_eq!(serde_json::to_value(&n).unwrap(), good);

    let bad_slug = serde_json::json!({
        "component_id": "sync-1", "partition": "default", "tenant_slug": "Acme"
    });
    let err = serde_json::from_value::<ComponentName>(bad_slug).unwrap_err();
    assert!(err.to_string().contains("invalid tenant slug"), "{err}");

    let id = SpiffeId::parse("spiffe://serviceradar.local/agent/acme/default/agent-1").unwrap();
    let json = serde_json::to_value(&id).unwrap();
    assert_eq!(json["component_type"], "agent");
    assert_eq!(
        serde_json::from_value::<SpiffeId>(json.clone()).unwrap(),
        id
    );
    let mut bad = json;
    bad["partition"] = serde_json::json!("has/slash");
    assert!(serde_json::from_value::<SpiffeId>(bad).is_err());
}
