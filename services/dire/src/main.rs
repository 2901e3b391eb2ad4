//! `sr-dire`: the device identity reconciliation binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// mimalloc: DIRE allocates and frees many small strings per update, and frees them on
/// another thread than it allocated them on; glibc's allocator spent a third of DIRE's time.
/// The v2 line (workspace feature `v2`) returns freed pages to the system after 10 ms; v3's
/// one-second delay held the ingest benchmark 17 to 36 MiB higher (runs of 200 000 devices).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// ServiceRadar DIRE: canonical device inventory from JetStream device updates.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML config file (layered over defaults, under SR_DIRE__* env vars).
    #[arg(long, env = "SR_DIRE_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config: sr_dire::Config =
        match sr_runtime::config::load_from_process("dire", args.config.as_deref())
            .and_then(|c: sr_dire::Config| c.validate().map(|()| c))
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("sr-dire: {e}");
                return ExitCode::from(64);
            }
        };
    let _telemetry = match sr_runtime::telemetry::init("sr-dire", &config.telemetry) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("sr-dire: {e}");
            return ExitCode::from(64);
        }
    };
    let app = match sr_dire::App::build(config).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!(error = %e, "DIRE failed to start");
            return ExitCode::FAILURE;
        }
    };
    match app.run_until(sr_runtime::shutdown::token_on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "DIRE failed");
            ExitCode::FAILURE
        }
    }
}
