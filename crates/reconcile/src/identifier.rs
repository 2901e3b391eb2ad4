//! Identifier kinds, their strength, and MAC normalisation.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The kinds of identifier DIRE keys devices by, declared strongest first.
///
/// The derived `Ord` is the priority order (`AgentId` < `ArmisDeviceId` < … < `Mac`), so sorted
/// collections of identifiers list the highest-priority ones first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierKind {
    /// `agent_id` of a `self-reported` update (an agent describing its own host).
    AgentId,
    /// Metadata `armis_device_id`.
    ArmisDeviceId,
    /// Metadata `integration_id` of any other integration type, namespaced `<type>:<id>`.
    IntegrationId,
    /// Metadata `netbox_device_id`.
    NetboxDeviceId,
    /// Normalised MAC address (12 upper-case hex digits, no separators).
    Mac,
}

impl IdentifierKind {
    /// Every kind, highest priority first.
    pub const ALL: [IdentifierKind; 5] = [
        IdentifierKind::AgentId,
        IdentifierKind::ArmisDeviceId,
        IdentifierKind::IntegrationId,
        IdentifierKind::NetboxDeviceId,
        IdentifierKind::Mac,
    ];

    /// Stable name for storage (the `type` column of the identifier table).
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::AgentId => "agent_id",
            IdentifierKind::ArmisDeviceId => "armis_device_id",
            IdentifierKind::IntegrationId => "integration_id",
            IdentifierKind::NetboxDeviceId => "netbox_device_id",
            IdentifierKind::Mac => "mac",
        }
    }

    /// Prefix of this kind in the canonical-id seed (`agent`, `armis`, `integration`, `netbox`, `mac`).
    pub fn seed_prefix(self) -> &'static str {
        match self {
            IdentifierKind::AgentId => "agent",
            IdentifierKind::ArmisDeviceId => "armis",
            IdentifierKind::IntegrationId => "integration",
            IdentifierKind::NetboxDeviceId => "netbox",
            IdentifierKind::Mac => "mac",
        }
    }

    /// Priority rank: 0 is the strongest kind.
    pub fn priority(self) -> u8 {
        match self {
            IdentifierKind::AgentId => 0,
            IdentifierKind::ArmisDeviceId => 1,
            IdentifierKind::IntegrationId => 2,
            IdentifierKind::NetboxDeviceId => 3,
            IdentifierKind::Mac => 4,
        }
    }
}

impl fmt::Display for IdentifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IdentifierKind {
    type Err = IdentifierError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IdentifierKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| IdentifierError::UnknownKind(s.to_owned()))
    }
}

/// How much an identifier is trusted.
///
/// Ordered `Weak < Medium < Strong`. Only `Strong` identifiers can justify merging devices; a
/// `Medium` one (a locally administered MAC) still finds an existing device and seeds a new id,
/// but never merges two devices that each have strong identity. `Weak` is the IP address, which
/// is not an [`Identifier`] at all: it is consulted only for updates without strong identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strength {
    /// The IP address.
    Weak,
    /// A locally administered MAC address.
    Medium,
    /// Every other identifier.
    Strong,
}

/// Why an identifier could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    /// The kind name is not one of [`IdentifierKind::as_str`].
    #[error("unknown identifier kind {0:?}")]
    UnknownKind(String),
    /// The value is empty after trimming.
    #[error("empty {0} identifier")]
    Empty(IdentifierKind),
    /// A MAC value is not exactly one valid unicast MAC address.
    #[error("invalid MAC address {0:?}")]
    InvalidMac(String),
    /// An integration id is not of the form `<integration_type>:<id>`.
    #[error("integration identifier {0:?} is not namespaced as <integration_type>:<id>")]
    UnnamespacedIntegration(String),
}

/// One identifier of a device: `(kind, normalised value)`.
///
/// The value is normalised on construction (trimmed; MACs as 12 upper-case hex digits; integration
/// ids as `<lower-case type>:<id>`), so equal identities compare equal. Ordering is by kind
/// (priority) then value. Storage key: `(tenant_id, partition, kind.as_str(), value)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawIdentifier", into = "RawIdentifier")]
pub struct Identifier {
    kind: IdentifierKind,
    value: String,
}

#[derive(Serialize, Deserialize)]
struct RawIdentifier {
    kind: IdentifierKind,
    value: String,
}

