//! Reading a peer's certificate and deciding who it is (CONTRACT §2).
//!
//! The gateway's TLS stack has already verified the chain to the platform root by the time these
//! functions run; they read the verified leaf ([`PeerCertificate::from_der`]), check that the
//! issuing tenant CA belongs to the tenant named in the CN ([`check_issuing_tenant`]), and
//! classify the identity as platform or tenant ([`classify`]). Looking the tenant slug up in the
//! tenant registry, and an edge component's type up in the enrollment registry, is the caller's
//! job.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER, OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};

use crate::names::{
    self, ComponentName, ComponentType, DEFAULT_PLATFORM_SLUG, DEFAULT_TRUST_DOMAIN, NameError,
    NamePart, SpiffeId,
};
use crate::validity;

/// Why a peer certificate was not accepted as an identity.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PeerError {
    /// The bytes are not a DER X.509 certificate.
    #[error("certificate could not be parsed: {0}")]
    Malformed(X509Error),
    /// Bytes follow the certificate.
    #[error("certificate is followed by {len} unexpected bytes")]
    TrailingData {
        /// Number of trailing bytes.
        len: usize,
    },
    /// An extension appears twice or its content cannot be parsed.
    #[error("certificate has an invalid {extension} extension")]
    InvalidExtension {
        /// Name of the extension.
        extension: &'static str,
    },
    /// A validity time lies outside the range this crate can represent.
    #[error("certificate validity lies outside the representable range")]
    ValidityOutOfRange,
    /// The subject has no common name.
    #[error("certificate subject has no common name")]
    MissingCommonName,
    /// The subject has more than one common name.
    #[error("certificate subject has {found} common names; exactly one is required")]
    MultipleCommonNames {
        /// Number of common names found.
        found: usize,
    },
    /// The common name is not a text string.
    #[error("certificate common name is not a text string")]
    CommonNameNotText,
    /// The common name does not have the contract's shape.
    #[error("certificate common name is invalid: {0}")]
    InvalidCommonName(NameError),
    /// A subject alternative name entry could not be decoded.
    #[error("certificate has an undecodable subject alternative name")]
    UndecodableSubjectAltName,
    /// More than one URI subject alternative name.
    #[error("certificate carries {found} URI subject alternative names; at most one is allowed")]
    MultipleUriSans {
        /// Number of URI SANs found.
        found: usize,
    },
    /// A URI subject alternative name that is not a SPIFFE ID.
    #[error("certificate carries a URI subject alternative name that is not a spiffe:// URI")]
    NonSpiffeUriSan,
    /// The SPIFFE URI SAN is malformed.
    #[error("certificate SPIFFE ID is invalid: {0}")]
    InvalidSpiffeId(NameError),
    /// A CA certificate was presented as a component certificate.
    #[error("a CA certificate cannot be used as a component certificate")]
    CaCertificateAsLeaf,
    /// The CN names the reserved platform slug but the issuer is not the platform tenant's CA.
    #[error(
        "certificate names the reserved tenant slug {slug:?} but was not issued by the platform tenant CA"
    )]
    ReservedSlugNotIssuedByPlatformCa {
        /// The reserved slug.
        slug: String,
    },
    /// The platform tenant's CA issued a certificate naming another tenant.
    #[error("certificate names tenant {slug:?} but was issued by the platform tenant CA")]
    PlatformCaIssuedTenantName {
        /// The slug in the CN.
        slug: String,
    },
    /// A platform certificate without a SPIFFE URI SAN.
    #[error("platform certificate carries no SPIFFE ID")]
    PlatformCertificateWithoutSpiffe,
    /// The SPIFFE ID's trust domain is not the configured one.
    #[error("SPIFFE trust domain {found:?} does not match the expected {expected:?}")]
    TrustDomainMismatch {
        /// Configured trust domain.
        expected: String,
        /// Trust domain in the certificate.
        found: String,
    },
    /// A SPIFFE segment differs from the same part of the CN.
    #[error("SPIFFE ID {part} {spiffe:?} does not match the common name's {cn:?}")]
    SpiffeCnMismatch {
        /// Which part differs.
        part: NamePart,
        /// Value in the CN.
        cn: String,
        /// Value in the SPIFFE ID.
        spiffe: String,
    },
    /// A tenant (edge) certificate carrying a SPIFFE URI SAN.
    #[error("tenant certificate must not carry a SPIFFE ID")]
    TenantCertificateWithSpiffe,
    /// The certificate is not valid yet.
    #[error("certificate is not valid before {not_before}")]
    NotYetValid {
        /// Start of validity.
        not_before: DateTime<Utc>,
    },
    /// The certificate has expired.
    #[error("certificate expired at {not_after}")]
    Expired {
        /// End of validity.
        not_after: DateTime<Utc>,
    },
    /// A certificate given as an issuing CA is not a CA certificate.
    #[error("issuer certificate is not a CA certificate")]
    NotACaCertificate,
    /// A CA certificate without a subject key identifier.
    #[error("CA certificate has no subject key identifier")]
    CaWithoutSubjectKeyId,
    /// The leaf names no authority key identifier, so its issuer cannot be matched.
    #[error("certificate has no authority key identifier")]
    MissingAuthorityKeyId,
    /// The leaf's authority key identifier is not the given CA's subject key identifier.
    #[error("certificate was not issued by the given CA (authority key identifier mismatch)")]
    NotIssuedByCa,
    /// The issuing CA is not a tenant CA (`<slug> tenant CA`).
    #[error("issuing CA is not a tenant CA")]
    IssuerNotATenantCa,
    /// The issuing tenant CA belongs to another tenant than the one named in the CN.
    #[error("certificate names tenant {cn_slug:?} but was issued by the CA of tenant {ca_slug:?}")]
    IssuingCaTenantMismatch {
        /// Tenant of the issuing CA.
        ca_slug: String,
        /// Tenant named in the CN.
        cn_slug: String,
    },
}

