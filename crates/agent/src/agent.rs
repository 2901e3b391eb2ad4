//! The config client: connect to the gateway over mTLS, `Hello`, then poll `GetConfig` with
//! the version in hand and write a new sweep config to `sweep.json`. Every failure leaves the
//! existing file in place.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sr_proto::agent_gateway_service_client::AgentGatewayServiceClient;
use sr_proto::{AgentConfigRequest, AgentConfigResponse, AgentHelloRequest};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::enrollment::{Enrollment, EnrollmentError};
use crate::sweepfile::SweepFile;

/// The capability this client announces in `Hello`.
pub const CAPABILITY: &str = "sweep";
/// Poll interval bounds (CONTRACT: 30 s – 24 h).
const MIN_POLL: Duration = Duration::from_secs(30);
const MAX_POLL: Duration = Duration::from_secs(24 * 3600);
/// Poll interval until the gateway says otherwise.
const DEFAULT_POLL: Duration = Duration::from_secs(300);

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The bootstrap file (`agent.json`) of the enrollment bundle.
    pub bootstrap: PathBuf,
    /// Where to write the sweep config; default `sweep.json` beside the bootstrap file.
    pub sweep_file: Option<PathBuf>,
    /// Software version announced in `Hello`.
    pub version: String,
    /// Labels announced in `Hello`.
    pub labels: BTreeMap<String, String>,
    /// Poll interval overriding the gateway's `config_poll_interval_sec`.
    pub poll_interval: Option<Duration>,
    /// Longest wait between reconnect attempts.
    pub max_backoff: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Timeout of one call.
    pub request_timeout: Duration,
    /// Largest `GetConfig` answer accepted, bytes.
    pub max_message_bytes: usize,
}

impl AgentOptions {
    /// Defaults for a bootstrap file.
    #[must_use]
    pub fn new(bootstrap: impl Into<PathBuf>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            sweep_file: None,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            labels: BTreeMap::new(),
            poll_interval: None,
            max_backoff: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_message_bytes: 64 * 1024 * 1024,
        }
    }
}

/// What one poll did. Only [`PollOutcome::Applied`] touches `sweep.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PollOutcome {
    /// A new config was written.
    Applied {
        /// Its version.
        config_version: String,
        /// Its targets.
        targets: usize,
    },
    /// The gateway confirmed the version in hand; the file was left untouched.
    NotModified {
        /// The version in hand.
        config_version: String,
    },
    /// The gateway answered without a sweep section; the existing file was kept.
    NoSweep {
        /// The version the gateway named.
        config_version: String,
    },
    /// The gateway could not be reached; the existing file was kept.
    Unreachable {
        /// Why.
        error: String,
    },
    /// The gateway refused the call; the existing file was kept.
    Refused {
        /// gRPC status code.
        code: tonic::Code,
        /// The gateway's message.
        message: String,
    },
}

impl PollOutcome {
    /// Whether the gateway answered (the next poll waits the poll interval, not a backoff).
    #[must_use]
    pub fn answered(&self) -> bool {
        matches!(
            self,
            Self::Applied { .. } | Self::NotModified { .. } | Self::NoSweep { .. }
        )
    }
}

/// Failures of the agent itself (as opposed to the gateway).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The enrollment bundle is unusable.
    #[error(transparent)]
    Enrollment(#[from] EnrollmentError),
    /// The TLS material or gateway address is unusable.
    #[error("invalid gateway endpoint or TLS material: {0}")]
    Tls(String),
    /// `sweep.json` could not be written (the old file is kept; the next poll retries).
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The agent config client.
pub struct Agent {
    opts: AgentOptions,
    enrollment: Enrollment,
    endpoint: Endpoint,
    sweep_path: PathBuf,
    client: Option<AgentGatewayServiceClient<Channel>>,
    current_version: String,
    poll_interval: Duration,
    tenant: Option<(String, String)>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("agent_id", &self.enrollment.component_id)
            .field("gateway", &self.enrollment.gateway_address)
            .field("sweep_path", &self.sweep_path)
            .field("current_version", &self.current_version)
            .finish_non_exhaustive()
    }
}

