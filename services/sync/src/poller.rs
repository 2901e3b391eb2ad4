//! Config polling: `GetConfig` with the version we run, on the interval the gateway gives
//! (and at once when a `Hello` says our config is outdated); a changed config is checked,
//! saved to the state file and handed to the supervisor.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sr_core::syncconfig::{Scope, SourceConfig, SyncConfigPayload, clamp_config_poll_secs};
use tokio_util::sync::CancellationToken;

use crate::gateway::GatewayError;
use crate::source::Shared;
use crate::state::{SourceKey, State};
use crate::supervisor::{Changes, Supervisor};

/// Delay before polling again after a failed poll.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// What the sync currently runs.
#[derive(Debug, Clone)]
pub struct ConfigState {
    /// Version of the config in force ("" before the first one).
    pub version: String,
    /// True while the config comes from the state file and the gateway has not confirmed it.
    pub stale: bool,
    /// Whether a config (fresh or cached) is known at all.
    pub known: bool,
    /// Poll interval the gateway asked for.
    pub poll_interval: Duration,
}

impl Default for ConfigState {
    fn default() -> Self {
        Self {
            version: String::new(),
            stale: false,
            known: false,
            poll_interval: Duration::from_secs(
                u64::try_from(sr_core::syncconfig::DEFAULT_CONFIG_POLL_SECS).unwrap_or(300),
            ),
        }
    }
}

/// A failed config poll.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The gateway call failed.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// The payload is not a sync config.
    #[error("config_json is not a sync config: {0}")]
    Payload(String),
}

/// Polls and applies configs.
#[derive(Debug, Clone)]
pub struct Poller {
    shared: Arc<Shared>,
    supervisor: Arc<tokio::sync::Mutex<Supervisor>>,
    state: Arc<std::sync::Mutex<ConfigState>>,
    state_path: PathBuf,
}

impl Poller {
    /// A poller applying to `supervisor` and saving to `state_path`.
    #[must_use]
    pub fn new(
        shared: Arc<Shared>,
        supervisor: Arc<tokio::sync::Mutex<Supervisor>>,
        state: Arc<std::sync::Mutex<ConfigState>>,
        state_path: PathBuf,
    ) -> Self {
        Self {
            shared,
            supervisor,
            state,
            state_path,
        }
    }

    fn current(&self) -> ConfigState {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut ConfigState)) {
        f(&mut self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    /// One `GetConfig`; applies a changed config. Returns what changed (`None` when the
    /// gateway answered `not_modified`).
    ///
    /// # Errors
    /// [`PollError`]; the running config stays as it is.
    pub async fn poll_once(&self) -> Result<Option<Changes>, PollError> {
        let current = self.current();
        let resp = self.shared.session.get_config(&current.version).await?;
        let secs = if resp.config_poll_interval_sec > 0 {
            resp.config_poll_interval_sec
        } else {
            sr_core::syncconfig::DEFAULT_CONFIG_POLL_SECS
        };
        let interval =
            Duration::from_secs(u64::try_from(clamp_config_poll_secs(secs)).unwrap_or(300));
        self.update(|s| s.poll_interval = interval);
        if resp.not_modified && current.known {
            if current.stale {
                tracing::info!("Gateway confirmed the cached config");
                self.update(|s| s.stale = false);
                self.shared.metrics.config_stale.set(0);
            }
            return Ok(None);
        }
        let payload: SyncConfigPayload = serde_json::from_slice(&resp.config_json)
            .map_err(|e| PollError::Payload(e.to_string()))?;
        Ok(Some(
            self.apply(&payload, &resp.config_version, false).await,
        ))
    }

    /// Applies a config: filters what this identity may run, saves it (unless it came from
    /// the state file), and starts, restarts or stops source loops.
    pub async fn apply(&self, payload: &SyncConfigPayload, version: &str, stale: bool) -> Changes {
        let state = State::from_payload(self.shared.session.component_id(), version, payload);
        if !stale && let Err(e) = state.save(&self.state_path) {
            tracing::warn!(error = %e, "Config not saved to the state file");
        }
        let desired = self.allowed(payload.scope, state.sources());
        self.shared.session.set_config_version(version);
        self.update(|s| {
            s.version = version.to_owned();
            s.stale = stale;
            s.known = true;
        });
        self.shared.metrics.config_stale.set(i64::from(stale));
        self.shared.metrics.config_applies.inc();
        tracing::info!(version, sources = desired.len(), stale, "Config applied");
        self.supervisor.lock().await.apply(&desired)
    }

    /// A tenant-scoped sync runs only its own tenant's sources, whatever a config says (the
    /// gateway would refuse their results anyway).
    fn allowed(
        &self,
        scope: Scope,
        sources: BTreeMap<SourceKey, SourceConfig>,
    ) -> BTreeMap<SourceKey, SourceConfig> {
        let Some(hello) = self.shared.session.hello_info() else {
            return sources;
        };
        if scope == Scope::Platform {
            return sources;
        }
        sources
            .into_iter()
            .filter(|(k, _)| {
                let own = k.tenant_id == hello.tenant_id;
                if !own {
                    tracing::warn!(source = %k.key, tenant_id = %k.tenant_id, "Source of another tenant ignored");
                }
                own
            })
            .collect()
    }

    /// Polls on the gateway's interval (or at once when asked) until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let timer = self.shared.timer.clone();
        let current = self.current();
        // Without a confirmed config, ask soon; otherwise on the gateway's interval.
        let mut due = if current.known && !current.stale {
            timer.now() + current.poll_interval
        } else {
            timer.now() + RETRY_AFTER_FAILURE.min(current.poll_interval)
        };
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = timer.sleep_until(due) => {}
                () = self.shared.session.refresh_requested() => {}
            }
            let wait = match self.poll_once().await {
                Ok(_) => self.current().poll_interval,
                Err(e) => {
                    tracing::warn!(error = %e, "Config poll failed; keeping the running config");
                    RETRY_AFTER_FAILURE.min(self.current().poll_interval)
                }
            };
            due = timer.now() + wait;
        }
    }
}
