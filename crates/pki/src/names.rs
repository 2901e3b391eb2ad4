//! Names carried by ServiceRadar certificates: tenant slugs, the component common name and the
//! SPIFFE URI of platform components (CONTRACT §2).
//!
//! Everything here is hand-checked character by character; nothing allocates beyond the parsed
//! result, and no input makes these functions panic.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Trust domain used in platform SPIFFE IDs unless configured otherwise.
pub const DEFAULT_TRUST_DOMAIN: &str = "serviceradar.local";

/// Tenant slug reserved for the platform tenant unless configured otherwise.
pub const DEFAULT_PLATFORM_SLUG: &str = "platform";

/// Last part of every component common name.
pub const CN_SUFFIX: &str = "serviceradar";

/// Longest allowed tenant slug, component id or partition, in bytes.
pub const MAX_PART_LEN: usize = 63;

/// Longest allowed SPIFFE trust domain, in bytes (the SPIFFE specification's limit).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

const SPIFFE_SCHEME: &str = "spiffe://";

/// Longest excerpt of untrusted input echoed back inside an error message.
const MAX_ECHO_LEN: usize = 64;

/// A named part of a common name or SPIFFE ID, used to say where a [`NameError`] was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NamePart {
    /// The component id (first CN part, last SPIFFE segment).
    ComponentId,
    /// The partition.
    Partition,
    /// The tenant slug.
    TenantSlug,
    /// The fixed `serviceradar` suffix of a common name.
    Suffix,
    /// The component type segment of a SPIFFE ID.
    ComponentType,
}

impl NamePart {
    /// The field name as written in the contract (`component_id`, `tenant_slug`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ComponentId => "component_id",
            Self::Partition => "partition",
            Self::TenantSlug => "tenant_slug",
            Self::Suffix => "suffix",
            Self::ComponentType => "component_type",
        }
    }
}

impl fmt::Display for NamePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a tenant slug failed `^[a-z0-9-]{1,63}$`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlugProblem {
    /// The slug is empty.
    Empty,
    /// The slug is longer than 63 bytes.
    TooLong {
        /// Length found, in bytes.
        len: usize,
    },
    /// The slug contains a character outside `a-z`, `0-9` and `-`.
    InvalidChar {
        /// First offending character.
        found: char,
    },
}

impl fmt::Display for SlugProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("it is empty"),
            Self::TooLong { len } => {
                write!(
                    f,
                    "it is {len} bytes long; at most {MAX_PART_LEN} are allowed"
                )
            }
            Self::InvalidChar { found } => write!(
                f,
                "character {found:?} is not allowed (only a-z, 0-9 and '-')"
            ),
        }
    }
}

