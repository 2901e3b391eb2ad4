//! Faker configuration: defaults, then `--config` TOML, then `SR_FAKER__SECTION__KEY` env,
//! then command-line flags (applied by the binary).

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use sr_runtime::config::ConfigError;
use sr_runtime::telemetry::TelemetryConfig;

use crate::generator::MAX_DEVICES;

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listener of the Armis API, the faker control routes and the ops endpoints.
    pub http: HttpConfig,
    /// The emulated inventory.
    pub devices: DevicesConfig,
    /// Access tokens.
    pub auth: AuthConfig,
    /// IP churn.
    pub churn: ChurnConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
}

impl Config {
    /// A faker for tests: `count` devices, listening on `127.0.0.1:0`, everything else default.
    #[must_use]
    pub fn local(count: u64) -> Self {
        let mut c = Self::default();
        c.http.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        c.devices.count = count;
        c
    }

    /// Checks what serde cannot: every problem, at once.
    ///
    /// # Errors
    /// [`ConfigError`] listing each problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.devices.count > MAX_DEVICES {
            problems.push(format!(
                "devices.count must be at most {MAX_DEVICES} (the contract's 172.16+ IP layout ends there), got {}",
                self.devices.count
            ));
        }
        if self.auth.secret_key.is_empty() {
            problems.push("auth.secret_key must not be empty".to_owned());
        }
        if self.auth.token_ttl_secs == 0 {
            problems.push("auth.token_ttl_secs must be positive".to_owned());
        }
        if !(0.0..=1.0).contains(&self.churn.fraction) {
            problems.push(format!(
                "churn.fraction must be between 0 and 1, got {}",
                self.churn.fraction
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// HTTP listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the API and of `/healthz`, `/readyz`, `/metrics`.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8095)),
        }
    }
}

/// The emulated inventory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DevicesConfig {
    /// Number of devices (at most 15 605 760).
    pub count: u64,
    /// Seed of every generated attribute; the same seed gives the same devices.
    pub seed: u64,
}

impl Default for DevicesConfig {
    fn default() -> Self {
        Self {
            count: 50_000,
            seed: 1,
        }
    }
}

/// Access tokens.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The `secret_key` clients exchange for a token.
    pub secret_key: String,
    /// Lifetime of a token, in seconds.
    pub token_ttl_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            secret_key: "faker-secret".to_owned(),
            token_ttl_secs: 45 * 60,
        }
    }
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("secret_key", &"***")
            .field("token_ttl_secs", &self.token_ttl_secs)
            .finish()
    }
}

/// IP churn.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChurnConfig {
    /// Seconds between churn epochs; 0 turns the timer off (epochs then move only when asked).
    pub interval_secs: u64,
    /// Fraction of the `count / 2` device pairs whose primary IPs are swapped in each epoch
    /// after 0.
    pub fraction: f64,
}

impl Default for ChurnConfig {
    fn default() -> Self {
        Self {
            interval_secs: 0,
            fraction: 0.05,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_problem_is_reported_at_once() {
        let mut c = Config::default();
        c.devices.count = MAX_DEVICES + 1;
        c.auth.secret_key.clear();
        c.auth.token_ttl_secs = 0;
        c.churn.fraction = 1.5;
        assert_eq!(c.validate().unwrap_err().problems.len(), 4);
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn the_secret_key_never_appears_in_debug_output() {
        let mut c = Config::default();
        c.auth.secret_key = "s3cr3t-value".into();
        assert!(!format!("{c:?}").contains("s3cr3t-value"));
    }

    #[test]
    fn env_overrides_defaults_and_unknown_keys_are_errors() {
        let c: Config = sr_runtime::config::load(
            "faker",
            None,
            [
                ("SR_FAKER__DEVICES__COUNT".to_owned(), "1000000".to_owned()),
                ("SR_FAKER__CHURN__FRACTION".to_owned(), "0.1".to_owned()),
            ],
            sr_runtime::config::STANDARD_ALIASES,
        )
        .unwrap();
        assert_eq!(c.devices.count, 1_000_000);
        assert!((c.churn.fraction - 0.1).abs() < f64::EPSILON);
        let err = sr_runtime::config::load::<Config>(
            "faker",
            None,
            [("SR_FAKER__DEVICES__COLOUR".to_owned(), "red".to_owned())],
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
    }
}
