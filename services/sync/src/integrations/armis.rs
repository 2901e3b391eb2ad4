//! Armis: an access token from the source's `secret_key` (cached, refreshed once on a 401),
//! then `GET /api/v1/search/?aql=&length=&from=` for each query, following `next` until 0.
//!
//! With one query, devices go to the result writer page by page (only their ids are kept, to
//! drop repeats a shifting pagination may return). With several queries, devices are
//! aggregated by Armis id first: the union of their IPs, tags, query labels and sweep modes.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use sr_core::inventory::meta;
use sr_core::syncconfig::{SourceConfig, SourceQuery};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::http::{HttpClient, snippet};
use super::{Common, FetchError, first_mac, join, parse_ips};
use crate::config::IntegrationsConfig;
use crate::results::ResultWriter;

/// Credential key holding the Armis secret.
pub const SECRET_KEY: &str = "secret_key";

/// Metadata key of the Armis device id.
pub const ARMIS_DEVICE_ID: &str = "armis_device_id";

struct Token {
    value: String,
    expires: Instant,
}

/// The Armis client of one source.
pub struct ArmisClient {
    http: HttpClient,
    base: String,
    secret: String,
    queries: Vec<SourceQuery>,
    page_size: u32,
    token_ttl: Duration,
    token: Mutex<Option<Token>>,
}

impl fmt::Debug for ArmisClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArmisClient")
            .field("base", &self.base)
            .field("queries", &self.queries.len())
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: Option<T>,
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct TokenData {
    access_token: String,
    #[serde(default)]
    expiration_utc: Option<String>,
}

#[derive(Deserialize)]
struct SearchData {
    #[serde(default)]
    next: Option<serde_json::Value>,
    #[serde(default)]
    total: Option<serde_json::Value>,
    #[serde(default)]
    results: Vec<ArmisDevice>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArmisDevice {
    id: serde_json::Value,
    #[serde(default)]
    ip_address: Option<String>,
    #[serde(default)]
    mac_address: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "type")]
    device_type: Option<String>,
    #[serde(default)]
    manufacturer: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    operating_system: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// One device as the union of every query that found it.
