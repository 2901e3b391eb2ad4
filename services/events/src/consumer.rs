//! The durable JetStream consumer on `SR_EVENTS`: pulls messages, groups them into batches,
//! stores each batch in one transaction and only then acks. Invalid messages are quarantined
//! in the same transaction and terminated; a transient database failure gives the whole
//! batch back to JetStream with a delay. Any number of replicas may share the consumer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use futures::{FutureExt as _, StreamExt as _};
use sr_core::Subjects;
use sr_runtime::SharedClock;
use sr_runtime::jetstream::{NatsConfig, StreamKind, headers};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::ConsumerConfig;
use crate::decode::{self, Decoded, Incoming};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::store::Store;

/// How often the consumer's backlog is read from the server while idle.
const LAG_REFRESH: Duration = Duration::from_secs(5);
/// Pause before re-subscribing after the message stream ended.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// Creates `SR_EVENTS` and the durable consumer if missing and returns the consumer.
///
/// # Errors
/// [`Error::Startup`] when JetStream refuses.
pub async fn ensure(
    js: &jetstream::Context,
    nats: &NatsConfig,
    cfg: &ConsumerConfig,
) -> Result<PullConsumer> {
    let stream = sr_runtime::jetstream::ensure_stream(js, nats, StreamKind::Events)
        .await
        .map_err(|e| Error::Startup(e.to_string()))?;
    stream
        .get_or_create_consumer(
            &cfg.durable,
            pull::Config {
                durable_name: Some(cfg.durable.clone()),
                description: Some("sr-events: OCSF event store".to_owned()),
                filter_subject: nats.subjects().events_all(),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait: cfg.ack_wait(),
                // Redelivery is bounded by quarantine (bad input is terminated), not by a
                // count: a transient database outage must not drop events.
                max_deliver: -1,
                max_ack_pending: cfg.max_ack_pending,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| {
            Error::Startup(format!(
                "cannot create consumer {} on {}: {e}",
                cfg.durable,
                nats.subjects().events_stream()
            ))
        })
}

/// What every batch task needs.
struct Shared {
    store: Store,
    subjects: Subjects,
    metrics: Metrics,
    clock: SharedClock,
    stream: String,
    nak_delay: Duration,
}

/// The consumer loop.
pub struct Consumer {
    shared: Arc<Shared>,
    js: jetstream::Context,
    nats: NatsConfig,
    cfg: ConsumerConfig,
}

impl Consumer {
    /// A consumer storing into `store`.
    #[must_use]
    pub fn new(
        store: Store,
        js: jetstream::Context,
        nats: NatsConfig,
        cfg: ConsumerConfig,
        metrics: Metrics,
        clock: SharedClock,
    ) -> Self {
        let subjects = nats.subjects();
        Self {
            shared: Arc::new(Shared {
                store,
                stream: subjects.events_stream(),
                subjects,
                metrics,
                clock,
                nak_delay: cfg.nak_delay(),
            }),
            js,
            nats,
            cfg,
        }
    }

    /// Pulls and stores until `token` is cancelled, then finishes the batches in flight and
    /// hands back what was pulled but not started.
    pub async fn run(self, mut consumer: PullConsumer, token: CancellationToken) {
        let writers = Arc::new(Semaphore::new(self.cfg.writers.max(1)));
        let mut tasks = JoinSet::new();
        let linger = Duration::from_millis(self.cfg.batch_linger_ms);
        let batch_size = self.cfg.batch_size.max(1);
        'subscribe: while !token.is_cancelled() {
            let subscribed = consumer
                .stream()
                .max_messages_per_batch(batch_size)
                .expires(Duration::from_secs(10))
                .heartbeat(Duration::from_secs(5))
                .messages()
                .await;
            let mut messages = match subscribed {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot pull from the events consumer; retrying");
                    if self.pause(&token).await {
                        consumer = self.recreate(consumer).await;
                    }
                    continue;
                }
            };
            let mut lag = tokio::time::interval(LAG_REFRESH);
            lag.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let first = tokio::select! {
                    () = token.cancelled() => {
                        hand_back(&mut messages).await;
                        break 'subscribe;
                    }
                    _ = lag.tick() => {
                        self.refresh_lag(&consumer).await;
                        continue;
                    }
                    m = messages.next() => m,
                };
                let mut batch = match first {
                    Some(Ok(m)) => vec![m],
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "Events consumer reported an error");
                        continue;
                    }
                    None => {
                        tracing::warn!("Events message stream ended; subscribing again");
                        if self.pause(&token).await {
                            consumer = self.recreate(consumer).await;
                        }
                        continue 'subscribe;
                    }
                };
                let deadline = tokio::time::Instant::now() + linger;
                while batch.len() < batch_size {
                    // Whatever is already buffered is taken at once; only then wait.
                    let next = match messages.next().now_or_never() {
                        Some(m) => m,
                        None => tokio::select! {
                            m = messages.next() => m,
                            () = tokio::time::sleep_until(deadline) => break,
                        },
                    };
                    match next {
                        Some(Ok(m)) => batch.push(m),
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "Events consumer reported an error");
                            break;
                        }
                        None => break,
                    }
                }
                let permit = tokio::select! {
                    p = writers.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break 'subscribe,
                    },
                    // Both writers are stuck (e.g. on an unreachable database): give this
                    // batch back rather than hold it through shutdown.
                    () = token.cancelled() => {
                        for m in &batch {
                            settle(m, AckKind::Nak(None)).await;
                        }
                        hand_back(&mut messages).await;
                        break 'subscribe;
                    }
                };
                let shared = self.shared.clone();
                tasks.spawn(async move {
                    process(&shared, batch).await;
                    drop(permit);
                });
                while tasks.try_join_next().is_some() {}
            }
        }
        while tasks.join_next().await.is_some() {}
        sr_runtime::jetstream::confirm_unsubscribed(&consumer, Duration::from_secs(2)).await;
        tracing::debug!("Events consumer stopped");
    }

    /// Waits before retrying; false when cancelled meanwhile.
    async fn pause(&self, token: &CancellationToken) -> bool {
        tokio::select! {
            () = token.cancelled() => false,
            () = tokio::time::sleep(RESUBSCRIBE_DELAY) => true,
        }
    }

    /// The consumer again (it may have been deleted); the old handle when that fails.
    async fn recreate(&self, old: PullConsumer) -> PullConsumer {
        match ensure(&self.js, &self.nats, &self.cfg).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "Cannot recreate the events consumer; will retry");
                old
            }
        }
    }

    async fn refresh_lag(&self, consumer: &PullConsumer) {
        if let Ok(info) = consumer.get_info().await {
            self.shared
                .metrics
                .consumer_pending
                .set(i64::try_from(info.num_pending).unwrap_or(i64::MAX));
        }
    }
}

