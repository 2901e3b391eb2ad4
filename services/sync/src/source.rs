//! One source's loop: run at start, then every `discovery_interval` exactly (fixed rate on the
//! scheduler's timer, missed ticks skipped, never two runs at once); each run fetches into a
//! spooled result set, pushes it (retrying the same result set under the same stream ids
//! until it is accepted or the next run is due), and reports the outcome to identity.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use sr_chunking::ChunkLimits;
use sr_core::syncconfig::SourceConfig;
use sr_proto::{GatewayServiceStatus, GatewayStatusChunk};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::Config;
use crate::gateway::{GatewayError, Session};
use crate::integrations::{Common, FetchError, Integration};
use crate::metrics::{DropLabel, Metrics, RunLabel, SourceLabel};
use crate::results::{Blacklist, ResultSet, ResultWriter};
use crate::state::SourceKey;
use crate::timer::SharedTimer;

/// `service_type` of a status that reports a source run.
pub const SOURCE_RUN_SERVICE_TYPE: &str = "sync_source";

/// Longest error text reported to identity (the gateway truncates status messages at 4 KiB).
const MAX_REPORTED_ERROR: usize = 1_000;

/// What every source loop shares.
#[derive(Debug)]
pub struct Shared {
    /// The gateway session.
    pub session: Arc<Session>,
    /// The scheduler's time.
    pub timer: SharedTimer,
    /// Local configuration.
    pub config: Arc<Config>,
    /// Chunk limits.
    pub limits: ChunkLimits,
    /// Metrics.
    pub metrics: Metrics,
    /// Where result sets are spooled.
    pub spool_dir: PathBuf,
    /// Whether each source's last run succeeded.
    pub health: Mutex<HashMap<SourceKey, bool>>,
}

impl Shared {
    /// (sources, failing sources).
    #[must_use]
    pub fn health_summary(&self) -> (usize, usize) {
        let h = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (h.len(), h.values().filter(|ok| !**ok).count())
    }

    fn set_health(&self, key: &SourceKey, ok: Option<bool>) {
        let mut h = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match ok {
            Some(ok) => {
                h.insert(key.clone(), ok);
            }
            None => {
                h.remove(key);
            }
        }
    }
}

/// Opens after `threshold` consecutive failed fetches; while open, runs are skipped; after the
/// cool-down one trial run is let through (a failure re-opens it at once).
#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    failures: u32,
    open_until: Option<Duration>,
}

impl Breaker {
    /// A closed breaker.
    #[must_use]
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            cooldown,
            failures: 0,
            open_until: None,
        }
    }

    /// Whether a run may go ahead at `now`.
    #[must_use]
    pub fn allows(&self, now: Duration) -> bool {
        self.open_until.is_none_or(|t| now >= t)
    }

    /// Whether the breaker is open (at or after threshold failures).
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.open_until.is_some()
    }

    /// A run succeeded: close.
    pub fn success(&mut self) {
        self.failures = 0;
        self.open_until = None;
    }

    /// A run failed at `now`; returns true when this opened (or re-opened) the breaker.
    pub fn failure(&mut self, now: Duration) -> bool {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.threshold {
            self.open_until = Some(now + self.cooldown);
            true
        } else {
            false
        }
    }
}

/// The outcome of one run, as reported to identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// Devices pushed (0 on failure).
    pub device_count: usize,
    /// Why it failed.
    pub error: Option<String>,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
