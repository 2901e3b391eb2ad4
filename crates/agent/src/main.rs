//! `sr-agent`: the agent config client binary.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;

/// ServiceRadar agent config client: fetches this agent's sweep config from the gateway and
/// writes it to sweep.json.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Bootstrap file of the enrollment bundle (agent.json); certificate paths in it are
    /// relative to its directory.
    #[arg(long, env = "SR_AGENT_BOOTSTRAP", default_value = "agent.json")]
    bootstrap: PathBuf,
    /// Where to write the sweep config (default: sweep.json beside the bootstrap file).
    #[arg(long, env = "SR_AGENT_SWEEP_FILE")]
    sweep_file: Option<PathBuf>,
    /// Poll GetConfig this often instead of the gateway's config_poll_interval_sec.
    #[arg(long, env = "SR_AGENT_POLL_INTERVAL_SECS")]
    poll_interval_secs: Option<u64>,
    /// Longest wait between reconnect attempts.
    #[arg(long, env = "SR_AGENT_MAX_BACKOFF_SECS", default_value_t = 60)]
    max_backoff_secs: u64,
    /// Label announced in Hello (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// Poll once and exit (0 when the gateway answered, 1 otherwise).
    #[arg(long)]
    once: bool,
    /// Log filter (RUST_LOG syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
    /// Log format: text or json.
    #[arg(long, env = "SR_AGENT_LOG_FORMAT", default_value = "text")]
    log_format: String,
}

fn init_logs(filter: &str, format: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| format!("invalid log filter {filter:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "text" => builder.try_init(),
        "json" => builder.json().try_init(),
        other => return Err(format!("invalid log format {other:?}: use text or json")),
    }
    .map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Exactly one TLS provider is compiled in; installing it makes that explicit.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    if let Err(e) = init_logs(&args.log, &args.log_format) {
        eprintln!("sr-agent: {e}");
        return std::process::ExitCode::from(64);
    }
    let mut labels = BTreeMap::new();
    for pair in &args.labels {
        let Some((k, v)) = pair.split_once('=') else {
            eprintln!("sr-agent: --label {pair:?}: expected KEY=VALUE");
            return std::process::ExitCode::from(64);
        };
        labels.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    let mut opts = sr_agent::AgentOptions::new(&args.bootstrap);
    opts.sweep_file = args.sweep_file;
    opts.poll_interval = args.poll_interval_secs.map(Duration::from_secs);
    opts.max_backoff = Duration::from_secs(args.max_backoff_secs.max(1));
    opts.labels = labels;
    let mut agent = match sr_agent::Agent::new(opts) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sr-agent: {e}");
            return std::process::ExitCode::from(64);
        }
    };
    tracing::info!(agent_id = agent.agent_id(), sweep_file = %agent.sweep_path().display(), "Agent config client starting");
    if args.once {
        return match agent.poll_once().await {
            Ok(outcome) if outcome.answered() => {
                println!("{outcome:?}");
                std::process::ExitCode::SUCCESS
            }
            Ok(outcome) => {
                eprintln!("sr-agent: {outcome:?}");
                std::process::ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("sr-agent: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let token = CancellationToken::new();
    let stop = token.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    #[cfg(unix)]
    {
        let stop = token.clone();
        if let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::spawn(async move {
                term.recv().await;
                stop.cancel();
            });
        }
    }
    agent.run(token).await;
    tracing::info!("Agent config client stopped");
    std::process::ExitCode::SUCCESS
}
