//! The wire `DeviceUpdate` and its normalised form, [`Observation`].

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use sr_core::inventory::{SweepHint, meta};

use crate::identifier::{Identifier, IdentifierKind, MacAddr, Strength};
use crate::uid::{DeviceUid, normalize_partition};

/// The `source` value of an update in which an agent describes its own host; only then is
/// `agent_id` an identifier.
pub const SELF_REPORTED_SOURCE: &str = "self-reported";

/// Metadata key of the Armis device id.
pub const META_ARMIS_DEVICE_ID: &str = "armis_device_id";
/// Metadata key of the NetBox device id.
pub const META_NETBOX_DEVICE_ID: &str = "netbox_device_id";
/// Metadata key of a generic integration's device id.
pub const META_INTEGRATION_ID: &str = "integration_id";
/// Metadata key of the integration type (`armis`, `netbox`, …).
pub const META_INTEGRATION_TYPE: &str = "integration_type";

/// One `DeviceUpdate` JSON element exactly as it travels (CONTRACT §1), before validation.
///
/// Every field is optional on the wire: a missing field, or a JSON `null` (Go encodes a nil map
/// as `null`), takes the default (empty string, empty map, `None`). Unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceUpdateFields {
    /// `sr:` uid when the sender knows it; usually empty.
    #[serde(deserialize_with = "null_as_default")]
    pub device_id: String,
    /// Required IP address.
    #[serde(deserialize_with = "null_as_default")]
    pub ip: String,
    /// `armis`, `netbox`, `sweep`, `self-reported`, …
    #[serde(deserialize_with = "null_as_default")]
    pub source: String,
    /// The agent that should sweep the device (an identifier only when self-reported).
    #[serde(deserialize_with = "null_as_default")]
    pub agent_id: String,
    /// The gateway the update came through.
    #[serde(deserialize_with = "null_as_default")]
    pub gateway_id: String,
    /// Partition; empty means `default`.
    #[serde(deserialize_with = "null_as_default")]
    pub partition: String,
    /// RFC 3339 sighting time.
    #[serde(deserialize_with = "null_as_default")]
    pub timestamp: String,
    /// Host name; empty means absent.
    #[serde(deserialize_with = "null_as_default")]
    pub hostname: String,
    /// MAC address (normally one, upper-case colon form).
    #[serde(deserialize_with = "null_as_default")]
    pub mac: String,
    /// Source-specific metadata (`armis_device_id`, `netbox_device_id`, `query_label`, …).
    #[serde(deserialize_with = "null_as_default")]
    pub metadata: BTreeMap<String, String>,
    /// Availability; `None` (absent or null) means "leave as is".
    pub is_available: Option<bool>,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Why an update cannot be reconciled. The caller drops (and counts) such updates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// `ip` is empty.
    #[error("update has no ip")]
    MissingIp,
    /// `ip` is not an IPv4 or IPv6 address.
    #[error("update ip {0:?} is not an IP address")]
    InvalidIp(String),
    /// `timestamp` is empty (or Go's zero time) and no fallback time was given.
    #[error("update has no timestamp")]
    MissingTimestamp,
    /// `timestamp` is not RFC 3339.
    #[error("update timestamp {0:?} is not RFC 3339")]
    InvalidTimestamp(String),
    /// The array element is not a DeviceUpdate object.
    #[error("update is not a DeviceUpdate object: {0}")]
    Malformed(String),
}

