//! JSON bodies of the NATS request/reply calls between services.
//!
//! Every reply is a [`RpcReply`]: `{"ok": <body>}` or `{"error": {"code", "message"}}`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::TenantId;

/// Reply envelope of every request/reply call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RpcReply<T> {
    /// The call succeeded.
    Ok(T),
    /// The call failed.
    Error(RpcError),
}

impl<T> RpcReply<T> {
    /// Converts into a `Result`.
    ///
    /// # Errors
    /// The [`RpcError`] the responder sent.
    pub fn into_result(self) -> Result<T, RpcError> {
        match self {
            Self::Ok(body) => Ok(body),
            Self::Error(err) => Err(err),
        }
    }
}

/// A failed call: a machine-readable code and a message safe to show a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct RpcError {
    /// What kind of failure.
    pub code: RpcErrorCode,
    /// Human-readable, safe to pass on.
    pub message: String,
}

impl RpcError {
    /// Builds an error.
    pub fn new(code: RpcErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Failure kinds, mapped by the gateway to gRPC codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RpcErrorCode {
    /// The request could not be decoded or is invalid.
    InvalidArgument,
    /// The thing asked about does not exist.
    NotFound,
    /// The caller may not do this.
    PermissionDenied,
    /// The responder failed; retrying may help.
    Unavailable,
}

/// Whether a certificate identity is the platform's or a tenant's (edge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    /// Reserved slug, issued by the platform tenant CA.
    Platform,
    /// Everything else.
    Tenant,
}

/// The caller as the gateway established it from the client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerIdentity {
    /// Platform or tenant identity.
    pub kind: IdentityKind,
    /// Tenant of the certificate.
    pub tenant_id: TenantId,
    /// Tenant slug of the certificate.
    pub tenant_slug: String,
    /// Component id from the CN.
    pub component_id: String,
    /// Partition from the CN.
    pub partition: String,
}

/// `sync_config`: the sync configuration for a sync identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncConfigRequest {
    /// Who asks.
    pub caller: CallerIdentity,
    /// The `config_version` the caller already has (empty if none).
    #[serde(default)]
    pub current_version: String,
}

/// Reply to [`SyncConfigRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncConfigReply {
    /// True when `current_version` is the current version; `config_json` is then null.
    pub not_modified: bool,
    /// Content hash of the payload.
    pub config_version: String,
    /// Unix seconds of the newest change among the sources in the payload.
    pub config_timestamp: i64,
    /// Heartbeat interval to use.
    pub heartbeat_interval_sec: i32,
    /// How often to poll `GetConfig`.
    pub config_poll_interval_sec: i32,
    /// The [`crate::syncconfig::SyncConfigPayload`] as JSON (null when not modified).
    pub config_json: serde_json::Value,
}

/// `tenant_lookup`: a tenant by slug, or by id when `tenant_id` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantLookupRequest {
    /// Tenant slug (from a certificate CN or a status message).
    #[serde(default)]
    pub slug: String,
    /// Tenant id; takes precedence over `slug` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
}

/// A tenant and its issuing CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInfo {
    /// Tenant id.
    pub tenant_id: TenantId,
    /// Slug.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Whether this is the platform tenant.
    pub is_platform: bool,
    /// Hex subject key identifier of the tenant's intermediate CA: a leaf of this tenant
    /// carries it as its authority key identifier.
    pub ca_key_id: String,
}

/// `component_lookup`: an enrolled component of a tenant (edge identities carry no type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentLookupRequest {
    /// Tenant of the certificate.
    pub tenant_id: TenantId,
    /// Component id from the CN.
    pub component_id: String,
}

/// Reply to [`ComponentLookupRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentInfo {
    /// `sync` or `agent`, or none when the component was never enrolled.
    pub component_type: Option<String>,
}

/// `platform_assignment`: does tenant T have an enabled source assigned to platform sync S?
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformAssignmentRequest {
    /// Component id of the platform sync.
    pub sync_component_id: String,
    /// Tenant the sync wants to push for.
    pub tenant_id: TenantId,
}

/// Reply to [`PlatformAssignmentRequest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformAssignment {
    /// True when at least one enabled source of the tenant is assigned to that sync.
    pub assigned: bool,
}

/// Where a heartbeat came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeartbeatOrigin {
    /// A `Hello` call.
    Hello,
    /// A `PushStatus` with `source = status`.
    Status,
}

/// `heartbeat`: a component is alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    /// Who.
    pub caller: CallerIdentity,
    /// Hello or status push.
    pub origin: HeartbeatOrigin,
    /// False reports the component degraded.
    pub available: bool,
    /// Capabilities announced in `Hello`.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Software version announced in `Hello`.
    #[serde(default)]
    pub version: String,
}

/// Reply to [`HeartbeatRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    /// Whether identity knows this component.
    pub known: bool,
    /// The component's status after the heartbeat (sync services only).
    pub status: Option<String>,
}

/// `source_status`: the outcome of one run of an integration source, reported by a sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatusReport {
    /// The sync that ran it.
    pub caller: CallerIdentity,
    /// Tenant owning the source.
    pub tenant_id: TenantId,
    /// The source.
    pub integration_source_id: Uuid,
    /// Whether the run succeeded.
    pub success: bool,
    /// Devices found.
    pub device_count: i64,
    /// Failure text, if any.
    #[serde(default)]
    pub error: Option<String>,
    /// When the run finished.
    pub finished_at: DateTime<Utc>,
}

/// Reply with no content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {}

