//! Device uids (`sr:<uuid>`) and the deterministic canonical id of a new device.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::identifier::Identifier;

/// Prefix of every seed string hashed into a canonical device id.
pub const CANONICAL_SEED_PREFIX: &str = "serviceradar-device-v3";

/// The partition used when an update names none.
pub const DEFAULT_PARTITION: &str = "default";

/// A device uid: `sr:` followed by a lower-case hyphenated UUID.
///
/// Ordering follows the UUID bytes, which is also the order of the string form, so rows sorted
/// by either sort the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceUid(Uuid);

/// A string that is not an `sr:<uuid>` device uid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a device uid (expected sr:<uuid>): {0:?}")]
pub struct UidParseError(pub String);

impl DeviceUid {
    /// The string prefix of every uid.
    pub const PREFIX: &'static str = "sr:";

    /// Wraps a UUID.
    pub fn from_uuid(uuid: Uuid) -> Self {
        DeviceUid(uuid)
    }

    /// The UUID part.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// Parses `sr:<uuid>` (surrounding whitespace ignored, any UUID letter case).
    ///
    /// # Errors
    /// [`UidParseError`] when the prefix is missing or the rest is not a UUID.
    pub fn parse(s: &str) -> Result<Self, UidParseError> {
        let trimmed = s.trim();
        trimmed
            .strip_prefix(Self::PREFIX)
            .and_then(|rest| Uuid::try_parse(rest).ok())
            .map(DeviceUid)
            .ok_or_else(|| UidParseError(trimmed.to_owned()))
    }
}

impl fmt::Display for DeviceUid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.0.hyphenated())
    }
}

impl FromStr for DeviceUid {
    type Err = UidParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceUid::parse(s)
    }
}

