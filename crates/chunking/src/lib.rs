//! The pure pieces of the results-streaming protocol between the sync service (sender) and the
//! gateway (receiver): [`builder`] cuts device updates into `StreamStatus` chunks that each hold
//! a complete JSON array within a byte and device budget, [`reassembly`] enforces the stream rules
//! on the receiving side and collects the device elements as raw JSON, [`batching`] re-cuts those
//! elements into JSON-array batches that fit a NATS message, and [`stream_id`] derives the stable
//! ids used for `Nats-Msg-Id` deduplication.
//!
//! This crate works on plain Rust values only. It must not know about gRPC, protobuf or NATS types
//! (the services map to and from them), must not perform I/O or read the environment, and must not
//! parse device elements into structs: devices are serialised once by the sender and travel as raw
//! JSON slices from there on.
//!
//! ```
//! use sr_chunking::{
//!     ChunkBuilder, ChunkLimits, IncomingChunk, Reassembler, ReassemblyLimits,
//!     split_into_batches,
//! };
//!
//! // Sender: serialise each device once; the builder cuts chunks as it goes.
//! let mut builder = ChunkBuilder::new(ChunkLimits::new(128, 2)?);
//! for ip in ["10.0.0.1", "10.0.0.2", "10.0.0.3"] {
//!     builder.push(&serde_json::json!({ "ip": ip, "source": "armis" }))?;
//! }
//! let chunks = builder.finish_chunks();
//! assert_eq!(chunks.len(), 2);
//!
//! // Receiver: enforce the stream rules, then re-cut for NATS.
//! let mut reassembler = Reassembler::new(ReassemblyLimits::default());
//! for chunk in chunks {
//!     reassembler.accept(IncomingChunk {
//!         agent_id: "agent-1".to_owned(),
//!         chunk_index: chunk.index,
//!         total_chunks: chunk.total,
//!         is_final: chunk.is_final,
//!         payloads: vec![chunk.payload],
//!     })?;
//! }
//! let reassembled = reassembler.finish()?;
//! assert_eq!(reassembled.element_count(), 3);
//! let batches = split_into_batches(&reassembled.elements(), 1024)?;
//! assert_eq!(batches.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod batching;
pub mod builder;
pub mod reassembly;
pub mod stream_id;

pub use batching::{
    BatchError, DEFAULT_HEADER_RESERVE_BYTES, DEFAULT_NATS_MAX_PAYLOAD, JsonElement, batch_budget,
    plan_batches, split_into_batches,
};
pub use builder::{
    Chunk, ChunkBuilder, ChunkLimits, DEFAULT_MAX_CHUNK_BYTES, DEFAULT_MAX_DEVICES_PER_CHUNK,
    HARD_MAX_CHUNK_BYTES, MAX_CHUNKS_PER_STREAM, MIN_CHUNK_BYTES, PushError,
};
pub use reassembly::{
    DEFAULT_MAX_CHUNKS, DEFAULT_MAX_ELEMENTS, DEFAULT_MAX_SERVICES, DEFAULT_MAX_TOTAL_BYTES,
    IncomingChunk, Reassembled, Reassembler, ReassemblyLimits, StreamError,
};
pub use serde_json::value::RawValue;
pub use stream_id::{batch_msg_id, fallback_stream_id};

/// A limit passed to [`ChunkLimits::new`] or [`ReassemblyLimits::new`] is out of range.
///
/// Services build their limits from configuration at start-up and report this error as a
/// configuration error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    /// The value is below the smallest value that still makes sense.
    #[error("{name} must be at least {min}, got {value}")]
    BelowMinimum {
        /// Name of the limit, as in the configuration.
        name: &'static str,
        /// The rejected value.
        value: usize,
        /// The smallest accepted value.
        min: usize,
    },
    /// The value is above a hard cap (for chunks: below the 4 MiB gRPC message limit).
    #[error("{name} must be at most {max}, got {value}")]
    AboveMaximum {
        /// Name of the limit, as in the configuration.
        name: &'static str,
        /// The rejected value.
        value: usize,
        /// The largest accepted value.
        max: usize,
    },
}

/// Returns `Err(BelowMinimum)` when `value < min`.
fn at_least(name: &'static str, value: usize, min: usize) -> Result<(), LimitsError> {
    if value < min {
        Err(LimitsError::BelowMinimum { name, value, min })
    } else {
        Ok(())
    }
}