/// What the gateway needs from a peer's leaf certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// Identity from the subject common name.
    pub name: ComponentName,
    /// SPIFFE ID from the single URI SAN, if any.
    pub spiffe: Option<SpiffeId>,
    /// Key identifier from the authority key identifier extension.
    pub authority_key_id: Option<Vec<u8>>,
    /// Subject key identifier extension.
    pub subject_key_id: Option<Vec<u8>>,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity (inclusive, as in X.509).
    pub not_after: DateTime<Utc>,
    /// `basicConstraints CA:TRUE`, or a key usage that allows signing certificates.
    pub is_ca: bool,
    /// Serial number, lower-case hex without separators or sign padding.
    pub serial_hex: String,
    /// SHA-256 of the DER encoding, lower-case hex.
    pub sha256_fingerprint: String,
}

fn parse_der(der: &[u8]) -> Result<X509Certificate<'_>, PeerError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| match e {
        x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => {
            PeerError::Malformed(e)
        }
        x509_parser::nom::Err::Incomplete(_) => PeerError::Malformed(X509Error::InvalidCertificate),
    })?;
    if !rest.is_empty() {
        return Err(PeerError::TrailingData { len: rest.len() });
    }
    Ok(cert)
}

fn common_name<'a>(cert: &'a X509Certificate<'_>) -> Result<&'a str, PeerError> {
    let mut names = cert.subject().iter_common_name();
    let first = names.next().ok_or(PeerError::MissingCommonName)?;
    let others = names.count();
    if others > 0 {
        return Err(PeerError::MultipleCommonNames { found: others + 1 });
    }
    first.as_str().map_err(|_| PeerError::CommonNameNotText)
}

fn subject_key_id(cert: &X509Certificate<'_>) -> Result<Option<Vec<u8>>, PeerError> {
    const EXT: &str = "subject key identifier";
    let ext = cert
        .get_extension_unique(&OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)
        .map_err(|_| PeerError::InvalidExtension { extension: EXT })?;
    match ext.map(|e| e.parsed_extension()) {
        None => Ok(None),
        Some(ParsedExtension::SubjectKeyIdentifier(id)) => Ok(Some(id.0.to_vec())),
        Some(_) => Err(PeerError::InvalidExtension { extension: EXT }),
    }
}

fn authority_key_id(cert: &X509Certificate<'_>) -> Result<Option<Vec<u8>>, PeerError> {
    const EXT: &str = "authority key identifier";
    let ext = cert
        .get_extension_unique(&OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)
        .map_err(|_| PeerError::InvalidExtension { extension: EXT })?;
    match ext.map(|e| e.parsed_extension()) {
        None => Ok(None),
        Some(ParsedExtension::AuthorityKeyIdentifier(aki)) => {
            Ok(aki.key_identifier.as_ref().map(|id| id.0.to_vec()))
        }
        Some(_) => Err(PeerError::InvalidExtension { extension: EXT }),
    }
}

