//! Receiver side: enforce the stream rules on the chunks of one `StreamStatus` call and collect
//! the device elements as raw JSON.
//!
//! The rules (CONTRACT §1, "Stream rules"): `chunk_index` starts at 0 and is contiguous;
//! `total_chunks > 0` and constant; `agent_id` constant; `is_final` is set exactly on the chunk
//! with `chunk_index == total_chunks - 1`; nothing follows it; every results payload is a complete
//! JSON array. A stream that breaks a rule fails as a whole: the gateway publishes nothing of it.
//!
//! Payloads are parsed only far enough to find their elements (byte ranges into the payloads kept
//! as received, so no device is copied or allocated on its own); devices are
//! never deserialised into structs here.

use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::stream_id::fallback_stream_id;
use crate::{LimitsError, at_least};

/// Default limit on the bytes of all payloads of one stream (64 MiB).
pub const DEFAULT_MAX_TOTAL_BYTES: usize = 64 * 1024 * 1024;

/// Default limit on the results payloads (service statuses) of one stream.
pub const DEFAULT_MAX_SERVICES: usize = 5000;

/// Default limit on `total_chunks`. The sync service sends one service status per chunk, so this
/// matches [`DEFAULT_MAX_SERVICES`]; it also bounds streams of chunks that carry no results.
pub const DEFAULT_MAX_CHUNKS: usize = 5000;

/// Default limit on the device elements of one stream. Each element costs a small allocation on
/// top of its bytes, so this bounds memory for streams of tiny elements (`[0,0,0,…]`).
pub const DEFAULT_MAX_ELEMENTS: usize = 1_000_000;

/// Longest agent id quoted in an error message, in bytes.
const MAX_QUOTED_AGENT_ID: usize = 64;

/// Limits of one reassembled stream. Build with [`ReassemblyLimits::new`] or take
/// [`ReassemblyLimits::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyLimits {
    max_total_bytes: usize,
    max_services: usize,
    max_chunks: usize,
    max_elements: usize,
}

impl ReassemblyLimits {
    /// Validates and builds reassembly limits.
    ///
    /// # Errors
    ///
    /// [`LimitsError::BelowMinimum`] when `max_total_bytes` is below 2 (the empty stream `[]`)
    /// or any count is zero.
    pub fn new(
        max_total_bytes: usize,
        max_services: usize,
        max_chunks: usize,
        max_elements: usize,
    ) -> Result<Self, LimitsError> {
        at_least("max_total_bytes", max_total_bytes, 2)?;
        at_least("max_services", max_services, 1)?;
        at_least("max_chunks", max_chunks, 1)?;
        at_least("max_elements", max_elements, 1)?;
        Ok(Self {
            max_total_bytes,
            max_services,
            max_chunks,
            max_elements,
        })
    }

    /// Limit on the summed byte length of all payloads of the stream.
    #[must_use]
    pub fn max_total_bytes(&self) -> usize {
        self.max_total_bytes
    }

    /// Limit on the number of payloads (results service statuses) of the stream.
    #[must_use]
    pub fn max_services(&self) -> usize {
        self.max_services
    }

    /// Limit on `total_chunks`.
    #[must_use]
    pub fn max_chunks(&self) -> usize {
        self.max_chunks
    }

    /// Limit on the number of device elements of the stream.
    #[must_use]
    pub fn max_elements(&self) -> usize {
        self.max_elements
    }
}

impl Default for ReassemblyLimits {
    fn default() -> Self {
        Self {
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            max_services: DEFAULT_MAX_SERVICES,
            max_chunks: DEFAULT_MAX_CHUNKS,
            max_elements: DEFAULT_MAX_ELEMENTS,
        }
    }
}

/// One received chunk, mapped from a `GatewayStatusChunk` by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingChunk {
    /// `agent_id` of the chunk.
    pub agent_id: String,
    /// `chunk_index` of the chunk.
    pub chunk_index: i32,
    /// `total_chunks` of the chunk.
    pub total_chunks: i32,
    /// `is_final` of the chunk.
    pub is_final: bool,
    /// The `message` of each results service status (`source = "results"`) in the chunk, in
    /// order. Each must be a complete JSON array.
    pub payloads: Vec<Vec<u8>>,
}