/// A name that does not have the shape the contract requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The common name does not split into exactly four dot-separated parts.
    #[error(
        "common name must have exactly 4 dot-separated parts \
         (<component_id>.<partition>.<tenant_slug>.serviceradar), found {found}"
    )]
    WrongPartCount {
        /// Number of parts found.
        found: usize,
    },
    /// The last common-name part is not exactly `serviceradar`.
    #[error("common name must end in \".serviceradar\", found suffix {found:?}")]
    WrongSuffix {
        /// The suffix found (clipped to 64 bytes).
        found: String,
    },
    /// A common-name part is empty.
    #[error("common name part {which} is empty")]
    EmptyPart {
        /// Which part.
        which: NamePart,
    },
    /// A component id or partition contains a character outside `[A-Za-z0-9_-]`.
    #[error("{which} contains {found:?}; only A-Z, a-z, 0-9, '_' and '-' are allowed")]
    InvalidChars {
        /// Which part.
        which: NamePart,
        /// First offending character.
        found: char,
    },
    /// A component id or partition is longer than 63 bytes.
    #[error("{which} is {len} bytes long; at most 63 are allowed")]
    TooLong {
        /// Which part.
        which: NamePart,
        /// Length found, in bytes.
        len: usize,
    },
    /// A tenant slug does not match `^[a-z0-9-]{1,63}$`.
    #[error("invalid tenant slug: {problem}")]
    InvalidSlug {
        /// What is wrong with it.
        problem: SlugProblem,
    },
    /// A component type is not one of the contract's names.
    #[error(
        "unknown component type {found:?} \
         (expected agent, sync, gateway, identity, dire, sweepgen or events)"
    )]
    UnknownComponentType {
        /// The name found (clipped to 64 bytes).
        found: String,
    },
    /// A SPIFFE ID does not start with the lower-case `spiffe://` scheme.
    #[error("SPIFFE ID must start with \"spiffe://\"")]
    SpiffeWrongScheme,
    /// A SPIFFE ID has no trust domain.
    #[error("SPIFFE ID has an empty trust domain")]
    SpiffeEmptyTrustDomain,
    /// A SPIFFE trust domain contains a character outside `[a-z0-9._-]`.
    #[error("SPIFFE trust domain contains {found:?}; only a-z, 0-9, '.', '-' and '_' are allowed")]
    SpiffeTrustDomainInvalidChar {
        /// First offending character.
        found: char,
    },
    /// A SPIFFE trust domain is longer than 255 bytes.
    #[error("SPIFFE trust domain is {len} bytes long; at most 255 are allowed")]
    SpiffeTrustDomainTooLong {
        /// Length found, in bytes.
        len: usize,
    },
    /// A SPIFFE path does not have exactly four segments.
    #[error(
        "SPIFFE ID path must have exactly 4 segments \
         (<component_type>/<tenant_slug>/<partition>/<component_id>), found {found}"
    )]
    SpiffeWrongSegmentCount {
        /// Number of segments found.
        found: usize,
    },
    /// A SPIFFE path segment is empty.
    #[error("SPIFFE ID segment {which} is empty")]
    SpiffeEmptySegment {
        /// Which segment.
        which: NamePart,
    },
    /// A SPIFFE ID carries a query string.
    #[error("SPIFFE ID must not contain a query ('?')")]
    SpiffeQuery,
    /// A SPIFFE ID carries a fragment.
    #[error("SPIFFE ID must not contain a fragment ('#')")]
    SpiffeFragment,
    /// A SPIFFE ID uses percent-encoding.
    #[error("SPIFFE ID must not contain percent-encoding ('%')")]
    SpiffePercentEncoded,
    /// A CA common name is not of the form `<slug> tenant CA`.
    #[error("CA common name {found:?} is not of the form \"<slug> tenant CA\"")]
    NotATenantCaName {
        /// The name found (clipped to 64 bytes).
        found: String,
    },
}

/// Check a tenant slug against `^[a-z0-9-]{1,63}$`.
///
/// # Errors
///
/// [`NameError::InvalidSlug`] saying whether the slug is empty, too long or holds a forbidden
/// character.
pub fn validate_slug(slug: &str) -> Result<(), NameError> {
    let problem = if slug.is_empty() {
        Some(SlugProblem::Empty)
    } else if slug.len() > MAX_PART_LEN {
        Some(SlugProblem::TooLong { len: slug.len() })
    } else {
        slug.chars()
            .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '-'))
            .map(|found| SlugProblem::InvalidChar { found })
    };
    match problem {
        Some(problem) => Err(NameError::InvalidSlug { problem }),
        None => Ok(()),
    }
}

/// Check a component id or partition: 1..=63 bytes of `[A-Za-z0-9_-]`.
fn validate_part(which: NamePart, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::EmptyPart { which });
    }
    if value.len() > MAX_PART_LEN {
        return Err(NameError::TooLong {
            which,
            len: value.len(),
        });
    }
    match value
        .chars()
        .find(|c| !matches!(c, 'A'..='Z' | 'a'..='z' | '0'..='9' | '_' | '-'))
    {
        Some(found) => Err(NameError::InvalidChars { which, found }),
        None => Ok(()),
    }
}

/// Check a tenant slug in a position where emptiness is reported by position.
fn validate_slug_part(value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::EmptyPart {
            which: NamePart::TenantSlug,
        });
    }
    validate_slug(value)
}

fn validate_trust_domain(trust_domain: &str) -> Result<(), NameError> {
    if trust_domain.is_empty() {
        return Err(NameError::SpiffeEmptyTrustDomain);
    }
    if trust_domain.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(NameError::SpiffeTrustDomainTooLong {
            len: trust_domain.len(),
        });
    }
    match trust_domain
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_'))
    {
        Some(found) => Err(NameError::SpiffeTrustDomainInvalidChar { found }),
        None => Ok(()),
    }
}

