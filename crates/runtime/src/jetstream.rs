//! NATS connection and the JetStream streams of the product.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use serde::{Deserialize, Serialize};
use sr_core::Subjects;

/// NATS settings of a service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// `nats://host:port` (`NATS_URL`).
    pub url: String,
    /// Prefix of every subject and stream name (`sr` → `sr.devices.updates.*`, `SR_DEVICES`).
    pub subject_prefix: String,
    /// Timeout of request/reply calls, in milliseconds.
    pub request_timeout_ms: u64,
    /// How long JetStream drops a re-published message with the same `Nats-Msg-Id`, in seconds.
    pub duplicate_window_secs: u64,
    /// Maximum age of messages kept in the streams, in seconds.
    pub stream_max_age_secs: u64,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_owned(),
            subject_prefix: sr_core::subjects::DEFAULT_PREFIX.to_owned(),
            request_timeout_ms: 5_000,
            duplicate_window_secs: 600,
            stream_max_age_secs: 7 * 86_400,
        }
    }
}

impl NatsConfig {
    /// The subject names for this prefix.
    #[must_use]
    pub fn subjects(&self) -> Subjects {
        Subjects::new(&self.subject_prefix)
    }
}

/// NATS failures.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// Could not connect.
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        /// Where.
        url: String,
        /// Why.
        #[source]
        source: async_nats::ConnectError,
    },
    /// Could not create or read a stream.
    #[error("cannot set up JetStream stream {name}: {message}")]
    Stream {
        /// Stream name.
        name: String,
        /// Why.
        message: String,
    },
}

/// Waits (at most `wait`) until the server has processed what this connection sent before,
/// by a request it answers: the consumer's info. Call it when a service stops, after dropping
/// its pull subscription. The unsubscribe is only written to the socket; until the server reads
/// it, it still sees interest in the subscription's open pull request and hands it a message
/// published meanwhile, which then waits out the ack wait before any replica gets it.
pub async fn confirm_unsubscribed(
    consumer: &async_nats::jetstream::consumer::PullConsumer,
    wait: Duration,
) {
    match tokio::time::timeout(wait, consumer.get_info()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "Cannot confirm the pull unsubscribe"),
        Err(_) => tracing::debug!("The pull unsubscribe was not confirmed in time"),
    }
}

/// Connects, naming the connection after the service.
///
/// # Errors
/// [`NatsError::Connect`] when the server does not answer.
pub async fn connect(cfg: &NatsConfig, name: &str) -> Result<async_nats::Client, NatsError> {
    async_nats::ConnectOptions::new()
        .name(name)
        .request_timeout(Some(Duration::from_millis(cfg.request_timeout_ms.max(1))))
        .connection_timeout(Duration::from_secs(5))
        .connect(cfg.url.as_str())
        .await
        .map_err(|source| NatsError::Connect {
            url: cfg.url.clone(),
            source,
        })
}

/// The product's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// `SR_DEVICES`: device updates from the gateway.
    Devices,
    /// `SR_INVENTORY`: changes from DIRE.
    Inventory,
    /// `SR_EVENTS`: OCSF events.
    Events,
}

/// The stream definition every service uses for `kind`, so all creators agree.
#[must_use]
pub fn stream_config(cfg: &NatsConfig, kind: StreamKind) -> stream::Config {
    let subjects = cfg.subjects();
    let (name, subject) = match kind {
        StreamKind::Devices => (subjects.devices_stream(), subjects.device_updates_all()),
        StreamKind::Inventory => (
            subjects.inventory_stream(),
            subjects.inventory_changed_all(),
        ),
        StreamKind::Events => (subjects.events_stream(), subjects.events_all()),
    };
    stream::Config {
        name,
        subjects: vec![subject],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age: Duration::from_secs(cfg.stream_max_age_secs),
        duplicate_window: Duration::from_secs(cfg.duplicate_window_secs),
        ..Default::default()
    }
}

/// Creates the stream for `kind` if it does not exist and returns it.
///
/// # Errors
/// [`NatsError::Stream`] when JetStream refuses.
pub async fn ensure_stream(
    js: &jetstream::Context,
    cfg: &NatsConfig,
    kind: StreamKind,
) -> Result<stream::Stream, NatsError> {
    let config = stream_config(cfg, kind);
    let name = config.name.clone();
    js.get_or_create_stream(config)
        .await
        .map_err(|e| NatsError::Stream {
            name,
            message: e.to_string(),
        })
}

/// Header names used on every message.
pub mod headers {
    /// Tenant of the message.
    pub const TENANT_ID: &str = "sr-tenant-id";
    /// JetStream de-duplication id.
    pub const MSG_ID: &str = "Nats-Msg-Id";
    /// Origin service.
    pub const ORIGIN: &str = "sr-origin";
}
