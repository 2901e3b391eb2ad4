//! NetBox: `GET /api/dcim/devices/?limit=&offset=` with `Authorization: Token <t>`, following
//! `next` (absolute or relative) until null. Devices without a primary IPv4 are skipped. A
//! failed page fails the whole fetch: the caller discards the partial result set, so a partial
//! inventory is never pushed.
//!
//! The source's settings `tcp_ports` and `expand_subnets` become sweep hints on every device
//! (`sweep_ports`, and `sweep_subnet` = the primary address's network).

use std::fmt;

use reqwest::StatusCode;
use serde::Deserialize;
use sr_core::inventory::meta;
use sr_core::syncconfig::SourceConfig;
use url::Url;

use super::http::{HttpClient, snippet};
use super::{Common, FetchError, join};
use crate::config::IntegrationsConfig;
use crate::results::ResultWriter;

/// Credential keys accepted for the NetBox API token, in order of preference.
pub const TOKEN_KEYS: [&str; 2] = ["api_token", "token"];

/// Metadata key of the NetBox device id.
pub const NETBOX_DEVICE_ID: &str = "netbox_device_id";

/// Metadata key of the network to sweep as a whole (NetBox `expand_subnets`).
pub const SWEEP_SUBNET: &str = "sweep_subnet";

/// Parses a source endpoint as an http(s) base URL.
///
/// # Errors
/// [`FetchError::Config`].
pub fn base_url(endpoint: &str) -> Result<Url, FetchError> {
    let url = Url::parse(endpoint.trim())
        .map_err(|e| FetchError::Config(format!("endpoint {endpoint:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(FetchError::Config(format!(
            "endpoint {endpoint:?} must be an http(s) URL with a host"
        )));
    }
    Ok(url)
}

/// The NetBox client of one source.
pub struct NetboxClient {
    http: HttpClient,
    base: Url,
    token: String,
    page_size: u32,
    sweep_ports: Option<String>,
    expand_subnets: bool,
}

impl fmt::Debug for NetboxClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetboxClient")
            .field("base", &self.base.as_str())
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    results: Vec<NetboxDevice>,
}

#[derive(Deserialize)]
struct Named {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct Address {
    address: String,
}

#[derive(Deserialize)]
struct NetboxDevice {
    id: u64,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    role: Option<Named>,
    /// NetBox before 3.6 called the role `device_role`.
    #[serde(default)]
    device_role: Option<Named>,
    #[serde(default)]
    site: Option<Named>,
    #[serde(default)]
    primary_ip4: Option<Address>,
}

/// `tcp_ports` as a list of numbers or a comma-separated string, normalised to `22,80,443`.
fn ports_setting(v: &serde_json::Value) -> Result<String, FetchError> {
    let bad = || FetchError::Config(format!("settings.tcp_ports {v} must be a list of ports"));
    let parse_one = |p: &serde_json::Value| -> Result<u16, FetchError> {
        match p {
            serde_json::Value::Number(n) => n
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(bad),
            serde_json::Value::String(s) => s
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(bad),
            _ => Err(bad()),
        }
    };
    let mut ports: Vec<u16> = match v {
        serde_json::Value::Array(items) => items.iter().map(parse_one).collect::<Result<_, _>>()?,
        serde_json::Value::String(s) => s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| parse_one(&serde_json::Value::String(p.to_owned())))
            .collect::<Result<_, _>>()?,
        serde_json::Value::Number(_) => vec![parse_one(v)?],
        _ => return Err(bad()),
    };
    ports.sort_unstable();
    ports.dedup();
    Ok(join(ports.iter().map(ToString::to_string)))
}

impl NetboxClient {
    /// Validates the source and builds the client.
    ///
    /// # Errors
    /// [`FetchError::Config`]: no token, a bad endpoint, bad settings.
    pub fn new(source: &SourceConfig, cfg: &IntegrationsConfig) -> Result<Self, FetchError> {
        let token = TOKEN_KEYS
            .iter()
            .find_map(|k| source.credentials.get(*k).filter(|t| !t.is_empty()))
            .ok_or_else(|| {
                FetchError::Config("a NetBox source needs the api_token credential".to_owned())
            })?
            .clone();
        let mut base = base_url(&source.endpoint)?;
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let sweep_ports = source
            .settings
            .get("tcp_ports")
            .filter(|v| !v.is_null())
            .map(ports_setting)
            .transpose()?
            .filter(|p| !p.is_empty());
        let expand_subnets = match source.settings.get("expand_subnets") {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => matches!(s.trim(), "true" | "1" | "yes"),
            Some(other) => {
                return Err(FetchError::Config(format!(
                    "settings.expand_subnets {other} must be true or false"
                )));
            }
        };
        Ok(Self {
            http: HttpClient::new(cfg, source.insecure_skip_verify)?,
            base,
            token,
            page_size: source
                .page_size
                .filter(|p| *p > 0)
                .unwrap_or(cfg.default_page_size),
            sweep_ports,
            expand_subnets,
        })
    }

