//! Stable ids for deduplicating a retried stream in JetStream (`Nats-Msg-Id`).
//!
//! Both ids are lower-case hex SHA-256 digests (64 characters: short, no spaces, safe as a NATS
//! header value). Every field is hashed with a length prefix (8-byte big-endian length, then the
//! bytes) after a per-purpose domain tag, so field boundaries are unambiguous (`"ab"` + `"c"`
//! never hashes like `"a"` + `"bc"`) and the two kinds of id can never collide with each other.

use sha2::{Digest, Sha256};

const STREAM_ID_TAG: &[u8] = b"sr-chunking/fallback-stream-id/v1";
const BATCH_MSG_ID_TAG: &[u8] = b"sr-chunking/batch-msg-id/v1";

/// The stream id used when the client sends no `x-sr-stream-id`: a hash of the certificate
/// identity, the tenant, and the stream's payload pieces in order.
///
/// Pass the reassembled device elements as the pieces
/// ([`Reassembled::content_stream_id`](crate::Reassembled::content_stream_id) does), so the id
/// depends on the devices and not on how a client happened to chunk them: a reference client that
/// retries an identical stream gets the same id.
#[must_use]
pub fn fallback_stream_id<'a>(
    identity: &str,
    tenant: &str,
    payloads: impl IntoIterator<Item = &'a [u8]>,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update(STREAM_ID_TAG);
    write_field(&mut hasher, identity.as_bytes());
    write_field(&mut hasher, tenant.as_bytes());
    for payload in payloads {
        write_field(&mut hasher, payload);
    }
    hex::encode(hasher.finalize())
}

/// The `Nats-Msg-Id` of one published batch of a stream: a hash of the certificate identity, the
/// stream id (client-supplied `x-sr-stream-id` or [`fallback_stream_id`]) and the batch's
/// position.
///
/// The identity is part of the hash so one client cannot suppress another's messages by reusing
/// its stream id; hashing also keeps an arbitrarily long client stream id down to 64 characters.
///
/// Deduplication by position is only sound when a retry is cut into the same batches. That holds
/// for the same elements and the same batch budget (the cut is deterministic); if gateways of one
/// deployment may run with different budgets, pass a stream id that includes the budget
/// (for example `format!("{stream_id}/{max_batch_bytes}")`), so a retry cut differently is
/// stored again (consumers are idempotent) instead of being dropped as a duplicate.
#[must_use]
pub fn batch_msg_id(identity: &str, stream_id: &str, batch_index: usize) -> String {
    let mut hasher = Sha256::new();
    hasher.update(BATCH_MSG_ID_TAG);
    write_field(&mut hasher, identity.as_bytes());
    write_field(&mut hasher, stream_id.as_bytes());
    // usize is at most 64 bits on every supported target.
    hasher.update((batch_index as u64).to_be_bytes());
    hex::encode(hasher.finalize())
}

fn write_field(hasher: &mut Sha256, field: &[u8]) {
    hasher.update((field.len() as u64).to_be_bytes());
    hasher.update(field);
}
