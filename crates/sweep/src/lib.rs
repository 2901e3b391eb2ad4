//! `sr-sweep` owns the compilation of one agent's sweep configuration (the `SweepConfig` of
//! `GetConfig`) from the canonical inventory of one (tenant, partition): which devices an agent
//! sweeps, one host target per device address (`/32` IPv4, `/128` IPv6) with the union of the
//! modes and ports its sources asked for, the exact minimal CIDR cover of those addresses
//! (aggregated with `ipnet`, never wider than the targets), the source blacklists, warnings for
//! what was dropped, and a content-hash `config_version`. [`SweepIndex`] keeps a partition's
//! devices so a change recompiles cheaply and reports which agents it affects. It must not do
//! I/O of any kind (no database, no NATS, no clock, no environment) and knows nothing of
//! protobuf: the sweepgen service loads devices, calls this crate, and maps [`CompiledSweep`]
//! and [`Target`] field by field onto `SweepConfig` and `DeviceTarget`.
//!
//! Decisions where the contract is silent:
//! - **Blacklists**: a target is excluded when its address is in the blacklist of *any* source
//!   that reported it (the sync already filters per source; this is defence in depth). Sources
//!   that did not report the address do not veto it.
//! - **Joined labels**: `query_label` and `source` are the sorted, deduplicated, non-blank values
//!   joined with `,`; `metadata.device_uid` likewise joins the uids of every device holding the
//!   address (one uid unless DIRE let an address be shared).
//! - **Modes**: trimmed and lower-cased; modes other than `icmp`, `tcp`, `tcp_connect` are
//!   dropped with a warning; when none is left the default modes apply. Ports: 0 is ignored;
//!   the sightings' ports, else the default ports; TCP modes without any port are dropped with
//!   a warning, and a target left without modes is dropped with a warning.
//! - **Addresses**: IPv4-mapped IPv6 is treated as IPv4; unspecified, loopback, multicast,
//!   limited-broadcast and IPv6 link-local addresses get no target (warning).
//! - **Interval**: the smallest positive `sweep_interval_secs` among the sources of the emitted
//!   targets, else the default; saturated to `i32::MAX`.
//! - **Version**: lower-case hex sha256 over a canonical binary serialisation (integers
//!   little-endian, every string and list prefixed by its `u64` length):
//!   `"sr-sweep/config/v1\n" target_count sha256(digest₁ … digestₙ) networks[] sweep_modes[]
//!   sweep_interval_sec ports[]`, where each target's digest is the sha256 of
//!   `"sr-sweep/target/v1\n" network sweep_modes[] ports[] query_label source metadata[]`, in
//!   target order. Every field of every target determines the version (an index keeps the
//!   per-target digests, so a recompile does not re-serialise unchanged targets); warnings do
//!   not.
//! - **Targets are lent**: [`SweepIndex::compile_for`] returns targets borrowed from the index
//!   ([`CompiledSweep::device_targets`] holds `Cow`s), so compiling a million-target config
//!   allocates nothing per target; [`CompiledSweep::into_owned`] detaches it.

mod compile;
mod index;
mod model;
mod profile;
mod target;
mod version;

pub use compile::{compile, devices_for_agent};
pub use index::{Affected, SweepIndex};
pub use model::{
    CompileOptions, CompiledSweep, KNOWN_MODES, META_DEVICE_UID, META_QUERY_LABEL, META_SOURCE,
    MODE_ICMP, MODE_TCP, MODE_TCP_CONNECT, Sighting, SourcePolicies, SourcePolicy, SweepDevice,
    Target, Warning,
};
