//! The HTTP client of one source: timeouts, TLS verification (or not, when the source says
//! `insecure_skip_verify`), and retries with backoff for transient failures.

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};

use super::FetchError;
use crate::config::IntegrationsConfig;

/// A source's HTTP client.
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    cfg: IntegrationsConfig,
}

impl HttpClient {
    /// Builds the client.
    ///
    /// # Errors
    /// [`FetchError::Config`] when the TLS setup fails.
    pub fn new(cfg: &IntegrationsConfig, insecure_skip_verify: bool) -> Result<Self, FetchError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.http_timeout_secs))
            .connect_timeout(Duration::from_secs(cfg.connect_timeout_secs))
            .danger_accept_invalid_certs(insecure_skip_verify)
            .user_agent(concat!("sr-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            client,
            cfg: cfg.clone(),
        })
    }

    /// The underlying client, for building requests.
    #[must_use]
    pub fn inner(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends the request built by `make`, retrying connect errors, timeouts, 5xx and 429 with
    /// backoff up to the configured attempts. Any other answer (including 401) is returned to
    /// the caller.
    ///
    /// # Errors
    /// [`FetchError::Transport`] or [`FetchError::Status`] after the last attempt.
    pub async fn send(
        &self,
        what: &str,
        make: impl Fn() -> RequestBuilder,
    ) -> Result<Response, FetchError> {
        let mut backoff = self.cfg.retry_backoff();
        let mut attempt = 1;
        loop {
            let outcome = make().send().await;
            let retryable = match &outcome {
                Ok(r) => {
                    r.status().is_server_error() || r.status() == StatusCode::TOO_MANY_REQUESTS
                }
                Err(e) => e.is_connect() || e.is_timeout() || e.is_request(),
            };
            if !retryable || attempt >= self.cfg.max_attempts {
                return match outcome {
                    Ok(r) if retryable => Err(FetchError::Status {
                        what: what.to_owned(),
                        status: r.status().as_u16(),
                        body: snippet(r).await,
                    }),
                    Ok(r) => Ok(r),
                    Err(e) => Err(FetchError::Transport(format!("{what}: {}", error_chain(e)))),
                };
            }
            let delay = backoff.next_delay();
            tracing::debug!(
                what,
                attempt,
                delay_ms = delay.as_millis() as u64,
                "Integration request failed; retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }
}

/// The start of a response body, for error messages.
pub async fn snippet(r: Response) -> String {
    let text = r.text().await.unwrap_or_default();
    let mut s: String = text.chars().take(200).collect();
    if text.len() > s.len() {
        s.push('…');
    }
    s
}

/// An error with its sources, without the URL (its query may hold an AQL).
#[must_use]
pub fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
