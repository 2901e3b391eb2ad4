//! The device update that sync services send inside results chunks (CONTRACT §1).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Partition used when none is given.
pub const DEFAULT_PARTITION: &str = "default";

fn default_partition() -> String {
    DEFAULT_PARTITION.to_owned()
}

/// One device sighting, one element of the JSON array in a results status `message`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceUpdate {
    /// Canonical id when known (DIRE assigns `sr:` ids); may be empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device_id: String,
    /// Required: sync drops updates without one.
    pub ip: String,
    /// `armis`, `netbox`, `sweep`, `self-reported`, …
    pub source: String,
    /// The agent that should sweep the device (an identity only for `self-reported`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub agent_id: String,
    /// Gateway that received it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway_id: String,
    /// Partition, `default` when empty.
    #[serde(default = "default_partition")]
    pub partition: String,
    /// When the source saw it.
    pub timestamp: DateTime<Utc>,
    /// Host name; absent when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// First valid MAC, upper-case colon form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Source-specific attributes (`armis_device_id`, `query_label`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    /// Availability; omitted by integrations, which do not know it ("leave as is").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_available: Option<bool>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn integration_update_omits_availability_and_defaults_partition() {
        let u: DeviceUpdate = serde_json::from_str(
            r#"{"ip":"10.0.0.1","source":"armis","timestamp":"2026-01-02T03:04:05Z"}"#,
        )
        .unwrap();
        assert_eq!(u.partition, "default");
        assert_eq!(u.is_available, None);
        let back = serde_json::to_value(&u).unwrap();
        assert!(back.get("is_available").is_none());
        assert!(back.get("device_id").is_none());
    }
}