impl Agent {
    /// Loads the enrollment and the existing `sweep.json`, if any (its version is what the
    /// agent holds until the gateway answers). Does not connect.
    ///
    /// # Errors
    /// [`AgentError`] for an unusable bundle or TLS material.
    pub fn new(opts: AgentOptions) -> Result<Self, AgentError> {
        let enrollment = Enrollment::load(&opts.bootstrap)?;
        let sweep_path = opts
            .sweep_file
            .clone()
            .unwrap_or_else(|| enrollment.dir.join("sweep.json"));
        let endpoint = endpoint(&enrollment, &opts)?;
        let current_version = match SweepFile::read(&sweep_path) {
            Ok(f) => {
                tracing::info!(path = %sweep_path.display(), config_version = %f.config_version, targets = f.device_targets.len(), "Using the local sweep config until the gateway answers");
                f.config_version
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                tracing::warn!(path = %sweep_path.display(), error = %e, "Local sweep config unreadable; it is replaced by the next config");
                String::new()
            }
        };
        let poll_interval = opts.poll_interval.unwrap_or(DEFAULT_POLL);
        Ok(Self {
            opts,
            enrollment,
            endpoint,
            sweep_path,
            client: None,
            current_version,
            poll_interval,
            tenant: None,
        })
    }

    /// The agent id (the certificate's component id).
    #[must_use]
    pub fn agent_id(&self) -> &str {
        &self.enrollment.component_id
    }

    /// Where the sweep config is written.
    #[must_use]
    pub fn sweep_path(&self) -> &Path {
        &self.sweep_path
    }

    /// The version of the config in `sweep.json` (empty when none).
    #[must_use]
    pub fn current_version(&self) -> &str {
        &self.current_version
    }

    /// How long to wait before the next poll after an answer.
    #[must_use]
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// Tenant id and slug the gateway named in `Hello` (from the certificate).
    #[must_use]
    pub fn tenant(&self) -> Option<(&str, &str)> {
        self.tenant.as_ref().map(|(i, s)| (i.as_str(), s.as_str()))
    }

    /// One poll: connect and `Hello` if not connected, then `GetConfig` with the version in
    /// hand; write `sweep.json` when a new config arrives. A transport failure drops the
    /// connection, so the next poll reconnects and says `Hello` again (a restarted gateway
    /// learns about the agent).
    ///
    /// # Errors
    /// [`AgentError::Write`] when the new config cannot be written (nothing changes).
    pub async fn poll_once(&mut self) -> Result<PollOutcome, AgentError> {
        if !self.current_version.is_empty() && !self.sweep_path.exists() {
            // Someone removed the file: ask for the whole config again.
            self.current_version.clear();
        }
        let mut client = match self.client.take() {
            Some(c) => c,
            None => match self.connect_and_hello().await {
                Ok(c) => c,
                Err(outcome) => return Ok(outcome),
            },
        };
        let request = AgentConfigRequest {
            agent_id: self.enrollment.component_id.clone(),
            config_version: self.current_version.clone(),
        };
        let response = match client.get_config(request).await {
            Ok(r) => r.into_inner(),
            Err(status) => return Ok(failed(status)),
        };
        self.client = Some(client);
        self.apply_response(response).await
    }

