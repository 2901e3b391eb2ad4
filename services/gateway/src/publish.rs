//! Publishing reassembled results to JetStream: split at element boundaries into batches
//! that fit the server's max payload, one message per batch with a deterministic
//! `Nats-Msg-Id`, and success only when JetStream acknowledged every batch.

use async_nats::HeaderMap;
use async_nats::jetstream;
use sr_core::{Subjects, TenantId};
use sr_runtime::jetstream::headers;
use tonic::Status;
use tracing::Instrument as _;

/// Header naming the certificate that pushed a batch.
pub const SOURCE_IDENTITY_HEADER: &str = "sr-source-identity";
/// Header naming the stream a batch belongs to.
pub const STREAM_ID_HEADER: &str = "sr-stream-id";
/// Header with the batch's index within its stream.
pub const BATCH_INDEX_HEADER: &str = "sr-batch-index";

/// Publishes device batches.
pub struct Publisher {
    js: jetstream::Context,
    subjects: Subjects,
    budget: usize,
    gateway_id: String,
}

impl Publisher {
    /// A publisher whose batches are at most `budget` bytes.
    #[must_use]
    pub fn new(
        js: jetstream::Context,
        subjects: Subjects,
        budget: usize,
        gateway_id: String,
    ) -> Self {
        Self {
            js,
            subjects,
            budget,
            gateway_id,
        }
    }

    /// Largest batch in bytes.
    #[must_use]
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Publishes `elements` for `tenant`; returns the number of batches.
    ///
    /// # Errors
    /// `UNAVAILABLE` when any batch was not acknowledged (a retry of the same stream is
    /// de-duplicated by message id), `INVALID_ARGUMENT` for a device larger than a batch.
    pub async fn publish(
        &self,
        identity: &str,
        tenant: TenantId,
        stream_id: &str,
        elements: &[&[u8]],
    ) -> Result<usize, Status> {
        let batches = sr_chunking::split_into_batches(elements, self.budget)
            .map_err(|e| Status::invalid_argument(format!("result cannot be published: {e}")))?;
        // The budget is part of the id's input, so gateways configured with different
        // budgets never mistake each other's batch i for their own.
        let id_basis = format!("{stream_id}/{}", self.budget);
        let subject = self.subjects.device_updates(tenant);
        let mut acks = Vec::with_capacity(batches.len());
        for (i, body) in batches.into_iter().enumerate() {
            let span = tracing::info_span!("publish_batch", batch = i, tenant_id = %tenant, bytes = body.len());
            let ack = async {
                let mut h = HeaderMap::new();
                h.insert(
                    headers::MSG_ID,
                    sr_chunking::batch_msg_id(identity, &id_basis, i).as_str(),
                );
                h.insert(headers::TENANT_ID, tenant.to_string().as_str());
                h.insert(headers::ORIGIN, self.gateway_id.as_str());
                h.insert(SOURCE_IDENTITY_HEADER, identity);
                h.insert(STREAM_ID_HEADER, stream_id);
                h.insert(BATCH_INDEX_HEADER, i.to_string().as_str());
                sr_runtime::telemetry::inject_nats(&mut h);
                self.js
                    .publish_with_headers(subject.clone(), h, body.into())
                    .await
            }
            .instrument(span)
            .await
            .map_err(|e| {
                Status::unavailable(format!(
                    "results not stored (JetStream publish failed: {e}); retry the stream"
                ))
            })?;
            acks.push(ack);
        }
        let n = acks.len();
        // Every batch is already on the wire; the acks come back in order.
        for ack in acks {
            ack.await.map_err(|e| {
                Status::unavailable(format!(
                    "results not stored (JetStream did not acknowledge: {e}); retry the stream"
                ))
            })?;
        }
        Ok(n)
    }
}
