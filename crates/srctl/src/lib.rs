//! `srctl`: a command-line client for the admin API of the identity service (tenants, sync
//! services, agents, integration sources) and the read APIs of DIRE (devices), sweepgen (sweep
//! configs) and the events service (events). Output is a readable table, or the API's JSON
//! with `--json`. The library form lets tests run commands against a real service.

mod sweep;

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

mod devices;
pub use devices::DevicesCmd;
pub mod events;

/// Command line.
#[derive(Debug, Parser)]
#[command(name = "srctl", version, about = "ServiceRadar control CLI")]
pub struct Cli {
    /// Identity service admin API.
    #[arg(
        long,
        env = "SRCTL_IDENTITY_URL",
        default_value = "http://127.0.0.1:8090",
        global = true
    )]
    pub identity_url: String,
    /// DIRE read API (devices).
    #[arg(
        long,
        env = "SRCTL_DIRE_URL",
        default_value = "http://127.0.0.1:8091",
        global = true
    )]
    pub dire_url: String,
    /// Events service read API.
    #[arg(
        long,
        env = "SRCTL_EVENTS_URL",
        default_value = "http://127.0.0.1:8093",
        global = true
    )]
    pub events_url: String,
    /// Sweepgen read API (`sweep …` commands).
    #[arg(
        long,
        env = "SRCTL_SWEEPGEN_URL",
        default_value = "http://127.0.0.1:8094",
        global = true
    )]
    pub sweepgen_url: String,
    /// Bearer token: the identity admin token, or the read APIs' `api.token`.
    #[arg(long, env = "SRCTL_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the admin token (e.g. the bootstrap output's `admin-token`).
    #[arg(long, env = "SRCTL_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Platform tenant id, slug and trust domain.
    Platform,
    /// Tenants.
    #[command(subcommand)]
    Tenants(TenantCmd),
    /// Sync services of a tenant.
    #[command(subcommand, name = "sync-services")]
    SyncServices(SyncCmd),
    /// Agent enrollment.
    #[command(subcommand)]
    Agents(AgentCmd),
    /// Integration sources of a tenant.
    #[command(subcommand)]
    Sources(SourceCmd),
    /// Canonical devices of a tenant (DIRE).
    #[command(subcommand)]
    Devices(DevicesCmd),
    /// OCSF events of a tenant (events service).
    #[command(subcommand)]
    Events(events::EventsCmd),
    /// Sweep configs compiled by sweepgen.
    #[command(subcommand)]
    Sweep(sweep::SweepCmd),
}

/// `srctl tenants …`
#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// List tenants.
    List,
    /// Create a tenant (and its CA).
    Create {
        /// Slug (`^[a-z0-9-]{1,63}$`).
        slug: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
    },
}

/// Where to write an enrollment bundle.
#[derive(Debug, Args)]
pub struct BundleOut {
    /// Write cert.pem, key.pem, ca.pem and the bootstrap config into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `srctl sync-services …`
#[derive(Debug, Subcommand)]
pub enum SyncCmd {
    /// The sync services a tenant may use, with status.
    List {
        /// Tenant slug.
        tenant: String,
    },
    /// Onboard an edge sync service and get its bundle.
    Onboard {
        /// Tenant slug.
        tenant: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Component id for the certificate.
        #[arg(long)]
        component_id: String,
        /// Partition (default `default`).
        #[arg(long)]
        partition: Option<String>,
        /// Bundle output.
        #[command(flatten)]
        out: BundleOut,
    },
}

/// `srctl agents …`
#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// Enroll an agent and get its bundle.
    Enroll {
        /// Tenant slug.
        tenant: String,
        /// Component id for the certificate.
        #[arg(long)]
        component_id: String,
        /// Partition (default `default`).
        #[arg(long)]
        partition: Option<String>,
        /// Bundle output.
        #[command(flatten)]
        out: BundleOut,
    },
}

