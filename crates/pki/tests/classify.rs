#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Reading peer certificates and classifying them, with certificates issued by the crate itself
//! and hostile ones crafted with rcgen directly.

mod common;

use common::{Craft, Pki, craft, days, edge_spec, pki, platform_spec, t0, x509};
use sha2::{Digest, Sha256};
use sr_pki::{
    CaCertificate, ClassifyContext, ComponentType, IdentityKind, NameError, NamePart,
    PeerCertificate, PeerError, PeerIdentity, check_issuing_tenant, classify, issued_by,
};

/// Classify as the gateway would: decide the platform-CA bit from the AKI, then classify.
fn classify_against(pki: &Pki, der: &[u8]) -> Result<PeerIdentity, PeerError> {
    let peer = PeerCertificate::from_der(der)?;
    let ctx = ClassifyContext::new(issued_by(&peer, pki.platform.subject_key_id()));
    classify(&peer, &ctx)
}

#[test]
fn peer_certificate_reads_every_field_the_gateway_needs() {
    let pki = pki();
    let issued = pki
        .platform
        .issue_leaf(&platform_spec("platform-sync", ComponentType::Sync))
        .unwrap();
    let peer = PeerCertificate::from_der(&issued.cert_der).unwrap();
    let cert = x509(&issued.cert_der);

    assert_eq!(
        peer.name.to_cn(),
        "platform-sync.platform.platform.serviceradar"
    );
    assert_eq!(
        peer.spiffe.as_ref().unwrap().to_uri(),
        "spiffe://serviceradar.local/sync/platform/platform/platform-sync"
    );
    assert_eq!(
        peer.authority_key_id.as_deref(),
        Some(pki.platform.subject_key_id())
    );
    assert!(peer.subject_key_id.as_ref().is_some_and(|k| !k.is_empty()));
    assert_eq!(peer.not_before, issued.not_before);
    assert_eq!(peer.not_after, issued.not_after);
    assert!(!peer.is_ca);
    assert_eq!(
        peer.sha256_fingerprint,
        hex::encode(Sha256::digest(&issued.cert_der))
    );
    assert_eq!(peer.sha256_fingerprint.len(), 64);
    let raw = cert.raw_serial();
    let trimmed = &raw[raw.iter().position(|&b| b != 0).unwrap()..];
    assert_eq!(peer.serial_hex, hex::encode(trimmed));
    assert!(!peer.serial_hex.starts_with("00"));
}

#[test]
fn platform_certificate_from_the_platform_ca_is_a_platform_identity_typed_by_spiffe() {
    let pki = pki();
    for ty in ComponentType::ALL {
        let id = format!("{ty}-0");
        let issued = pki.platform.issue_leaf(&platform_spec(&id, ty)).unwrap();
        assert_eq!(
            classify_against(&pki, &issued.cert_der).unwrap(),
            PeerIdentity {
                kind: IdentityKind::Platform,
                component_id: id.clone(),
                partition: "platform".to_owned(),
                tenant_slug: "platform".to_owned(),
                component_type: Some(ty),
            }
        );
    }
}

#[test]
fn edge_certificate_is_a_tenant_identity_with_its_type_left_to_the_registry() {
    let pki = pki();
    let issued = pki.acme.issue_leaf(&edge_spec("sync-1", "acme")).unwrap();
    assert_eq!(
        classify_against(&pki, &issued.cert_der).unwrap(),
        PeerIdentity {
            kind: IdentityKind::Tenant,
            component_id: "sync-1".to_owned(),
            partition: "default".to_owned(),
            tenant_slug: "acme".to_owned(),
            component_type: None,
        }
    );
}

#[test]
fn reserved_slug_issued_by_another_tenants_ca_is_rejected() {
    let pki = pki();
    let der = craft(
        &pki.acme,
        &Craft {
            common_names: &["platform-sync.platform.platform.serviceradar"],
            uris: &["spiffe://serviceradar.local/sync/platform/platform/platform-sync"],
            ..Craft::default()
        },
    );
    let err = classify_against(&pki, &der).unwrap_err();
    assert_eq!(
        err,
        PeerError::ReservedSlugNotIssuedByPlatformCa {
            slug: "platform".to_owned()
        }
    );
    assert_eq!(
        err.to_string(),
        "certificate names the reserved tenant slug \"platform\" but was not issued by the platform tenant CA"
    );
}

