#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Issuance checked with x509-parser as an independent reader: names, extensions, validity and
//! signatures along root → tenant CA → component.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::{Pki, component, days, edge_spec, pki, platform_spec, t0, x509};
use sr_pki::ca::{
    DEFAULT_LEAF_VALIDITY_DAYS, DEFAULT_RENEW_BEFORE_DAYS, DEFAULT_ROOT_VALIDITY_DAYS,
    DEFAULT_TENANT_CA_VALIDITY_DAYS,
};
use sr_pki::{
    CaError, CertAuthority, ComponentType, LeafSpec, LeafUsage, NameError, SpiffeId, chain_pem,
    needs_reissue,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};

fn ski(cert: &X509Certificate<'_>) -> Vec<u8> {
    match cert
        .get_extension_unique(&OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)
        .unwrap()
        .expect("subject key identifier present")
        .parsed_extension()
    {
        ParsedExtension::SubjectKeyIdentifier(id) => id.0.to_vec(),
        other => panic!("unexpected {other:?}"),
    }
}

fn aki(cert: &X509Certificate<'_>) -> Vec<u8> {
    match cert
        .get_extension_unique(&OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)
        .unwrap()
        .expect("authority key identifier present")
        .parsed_extension()
    {
        ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref().unwrap().0.to_vec(),
        other => panic!("unexpected {other:?}"),
    }
}

fn only_cn<'a>(cert: &'a X509Certificate<'_>) -> &'a str {
    let cns: Vec<_> = cert.subject().iter_common_name().collect();
    assert_eq!(cns.len(), 1, "exactly one CN");
    cns[0].as_str().unwrap()
}

fn organization<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a str> {
    cert.subject()
        .iter_organization()
        .next()
        .map(|o| o.as_str().unwrap())
}

fn uri_sans(cert: &X509Certificate<'_>) -> Vec<String> {
    cert.subject_alternative_name()
        .unwrap()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some((*u).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn root_is_a_self_signed_ca_limited_to_one_intermediate_level() {
    let Pki { root, .. } = pki();
    let cert = x509(root.cert_der());
    assert_eq!(only_cn(&cert), "ServiceRadar Root CA");
    assert_eq!(organization(&cert), Some("serviceradar"));
    assert_eq!(cert.subject().as_raw(), cert.issuer().as_raw());
    let bc = cert.basic_constraints().unwrap().unwrap();
    assert!(bc.critical);
    assert!(bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(1));
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    assert_eq!(ski(&cert), root.subject_key_id());
    assert!(root.is_root());
    assert_eq!(root.tenant_slug(), None);
    cert.verify_signature(None).unwrap();
    assert_eq!(cert.validity().not_before.timestamp(), t0().timestamp());
    assert_eq!(
        cert.validity().not_after.timestamp(),
        (t0() + days(i64::from(DEFAULT_ROOT_VALIDITY_DAYS))).timestamp()
    );
}

#[test]
fn tenant_ca_is_a_pathlen_zero_intermediate_named_after_its_tenant() {
    let Pki { root, acme, .. } = pki();
    let cert = x509(acme.cert_der());
    let root_cert = x509(root.cert_der());
    assert_eq!(only_cn(&cert), "acme tenant CA");
    assert_eq!(organization(&cert), Some("serviceradar"));
    assert_eq!(cert.issuer().as_raw(), root_cert.subject().as_raw());
    let bc = cert.basic_constraints().unwrap().unwrap().value;
    assert!(bc.ca);
    assert_eq!(bc.path_len_constraint, Some(0));
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign());
    assert_eq!(aki(&cert), root.subject_key_id());
    assert_eq!(ski(&cert), acme.subject_key_id());
    assert_eq!(acme.tenant_slug(), Some("acme"));
    assert!(!acme.is_root());
    cert.verify_signature(Some(root_cert.public_key())).unwrap();
    assert_eq!(
        acme.not_after(),
        t0() + days(i64::from(DEFAULT_TENANT_CA_VALIDITY_DAYS))
    );
}

#[test]
fn platform_leaf_carries_cn_only_subject_exact_spiffe_san_and_client_extensions() {
    let pki = pki();
    let spec = platform_spec("platform-sync", ComponentType::Sync);
    let issued = pki.platform.issue_leaf(&spec).unwrap();
    let cert = x509(&issued.cert_der);

    assert_eq!(
        only_cn(&cert),
        "platform-sync.platform.platform.serviceradar"
    );
    assert_eq!(cert.subject().iter().count(), 1, "subject is the CN alone");
    assert_eq!(
        cert.subject().to_string(),
        "CN=platform-sync.platform.platform.serviceradar"
    );
    assert!(!cert.subject().to_string().contains("rcgen"));
    assert_eq!(
        uri_sans(&cert),
        vec!["spiffe://serviceradar.local/sync/platform/platform/platform-sync".to_owned()]
    );

    let bc = cert
        .basic_constraints()
        .unwrap()
        .expect("basicConstraints present");
    assert!(!bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, None);
    let ku = cert.key_usage().unwrap().unwrap().value;
    assert!(ku.digital_signature());
    assert!(!ku.key_cert_sign());
    assert!(!ku.crl_sign());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth);
    assert!(!eku.server_auth);
    assert!(!eku.any);

    assert_eq!(aki(&cert), pki.platform.subject_key_id());
    assert!(!ski(&cert).is_empty());

    assert_eq!(cert.validity().not_before.timestamp(), t0().timestamp());
    assert_eq!(
        cert.validity().not_after.timestamp(),
        (t0() + days(i64::from(DEFAULT_LEAF_VALIDITY_DAYS))).timestamp()
    );
    assert_eq!(issued.not_before, t0());
    assert_eq!(
        issued.not_after.timestamp(),
        cert.validity().not_after.timestamp()
    );
    assert!(issued.key_pem.contains("BEGIN PRIVATE KEY"));
    assert!(issued.cert_pem.contains("BEGIN CERTIFICATE"));
    assert!(!format!("{issued:?}").contains("PRIVATE KEY"));
}

