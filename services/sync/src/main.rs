//! `sr-sync`: polls integration sources and streams their devices to the gateway.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// ServiceRadar sync: runs the integration sources assigned to this sync service.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML config file (layered over defaults, under SR_SYNC__* env vars).
    #[arg(long, env = "SR_SYNC_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    let config = match sr_runtime::config::load_from_process("sync", args.config.as_deref())
        .and_then(|c: sr_sync::Config| c.validate().map(|()| c))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sr-sync: {e}");
            return ExitCode::from(64);
        }
    };
    let Ok(_telemetry) = sr_runtime::telemetry::init("sr-sync", &config.telemetry)
        .inspect_err(|e| eprintln!("sr-sync: {e}"))
    else {
        return ExitCode::from(64);
    };
    let result = match sr_sync::App::build(config).await {
        Ok(app) => app
            .run_until(sr_runtime::shutdown::token_on_signal())
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    result.map_or_else(
        |e| {
            tracing::error!(error = %e, "Sync failed");
            ExitCode::FAILURE
        },
        |()| ExitCode::SUCCESS,
    )
}