#[test]
fn reserved_slug_from_a_look_alike_platform_ca_under_another_root_is_rejected() {
    // An attacker's own hierarchy can mint a "platform tenant CA" too; its SKI differs.
    let pki = pki();
    let other = common::pki();
    let issued = other
        .platform
        .issue_leaf(&platform_spec("platform-sync", ComponentType::Sync))
        .unwrap();
    assert!(matches!(
        classify_against(&pki, &issued.cert_der),
        Err(PeerError::ReservedSlugNotIssuedByPlatformCa { .. })
    ));
}

#[test]
fn tenant_name_issued_by_the_platform_ca_is_rejected() {
    let pki = pki();
    let der = craft(
        &pki.platform,
        &Craft {
            common_names: &["sync-1.default.acme.serviceradar"],
            ..Craft::default()
        },
    );
    assert_eq!(
        classify_against(&pki, &der).unwrap_err(),
        PeerError::PlatformCaIssuedTenantName {
            slug: "acme".to_owned()
        }
    );
}

#[test]
fn edge_certificate_with_a_spiffe_san_is_rejected() {
    let pki = pki();
    let mut spec = edge_spec("sync-1", "acme");
    spec.spiffe = Some(
        sr_pki::SpiffeId::for_component("serviceradar.local", ComponentType::Sync, &spec.name)
            .unwrap(),
    );
    let issued = pki.acme.issue_leaf(&spec).unwrap();
    assert_eq!(
        classify_against(&pki, &issued.cert_der).unwrap_err(),
        PeerError::TenantCertificateWithSpiffe
    );
}

#[test]
fn platform_certificate_without_spiffe_is_rejected() {
    let pki = pki();
    let mut spec = platform_spec("platform-sync", ComponentType::Sync);
    spec.spiffe = None;
    let issued = pki.platform.issue_leaf(&spec).unwrap();
    assert_eq!(
        classify_against(&pki, &issued.cert_der).unwrap_err(),
        PeerError::PlatformCertificateWithoutSpiffe
    );
}

#[test]
fn spiffe_parts_that_disagree_with_the_cn_are_rejected_part_by_part() {
    let pki = pki();
    let cn = "platform-sync.platform.platform.serviceradar";
    let cases = [
        (
            "spiffe://serviceradar.local/sync/acme/platform/platform-sync",
            NamePart::TenantSlug,
            "platform",
            "acme",
        ),
        (
            "spiffe://serviceradar.local/sync/platform/edge/platform-sync",
            NamePart::Partition,
            "platform",
            "edge",
        ),
        (
            "spiffe://serviceradar.local/sync/platform/platform/other-sync",
            NamePart::ComponentId,
            "platform-sync",
            "other-sync",
        ),
    ];
    for (uri, part, cn_value, spiffe_value) in cases {
        let der = craft(
            &pki.platform,
            &Craft {
                common_names: &[cn],
                uris: &[uri],
                ..Craft::default()
            },
        );
        assert_eq!(
            classify_against(&pki, &der).unwrap_err(),
            PeerError::SpiffeCnMismatch {
                part,
                cn: cn_value.to_owned(),
                spiffe: spiffe_value.to_owned(),
            },
            "{uri}"
        );
    }
}

#[test]
fn spiffe_in_another_trust_domain_is_rejected() {
    let pki = pki();
    let mut spec = platform_spec("platform-sync", ComponentType::Sync);
    spec.spiffe.as_mut().unwrap().trust_domain = "evil.example".to_owned();
    let issued = pki.platform.issue_leaf(&spec).unwrap();
    assert_eq!(
        classify_against(&pki, &issued.cert_der).unwrap_err(),
        PeerError::TrustDomainMismatch {
            expected: "serviceradar.local".to_owned(),
            found: "evil.example".to_owned(),
        }
    );
}

#[test]
fn a_configured_trust_domain_and_platform_slug_replace_the_defaults() {
    let pki = pki();
    let mut spec = platform_spec("platform-sync", ComponentType::Sync);
    spec.spiffe.as_mut().unwrap().trust_domain = "corp.internal".to_owned();
    let issued = pki.platform.issue_leaf(&spec).unwrap();
    let peer = PeerCertificate::from_der(&issued.cert_der).unwrap();
    let mut ctx = ClassifyContext::new(issued_by(&peer, pki.platform.subject_key_id()));
    ctx.trust_domain = "corp.internal".to_owned();
    assert_eq!(classify(&peer, &ctx).unwrap().kind, IdentityKind::Platform);
    // With another reserved slug, "platform" is an ordinary tenant and the platform CA issuing it
    // is a mismatch.
    ctx.platform_slug = "ops".to_owned();
    assert_eq!(
        classify(&peer, &ctx).unwrap_err(),
        PeerError::PlatformCaIssuedTenantName {
            slug: "platform".to_owned()
        }
    );
}

