//! `sr-faker`: the Armis API emulator binary.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match sr_faker::cli::Args::parse().load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sr-faker: {e}");
            return std::process::ExitCode::from(64);
        }
    };
    let _telemetry = match sr_runtime::telemetry::init("sr-faker", &config.telemetry) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("sr-faker: {e}");
            return std::process::ExitCode::from(64);
        }
    };
    let result = match sr_faker::Faker::build(config).await {
        Ok(faker) => {
            faker
                .run_until(sr_runtime::shutdown::token_on_signal())
                .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "Faker failed");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}
