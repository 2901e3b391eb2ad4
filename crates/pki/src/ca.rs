//! Issuing the platform's certificates (CONTRACT §2 and §3): the root CA, one intermediate CA
//! per tenant, and component leaf certificates.
//!
//! Inputs and outputs are PEM strings, and every instant is an argument: nothing here reads the
//! clock, a file or the environment. Keys are ECDSA P-256. Validity ends are clamped to the
//! issuer's own `not_after`, so a chain never outlives its CA.

use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use rcgen::string::Ia5String;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER;
use x509_parser::pem::Pem;

use crate::names::{self, ComponentName, NameError, SpiffeId};
use crate::validity;

/// Default validity of the platform root CA: ten years.
pub const DEFAULT_ROOT_VALIDITY_DAYS: u32 = 3650;

/// Default validity of a tenant's intermediate CA: five years.
pub const DEFAULT_TENANT_CA_VALIDITY_DAYS: u32 = 1825;

/// Default validity of a component (leaf) certificate: one year.
pub const DEFAULT_LEAF_VALIDITY_DAYS: u32 = 365;

/// Default renewal window for [`needs_reissue`]: thirty days before expiry.
pub const DEFAULT_RENEW_BEFORE_DAYS: u32 = 30;

/// Default common name of the platform root CA.
pub const DEFAULT_ROOT_COMMON_NAME: &str = "ServiceRadar Root CA";

/// Organization written into every CA certificate's subject.
pub const CA_ORGANIZATION: &str = "serviceradar";

/// Longest root CA common name (the X.509 upper bound for a common name).
pub const MAX_ROOT_COMMON_NAME_LEN: usize = 64;

/// Longest DNS name accepted in a leaf's subject alternative names.
pub const MAX_DNS_NAME_LEN: usize = 253;

/// Why a CA could not be loaded or a certificate could not be issued.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CaError {
    /// rcgen refused to build or sign a certificate or key.
    #[error("certificate generation failed: {0}")]
    Generation(rcgen::Error),
    /// The private key PEM could not be read.
    #[error("private key PEM could not be read: {0}")]
    KeyUnreadable(rcgen::Error),
    /// The certificate PEM could not be decoded.
    #[error("certificate PEM could not be decoded")]
    CertificatePemUnreadable,
    /// The PEM input holds no certificate or more than one.
    #[error("expected exactly one certificate in the PEM input, found {found}")]
    ExpectedOneCertificate {
        /// Number of certificate blocks found.
        found: usize,
    },
    /// A PEM block is not a certificate.
    #[error("PEM block {label:?} is not a CERTIFICATE")]
    NotACertificateBlock {
        /// Label of the block.
        label: String,
    },
    /// The certificate DER could not be parsed.
    #[error("certificate could not be parsed: {0}")]
    CertificateUnparsable(X509Error),
    /// A validity time lies outside the representable range.
    #[error("time lies outside the representable range")]
    TimeOutOfRange,
    /// The certificate given as a CA is not one.
    #[error("certificate is not a CA certificate (basicConstraints CA:TRUE with keyCertSign)")]
    NotACa,
    /// The CA certificate carries no subject key identifier.
    #[error("CA certificate has no subject key identifier")]
    MissingSubjectKeyId,
    /// The private key does not belong to the certificate.
    #[error("private key does not match the certificate's public key")]
    KeyDoesNotMatchCertificate,
    /// A CA that is neither self-issued (root) nor named `<slug> tenant CA`.
    #[error("CA is neither a self-issued root nor a \"<slug> tenant CA\"")]
    UnrecognisedCa,
    /// The root CA common name is empty or too long.
    #[error("root CA common name must be 1..=64 bytes, found {len}")]
    InvalidRootCommonName {
        /// Length found, in bytes.
        len: usize,
    },
    /// A validity of zero days.
    #[error("validity must be at least one day")]
    ZeroValidity,
    /// The issuing CA has expired by the requested start of validity.
    #[error("issuing CA expired at {not_after}, before the requested start of validity")]
    IssuerExpired {
        /// The issuer's end of validity.
        not_after: DateTime<Utc>,
    },
    /// Tenant CAs are issued by the root only.
    #[error("a tenant CA can only be issued by the root CA")]
    ParentNotRoot,
    /// Component certificates are issued by tenant CAs only.
    #[error("the root CA does not issue component certificates; use the tenant's CA")]
    RootCannotIssueLeaf,
    /// A name in the request is invalid.
    #[error("invalid name: {0}")]
    InvalidName(NameError),
    /// The SPIFFE ID in the request is invalid.
    #[error("invalid SPIFFE ID: {0}")]
    InvalidSpiffeId(NameError),
    /// The SPIFFE ID's slug, partition or component id differ from the CN's.
    #[error("SPIFFE ID {spiffe} does not name the same component as the common name {cn}")]
    SpiffeNameMismatch {
        /// Requested common name.
        cn: String,
        /// Requested SPIFFE URI.
        spiffe: String,
    },
    /// The leaf names another tenant than the issuing CA's.
    #[error("CA of tenant {ca_slug:?} cannot issue a certificate for tenant {cn_slug:?}")]
    TenantMismatch {
        /// Tenant of the issuing CA.
        ca_slug: String,
        /// Tenant in the requested CN.
        cn_slug: String,
    },
    /// A DNS name that cannot go into a certificate.
    #[error("invalid DNS name {name:?}")]
    InvalidDnsName {
        /// The name (clipped to 64 bytes).
        name: String,
    },
}