/// Why a stream was rejected. The `Display` text is safe to send back as the gRPC status message.
///
/// The gateway maps errors for which [`StreamError::is_resource_exhausted`] is true to
/// `RESOURCE_EXHAUSTED` and every other error to `INVALID_ARGUMENT`.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A chunk arrived after the final chunk.
    #[error("chunk {index} arrived after the final chunk")]
    ChunkAfterFinal {
        /// `chunk_index` of the late chunk.
        index: i32,
    },
    /// `total_chunks` is zero or negative.
    #[error("total_chunks must be greater than 0, got {total}")]
    InvalidTotalChunks {
        /// The rejected `total_chunks`.
        total: i32,
    },
    /// `chunk_index` is negative.
    #[error("chunk_index must not be negative, got {index}")]
    NegativeChunkIndex {
        /// The rejected `chunk_index`.
        index: i32,
    },
    /// The first chunk announces more chunks than the limit allows.
    #[error("total_chunks {total} exceeds the limit of {max} chunks per stream")]
    TooManyChunks {
        /// The announced `total_chunks`.
        total: i32,
        /// [`ReassemblyLimits::max_chunks`].
        max: usize,
    },
    /// `agent_id` differs from the first chunk's.
    #[error(
        "agent_id changed mid-stream: expected {:?}, got {:?}",
        clip(.expected),
        clip(.got)
    )]
    AgentIdChanged {
        /// `agent_id` of the first chunk.
        expected: String,
        /// `agent_id` of this chunk.
        got: String,
    },
    /// `total_chunks` differs from the first chunk's.
    #[error("total_chunks changed mid-stream: expected {expected}, got {got}")]
    TotalChunksChanged {
        /// `total_chunks` of the first chunk.
        expected: i32,
        /// `total_chunks` of this chunk.
        got: i32,
    },
    /// `chunk_index` skips ahead of the next expected index.
    #[error("chunk index gap: expected {expected}, got {got}")]
    ChunkIndexGap {
        /// The next expected `chunk_index`.
        expected: i32,
        /// The received `chunk_index`.
        got: i32,
    },
    /// `chunk_index` repeats an index already received.
    #[error("chunk index {index} repeated: expected {expected}")]
    RepeatedChunkIndex {
        /// The received `chunk_index`.
        index: i32,
        /// The next expected `chunk_index`.
        expected: i32,
    },
    /// `is_final` is set on a chunk that is not the last one.
    #[error("is_final set on chunk {index}, but the final chunk is {last}")]
    FinalBeforeLast {
        /// `chunk_index` of the chunk.
        index: i32,
        /// `total_chunks - 1`.
        last: i32,
    },
    /// The last chunk (`chunk_index == total_chunks - 1`) does not set `is_final`.
    #[error("chunk {index} is the last of the stream but is_final is not set")]
    LastChunkNotFinal {
        /// `chunk_index` of the chunk.
        index: i32,
    },
    /// The stream carries more results payloads than the limit allows.
    #[error("stream carries more than {max} services")]
    TooManyServices {
        /// [`ReassemblyLimits::max_services`].
        max: usize,
    },
    /// The stream carries more device elements than the limit allows.
    #[error("stream carries more than {max} devices")]
    TooManyElements {
        /// [`ReassemblyLimits::max_elements`].
        max: usize,
    },
    /// The summed payload bytes exceed the limit.
    #[error("stream payload exceeds the limit of {limit} bytes ({received} bytes received)")]
    TooLarge {
        /// [`ReassemblyLimits::max_total_bytes`].
        limit: usize,
        /// Bytes received including the chunk that crossed the limit.
        received: usize,
    },
    /// A payload is valid JSON but not an array.
    #[error("chunk {chunk_index} payload {payload_index} must be a JSON array, found {found}")]
    NotAnArray {
        /// `chunk_index` of the chunk.
        chunk_index: i32,
        /// Position of the payload within the chunk.
        payload_index: usize,
        /// What was found instead (`an object`, `a string`, …).
        found: &'static str,
    },
    /// A payload is not valid JSON.
    #[error("chunk {chunk_index} payload {payload_index} is not valid JSON: {source}")]
    InvalidJson {
        /// `chunk_index` of the chunk.
        chunk_index: i32,
        /// Position of the payload within the chunk.
        payload_index: usize,
        /// The parser's error, with line and column.
        #[source]
        source: serde_json::Error,
    },
    /// The stream ended before any chunk arrived.
    #[error("stream ended before any chunk arrived")]
    EmptyStream,
    /// The stream ended without its final chunk.
    #[error("stream ended after {received} of {total} chunks without the final chunk")]
    MissingFinal {
        /// Chunks accepted.
        received: i32,
        /// The announced `total_chunks`.
        total: i32,
    },
}