#[derive(Debug, Default)]
struct Aggregate {
    id: String,
    name: Option<String>,
    ips: Vec<IpAddr>,
    mac: Option<String>,
    tags: BTreeSet<String>,
    labels: Vec<String>,
    sweep_modes: BTreeSet<String>,
    device_type: Option<String>,
    manufacturer: Option<String>,
    model: Option<String>,
    os: Option<String>,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn id_text(id: &serde_json::Value) -> Option<String> {
    match id {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

fn as_u64(v: &serde_json::Value) -> Option<u64> {
    match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Aggregate {
    fn merge(&mut self, d: ArmisDevice, query: &SourceQuery) {
        for ip in parse_ips(d.ip_address.as_deref().unwrap_or_default()) {
            if !self.ips.contains(&ip) {
                self.ips.push(ip);
            }
        }
        if self.mac.is_none() {
            self.mac = first_mac(d.mac_address.as_deref().unwrap_or_default());
        }
        for t in d.tags.unwrap_or_default() {
            let t = t.trim();
            if !t.is_empty() {
                self.tags.insert(t.to_owned());
            }
        }
        if !query.label.is_empty() && !self.labels.contains(&query.label) {
            self.labels.push(query.label.clone());
        }
        self.sweep_modes.extend(query.sweep_modes.iter().cloned());
        self.name = self.name.take().or_else(|| non_empty(d.name));
        self.device_type = self.device_type.take().or_else(|| non_empty(d.device_type));
        self.manufacturer = self
            .manufacturer
            .take()
            .or_else(|| non_empty(d.manufacturer));
        self.model = self.model.take().or_else(|| non_empty(d.model));
        self.os = self.os.take().or_else(|| non_empty(d.operating_system));
    }

    fn write(self, common: &Common, writer: &mut ResultWriter) -> Result<(), FetchError> {
        writer.add(&self.ips, |kept| {
            let mut u = common.update("armis", "armis");
            u.hostname = self.name;
            u.mac = self.mac;
            let m = &mut u.metadata;
            m.insert(ARMIS_DEVICE_ID.to_owned(), self.id);
            m.insert("primary_ip".to_owned(), kept[0].to_string());
            m.insert(
                "all_ips".to_owned(),
                join(kept.iter().map(ToString::to_string)),
            );
            m.insert("ip_count".to_owned(), kept.len().to_string());
            if !self.labels.is_empty() {
                m.insert(meta::QUERY_LABEL.to_owned(), join(&self.labels));
            }
            if !self.tags.is_empty() {
                m.insert("tag".to_owned(), join(&self.tags));
            }
            if !self.sweep_modes.is_empty() {
                m.insert(meta::SWEEP_MODES.to_owned(), join(&self.sweep_modes));
            }
            for (k, v) in [
                ("device_type", self.device_type),
                ("manufacturer", self.manufacturer),
                ("model", self.model),
                ("os", self.os),
            ] {
                if let Some(v) = v {
                    m.insert(k.to_owned(), v);
                }
            }
            u
        })?;
        Ok(())
    }
}

impl ArmisClient {
    /// Validates the source and builds the client.
    ///
    /// # Errors
    /// [`FetchError::Config`]: no queries, no `secret_key`, a bad endpoint.
    pub fn new(source: &SourceConfig, cfg: &IntegrationsConfig) -> Result<Self, FetchError> {
        if source.queries.is_empty() {
            return Err(FetchError::Config(
                "an Armis source needs at least one query".to_owned(),
            ));
        }
        if let Some(q) = source.queries.iter().find(|q| q.query.trim().is_empty()) {
            return Err(FetchError::Config(format!(
                "Armis query {:?} has no AQL",
                q.label
            )));
        }
        let secret = source
            .credentials
            .get(SECRET_KEY)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                FetchError::Config(format!("an Armis source needs the {SECRET_KEY} credential"))
            })?
            .clone();
        let base = super::netbox::base_url(&source.endpoint)?;
        Ok(Self {
            http: HttpClient::new(cfg, source.insecure_skip_verify)?,
            base: base.as_str().trim_end_matches('/').to_owned(),
            secret,
            queries: source.queries.clone(),
            page_size: source
                .page_size
                .filter(|p| *p > 0)
                .unwrap_or(cfg.default_page_size),
            token_ttl: Duration::from_secs(cfg.armis_token_ttl_secs),
            token: Mutex::new(None),
        })
    }

    /// A valid token: the cached one, or a new one.
    async fn token(&self, force: bool) -> Result<String, FetchError> {
        let mut cached = self.token.lock().await;
        if !force
            && let Some(t) = cached.as_ref()
            && Instant::now() < t.expires
        {
            return Ok(t.value.clone());
        }
        let url = format!("{}/api/v1/access_token/", self.base);
        let resp = self
            .http
            .send("Armis access_token", || {
                self.http
                    .inner()
                    .post(&url)
                    .form(&[(SECRET_KEY, self.secret.as_str())])
            })
            .await?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(FetchError::Auth(format!(
                "Armis refused the secret key (HTTP {})",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                what: "Armis access_token".to_owned(),
                status: status.as_u16(),
                body: snippet(resp).await,
            });
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| FetchError::Transport(super::http::error_chain(e)))?;
        let env: Envelope<TokenData> = serde_json::from_slice(&body)
            .map_err(|e| FetchError::Decode(format!("Armis access_token: {e}")))?;
        let data = env
            .data
            .filter(|d| !d.access_token.is_empty())
            .ok_or_else(|| {
                FetchError::Auth(format!(
                    "Armis gave no access token: {}",
                    env.message.unwrap_or_default()
                ))
            })?;
        // Reuse for the configured time, or less when the token says it expires sooner
        // (keeping a minute of margin).
        let mut ttl = self.token_ttl;
        if let Some(exp) = data
            .expiration_utc
            .as_deref()
            .and_then(|e| chrono::DateTime::parse_from_rfc3339(e).ok())
        {
            let left = (exp.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds() - 60;
            ttl = ttl.min(Duration::from_secs(u64::try_from(left.max(0)).unwrap_or(0)));
        }
        let value = data.access_token;
        *cached = Some(Token {
            value: value.clone(),
            expires: Instant::now() + ttl,
        });
        Ok(value)
    }

    /// One search page; a 401 refreshes the token once and retries.
    async fn page(&self, aql: &str, from: u64) -> Result<SearchData, FetchError> {
        let url = format!("{}/api/v1/search/", self.base);
        let length = self.page_size.to_string();
        let from_text = from.to_string();
        let mut refreshed = false;
        loop {
            let token = self.token(refreshed).await?;
            let resp = self
                .http
                .send("Armis search", || {
                    self.http
                        .inner()
                        .get(&url)
                        .query(&[("aql", aql), ("length", &length), ("from", &from_text)])
                        .header(reqwest::header::AUTHORIZATION, &token)
                })
                .await?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED {
                if refreshed {
                    return Err(FetchError::Auth(
                        "Armis rejected a freshly issued token".to_owned(),
                    ));
                }
                tracing::debug!("Armis token rejected; refreshing once");
                refreshed = true;
                continue;
            }
            if !status.is_success() {
                return Err(FetchError::Status {
                    what: "Armis search".to_owned(),
                    status: status.as_u16(),
                    body: snippet(resp).await,
                });
            }
            let body = resp
                .bytes()
                .await
                .map_err(|e| FetchError::Transport(super::http::error_chain(e)))?;
            let env: Envelope<SearchData> = serde_json::from_slice(&body)
                .map_err(|e| FetchError::Decode(format!("Armis search page from={from}: {e}")))?;
            if env.success == Some(false) {
                return Err(FetchError::Decode(format!(
                    "Armis search failed: {}",
                    env.message.unwrap_or_default()
                )));
            }
            return env.data.ok_or_else(|| {
                FetchError::Decode(format!("Armis search page from={from} has no data"))
            });
        }
    }

    /// Every page of one query, each handed to `each` as it arrives.
    async fn query(
        &self,
        q: &SourceQuery,
        mut each: impl FnMut(ArmisDevice) -> Result<(), FetchError>,
    ) -> Result<u64, FetchError> {
        let mut from = 0u64;
        let mut seen = 0u64;
        loop {
            let page = self.page(&q.query, from).await?;
            let total = page.total.as_ref().and_then(as_u64);
            let next = page.next.as_ref().and_then(as_u64).unwrap_or(0);
            seen += page.results.len() as u64;
            for d in page.results {
                each(d)?;
            }
            if next == 0 {
                if let Some(total) = total
                    && total != seen
                {
                    tracing::debug!(label = %q.label, total, seen, "Armis total differs from the devices listed");
                }
                return Ok(seen);
            }
            if next <= from {
                return Err(FetchError::Decode(format!(
                    "Armis pagination does not advance (from={from}, next={next})"
                )));
            }
            from = next;
        }
    }

    /// Fetches every query into `writer`.
    ///
    /// # Errors
    /// [`FetchError`].
    pub async fn fetch(
        &self,
        common: &Common,
        writer: &mut ResultWriter,
    ) -> Result<(), FetchError> {
        if let [q] = self.queries.as_slice() {
            let mut numeric: HashSet<u64> = HashSet::new();
            let mut other: HashSet<String> = HashSet::new();
            self.query(q, |d| {
                let Some(id) = id_text(&d.id) else {
                    return Ok(());
                };
                let fresh = match id.parse::<u64>() {
                    Ok(n) => numeric.insert(n),
                    Err(_) => other.insert(id.clone()),
                };
                if fresh {
                    let mut a = Aggregate {
                        id,
                        ..Aggregate::default()
                    };
                    a.merge(d, q);
                    a.write(common, writer)?;
                }
                Ok(())
            })
            .await?;
            return Ok(());
        }
        let mut all: BTreeMap<String, Aggregate> = BTreeMap::new();
        for q in &self.queries {
            self.query(q, |d| {
                if let Some(id) = id_text(&d.id) {
                    all.entry(id.clone())
                        .or_insert_with(|| Aggregate {
                            id,
                            ..Aggregate::default()
                        })
                        .merge(d, q);
                }
                Ok(())
            })
            .await?;
        }
        for (_, a) in all {
            a.write(common, writer)?;
        }
        Ok(())
    }
}