/// Which role a CA plays in the hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CaKind {
    Root,
    Tenant(String),
}

/// A CA certificate and its private key, able to sign certificates.
///
/// Either the platform root (self-signed, path length 1) or a tenant's intermediate
/// (`<slug> tenant CA`, path length 0). `Debug` never shows the key.
pub struct CertAuthority {
    cert_pem: String,
    key_pem: String,
    cert_der: Vec<u8>,
    subject_key_id: Vec<u8>,
    kind: CaKind,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertAuthority")
            .field("kind", &self.kind)
            .field("subject_key_id", &hex::encode(&self.subject_key_id))
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

fn ca_params(
    common_name: &str,
    path_len: u8,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    // The default subject carries a placeholder CN; start from an empty one.
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, CA_ORGANIZATION);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = validity::to_offset(not_before).ok_or(CaError::TimeOutOfRange)?;
    params.not_after = validity::to_offset(not_after).ok_or(CaError::TimeOutOfRange)?;
    Ok(params)
}

fn new_key() -> Result<KeyPair, CaError> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(CaError::Generation)
}

/// The validity window of a certificate signed by an issuer valid until `issuer_not_after`.
fn window(
    start: DateTime<Utc>,
    validity_days: u32,
    issuer_not_after: Option<DateTime<Utc>>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), CaError> {
    if validity_days == 0 {
        return Err(CaError::ZeroValidity);
    }
    let not_before = validity::whole_seconds(start);
    let mut not_after =
        validity::plus_days(not_before, validity_days).ok_or(CaError::TimeOutOfRange)?;
    if let Some(limit) = issuer_not_after {
        if not_before >= limit {
            return Err(CaError::IssuerExpired { not_after: limit });
        }
        not_after = not_after.min(limit);
    }
    Ok((not_before, not_after))
}

/// Decode a PEM input holding exactly one certificate into DER.
fn single_certificate_der(cert_pem: &str) -> Result<Vec<u8>, CaError> {
    let blocks = Pem::iter_from_buffer(cert_pem.as_bytes())
        .collect::<Result<Vec<Pem>, _>>()
        .map_err(|_| CaError::CertificatePemUnreadable)?;
    let mut blocks = blocks.into_iter();
    match (blocks.next(), blocks.len()) {
        (Some(pem), 0) if pem.label == "CERTIFICATE" => Ok(pem.contents),
        (Some(pem), 0) => Err(CaError::NotACertificateBlock { label: pem.label }),
        (None, _) => Err(CaError::ExpectedOneCertificate { found: 0 }),
        (Some(_), more) => Err(CaError::ExpectedOneCertificate { found: more + 1 }),
    }
}

fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, CaError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| match e {
        x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => {
            CaError::CertificateUnparsable(e)
        }
        x509_parser::nom::Err::Incomplete(_) => {
            CaError::CertificateUnparsable(X509Error::InvalidCertificate)
        }
    })?;
    if !rest.is_empty() {
        return Err(CaError::CertificateUnparsable(
            X509Error::InvalidCertificate,
        ));
    }
    Ok(cert)
}

fn validity_of(cert: &X509Certificate<'_>) -> Result<(DateTime<Utc>, DateTime<Utc>), CaError> {
    let v = cert.validity();
    Ok((
        validity::from_asn1(&v.not_before).ok_or(CaError::TimeOutOfRange)?,
        validity::from_asn1(&v.not_after).ok_or(CaError::TimeOutOfRange)?,
    ))
}

impl CertAuthority {
    /// Generate a self-signed platform root CA (ECDSA P-256, path length 1 — root → tenant CA →
    /// component), valid from `now` (to the second) for `validity_days`
    /// (see [`DEFAULT_ROOT_VALIDITY_DAYS`]). Subject: `CN=<common_name>, O=serviceradar`.
    ///
    /// # Errors
    ///
    /// [`CaError::InvalidRootCommonName`], [`CaError::ZeroValidity`],
    /// [`CaError::TimeOutOfRange`] or [`CaError::Generation`].
    pub fn generate_root(
        common_name: &str,
        now: DateTime<Utc>,
        validity_days: u32,
    ) -> Result<Self, CaError> {
        if common_name.is_empty() || common_name.len() > MAX_ROOT_COMMON_NAME_LEN {
            return Err(CaError::InvalidRootCommonName {
                len: common_name.len(),
            });
        }
        let (not_before, not_after) = window(now, validity_days, None)?;
        let params = ca_params(common_name, 1, not_before, not_after)?;
        let key = new_key()?;
        let cert = params.self_signed(&key).map_err(CaError::Generation)?;
        Self::load(&cert.pem(), key.serialize_pem(), key)
    }

    /// Generate a tenant's intermediate CA signed by the root `parent` (ECDSA P-256, path
    /// length 0), valid from `now` (to the second) for `validity_days`
    /// (see [`DEFAULT_TENANT_CA_VALIDITY_DAYS`]) but never beyond the root's `not_after`.
    /// Subject: `CN=<slug> tenant CA, O=serviceradar`.
    ///
    /// # Errors
    ///
    /// [`CaError::ParentNotRoot`], [`CaError::InvalidName`] for a bad slug,
    /// [`CaError::ZeroValidity`], [`CaError::IssuerExpired`], [`CaError::TimeOutOfRange`] or
    /// [`CaError::Generation`].
    pub fn generate_intermediate(
        parent: &CertAuthority,
        tenant_slug: &str,
        now: DateTime<Utc>,
        validity_days: u32,
    ) -> Result<Self, CaError> {
        if parent.kind != CaKind::Root {
            return Err(CaError::ParentNotRoot);
        }
        names::validate_slug(tenant_slug).map_err(CaError::InvalidName)?;
        let (not_before, not_after) = window(now, validity_days, Some(parent.not_after))?;
        let mut params = ca_params(
            &names::tenant_ca_common_name(tenant_slug),
            0,
            not_before,
            not_after,
        )?;
        params.use_authority_key_identifier_extension = true;
        let key = new_key()?;
        let cert = params
            .signed_by(&key, &parent.issuer)
            .map_err(CaError::Generation)?;
        Self::load(&cert.pem(), key.serialize_pem(), key)
    }

