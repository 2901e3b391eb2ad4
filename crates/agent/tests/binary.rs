//! The `sr-agent` binary itself (this test also makes the workspace test build produce it,
//! which `scripts/dev` run from the end-to-end tests relies on).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

#[test]
fn the_binary_exits_64_naming_a_missing_bootstrap_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("agent.json");
    let out = Command::new(env!("CARGO_BIN_EXE_sr-agent"))
        .arg("--bootstrap")
        .arg(&missing)
        .arg("--once")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .expect("sr-agent runs");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(missing.to_str().unwrap()),
        "names the file: {stderr}"
    );
    assert!(!dir.path().join("sweep.json").exists());
}

#[test]
fn version_and_help_describe_the_client() {
    let out = Command::new(env!("CARGO_BIN_EXE_sr-agent"))
        .arg("--help")
        .output()
        .expect("sr-agent runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--bootstrap", "--sweep-file", "--once"] {
        assert!(help.contains(flag), "{flag} in {help}");
    }
}
