//! The events service's error type and how it reaches HTTP clients.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Everything that can go wrong in the events service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Malformed request input (400).
    #[error("{0}")]
    BadRequest(String),
    /// Missing or wrong bearer token (401).
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// Unknown route (404).
    #[error("{0}")]
    NotFound(String),
    /// Database failure: transient for the consumer (nak with delay), 500 for the API.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    /// Start-up failure.
    #[error("{0}")]
    Startup(String),
}

impl Error {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Db(_) | Self::Startup(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message a client may see: internals are replaced by a generic text.
    #[must_use]
    pub fn public_message(&self) -> String {
        if self.status().is_server_error() {
            "internal error; see the events service log".to_owned()
        } else {
            self.to_string()
        }
    }
}

/// Whether a database error is about one row's data (a value Postgres refuses), so that the
/// row, not the batch, is the problem. SQLSTATE classes 22 (data exception) and 23
/// (integrity constraint violation).
#[must_use]
pub fn is_data_error(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c.starts_with("22") || c.starts_with("23"))
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "Read API request failed");
        }
        let body = serde_json::json!({
            "error": { "status": status.as_u16(), "message": self.public_message() }
        });
        (status, axum::Json(body)).into_response()
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
