//! DIRE's error type: how a failure is retried (nak), terminated (poison) or shown to an API
//! client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Everything that can go wrong in DIRE.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Database failure.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// The loaded state or batch could not be reconciled (a bug or corrupt rows).
    #[error("reconciliation failed: {0}")]
    Reconcile(#[from] sr_reconcile::ReconcileError),
    /// A stored row could not be read back.
    #[error("corrupt stored row: {0}")]
    Corrupt(String),
    /// Serialising a message failed.
    #[error("cannot encode message: {0}")]
    Encode(#[from] serde_json::Error),
    /// JetStream refused or did not acknowledge a publish.
    #[error("publish failed: {0}")]
    Publish(String),
    /// Unknown device or route (404).
    #[error("{0}")]
    NotFound(String),
    /// Malformed request (400).
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong bearer token (401).
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// Start-up failure.
    #[error("{0}")]
    Startup(String),
}

impl Error {
    /// True when retrying later may succeed (database or network unavailable, lock or
    /// serialisation conflicts): the message is nak'd with a delay and never terminated.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Db(e) => is_transient_db(e),
            Self::Publish(_) => true,
            _ => false,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message a client may see: internals are replaced by a generic text.
    #[must_use]
    pub fn public_message(&self) -> String {
        if self.status().is_server_error() {
            "internal error; see the DIRE service log".to_owned()
        } else {
            self.to_string()
        }
    }
}

fn is_transient_db(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|c| {
            // 08 connection, 40001 serialization, 40P01 deadlock, 53 resources, 55P03 lock
            // not available, 57 operator intervention (shutdown, statement timeout).
            c.starts_with("08")
                || c.starts_with("53")
                || c.starts_with("57")
                || c == "40001"
                || c == "40P01"
                || c == "55P03"
        }),
        _ => false,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "Read API request failed");
        }
        let body = serde_json::json!({ "error": { "status": status.as_u16(), "message": self.public_message() } });
        (status, axum::Json(body)).into_response()
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
