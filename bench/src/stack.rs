//! A private pipeline for one scenario: the release binaries as separate processes, each on
//! free local ports, with database schemas and a NATS subject prefix of the scenario's own.
//! [`Stack::cleanup`] stops the processes, drops the schemas and deletes the streams.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail, ensure};
use serde_json::{Value, json};
use sr_core::{Subjects, TenantId};
use tokio::process::{Child, Command};

/// Where the binaries and the servers are.
#[derive(Debug, Clone)]
pub struct Env {
    /// Directory of the release binaries.
    pub bin: PathBuf,
    /// `postgres://…`.
    pub database_url: String,
    /// `nats://…`.
    pub nats_url: String,
}

/// One running service process.
pub struct Service {
    /// Binary name (`sr-dire`, …).
    pub name: String,
    child: Child,
    /// Process id (for `/proc/<pid>/status`).
    pub pid: u32,
    /// `http://127.0.0.1:<port>` of its ops (and API) listener.
    pub http: String,
    log: PathBuf,
}

/// The admin API of the stack's identity service.
#[derive(Clone)]
pub struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        ensure!(status.is_success(), "{method} {path}: {status}: {text}");
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }

    /// `GET /api/v1{path}`.
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// `POST /api/v1{path}` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    /// Creates tenant `slug` and returns its id.
    pub async fn tenant(&self, slug: &str) -> Result<TenantId> {
        self.post("/tenants", json!({ "slug": slug })).await?;
        let t = self.get(&format!("/tenants/{slug}")).await?;
        t["id"]
            .as_str()
            .ok_or_else(|| anyhow!("tenant without id: {t}"))?
            .parse()
            .map_err(|e| anyhow!("tenant id: {e:?}"))
    }
}

/// A client certificate for the gateway, issued by identity for a tenant's sync service.
pub struct ClientCert {
    /// Component id (the certificate's identity and the `agent_id` of chunks).
    pub component_id: String,
    /// Certificate chain, PEM.
    pub cert_pem: String,
    /// Private key, PEM.
    pub key_pem: String,
    /// Root CA the gateway certificate chains to, PEM.
    pub ca_pem: String,
}

/// The processes, schemas and prefix of one scenario.
pub struct Stack {
    env: Env,
    /// Short random id in every name this stack creates.
    pub id: String,
    /// NATS subject and stream prefix.
    pub prefix: String,
    dir: tempfile::TempDir,
    schemas: Vec<String>,
    services: Vec<Service>,
    /// Identity's admin API, once identity runs.
    pub admin: Option<Admin>,
    /// `127.0.0.1:<port>` of the gateway's gRPC listener, once the gateway runs.
    pub grpc_addr: Option<String>,
}

/// A free local TCP port (bound and released; the service binds it right after).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `VmHWM` (peak resident set) of a process, in KiB.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Sum of every sample of a Prometheus metric family in a text exposition whose labels
/// contain `label` (empty: all samples).
pub fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (metric, labels) = key.split_once('{').unwrap_or((key, ""));
            (metric == name && labels.contains(label))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

impl Stack {
    /// A new, empty stack; `label` names its temporary directory.
    pub fn new(env: &Env, label: &str) -> Result<Self> {
        let id = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let dir = tempfile::Builder::new()
            .prefix(&format!("sr-bench-{label}-"))
            .tempdir()?;
        Ok(Self {
            env: env.clone(),
            prefix: format!("b{id}"),
            id,
            dir,
            schemas: Vec::new(),
            services: Vec::new(),
            admin: None,
            grpc_addr: None,
        })
    }

    /// The stack's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Subject and stream names of the stack's prefix.
    pub fn subjects(&self) -> Subjects {
        Subjects::new(&self.prefix)
    }

    /// A schema name of this stack for `what`, dropped by [`Stack::cleanup`].
    pub fn schema(&mut self, what: &str) -> String {
        let s = format!("bench_{}_{what}", self.id);
        if !self.schemas.contains(&s) {
            self.schemas.push(s.clone());
        }
        s
    }

    /// Database settings on a schema of this stack.
    pub fn database(&mut self, what: &str, max_connections: u32) -> sr_runtime::db::DatabaseConfig {
        let mut c = sr_runtime::db::DatabaseConfig::for_schema(&self.schema(what));
        c.url.clone_from(&self.env.database_url);
        c.max_connections = max_connections;
        c
    }

