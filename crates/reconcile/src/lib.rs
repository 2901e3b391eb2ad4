//! `sr-reconcile` owns the decisions of DIRE (device identity reconciliation): it normalises
//! wire `DeviceUpdate`s into [`Observation`]s, extracts their identifiers, derives deterministic
//! `sr:` device uids, says which stored rows a batch needs ([`required_lookups`]), and decides,
//! as a pure function of that stored subset and the batch, which device and identifier rows to
//! insert, update, re-point or delete ([`reconcile`] → [`Outcome`]), including merges, IP churn
//! and conflicting evidence. It must not do I/O of any kind (no database, no NATS, no clock, no
//! environment): the DIRE service loads the state, calls this crate, and writes the outcome in
//! one transaction in the sorted order given. Every decision is scoped to one
//! (tenant, partition): the caller groups batches by scope and never mixes scopes in one
//! [`KnownState`].

mod identifier;
mod observation;
mod outcome;
mod reconcile;
mod seen;
mod settle;
mod state;
mod uid;

pub use identifier::{Identifier, IdentifierError, IdentifierKind, MacAddr, Strength};
pub use observation::{
    DecodeError, DeviceUpdateFields, META_ARMIS_DEVICE_ID, META_INTEGRATION_ID,
    META_INTEGRATION_TYPE, META_NETBOX_DEVICE_ID, Observation, RejectReason, SELF_REPORTED_SOURCE,
    decode_updates,
};
pub use outcome::{
    BlockedMerge, DeviceWrite, IdentifierConflict, IdentifierRepoint, IpCleared, IpMove, Merge,
    Outcome,
};
pub use reconcile::{ReconcileConfig, ReconcileError, partitions, reconcile};
pub use seen::KeyFilter;
pub use settle::{
    Claim, ContentDigest, Key, Memo, Settled, claim, content_digest, demote_touched, plan_skips,
    plan_skips_claims, required_lookups_claimed, settled_by,
};
pub use state::{
    DeviceField, DeviceRecord, KnownState, Lookups, Stamps, StateError, Stated, required_lookups,
};
pub use uid::{
    CANONICAL_SEED_PREFIX, DEFAULT_PARTITION, DeviceUid, UidParseError, canonical_id,
    canonical_seed, normalize_partition, uid_from_seed,
};