/// Untrusted text echoed inside an error, cut to a bounded length on a char boundary.
fn clip(value: &str) -> String {
    if value.len() <= MAX_ECHO_LEN {
        return value.to_owned();
    }
    let mut end = MAX_ECHO_LEN;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}

/// The kind of ServiceRadar component a certificate identifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentType {
    /// An agent (`agent`).
    Agent,
    /// A sync service (`sync`).
    Sync,
    /// The agent gateway (`gateway`).
    Gateway,
    /// The identity service (`identity`).
    Identity,
    /// The device identity reconciliation service (`dire`).
    Dire,
    /// The sweep config generator (`sweepgen`).
    Sweepgen,
    /// The events service (`events`).
    Events,
}

impl ComponentType {
    /// Every component type, in contract order.
    pub const ALL: [ComponentType; 7] = [
        Self::Agent,
        Self::Sync,
        Self::Gateway,
        Self::Identity,
        Self::Dire,
        Self::Sweepgen,
        Self::Events,
    ];

    /// The lower-case name used in SPIFFE IDs and serialised forms.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Sync => "sync",
            Self::Gateway => "gateway",
            Self::Identity => "identity",
            Self::Dire => "dire",
            Self::Sweepgen => "sweepgen",
            Self::Events => "events",
        }
    }
}

impl fmt::Display for ComponentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ComponentType {
    type Err = NameError;

    /// Parse the exact lower-case name; `Agent` or `AGENT` are rejected.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| NameError::UnknownComponentType { found: clip(s) })
    }
}

/// The identity in a component certificate's common name:
/// `<component_id>.<partition>.<tenant_slug>.serviceradar`.
///
/// The fields are public for matching; values built by hand are checked again by
/// [`ComponentName::validate`] wherever they are turned into a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ComponentNameFields")]
pub struct ComponentName {
    /// Component id: 1..=63 bytes of `[A-Za-z0-9_-]`.
    pub component_id: String,
    /// Partition: 1..=63 bytes of `[A-Za-z0-9_-]`.
    pub partition: String,
    /// Tenant slug: `^[a-z0-9-]{1,63}$`.
    pub tenant_slug: String,
}

impl ComponentName {
    /// Build a checked name.
    ///
    /// # Errors
    ///
    /// The first [`NameError`] found, checking component id, partition, then tenant slug.
    pub fn new(
        component_id: impl Into<String>,
        partition: impl Into<String>,
        tenant_slug: impl Into<String>,
    ) -> Result<Self, NameError> {
        let name = Self {
            component_id: component_id.into(),
            partition: partition.into(),
            tenant_slug: tenant_slug.into(),
        };
        name.validate()?;
        Ok(name)
    }

    /// Parse a certificate common name.
    ///
    /// # Errors
    ///
    /// [`NameError::WrongPartCount`] unless there are exactly four dot-separated parts (so a
    /// dot inside a part always shows up here); then [`NameError::EmptyPart`] or
    /// [`NameError::WrongSuffix`] for the last part; then the first problem in the component
    /// id, partition and tenant slug, in that order.
    pub fn parse_cn(cn: &str) -> Result<Self, NameError> {
        let mut parts = cn.split('.');
        let (Some(component_id), Some(partition), Some(tenant_slug), Some(suffix), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(NameError::WrongPartCount {
                found: cn.split('.').count(),
            });
        };
        if suffix.is_empty() {
            return Err(NameError::EmptyPart {
                which: NamePart::Suffix,
            });
        }
        if suffix != CN_SUFFIX {
            return Err(NameError::WrongSuffix {
                found: clip(suffix),
            });
        }
        Self::new(component_id, partition, tenant_slug)
    }

    /// Check every field.
    ///
    /// # Errors
    ///
    /// The first [`NameError`] found, checking component id, partition, then tenant slug.
    pub fn validate(&self) -> Result<(), NameError> {
        validate_part(NamePart::ComponentId, &self.component_id)?;
        validate_part(NamePart::Partition, &self.partition)?;
        validate_slug_part(&self.tenant_slug)
    }

    /// The common name, `<component_id>.<partition>.<tenant_slug>.serviceradar`.
    #[must_use]
    pub fn to_cn(&self) -> String {
        format!(
            "{}.{}.{}.{CN_SUFFIX}",
            self.component_id, self.partition, self.tenant_slug
        )
    }
}

