//! Re-cut reassembled device elements into JSON-array batches that each fit one NATS message.
//!
//! Batches are cut greedily at element boundaries, in order, by copying the raw element bytes:
//! nothing is re-parsed or re-serialised. The cut is deterministic: the same elements and the same
//! budget always give the same batches, which the per-batch `Nats-Msg-Id`
//! ([`batch_msg_id`](crate::stream_id::batch_msg_id)) relies on.

use std::ops::Range;

use serde_json::value::RawValue;

/// Default `max_payload` of a NATS server (1 MiB).
pub const DEFAULT_NATS_MAX_PAYLOAD: usize = 1024 * 1024;

/// Default room left for message headers (`Nats-Msg-Id`, trace context, tenant): NATS counts
/// headers against `max_payload`.
pub const DEFAULT_HEADER_RESERVE_BYTES: usize = 4 * 1024;

/// Elements cannot be batched within the budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// One element alone, in its brackets, exceeds the batch budget.
    #[error(
        "element {index} is {size} bytes; a batch holds at most {max} bytes including its brackets"
    )]
    ElementTooLarge {
        /// Position of the element.
        index: usize,
        /// Byte length of the element.
        size: usize,
        /// The batch budget.
        max: usize,
    },
    /// The header reserve leaves no room for a batch holding one element.
    #[error(
        "NATS max_payload of {max_payload} bytes minus a header reserve of {header_reserve} bytes \
         leaves no room for a batch"
    )]
    BudgetTooSmall {
        /// The server's `max_payload`.
        max_payload: usize,
        /// The bytes reserved for headers.
        header_reserve: usize,
    },
}

/// Byte budget of one batch: the server's `max_payload` minus the header reserve.
///
/// # Errors
///
/// [`BatchError::BudgetTooSmall`] when fewer than 3 bytes remain (`[` + one byte + `]`).
pub fn batch_budget(server_max_payload: usize, header_reserve: usize) -> Result<usize, BatchError> {
    match server_max_payload.checked_sub(header_reserve) {
        Some(budget) if budget >= 3 => Ok(budget),
        _ => Err(BatchError::BudgetTooSmall {
            max_payload: server_max_payload,
            header_reserve,
        }),
    }
}

/// The element ranges of each batch that [`split_into_batches`] would build: consecutive,
/// non-empty, covering all elements in order. Empty input gives no range.
///
/// # Errors
///
/// [`BatchError::ElementTooLarge`] for the first element whose `[` element `]` exceeds
/// `max_batch_bytes`.
pub fn plan_batches<E: JsonElement>(
    elements: &[E],
    max_batch_bytes: usize,
) -> Result<Vec<Range<usize>>, BatchError> {
    let mut ranges = Vec::new();
    let mut start = 0;
    // Bytes of the open batch without its closing `]`; 1 for the bare `[`.
    let mut open_bytes = 1;
    for (index, element) in elements.iter().enumerate() {
        let size = element.json_bytes().len();
        if size.saturating_add(2) > max_batch_bytes {
            return Err(BatchError::ElementTooLarge {
                index,
                size,
                max: max_batch_bytes,
            });
        }
        if index > start {
            // `,` element `]`
            if open_bytes + 1 + size + 1 > max_batch_bytes {
                ranges.push(start..index);
                start = index;
                open_bytes = 1;
            } else {
                open_bytes += 1;
            }
        }
        open_bytes += size;
    }
    if start < elements.len() {
        ranges.push(start..elements.len());
    }
    Ok(ranges)
}

/// Splits elements into JSON arrays of at most `max_batch_bytes` bytes each (brackets and commas
/// included), cutting only between elements, keeping their order, packing each batch greedily.
/// Empty input gives no batch.
///
/// Accepts `&[Box<RawValue>]` (as from [`Reassembled::elements`](crate::Reassembled::elements))
/// and `&[&RawValue]`.
///
/// # Errors
///
/// [`BatchError::ElementTooLarge`] for the first element that cannot fit a batch on its own.
pub fn split_into_batches<E: JsonElement>(
    elements: &[E],
    max_batch_bytes: usize,
) -> Result<Vec<Vec<u8>>, BatchError> {
    let ranges = plan_batches(elements, max_batch_bytes)?;
    Ok(ranges
        .into_iter()
        .map(|range| {
            let batch = &elements[range];
            let size = 2
                + batch.len().saturating_sub(1)
                + batch
                    .iter()
                    .map(|element| element.json_bytes().len())
                    .sum::<usize>();
            let mut out = Vec::with_capacity(size);
            out.push(b'[');
            for (position, element) in batch.iter().enumerate() {
                if position > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(element.json_bytes());
            }
            out.push(b']');
            out
        })
        .collect())
}

/// One JSON value as bytes: what the batching functions accept.
pub trait JsonElement {
    /// The value's JSON text.
    fn json_bytes(&self) -> &[u8];
}

impl JsonElement for Box<RawValue> {
    fn json_bytes(&self) -> &[u8] {
        self.get().as_bytes()
    }
}

impl JsonElement for &RawValue {
    fn json_bytes(&self) -> &[u8] {
        self.get().as_bytes()
    }
}

/// Bytes already known to be one JSON value (as [`crate::Reassembled::elements`] returns).
impl JsonElement for &[u8] {
    fn json_bytes(&self) -> &[u8] {
        self
    }
}