    /// Starts binary `name`; `section` is its env prefix (`SR_DIRE`), `db`/`nats` whether it
    /// has those sections. Waits until `/readyz` answers 200.
    pub async fn start(
        &mut self,
        name: &str,
        section: &str,
        db: Option<&str>,
        nats: bool,
        extra: &[(String, String)],
    ) -> Result<&Service> {
        let port = free_port()?;
        let http = format!("http://127.0.0.1:{port}");
        let log = self.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(self.env.bin.join(name));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env(
                format!("{section}__HTTP__LISTEN"),
                format!("127.0.0.1:{port}"),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true);
        if let Some(what) = db {
            let schema = self.schema(what);
            cmd.env(format!("{section}__DATABASE__URL"), &self.env.database_url)
                .env(format!("{section}__DATABASE__SCHEMA"), schema);
        }
        if nats {
            cmd.env(format!("{section}__NATS__URL"), &self.env.nats_url)
                .env(format!("{section}__NATS__SUBJECT_PREFIX"), &self.prefix);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.env.bin.join(name).display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("{name} exited at once"))?;
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{name} exited ({status}) before it was ready:\n{}",
                    tail(&log, 20)
                );
            }
            if let Ok(r) = client.get(format!("{http}/readyz")).send().await
                && r.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!("{name} was not ready after 60 s:\n{}", tail(&log, 20));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.services.push(Service {
            name: name.to_owned(),
            child,
            pid,
            http,
            log,
        });
        self.services.last().ok_or_else(|| anyhow!("no service"))
    }

    /// The running service `name`.
    pub fn service(&self, name: &str) -> Result<&Service> {
        self.services
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| anyhow!("{name} is not running"))
    }

    /// Stops service `name` (SIGKILL) and forgets it.
    pub async fn stop(&mut self, name: &str) -> Result<()> {
        let i = self
            .services
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| anyhow!("{name} is not running"))?;
        let mut s = self.services.remove(i);
        s.child.kill().await?;
        Ok(())
    }

    /// The last lines of a service's log (for error messages).
    pub fn log_tail(&self, name: &str) -> String {
        self.services
            .iter()
            .find(|s| s.name == name)
            .map(|s| tail(&s.log, 20))
            .unwrap_or_default()
    }

    /// `/metrics` of service `name`.
    pub async fn metrics(&self, name: &str) -> Result<String> {
        let s = self.service(name)?;
        Ok(reqwest::get(format!("{}/metrics", s.http))
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// Identity and the gateway: the minimum every pipeline scenario needs. Identity writes
    /// its bootstrap (certificates, bundles, admin token) into the stack's directory.
    pub async fn start_front(&mut self) -> Result<()> {
        let boot = self.dir.path().join("bootstrap");
        let grpc_port = free_port()?;
        let grpc = format!("127.0.0.1:{grpc_port}");
        let s = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        self.start(
            "sr-identity",
            "SR_IDENTITY",
            Some("identity"),
            true,
            &[
                s(
                    "SR_IDENTITY__BOOTSTRAP__OUTPUT_DIR",
                    &boot.display().to_string(),
                ),
                s("SR_IDENTITY__BOOTSTRAP__GATEWAY_ADDRESS", &grpc),
                s("SR_IDENTITY__SECRETS__DEV_MODE", "true"),
            ],
        )
        .await?;
        let base = self.service("sr-identity")?.http.clone();
        let token = std::fs::read_to_string(boot.join("admin-token"))
            .context("identity wrote no admin token")?
            .trim()
            .to_owned();
        self.admin = Some(Admin {
            http: reqwest::Client::new(),
            base,
            token,
        });
        let gw = boot.join("gateway");
        let path = |f: &str| gw.join(f).display().to_string();
        self.start(
            "sr-gateway",
            "SR_GATEWAY",
            None,
            true,
            &[
                s("SR_GATEWAY__GRPC__LISTEN", &grpc),
                s("SR_GATEWAY__GRPC__CERT_FILE", &path("server.pem")),
                s("SR_GATEWAY__GRPC__KEY_FILE", &path("server-key.pem")),
                s("SR_GATEWAY__GRPC__CLIENT_CA_FILE", &path("client-ca.pem")),
            ],
        )
        .await?;
        self.grpc_addr = Some(grpc);
        Ok(())
    }

    /// The admin API (after [`Stack::start_front`]).
    pub fn admin(&self) -> Result<&Admin> {
        self.admin
            .as_ref()
            .ok_or_else(|| anyhow!("identity is not running"))
    }

    /// The admin token (for the services' read APIs).
    pub fn token(&self) -> Result<String> {
        Ok(self.admin()?.token.clone())
    }

    /// DIRE, consuming device updates into schema `dire`.
    pub async fn start_dire(&mut self) -> Result<()> {
        let token = self.token()?;
        self.start(
            "sr-dire",
            "SR_DIRE",
            Some("dire"),
            true,
            &[("SR_DIRE__API__TOKEN".to_owned(), token)],
        )
        .await?;
        Ok(())
    }

    /// Sweepgen, consuming DIRE's inventory changes.
    pub async fn start_sweepgen(&mut self) -> Result<()> {
        let token = self.token()?;
        self.start(
            "sr-sweepgen",
            "SR_SWEEPGEN",
            Some("sweepgen"),
            true,
            &[("SR_SWEEPGEN__API__TOKEN".to_owned(), token)],
        )
        .await?;
        Ok(())
    }

    /// A client certificate of a new sync service of tenant `slug`.
    pub async fn client_cert(&self, slug: &str, component_id: &str) -> Result<ClientCert> {
        let b = self
            .admin()?
            .post(
                &format!("/tenants/{slug}/sync-services"),
                json!({ "name": component_id, "component_id": component_id }),
            )
            .await?;
        let field = |k: &str| {
            b["bundle"][k]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("bundle without {k}: {b}"))
        };
        Ok(ClientCert {
            component_id: component_id.to_owned(),
            cert_pem: field("certificate_pem")?,
            key_pem: field("private_key_pem")?,
            ca_pem: std::fs::read_to_string(self.dir.path().join("bootstrap/root-ca.pem"))?,
        })
    }

    /// A NATS client on the stack's server.
    pub async fn nats(&self) -> Result<async_nats::Client> {
        async_nats::connect(&self.env.nats_url)
            .await
            .with_context(|| format!("NATS at {}", self.env.nats_url))
    }

    /// A pool on schema `what` of this stack (for reads and the plain-insert comparison).
    pub async fn pool(&mut self, what: &str, max_connections: u32) -> Result<sqlx::PgPool> {
        use sqlx::ConnectOptions as _;
        let schema = self.schema(what);
        let opts: sqlx::postgres::PgConnectOptions = self.env.database_url.parse()?;
        let opts = opts
            .options([("search_path", schema.as_str())])
            .disable_statement_logging();
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(opts)
            .await?)
    }

    /// Stops every process, then drops the stack's schemas and deletes its streams.
    pub async fn cleanup(mut self) -> Result<()> {
        for mut s in self.services.drain(..) {
            let _ = s.child.kill().await;
        }
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.env.database_url)
            .await?;
        sqlx::query("SET lock_timeout = '10s'")
            .execute(&pool)
            .await?;
        for schema in &self.schemas {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
            )))
            .execute(&pool)
            .await
            .with_context(|| format!("dropping schema {schema}"))?;
        }
        pool.close().await;
        let js = async_nats::jetstream::new(self.nats().await?);
        let s = self.subjects();
        for name in [s.devices_stream(), s.inventory_stream(), s.events_stream()] {
            // A stream a scenario never created is simply not there.
            let _ = js.delete_stream(&name).await;
        }
        Ok(())
    }
}

