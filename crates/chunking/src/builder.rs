//! Sender side: cut a sequence of device updates into chunks, each a complete JSON array within
//! a byte budget and a device-count budget.
//!
//! Each device is serialised exactly once, into a reused scratch buffer, and then copied onto the
//! end of the open chunk; the open chunk is never re-serialised, so building is linear in the
//! total payload size (the reference re-serialised the growing chunk for every device, which is
//! quadratic).

use std::fmt;

use serde::Serialize;
use serde_json::value::RawValue;

use crate::{LimitsError, at_least};

/// Default byte budget of one chunk's JSON array (1 MiB).
pub const DEFAULT_MAX_CHUNK_BYTES: usize = 1024 * 1024;

/// Default maximum number of devices in one chunk.
pub const DEFAULT_MAX_DEVICES_PER_CHUNK: usize = 1000;

/// Hard cap on a chunk's JSON array (3.5 MiB): no configuration may exceed it, and a single device
/// whose chunk (`[` device `]`) would exceed it is refused, because gRPC rejects messages over
/// 4 MiB and the chunk also carries its envelope fields.
pub const HARD_MAX_CHUNK_BYTES: usize = 3 * 1024 * 1024 + 512 * 1024;

// The cap must leave room for the chunk's envelope below gRPC's 4 MiB message limit.
const _: () = assert!(HARD_MAX_CHUNK_BYTES < 4 * 1024 * 1024);

/// Smallest accepted byte budget: the size of the empty chunk `[]`.
pub const MIN_CHUNK_BYTES: usize = 2;

/// Most chunks one stream may have: `chunk_index` and `total_chunks` are protobuf `int32`.
pub const MAX_CHUNKS_PER_STREAM: usize = i32::MAX as usize;

/// Budgets for one chunk. Build with [`ChunkLimits::new`] or take [`ChunkLimits::default`]
/// (1 MiB, 1000 devices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    max_chunk_bytes: usize,
    max_devices_per_chunk: usize,
}

impl ChunkLimits {
    /// Validates and builds chunk limits.
    ///
    /// `max_chunk_bytes` bounds the whole JSON array of a chunk, brackets and commas included.
    ///
    /// # Errors
    ///
    /// [`LimitsError::BelowMinimum`] when `max_chunk_bytes` is below [`MIN_CHUNK_BYTES`] or
    /// `max_devices_per_chunk` is zero; [`LimitsError::AboveMaximum`] when `max_chunk_bytes` is
    /// above [`HARD_MAX_CHUNK_BYTES`].
    pub fn new(max_chunk_bytes: usize, max_devices_per_chunk: usize) -> Result<Self, LimitsError> {
        at_least("max_chunk_bytes", max_chunk_bytes, MIN_CHUNK_BYTES)?;
        if max_chunk_bytes > HARD_MAX_CHUNK_BYTES {
            return Err(LimitsError::AboveMaximum {
                name: "max_chunk_bytes",
                value: max_chunk_bytes,
                max: HARD_MAX_CHUNK_BYTES,
            });
        }
        at_least("max_devices_per_chunk", max_devices_per_chunk, 1)?;
        Ok(Self {
            max_chunk_bytes,
            max_devices_per_chunk,
        })
    }

    /// Byte budget of one chunk's JSON array.
    #[must_use]
    pub fn max_chunk_bytes(&self) -> usize {
        self.max_chunk_bytes
    }

    /// Maximum number of devices in one chunk.
    #[must_use]
    pub fn max_devices_per_chunk(&self) -> usize {
        self.max_devices_per_chunk
    }
}

impl Default for ChunkLimits {
    fn default() -> Self {
        Self {
            max_chunk_bytes: DEFAULT_MAX_CHUNK_BYTES,
            max_devices_per_chunk: DEFAULT_MAX_DEVICES_PER_CHUNK,
        }
    }
}

