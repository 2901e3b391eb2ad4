//! The decisions of one reconciliation, expressed as row writes in sorted key order.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::identifier::Identifier;
use crate::state::{DeviceField, DeviceRecord};
use crate::uid::DeviceUid;

/// A device row to update: the full new row and the columns that changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceWrite {
    /// The complete new row.
    pub record: DeviceRecord,
    /// Columns that differ from the stored row (never empty).
    pub changed: BTreeSet<DeviceField>,
}

/// An identifier row re-pointed because its device was merged away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IdentifierRepoint {
    /// The merged-away device it pointed at.
    pub from: DeviceUid,
    /// The surviving device it points at now.
    pub to: DeviceUid,
}

/// One merge, for the `merge_audit` table: `from` is deleted, its identifiers now point at `to`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Merge {
    /// The merged-away (deleted) device.
    pub from: DeviceUid,
    /// The surviving canonical device.
    pub to: DeviceUid,
    /// The identifiers of `from` that the batch reported together with identifiers of `to`.
    pub evidence: BTreeSet<Identifier>,
}

impl Merge {
    /// A human-readable reason for the audit row.
    pub fn reason(&self) -> String {
        if self.evidence.is_empty() {
            return "reported as one device by the same batch".to_owned();
        }
        let ids: Vec<String> = self.evidence.iter().map(ToString::to_string).collect();
        format!(
            "reported together with identifiers of the surviving device: {}",
            ids.join(", ")
        )
    }
}

/// An IP that changed holder: `from` no longer holds it, `to` does (DHCP churn).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IpMove {
    /// The address.
    pub ip: IpAddr,
    /// The previous holder (still exists).
    pub from: DeviceUid,
    /// The new holder.
    pub to: DeviceUid,
}

/// A surviving device that held an IP before the batch and holds none after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IpCleared {
    /// The device.
    pub uid: DeviceUid,
    /// The address it lost.
    pub ip: IpAddr,
}

/// Conflicting evidence: the batch reported `identifier` for `claimed_by`, but it stays with
/// `held_by` (first writer wins; the conflict rule kept the two devices apart).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IdentifierConflict {
    /// The contested identifier.
    pub identifier: Identifier,
    /// The device the identifier points at.
    pub held_by: DeviceUid,
    /// The device an update carrying it resolved to instead.
    pub claimed_by: DeviceUid,
}

/// A merge that was refused because the only evidence was a MAC, or only medium-strength
/// identifiers. `first < second`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct BlockedMerge {
    /// The identifier that linked the two devices.
    pub identifier: Identifier,
    /// One device.
    pub first: DeviceUid,
    /// The other device.
    pub second: DeviceUid,
}

/// Everything [`crate::reconcile`] decided for a batch. Every collection is in sorted key order,
/// so writing rows in the listed order never deadlocks against a concurrent batch.
///
/// Suggested write order in one transaction (identifier rows reference device rows):
/// `inserts`, `updates`, `identifier_repoints`, `identifier_inserts`, `merges` (audit rows),
/// `deletes`. An IP swap inside one batch means two updated rows exchange IPs: with a unique
/// index on `(tenant_id, partition, ip)` make it `DEFERRABLE INITIALLY DEFERRED`, or first set
/// `ip = NULL` on every updated row whose `Ip` changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// New device rows, by uid.
    pub inserts: Vec<DeviceRecord>,
    /// Changed device rows, by uid (in place: never delete + recreate).
    pub updates: Vec<DeviceWrite>,
    /// Devices merged away (delete the row; see `merges` for where they went), by uid.
    pub deletes: Vec<DeviceUid>,
    /// New identifier rows.
    pub identifier_inserts: BTreeMap<Identifier, DeviceUid>,
    /// Identifier rows re-pointed by merges (every identifier of a merged-away device points
    /// directly at the survivor: no tombstone chains).
    pub identifier_repoints: BTreeMap<Identifier, IdentifierRepoint>,
    /// Merge audit rows, by `from`.
    pub merges: Vec<Merge>,
    /// IPs that changed holder, by ip (churn).
    pub ip_moves: Vec<IpMove>,
    /// Surviving devices left without an IP, by uid.
    pub ip_cleared: Vec<IpCleared>,
    /// Conflicting evidence (shared or cloned identifiers kept apart), sorted.
    pub conflicts: Vec<IdentifierConflict>,
    /// Merges refused for lack of strong non-MAC evidence, sorted.
    pub blocked_merges: Vec<BlockedMerge>,
    /// Devices the batch reported that needed no write.
    pub unchanged: usize,
    /// For each update of the batch (same index), the device it resolved to.
    pub resolutions: Vec<DeviceUid>,
}

impl Outcome {
    /// True when the outcome writes at least one row (device, identifier, audit or delete).
    pub fn has_writes(&self) -> bool {
        !(self.inserts.is_empty()
            && self.updates.is_empty()
            && self.deletes.is_empty()
            && self.identifier_inserts.is_empty()
            && self.identifier_repoints.is_empty()
            && self.merges.is_empty())
    }

    /// Number of IP moves (the churn counter).
    pub fn churn(&self) -> usize {
        self.ip_moves.len()
    }

    /// Uids whose row was inserted, updated or deleted: the devices to publish on
    /// `sr.inventory.changed.<tenant_id>` (deleted ones with the deleted flag).
    pub fn changed_uids(&self) -> BTreeSet<DeviceUid> {
        self.inserts
            .iter()
            .map(|r| r.uid)
            .chain(self.updates.iter().map(|w| w.record.uid))
            .chain(self.deletes.iter().copied())
            .collect()
    }

    /// Uids whose row or identifiers the outcome writes: the [`Outcome::changed_uids`], the
    /// owners of inserted identifiers and both ends of re-pointed ones.
    pub fn written_uids(&self) -> BTreeSet<DeviceUid> {
        let mut out = self.changed_uids();
        out.extend(self.identifier_inserts.values().copied());
        for r in self.identifier_repoints.values() {
            out.extend([r.from, r.to]);
        }
        out
    }
}