/// `sr.rpc.sweepgen.agent_config`: the sweep configuration of an agent identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentConfigRequest {
    /// Who asks (an agent).
    pub caller: CallerIdentity,
    /// The `config_version` the agent already has (empty if none).
    #[serde(default)]
    pub current_version: String,
    /// Which part of a config too large for one reply is asked for (0: the first, which
    /// also tells how many parts there are; see [`AgentConfigReply::parts`]).
    #[serde(default)]
    pub part: u32,
    /// For `part > 0`: the `config_version` the parts fetched so far belong to. A responder
    /// whose config has changed since answers `not_found`, and the caller starts again.
    #[serde(default)]
    pub part_of: String,
}

/// One sweep target (mirror of the proto `DeviceTarget`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SweepTarget {
    /// `/32` or `/128` host network.
    pub network: String,
    /// Sweep modes.
    #[serde(default)]
    pub sweep_modes: Vec<String>,
    /// Query label(s).
    #[serde(default)]
    pub query_label: String,
    /// Reporting source(s).
    #[serde(default)]
    pub source: String,
    /// Extra attributes (device uid, …).
    #[serde(default)]
    pub metadata: std::collections::BTreeMap<String, String>,
    /// TCP ports.
    #[serde(default)]
    pub ports: Vec<i32>,
}

/// A sweep configuration (mirror of the proto `SweepConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SweepConfigBody {
    /// Minimal exact CIDR cover of the targets.
    #[serde(default)]
    pub networks: Vec<String>,
    /// One per device IP.
    #[serde(default)]
    pub device_targets: Vec<SweepTarget>,
    /// Union of the targets' modes.
    #[serde(default)]
    pub sweep_modes: Vec<String>,
    /// Sweep interval.
    #[serde(default)]
    pub sweep_interval_sec: i32,
    /// Union of the targets' ports.
    #[serde(default)]
    pub ports: Vec<i32>,
}

/// Reply to [`AgentConfigRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentConfigReply {
    /// True when `current_version` is current; `sweep` is then none.
    pub not_modified: bool,
    /// Content hash of the sweep configuration.
    pub config_version: String,
    /// Unix seconds of the last change.
    pub config_timestamp: i64,
    /// The configuration (none when not modified, or when it comes in parts).
    #[serde(default)]
    pub sweep: Option<SweepConfigBody>,
    /// When the configuration is larger than one reply: how many parts its JSON text is split
    /// into (0 when `sweep` holds it whole). The caller asks for parts `1..parts` with
    /// `part_of = config_version` and parses the concatenated `sweep_part` texts as a
    /// [`SweepConfigBody`].
    #[serde(default)]
    pub parts: u32,
    /// This reply's part of the configuration's JSON text (when `parts > 0`).
    #[serde(default)]
    pub sweep_part: Option<String>,
}

/// The byte ranges that split `text` into parts of at most `part_bytes` bytes each, cut on
/// character boundaries (at least one part; `part_bytes` below 4 is treated as 4 so that
/// every part holds at least one character).
#[must_use]
pub fn part_ranges(text: &str, part_bytes: usize) -> Vec<std::ops::Range<usize>> {
    let part_bytes = part_bytes.max(4);
    let mut ranges = Vec::with_capacity(text.len() / part_bytes + 1);
    let mut start = 0;
    loop {
        let end = text.floor_char_boundary(start + part_bytes);
        ranges.push(start..end);
        if end == text.len() {
            return ranges;
        }
        start = end;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_text_that_fits_is_one_part_and_an_empty_text_one_empty_part() {
        assert_eq!(part_ranges("abc", 10), vec![0..3]);
        assert_eq!(part_ranges("", 10), vec![0..0]);
        assert_eq!(part_ranges("abcdefghij", 4), vec![0..4, 4..8, 8..10]);
    }

    #[test]
    fn parts_are_cut_on_character_boundaries() {
        // "é" is two bytes, "€" three: no cut may fall inside them.
        let text = "aé€é€b";
        for r in part_ranges(text, 4) {
            assert!(
                text.get(r.clone()).is_some(),
                "range {r:?} splits a character"
            );
            assert!(r.len() <= 4);
            assert!(!r.is_empty());
        }
    }

    #[test]
    fn a_part_reply_round_trips_and_old_replies_still_decode() {
        let reply = AgentConfigReply {
            not_modified: false,
            config_version: "v1".into(),
            config_timestamp: 7,
            sweep: None,
            parts: 3,
            sweep_part: Some(r#"{"networks":["10."#.into()),
        };
        let back: AgentConfigReply =
            serde_json::from_slice(&serde_json::to_vec(&reply).unwrap()).unwrap();
        assert_eq!(back, reply);
        let old: AgentConfigReply = serde_json::from_str(
            r#"{"not_modified":true,"config_version":"v1","config_timestamp":7}"#,
        )
        .unwrap();
        assert_eq!((old.parts, old.sweep_part), (0, None));
    }

    proptest! {
        #[test]
        fn parts_concatenate_to_the_text_and_respect_the_limit(
            text in "\\PC{0,200}",
            part_bytes in 4usize..40,
        ) {
            let ranges = part_ranges(&text, part_bytes);
            let mut joined = String::new();
            let mut next = 0;
            for r in &ranges {
                prop_assert_eq!(r.start, next);
                prop_assert!(r.len() <= part_bytes);
                joined.push_str(&text[r.clone()]);
                next = r.end;
            }
            prop_assert_eq!(joined, text);
        }
    }
}