    /// Load a CA from its certificate PEM (exactly one certificate) and PKCS#8 key PEM, as
    /// written by [`CertAuthority::cert_pem`] and [`CertAuthority::key_pem`].
    ///
    /// A self-issued certificate is the root; otherwise its CN must be `<slug> tenant CA`.
    ///
    /// # Errors
    ///
    /// [`CaError::KeyUnreadable`], a PEM or parse error, [`CaError::NotACa`],
    /// [`CaError::MissingSubjectKeyId`], [`CaError::KeyDoesNotMatchCertificate`] or
    /// [`CaError::UnrecognisedCa`].
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, CaError> {
        let key = KeyPair::from_pem(key_pem).map_err(CaError::KeyUnreadable)?;
        Self::load(cert_pem, key_pem.to_owned(), key)
    }

    fn load(cert_pem: &str, key_pem: String, key: KeyPair) -> Result<Self, CaError> {
        let cert_der = single_certificate_der(cert_pem)?;
        let cert = parse_certificate(&cert_der)?;

        let basic_ca = cert
            .basic_constraints()
            .map_err(CaError::CertificateUnparsable)?
            .is_some_and(|bc| bc.value.ca);
        let may_sign = cert
            .key_usage()
            .map_err(CaError::CertificateUnparsable)?
            .is_none_or(|ku| ku.value.key_cert_sign());
        if !basic_ca || !may_sign {
            return Err(CaError::NotACa);
        }

        let subject_key_id = match cert
            .get_extension_unique(&OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)
            .map_err(CaError::CertificateUnparsable)?
            .map(|ext| ext.parsed_extension())
        {
            Some(ParsedExtension::SubjectKeyIdentifier(id)) if !id.0.is_empty() => id.0.to_vec(),
            _ => return Err(CaError::MissingSubjectKeyId),
        };

        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(CaError::KeyDoesNotMatchCertificate);
        }

        let kind = if cert.subject().as_raw() == cert.issuer().as_raw() {
            CaKind::Root
        } else {
            let slug = cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .and_then(|cn| names::parse_tenant_ca_common_name(cn).ok())
                .ok_or(CaError::UnrecognisedCa)?;
            CaKind::Tenant(slug.to_owned())
        };

        let (not_before, not_after) = validity_of(&cert)?;
        let issuer = Issuer::from_ca_cert_der(&cert_der.as_slice().into(), key)
            .map_err(CaError::Generation)?;

