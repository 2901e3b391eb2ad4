//! `scripts/dev` itself, end to end: the debug binaries of this build, a small faker, a state
//! directory, database, NATS prefix and ports of its own, and the summary it prints.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sr_testkit::TestNats;

const DEVICES: u64 = 300;
const BINARIES: [&str; 9] = [
    "sr-identity",
    "sr-gateway",
    "sr-dire",
    "sr-sweepgen",
    "sr-events",
    "sr-faker",
    "sr-sync",
    "sr-agent",
    "srctl",
];
/// Ports the script uses from its base: seven HTTP ports and the gateway's gRPC port.
const PORTS: u16 = 8;

/// `target/debug` of this build: the test binary lives in `target/debug/deps`.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let missing: Vec<&str> = BINARIES
        .iter()
        .copied()
        .filter(|b| !dir.join(b).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "binaries missing from {}: {missing:?} (build the workspace's tests first)",
        dir.display()
    );
    dir
}

fn free(base: u16) -> bool {
    (base..base + PORTS).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok())
}

/// A run of free ports chosen by this test's NATS prefix, between the usual service ports
/// and the kernel's ephemeral range (32768 and up), so port-0 listeners never take them.
fn port_base(seed: &str) -> u16 {
    let start = seed
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31) ^ u32::from(b));
    (0..200u32)
        .map(|k| 20_000 + (start.wrapping_add(k * 97) % 1_270) as u16 * 10)
        .find(|b| free(*b))
        .expect("a free port range")
}

/// A database of its own, dropped at the end.
struct DevDb {
    name: String,
}

impl DevDb {
    /// Creates the database as another state directory would have left it (a table of its
    /// own stands for rows sealed with that directory's key).
    async fn create_stale(&self) {
        on_server(format!("CREATE DATABASE \"{}\"", self.name)).await;
        let pool = sqlx::PgPool::connect(&self.url()).await.unwrap();
        sqlx::query("CREATE TABLE left_by_another_state_dir (id int)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }

    /// True while the table `create_stale` made exists.
    async fn is_stale(&self) -> bool {
        let pool = sqlx::PgPool::connect(&self.url()).await.unwrap();
        let (found,): (bool,) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE tablename = 'left_by_another_state_dir')",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        pool.close().await;
        found
    }

    fn url(&self) -> String {
        let base = sr_testkit::database_url();
        let server = base.rsplit_once('/').map_or(base.as_str(), |(s, _)| s);
        format!("{server}/{}", self.name)
    }

    async fn drop_now(&self) {
        on_server(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ))
        .await;
    }
}

/// Runs a statement on the server's own database (`DATABASE_URL`).
async fn on_server(sql: String) {
    let pool = sqlx::PgPool::connect(&sr_testkit::database_url())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

fn line<'a>(summary: &'a str, label: &str) -> &'a str {
    summary
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{summary}"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test]
async fn scripts_dev_runs_the_pipeline_on_debug_binaries_and_prints_a_complete_summary() {
    let bin = bin_dir();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/dev");
    let nats = TestNats::new();
    let prefix = nats.config.subject_prefix.clone();
    let db = DevDb {
        name: format!("sr_dev_{prefix}"),
    };
    // A database left by another state directory: this fresh one has no key for it, so the
    // script must drop it and start again.
    db.create_stale().await;
    let state = tempfile::tempdir().unwrap();
    let base = port_base(&prefix);
    let out_path = state.path().join("stdout");
    let err_path = state.path().join("stderr");

    let mut child = {
        use std::os::unix::process::CommandExt as _;
        Command::new("bash")
            .arg(&script)
            .env("SR_DEV_BIN_DIR", &bin)
            .env("SR_DEV_DIR", state.path().join("dev"))
            .env("SR_DEV_DATABASE", &db.name)
            .env("SR_DEV_NATS_PREFIX", &prefix)
            .env("SR_DEV_PORT_BASE", base.to_string())
            .env("SR_DEV_DEVICES", DEVICES.to_string())
            .env("SR_DEV_CHURN_SECS", "0")
            .env("SR_DEV_SUMMARY_ONLY", "1")
            .env("DATABASE_URL", sr_testkit::database_url())
            .env("NATS_URL", sr_testkit::nats_url())
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&err_path).unwrap())
            // Its own process group: a stuck run is stopped with every service it started.
            .process_group(0)
            .spawn()
            .expect("bash runs scripts/dev")
    };
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            // SIGTERM to the group: the script's trap stops the services.
            let _ = Command::new("kill")
                .args(["-TERM", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stdout = read(&out_path);
    let stderr = read(&err_path);
    let stale_left = db.is_stale().await;
    db.drop_now().await;
    let status = status.unwrap_or_else(|| {
        panic!("scripts/dev did not finish\nstdout:\n{stdout}\nstderr:\n{stderr}")
    });
    assert!(
        status.success(),
        "scripts/dev failed ({status})\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    assert!(
        stdout.contains(&format!(
            "database {} was made with another state directory",
            db.name
        )),
        "{stdout}"
    );
    assert!(
        !stale_left,
        "the database left by another state directory was recreated"
    );
    // It used the given binaries, and no build ran.
    assert!(
        stdout.contains(&format!("using the binaries in {}", bin.display())),
        "{stdout}"
    );
    assert!(!state.path().join("dev/logs/build.log").exists());
    // The summary: every faker device reconciled, the agent's sweep config complete, events.
    let devices = line(&stdout, "devices in the demo tenant");
    assert!(
        devices.starts_with(&format!("{DEVICES} (faker serves {DEVICES},")),
        "{devices}"
    );
    let sweep = line(&stdout, "sweep config of demo-agent");
    assert!(
        sweep.contains(&format!(", {DEVICES} targets, version ")),
        "{sweep}"
    );
    // The agent fetched that same config through the gateway and wrote it to its sweep file.
    let version = sweep.rsplit("version ").next().unwrap().trim().to_owned();
    let file = line(&stdout, "agent sweep file");
    assert!(
        file.ends_with(&format!("({DEVICES} targets, version {version})")),
        "{file} (config version {version})"
    );
    let events: u64 = line(&stdout, "events stored (demo tenant)")
        .parse()
        .unwrap();
    assert!(events >= 1, "the source's creation at least");
    assert_eq!(
        line(&stdout, "gateway (mTLS gRPC)"),
        format!("127.0.0.1:{}", base + 7)
    );
    assert!(stdout.contains("Summary only: stopping."), "{stdout}");
    // Its state stayed in the given directory, and every service is gone.
    for f in [
        "dev/bootstrap/admin-token",
        "dev/agent/agent.json",
        "dev/logs/dire.log",
    ] {
        assert!(state.path().join(f).is_file(), "{f}");
    }
    assert!(free(base), "every port is released after the run");
    let logs = read(&state.path().join("dev/logs/dire.log"));
    assert!(!logs.is_empty());
}
