//! Shared builders for the integration tests.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};
use sr_reconcile::{
    DeviceRecord, DeviceUid, KnownState, MacAddr, Observation, Outcome, ReconcileConfig, reconcile,
};

/// 2026-01-01T00:00:00Z plus `minutes`.
pub fn at(minutes: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + TimeDelta::minutes(minutes)
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Observation builder.
#[derive(Clone)]
pub struct Obs(pub Observation);

pub fn obs(address: &str) -> Obs {
    Obs(Observation::new(ip(address), at(0)))
}

impl Obs {
    pub fn at(mut self, minutes: i64) -> Self {
        self.0.timestamp = at(minutes);
        self
    }
    pub fn source(mut self, s: &str) -> Self {
        self.0.source = Some(s.to_owned());
        self
    }
    pub fn armis(self, id: &str) -> Self {
        self.meta("armis_device_id", id)
    }
    pub fn netbox(self, id: &str) -> Self {
        self.meta("netbox_device_id", id)
    }
    pub fn integration(self, ty: &str, id: &str) -> Self {
        self.meta("integration_type", ty).meta("integration_id", id)
    }
    pub fn meta(mut self, k: &str, v: &str) -> Self {
        self.0.metadata.insert(k.to_owned(), v.to_owned());
        self
    }
    pub fn mac(mut self, m: &str) -> Self {
        self.0.mac = Some(MacAddr::parse(m).unwrap());
        self
    }
    pub fn agent(mut self, a: &str) -> Self {
        self.0.agent_id = Some(a.to_owned());
        self
    }
    pub fn hostname(mut self, h: &str) -> Self {
        self.0.hostname = Some(h.to_owned());
        self
    }
    pub fn available(mut self, a: bool) -> Self {
        self.0.is_available = Some(a);
        self
    }
    pub fn device_id(mut self, uid: DeviceUid) -> Self {
        self.0.device_id = Some(uid);
        self
    }
    pub fn partition(mut self, p: &str) -> Self {
        self.0.partition = p.to_owned();
        self
    }
    pub fn build(self) -> Observation {
        self.0
    }
}

pub fn batch(items: Vec<Obs>) -> Vec<Observation> {
    items.into_iter().map(Obs::build).collect()
}

/// Reconciles with the default config and applies; returns the outcome.
pub fn step(state: &mut KnownState, batch: &[Observation]) -> Outcome {
    let outcome = reconcile(state, batch, &ReconcileConfig::default()).unwrap();
    state.apply(&outcome);
    outcome
}

/// A fresh state in `default` with the batches applied in sequence.
pub fn state_after(batches: &[Vec<Observation>]) -> KnownState {
    let mut state = KnownState::new("default");
    for b in batches {
        step(&mut state, b);
    }
    state
}

pub fn device_with_ip<'a>(state: &'a KnownState, address: &str) -> Option<&'a DeviceRecord> {
    state.devices().values().find(|d| d.ip == Some(ip(address)))
}

pub fn owner_of(
    state: &KnownState,
    kind: sr_reconcile::IdentifierKind,
    value: &str,
) -> Option<DeviceUid> {
    state.owner(&sr_reconcile::Identifier::new(kind, value).unwrap())
}