fn is_ca(cert: &X509Certificate<'_>) -> Result<bool, PeerError> {
    let basic_ca = cert
        .basic_constraints()
        .map_err(|_| PeerError::InvalidExtension {
            extension: "basic constraints",
        })?
        .is_some_and(|bc| bc.value.ca);
    let signs_certs = cert
        .key_usage()
        .map_err(|_| PeerError::InvalidExtension {
            extension: "key usage",
        })?
        .is_some_and(|ku| ku.value.key_cert_sign());
    Ok(basic_ca || signs_certs)
}

fn spiffe_san(cert: &X509Certificate<'_>) -> Result<Option<SpiffeId>, PeerError> {
    let san = cert
        .subject_alternative_name()
        .map_err(|_| PeerError::InvalidExtension {
            extension: "subject alternative name",
        })?;
    let Some(san) = san else {
        return Ok(None);
    };
    let mut uris = Vec::new();
    for name in &san.value.general_names {
        match name {
            GeneralName::URI(uri) => uris.push(*uri),
            GeneralName::Invalid(..) => return Err(PeerError::UndecodableSubjectAltName),
            _ => {}
        }
    }
    match uris[..] {
        [] => Ok(None),
        [uri] => {
            if !uri.starts_with("spiffe://") {
                return Err(PeerError::NonSpiffeUriSan);
            }
            SpiffeId::parse(uri)
                .map(Some)
                .map_err(PeerError::InvalidSpiffeId)
        }
        _ => Err(PeerError::MultipleUriSans { found: uris.len() }),
    }
}

fn validity_window(
    cert: &X509Certificate<'_>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), PeerError> {
    let v = cert.validity();
    let not_before = validity::from_asn1(&v.not_before).ok_or(PeerError::ValidityOutOfRange)?;
    let not_after = validity::from_asn1(&v.not_after).ok_or(PeerError::ValidityOutOfRange)?;
    Ok((not_before, not_after))
}

fn serial_hex(cert: &X509Certificate<'_>) -> String {
    let raw = cert.raw_serial();
    // DER prefixes a 0x00 to keep a high-bit serial positive; that byte is not part of the value.
    let significant = raw.iter().position(|&b| b != 0).unwrap_or(raw.len());
    if significant == raw.len() {
        return "00".to_owned();
    }
    hex::encode(&raw[significant..])
}

fn sha256_hex(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

impl PeerCertificate {
    /// Read a peer's leaf certificate.
    ///
    /// The subject must carry exactly one common name of the contract's shape; at most one URI
    /// SAN may be present and it must be a valid SPIFFE ID. DNS and IP SANs are allowed (server
    /// certificates carry them). Signatures are not checked here: that is the TLS stack's job.
    ///
    /// # Errors
    ///
    /// A [`PeerError`] naming the first problem found: unparsable DER or trailing bytes,
    /// duplicate or undecodable extensions, a missing/duplicate/invalid common name, or a
    /// non-SPIFFE, duplicate or invalid URI SAN.
    pub fn from_der(der: &[u8]) -> Result<Self, PeerError> {
        let cert = parse_der(der)?;
        let name =
            ComponentName::parse_cn(common_name(&cert)?).map_err(PeerError::InvalidCommonName)?;
        let spiffe = spiffe_san(&cert)?;
        let (not_before, not_after) = validity_window(&cert)?;
        Ok(Self {
            name,
            spiffe,
            authority_key_id: authority_key_id(&cert)?,
            subject_key_id: subject_key_id(&cert)?,
            not_before,
            not_after,
            is_ca: is_ca(&cert)?,
            serial_hex: serial_hex(&cert),
            sha256_fingerprint: sha256_hex(der),
        })
    }

    /// Check that `now` lies inside the validity window (both ends inclusive, as in X.509).
    ///
    /// # Errors
    ///
    /// [`PeerError::NotYetValid`] or [`PeerError::Expired`].
    pub fn check_validity(&self, now: DateTime<Utc>) -> Result<(), PeerError> {
        if now < self.not_before {
            return Err(PeerError::NotYetValid {
                not_before: self.not_before,
            });
        }
        if now > self.not_after {
            return Err(PeerError::Expired {
                not_after: self.not_after,
            });
        }
        Ok(())
    }
}

/// What the gateway needs from an issuing CA certificate to check a leaf's tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCertificate {
    /// Tenant slug from a `<slug> tenant CA` common name; `None` for the root or any other CA.
    pub tenant_slug: Option<String>,
    /// Subject key identifier (what issued leaves carry as authority key identifier).
    pub subject_key_id: Vec<u8>,
    /// Start of validity.
    pub not_before: DateTime<Utc>,
    /// End of validity.
    pub not_after: DateTime<Utc>,
    /// SHA-256 of the DER encoding, lower-case hex.
    pub sha256_fingerprint: String,
}