impl TryFrom<RawIdentifier> for Identifier {
    type Error = IdentifierError;
    fn try_from(raw: RawIdentifier) -> Result<Self, Self::Error> {
        Identifier::new(raw.kind, &raw.value)
    }
}

impl From<Identifier> for RawIdentifier {
    fn from(id: Identifier) -> Self {
        RawIdentifier {
            kind: id.kind,
            value: id.value,
        }
    }
}

impl Identifier {
    /// Builds an identifier, normalising `value` for its kind.
    ///
    /// # Errors
    /// [`IdentifierError::Empty`] for an empty value, [`IdentifierError::InvalidMac`] for a MAC
    /// that is not exactly one valid unicast address, [`IdentifierError::UnnamespacedIntegration`]
    /// for an integration id without a `<type>:` namespace.
    pub fn new(kind: IdentifierKind, value: &str) -> Result<Self, IdentifierError> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Err(IdentifierError::Empty(kind));
        }
        let value = match kind {
            IdentifierKind::Mac => MacAddr::parse(trimmed)
                .ok_or_else(|| IdentifierError::InvalidMac(trimmed.to_owned()))?
                .normalized(),
            IdentifierKind::IntegrationId => {
                let (ty, id) = trimmed
                    .split_once(':')
                    .map(|(t, i)| (t.trim(), i.trim()))
                    .filter(|(t, i)| !t.is_empty() && !i.is_empty())
                    .ok_or_else(|| IdentifierError::UnnamespacedIntegration(trimmed.to_owned()))?;
                format!("{}:{id}", ty.to_ascii_lowercase())
            }
            _ => trimmed.to_owned(),
        };
        Ok(Identifier { kind, value })
    }

    /// A MAC identifier from an already parsed address (infallible).
    pub fn from_mac(mac: MacAddr) -> Self {
        Identifier {
            kind: IdentifierKind::Mac,
            value: mac.normalized(),
        }
    }

    /// An integration identifier `<integration_type>:<id>`.
    ///
    /// # Errors
    /// As [`Identifier::new`] when either part is empty.
    pub fn integration(integration_type: &str, id: &str) -> Result<Self, IdentifierError> {
        let (ty, id) = (integration_type.trim(), id.trim());
        if ty.is_empty() || id.is_empty() {
            return Err(IdentifierError::UnnamespacedIntegration(format!(
                "{ty}:{id}"
            )));
        }
        Identifier::new(IdentifierKind::IntegrationId, &format!("{ty}:{id}"))
    }

    /// The kind.
    pub fn kind(&self) -> IdentifierKind {
        self.kind
    }

    /// The normalised value.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// `Medium` for a locally administered MAC, `Strong` for everything else.
    pub fn strength(&self) -> Strength {
        // A MAC value is normalised: its second hex digit carries the locally-administered bit.
        let local = self.kind == IdentifierKind::Mac
            && self
                .value
                .as_bytes()
                .get(1)
                .and_then(|&b| hex_value(b))
                .is_some_and(|nibble| nibble & 0x02 != 0);
        if local {
            Strength::Medium
        } else {
            Strength::Strong
        }
    }

    /// The MAC address for a `Mac` identifier.
    pub fn mac(&self) -> Option<MacAddr> {
        match self.kind {
            IdentifierKind::Mac => MacAddr::parse(&self.value),
            _ => None,
        }
    }

    /// The seed fragment used by [`crate::canonical_id`], `<prefix>:<value>`, in pieces (the
    /// id is hashed from them without building the string).
    pub fn seed_pieces(&self) -> [&str; 3] {
        [self.kind.seed_prefix(), ":", &self.value]
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.kind.as_str(), self.value)
    }
}

/// A unicast MAC-48 address.
///
/// Displayed in the DeviceUpdate wire form `AA:BB:CC:DD:EE:FF`; used as an identifier in the
/// normalised form `AABBCCDDEEFF` ([`MacAddr::normalized`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr([u8; 6]);

impl MacAddr {
    /// Builds an address from its octets (no validity filter).
    pub fn from_octets(octets: [u8; 6]) -> Self {
        MacAddr(octets)
    }

