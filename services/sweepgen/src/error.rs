//! The sweepgen error type, its disposition for the consumer (retry or poison), and how it
//! reaches HTTP and NATS clients.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sr_core::rpc::{RpcError, RpcErrorCode};

/// Everything that can go wrong in sweepgen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A message or request that can never be processed (undecodable, inconsistent).
    #[error("{0}")]
    Poison(String),
    /// Malformed request input (400).
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong bearer token (401).
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// Unknown route (404).
    #[error("{0}")]
    NotFound(String),
    /// The compiled config is larger than `rpc.max_config_bytes`.
    #[error(
        "the sweep config of agent {agent_id} ({targets} targets) is larger than \
         rpc.max_config_bytes ({limit} bytes); raise it or split the agent's devices among agents"
    )]
    TooLarge {
        /// Agent.
        agent_id: String,
        /// Targets in the config.
        targets: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The partition is still being loaded into memory (retry shortly).
    #[error(
        "the sweep configs of tenant {tenant} partition {partition} are being loaded; retry shortly"
    )]
    Loading {
        /// Tenant.
        tenant: sr_core::TenantId,
        /// Partition.
        partition: String,
    },
    /// A failure inside the service (a task panicked, state missing).
    #[error("{0}")]
    Internal(String),
    /// Database failure (transient: retry).
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// JetStream failure (transient: retry).
    #[error("JetStream error: {0}")]
    Nats(String),
    /// File system or socket failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// Start-up failure.
    #[error("{0}")]
    Startup(String),
}

impl Error {
    /// An I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether redelivering the message can never help (terminate it) rather than later
    /// (nak with delay).
    #[must_use]
    pub fn is_poison(&self) -> bool {
        match self {
            Self::Poison(_) | Self::BadRequest(_) => true,
            // Class 22 (data exception: a NUL byte in text, an unsupported JSON escape, …)
            // fails the same way on every delivery.
            Self::Db(e) => e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|c| c.starts_with("22")),
            _ => false,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::Poison(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::TooLarge { .. } | Self::Loading { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Db(_)
            | Self::Nats(_)
            | Self::Io { .. }
            | Self::Startup(_)
            | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message a client may see: internals are replaced by a generic text.
    #[must_use]
    pub fn public_message(&self) -> String {
        if self.status() == StatusCode::INTERNAL_SERVER_ERROR {
            "internal error; see the sweepgen service log".to_owned()
        } else {
            self.to_string()
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "Read API request failed");
        }
        let body = serde_json::json!({
            "error": { "status": status.as_u16(), "message": self.public_message() }
        });
        (status, axum::Json(body)).into_response()
    }
}

impl From<Error> for RpcError {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Poison(_) | Error::BadRequest(_) => RpcErrorCode::InvalidArgument,
            Error::NotFound(_) => RpcErrorCode::NotFound,
            Error::Unauthorized => RpcErrorCode::PermissionDenied,
            Error::TooLarge { .. } => {
                tracing::warn!(error = %e, "Agent config larger than rpc.max_config_bytes");
                RpcErrorCode::Unavailable
            }
            Error::Loading { .. } => RpcErrorCode::Unavailable,
            _ => {
                tracing::error!(error = %e, "Agent config request failed");
                RpcErrorCode::Unavailable
            }
        };
        RpcError::new(code, e.public_message())
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