#[test]
fn edge_leaf_has_no_subject_alternative_names_at_all() {
    let pki = pki();
    let issued = pki.acme.issue_leaf(&edge_spec("sync-1", "acme")).unwrap();
    let cert = x509(&issued.cert_der);
    assert_eq!(only_cn(&cert), "sync-1.default.acme.serviceradar");
    assert!(cert.subject_alternative_name().unwrap().is_none());
    assert!(uri_sans(&cert).is_empty());
    assert_eq!(aki(&cert), pki.acme.subject_key_id());
}

#[test]
fn usage_selects_the_extended_key_usages() {
    let pki = pki();
    for (usage, client, server) in [
        (LeafUsage::Client, true, false),
        (LeafUsage::Server, false, true),
        (LeafUsage::ClientAndServer, true, true),
    ] {
        let mut spec = edge_spec("agent-1", "acme");
        spec.usage = usage;
        let issued = pki.acme.issue_leaf(&spec).unwrap();
        let cert = x509(&issued.cert_der);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert_eq!(eku.client_auth, client, "{usage:?} clientAuth");
        assert_eq!(eku.server_auth, server, "{usage:?} serverAuth");
    }
}

#[test]
fn server_leaf_carries_spiffe_dns_and_ip_sans_in_order() {
    let pki = pki();
    let mut spec = platform_spec("gateway", ComponentType::Gateway);
    spec.usage = LeafUsage::Server;
    spec.dns_names = vec![
        "gateway.serviceradar.svc".to_owned(),
        "localhost".to_owned(),
    ];
    spec.ip_addresses = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    let issued = pki.platform.issue_leaf(&spec).unwrap();
    let cert = x509(&issued.cert_der);
    let names = &cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    assert_eq!(names.len(), 5);
    assert_eq!(
        names[0],
        GeneralName::URI("spiffe://serviceradar.local/gateway/platform/platform/gateway")
    );
    assert_eq!(names[1], GeneralName::DNSName("gateway.serviceradar.svc"));
    assert_eq!(names[2], GeneralName::DNSName("localhost"));
    assert_eq!(names[3], GeneralName::IPAddress(&[127, 0, 0, 1]));
    assert_eq!(
        names[4],
        GeneralName::IPAddress(&Ipv6Addr::LOCALHOST.octets())
    );
}