#[test]
fn a_ca_certificate_presented_as_a_leaf_is_rejected() {
    let pki = pki();
    let der = craft(
        &pki.platform,
        &Craft {
            common_names: &["platform-sync.platform.platform.serviceradar"],
            uris: &["spiffe://serviceradar.local/sync/platform/platform/platform-sync"],
            is_ca: true,
            ..Craft::default()
        },
    );
    let peer = PeerCertificate::from_der(&der).unwrap();
    assert!(peer.is_ca);
    assert_eq!(
        classify_against(&pki, &der).unwrap_err(),
        PeerError::CaCertificateAsLeaf
    );
    // A real tenant CA does not even carry a component CN.
    assert!(matches!(
        PeerCertificate::from_der(pki.acme.cert_der()),
        Err(PeerError::InvalidCommonName(NameError::WrongPartCount {
            found: 1
        }))
    ));
}

#[test]
fn malformed_peer_certificates_are_rejected_with_distinct_errors() {
    let pki = pki();
    let two_cns = craft(
        &pki.acme,
        &Craft {
            common_names: &[
                "sync-1.default.acme.serviceradar",
                "sync-2.default.acme.serviceradar",
            ],
            ..Craft::default()
        },
    );
    let no_cn = craft(&pki.acme, &Craft::default());
    let bad_cn = craft(
        &pki.acme,
        &Craft {
            common_names: &["sync-1.acme.serviceradar"],
            ..Craft::default()
        },
    );
    let two_uris = craft(
        &pki.platform,
        &Craft {
            common_names: &["platform-sync.platform.platform.serviceradar"],
            uris: &[
                "spiffe://serviceradar.local/sync/platform/platform/platform-sync",
                "spiffe://serviceradar.local/agent/platform/platform/platform-sync",
            ],
            ..Craft::default()
        },
    );
    let https_uri = craft(
        &pki.acme,
        &Craft {
            common_names: &["sync-1.default.acme.serviceradar"],
            uris: &["https://acme.example/sync-1"],
            ..Craft::default()
        },
    );
    let bad_spiffe = craft(
        &pki.platform,
        &Craft {
            common_names: &["platform-sync.platform.platform.serviceradar"],
            uris: &["spiffe://serviceradar.local/robot/platform/platform/platform-sync"],
            ..Craft::default()
        },
    );
    let mut trailing = pki
        .acme
        .issue_leaf(&edge_spec("sync-1", "acme"))
        .unwrap()
        .cert_der;
    trailing.extend_from_slice(&[0, 0, 0]);

    let cases: Vec<(&str, &[u8], PeerError)> = vec![
        (
            "two CNs",
            &two_cns,
            PeerError::MultipleCommonNames { found: 2 },
        ),
        ("no CN", &no_cn, PeerError::MissingCommonName),
        (
            "three-part CN",
            &bad_cn,
            PeerError::InvalidCommonName(NameError::WrongPartCount { found: 3 }),
        ),
        (
            "two URI SANs",
            &two_uris,
            PeerError::MultipleUriSans { found: 2 },
        ),
        ("https URI SAN", &https_uri, PeerError::NonSpiffeUriSan),
        (
            "unknown SPIFFE type",
            &bad_spiffe,
            PeerError::InvalidSpiffeId(NameError::UnknownComponentType {
                found: "robot".to_owned(),
            }),
        ),
        (
            "trailing bytes",
            &trailing,
            PeerError::TrailingData { len: 3 },
        ),
    ];
    for (label, der, expected) in cases {
        assert_eq!(
            PeerCertificate::from_der(der).unwrap_err(),
            expected,
            "{label}"
        );
    }
    assert!(matches!(
        PeerCertificate::from_der(b"not a certificate"),
        Err(PeerError::Malformed(_))
    ));
    assert!(matches!(
        PeerCertificate::from_der(&[]),
        Err(PeerError::Malformed(_))
    ));
}

#[test]
fn issued_by_matches_only_the_issuing_cas_key_identifier() {
    let pki = pki();
    let issued = pki.acme.issue_leaf(&edge_spec("sync-1", "acme")).unwrap();
    let peer = PeerCertificate::from_der(&issued.cert_der).unwrap();
    assert!(issued_by(&peer, pki.acme.subject_key_id()));
    assert!(!issued_by(&peer, pki.globex.subject_key_id()));
    assert!(!issued_by(&peer, pki.platform.subject_key_id()));
    assert!(!issued_by(&peer, pki.root.subject_key_id()));
    assert!(!issued_by(&peer, &[]));

    let no_aki = craft(
        &pki.acme,
        &Craft {
            common_names: &["sync-1.default.acme.serviceradar"],
            with_aki: false,
            ..Craft::default()
        },
    );
    let peer = PeerCertificate::from_der(&no_aki).unwrap();
    assert_eq!(peer.authority_key_id, None);
    assert!(!issued_by(&peer, pki.acme.subject_key_id()));
}

