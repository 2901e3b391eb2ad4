//! `sr-identity`: the control plane binary.

use std::path::PathBuf;

use clap::Parser;

/// ServiceRadar identity service: bootstrap, CA, tenants, sync services, integration sources.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML config file (layered over defaults, under SR_IDENTITY__* env vars).
    #[arg(long, env = "SR_IDENTITY_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let config: sr_identity::Config =
        match sr_runtime::config::load_from_process("identity", args.config.as_deref())
            .and_then(|c: sr_identity::Config| c.validate().map(|()| c))
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("sr-identity: {e}");
                return std::process::ExitCode::from(64);
            }
        };
    let _telemetry = match sr_runtime::telemetry::init("sr-identity", &config.telemetry) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("sr-identity: {e}");
            return std::process::ExitCode::from(64);
        }
    };
    let app = match sr_identity::App::build(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "Identity service failed to start");
            return std::process::ExitCode::FAILURE;
        }
    };
    match app.run_until(sr_runtime::shutdown::token_on_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "Identity service failed");
            std::process::ExitCode::FAILURE
        }
    }
}
