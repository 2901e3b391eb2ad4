//! The sync service: starts from the bootstrap file identity wrote, reaches the gateway over
//! mTLS (`Hello`, then `GetConfig`), and runs one independent loop per integration source
//! (per tenant, per source), each on its own discovery interval. Each run fetches the source's
//! devices (Armis, NetBox), filters them (no IP, the source's network blacklist), spools them
//! as ready-made chunks, pushes them with `StreamStatus` under the source's tenant, and reports
//! the outcome to identity through the gateway.
//!
//! It owns no database: its only local state is the last config received (a state file, so a
//! restart while the gateway is down still knows its sources) and the spooled result sets
//! waiting to be pushed. It never decides tenancy: the tenant comes from its certificate, and
//! the gateway checks every result it pushes.

pub mod backoff;
pub mod bootstrap;
pub mod config;
pub mod gateway;
pub mod heartbeat;
pub mod integrations;
pub mod metrics;
pub mod poller;
pub mod results;
pub mod source;
pub mod state;
pub mod supervisor;
pub mod timer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sr_core::syncconfig::SyncConfigPayload;
use sr_runtime::{OpsServer, Readiness};
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use gateway::{GatewayError, HelloInfo, Session};
pub use poller::{ConfigState, PollError};
pub use state::SourceKey;
pub use supervisor::Changes;
pub use timer::{ManualTimer, SharedTimer, Timer, TokioTimer};

