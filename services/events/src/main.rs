//! `sr-events`: the OCSF event store binary.

use std::path::PathBuf;

use clap::Parser;

/// ServiceRadar events service: stores OCSF events from SR_EVENTS and serves them.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML config file (layered over defaults, under SR_EVENTS__* env vars).
    #[arg(long, env = "SR_EVENTS_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let config: sr_events::Config =
        match sr_runtime::config::load_from_process("events", args.config.as_deref())
            .and_then(|c: sr_events::Config| c.validate().map(|()| c))
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("sr-events: {e}");
                return std::process::ExitCode::from(64);
            }
        };
    let _telemetry = match sr_runtime::telemetry::init("sr-events", &config.telemetry) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("sr-events: {e}");
            return std::process::ExitCode::from(64);
        }
    };
    let app = match sr_events::App::build(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "Events service failed to start");
            return std::process::ExitCode::FAILURE;
        }
    };
    match app.run_until(sr_runtime::shutdown::token_on_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "Events service failed");
            std::process::ExitCode::FAILURE
        }
    }
}