/// `srctl sources …`
#[derive(Debug, Subcommand)]
pub enum SourceCmd {
    /// List a tenant's integration sources.
    List {
        /// Tenant slug.
        tenant: String,
    },
    /// Show one source.
    Get {
        /// Tenant slug.
        tenant: String,
        /// Source id.
        id: String,
    },
    /// Create a source from a JSON file (or `-` for stdin) and/or `--set key=value` pairs.
    Create {
        /// Tenant slug.
        tenant: String,
        /// JSON body.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Field values (`name=armis`, `queries=[...]`: JSON values are parsed, others are strings).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Change fields of a source.
    Update {
        /// Tenant slug.
        tenant: String,
        /// Source id.
        id: String,
        /// JSON body.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Field values.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Enable a source.
    Enable {
        /// Tenant slug.
        tenant: String,
        /// Source id.
        id: String,
    },
    /// Disable a source.
    Disable {
        /// Tenant slug.
        tenant: String,
        /// Source id.
        id: String,
    },
    /// Delete a source.
    Delete {
        /// Tenant slug.
        tenant: String,
        /// Source id.
        id: String,
    },
}

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No token given.
    #[error("no admin token: pass --token, --token-file, or set SRCTL_TOKEN / SRCTL_TOKEN_FILE")]
    NoToken,
    /// The API answered with an error.
    #[error("{status}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The API's message.
        message: String,
    },
    /// Transport failure.
    #[error("cannot reach {url}: {source}")]
    Http {
        /// URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// Bad local input.
    #[error("{0}")]
    Input(String),
}

/// Result alias.
pub type Result<T, E = CliError> = std::result::Result<T, E>;

pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let url = format!("{}/api/v1{path}", self.base.trim_end_matches('/'));
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|source| CliError::Http {
            url: url.clone(),
            source,
        })?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|source| CliError::Http { url, source })?;
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            Ok(value)
        } else {
            let message = value["error"]["message"]
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            Err(CliError::Api {
                status: status.as_u16(),
                message,
            })
        }
    }
}

fn token(cli: &Cli) -> Result<String> {
    if let Some(t) = &cli.token {
        return Ok(t.trim().to_owned());
    }
    if let Some(f) = &cli.token_file {
        return std::fs::read_to_string(f)
            .map(|t| t.trim().to_owned())
            .map_err(|e| CliError::Input(format!("cannot read token file {}: {e}", f.display())));
    }
    Err(CliError::NoToken)
}

fn body_from(file: Option<&PathBuf>, set: &[String]) -> Result<Value> {
    let mut body = match file {
        Some(p) if p.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| CliError::Input(e.to_string()))?;
            serde_json::from_str(&s)
                .map_err(|e| CliError::Input(format!("stdin is not JSON: {e}")))?
        }
        Some(p) => {
            let s = std::fs::read_to_string(p)
                .map_err(|e| CliError::Input(format!("cannot read {}: {e}", p.display())))?;
            serde_json::from_str(&s)
                .map_err(|e| CliError::Input(format!("{} is not JSON: {e}", p.display())))?
        }
        None => json!({}),
    };
    let Some(obj) = body.as_object_mut() else {
        return Err(CliError::Input("the body must be a JSON object".to_owned()));
    };
    for pair in set {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| CliError::Input(format!("--set {pair:?}: expected KEY=VALUE")))?;
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_owned()));
        obj.insert(k.to_owned(), value);
    }
    Ok(body)
}

fn write_bundle(resp: &Value, out: &BundleOut, config_name: &str) -> Result<Option<String>> {
    let Some(dir) = &out.out else { return Ok(None) };
    let b = &resp["bundle"];
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::Input(format!("cannot create {}: {e}", dir.display())))?;
    let files = [
        (
            "cert.pem",
            b["certificate_pem"].as_str().unwrap_or_default().to_owned(),
        ),
        (
            "key.pem",
            b["private_key_pem"].as_str().unwrap_or_default().to_owned(),
        ),
        (
            "ca.pem",
            b["ca_pem"].as_str().unwrap_or_default().to_owned(),
        ),
        (
            config_name,
            serde_json::to_string_pretty(&b["config"]).unwrap_or_default(),
        ),
    ];
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::write(&path, content)
            .map_err(|e| CliError::Input(format!("cannot write {}: {e}", path.display())))?;
        #[cfg(unix)]
        if name == "key.pem" {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
        }
    }
    Ok(Some(format!("bundle written to {}", dir.display())))
}

/// Renders rows of JSON objects as an aligned table of `columns`.
#[must_use]
pub fn table(rows: &[Value], columns: &[&str]) -> String {
    let cell = |v: &Value| match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(&r[*c])).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |vals: Vec<String>, out: &mut String| {
        let parts: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(columns.iter().map(|c| c.to_uppercase()).collect(), &mut out);
    for r in cells {
        line(r, &mut out);
    }
    out
}

pub(crate) fn show(json_out: bool, value: &Value, columns: &[&str]) -> String {
    if json_out {
        return serde_json::to_string_pretty(value).unwrap_or_default();
    }
    match value {
        Value::Array(rows) => table(rows, columns),
        Value::Object(map) => {
            let shown: BTreeMap<&String, String> = map
                .iter()
                .filter(|(k, _)| k.as_str() != "bundle")
                .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
                .collect();
            let w = shown.keys().map(|k| k.len()).max().unwrap_or(0);
            shown
                .iter()
                .map(|(k, v)| format!("{k:<w$}  {v}\n"))
                .collect()
        }
        other => other.to_string(),
    }
}

