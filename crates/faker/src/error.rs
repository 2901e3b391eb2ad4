//! The faker's error type and its HTTP form: Armis-style `{"success": false, "message": …}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Everything that can go wrong in the faker.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Missing, unknown or expired access token, or a wrong secret key (401).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Malformed request: bad number, bad AQL, missing parameter (400).
    #[error("{0}")]
    BadRequest(String),
    /// A failure injected by a test (503).
    #[error("injected failure: the faker was told to fail this request")]
    Injected,
    /// Invalid configuration.
    #[error(transparent)]
    Config(#[from] sr_runtime::config::ConfigError),
    /// Socket or task failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
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
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Injected => StatusCode::SERVICE_UNAVAILABLE,
            Self::Config(_) | Self::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = if status.is_server_error() && !matches!(self, Self::Injected) {
            tracing::error!(error = %self, "Faker request failed");
            "internal error; see the faker log".to_owned()
        } else {
            self.to_string()
        };
        let body = serde_json::json!({ "success": false, "message": message });
        (status, axum::Json(body)).into_response()
    }
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
