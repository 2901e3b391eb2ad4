//! `sr-gateway`: the mTLS gRPC edge.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// ServiceRadar gateway: authenticates agents and sync services, publishes their results.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML config file (layered over defaults, under SR_GATEWAY__* env vars).
    #[arg(long, env = "SR_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let loaded = sr_runtime::config::load_from_process("gateway", args.config.as_deref())
        .and_then(|c: sr_gateway::Config| c.validate().map(|()| c));
    let config = match loaded {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sr-gateway: {e}");
            return ExitCode::from(64);
        }
    };
    let Ok(_telemetry) = sr_runtime::telemetry::init("sr-gateway", &config.telemetry)
        .inspect_err(|e| eprintln!("sr-gateway: {e}"))
    else {
        return ExitCode::from(64);
    };
    let result = match sr_gateway::App::build(config).await {
        Ok(app) => app
            .run_until(sr_runtime::shutdown::token_on_signal())
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    result.map_or_else(
        |e| {
            tracing::error!(error = %e, "Gateway failed");
            ExitCode::FAILURE
        },
        |()| ExitCode::SUCCESS,
    )
}