impl Serialize for DeviceUid {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceUid {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        DeviceUid::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Trims a partition name and maps an empty one to [`DEFAULT_PARTITION`].
pub fn normalize_partition(partition: &str) -> String {
    normalized_partition(partition).to_owned()
}

/// [`normalize_partition`] without the copy.
fn normalized_partition(partition: &str) -> &str {
    let trimmed = partition.trim();
    if trimmed.is_empty() {
        DEFAULT_PARTITION
    } else {
        trimmed
    }
}

/// The exact string hashed by [`canonical_id`].
///
/// `serviceradar-device-v3:partition:<P>:<seeds>` where seeds are the identifiers sorted by
/// priority then value, deduplicated, each as `<prefix>:<value>` (see
/// [`crate::IdentifierKind::seed_prefix`]) concatenated with no separator; with no identifier at
/// all, `serviceradar-device-v3:partition:<P>:ip:<ip>`. The partition is normalised first.
/// Medium-strength (locally administered) MACs are identifiers and therefore seeds too.
pub fn canonical_seed(partition: &str, identifiers: &[Identifier], ip: IpAddr) -> String {
    let mut seed = String::new();
    write_seed(partition, identifiers, ip, &mut |piece| {
        seed.push_str(piece)
    });
    seed
}

/// Feeds [`canonical_seed`] to `out` piece by piece, so [`canonical_id`] can hash it without
/// building it.
fn write_seed(partition: &str, identifiers: &[Identifier], ip: IpAddr, out: &mut impl FnMut(&str)) {
    out(CANONICAL_SEED_PREFIX);
    out(":partition:");
    out(normalized_partition(partition));
    out(":");
    if identifiers.is_empty() {
        out("ip:");
        out(&ip.to_string());
        return;
    }
    let seed = |id: &Identifier| id.seed_pieces().into_iter().for_each(&mut *out);
    // Usually already sorted and without duplicates (`Observation::identifiers` gives them so).
    if identifiers.is_sorted_by(|a, b| a < b) {
        identifiers.iter().for_each(seed);
    } else {
        let mut sorted: Vec<&Identifier> = identifiers.iter().collect();
        sorted.sort();
        sorted.dedup();
        sorted.into_iter().for_each(seed);
    }
}

/// The deterministic uid of a new device with these identifiers (or, with none, this IP).
///
/// sha256 of [`canonical_seed`], first 16 bytes, version nibble forced to 4 (byte 6 =
/// `(b6 & 0x0F) | 0x40`) and RFC 4122 variant (byte 8 = `(b8 & 0x3F) | 0x80`).
pub fn canonical_id(partition: &str, identifiers: &[Identifier], ip: IpAddr) -> DeviceUid {
    let mut hasher = Sha256::new();
    write_seed(partition, identifiers, ip, &mut |piece| {
        hasher.update(piece.as_bytes());
    });
    uid_from_digest(&hasher.finalize())
}

/// The uid derived from an arbitrary seed string (the hashing half of [`canonical_id`]).
pub fn uid_from_seed(seed: &str) -> DeviceUid {
    uid_from_digest(&Sha256::digest(seed.as_bytes()))
}

fn uid_from_digest(digest: &[u8]) -> DeviceUid {
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0F) | 0x40;
    bytes[8] = (bytes[8] & 0x3F) | 0x80;
    DeviceUid(Uuid::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::identifier::IdentifierKind;

    #[test]
    fn contract_vector_for_armis_seed_holds() {
        let uid = uid_from_seed("serviceradar-device-v3:partition:default:armis:1");
        assert_eq!(uid.to_string(), "sr:8c1ab81a-bdf0-4417-ae9a-6678756238b7");
    }

    #[test]
    fn contract_vector_for_ip_seed_holds() {
        let uid = uid_from_seed("serviceradar-device-v3:partition:default:ip:10.0.0.1");
        assert_eq!(uid.to_string(), "sr:e0631a87-8b9f-4201-9a11-2ff7067fbb64");
    }

    #[test]
    fn canonical_id_builds_the_contract_seeds() {
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let armis = Identifier::new(IdentifierKind::ArmisDeviceId, "1").unwrap();
        assert_eq!(
            canonical_id("", std::slice::from_ref(&armis), ip).to_string(),
            "sr:8c1ab81a-bdf0-4417-ae9a-6678756238b7"
        );
        assert_eq!(
            canonical_id("default", &[], ip).to_string(),
            "sr:e0631a87-8b9f-4201-9a11-2ff7067fbb64"
        );
        let mac = Identifier::new(IdentifierKind::Mac, "02:00:00:00:00:01").unwrap();
        let netbox = Identifier::new(IdentifierKind::NetboxDeviceId, "7").unwrap();
        assert_eq!(
            canonical_seed("p1", &[mac.clone(), netbox.clone(), armis.clone()], ip),
            "serviceradar-device-v3:partition:p1:armis:1netbox:7mac:020000000001"
        );
        let integ = Identifier::integration("jamf", "9").unwrap();
        assert_eq!(
            canonical_seed("p1", &[integ], ip),
            "serviceradar-device-v3:partition:p1:integration:jamf:9"
        );
    }

    #[test]
    fn canonical_id_hashes_the_seed_for_any_order_of_identifiers() {
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let armis = Identifier::new(IdentifierKind::ArmisDeviceId, "12").unwrap();
        let mac = Identifier::new(IdentifierKind::Mac, "02:00:00:00:00:09").unwrap();
        let sorted = [armis.clone(), mac.clone()];
        let seed = " p2 ";
        let expected = uid_from_seed(&canonical_seed(seed, &sorted, ip));
        assert_eq!(
            canonical_seed(seed, &sorted, ip),
            "serviceradar-device-v3:partition:p2:armis:12mac:020000000009"
        );
        for ids in [
            vec![armis.clone(), mac.clone()],
            vec![mac.clone(), armis.clone()],
            vec![mac.clone(), armis.clone(), mac.clone(), armis.clone()],
        ] {
            assert_eq!(
                canonical_seed(seed, &ids, ip),
                canonical_seed(seed, &sorted, ip)
            );
            assert_eq!(canonical_id(seed, &ids, ip), expected, "{ids:?}");
        }
        assert_eq!(
            canonical_id("  ", &[], ip),
            uid_from_seed("serviceradar-device-v3:partition:default:ip:10.0.0.9")
        );
    }

    #[test]
    fn device_uid_round_trips_through_string_and_json() {
        let uid = uid_from_seed("x");
        let parsed: DeviceUid = uid.to_string().parse().unwrap();
        assert_eq!(parsed, uid);
        let json = serde_json::to_string(&uid).unwrap();
        assert_eq!(json, format!("\"{uid}\""));
        assert_eq!(serde_json::from_str::<DeviceUid>(&json).unwrap(), uid);
        assert!(DeviceUid::parse("default:10.0.0.1").is_err());
        assert!(DeviceUid::parse("8c1ab81a-bdf0-4417-ae9a-6678756238b7").is_err());
    }

    #[test]
    fn uid_order_matches_string_order() {
        let mut uids: Vec<DeviceUid> = (0..50).map(|i| uid_from_seed(&i.to_string())).collect();
        let mut strings: Vec<String> = uids.iter().map(ToString::to_string).collect();
        uids.sort();
        strings.sort();
        let from_uids: Vec<String> = uids.iter().map(ToString::to_string).collect();
        assert_eq!(from_uids, strings);
    }
}