    /// Where `next` points, on our endpoint: a relative link is resolved against the
    /// endpoint, and an absolute one keeps its path and query but goes to the endpoint's
    /// scheme, host and port (a NetBox behind a proxy often names its internal address, and
    /// the token must not go anywhere else).
    fn follow(&self, next: &str) -> Result<Url, FetchError> {
        match Url::parse(next) {
            Ok(abs) => {
                let mut url = self.base.clone();
                url.set_path(abs.path());
                url.set_query(abs.query());
                Ok(url)
            }
            Err(url::ParseError::RelativeUrlWithoutBase) => self
                .base
                .join(next)
                .map_err(|e| FetchError::Decode(format!("NetBox next link {next:?}: {e}"))),
            Err(e) => Err(FetchError::Decode(format!(
                "NetBox next link {next:?}: {e}"
            ))),
        }
    }

    async fn page(&self, url: &Url) -> Result<Page, FetchError> {
        let auth = format!("Token {}", self.token);
        let resp = self
            .http
            .send("NetBox devices", || {
                self.http
                    .inner()
                    .get(url.clone())
                    .header(reqwest::header::AUTHORIZATION, &auth)
                    .header(reqwest::header::ACCEPT, "application/json")
            })
            .await?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(FetchError::Auth(format!(
                "NetBox refused the API token (HTTP {})",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                what: "NetBox devices".to_owned(),
                status: status.as_u16(),
                body: snippet(resp).await,
            });
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| FetchError::Transport(super::http::error_chain(e)))?;
        serde_json::from_slice(&body)
            .map_err(|e| FetchError::Decode(format!("NetBox devices page: {e}")))
    }

    /// Fetches every device into `writer`.
    ///
    /// # Errors
    /// [`FetchError`] for any failed page.
    pub async fn fetch(
        &self,
        common: &Common,
        writer: &mut ResultWriter,
    ) -> Result<(), FetchError> {
        let mut url = self
            .base
            .join(&format!(
                "api/dcim/devices/?limit={}&offset=0",
                self.page_size
            ))
            .map_err(|e| FetchError::Config(format!("endpoint: {e}")))?;
        let mut visited = std::collections::HashSet::new();
        loop {
            if !visited.insert(url.as_str().to_owned()) {
                return Err(FetchError::Decode(format!(
                    "NetBox pagination loops back to {}",
                    url.path()
                )));
            }
            let page = self.page(&url).await?;
            for d in page.results {
                self.write(d, common, writer)?;
            }
            match page.next.as_deref().map(str::trim) {
                None | Some("") => return Ok(()),
                Some(next) => url = self.follow(next)?,
            }
        }
    }

    fn write(
        &self,
        d: NetboxDevice,
        common: &Common,
        writer: &mut ResultWriter,
    ) -> Result<(), FetchError> {
        let net = d.primary_ip4.as_ref().and_then(|a| {
            a.address.trim().parse::<ipnet::IpNet>().ok().or_else(|| {
                a.address
                    .trim()
                    .parse::<std::net::IpAddr>()
                    .ok()
                    .map(ipnet::IpNet::from)
            })
        });
        let ips: Vec<std::net::IpAddr> = net.iter().map(ipnet::IpNet::addr).collect();
        let role = d
            .role
            .and_then(|r| r.name)
            .or_else(|| d.device_role.and_then(|r| r.name))
            .filter(|s| !s.is_empty());
        let site = d.site.and_then(|s| s.name).filter(|s| !s.is_empty());
        writer.add(&ips, |_| {
            let mut u = common.update("netbox", "netbox");
            u.hostname = d.name.filter(|n| !n.trim().is_empty());
            let m = &mut u.metadata;
            m.insert(NETBOX_DEVICE_ID.to_owned(), d.id.to_string());
            if let Some(r) = role {
                m.insert("role".to_owned(), r);
            }
            if let Some(s) = site {
                m.insert("site".to_owned(), s);
            }
            if let Some(p) = &self.sweep_ports {
                m.insert(meta::SWEEP_PORTS.to_owned(), p.clone());
            }
            if self.expand_subnets
                && let Some(n) = net
            {
                m.insert(SWEEP_SUBNET.to_owned(), n.trunc().to_string());
            }
            u
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tcp_ports_accept_lists_and_strings() {
        assert_eq!(
            ports_setting(&serde_json::json!([443, "22", 80, 443])).unwrap(),
            "22,80,443"
        );
        assert_eq!(
            ports_setting(&serde_json::json!("3389, 22")).unwrap(),
            "22,3389"
        );
        assert!(ports_setting(&serde_json::json!([70000])).is_err());
        assert!(ports_setting(&serde_json::json!({"a": 1})).is_err());
    }
}