#[test]
fn the_issuing_tenant_ca_must_belong_to_the_tenant_in_the_cn() {
    let pki = pki();
    let acme_ca = CaCertificate::from_der(pki.acme.cert_der()).unwrap();
    let globex_ca = CaCertificate::from_der(pki.globex.cert_der()).unwrap();
    let root_ca = CaCertificate::from_der(pki.root.cert_der()).unwrap();
    assert_eq!(acme_ca.tenant_slug.as_deref(), Some("acme"));
    assert_eq!(acme_ca.subject_key_id, pki.acme.subject_key_id());
    assert_eq!(root_ca.tenant_slug, None);

    let good = pki.acme.issue_leaf(&edge_spec("sync-1", "acme")).unwrap();
    let good = PeerCertificate::from_der(&good.cert_der).unwrap();
    assert_eq!(check_issuing_tenant(&good, &acme_ca), Ok(()));
    assert_eq!(
        check_issuing_tenant(&good, &globex_ca),
        Err(PeerError::NotIssuedByCa)
    );

    // acme's CA signing a CN that names globex: the reference's never-called check.
    let forged = craft(
        &pki.acme,
        &Craft {
            common_names: &["sync-1.default.globex.serviceradar"],
            ..Craft::default()
        },
    );
    let forged = PeerCertificate::from_der(&forged).unwrap();
    assert_eq!(
        check_issuing_tenant(&forged, &acme_ca),
        Err(PeerError::IssuingCaTenantMismatch {
            ca_slug: "acme".to_owned(),
            cn_slug: "globex".to_owned(),
        })
    );

    let no_aki = craft(
        &pki.acme,
        &Craft {
            common_names: &["sync-1.default.acme.serviceradar"],
            with_aki: false,
            ..Craft::default()
        },
    );
    assert_eq!(
        check_issuing_tenant(&PeerCertificate::from_der(&no_aki).unwrap(), &acme_ca),
        Err(PeerError::MissingAuthorityKeyId)
    );

    // A root that signs a leaf directly is not a tenant CA.
    let root_leaf = craft(
        &pki.root,
        &Craft {
            common_names: &["sync-1.default.acme.serviceradar"],
            ..Craft::default()
        },
    );
    assert_eq!(
        check_issuing_tenant(&PeerCertificate::from_der(&root_leaf).unwrap(), &root_ca),
        Err(PeerError::IssuerNotATenantCa)
    );

    let leaf_as_ca = pki.acme.issue_leaf(&edge_spec("sync-1", "acme")).unwrap();
    assert_eq!(
        CaCertificate::from_der(&leaf_as_ca.cert_der),
        Err(PeerError::NotACaCertificate)
    );
}

#[test]
fn validity_checks_use_the_callers_clock_with_inclusive_ends() {
    let pki = pki();
    let mut spec = edge_spec("sync-1", "acme");
    spec.validity_days = 10;
    let issued = pki.acme.issue_leaf(&spec).unwrap();
    let peer = PeerCertificate::from_der(&issued.cert_der).unwrap();
    let second = chrono::TimeDelta::seconds(1);
    assert_eq!(peer.check_validity(t0()), Ok(()));
    assert_eq!(peer.check_validity(t0() + days(10)), Ok(()));
    assert_eq!(
        peer.check_validity(t0() - second),
        Err(PeerError::NotYetValid { not_before: t0() })
    );
    assert_eq!(
        peer.check_validity(t0() + days(10) + second),
        Err(PeerError::Expired {
            not_after: t0() + days(10)
        })
    );
}

#[test]
fn identities_serialise_with_lower_case_kinds() {
    let identity = PeerIdentity {
        kind: IdentityKind::Platform,
        component_id: "platform-sync".to_owned(),
        partition: "platform".to_owned(),
        tenant_slug: "platform".to_owned(),
        component_type: Some(ComponentType::Sync),
    };
    let json = serde_json::to_value(&identity).unwrap();
    assert_eq!(json["kind"], "platform");
    assert_eq!(json["component_type"], "sync");
    let back: PeerIdentity = serde_json::from_value(json).unwrap();
    assert_eq!(back, identity);
}
