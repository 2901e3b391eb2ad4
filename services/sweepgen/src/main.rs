//! `sr-sweepgen`: the sweep config service binary.

use std::path::PathBuf;

use clap::Parser;

/// ServiceRadar sweepgen: per-agent sweep configs from the canonical inventory.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML config file (layered over defaults, under SR_SWEEPGEN__* env vars).
    #[arg(long, env = "SR_SWEEPGEN_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let config: sr_sweepgen::Config =
        match sr_runtime::config::load_from_process("sweepgen", args.config.as_deref())
            .and_then(|c: sr_sweepgen::Config| c.validate().map(|()| c))
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("sr-sweepgen: {e}");
                return std::process::ExitCode::from(64);
            }
        };
    let _telemetry = match sr_runtime::telemetry::init("sr-sweepgen", &config.telemetry) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("sr-sweepgen: {e}");
            return std::process::ExitCode::from(64);
        }
    };
    let app = match sr_sweepgen::App::build(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "Sweepgen service failed to start");
            return std::process::ExitCode::FAILURE;
        }
    };
    match app.run_until(sr_runtime::shutdown::token_on_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "Sweepgen service failed");
            std::process::ExitCode::FAILURE
        }
    }
}