/// A `message` payload that is not a JSON array.
#[derive(Debug, thiserror::Error)]
#[error("device update payload is not a JSON array: {0}")]
pub struct DecodeError(#[from] serde_json::Error);

/// Decodes a `message` payload (a JSON array of DeviceUpdate) element by element, so one bad
/// element is rejected alone instead of poisoning the batch.
///
/// # Errors
/// [`DecodeError`] when the payload is not a JSON array at all.
pub fn decode_updates(
    payload: &[u8],
) -> Result<Vec<Result<DeviceUpdateFields, RejectReason>>, DecodeError> {
    // Split into raw elements first (a cheap scan, no tree), then decode each element straight
    // from its own bytes: one pass per element, and a bad element fails alone.
    let elements: Vec<&serde_json::value::RawValue> = serde_json::from_slice(payload)?;
    Ok(elements
        .into_iter()
        .map(|raw| {
            serde_json::from_str::<DeviceUpdateFields>(raw.get())
                .map_err(|e| RejectReason::Malformed(e.to_string()))
        })
        .collect())
}

/// A validated, normalised update: the input of [`crate::reconcile`].
///
/// Invariants established by [`Observation::from_update`]: strings are trimmed and `None` when
/// empty, `partition` is never empty, `ip` is canonical (an IPv4-mapped IPv6 address becomes
/// IPv4), `mac` is the first valid unicast MAC of the field. Fields are public so tests and
/// callers can build observations directly; [`Observation::identifiers`] re-applies the
/// emptiness rules, so a hand-built value cannot smuggle in an empty identifier.
///
/// The derived `Ord` starts with `timestamp`, then every other field: it is the total order on
/// content that makes reconciliation independent of the order of updates in a batch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Observation {
    /// Sighting time.
    pub timestamp: DateTime<Utc>,
    /// IP address (always present).
    pub ip: IpAddr,
    /// The `sr:` uid the sender claims, when `device_id` parsed as one (other forms ignored).
    pub device_id: Option<DeviceUid>,
    /// Source name.
    pub source: Option<String>,
    /// Agent id (assignment for sweeps; identity only when self-reported).
    pub agent_id: Option<String>,
    /// Gateway id.
    pub gateway_id: Option<String>,
    /// Partition (never empty).
    pub partition: String,
    /// Host name.
    pub hostname: Option<String>,
    /// MAC address.
    pub mac: Option<MacAddr>,
    /// Metadata (keys and values kept verbatim; empty values are absent for identifiers).
    pub metadata: BTreeMap<String, String>,
    /// Availability (`None` = leave as is).
    pub is_available: Option<bool>,
}

/// `s` trimmed, `None` when that leaves nothing; reuses `s` when it needs no trimming.
fn non_empty(s: String) -> Option<String> {
    let t = s.trim();
    if t.is_empty() {
        None
    } else if t.len() == s.len() {
        Some(s)
    } else {
        Some(t.to_owned())
    }
}

impl Observation {
    /// Validates and normalises a wire update whose `timestamp` is required.
    ///
    /// # Errors
    /// [`RejectReason::MissingIp`] / [`RejectReason::InvalidIp`] for a missing or bad IP,
    /// [`RejectReason::MissingTimestamp`] / [`RejectReason::InvalidTimestamp`] for a missing
    /// (or Go zero-time) or non-RFC 3339 timestamp.
    pub fn from_update(fields: &DeviceUpdateFields) -> Result<Observation, RejectReason> {
        Self::build(fields.clone(), None)
    }

    /// As [`Observation::from_update`], but an empty (or Go zero-time) `timestamp` takes
    /// `received_at` (e.g. the JetStream message time) instead of rejecting the update.
    ///
    /// # Errors
    /// As [`Observation::from_update`], except `MissingTimestamp`.
    pub fn from_update_at(
        fields: &DeviceUpdateFields,
        received_at: DateTime<Utc>,
    ) -> Result<Observation, RejectReason> {
        Self::build(fields.clone(), Some(received_at))
    }

    /// As [`Observation::from_update_at`], taking the update: its strings and metadata become
    /// the observation's without being copied (the consumer's decoding path).
    ///
    /// # Errors
    /// As [`Observation::from_update_at`].
    pub fn from_owned_update_at(
        fields: DeviceUpdateFields,
        received_at: DateTime<Utc>,
    ) -> Result<Observation, RejectReason> {
        Self::build(fields, Some(received_at))
    }

    fn build(
        fields: DeviceUpdateFields,
        fallback: Option<DateTime<Utc>>,
    ) -> Result<Observation, RejectReason> {
        let ip_text = fields.ip.trim();
        if ip_text.is_empty() {
            return Err(RejectReason::MissingIp);
        }
        let ip = ip_text
            .parse::<IpAddr>()
            .map_err(|_| RejectReason::InvalidIp(ip_text.to_owned()))?
            .to_canonical();
        let timestamp = parse_timestamp(&fields.timestamp, fallback)?;
        Ok(Observation {
            timestamp,
            ip,
            device_id: DeviceUid::parse(&fields.device_id).ok(),
            source: non_empty(fields.source),
            agent_id: non_empty(fields.agent_id),
            gateway_id: non_empty(fields.gateway_id),
            partition: normalize_partition(&fields.partition),
            hostname: non_empty(fields.hostname),
            mac: MacAddr::parse_first(&fields.mac),
            metadata: fields.metadata,
            is_available: fields.is_available,
        })
    }

    /// A minimal observation (everything else absent); convenient for tests and callers that
    /// build observations from other sources.
    pub fn new(ip: IpAddr, timestamp: DateTime<Utc>) -> Observation {
        Observation {
            timestamp,
            ip,
            device_id: None,
            source: None,
            agent_id: None,
            gateway_id: None,
            partition: crate::uid::DEFAULT_PARTITION.to_owned(),
            hostname: None,
            mac: None,
            metadata: BTreeMap::new(),
            is_available: None,
        }
    }