impl CaCertificate {
    /// Read a CA certificate (a tenant CA or the root).
    ///
    /// # Errors
    ///
    /// [`PeerError::Malformed`], [`PeerError::TrailingData`] or
    /// [`PeerError::InvalidExtension`] for bad input, [`PeerError::NotACaCertificate`] unless
    /// `basicConstraints CA:TRUE`, [`PeerError::CaWithoutSubjectKeyId`] if the subject key
    /// identifier is missing.
    pub fn from_der(der: &[u8]) -> Result<Self, PeerError> {
        let cert = parse_der(der)?;
        let basic_ca = cert
            .basic_constraints()
            .map_err(|_| PeerError::InvalidExtension {
                extension: "basic constraints",
            })?
            .is_some_and(|bc| bc.value.ca);
        if !basic_ca {
            return Err(PeerError::NotACaCertificate);
        }
        let subject_key_id = subject_key_id(&cert)?.ok_or(PeerError::CaWithoutSubjectKeyId)?;
        let tenant_slug = match common_name(&cert) {
            Ok(cn) => names::parse_tenant_ca_common_name(cn)
                .ok()
                .map(str::to_owned),
            Err(_) => None,
        };
        let (not_before, not_after) = validity_window(&cert)?;
        Ok(Self {
            tenant_slug,
            subject_key_id,
            not_before,
            not_after,
            sha256_fingerprint: sha256_hex(der),
        })
    }
}

/// Whether `peer` names `ca_ski` as its authority key identifier. An empty `ca_ski` never
/// matches.
#[must_use]
pub fn issued_by(peer: &PeerCertificate, ca_ski: &[u8]) -> bool {
    !ca_ski.is_empty() && peer.authority_key_id.as_deref() == Some(ca_ski)
}

/// Check that `ca` issued `peer` and is the CA of the tenant named in the peer's CN (the check
/// the reference had but never called).
///
/// # Errors
///
/// [`PeerError::MissingAuthorityKeyId`], [`PeerError::NotIssuedByCa`],
/// [`PeerError::IssuerNotATenantCa`] or [`PeerError::IssuingCaTenantMismatch`].
pub fn check_issuing_tenant(peer: &PeerCertificate, ca: &CaCertificate) -> Result<(), PeerError> {
    if peer.authority_key_id.is_none() {
        return Err(PeerError::MissingAuthorityKeyId);
    }
    if !issued_by(peer, &ca.subject_key_id) {
        return Err(PeerError::NotIssuedByCa);
    }
    let ca_slug = ca
        .tenant_slug
        .as_deref()
        .ok_or(PeerError::IssuerNotATenantCa)?;
    if ca_slug != peer.name.tenant_slug {
        return Err(PeerError::IssuingCaTenantMismatch {
            ca_slug: ca_slug.to_owned(),
            cn_slug: peer.name.tenant_slug.clone(),
        });
    }
    Ok(())
}

/// Platform or tenant identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityKind {
    /// An in-cluster platform component (reserved slug, platform tenant CA, SPIFFE ID).
    Platform,
    /// A tenant's (edge) component.
    Tenant,
}

/// Who a peer is, as far as its certificate can tell.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PeerIdentity {
    /// Platform or tenant.
    pub kind: IdentityKind,
    /// Component id from the CN.
    pub component_id: String,
    /// Partition from the CN (overrides any partition in a request).
    pub partition: String,
    /// Tenant slug from the CN.
    pub tenant_slug: String,
    /// From the SPIFFE ID for platform identities; `None` for tenant identities, whose type
    /// the caller resolves from the enrollment registry.
    pub component_type: Option<ComponentType>,
}