#[test]
fn signatures_verify_from_leaf_through_tenant_ca_to_root() {
    let pki = pki();
    let issued = pki.acme.issue_leaf(&edge_spec("sync-1", "acme")).unwrap();
    let leaf = x509(&issued.cert_der);
    let acme = x509(pki.acme.cert_der());
    let root = x509(pki.root.cert_der());
    leaf.verify_signature(Some(acme.public_key())).unwrap();
    acme.verify_signature(Some(root.public_key())).unwrap();
    root.verify_signature(None).unwrap();
    assert_eq!(leaf.issuer().as_raw(), acme.subject().as_raw());
    // And not by skipping a level.
    assert!(leaf.verify_signature(Some(root.public_key())).is_err());
}

#[test]
fn a_leaf_from_one_tenant_ca_does_not_verify_against_another_tenants_ca() {
    let pki = pki();
    let issued = pki.acme.issue_leaf(&edge_spec("sync-1", "acme")).unwrap();
    let leaf = x509(&issued.cert_der);
    let globex = x509(pki.globex.cert_der());
    let platform = x509(pki.platform.cert_der());
    assert!(leaf.verify_signature(Some(globex.public_key())).is_err());
    assert!(leaf.verify_signature(Some(platform.public_key())).is_err());
    assert_eq!(aki(&leaf), pki.acme.subject_key_id());
    assert_ne!(aki(&leaf), pki.globex.subject_key_id());
    assert_ne!(pki.acme.subject_key_id(), pki.globex.subject_key_id());
}

#[test]
fn every_leaf_gets_a_fresh_key_and_serial() {
    let pki = pki();
    let a = pki.acme.issue_leaf(&edge_spec("sync-1", "acme")).unwrap();
    let b = pki.acme.issue_leaf(&edge_spec("sync-1", "acme")).unwrap();
    assert_ne!(a.key_pem, b.key_pem);
    assert_ne!(
        x509(&a.cert_der).raw_serial(),
        x509(&b.cert_der).raw_serial()
    );
    assert_ne!(ski(&x509(&a.cert_der)), ski(&x509(&b.cert_der)));
}

#[test]
fn a_ca_reloaded_from_its_pem_issues_leaves_that_verify_against_the_original() {
    let pki = pki();
    let reloaded = CertAuthority::from_pem(pki.acme.cert_pem(), pki.acme.key_pem()).unwrap();
    assert_eq!(reloaded.subject_key_id(), pki.acme.subject_key_id());
    assert_eq!(reloaded.tenant_slug(), Some("acme"));
    assert_eq!(reloaded.cert_der(), pki.acme.cert_der());
    assert_eq!(reloaded.not_after(), pki.acme.not_after());

    let issued = reloaded.issue_leaf(&edge_spec("sync-2", "acme")).unwrap();
    let leaf = x509(&issued.cert_der);
    let acme = x509(pki.acme.cert_der());
    leaf.verify_signature(Some(acme.public_key())).unwrap();
    assert_eq!(leaf.issuer().as_raw(), acme.subject().as_raw());
    assert_eq!(aki(&leaf), pki.acme.subject_key_id());
}

#[test]
fn a_root_reloaded_from_its_pem_issues_tenant_cas_that_verify_against_the_original() {
    let pki = pki();
    let root = CertAuthority::from_pem(pki.root.cert_pem(), pki.root.key_pem()).unwrap();
    assert!(root.is_root());
    let initech = CertAuthority::generate_intermediate(&root, "initech", t0(), 30).unwrap();
    let cert = x509(initech.cert_der());
    cert.verify_signature(Some(x509(pki.root.cert_der()).public_key()))
        .unwrap();
    assert_eq!(aki(&cert), pki.root.subject_key_id());
    assert_eq!(
        cert.issuer().as_raw(),
        x509(pki.root.cert_der()).subject().as_raw()
    );
}

#[test]
fn loading_a_ca_refuses_mismatched_keys_non_cas_chains_and_garbage() {
    let pki = pki();
    let leaf = pki.acme.issue_leaf(&edge_spec("sync-1", "acme")).unwrap();
    let two = chain_pem(pki.acme.cert_pem(), &[pki.root.cert_pem()]);
    let cases: Vec<(&str, &str, CaError)> = vec![
        (
            pki.acme.cert_pem(),
            pki.globex.key_pem(),
            CaError::KeyDoesNotMatchCertificate,
        ),
        (&leaf.cert_pem, &leaf.key_pem, CaError::NotACa),
        (
            &two,
            pki.acme.key_pem(),
            CaError::ExpectedOneCertificate { found: 2 },
        ),
        (
            "",
            pki.acme.key_pem(),
            CaError::ExpectedOneCertificate { found: 0 },
        ),
        (
            pki.acme.key_pem(),
            pki.acme.key_pem(),
            CaError::NotACertificateBlock {
                label: "PRIVATE KEY".to_owned(),
            },
        ),
    ];
    for (cert, key, expected) in cases {
        assert_eq!(CertAuthority::from_pem(cert, key).unwrap_err(), expected);
    }
    assert!(matches!(
        CertAuthority::from_pem(pki.acme.cert_pem(), "not a key"),
        Err(CaError::KeyUnreadable(_))
    ));
    assert!(matches!(
        CertAuthority::from_pem(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            pki.acme.key_pem()
        ),
        Err(CaError::CertificateUnparsable(_))
    ));
}