        Ok(Self {
            cert_pem: cert_pem.to_owned(),
            key_pem,
            cert_der,
            subject_key_id,
            kind,
            not_before,
            not_after,
            issuer,
        })
    }

    /// The CA certificate, PEM.
    #[must_use]
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PKCS#8 PEM. Secret: never log it.
    #[must_use]
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The CA certificate, DER.
    #[must_use]
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The subject key identifier, which certificates this CA issues carry as their authority
    /// key identifier.
    #[must_use]
    pub fn subject_key_id(&self) -> &[u8] {
        &self.subject_key_id
    }

    /// The tenant this CA belongs to; `None` for the root.
    #[must_use]
    pub fn tenant_slug(&self) -> Option<&str> {
        match &self.kind {
            CaKind::Root => None,
            CaKind::Tenant(slug) => Some(slug),
        }
    }

    /// Whether this is the (self-issued) root CA.
    #[must_use]
    pub fn is_root(&self) -> bool {
        self.kind == CaKind::Root
    }

    /// Start of this CA's validity.
    #[must_use]
    pub fn not_before(&self) -> DateTime<Utc> {
        self.not_before
    }

    /// End of this CA's validity.
    #[must_use]
    pub fn not_after(&self) -> DateTime<Utc> {
        self.not_after
    }

    /// Issue a component certificate (ECDSA P-256, fresh key) from this tenant CA.
    ///
    /// The subject is the CN alone; SANs are the SPIFFE URI (only when given), then the DNS
    /// names, then the IP addresses. The certificate has `basicConstraints CA:FALSE`, key usage
    /// digitalSignature, the extended key usages of `spec.usage`, and subject and authority key
    /// identifiers. Validity starts at `spec.not_before` (to the second) and ends
    /// `spec.validity_days` later or at this CA's `not_after`, whichever comes first.
    ///
    /// # Errors
    ///
    /// [`CaError::RootCannotIssueLeaf`], [`CaError::InvalidName`],
    /// [`CaError::TenantMismatch`] when the CN names another tenant,
    /// [`CaError::InvalidSpiffeId`], [`CaError::SpiffeNameMismatch`],
    /// [`CaError::InvalidDnsName`], [`CaError::ZeroValidity`], [`CaError::IssuerExpired`],
    /// [`CaError::TimeOutOfRange`] or [`CaError::Generation`].
    pub fn issue_leaf(&self, spec: &LeafSpec) -> Result<IssuedCert, CaError> {
        let ca_slug = self.tenant_slug().ok_or(CaError::RootCannotIssueLeaf)?;
        spec.name.validate().map_err(CaError::InvalidName)?;
        if spec.name.tenant_slug != ca_slug {
            return Err(CaError::TenantMismatch {
                ca_slug: ca_slug.to_owned(),
                cn_slug: spec.name.tenant_slug.clone(),
            });
        }

        let mut sans = Vec::with_capacity(1 + spec.dns_names.len() + spec.ip_addresses.len());
        if let Some(spiffe) = &spec.spiffe {
            spiffe.validate().map_err(CaError::InvalidSpiffeId)?;
            if spiffe.component_name() != spec.name {
                return Err(CaError::SpiffeNameMismatch {
                    cn: spec.name.to_cn(),
                    spiffe: spiffe.to_uri(),
                });
            }
            let uri = Ia5String::try_from(spiffe.to_uri()).map_err(CaError::Generation)?;
            sans.push(SanType::URI(uri));
        }
        for dns in &spec.dns_names {
            sans.push(SanType::DnsName(dns_name(dns)?));
        }
        sans.extend(spec.ip_addresses.iter().copied().map(SanType::IpAddress));

        let (not_before, not_after) =
            window(spec.not_before, spec.validity_days, Some(self.not_after))?;

        let mut params = CertificateParams::default();
        // The default subject carries a placeholder CN; the leaf's subject is its CN alone.
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, spec.name.to_cn());
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = spec.usage.purposes();
        params.use_authority_key_identifier_extension = true;
        params.not_before = validity::to_offset(not_before).ok_or(CaError::TimeOutOfRange)?;
        params.not_after = validity::to_offset(not_after).ok_or(CaError::TimeOutOfRange)?;

        let key = new_key()?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(CaError::Generation)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            not_before,
            not_after,
        })
    }
}

/// Check a DNS SAN: 1..=253 bytes of `[A-Za-z0-9.-_*]`, no empty label.
fn dns_name(name: &str) -> Result<Ia5String, CaError> {
    let invalid = || CaError::InvalidDnsName {
        name: name.chars().take(64).collect(),
    };
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*'));
    if name.is_empty()
        || name.len() > MAX_DNS_NAME_LEN
        || !chars_ok
        || name.split('.').any(str::is_empty)
    {
        return Err(invalid());
    }
    Ia5String::try_from(name).map_err(|_| invalid())
}

/// Which TLS roles a leaf certificate may play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LeafUsage {
    /// TLS client only (extended key usage clientAuth).
    Client,
    /// TLS server only (serverAuth).
    Server,
    /// Both (clientAuth and serverAuth).
    ClientAndServer,
}

impl LeafUsage {
    fn purposes(self) -> Vec<ExtendedKeyUsagePurpose> {
        match self {
            Self::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Self::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Self::ClientAndServer => vec![
                ExtendedKeyUsagePurpose::ClientAuth,
                ExtendedKeyUsagePurpose::ServerAuth,
            ],
        }
    }
}

/// What to put into a component certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSpec {
    /// The identity written as the subject CN.
    pub name: ComponentName,
    /// SPIFFE ID for platform components; `None` for edge (tenant) components.
    pub spiffe: Option<SpiffeId>,
    /// DNS names for server certificates.
    pub dns_names: Vec<String>,
    /// IP addresses for server certificates.
    pub ip_addresses: Vec<IpAddr>,
    /// TLS roles.
    pub usage: LeafUsage,
    /// Start of validity (truncated to the second).
    pub not_before: DateTime<Utc>,
    /// Length of validity in days (see [`DEFAULT_LEAF_VALIDITY_DAYS`]).
    pub validity_days: u32,
}