/// What [`classify`] needs besides the certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifyContext {
    /// Slug reserved for the platform tenant.
    pub platform_slug: String,
    /// Expected SPIFFE trust domain.
    pub trust_domain: String,
    /// Whether the leaf was issued by the platform tenant's CA, as the caller determined with
    /// [`issued_by`] against that CA's subject key identifier.
    pub issued_by_platform_ca: bool,
}

impl ClassifyContext {
    /// Context with [`DEFAULT_PLATFORM_SLUG`] and [`DEFAULT_TRUST_DOMAIN`].
    #[must_use]
    pub fn new(issued_by_platform_ca: bool) -> Self {
        Self {
            platform_slug: DEFAULT_PLATFORM_SLUG.to_owned(),
            trust_domain: DEFAULT_TRUST_DOMAIN.to_owned(),
            issued_by_platform_ca,
        }
    }
}

fn spiffe_matches_cn(spiffe: &SpiffeId, cn: &ComponentName) -> Result<(), PeerError> {
    for (part, cn_value, spiffe_value) in [
        (NamePart::TenantSlug, &cn.tenant_slug, &spiffe.tenant_slug),
        (NamePart::Partition, &cn.partition, &spiffe.partition),
        (
            NamePart::ComponentId,
            &cn.component_id,
            &spiffe.component_id,
        ),
    ] {
        if cn_value != spiffe_value {
            return Err(PeerError::SpiffeCnMismatch {
                part,
                cn: cn_value.clone(),
                spiffe: spiffe_value.clone(),
            });
        }
    }
    Ok(())
}

/// Classify a peer as a platform or tenant identity (CONTRACT §2).
///
/// Platform ⇔ the CN's slug is the reserved slug and the issuer is the platform tenant's CA;
/// such a certificate must carry a SPIFFE ID in the expected trust domain whose slug, partition
/// and component id equal the CN's, and the component type comes from it. Any other slug is a
/// tenant identity, which must carry no SPIFFE ID and whose component type is left `None`.
///
/// # Errors
///
/// In this order: [`PeerError::CaCertificateAsLeaf`];
/// [`PeerError::ReservedSlugNotIssuedByPlatformCa`] or
/// [`PeerError::PlatformCaIssuedTenantName`] when slug and issuer disagree; for platform
/// identities [`PeerError::PlatformCertificateWithoutSpiffe`],
/// [`PeerError::TrustDomainMismatch`] or [`PeerError::SpiffeCnMismatch`]; for tenant identities
/// [`PeerError::TenantCertificateWithSpiffe`].
pub fn classify(peer: &PeerCertificate, ctx: &ClassifyContext) -> Result<PeerIdentity, PeerError> {
    if peer.is_ca {
        return Err(PeerError::CaCertificateAsLeaf);
    }
    let name = &peer.name;
    let reserved = name.tenant_slug == ctx.platform_slug;
    match (reserved, ctx.issued_by_platform_ca) {
        (true, false) => {
            return Err(PeerError::ReservedSlugNotIssuedByPlatformCa {
                slug: name.tenant_slug.clone(),
            });
        }
        (false, true) => {
            return Err(PeerError::PlatformCaIssuedTenantName {
                slug: name.tenant_slug.clone(),
            });
        }
        _ => {}
    }
    let (kind, component_type) = if reserved {
        let spiffe = peer
            .spiffe
            .as_ref()
            .ok_or(PeerError::PlatformCertificateWithoutSpiffe)?;
        if spiffe.trust_domain != ctx.trust_domain {
            return Err(PeerError::TrustDomainMismatch {
                expected: ctx.trust_domain.clone(),
                found: spiffe.trust_domain.clone(),
            });
        }
        spiffe_matches_cn(spiffe, name)?;
        (IdentityKind::Platform, Some(spiffe.component_type))
    } else {
        if peer.spiffe.is_some() {
            return Err(PeerError::TenantCertificateWithSpiffe);
        }
        (IdentityKind::Tenant, None)
    };
    Ok(PeerIdentity {
        kind,
        component_id: name.component_id.clone(),
        partition: name.partition.clone(),
        tenant_slug: name.tenant_slug.clone(),
        component_type,
    })
}