    /// True when the source is `self-reported` (ASCII case-insensitive).
    pub fn is_self_reported(&self) -> bool {
        self.source
            .as_deref()
            .is_some_and(|s| s.trim().eq_ignore_ascii_case(SELF_REPORTED_SOURCE))
    }

    /// A metadata value, trimmed, `None` when absent or empty.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// The identifiers this update carries, sorted by priority (at most one per kind).
    ///
    /// - `agent_id` only when [`Observation::is_self_reported`];
    /// - `armis_device_id` from metadata;
    /// - `integration_id` from metadata when `integration_type` is present and is neither `armis`
    ///   nor `netbox` (those have their own kinds), namespaced `<type>:<id>`; an id without a
    ///   type cannot be namespaced and is ignored;
    /// - `netbox_device_id` from metadata;
    /// - the MAC.
    pub fn identifiers(&self) -> Vec<Identifier> {
        let mut out = BTreeSet::new();
        if self.is_self_reported()
            && let Some(agent) = self.agent_id.as_deref()
            && let Ok(id) = Identifier::new(IdentifierKind::AgentId, agent)
        {
            out.insert(id);
        }
        if let Some(v) = self.meta(META_ARMIS_DEVICE_ID)
            && let Ok(id) = Identifier::new(IdentifierKind::ArmisDeviceId, v)
        {
            out.insert(id);
        }
        if let (Some(ty), Some(v)) = (
            self.meta(META_INTEGRATION_TYPE),
            self.meta(META_INTEGRATION_ID),
        ) && !ty.eq_ignore_ascii_case("armis")
            && !ty.eq_ignore_ascii_case("netbox")
            && let Ok(id) = Identifier::integration(ty, v)
        {
            out.insert(id);
        }
        if let Some(v) = self.meta(META_NETBOX_DEVICE_ID)
            && let Ok(id) = Identifier::new(IdentifierKind::NetboxDeviceId, v)
        {
            out.insert(id);
        }
        if let Some(mac) = self.mac {
            out.insert(Identifier::from_mac(mac));
        }
        out.into_iter().collect()
    }

    /// True when at least one identifier is `Strong`.
    pub fn has_strong_identifier(&self) -> bool {
        self.identifiers()
            .iter()
            .any(|id| id.strength() == Strength::Strong)
    }

    /// The sweep hint this update gives for its (source, query label): modes and ports from
    /// the comma lists in metadata `sweep_modes` / `sweep_ports` (modes trimmed and lower-cased,
    /// unparsable ports ignored, both sorted and deduplicated), the interval from
    /// `sweep_interval_secs`. `None` for an update without a source.
    pub fn sweep_hint(&self) -> Option<SweepHint> {
        let source = self.source.clone()?;
        let mut sweep_modes: Vec<String> = self
            .meta(meta::SWEEP_MODES)
            .map(|v| {
                v.split(',')
                    .map(|m| m.trim().to_ascii_lowercase())
                    .filter(|m| !m.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        sweep_modes.sort();
        sweep_modes.dedup();
        let mut ports: Vec<u16> = self
            .meta(meta::SWEEP_PORTS)
            .map(|v| {
                v.split(',')
                    .filter_map(|p| p.trim().parse::<u16>().ok())
                    .filter(|p| *p > 0)
                    .collect()
            })
            .unwrap_or_default();
        ports.sort_unstable();
        ports.dedup();
        Some(SweepHint {
            source,
            query_label: self.meta(meta::QUERY_LABEL).map(str::to_owned),
            sweep_modes,
            ports,
            sweep_interval_secs: self
                .meta(meta::SWEEP_INTERVAL_SECS)
                .and_then(|v| v.parse::<u32>().ok()),
        })
    }

    /// The uid a new device would get from this update alone ([`crate::canonical_id`] of its
    /// identifiers, or of its IP when it has none).
    pub fn canonical_id(&self) -> DeviceUid {
        crate::uid::canonical_id(&self.partition, &self.identifiers(), self.ip)
    }
}

fn parse_timestamp(
    text: &str,
    fallback: Option<DateTime<Utc>>,
) -> Result<DateTime<Utc>, RejectReason> {
    let t = text.trim();
    if t.is_empty() {
        return fallback.ok_or(RejectReason::MissingTimestamp);
    }
    let parsed = DateTime::parse_from_rfc3339(t)
        .map_err(|_| RejectReason::InvalidTimestamp(t.to_owned()))?
        .with_timezone(&Utc);
    // Go's zero `time.Time` serialises as year 1: it means "unset", not a sighting in year 1.
    if parsed.year() <= 1 {
        return fallback.ok_or(RejectReason::MissingTimestamp);
    }
    Ok(parsed)
}