    /// Parses exactly one MAC address.
    ///
    /// Trims, drops the separators `:`, `-` and `.`, and requires 12 hex digits. Returns `None`
    /// for anything else, and also for addresses that cannot identify one device: all zeros,
    /// broadcast and multicast (first octet & 0x01). A value holding several MACs is `None` here;
    /// see [`MacAddr::parse_first`].
    pub fn parse(s: &str) -> Option<Self> {
        let digits: Vec<u8> = s
            .trim()
            .bytes()
            .filter(|b| !matches!(b, b':' | b'-' | b'.'))
            .collect();
        if digits.len() != 12 {
            return None;
        }
        let mut octets = [0u8; 6];
        for (i, pair) in digits.chunks_exact(2).enumerate() {
            let hi = hex_value(pair[0])?;
            let lo = hex_value(pair[1])?;
            octets[i] = (hi << 4) | lo;
        }
        let mac = MacAddr(octets);
        mac.is_unicast_device_address().then_some(mac)
    }

    /// The first valid MAC of a field that may hold a list (`"aa:bb:…,cc:dd:…"`, separated by
    /// commas, semicolons or whitespace). The list itself is never treated as one identifier.
    pub fn parse_first(s: &str) -> Option<Self> {
        s.split(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .filter(|part| !part.is_empty())
            .find_map(MacAddr::parse)
    }

    /// The six octets.
    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// True when the locally-administered bit (first octet & 0x02) is set.
    pub fn is_locally_administered(&self) -> bool {
        self.0[0] & 0x02 != 0
    }

    /// 12 upper-case hex digits without separators (the identifier value).
    pub fn normalized(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        let mut out = String::with_capacity(12);
        for b in self.0 {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0x0F)]));
        }
        out
    }

    fn is_unicast_device_address(&self) -> bool {
        self.0 != [0; 6] && self.0[0] & 0x01 == 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02X}:{:02X}:{:02X}:{:02X}:{:02X}:{:02X}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        MacAddr::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("invalid MAC {s:?}")))
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn mac_forms_normalise_to_the_same_identifier() {
        let table = [
            "aa:bb:cc:dd:ee:f0",
            "AA-BB-CC-DD-EE-F0",
            "aabb.ccdd.eef0",
            "  AABBCCDDEEF0 ",
        ];
        for input in table {
            let id = Identifier::new(IdentifierKind::Mac, input).unwrap();
            assert_eq!(id.value(), "AABBCCDDEEF0", "input {input:?}");
        }
    }

    #[test]
    fn invalid_and_non_unicast_macs_are_rejected() {
        let table = [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "zz:bb:cc:dd:ee:ff",
            "00:00:00:00:00:00",
            "ff:ff:ff:ff:ff:ff",
            "01:00:5e:00:00:01",
            "aa:bb:cc:dd:ee:f0,11:22:33:44:55:66",
        ];
        for input in table {
            assert_eq!(MacAddr::parse(input), None, "input {input:?}");
        }
    }

    #[test]
    fn first_valid_mac_of_a_list_is_taken() {
        let mac =
            MacAddr::parse_first("garbage, 00:00:00:00:00:00; a8:bb:cc:dd:ee:f0 10:22:33:44:55:66")
                .unwrap();
        assert_eq!(mac.to_string(), "A8:BB:CC:DD:EE:F0");
    }

    #[test]
    fn locally_administered_mac_is_medium_strength() {
        let local = Identifier::new(IdentifierKind::Mac, "02:00:00:00:00:01").unwrap();
        let global = Identifier::new(IdentifierKind::Mac, "00:1b:21:00:00:01").unwrap();
        assert_eq!(local.strength(), Strength::Medium);
        assert_eq!(global.strength(), Strength::Strong);
        let armis = Identifier::new(IdentifierKind::ArmisDeviceId, "42").unwrap();
        assert_eq!(armis.strength(), Strength::Strong);
    }

    #[test]
    fn integration_ids_are_namespaced_by_lower_case_type() {
        let id = Identifier::integration("ServiceNow", " 42 ").unwrap();
        assert_eq!(id.value(), "servicenow:42");
        assert!(Identifier::new(IdentifierKind::IntegrationId, "42").is_err());
        assert!(Identifier::new(IdentifierKind::IntegrationId, ":42").is_err());
    }

    #[test]
    fn identifier_kinds_round_trip_through_their_storage_names() {
        for kind in IdentifierKind::ALL {
            assert_eq!(kind.as_str().parse::<IdentifierKind>().unwrap(), kind);
        }
        assert!("ip".parse::<IdentifierKind>().is_err());
        let mut sorted = IdentifierKind::ALL;
        sorted.sort();
        assert_eq!(sorted, IdentifierKind::ALL);
    }
}