#[test]
fn debug_output_of_a_ca_never_shows_its_key() {
    let pki = pki();
    let debug = format!("{:?}", pki.acme);
    assert!(!debug.contains("PRIVATE KEY"));
    assert!(debug.contains("redacted"));
}

#[test]
fn the_ca_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CertAuthority>();
    let pki = pki();
    let handle = std::thread::scope(|s| {
        s.spawn(|| pki.acme.issue_leaf(&edge_spec("sync-1", "acme")))
            .join()
            .unwrap()
    });
    assert!(handle.is_ok());
}

#[test]
fn issuance_refuses_requests_outside_the_hierarchy_rules() {
    let pki = pki();

    assert_eq!(
        pki.root
            .issue_leaf(&edge_spec("sync-1", "acme"))
            .unwrap_err(),
        CaError::RootCannotIssueLeaf
    );
    assert_eq!(
        pki.acme
            .issue_leaf(&edge_spec("sync-1", "globex"))
            .unwrap_err(),
        CaError::TenantMismatch {
            ca_slug: "acme".to_owned(),
            cn_slug: "globex".to_owned()
        }
    );
    assert_eq!(
        CertAuthority::generate_intermediate(&pki.acme, "sub", t0(), 30).unwrap_err(),
        CaError::ParentNotRoot
    );
    assert!(matches!(
        CertAuthority::generate_intermediate(&pki.root, "Bad_Slug", t0(), 30),
        Err(CaError::InvalidName(NameError::InvalidSlug { .. }))
    ));
    assert!(matches!(
        CertAuthority::generate_root("", t0(), 30),
        Err(CaError::InvalidRootCommonName { len: 0 })
    ));
    assert!(matches!(
        CertAuthority::generate_root("x", t0(), 0),
        Err(CaError::ZeroValidity)
    ));

    let mut zero = edge_spec("sync-1", "acme");
    zero.validity_days = 0;
    assert_eq!(
        pki.acme.issue_leaf(&zero).unwrap_err(),
        CaError::ZeroValidity
    );

    let mut bad_name = edge_spec("sync-1", "acme");
    bad_name.name.component_id = "has.dot".to_owned();
    assert!(matches!(
        pki.acme.issue_leaf(&bad_name),
        Err(CaError::InvalidName(NameError::InvalidChars { .. }))
    ));

    let mut mismatched = platform_spec("platform-sync", ComponentType::Sync);
    mismatched.spiffe.as_mut().unwrap().component_id = "other".to_owned();
    assert_eq!(
        pki.platform.issue_leaf(&mismatched).unwrap_err(),
        CaError::SpiffeNameMismatch {
            cn: "platform-sync.platform.platform.serviceradar".to_owned(),
            spiffe: "spiffe://serviceradar.local/sync/platform/platform/other".to_owned(),
        }
    );

    let mut bad_spiffe = platform_spec("platform-sync", ComponentType::Sync);
    bad_spiffe.spiffe.as_mut().unwrap().trust_domain = "Upper.Case".to_owned();
    assert!(matches!(
        pki.platform.issue_leaf(&bad_spiffe),
        Err(CaError::InvalidSpiffeId(
            NameError::SpiffeTrustDomainInvalidChar { found: 'U' }
        ))
    ));

    let mut bad_dns = edge_spec("sync-1", "acme");
    bad_dns.dns_names = vec!["bad name".to_owned()];
    assert_eq!(
        pki.acme.issue_leaf(&bad_dns).unwrap_err(),
        CaError::InvalidDnsName {
            name: "bad name".to_owned()
        }
    );
}

