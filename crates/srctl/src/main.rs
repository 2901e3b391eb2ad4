//! `srctl` binary.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match srctl::run(srctl::Cli::parse()).await {
        Ok(out) => {
            use std::io::Write as _;
            // A closed pipe (`srctl … | head`) is not an error worth a panic.
            let _ = std::io::stdout().write_all(out.as_bytes());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("srctl: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