/// Polls `check` every `every` until it yields, failing after `timeout`.
pub async fn until<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {} s waiting for {what}", timeout.as_secs());
        }
        tokio::time::sleep(every).await;
    }
}

/// Messages a durable consumer still has to process (pending plus delivered but unacked).
pub async fn consumer_backlog(
    js: &async_nats::jetstream::Context,
    stream: &str,
    durable: &str,
) -> Result<u64> {
    let stream = js
        .get_stream(stream)
        .await
        .map_err(|e| anyhow!("stream {stream}: {e}"))?;
    let mut c: async_nats::jetstream::consumer::PullConsumer =
        stream
            .get_consumer(durable)
            .await
            .map_err(|e| anyhow!("consumer {durable}: {e}"))?;
    let info = c.info().await.map_err(|e| anyhow!("consumer info: {e}"))?;
    Ok(info.num_pending + u64::try_from(info.num_ack_pending).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_adds_the_matching_samples_only() {
        let text = "# HELP sr_dire_devices Devices by outcome\n\
                    sr_dire_devices_total{outcome=\"created\"} 10\n\
                    sr_dire_devices_total{outcome=\"updated\"} 5\n\
                    sr_dire_devices_total_other 7\n\
                    sr_gateway_stream_bytes_total 1234\n";
        assert!((metric_sum(text, "sr_dire_devices_total", "") - 15.0).abs() < 1e-9);
        assert!(
            (metric_sum(text, "sr_dire_devices_total", "outcome=\"updated\"") - 5.0).abs() < 1e-9
        );
        assert!((metric_sum(text, "sr_gateway_stream_bytes_total", "") - 1234.0).abs() < 1e-9);
        assert!(metric_sum(text, "missing", "").abs() < 1e-9);
    }
}