/// Unchecked wire form of [`ComponentName`]; deserialising goes through it so that a
/// deserialised name is always a valid one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ComponentNameFields {
    component_id: String,
    partition: String,
    tenant_slug: String,
}

impl TryFrom<ComponentNameFields> for ComponentName {
    type Error = NameError;

    fn try_from(f: ComponentNameFields) -> Result<Self, Self::Error> {
        Self::new(f.component_id, f.partition, f.tenant_slug)
    }
}

/// Parse a certificate common name; see [`ComponentName::parse_cn`].
///
/// # Errors
///
/// As [`ComponentName::parse_cn`].
pub fn parse_cn(cn: &str) -> Result<ComponentName, NameError> {
    ComponentName::parse_cn(cn)
}

impl fmt::Display for ComponentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_cn())
    }
}

impl FromStr for ComponentName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_cn(s)
    }
}

/// A platform component's SPIFFE ID:
/// `spiffe://<trust_domain>/<component_type>/<tenant_slug>/<partition>/<component_id>`.
///
/// The fields are public for matching; values built by hand are checked again by
/// [`SpiffeId::validate`] wherever they are turned into a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "SpiffeIdFields")]
pub struct SpiffeId {
    /// Trust domain: 1..=255 bytes of `[a-z0-9._-]`.
    pub trust_domain: String,
    /// Component type.
    pub component_type: ComponentType,
    /// Tenant slug: `^[a-z0-9-]{1,63}$`.
    pub tenant_slug: String,
    /// Partition: 1..=63 bytes of `[A-Za-z0-9_-]`.
    pub partition: String,
    /// Component id: 1..=63 bytes of `[A-Za-z0-9_-]`.
    pub component_id: String,
}

impl SpiffeId {
    /// Build the SPIFFE ID that matches a component's common name.
    ///
    /// # Errors
    ///
    /// A [`NameError`] if the trust domain or any part of `name` is invalid.
    pub fn for_component(
        trust_domain: impl Into<String>,
        component_type: ComponentType,
        name: &ComponentName,
    ) -> Result<Self, NameError> {
        let id = Self {
            trust_domain: trust_domain.into(),
            component_type,
            tenant_slug: name.tenant_slug.clone(),
            partition: name.partition.clone(),
            component_id: name.component_id.clone(),
        };
        id.validate()?;
        Ok(id)
    }

    /// Parse a SPIFFE URI.
    ///
    /// # Errors
    ///
    /// In this order: [`NameError::SpiffeWrongScheme`] unless it starts with lower-case
    /// `spiffe://`; [`NameError::SpiffeQuery`], [`NameError::SpiffeFragment`] or
    /// [`NameError::SpiffePercentEncoded`] for `?`, `#` or `%` anywhere; a trust-domain error;
    /// [`NameError::SpiffeWrongSegmentCount`] unless the path has exactly four segments;
    /// [`NameError::SpiffeEmptySegment`]; then the first invalid segment.
    pub fn parse(uri: &str) -> Result<Self, NameError> {
        let rest = uri
            .strip_prefix(SPIFFE_SCHEME)
            .ok_or(NameError::SpiffeWrongScheme)?;
        if rest.contains('?') {
            return Err(NameError::SpiffeQuery);
        }
        if rest.contains('#') {
            return Err(NameError::SpiffeFragment);
        }
        if rest.contains('%') {
            return Err(NameError::SpiffePercentEncoded);
        }
        let (trust_domain, path) = match rest.split_once('/') {
            Some((trust_domain, path)) => (trust_domain, Some(path)),
            None => (rest, None),
        };
        validate_trust_domain(trust_domain)?;
        let Some(path) = path else {
            return Err(NameError::SpiffeWrongSegmentCount { found: 0 });
        };
        let segments: Vec<&str> = path.split('/').collect();
        let [component_type, tenant_slug, partition, component_id] = segments[..] else {
            return Err(NameError::SpiffeWrongSegmentCount {
                found: segments.len(),
            });
        };
        for (which, segment) in [
            (NamePart::ComponentType, component_type),
            (NamePart::TenantSlug, tenant_slug),
            (NamePart::Partition, partition),
            (NamePart::ComponentId, component_id),
        ] {
            if segment.is_empty() {
                return Err(NameError::SpiffeEmptySegment { which });
            }
        }
        let id = Self {
            trust_domain: trust_domain.to_owned(),
            component_type: component_type.parse()?,
            tenant_slug: tenant_slug.to_owned(),
            partition: partition.to_owned(),
            component_id: component_id.to_owned(),
        };
        id.validate()?;
        Ok(id)
    }

