//! Command-line flags of `sr-faker`. They override the layered configuration (defaults →
//! `--config` TOML → `SR_FAKER__SECTION__KEY` env), so `sr-faker --devices 1000000` works
//! without a file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use sr_runtime::config::ConfigError;

use crate::Config;

/// Armis API emulator: deterministic devices, token auth, paging, AQL subsets, IP churn.
#[derive(Debug, Parser)]
#[command(name = "sr-faker", version)]
pub struct Args {
    /// TOML config file (layered over defaults, under SR_FAKER__* env vars and these flags).
    #[arg(long, env = "SR_FAKER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address of the API and ops endpoints [default: 0.0.0.0:8095].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Number of devices (at most 15605760) [default: 50000].
    #[arg(long)]
    pub devices: Option<u64>,
    /// Seed of the generated attributes [default: 1].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Secret key exchanged for tokens [default: faker-secret]; prefer SR_FAKER__AUTH__SECRET_KEY.
    #[arg(long)]
    pub secret_key: Option<String>,
    /// Token lifetime, e.g. 45m, 30s [default: 45m].
    #[arg(long, value_parser = duration)]
    pub token_ttl: Option<u64>,
    /// Time between churn epochs, e.g. 60s; 0 turns churn off [default: 0].
    #[arg(long, value_parser = duration)]
    pub churn_interval: Option<u64>,
    /// Fraction of device pairs swapping primary IPs per epoch, 0 to 1 [default: 0.05].
    #[arg(long)]
    pub churn_fraction: Option<f64>,
}

fn duration(s: &str) -> Result<u64, String> {
    sr_core::duration::parse_secs(s).map_err(|e| e.to_string())
}

impl Args {
    /// Applies the flags over a loaded configuration.
    #[must_use]
    pub fn apply(&self, mut c: Config) -> Config {
        if let Some(v) = self.listen {
            c.http.listen = v;
        }
        if let Some(v) = self.devices {
            c.devices.count = v;
        }
        if let Some(v) = self.seed {
            c.devices.seed = v;
        }
        if let Some(v) = &self.secret_key {
            c.auth.secret_key.clone_from(v);
        }
        if let Some(v) = self.token_ttl {
            c.auth.token_ttl_secs = v;
        }
        if let Some(v) = self.churn_interval {
            c.churn.interval_secs = v;
        }
        if let Some(v) = self.churn_fraction {
            c.churn.fraction = v;
        }
        c
    }

    /// Loads the layered configuration from the process environment, applies the flags and
    /// validates the result.
    ///
    /// # Errors
    /// [`ConfigError`] listing every problem.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let base: Config = sr_runtime::config::load_from_process("faker", self.config.as_deref())?;
        let config = self.apply(base);
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flags_override_the_configuration_and_take_duration_strings() {
        let args = Args::try_parse_from([
            "sr-faker",
            "--devices",
            "1000000",
            "--churn-interval",
            "1m",
            "--token-ttl",
            "90s",
            "--listen",
            "127.0.0.1:9000",
        ])
        .unwrap();
        let c = args.apply(Config::default());
        assert_eq!(c.devices.count, 1_000_000);
        assert_eq!(c.churn.interval_secs, 60);
        assert_eq!(c.auth.token_ttl_secs, 90);
        assert_eq!(c.http.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.devices.seed, 1);
        assert!(Args::try_parse_from(["sr-faker", "--churn-interval", "soon"]).is_err());
    }
}