impl LeafSpec {
    /// A spec with no SPIFFE ID, no DNS or IP SANs and [`DEFAULT_LEAF_VALIDITY_DAYS`].
    #[must_use]
    pub fn new(name: ComponentName, usage: LeafUsage, not_before: DateTime<Utc>) -> Self {
        Self {
            name,
            spiffe: None,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            usage,
            not_before,
            validity_days: DEFAULT_LEAF_VALIDITY_DAYS,
        }
    }
}

/// A freshly issued certificate with its private key. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#8 PEM. Secret: never log it.
    pub key_pem: String,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// Start of validity, as written in the certificate.
    pub not_before: DateTime<Utc>,
    /// End of validity, as written in the certificate (after clamping to the issuer's).
    pub not_after: DateTime<Utc>,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

/// Concatenate a leaf PEM and its intermediates (leaf first, then towards the root) into one
/// chain PEM, each block ending in a newline.
#[must_use]
pub fn chain_pem(leaf: &str, intermediates: &[&str]) -> String {
    let mut chain = String::with_capacity(
        leaf.len() + intermediates.iter().map(|p| p.len() + 1).sum::<usize>() + 1,
    );
    for pem in std::iter::once(leaf).chain(intermediates.iter().copied()) {
        let pem = pem.trim();
        if pem.is_empty() {
            continue;
        }
        chain.push_str(pem);
        chain.push('\n');
    }
    chain
}

/// Whether a certificate should be reissued at `now`: it is not valid yet, or it expires
/// within `renew_before_days` (see [`DEFAULT_RENEW_BEFORE_DAYS`]), or it has expired.
///
/// # Errors
///
/// A PEM or parse error if `cert_pem` does not hold exactly one readable certificate, or
/// [`CaError::TimeOutOfRange`].
pub fn needs_reissue(
    cert_pem: &str,
    now: DateTime<Utc>,
    renew_before_days: u32,
) -> Result<bool, CaError> {
    let der = single_certificate_der(cert_pem)?;
    let cert = parse_certificate(&der)?;
    let (not_before, not_after) = validity_of(&cert)?;
    let renew_from =
        validity::minus_days(not_after, renew_before_days).ok_or(CaError::TimeOutOfRange)?;
    Ok(now < not_before || now >= renew_from)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn chain_pem_puts_one_newline_after_each_block_and_skips_empty_ones() {
        let chain = chain_pem("LEAF\n\n", &["INTER", "", "  "]);
        assert_eq!(chain, "LEAF\nINTER\n");
    }

    #[test]
    fn dns_names_with_empty_labels_or_spaces_are_refused() {
        for bad in ["", "a..b", ".a", "a.", "a b", "é.example", &"a".repeat(254)] {
            assert!(
                matches!(dns_name(bad), Err(CaError::InvalidDnsName { .. })),
                "{bad:?} should be refused"
            );
        }
        for good in [
            "localhost",
            "gateway.serviceradar.svc",
            "*.example.org",
            "a_b",
        ] {
            assert!(dns_name(good).is_ok(), "{good:?} should be accepted");
        }
    }

    #[test]
    fn a_window_never_extends_past_the_issuer() {
        let start = DateTime::from_timestamp(1_000_000, 500).unwrap();
        let limit = DateTime::from_timestamp(1_000_000 + 86_400, 0).unwrap();
        let (nb, na) = window(start, 365, Some(limit)).unwrap();
        assert_eq!(nb.timestamp(), 1_000_000);
        assert_eq!(nb.timestamp_subsec_nanos(), 0);
        assert_eq!(na, limit);
        assert_eq!(
            window(limit, 1, Some(limit)),
            Err(CaError::IssuerExpired { not_after: limit })
        );
        assert_eq!(window(start, 0, None), Err(CaError::ZeroValidity));
    }
}