    /// Check every field.
    ///
    /// # Errors
    ///
    /// The first [`NameError`] found, checking trust domain, tenant slug, partition, then
    /// component id (path order).
    pub fn validate(&self) -> Result<(), NameError> {
        validate_trust_domain(&self.trust_domain)?;
        validate_slug_part(&self.tenant_slug)?;
        validate_part(NamePart::Partition, &self.partition)?;
        validate_part(NamePart::ComponentId, &self.component_id)
    }

    /// The URI form.
    #[must_use]
    pub fn to_uri(&self) -> String {
        format!(
            "{SPIFFE_SCHEME}{}/{}/{}/{}/{}",
            self.trust_domain,
            self.component_type,
            self.tenant_slug,
            self.partition,
            self.component_id
        )
    }

    /// The component name this ID refers to (what its certificate's CN must equal).
    #[must_use]
    pub fn component_name(&self) -> ComponentName {
        ComponentName {
            component_id: self.component_id.clone(),
            partition: self.partition.clone(),
            tenant_slug: self.tenant_slug.clone(),
        }
    }
}

/// Unchecked wire form of [`SpiffeId`]; deserialising goes through it so that a deserialised
/// ID is always a valid one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpiffeIdFields {
    trust_domain: String,
    component_type: ComponentType,
    tenant_slug: String,
    partition: String,
    component_id: String,
}

impl TryFrom<SpiffeIdFields> for SpiffeId {
    type Error = NameError;

    fn try_from(f: SpiffeIdFields) -> Result<Self, Self::Error> {
        let id = Self {
            trust_domain: f.trust_domain,
            component_type: f.component_type,
            tenant_slug: f.tenant_slug,
            partition: f.partition,
            component_id: f.component_id,
        };
        id.validate()?;
        Ok(id)
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

impl FromStr for SpiffeId {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Common name of a tenant's intermediate CA: `<slug> tenant CA`.
#[must_use]
pub fn tenant_ca_common_name(tenant_slug: &str) -> String {
    format!("{tenant_slug}{TENANT_CA_CN_SUFFIX}")
}

/// Suffix that marks a tenant CA's common name.
pub const TENANT_CA_CN_SUFFIX: &str = " tenant CA";

/// The tenant slug named by a tenant CA's common name (`<slug> tenant CA`).
///
/// # Errors
///
/// [`NameError::NotATenantCaName`] if the name does not end in ` tenant CA`, or
/// [`NameError::InvalidSlug`] if what precedes it is not a valid slug.
pub fn parse_tenant_ca_common_name(cn: &str) -> Result<&str, NameError> {
    let slug = cn
        .strip_suffix(TENANT_CA_CN_SUFFIX)
        .ok_or_else(|| NameError::NotATenantCaName { found: clip(cn) })?;
    validate_slug(slug)?;
    Ok(slug)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn clip_never_splits_a_multibyte_character() {
        let long = "é".repeat(100);
        let clipped = clip(&long);
        assert!(clipped.len() <= MAX_ECHO_LEN + '…'.len_utf8());
        assert!(clipped.ends_with('…'));
        assert_eq!(clip("short"), "short");
    }

    #[test]
    fn tenant_ca_common_name_round_trips_through_its_parser() {
        let cn = tenant_ca_common_name("acme-1");
        assert_eq!(cn, "acme-1 tenant CA");
        assert_eq!(parse_tenant_ca_common_name(&cn).unwrap(), "acme-1");
        assert!(matches!(
            parse_tenant_ca_common_name("ServiceRadar Root CA"),
            Err(NameError::NotATenantCaName { .. })
        ));
        assert!(matches!(
            parse_tenant_ca_common_name("Acme tenant CA"),
            Err(NameError::InvalidSlug { .. })
        ));
    }
}
