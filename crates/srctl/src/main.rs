//! `srctl` binary.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match srctl::run(srctl::Cli::parse()).await {
        Ok(out) => {
            print!("{out}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("srctl: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
