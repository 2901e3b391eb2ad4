//! The `sr-agent` command line: flags, logging, and the poll loop until a signal.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::{Agent, AgentOptions};

/// ServiceRadar agent config client: fetches this agent's sweep config from the gateway and
/// writes it to sweep.json.
#[derive(Debug, Parser)]
#[command(name = "sr-agent", version)]
pub struct Args {
    /// Bootstrap file of the enrollment bundle (agent.json); certificate paths in it are
    /// relative to its directory.
    #[arg(long, env = "SR_AGENT_BOOTSTRAP", default_value = "agent.json")]
    pub bootstrap: PathBuf,
    /// Where to write the sweep config (default: sweep.json beside the bootstrap file).
    #[arg(long, env = "SR_AGENT_SWEEP_FILE")]
    pub sweep_file: Option<PathBuf>,
    /// Poll GetConfig this often instead of the gateway's config_poll_interval_sec.
    #[arg(long, env = "SR_AGENT_POLL_INTERVAL_SECS")]
    pub poll_interval_secs: Option<u64>,
    /// Longest wait between reconnect attempts.
    #[arg(long, env = "SR_AGENT_MAX_BACKOFF_SECS", default_value_t = 60)]
    pub max_backoff_secs: u64,
    /// Label announced in Hello (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Poll once and exit (0 when the gateway answered, 1 otherwise).
    #[arg(long)]
    pub once: bool,
    /// Log filter (RUST_LOG syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log: String,
    /// Log format: text or json.
    #[arg(long, env = "SR_AGENT_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}

fn init_logs(filter: &str, format: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| format!("invalid log filter {filter:?}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A subscriber already installed (an embedding program, tests) is fine.
    let _ = match format {
        "text" => builder.try_init(),
        "json" => builder.json().try_init(),
        other => return Err(format!("invalid log format {other:?}: use text or json")),
    };
    Ok(())
}

/// Runs the agent as the command line says; returns the process exit code.
pub async fn run(args: Args) -> ExitCode {
    if let Err(e) = init_logs(&args.log, &args.log_format) {
        eprintln!("sr-agent: {e}");
        return ExitCode::from(64);
    }
    let mut labels = BTreeMap::new();
    for pair in &args.labels {
        let Some((k, v)) = pair.split_once('=') else {
            eprintln!("sr-agent: --label {pair:?}: expected KEY=VALUE");
            return ExitCode::from(64);
        };
        labels.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    let mut opts = AgentOptions::new(&args.bootstrap);
    opts.sweep_file = args.sweep_file;
    opts.poll_interval = args.poll_interval_secs.map(Duration::from_secs);
    opts.max_backoff = Duration::from_secs(args.max_backoff_secs.max(1));
    opts.labels = labels;
    let mut agent = match Agent::new(opts) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("sr-agent: {e}");
            return ExitCode::from(64);
        }
    };
    tracing::info!(agent_id = agent.agent_id(), sweep_file = %agent.sweep_path().display(), "Agent config client starting");
    if args.once {
        return match agent.poll_once().await {
            Ok(outcome) if outcome.answered() => {
                println!("{outcome:?}");
                ExitCode::SUCCESS
            }
            Ok(outcome) => {
                eprintln!("sr-agent: {outcome:?}");
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("sr-agent: {e}");
                ExitCode::FAILURE
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
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flags_parse_with_their_defaults() {
        let a = Args::try_parse_from([
            "sr-agent",
            "--bootstrap",
            "/etc/sr/agent.json",
            "--label",
            "site=lab",
            "--once",
        ])
        .unwrap();
        assert_eq!(a.bootstrap, PathBuf::from("/etc/sr/agent.json"));
        assert_eq!(a.labels, ["site=lab"]);
        assert!(a.once && a.sweep_file.is_none() && a.poll_interval_secs.is_none());
        assert_eq!(a.max_backoff_secs, 60);
    }

    #[tokio::test]
    async fn an_unusable_bundle_or_label_exits_64() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("agent.json");
        let missing = missing.to_str().unwrap();
        let code = run(Args::try_parse_from(["sr-agent", "--bootstrap", missing]).unwrap()).await;
        assert_eq!(format!("{code:?}"), format!("{:?}", ExitCode::from(64)));
        let code =
            run(
                Args::try_parse_from(["sr-agent", "--bootstrap", missing, "--label", "nokey"])
                    .unwrap(),
            )
            .await;
        assert_eq!(format!("{code:?}"), format!("{:?}", ExitCode::from(64)));
    }
}
