//! NATS subject and JetStream stream names, in one place.
//!
//! Every name derives from a prefix (default `sr`), so tests can run against one NATS server
//! in parallel with disjoint names: prefix `sr` gives `sr.devices.updates.<tenant>` and stream
//! `SR_DEVICES`; prefix `t1a2b` gives `t1a2b.devices.updates.<tenant>` and `T1A2B_DEVICES`.

use crate::TenantId;

/// Default subject prefix.
pub const DEFAULT_PREFIX: &str = "sr";

/// Request/reply operations answered by the identity service.
pub mod identity_ops {
    /// Sync configuration for a certificate identity (`GetConfig` of a sync).
    pub const SYNC_CONFIG: &str = "sync_config";
    /// Tenant lookup by slug.
    pub const TENANT_LOOKUP: &str = "tenant_lookup";
    /// Component lookup (enrollment registry) for edge identities.
    pub const COMPONENT_LOOKUP: &str = "component_lookup";
    /// Whether a tenant has an enabled source assigned to a platform sync.
    pub const PLATFORM_ASSIGNMENT: &str = "platform_assignment";
    /// Heartbeat from `Hello` or `PushStatus`.
    pub const HEARTBEAT: &str = "heartbeat";
    /// Outcome of one integration source run.
    pub const SOURCE_STATUS: &str = "source_status";
}

/// Queue group of the identity responders.
pub const IDENTITY_QUEUE: &str = "identity";
/// Queue group of the sweepgen responders.
pub const SWEEPGEN_QUEUE: &str = "sweepgen";

/// Names derived from one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

impl Default for Subjects {
    fn default() -> Self {
        Self::new(DEFAULT_PREFIX)
    }
}

impl Subjects {
    /// Names under `prefix` (a single NATS token: letters, digits, `_`, `-`).
    #[must_use]
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn stream(&self, suffix: &str) -> String {
        format!(
            "{}_{suffix}",
            self.prefix.to_ascii_uppercase().replace('-', "_")
        )
    }

    /// Stream of device updates published by the gateway.
    #[must_use]
    pub fn devices_stream(&self) -> String {
        self.stream("DEVICES")
    }

    /// Stream of inventory changes published by DIRE.
    #[must_use]
    pub fn inventory_stream(&self) -> String {
        self.stream("INVENTORY")
    }

    /// Stream of OCSF events.
    #[must_use]
    pub fn events_stream(&self) -> String {
        self.stream("EVENTS")
    }

    /// `sr.devices.updates.<tenant>`.
    #[must_use]
    pub fn device_updates(&self, tenant: TenantId) -> String {
        format!("{}.devices.updates.{tenant}", self.prefix)
    }

    /// Wildcard over every tenant's device updates.
    #[must_use]
    pub fn device_updates_all(&self) -> String {
        format!("{}.devices.updates.>", self.prefix)
    }

    /// `sr.inventory.changed.<tenant>`.
    #[must_use]
    pub fn inventory_changed(&self, tenant: TenantId) -> String {
        format!("{}.inventory.changed.{tenant}", self.prefix)
    }

    /// Wildcard over every tenant's inventory changes.
    #[must_use]
    pub fn inventory_changed_all(&self) -> String {
        format!("{}.inventory.changed.>", self.prefix)
    }

    /// `sr.events.<tenant>.<kind>`.
    #[must_use]
    pub fn events(&self, tenant: TenantId, kind: &str) -> String {
        format!("{}.events.{tenant}.{kind}", self.prefix)
    }

    /// Wildcard over every event.
    #[must_use]
    pub fn events_all(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    /// `sr.rpc.identity.<op>`.
    #[must_use]
    pub fn identity_rpc(&self, op: &str) -> String {
        format!("{}.rpc.identity.{op}", self.prefix)
    }

    /// Wildcard over every identity operation.
    #[must_use]
    pub fn identity_rpc_all(&self) -> String {
        format!("{}.rpc.identity.>", self.prefix)
    }

    /// `sr.rpc.sweepgen.agent_config`.
    #[must_use]
    pub fn sweepgen_agent_config(&self) -> String {
        format!("{}.rpc.sweepgen.agent_config", self.prefix)
    }

    /// The tenant id in a subject built by [`Self::device_updates`], [`Self::inventory_changed`]
    /// or [`Self::events`], if it has that shape.
    #[must_use]
    pub fn tenant_of(&self, subject: &str) -> Option<TenantId> {
        let rest = subject.strip_prefix(&self.prefix)?.strip_prefix('.')?;
        let mut parts = rest.split('.');
        let tenant = match (parts.next()?, parts.next()?) {
            ("devices", "updates") | ("inventory", "changed") => parts.next()?,
            ("events", tenant) => tenant,
            _ => return None,
        };
        tenant.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn default_prefix_gives_the_documented_names() {
        let s = Subjects::default();
        let t: TenantId = "6f1c1d2e-0000-4000-8000-000000000001".parse().unwrap();
        assert_eq!(s.devices_stream(), "SR_DEVICES");
        assert_eq!(s.inventory_stream(), "SR_INVENTORY");
        assert_eq!(s.events_stream(), "SR_EVENTS");
        assert_eq!(s.device_updates(t), format!("sr.devices.updates.{t}"));
        assert_eq!(s.inventory_changed(t), format!("sr.inventory.changed.{t}"));
        assert_eq!(
            s.events(t, "integration_source"),
            format!("sr.events.{t}.integration_source")
        );
        assert_eq!(s.identity_rpc("heartbeat"), "sr.rpc.identity.heartbeat");
        assert_eq!(s.sweepgen_agent_config(), "sr.rpc.sweepgen.agent_config");
    }

    #[test]
    fn tenant_is_recovered_from_each_subject_kind_and_nothing_else() {
        let s = Subjects::new("t-9");
        let t = TenantId::random();
        assert_eq!(s.devices_stream(), "T_9_DEVICES");
        assert_eq!(s.tenant_of(&s.device_updates(t)), Some(t));
        assert_eq!(s.tenant_of(&s.inventory_changed(t)), Some(t));
        assert_eq!(s.tenant_of(&s.events(t, "x")), Some(t));
        assert_eq!(s.tenant_of(&format!("other.events.{t}.x")), None);
        assert_eq!(s.tenant_of("t-9.events.not-a-uuid.x"), None);
        assert_eq!(s.tenant_of("t-9.rpc.identity.heartbeat"), None);
    }
}
