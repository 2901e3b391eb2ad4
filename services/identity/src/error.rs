//! The identity service's error type and how it reaches HTTP and NATS clients.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use sr_core::rpc::{RpcError, RpcErrorCode};

/// Everything that can go wrong in identity.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Unknown tenant, source, … (404).
    #[error("{0}")]
    NotFound(String),
    /// Duplicate (409).
    #[error("{0}")]
    Conflict(String),
    /// Semantically invalid input (422).
    #[error("{0}")]
    Invalid(String),
    /// Malformed input (400).
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong admin token (401).
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// The caller may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// Database failure.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Encryption at rest failed.
    #[error(transparent)]
    Seal(#[from] crate::seal::SealError),
    /// Certificate work failed.
    #[error("certificate authority error: {0}")]
    Ca(String),
    /// File system failure.
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

    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Db(_) | Self::Seal(_) | Self::Ca(_) | Self::Io { .. } | Self::Startup(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The message a client may see: internals are replaced by a generic text.
    #[must_use]
    pub fn public_message(&self) -> String {
        if self.status().is_server_error() {
            "internal error; see the identity service log".to_owned()
        } else {
            self.to_string()
        }
    }
}

/// Whether a database error is a unique violation.
#[must_use]
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "23505")
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "Admin API request failed");
        }
        let body = serde_json::json!({ "error": { "status": status.as_u16(), "message": self.public_message() } });
        (status, axum::Json(body)).into_response()
    }
}

impl From<Error> for RpcError {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::NotFound(_) => RpcErrorCode::NotFound,
            Error::Invalid(_) | Error::BadRequest(_) | Error::Conflict(_) => {
                RpcErrorCode::InvalidArgument
            }
            Error::Forbidden(_) | Error::Unauthorized => RpcErrorCode::PermissionDenied,
            _ => {
                tracing::error!(error = %e, "Request/reply call failed");
                RpcErrorCode::Unavailable
            }
        };
        RpcError::new(code, e.public_message())
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
