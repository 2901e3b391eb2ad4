//! What a committed batch tells the rest of the platform: `InventoryChange` messages for
//! sweepgen (chunked, sorted by uid) and OCSF events for merges, IP churn and poison messages.
//!
//! Events are class 1008 (Event Log Activity, as every event of this product): merges and IP
//! churn are activity 3 (update) of the inventory, a poison message is activity 99 (other) with
//! severity 3 (medium) and status 2 (failure).

use chrono::{DateTime, Utc};
use sr_core::TenantId;
use sr_core::inventory::{DeviceChange, InventoryChange};
use sr_core::ocsf::{Activity, OcsfEvent, ResourceRef};
use sr_reconcile::{DeviceRecord, Outcome};
use uuid::Uuid;

use crate::error::Result;
use crate::store::{OutboxMessage, Revisions};

/// Event kind: events go to `<prefix>.events.<tenant>.dire`.
pub const EVENT_KIND: &str = "dire";
/// Product name in events and the `sr-origin` header.
pub const PRODUCT: &str = "sr-dire";
/// IP moves listed in one churn event (the count is always exact).
const CHURN_DETAILS_MAX: usize = 100;

fn change(partition: &str, r: &DeviceRecord, revision: i64) -> DeviceChange {
    DeviceChange {
        uid: r.uid.to_string(),
        partition: partition.to_owned(),
        agent_id: r.agent_id.clone(),
        ips: r.ip.map(|ip| vec![ip.to_string()]).unwrap_or_default(),
        sources: r.discovery_sources.iter().cloned().collect(),
        hints: r.sweep_hints.clone(),
        removed: false,
        revision,
    }
}

/// The devices an outcome changed, sorted by uid: inserted and updated rows as they are now,
/// merged-away devices with `removed`.
#[must_use]
pub fn device_changes(
    partition: &str,
    outcome: &Outcome,
    revisions: &Revisions,
) -> Vec<DeviceChange> {
    let mut out: Vec<DeviceChange> = outcome
        .inserts
        .iter()
        .zip(&revisions.inserts)
        .chain(
            outcome
                .updates
                .iter()
                .map(|w| &w.record)
                .zip(&revisions.updates),
        )
        .map(|(r, revision)| change(partition, r, *revision))
        .collect();
    out.extend(
        outcome
            .deletes
            .iter()
            .zip(&revisions.deletes)
            .map(|(uid, revision)| {
                let uid = uid.to_string();
                DeviceChange {
                    revision: *revision,
                    uid,
                    partition: partition.to_owned(),
                    agent_id: None,
                    ips: Vec::new(),
                    sources: Vec::new(),
                    hints: Vec::new(),
                    removed: true,
                }
            }),
    );
    out.sort_by(|a, b| a.uid.cmp(&b.uid));
    out
}

/// Splits changes into `InventoryChange` messages of at most `max` devices.
///
/// # Errors
/// Encoding failure.
pub fn outbox_messages(
    tenant: TenantId,
    changes: Vec<DeviceChange>,
    max: usize,
) -> Result<Vec<OutboxMessage>> {
    let mut out = Vec::with_capacity(changes.len().div_ceil(max.max(1)));
    let mut rest = changes;
    while !rest.is_empty() {
        let tail = rest.split_off(rest.len().min(max.max(1)));
        let devices = i32::try_from(rest.len()).unwrap_or(i32::MAX);
        let msg = InventoryChange {
            tenant_id: tenant,
            devices: rest,
        };
        out.push(OutboxMessage {
            id: Uuid::now_v7(),
            payload: serde_json::to_vec(&msg)?,
            devices,
        });
        rest = tail;
    }
    Ok(out)
}

fn event(
    tenant: TenantId,
    activity: Activity,
    resource: &ResourceRef<'_>,
    action: &str,
    message: String,
    details: serde_json::Value,
    now: DateTime<Utc>,
) -> OcsfEvent {
    let mut e = OcsfEvent::lifecycle(
        tenant, PRODUCT, activity, resource, "Device", action, details, now,
    );
    e.message = message;
    e
}