const TENANT_COLS: &[&str] = &["slug", "name", "id", "is_platform"];
const SYNC_COLS: &[&str] = &[
    "name",
    "component_id",
    "service_type",
    "status",
    "last_heartbeat_at",
    "id",
];
const SOURCE_COLS: &[&str] = &[
    "name",
    "source_type",
    "enabled",
    "endpoint",
    "discovery_interval",
    "last_sync_result",
    "id",
];

/// Runs a command and returns what to print.
///
/// # Errors
/// [`CliError`] for a missing token, unreachable API, API errors or bad local input.
pub async fn run(cli: Cli) -> Result<String> {
    let base = match &cli.command {
        Command::Sweep(_) => cli.sweepgen_url.clone(),
        _ => cli.identity_url.clone(),
    };
    let api = Api {
        http: reqwest::Client::new(),
        base,
        token: token(&cli)?,
    };
    let j = cli.json;
    use reqwest::Method as M;
    Ok(match &cli.command {
        Command::Platform => show(j, &api.send(M::GET, "/platform", None).await?, &[]),
        Command::Tenants(TenantCmd::List) => {
            show(j, &api.send(M::GET, "/tenants", None).await?, TENANT_COLS)
        }
        Command::Tenants(TenantCmd::Create { slug, name }) => show(
            j,
            &api.send(
                M::POST,
                "/tenants",
                Some(json!({ "slug": slug, "name": name })),
            )
            .await?,
            TENANT_COLS,
        ),
        Command::SyncServices(SyncCmd::List { tenant }) => show(
            j,
            &api.send(M::GET, &format!("/tenants/{tenant}/sync-services"), None)
                .await?,
            SYNC_COLS,
        ),
        Command::SyncServices(SyncCmd::Onboard {
            tenant,
            name,
            component_id,
            partition,
            out,
        }) => {
            let body =
                json!({ "name": name, "component_id": component_id, "partition": partition });
            let resp = api
                .send(
                    M::POST,
                    &format!("/tenants/{tenant}/sync-services"),
                    Some(body),
                )
                .await?;
            let note = write_bundle(&resp, out, "sync.json")?;
            with_note(show(j, &resp, SYNC_COLS), note)
        }
        Command::Agents(AgentCmd::Enroll {
            tenant,
            component_id,
            partition,
            out,
        }) => {
            let body = json!({ "component_id": component_id, "partition": partition });
            let resp = api
                .send(M::POST, &format!("/tenants/{tenant}/agents"), Some(body))
                .await?;
            let note = write_bundle(&resp, out, "agent.json")?;
            with_note(show(j, &resp, &[]), note)
        }
        Command::Sources(cmd) => sources(&api, j, cmd).await?,
        Command::Devices(cmd) => {
            let dire = Api {
                base: cli.dire_url.clone(),
                ..api
            };
            devices::run(&dire, j, cmd).await?
        }
        Command::Events(cmd) => {
            let api = Api {
                base: cli.events_url.clone(),
                ..api
            };
            events::run(&api, j, cmd).await?
        }
        Command::Sweep(cmd) => sweep::run(&api, j, cmd).await?,
    })
}

fn with_note(text: String, note: Option<String>) -> String {
    match note {
        Some(n) => format!("{text}{n}\n"),
        None => text,
    }
}

async fn sources(api: &Api, j: bool, cmd: &SourceCmd) -> Result<String> {
    use reqwest::Method as M;
    let base = |t: &str| format!("/tenants/{t}/integration-sources");
    Ok(match cmd {
        SourceCmd::List { tenant } => show(
            j,
            &api.send(M::GET, &base(tenant), None).await?,
            SOURCE_COLS,
        ),
        SourceCmd::Get { tenant, id } => show(
            j,
            &api.send(M::GET, &format!("{}/{id}", base(tenant)), None)
                .await?,
            &[],
        ),
        SourceCmd::Create { tenant, file, set } => show(
            j,
            &api.send(M::POST, &base(tenant), Some(body_from(file.as_ref(), set)?))
                .await?,
            &[],
        ),
        SourceCmd::Update {
            tenant,
            id,
            file,
            set,
        } => show(
            j,
            &api.send(
                M::PATCH,
                &format!("{}/{id}", base(tenant)),
                Some(body_from(file.as_ref(), set)?),
            )
            .await?,
            &[],
        ),
        SourceCmd::Enable { tenant, id } => show(
            j,
            &api.send(
                M::PATCH,
                &format!("{}/{id}", base(tenant)),
                Some(json!({ "enabled": true })),
            )
            .await?,
            &[],
        ),
        SourceCmd::Disable { tenant, id } => show(
            j,
            &api.send(
                M::PATCH,
                &format!("{}/{id}", base(tenant)),
                Some(json!({ "enabled": false })),
            )
            .await?,
            &[],
        ),
        SourceCmd::Delete { tenant, id } => {
            api.send(M::DELETE, &format!("{}/{id}", base(tenant)), None)
                .await?;
            format!("deleted {id}\n")
        }
    })
}