/// Why the sync cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] sr_runtime::config::ConfigError),
    /// The bootstrap file or a certificate file is missing, unreadable or invalid.
    #[error(transparent)]
    Bootstrap(#[from] bootstrap::BootstrapError),
    /// The gateway refused this identity.
    #[error(transparent)]
    Refused(GatewayError),
    /// The state directory cannot be used.
    #[error("state directory {path}: {source}")]
    StateDir {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Listener failure.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A built sync: bootstrap read, gateway reached (or the cached config loaded), ops bound.
pub struct App {
    handle: Handle,
    poller: poller::Poller,
    root: CancellationToken,
    ops: OpsServer,
    ops_addr: SocketAddr,
    initial: Option<(SyncConfigPayload, String, bool)>,
}

/// What tests and operators can look at while the sync runs.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<source::Shared>,
    supervisor: Arc<tokio::sync::Mutex<supervisor::Supervisor>>,
    config_state: Arc<std::sync::Mutex<ConfigState>>,
    poller: Option<poller::Poller>,
}

impl Handle {
    /// Sources whose loops run, sorted.
    pub async fn running_sources(&self) -> Vec<SourceKey> {
        self.supervisor.lock().await.running()
    }

    /// The gateway session.
    #[must_use]
    pub fn session(&self) -> Arc<Session> {
        self.shared.session.clone()
    }

    /// The config in force.
    #[must_use]
    pub fn config_state(&self) -> ConfigState {
        self.config_state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Polls the config now (as the poller would on its interval).
    ///
    /// # Errors
    /// [`PollError`].
    pub async fn poll_config(&self) -> Result<Option<Changes>, PollError> {
        match &self.poller {
            Some(p) => p.poll_once().await,
            None => Ok(None),
        }
    }

    /// (sources, sources whose last run failed).
    #[must_use]
    pub fn health(&self) -> (usize, usize) {
        self.shared.health_summary()
    }
}

impl App {
    /// Builds the sync on real time.
    ///
    /// # Errors
    /// [`StartError`].
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with_timer(config, Arc::new(TokioTimer::new())).await
    }

    /// Builds the sync with the scheduler on `timer` (tests pass a [`ManualTimer`]).
    ///
    /// Fails when the configuration is invalid, a bootstrap or certificate file is missing or
    /// unreadable, or the gateway refuses the identity. When the gateway is merely unreachable
    /// the sync starts anyway: from the cached config (marked stale) when there is one, and
    /// keeps reconnecting.
    ///
    /// # Errors
    /// [`StartError`].
    pub async fn build_with_timer(config: Config, timer: SharedTimer) -> Result<Self, StartError> {
        config.validate()?;
        let limits = config.chunk_limits()?;
        let boot = bootstrap::Bootstrap::load(&config.bootstrap_file)?;
        let spool_dir = config.state_dir.join("spool");
        std::fs::create_dir_all(&spool_dir).map_err(|source| StartError::StateDir {
            path: spool_dir.clone(),
            source,
        })?;
        let state_path = config.state_dir.join(state::FILE_NAME);

        let metrics = metrics::Metrics::default();
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);

        let session = Arc::new(Session::new(
            boot.clone(),
            config.gateway.clone(),
            metrics.clone(),
        ));
        let cached = match state::State::load(&state_path) {
            Ok(Some(s)) if s.component_id == boot.component_id => Some(s),
            Ok(Some(s)) => {
                tracing::warn!(file = %state_path.display(), component_id = %s.component_id, "State file belongs to another component; ignored");
                None
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "State file unusable; ignored");
                None
            }
        };
        if let Some(c) = &cached {
            session.set_config_version(&c.config_version);
        }
        let connected = match session.start().await {
            Ok(hello) => {
                tracing::info!(component_id = %boot.component_id, tenant_slug = %hello.tenant_slug, "Connected to the gateway");
                true
            }
            Err(e @ GatewayError::Refused(_)) => return Err(StartError::Refused(e)),
            Err(e) => {
                tracing::warn!(error = %e, cached_config = cached.is_some(), "Gateway unreachable at start; running on and reconnecting");
                false
            }
        };

        let ops_listen = config.http.listen;
        let config = Arc::new(config);
        let shared = Arc::new(source::Shared {
            session: session.clone(),
            timer,
            config: config.clone(),
            limits,
            metrics,
            spool_dir,
            health: std::sync::Mutex::new(std::collections::HashMap::new()),
        });
        let root = CancellationToken::new();
        let supervisor = Arc::new(tokio::sync::Mutex::new(supervisor::Supervisor::new(
            shared.clone(),
            root.child_token(),
        )));
        let config_state = Arc::new(std::sync::Mutex::new(ConfigState::default()));
        let poller = poller::Poller::new(
            shared.clone(),
            supervisor.clone(),
            config_state.clone(),
            state_path.clone(),
        );

        let mut initial = None;
        if connected {
            match session
                .get_config(cached.as_ref().map_or("", |c| c.config_version.as_str()))
                .await
            {
                Ok(resp) if resp.not_modified => {
                    initial = cached.as_ref().and_then(|c| {
                        cached_payload(c).map(|p| (p, c.config_version.clone(), false))
                    });
                }
                Ok(resp) => match serde_json::from_slice::<SyncConfigPayload>(&resp.config_json) {
                    Ok(p) => initial = Some((p, resp.config_version, false)),
                    Err(e) => tracing::warn!(error = %e, "config_json is not a sync config"),
                },
                Err(e @ GatewayError::Refused(_)) => return Err(StartError::Refused(e)),
                Err(e) => tracing::warn!(error = %e, "First GetConfig failed; the poller retries"),
            }
        }
        if initial.is_none()
            && let Some(c) = &cached
            && let Some(p) = cached_payload(c)
        {
            tracing::info!(version = %c.config_version, saved_at = %c.saved_at, "Running the cached config (stale until the gateway confirms it)");
            initial = Some((p, c.config_version.clone(), true));
        }

        let readiness = {
            let state = config_state.clone();
            let session = session.clone();
            Readiness::new().with_probe("config", move || {
                let s = state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                let hello = session.hello_info().is_some();
                Box::pin(async move { s.known && !s.stale && hello })
            })
        };
        let ops = OpsServer::bind(
            ops_listen,
            Arc::new(registry),
            readiness,
            axum::Router::new(),
        )
        .await
        .map_err(|source| StartError::Bind {
            addr: ops_listen,
            source,
        })?;
        let ops_addr = ops.local_addr().map_err(|source| StartError::Bind {
            addr: ops_listen,
            source,
        })?;
        let handle = Handle {
            shared,
            supervisor,
            config_state,
            poller: Some(poller.clone()),
        };
        Ok(Self {
            handle,
            poller,
            root,
            ops,
            ops_addr,
            initial,
        })
    }

    /// The ops address (`/healthz`, `/readyz`, `/metrics`).
    #[must_use]
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_addr
    }

    /// A handle to look at the running sync.
    #[must_use]
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Runs until `shutdown` is cancelled, then stops every source loop (bounded to 10 s).
    ///
    /// # Errors
    /// The ops server's I/O error.
    pub async fn run_until(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let Self {
            handle,
            poller,
            root,
            ops,
            ops_addr,
            initial,
        } = self;
        tracing::info!(%ops_addr, component_id = %handle.shared.session.component_id(), "Sync running");
        let ops_token = shutdown.child_token();
        let ops_task = tokio::spawn(ops.run(ops_token.clone()));
        if let Some((payload, version, stale)) = initial {
            poller.apply(&payload, &version, stale).await;
        }
        let poll_task = tokio::spawn(poller.run(root.child_token()));
        let heartbeat_task = tokio::spawn(heartbeat::run(
            handle.shared.clone(),
            handle.config_state.clone(),
            root.child_token(),
        ));
        shutdown.cancelled().await;
        root.cancel();
        handle
            .supervisor
            .lock()
            .await
            .stop_all(Duration::from_secs(10))
            .await;
        let _ = poll_task.await;
        let _ = heartbeat_task.await;
        ops_token.cancel();
        match ops_task.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// The cached state as a payload (what the poller applies).
fn cached_payload(state: &state::State) -> Option<SyncConfigPayload> {
    Some(SyncConfigPayload {
        sync_service_id: state.sync_service_id?,
        component_id: state.component_id.clone(),
        scope: state.scope?,
        sources: state
            .tenants
            .values()
            .flat_map(|t| t.sources.iter().map(|(k, s)| (k.clone(), s.clone())))
            .collect(),
    })
}
