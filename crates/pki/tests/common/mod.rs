#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]
//! Shared fixtures: a fixed clock, a small CA hierarchy, and hand-crafted certificates for the
//! shapes `CertAuthority::issue_leaf` refuses to produce.

use chrono::{DateTime, TimeDelta, Utc};
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use sr_pki::ca::{
    DEFAULT_ROOT_COMMON_NAME, DEFAULT_ROOT_VALIDITY_DAYS, DEFAULT_TENANT_CA_VALIDITY_DAYS,
};
use sr_pki::{
    CertAuthority, ComponentName, ComponentType, DEFAULT_TRUST_DOMAIN, LeafSpec, LeafUsage,
    SpiffeId,
};
use x509_parser::certificate::X509Certificate;

/// 2026-01-01T00:00:00Z: every test runs at this instant, never at the system clock's.
pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap()
}

pub fn days(n: i64) -> TimeDelta {
    TimeDelta::try_days(n).unwrap()
}

/// Root → platform tenant CA, and root → tenant CAs for `acme` and `globex`.
pub struct Pki {
    pub root: CertAuthority,
    pub platform: CertAuthority,
    pub acme: CertAuthority,
    pub globex: CertAuthority,
}

pub fn pki() -> Pki {
    let root =
        CertAuthority::generate_root(DEFAULT_ROOT_COMMON_NAME, t0(), DEFAULT_ROOT_VALIDITY_DAYS)
            .unwrap();
    let tenant = |slug: &str| {
        CertAuthority::generate_intermediate(&root, slug, t0(), DEFAULT_TENANT_CA_VALIDITY_DAYS)
            .unwrap()
    };
    let platform = tenant("platform");
    let acme = tenant("acme");
    let globex = tenant("globex");
    Pki {
        root,
        platform,
        acme,
        globex,
    }
}

pub fn component(component_id: &str, partition: &str, slug: &str) -> ComponentName {
    ComponentName::new(component_id, partition, slug).unwrap()
}

/// A platform component's spec: reserved slug, matching SPIFFE ID, client and server usage.
pub fn platform_spec(component_id: &str, ty: ComponentType) -> LeafSpec {
    let name = component(component_id, "platform", "platform");
    let mut spec = LeafSpec::new(name.clone(), LeafUsage::Client, t0());
    spec.spiffe = Some(SpiffeId::for_component(DEFAULT_TRUST_DOMAIN, ty, &name).unwrap());
    spec
}

/// An edge component's spec: CN only, client usage.
pub fn edge_spec(component_id: &str, slug: &str) -> LeafSpec {
    LeafSpec::new(
        component(component_id, "default", slug),
        LeafUsage::Client,
        t0(),
    )
}

pub fn x509(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    assert!(rest.is_empty());
    cert
}

/// What a hand-crafted certificate should contain.
pub struct Craft<'a> {
    pub common_names: &'a [&'a str],
    pub uris: &'a [&'a str],
    pub is_ca: bool,
    pub with_aki: bool,
}

impl Default for Craft<'_> {
    fn default() -> Self {
        Self {
            common_names: &[],
            uris: &[],
            is_ca: false,
            with_aki: true,
        }
    }
}

/// Sign a certificate with `ca`'s key through rcgen directly, bypassing every check
/// `issue_leaf` makes, to build the malformed or hostile certificates a gateway must refuse.
pub fn craft(ca: &CertAuthority, spec: &Craft<'_>) -> Vec<u8> {
    let ca_key = KeyPair::from_pem(ca.key_pem()).unwrap();
    let issuer = Issuer::from_ca_cert_pem(ca.cert_pem(), ca_key).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    for cn in spec.common_names {
        // DistinguishedName::push replaces an existing entry of the same type, so a second
        // common name needs a distinct attribute type: use the CN OID through CustomDnType.
        if params.distinguished_name.get(&DnType::CommonName).is_none() {
            params.distinguished_name.push(DnType::CommonName, *cn);
        } else {
            params
                .distinguished_name
                .push(DnType::CustomDnType(vec![2, 5, 4, 3]), *cn);
        }
    }
    params.subject_alt_names = spec
        .uris
        .iter()
        .map(|u| SanType::URI(Ia5String::try_from(*u).unwrap()))
        .collect();
    params.is_ca = if spec.is_ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::ExplicitNoCa
    };
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = spec.with_aki;
    params.not_before = time::OffsetDateTime::from_unix_timestamp(t0().timestamp()).unwrap();
    params.not_after =
        time::OffsetDateTime::from_unix_timestamp((t0() + days(30)).timestamp()).unwrap();
    let key = KeyPair::generate().unwrap();
    params.signed_by(&key, &issuer).unwrap().der().to_vec()
}