enum RunError {
    /// A configuration problem, already phrased ("configuration error: …").
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("push failed: {0}")]
    Push(#[from] GatewayError),
    #[error("push not accepted before the next run was due; the result set was dropped")]
    Superseded,
    #[error("spool: {0}")]
    Spool(#[from] std::io::Error),
}

/// A running source loop.
pub struct SourceLoop {
    shared: Arc<Shared>,
    key: SourceKey,
    source: SourceConfig,
    label: SourceLabel,
    interval: Duration,
    integration: Result<Integration, String>,
    blacklist: Result<Blacklist, String>,
    breaker: Breaker,
}

impl SourceLoop {
    /// Prepares the loop of `source` (configuration problems are kept and reported by every
    /// run, so they show up on the source's status).
    #[must_use]
    pub fn new(shared: Arc<Shared>, key: SourceKey, source: SourceConfig) -> Self {
        let icfg = &shared.config.integrations;
        let default = Duration::from_secs(icfg.default_discovery_interval_secs);
        let mut config_problem = None;
        let interval = if source.discovery_interval.trim().is_empty() {
            default
        } else {
            match sr_core::duration::parse_secs(&source.discovery_interval) {
                Ok(0) => {
                    config_problem = Some("discovery_interval must be positive".to_owned());
                    default
                }
                Ok(s) => Duration::from_secs(s),
                Err(e) => {
                    config_problem = Some(format!("discovery_interval: {e}"));
                    default
                }
            }
        };
        let integration = match config_problem {
            Some(p) => Err(FetchError::Config(p).to_string()),
            None => Integration::new(&source, icfg).map_err(|e| e.to_string()),
        };
        let blacklist = Blacklist::parse(&source.network_blacklist)
            .map_err(|e| FetchError::Config(e).to_string());
        let label = SourceLabel {
            tenant: source.tenant_slug.clone(),
            source: key.key.clone(),
        };
        let breaker = Breaker::new(
            icfg.breaker_failures,
            Duration::from_secs(icfg.breaker_cooldown_secs),
        );
        Self {
            shared,
            key,
            source,
            label,
            interval,
            integration,
            blacklist,
            breaker,
        }
    }

    /// The run interval.
    #[must_use]
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Runs until `cancel`. Waits for `previous` (the loop this one replaces) to end first, so
    /// two runs of one source never overlap.
    pub async fn run(mut self, cancel: CancellationToken, previous: Option<JoinHandle<()>>) {
        if let Some(p) = previous {
            let _ = p.await;
        }
        let span =
            tracing::info_span!("source", tenant_id = %self.key.tenant_id, source = %self.key.key);
        async {
            tracing::info!(interval_secs = self.interval.as_secs(), source_type = %self.source.source_type, "Source loop started");
            let timer = self.shared.timer.clone();
            let mut due = timer.now();
            loop {
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = timer.sleep_until(due) => {}
                }
                let next = due + self.interval;
                // Each run is a trace of its own (one trace per pushed result set), carried
                // to the gateway in the calls' metadata; the fields repeat the loop's for logs.
                let run = tracing::info_span!(
                    parent: None,
                    "sync.run",
                    tenant_id = %self.key.tenant_id,
                    source = %self.key.key,
                    devices = tracing::field::Empty,
                );
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = self.run_once(next).instrument(run) => {}
                }
                // Fixed rate: the next run is one interval after this one was due; runs that
                // would have started while this one was still going are skipped, not stacked.
                due = next;
                let now = timer.now();
                if due < now {
                    let behind = (now - due).as_nanos() / self.interval.as_nanos().max(1);
                    let skip = u32::try_from(behind + 1).unwrap_or(u32::MAX);
                    due += self.interval.saturating_mul(skip);
                    tracing::debug!(skipped = skip, "Run took longer than the interval; skipping missed runs");
                }
            }
            self.shared.set_health(&self.key, None);
            tracing::info!("Source loop stopped");
        }
        .instrument(span)
        .await;
    }

    /// One run; `next` is when the next run is due (push retries stop there).
    async fn run_once(&mut self, next: Duration) {
        let timer = self.shared.timer.clone();
        let m = &self.shared.metrics;
        if !self.breaker.allows(timer.now()) {
            m.source_runs
                .get_or_create(&self.run_label("skipped"))
                .inc();
            tracing::debug!("Circuit breaker open; run skipped");
            return;
        }
        let started = std::time::Instant::now();
        let observed_at = chrono::Utc::now();
        let result = self.fetch_and_push(observed_at, next).await;
        let elapsed = started.elapsed();
        let outcome = match result {
            Ok(count) => {
                self.breaker.success();
                tracing::Span::current().record("devices", count);
                RunOutcome {
                    device_count: count,
                    error: None,
                }
            }
            Err(e) => {
                if matches!(e, RunError::Fetch(_)) && self.breaker.failure(timer.now()) {
                    tracing::warn!(
                        cooldown_secs = self.shared.config.integrations.breaker_cooldown_secs,
                        "Circuit breaker opened"
                    );
                }
                tracing::warn!(error = %e, "Source run failed");
                RunOutcome {
                    device_count: 0,
                    error: Some(e.to_string()),
                }
            }
        };
        let ok = outcome.error.is_none();
        self.shared.set_health(&self.key, Some(ok));
        // The report is part of the run: counters move only once it is done, so a completed
        // run in the metrics has also been reported.
        self.report(&outcome, next).await;
        m.source_runs
            .get_or_create(&self.run_label(if ok { "success" } else { "failure" }))
            .inc();
        m.source_last_run
            .get_or_create(&self.label)
            .set(chrono::Utc::now().timestamp());
        m.source_last_duration
            .get_or_create(&self.label)
            .set(elapsed.as_secs_f64());
        m.source_breaker_open
            .get_or_create(&self.label)
            .set(i64::from(self.breaker.is_open()));
        if ok {
            m.source_devices
                .get_or_create(&self.label)
                .set(i64::try_from(outcome.device_count).unwrap_or(i64::MAX));
        } else {
            m.source_errors.get_or_create(&self.label).inc();
        }
        tracing::info!(
            devices = outcome.device_count,
            ok,
            elapsed_ms = elapsed.as_millis() as u64,
            "Source run finished"
        );
    }

    fn run_label(&self, result: &str) -> RunLabel {
        RunLabel {
            tenant: self.label.tenant.clone(),
            source: self.label.source.clone(),
            result: result.to_owned(),
        }
    }

    async fn fetch_and_push(
        &self,
        observed_at: chrono::DateTime<chrono::Utc>,
        next: Duration,
    ) -> Result<usize, RunError> {
        let integration = self
            .integration
            .as_ref()
            .map_err(|e| RunError::Config(e.clone()))?;
        let blacklist = self
            .blacklist
            .as_ref()
            .map_err(|e| RunError::Config(e.clone()))?;
        let common = Common::new(&self.source, observed_at);
        let mut writer = ResultWriter::new(
            &self.shared.spool_dir,
            self.shared.limits,
            blacklist.clone(),
        )?;
        // On failure the writer (and its spool file) is dropped here: nothing is pushed.
        integration.fetch(&common, &mut writer).await?;
        let m = &self.shared.metrics;
        for (reason, n) in [
            ("no_ip", writer.dropped_no_ip()),
            ("blacklist", writer.dropped_blacklisted()),
        ] {
            if n > 0 {
                m.dropped_devices
                    .get_or_create(&DropLabel {
                        tenant: self.label.tenant.clone(),
                        source: self.label.source.clone(),
                        reason: reason.to_owned(),
                    })
                    .inc_by(n);
            }
        }
        let set = writer.finish().map_err(FetchError::Results)?;
        let count = set.device_count();
        self.push(&set, next).await?;
        Ok(count)
    }

    /// Pushes every segment of `set`, retrying failed segments with backoff under the same
    /// stream id until accepted, a non-retryable answer, or `next`.
    async fn push(&self, set: &ResultSet, next: Duration) -> Result<(), RunError> {
        let p = &self.shared.config.push;
        let segments = set.segments(p.max_stream_bytes as u64, p.max_stream_devices as u64);
        let mut backoff = p.retry_backoff();
        let timer = self.shared.timer.clone();
        let m = &self.shared.metrics;
        for seg in segments {
            let stream_id = set.stream_id(seg.index);
            loop {
                let make = || self.chunk_stream(set.clone(), seg.chunks.clone());
                match self.shared.session.stream_status(&stream_id, make).await {
                    Ok(()) => {
                        m.push_bytes.get_or_create(&self.label).inc_by(seg.bytes);
                        m.push_chunks
                            .get_or_create(&self.label)
                            .inc_by(seg.chunks.len() as u64);
                        backoff.reset();
                        break;
                    }
                    Err(e) if !e.is_retryable() => return Err(e.into()),
                    Err(e) => {
                        m.push_retries.get_or_create(&self.label).inc();
                        let delay = backoff.next_delay();
                        tracing::info!(error = %e, stream_id, retry_in_ms = delay.as_millis() as u64, "Push failed; retrying the same result set");
                        tokio::select! {
                            () = tokio::time::sleep(delay) => {}
                            () = timer.sleep_until(next) => return Err(RunError::Superseded),
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The chunks of one segment, read from the spool as the call consumes them.
    fn chunk_stream(
        &self,
        set: ResultSet,
        range: std::ops::Range<usize>,
    ) -> impl Stream<Item = GatewayStatusChunk> + Send + 'static {
        let total = i32::try_from(range.len()).unwrap_or(i32::MAX);
        let agent_id = self.shared.session.component_id().to_owned();
        let tenant_id = self.source.tenant_id.to_string();
        let tenant_slug = self.source.tenant_slug.clone();
        let partition = self.source.partition.clone();
        let end = range.end;
        futures::stream::unfold((set, range.start, 0i32), move |(set, i, index)| {
            let (agent_id, tenant_id, tenant_slug, partition) = (
                agent_id.clone(),
                tenant_id.clone(),
                tenant_slug.clone(),
                partition.clone(),
            );
            async move {
                if i >= end {
                    return None;
                }
                let payload = match set.read_chunk(i).await {
                    Ok(p) => p,
                    Err(e) => {
                        // Ending early leaves the stream without its final chunk: the gateway
                        // rejects it whole and publishes nothing.
                        tracing::error!(error = %e, "Cannot read a spooled chunk; abandoning the stream");
                        return None;
                    }
                };
                let chunk = GatewayStatusChunk {
                    services: vec![GatewayServiceStatus {
                        service_name: "sync".to_owned(),
                        available: true,
                        message: payload,
                        service_type: "sync".to_owned(),
                        agent_id: agent_id.clone(),
                        partition: partition.clone(),
                        source: "results".to_owned(),
                        tenant_id: tenant_id.clone(),
                        tenant_slug: tenant_slug.clone(),
                        ..Default::default()
                    }],
                    agent_id,
                    timestamp: chrono::Utc::now().timestamp(),
                    partition,
                    is_final: index == total - 1,
                    chunk_index: index,
                    total_chunks: total,
                    tenant_id,
                    tenant_slug,
                    ..Default::default()
                };
                Some((chunk, (set, i + 1, index + 1)))
            }
        })
    }

    /// Reports the run to identity (through the gateway), retrying briefly.
    async fn report(&self, outcome: &RunOutcome, next: Duration) {
        let message = run_report(
            &self.source.integration_source_id.to_string(),
            outcome,
            chrono::Utc::now(),
        );
        let status = GatewayServiceStatus {
            service_name: self.key.key.clone(),
            available: outcome.error.is_none(),
            message,
            service_type: SOURCE_RUN_SERVICE_TYPE.to_owned(),
            agent_id: self.shared.session.component_id().to_owned(),
            source: "status".to_owned(),
            tenant_id: self.source.tenant_id.to_string(),
            tenant_slug: self.source.tenant_slug.clone(),
            ..Default::default()
        };
        let mut backoff = self.shared.config.push.retry_backoff();
        let timer = self.shared.timer.clone();
        for attempt in 1..=3 {
            match self.shared.session.push_status(vec![status.clone()]).await {
                Ok(()) => return,
                Err(e) if attempt == 3 || !e.is_retryable() => {
                    self.shared.metrics.report_failures.inc();
                    tracing::warn!(error = %e, "Source run report not delivered");
                    return;
                }
                Err(_) => {
                    tokio::select! {
                        () = tokio::time::sleep(backoff.next_delay()) => {}
                        () = timer.sleep_until(next) => return,
                    }
                }
            }
        }
    }
}

/// The `message` of a `sync_source` status: `{integration_source_id, device_count, error?,
/// finished_at}`, with the error cut to stay well below the gateway's 4 KiB status limit.
#[must_use]
pub fn run_report(
    integration_source_id: &str,
    outcome: &RunOutcome,
    finished_at: chrono::DateTime<chrono::Utc>,
) -> Vec<u8> {
    let mut body = serde_json::json!({
        "integration_source_id": integration_source_id,
        "device_count": outcome.device_count,
        "finished_at": finished_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    });
    if let Some(e) = &outcome.error {
        // Cut on a character boundary, in bytes: identity truncates by bytes too.
        let mut end = e.len().min(MAX_REPORTED_ERROR);
        while !e.is_char_boundary(end) {
            end -= 1;
        }
        body["error"] = serde_json::Value::String(e[..end].to_owned());
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_breaker_opens_after_the_threshold_and_lets_one_trial_through_after_cooldown() {
        let mut b = Breaker::new(2, Duration::from_secs(300));
        let t = Duration::from_secs;
        assert!(b.allows(t(0)));
        assert!(!b.failure(t(0)));
        assert!(b.failure(t(10)));
        assert!(!b.allows(t(309)));
        assert!(b.allows(t(310)));
        assert!(b.failure(t(310)), "a failed trial re-opens at once");
        assert!(!b.allows(t(311)));
        b.success();
        assert!(b.allows(t(311)) && !b.is_open());
    }

    #[test]
    fn run_reports_stay_small_whatever_the_error() {
        let outcome = RunOutcome {
            device_count: 0,
            error: Some("é…".repeat(30_000)),
        };
        let r = run_report("id", &outcome, chrono::Utc::now());
        assert!(r.len() < 4096);
        let v: serde_json::Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(v["device_count"], 0);
        assert!(v["error"].as_str().unwrap().len() <= MAX_REPORTED_ERROR);
    }
}