impl StreamError {
    /// `true` for size limits a well-formed stream can hit ([`StreamError::TooLarge`],
    /// [`StreamError::TooManyElements`]): the gateway answers `RESOURCE_EXHAUSTED`. Every other
    /// error is a protocol violation: `INVALID_ARGUMENT`.
    #[must_use]
    pub fn is_resource_exhausted(&self) -> bool {
        matches!(self, Self::TooLarge { .. } | Self::TooManyElements { .. })
    }
}

/// Shortens a client-supplied id for an error message, at a character boundary.
fn clip(id: &str) -> &str {
    if id.len() <= MAX_QUOTED_AGENT_ID {
        return id;
    }
    let mut end = MAX_QUOTED_AGENT_ID;
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    &id[..end]
}

/// Validates the chunks of one stream, in arrival order, and collects their elements.
///
/// [`Reassembler::accept`] is atomic: a rejected chunk leaves the state as it was. The gateway
/// nevertheless aborts the whole stream on the first error and publishes nothing of it.
pub struct Reassembler {
    limits: ReassemblyLimits,
    /// `agent_id` and `total_chunks` of the first chunk; `None` until it arrives.
    first: Option<(String, i32)>,
    next_index: i32,
    finished: bool,
    /// The payloads as received; elements are byte ranges into them (no copy per device).
    payloads: Vec<Vec<u8>>,
    spans: Vec<ElementSpan>,
    total_bytes: usize,
    service_count: usize,
}

/// Where one device element sits in the received payloads.
#[derive(Debug, Clone, Copy)]
struct ElementSpan {
    payload: u32,
    start: u32,
    end: u32,
}

impl Reassembler {
    /// Starts a stream.
    #[must_use]
    pub fn new(limits: ReassemblyLimits) -> Self {
        Self {
            limits,
            first: None,
            next_index: 0,
            finished: false,
            payloads: Vec::new(),
            spans: Vec::new(),
            total_bytes: 0,
            service_count: 0,
        }
    }

    /// Validates the next chunk against the stream rules and limits, then keeps its elements.
    ///
    /// # Errors
    ///
    /// Any [`StreamError`] except [`StreamError::EmptyStream`] and [`StreamError::MissingFinal`]
    /// (those come from [`Reassembler::finish`]). On error the reassembler is unchanged.
    pub fn accept(&mut self, chunk: IncomingChunk) -> Result<(), StreamError> {
        let index = chunk.chunk_index;
        let total = chunk.total_chunks;
        if self.finished {
            return Err(StreamError::ChunkAfterFinal { index });
        }
        if total <= 0 {
            return Err(StreamError::InvalidTotalChunks { total });
        }
        if index < 0 {
            return Err(StreamError::NegativeChunkIndex { index });
        }
        match &self.first {
            None => {
                if usize::try_from(total).map_or(true, |total| total > self.limits.max_chunks) {
                    return Err(StreamError::TooManyChunks {
                        total,
                        max: self.limits.max_chunks,
                    });
                }
            }
            Some((agent_id, first_total)) => {
                if *agent_id != chunk.agent_id {
                    return Err(StreamError::AgentIdChanged {
                        expected: agent_id.clone(),
                        got: chunk.agent_id,
                    });
                }
                if *first_total != total {
                    return Err(StreamError::TotalChunksChanged {
                        expected: *first_total,
                        got: total,
                    });
                }
            }
        }
        if index < self.next_index {
            return Err(StreamError::RepeatedChunkIndex {
                index,
                expected: self.next_index,
            });
        }
        if index > self.next_index {
            return Err(StreamError::ChunkIndexGap {
                expected: self.next_index,
                got: index,
            });
        }
        // Here index == next_index <= total - 1: the last index finishes the stream.
        let last = total - 1;
        if chunk.is_final && index != last {
            return Err(StreamError::FinalBeforeLast { index, last });
        }
        if !chunk.is_final && index == last {
            return Err(StreamError::LastChunkNotFinal { index });
        }
        let service_count = self.service_count.saturating_add(chunk.payloads.len());
        if service_count > self.limits.max_services {
            return Err(StreamError::TooManyServices {
                max: self.limits.max_services,
            });
        }
        let total_bytes = chunk
            .payloads
            .iter()
            .fold(self.total_bytes, |sum, payload| {
                sum.saturating_add(payload.len())
            });
        if total_bytes > self.limits.max_total_bytes {
            return Err(StreamError::TooLarge {
                limit: self.limits.max_total_bytes,
                received: total_bytes,
            });
        }

        let kept = self.spans.len();
        let base = self.payloads.len();
        for (payload_index, payload) in chunk.payloads.iter().enumerate() {
            if let Err(error) =
                self.parse_payload(payload, base + payload_index, index, payload_index)
            {
                self.spans.truncate(kept);
                return Err(error);
            }
        }
        self.payloads.extend(chunk.payloads);

        if self.first.is_none() {
            self.first = Some((chunk.agent_id, total));
        }
        self.next_index = index.saturating_add(1);
        self.finished = chunk.is_final;
        self.total_bytes = total_bytes;
        self.service_count = service_count;
        Ok(())
    }