/// Gives messages pulled but not started back to JetStream, so another replica takes them
/// now rather than after the ack wait.
async fn hand_back(messages: &mut pull::Stream) {
    while let Some(Some(Ok(m))) = messages.next().now_or_never() {
        let _ = m.ack_with(AckKind::Nak(None)).await;
    }
}

/// Decodes, stores and settles one batch.
async fn process(shared: &Shared, batch: Vec<jetstream::Message>) {
    let started = Instant::now();
    let span = tracing::debug_span!("store_batch", messages = batch.len());
    sr_runtime::telemetry::set_parent_from_nats(
        &span,
        batch.first().and_then(|m| m.headers.as_ref()),
    );
    async {
        // Stream positions and the decoded rows borrow from the messages, which stay alive
        // until they are settled.
        let mut pending = None;
        let positions: Vec<(&str, u64)> = batch
            .iter()
            .map(|m| match m.info() {
                Ok(info) => {
                    pending = Some(info.pending);
                    (info.stream, info.stream_sequence)
                }
                Err(_) => (shared.stream.as_str(), 0),
            })
            .collect();
        let mut events = Vec::with_capacity(batch.len());
        let mut event_msgs = Vec::with_capacity(batch.len());
        let mut quarantine = Vec::new();
        let mut quarantine_msgs = Vec::new();
        for (m, (stream, seq)) in batch.iter().zip(&positions) {
            let incoming = Incoming {
                subject: m.subject.as_str(),
                origin: m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(headers::ORIGIN))
                    .map(async_nats::HeaderValue::as_str),
                payload: &m.payload,
                stream,
                stream_seq: *seq,
            };
            match decode::decode(&shared.subjects, &incoming) {
                Decoded::Event(e) => {
                    events.push(*e);
                    event_msgs.push(m);
                }
                Decoded::Quarantine(q) => {
                    tracing::warn!(subject = %q.subject, kind = q.kind.as_str(), reason = %q.reason, "Event quarantined");
                    quarantine.push(q);
                    quarantine_msgs.push(m);
                }
            }
        }
        if let Some(p) = pending {
            shared
                .metrics
                .consumer_pending
                .set(i64::try_from(p).unwrap_or(i64::MAX));
        }
        match shared
            .store
            .store_batch(&events, &quarantine, shared.clock.now())
            .await
        {
            Ok(stored) => {
                for (i, m) in event_msgs.iter().enumerate() {
                    let kind = if stored.rejected.contains(&i) {
                        AckKind::Term
                    } else {
                        AckKind::Ack
                    };
                    settle(m, kind).await;
                }
                for m in &quarantine_msgs {
                    settle(m, AckKind::Term).await;
                }
                let metrics = &shared.metrics;
                metrics.stored.inc_by(stored.inserted);
                metrics.duplicates.inc_by(stored.duplicates);
                for kind in &stored.newly_quarantined {
                    metrics.quarantine(kind.as_str());
                }
            }
            Err(e) => {
                shared.metrics.batch_failures.inc();
                tracing::warn!(error = %e, messages = event_msgs.len() + quarantine_msgs.len(),
                    "Batch not stored; JetStream will redeliver it");
                for m in event_msgs.iter().chain(&quarantine_msgs) {
                    settle(m, AckKind::Nak(Some(shared.nak_delay))).await;
                }
            }
        }
        shared
            .metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
    }
    .instrument(span)
    .await;
}

async fn settle(m: &jetstream::Message, kind: AckKind) {
    if let Err(e) = m.ack_with(kind).await {
        // The message will be redelivered after the ack wait and stored (or skipped) again.
        tracing::debug!(error = %e, "Acknowledgement not sent");
    }
}