    /// Polls until `token` is cancelled: the poll interval after an answer, a capped
    /// exponential backoff (1 s doubling to `max_backoff`) after a failure.
    pub async fn run(&mut self, token: CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            let wait = match self.poll_once().await {
                Ok(outcome) if outcome.answered() => {
                    if failures > 0 {
                        tracing::info!("Gateway reachable again");
                    }
                    failures = 0;
                    log_outcome(&outcome);
                    self.poll_interval
                }
                Ok(outcome) => {
                    failures = failures.saturating_add(1);
                    log_outcome(&outcome);
                    backoff(failures, self.opts.max_backoff)
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, "Sweep config not applied; keeping the local file");
                    backoff(failures, self.opts.max_backoff)
                }
            };
            tokio::select! {
                () = token.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn connect_and_hello(
        &mut self,
    ) -> Result<AgentGatewayServiceClient<Channel>, PollOutcome> {
        let channel = self
            .endpoint
            .connect()
            .await
            .map_err(|e| PollOutcome::Unreachable {
                error: error_chain(&e),
            })?;
        let mut client = AgentGatewayServiceClient::new(channel)
            .max_decoding_message_size(self.opts.max_message_bytes);
        let hello = AgentHelloRequest {
            agent_id: self.enrollment.component_id.clone(),
            version: self.opts.version.clone(),
            capabilities: vec![CAPABILITY.to_owned()],
            hostname: hostname(),
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
            // The certificate's partition is authoritative; the gateway fills it in.
            partition: String::new(),
            config_version: self.current_version.clone(),
            labels: self.opts.labels.clone().into_iter().collect(),
        };
        let reply = client.hello(hello).await.map_err(failed)?.into_inner();
        if !reply.accepted {
            return Err(PollOutcome::Refused {
                code: tonic::Code::PermissionDenied,
                message: reply.message,
            });
        }
        tracing::info!(gateway_id = %reply.gateway_id, tenant = %reply.tenant_slug, config_outdated = reply.config_outdated, "Connected to the gateway");
        self.tenant = Some((reply.tenant_id, reply.tenant_slug));
        Ok(client)
    }

    /// Applies one `GetConfig` answer (what [`Agent::poll_once`] does with the gateway's
    /// answer): `not_modified` and an answer without a sweep section leave `sweep.json`
    /// untouched; a sweep section is written atomically and becomes the version in hand.
    ///
    /// # Errors
    /// [`AgentError::Write`] when the file cannot be written (nothing changes).
    pub async fn apply_response(
        &mut self,
        r: AgentConfigResponse,
    ) -> Result<PollOutcome, AgentError> {
        if self.opts.poll_interval.is_none() && r.config_poll_interval_sec > 0 {
            let secs = u64::try_from(r.config_poll_interval_sec).unwrap_or_default();
            self.poll_interval = Duration::from_secs(secs).clamp(MIN_POLL, MAX_POLL);
        }
        if r.not_modified {
            return Ok(PollOutcome::NotModified {
                config_version: self.current_version.clone(),
            });
        }
        let Some(sweep) = r.sweep else {
            tracing::warn!(config_version = %r.config_version, "The gateway sent no sweep config; keeping the local file");
            return Ok(PollOutcome::NoSweep {
                config_version: r.config_version,
            });
        };
        let file = SweepFile::from_proto(
            &self.enrollment.component_id,
            &r.config_version,
            r.config_timestamp,
            sweep,
        );
        let targets = file.device_targets.len();
        let path = self.sweep_path.clone();
        tokio::task::spawn_blocking(move || file.write_atomic(&path))
            .await
            .map_err(|e| AgentError::Write {
                path: self.sweep_path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?
            .map_err(|source| AgentError::Write {
                path: self.sweep_path.clone(),
                source,
            })?;
        self.current_version.clone_from(&r.config_version);
        Ok(PollOutcome::Applied {
            config_version: r.config_version,
            targets,
        })
    }
}

fn endpoint(e: &Enrollment, opts: &AgentOptions) -> Result<Endpoint, AgentError> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&e.ca_pem))
        .identity(Identity::from_pem(&e.cert_pem, &e.key_pem));
    if !e.gateway_server_name.is_empty() {
        tls = tls.domain_name(e.gateway_server_name.clone());
    }
    Endpoint::from_shared(format!("https://{}", e.gateway_address))
        .and_then(|ep| ep.tls_config(tls))
        .map(|ep| {
            ep.connect_timeout(opts.connect_timeout)
                .timeout(opts.request_timeout)
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_while_idle(true)
        })
        .map_err(|err| AgentError::Tls(error_chain(&err)))
}

fn failed(status: tonic::Status) -> PollOutcome {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown => {
            PollOutcome::Unreachable {
                error: format!("{}: {}", status.code(), status.message()),
            }
        }
        code => PollOutcome::Refused {
            code,
            message: status.message().to_owned(),
        },
    }
}

fn log_outcome(outcome: &PollOutcome) {
    match outcome {
        PollOutcome::Applied {
            config_version,
            targets,
        } => tracing::info!(%config_version, targets, "Sweep config applied"),
        PollOutcome::NotModified { config_version } => {
            tracing::debug!(%config_version, "Sweep config unchanged");
        }
        PollOutcome::NoSweep { .. } => {}
        PollOutcome::Unreachable { error } => {
            tracing::warn!(%error, "Gateway unreachable; keeping the local sweep config");
        }
        PollOutcome::Refused { code, message } => {
            tracing::warn!(?code, %message, "Gateway refused the config request; keeping the local sweep config");
        }
    }
}

/// Wait after `failures` consecutive failures: 1 s, 2 s, 4 s, … capped at `max`.
#[must_use]
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    Duration::from_secs(1u64 << exp).min(max.max(Duration::from_secs(1)))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default()
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_one_second_up_to_the_cap() {
        let max = Duration::from_secs(60);
        let waits: Vec<u64> = (1..=9).map(|f| backoff(f, max).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX, max), max);
    }

    #[test]
    fn transport_failures_are_unreachable_and_refusals_are_not() {
        assert!(matches!(
            failed(tonic::Status::unavailable("down")),
            PollOutcome::Unreachable { .. }
        ));
        assert!(matches!(
            failed(tonic::Status::permission_denied("no")),
            PollOutcome::Refused {
                code: tonic::Code::PermissionDenied,
                ..
            }
        ));
    }
}