/// A device could not be added to a [`ChunkBuilder`]. The builder is left unchanged: the caller
/// may skip the device (and log it) and carry on.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The device's `Serialize` implementation failed (for example a map with non-string keys).
    #[error("device could not be serialised to JSON: {0}")]
    Serialize(#[source] serde_json::Error),
    /// Pre-serialised bytes are not exactly one JSON value.
    #[error("device bytes are not a single JSON value: {0}")]
    InvalidJson(#[source] serde_json::Error),
    /// The device alone would make a chunk above [`HARD_MAX_CHUNK_BYTES`]; it can never be sent.
    #[error("device is {size} bytes, above the largest sendable device of {max} bytes")]
    DeviceTooLarge {
        /// Serialised size of the device.
        size: usize,
        /// Largest device that fits alone in a chunk.
        max: usize,
    },
    /// The stream would need more than [`MAX_CHUNKS_PER_STREAM`] chunks.
    #[error("stream would need more than {max} chunks")]
    TooManyChunks {
        /// [`MAX_CHUNKS_PER_STREAM`].
        max: usize,
    },
}

/// One chunk of a stream, ready to be mapped onto a `GatewayStatusChunk`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Position in the stream, from 0 (`chunk_index`).
    pub index: i32,
    /// Number of chunks in the stream, the same in every chunk (`total_chunks`).
    pub total: i32,
    /// `true` on the last chunk only (`is_final`).
    pub is_final: bool,
    /// Number of devices in `payload`.
    pub device_count: usize,
    /// A complete JSON array of devices (the `message` of the chunk's service status).
    pub payload: Vec<u8>,
}

/// First allocation for the open chunk; later chunks start with the size of the previous one.
const INITIAL_CHUNK_CAPACITY: usize = 64 * 1024;

/// Builds the chunks of one stream incrementally.
///
/// The open chunk closes when the next device would push it over the byte budget or the device
/// count; a device larger than the byte budget goes alone in its own chunk. An empty input gives
/// exactly one chunk `[]`.
pub struct ChunkBuilder {
    limits: ChunkLimits,
    /// Closed chunks: complete JSON arrays with their device counts.
    closed: Vec<(Vec<u8>, usize)>,
    /// The open chunk: `[` followed by comma-separated devices, without the closing `]`.
    open: Vec<u8>,
    open_devices: usize,
    /// Reused buffer that each typed device is serialised into, once.
    scratch: Vec<u8>,
    device_count: usize,
    /// Closed chunks already handed out by [`ChunkBuilder::take_closed`].
    taken: usize,
}

impl ChunkBuilder {
    /// Starts an empty stream.
    #[must_use]
    pub fn new(limits: ChunkLimits) -> Self {
        Self {
            limits,
            closed: Vec::new(),
            open: new_open_chunk(limits.max_chunk_bytes.min(INITIAL_CHUNK_CAPACITY)),
            open_devices: 0,
            scratch: Vec::new(),
            device_count: 0,
            taken: 0,
        }
    }

    /// The limits this builder cuts by.
    #[must_use]
    pub fn limits(&self) -> ChunkLimits {
        self.limits
    }