    /// Number of chunks accepted so far.
    #[must_use]
    pub fn chunks_received(&self) -> i32 {
        self.next_index
    }

    /// `true` once the final chunk has been accepted.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.finished
    }

    /// Ends the stream.
    ///
    /// # Errors
    ///
    /// [`StreamError::EmptyStream`] when no chunk was accepted, [`StreamError::MissingFinal`] when
    /// the final chunk was not.
    pub fn finish(self) -> Result<Reassembled, StreamError> {
        let Some((agent_id, total)) = self.first else {
            return Err(StreamError::EmptyStream);
        };
        if !self.finished {
            return Err(StreamError::MissingFinal {
                received: self.next_index,
                total,
            });
        }
        Ok(Reassembled {
            agent_id,
            chunk_count: total,
            service_count: self.service_count,
            total_bytes: self.total_bytes,
            payloads: self.payloads,
            spans: self.spans,
        })
    }

    /// Appends the elements of one payload, or reports why it is not a JSON array.
    fn parse_payload(
        &mut self,
        payload: &[u8],
        slot: usize,
        chunk_index: i32,
        payload_index: usize,
    ) -> Result<(), StreamError> {
        if let Some(first) = first_non_whitespace(payload).filter(|&byte| byte != b'[') {
            // Not an array: say what it is when it is valid JSON at all.
            return Err(match serde_json::from_slice::<IgnoredAny>(payload) {
                Ok(IgnoredAny) => StreamError::NotAnArray {
                    chunk_index,
                    payload_index,
                    found: json_kind(first),
                },
                Err(source) => StreamError::InvalidJson {
                    chunk_index,
                    payload_index,
                    source,
                },
            });
        }
        let mut over_limit = false;
        let mut deserializer = serde_json::Deserializer::from_slice(payload);
        let parsed = AppendElements {
            out: &mut self.spans,
            base: payload.as_ptr() as usize,
            slot: u32::try_from(slot).unwrap_or(u32::MAX),
            max_elements: self.limits.max_elements,
            over_limit: &mut over_limit,
        }
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
        match parsed {
            Ok(()) => Ok(()),
            Err(_) if over_limit => Err(StreamError::TooManyElements {
                max: self.limits.max_elements,
            }),
            Err(source) => Err(StreamError::InvalidJson {
                chunk_index,
                payload_index,
                source,
            }),
        }
    }
}

impl fmt::Debug for Reassembler {
    // Elements can be megabytes: show counts, not JSON.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reassembler")
            .field("limits", &self.limits)
            .field("agent_id", &self.first.as_ref().map(|(id, _)| id))
            .field("total_chunks", &self.first.as_ref().map(|(_, total)| total))
            .field("next_index", &self.next_index)
            .field("finished", &self.finished)
            .field("element_count", &self.spans.len())
            .field("total_bytes", &self.total_bytes)
            .field("service_count", &self.service_count)
            .finish()
    }
}