#[test]
fn validity_is_clamped_to_the_issuer_and_refused_once_the_issuer_has_expired() {
    let pki = pki();
    let ca_end = pki.acme.not_after();

    let mut late = edge_spec("sync-1", "acme");
    late.not_before = ca_end - days(10);
    let issued = pki.acme.issue_leaf(&late).unwrap();
    assert_eq!(issued.not_after, ca_end);
    assert_eq!(
        x509(&issued.cert_der).validity().not_after.timestamp(),
        ca_end.timestamp()
    );

    let mut after = edge_spec("sync-1", "acme");
    after.not_before = ca_end;
    assert_eq!(
        pki.acme.issue_leaf(&after).unwrap_err(),
        CaError::IssuerExpired { not_after: ca_end }
    );

    let tenant = CertAuthority::generate_intermediate(
        &pki.root,
        "late",
        pki.root.not_after() - days(1),
        1825,
    )
    .unwrap();
    assert_eq!(tenant.not_after(), pki.root.not_after());
}

#[test]
fn sub_second_start_times_are_truncated_to_what_the_certificate_can_hold() {
    let pki = pki();
    let mut spec = edge_spec("sync-1", "acme");
    spec.not_before = t0() + chrono::TimeDelta::milliseconds(750);
    let issued = pki.acme.issue_leaf(&spec).unwrap();
    assert_eq!(issued.not_before, t0());
    assert_eq!(
        x509(&issued.cert_der).validity().not_before.timestamp(),
        t0().timestamp()
    );
}

#[test]
fn needs_reissue_compares_explicit_times_with_the_renewal_window() {
    let pki = pki();
    let mut spec = edge_spec("sync-1", "acme");
    spec.validity_days = 100;
    let issued = pki.acme.issue_leaf(&spec).unwrap();
    let end = t0() + days(100);
    let window = DEFAULT_RENEW_BEFORE_DAYS;
    let second = chrono::TimeDelta::seconds(1);

    let cases = [
        ("fresh at issuance", t0(), window, false),
        ("half-way", t0() + days(50), window, false),
        (
            "one second before the window",
            end - days(30) - second,
            window,
            false,
        ),
        ("at the start of the window", end - days(30), window, true),
        ("near expiry", end - days(1), window, true),
        ("at expiry", end, window, true),
        ("expired", end + days(1), window, true),
        ("expired with no window", end + second, 0, true),
        ("valid with no window", end - second, 0, false),
        ("not valid yet", t0() - second, window, true),
    ];
    for (label, now, renew_before, expected) in cases {
        assert_eq!(
            needs_reissue(&issued.cert_pem, now, renew_before).unwrap(),
            expected,
            "{label}"
        );
    }
    assert!(matches!(
        needs_reissue("garbage", t0(), window),
        Err(CaError::ExpectedOneCertificate { found: 0 })
    ));
}

#[test]
fn chain_pem_lists_leaf_then_intermediates_and_parses_back_in_that_order() {
    let pki = pki();
    let issued = pki.acme.issue_leaf(&edge_spec("sync-1", "acme")).unwrap();
    let chain = chain_pem(
        &issued.cert_pem,
        &[pki.acme.cert_pem(), pki.root.cert_pem()],
    );
    let ders: Vec<Vec<u8>> = x509_parser::pem::Pem::iter_from_buffer(chain.as_bytes())
        .map(|p| p.unwrap().contents)
        .collect();
    assert_eq!(
        ders,
        vec![
            issued.cert_der.clone(),
            pki.acme.cert_der().to_vec(),
            pki.root.cert_der().to_vec()
        ]
    );
    assert!(chain.ends_with('\n'));
    assert!(!chain.contains("\n\n"));
}

#[test]
fn leaf_spec_new_uses_the_documented_defaults() {
    let spec = LeafSpec::new(component("a", "b", "c"), LeafUsage::Client, t0());
    assert_eq!(spec.validity_days, DEFAULT_LEAF_VALIDITY_DAYS);
    assert_eq!(spec.spiffe, None::<SpiffeId>);
    assert!(spec.dns_names.is_empty() && spec.ip_addresses.is_empty());
    assert_eq!(DEFAULT_ROOT_VALIDITY_DAYS, 3650);
    assert_eq!(DEFAULT_TENANT_CA_VALIDITY_DAYS, 1825);
    assert_eq!(DEFAULT_LEAF_VALIDITY_DAYS, 365);
}