/// One event per merge.
#[must_use]
pub fn merge_events(
    tenant: TenantId,
    partition: &str,
    outcome: &Outcome,
    now: DateTime<Utc>,
) -> Vec<OcsfEvent> {
    outcome
        .merges
        .iter()
        .map(|m| {
            let to = m.to.to_string();
            let evidence: Vec<String> = m.evidence.iter().map(ToString::to_string).collect();
            event(
                tenant,
                Activity::Update,
                &ResourceRef {
                    resource_type: "device",
                    id: to.clone(),
                    name: &to,
                },
                "merge",
                format!("Device {} merged into {to}", m.from),
                serde_json::json!({
                    "partition": partition,
                    "from_uid": m.from.to_string(),
                    "to_uid": to,
                    "reason": m.reason(),
                    "evidence": evidence,
                }),
                now,
            )
        })
        .collect()
}

/// One event for the IP churn of a batch, if any.
#[must_use]
pub fn churn_event(
    tenant: TenantId,
    partition: &str,
    outcome: &Outcome,
    now: DateTime<Utc>,
) -> Option<OcsfEvent> {
    if outcome.ip_moves.is_empty() && outcome.ip_cleared.is_empty() {
        return None;
    }
    let moves: Vec<serde_json::Value> = outcome
        .ip_moves
        .iter()
        .take(CHURN_DETAILS_MAX)
        .map(|m| serde_json::json!({"ip": m.ip.to_string(), "from_uid": m.from.to_string(), "to_uid": m.to.to_string()}))
        .collect();
    let id = format!("partition:{partition}");
    Some(event(
        tenant,
        Activity::Update,
        &ResourceRef {
            resource_type: "device_inventory",
            id: id.clone(),
            name: partition,
        },
        "ip_churn",
        format!(
            "{} IP addresses moved between devices in partition {partition} ({} devices left without an IP)",
            outcome.ip_moves.len(),
            outcome.ip_cleared.len()
        ),
        serde_json::json!({
            "partition": partition,
            "moved": outcome.ip_moves.len(),
            "cleared": outcome.ip_cleared.len(),
            "moves": moves,
            "moves_truncated": outcome.ip_moves.len() > CHURN_DETAILS_MAX,
        }),
        now,
    ))
}

/// The event for a terminated message.
#[must_use]
pub fn poison_event(
    tenant: TenantId,
    subject: &str,
    stream_sequence: u64,
    reason: &str,
    now: DateTime<Utc>,
) -> OcsfEvent {
    let id = format!("{subject}#{stream_sequence}");
    let mut e = event(
        tenant,
        Activity::Update,
        &ResourceRef {
            resource_type: "device_update_batch",
            id: id.clone(),
            name: subject,
        },
        "poison_message",
        format!(
            "Device update batch {stream_sequence} on {subject} was terminated without processing: {reason}"
        ),
        serde_json::json!({
            "subject": subject,
            "stream_sequence": stream_sequence,
            "reason": reason,
        }),
        now,
    );
    e.activity_id = 99;
    e.type_uid = i64::from(e.class_uid) * 100 + 99;
    e.severity_id = 3;
    e.status_id = 2;
    e
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_event_passes_validation() {
        let t = TenantId::random();
        poison_event(t, "sr.devices.updates.x", 7, "not JSON", Utc::now())
            .validate()
            .unwrap();
    }

    #[test]
    fn changes_are_chunked_in_uid_order() {
        let t = TenantId::random();
        let changes: Vec<DeviceChange> = (0..5)
            .map(|i| DeviceChange {
                uid: format!("sr:{i}"),
                partition: "default".into(),
                agent_id: None,
                ips: vec![],
                sources: vec![],
                hints: vec![],
                removed: false,
                revision: i,
            })
            .collect();
        let msgs = outbox_messages(t, changes, 2).unwrap();
        assert_eq!(
            msgs.iter().map(|m| m.devices).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        let first: InventoryChange = serde_json::from_slice(&msgs[0].payload).unwrap();
        assert_eq!(first.devices[1].uid, "sr:1");
    }
}