    /// Serialises `device` to JSON (once) and appends it.
    ///
    /// # Errors
    ///
    /// [`PushError::Serialize`] when serialisation fails, [`PushError::DeviceTooLarge`] and
    /// [`PushError::TooManyChunks`] as for [`ChunkBuilder::push_raw`]. On error nothing is added.
    pub fn push<T: Serialize + ?Sized>(&mut self, device: &T) -> Result<(), PushError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let result = serde_json::to_writer(&mut scratch, device)
            .map_err(PushError::Serialize)
            .and_then(|()| self.append(&scratch));
        self.scratch = scratch;
        result
    }

    /// Appends a device that is already serialised. The bytes must be exactly one JSON value
    /// (surrounding whitespace is dropped); they are checked, not re-serialised.
    ///
    /// # Errors
    ///
    /// [`PushError::InvalidJson`] when the bytes are not one JSON value;
    /// [`PushError::DeviceTooLarge`] and [`PushError::TooManyChunks`] as for
    /// [`ChunkBuilder::push_raw`]. On error nothing is added.
    pub fn push_serialized(&mut self, device_json: &[u8]) -> Result<(), PushError> {
        let raw: &RawValue = serde_json::from_slice(device_json).map_err(PushError::InvalidJson)?;
        self.append(raw.get().as_bytes())
    }

    /// Appends a device held as a raw JSON value, without checking or re-serialising it.
    ///
    /// # Errors
    ///
    /// [`PushError::DeviceTooLarge`] when `[` device `]` would exceed [`HARD_MAX_CHUNK_BYTES`];
    /// [`PushError::TooManyChunks`] when the stream would need more than
    /// [`MAX_CHUNKS_PER_STREAM`] chunks. On error nothing is added.
    pub fn push_raw(&mut self, device: &RawValue) -> Result<(), PushError> {
        self.append(device.get().as_bytes())
    }

    /// Number of devices added so far.
    #[must_use]
    pub fn device_count(&self) -> usize {
        self.device_count
    }

    /// Number of chunks of the stream so far, those already taken included (at least 1).
    #[must_use]
    pub fn chunk_count(&self) -> usize {
        let closed = self.taken + self.closed.len();
        closed + usize::from(self.open_devices > 0 || closed == 0)
    }

    /// Removes the chunks closed so far and returns each as (complete JSON array, device count),
    /// in stream order, so a sender can move them out of memory (to a spool file) while it keeps
    /// adding devices. The numbering of [`ChunkBuilder::finish_chunks`] continues after them.
    pub fn take_closed(&mut self) -> Vec<(Vec<u8>, usize)> {
        self.taken += self.closed.len();
        std::mem::take(&mut self.closed)
    }

    /// Closes the stream and returns each chunk's JSON array, in order.
    #[must_use]
    pub fn finish(self) -> Vec<Vec<u8>> {
        self.finish_chunks()
            .into_iter()
            .map(|chunk| chunk.payload)
            .collect()
    }

    /// Closes the stream and returns its chunks numbered `0..total`, the last one final. Chunks
    /// already removed by [`ChunkBuilder::take_closed`] are not returned again, but count in the
    /// numbering: the first chunk returned then has index `taken` and `total` covers them all.
    #[must_use]
    pub fn finish_chunks(mut self) -> Vec<Chunk> {
        if self.open_devices > 0 || (self.closed.is_empty() && self.taken == 0) {
            self.close_open_chunk();
        }
        // `append` keeps the count within MAX_CHUNKS_PER_STREAM, so this never saturates.
        let total = i32::try_from(self.taken + self.closed.len()).unwrap_or(i32::MAX);
        let first = i32::try_from(self.taken).unwrap_or(i32::MAX);
        self.closed
            .into_iter()
            .zip(first..total)
            .map(|((payload, device_count), index)| Chunk {
                index,
                total,
                is_final: index == total - 1,
                device_count,
                payload,
            })
            .collect()
    }

    /// Appends one serialised device, closing the open chunk first when the device does not fit.
    /// Checks everything before mutating, so a refused device leaves the builder unchanged.
    fn append(&mut self, device: &[u8]) -> Result<(), PushError> {
        if device.len().saturating_add(2) > HARD_MAX_CHUNK_BYTES {
            return Err(PushError::DeviceTooLarge {
                size: device.len(),
                max: HARD_MAX_CHUNK_BYTES - 2,
            });
        }
        if self.open_devices > 0 {
            // Size of the open chunk with `,` device `]` added.
            let grown = self.open.len() + 1 + device.len() + 1;
            if self.open_devices >= self.limits.max_devices_per_chunk
                || grown > self.limits.max_chunk_bytes
            {
                // Closing makes one chunk and opening the next makes another.
                if self.taken + self.closed.len() + 2 > MAX_CHUNKS_PER_STREAM {
                    return Err(PushError::TooManyChunks {
                        max: MAX_CHUNKS_PER_STREAM,
                    });
                }
                self.close_open_chunk();
            }
        }
        if self.open_devices > 0 {
            self.open.push(b',');
        }
        self.open.extend_from_slice(device);
        self.open_devices += 1;
        self.device_count += 1;
        Ok(())
    }

    fn close_open_chunk(&mut self) {
        // The next chunk is likely as full as this one (plus its closing `]`).
        let next_capacity = (self.open.len() + 1).clamp(
            self.limits.max_chunk_bytes.min(INITIAL_CHUNK_CAPACITY),
            self.limits.max_chunk_bytes,
        );
        let mut payload = std::mem::replace(&mut self.open, new_open_chunk(next_capacity));
        payload.push(b']');
        self.closed.push((payload, self.open_devices));
        self.open_devices = 0;
    }
}

impl fmt::Debug for ChunkBuilder {
    // Payloads can be megabytes: show sizes, not bytes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkBuilder")
            .field("limits", &self.limits)
            .field("closed_chunks", &self.closed.len())
            .field("taken_chunks", &self.taken)
            .field("open_chunk_bytes", &self.open.len())
            .field("open_chunk_devices", &self.open_devices)
            .field("device_count", &self.device_count)
            .finish()
    }
}

fn new_open_chunk(capacity: usize) -> Vec<u8> {
    let mut chunk = Vec::with_capacity(capacity);
    chunk.push(b'[');
    chunk
}
