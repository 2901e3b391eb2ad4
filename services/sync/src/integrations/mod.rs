//! The integration clients (Armis, NetBox): each fetches one source's devices page by page and
//! feeds them straight into the run's [`ResultWriter`], never holding raw API pages.

pub mod armis;
pub mod http;
pub mod netbox;

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use sr_core::device::{DEFAULT_PARTITION, DeviceUpdate};
use sr_core::inventory::meta;
use sr_core::syncconfig::SourceConfig;

use crate::config::IntegrationsConfig;
use crate::results::{ResultWriter, ResultsError};

/// Why a fetch failed. Nothing of a failed fetch is pushed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The source's configuration cannot work (no queries, no credentials, bad URL, …).
    #[error("configuration error: {0}")]
    Config(String),
    /// The API refused the credentials.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The API answered an error status.
    #[error("{what} answered HTTP {status}: {body}")]
    Status {
        /// Which request.
        what: String,
        /// HTTP status.
        status: u16,
        /// Start of the body.
        body: String,
    },
    /// The API could not be reached.
    #[error("{0}")]
    Transport(String),
    /// The API answered something that is not what its documentation says.
    #[error("unexpected response: {0}")]
    Decode(String),
    /// The result set could not be written.
    #[error(transparent)]
    Results(#[from] ResultsError),
}

/// A ready client for one source. It lives as long as the source loop, so an Armis token is
/// reused across runs.
#[derive(Debug)]
pub enum Integration {
    /// Armis.
    Armis(armis::ArmisClient),
    /// NetBox.
    Netbox(netbox::NetboxClient),
}

/// What every device of a source carries, whatever the integration.
#[derive(Debug, Clone)]
pub struct Common {
    /// `agent_id` of every update.
    pub agent_id: String,
    /// Partition.
    pub partition: String,
    /// The integration source record.
    pub integration_source_id: String,
    /// Sweep interval of the source in seconds (sweep hint).
    pub sweep_interval_secs: Option<u64>,
    /// When this run started (the updates' timestamp).
    pub observed_at: DateTime<Utc>,
}

impl Common {
    /// From a source config, at `observed_at`.
    #[must_use]
    pub fn new(source: &SourceConfig, observed_at: DateTime<Utc>) -> Self {
        Self {
            agent_id: source.agent_id.clone(),
            partition: if source.partition.is_empty() {
                DEFAULT_PARTITION.to_owned()
            } else {
                source.partition.clone()
            },
            integration_source_id: source.integration_source_id.to_string(),
            sweep_interval_secs: sr_core::duration::parse_secs(&source.sweep_interval).ok(),
            observed_at,
        }
    }

    /// An update with the common fields and metadata filled in.
    #[must_use]
    pub fn update(&self, source: &str, integration_type: &str) -> DeviceUpdate {
        let mut metadata = BTreeMap::new();
        metadata.insert(
            meta::INTEGRATION_TYPE.to_owned(),
            integration_type.to_owned(),
        );
        metadata.insert(
            meta::INTEGRATION_SOURCE_ID.to_owned(),
            self.integration_source_id.clone(),
        );
        if let Some(s) = self.sweep_interval_secs {
            metadata.insert(meta::SWEEP_INTERVAL_SECS.to_owned(), s.to_string());
        }
        DeviceUpdate {
            device_id: String::new(),
            ip: String::new(),
            source: source.to_owned(),
            agent_id: self.agent_id.clone(),
            gateway_id: String::new(),
            partition: self.partition.clone(),
            timestamp: self.observed_at,
            hostname: None,
            mac: None,
            metadata,
            is_available: None,
        }
    }
}

impl Integration {
    /// Validates the source config and builds its client.
    ///
    /// # Errors
    /// [`FetchError::Config`] naming what is wrong.
    pub fn new(source: &SourceConfig, cfg: &IntegrationsConfig) -> Result<Self, FetchError> {
        if sr_core::duration::parse_secs(&source.sweep_interval).is_err()
            && !source.sweep_interval.is_empty()
        {
            return Err(FetchError::Config(format!(
                "sweep_interval {:?} is not a duration",
                source.sweep_interval
            )));
        }
        match source.source_type.as_str() {
            "armis" => Ok(Self::Armis(armis::ArmisClient::new(source, cfg)?)),
            "netbox" => Ok(Self::Netbox(netbox::NetboxClient::new(source, cfg)?)),
            other => Err(FetchError::Config(format!(
                "unknown source type {other:?} (expected armis or netbox)"
            ))),
        }
    }

    /// Fetches every device into `writer`.
    ///
    /// # Errors
    /// [`FetchError`]; the writer's content must then be discarded.
    pub async fn fetch(
        &self,
        common: &Common,
        writer: &mut ResultWriter,
    ) -> Result<(), FetchError> {
        match self {
            Self::Armis(c) => c.fetch(common, writer).await,
            Self::Netbox(c) => c.fetch(common, writer).await,
        }
    }
}

/// Parses a comma-separated address list, keeping valid addresses in order without repeats.
#[must_use]
pub fn parse_ips(list: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for part in list.split(',') {
        let part = part.trim();
        // Some APIs give an address with its prefix length.
        let addr = part.split('/').next().unwrap_or_default();
        if let Ok(ip) = addr.parse::<IpAddr>()
            && !out.contains(&ip)
        {
            out.push(ip);
        }
    }
    out
}

/// The first parseable MAC of a comma-separated list, in upper-case colon form. Accepts
/// `aa:bb:…`, `aa-bb-…`, `aabb.ccdd.eeff` and bare hex; skips the all-zero address.
#[must_use]
pub fn first_mac(list: &str) -> Option<String> {
    list.split(',').find_map(normalise_mac)
}

fn normalise_mac(text: &str) -> Option<String> {
    let hex: String = text
        .trim()
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    if hex.chars().all(|c| c == '0') {
        return None;
    }
    let upper = hex.to_ascii_uppercase();
    let pairs: Vec<&str> = (0..6).map(|i| &upper[i * 2..i * 2 + 2]).collect();
    Some(pairs.join(":"))
}

/// Joins values with commas.
#[must_use]
pub fn join<I, S>(items: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = String::new();
    for (i, s) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(s.as_ref());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_normalised_and_the_first_valid_one_wins() {
        assert_eq!(
            first_mac("garbage, 00:00:00:00:00:00 ,aa-bb-cc-dd-ee-0f,11:22:33:44:55:66").as_deref(),
            Some("AA:BB:CC:DD:EE:0F")
        );
        assert_eq!(
            first_mac("aabb.ccdd.eeff").as_deref(),
            Some("AA:BB:CC:DD:EE:FF")
        );
        assert_eq!(
            first_mac("001122334455").as_deref(),
            Some("00:11:22:33:44:55")
        );
        assert_eq!(first_mac(""), None);
        assert_eq!(first_mac("zz:bb:cc:dd:ee:ff"), None);
    }

    #[test]
    fn address_lists_keep_valid_ipv4_and_ipv6_in_order() {
        let ips = parse_ips("10.0.0.1, bogus,2001:db8::5,10.0.0.1,192.0.2.9/24");
        let text: Vec<String> = ips.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["10.0.0.1", "2001:db8::5", "192.0.2.9"]);
    }
}
