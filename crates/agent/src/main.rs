//! `sr-agent`: the agent config client binary.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Exactly one TLS provider is compiled in; installing it makes that explicit.
    let _ = rustls::crypto::ring::default_provider().install_default();
    sr_agent::cli::run(sr_agent::cli::Args::parse()).await
}
