//! Domain types that every service shares and that travel between them: typed tenant ids,
//! the NATS subject and stream names, the JSON bodies of request/reply calls, the device
//! update carried in results streams, OCSF events and the sync configuration payload.
//!
//! This crate is pure data and pure functions: it must not do I/O or depend on tokio,
//! sqlx, async-nats or tonic.

pub mod bootstrap;
pub mod device;
pub mod duration;
pub mod inventory;
pub mod ocsf;
pub mod rpc;
pub mod subjects;
pub mod syncconfig;
pub mod tenant;

pub use subjects::Subjects;
pub use tenant::TenantId;

/// Lower-case hex sha256 of `value` serialised as JSON with object keys sorted recursively.
///
/// `serde_json::Value` keeps objects in a `BTreeMap`, so a round trip through `Value`
/// sorts keys at every depth; the hash is therefore independent of field order.
#[must_use]
pub fn content_hash<T: serde::Serialize>(value: &T) -> String {
    use sha2::Digest;
    let canonical = serde_json::to_value(value)
        .and_then(|v| serde_json::to_vec(&v))
        .unwrap_or_default();
    hex::encode(sha2::Sha256::digest(&canonical))
}