/// A complete, valid stream: its device elements as raw JSON, in arrival order.
pub struct Reassembled {
    agent_id: String,
    chunk_count: i32,
    service_count: usize,
    total_bytes: usize,
    payloads: Vec<Vec<u8>>,
    spans: Vec<ElementSpan>,
}

impl Reassembled {
    /// The stream's `agent_id`.
    #[must_use]
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// Number of chunks of the stream (`total_chunks`).
    #[must_use]
    pub fn chunk_count(&self) -> i32 {
        self.chunk_count
    }

    /// Number of results payloads (service statuses) of the stream.
    #[must_use]
    pub fn service_count(&self) -> usize {
        self.service_count
    }

    /// Summed byte length of all payloads as received (the figure checked against
    /// [`ReassemblyLimits::max_total_bytes`]).
    #[must_use]
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Number of device elements.
    #[must_use]
    pub fn element_count(&self) -> usize {
        self.spans.len()
    }

    /// `true` when the stream carried no device (an empty result, `[]`).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The device elements as raw JSON bytes, in order, borrowed from the received payloads;
    /// feed them to [`split_into_batches`](crate::batching::split_into_batches).
    #[must_use]
    pub fn elements(&self) -> Vec<&[u8]> {
        self.spans
            .iter()
            .map(|s| &self.payloads[s.payload as usize][s.start as usize..s.end as usize])
            .collect()
    }

    /// The device elements as owned raw JSON values.
    #[must_use]
    pub fn into_elements(self) -> Vec<Box<RawValue>> {
        self.elements()
            .into_iter()
            .filter_map(|bytes| {
                let text = String::from_utf8(bytes.to_vec()).ok()?;
                RawValue::from_string(text).ok()
            })
            .collect()
    }

    /// [`fallback_stream_id`] over this stream's elements: the dedup id when the client sent no
    /// `x-sr-stream-id`. It depends on the elements, not on how they were chunked.
    #[must_use]
    pub fn content_stream_id(&self, identity: &str, tenant: &str) -> String {
        fallback_stream_id(identity, tenant, self.elements())
    }
}

impl fmt::Debug for Reassembled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reassembled")
            .field("agent_id", &self.agent_id)
            .field("chunk_count", &self.chunk_count)
            .field("service_count", &self.service_count)
            .field("total_bytes", &self.total_bytes)
            .field("element_count", &self.spans.len())
            .finish()
    }
}

/// Deserialises a JSON array by recording where each element sits in the payload (borrowed
/// raw JSON, so nothing is copied); stops with an error (and sets `over_limit`) once `out` would
/// exceed `max_elements`.
struct AppendElements<'a> {
    out: &'a mut Vec<ElementSpan>,
    /// Address of the payload's first byte.
    base: usize,
    /// Index of the payload in the stream.
    slot: u32,
    max_elements: usize,
    over_limit: &'a mut bool,
}

impl<'de> DeserializeSeed<'de> for AppendElements<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for AppendElements<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(element) = seq.next_element::<&'de RawValue>()? {
            if self.out.len() >= self.max_elements {
                *self.over_limit = true;
                return Err(de::Error::custom("too many elements"));
            }
            let text = element.get();
            let start = (text.as_ptr() as usize).wrapping_sub(self.base);
            let (Ok(start), Ok(end)) = (u32::try_from(start), u32::try_from(start + text.len()))
            else {
                return Err(de::Error::custom("payload too large"));
            };
            self.out.push(ElementSpan {
                payload: self.slot,
                start,
                end,
            });
        }
        Ok(())
    }
}

/// First byte that is not JSON whitespace.
fn first_non_whitespace(payload: &[u8]) -> Option<u8> {
    payload
        .iter()
        .copied()
        .find(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r'))
}

/// Kind of JSON value starting with `first`, for a valid JSON value that is not an array.
fn json_kind(first: u8) -> &'static str {
    match first {
        b'{' => "an object",
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        _ => "a number",
    }
}
