//! Test helpers shared by every service's tests: a fresh Postgres schema and a fresh NATS
//! subject/stream prefix per test (so tests run in parallel against one real server and
//! leave nothing behind), and a bounded `eventually` instead of sleeps.
//!
//! Tests need a real Postgres and a real NATS with JetStream: `DATABASE_URL` / `NATS_URL`,
//! or the defaults on 127.0.0.1. When they are missing the helpers panic with a clear
//! message; a test never passes silently without them.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod otlp;

use std::future::Future;
use std::time::Duration;

use sr_runtime::db::DatabaseConfig;
use sr_runtime::jetstream::NatsConfig;

/// `DATABASE_URL`, or the local default.
#[must_use]
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `NATS_URL`, or the local default.
#[must_use]
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

fn on_own_runtime<F: Future<Output = ()> + Send + 'static>(f: F) {
    // Drop can run inside a tokio runtime, which cannot block; a thread with its own
    // runtime can.
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(f);
        }
    })
    .join();
}

/// A schema of its own for one test, dropped (with everything in it) when this is dropped.
pub struct TestDb {
    /// Config pointing at the schema; hand it to the service under test.
    pub config: DatabaseConfig,
}

impl TestDb {
    /// A new unique schema name for `service` (created by the service's own migrations).
    #[must_use]
    pub fn new(service: &str) -> Self {
        let mut config = DatabaseConfig::for_schema(&format!("t_{service}_{}", short_id()));
        config.url = database_url();
        config.max_connections = 4;
        Self { config }
    }

    /// A pool on the test schema for assertions.
    pub async fn pool(&self) -> sqlx::PgPool {
        use sqlx::ConnectOptions as _;
        let opts: sqlx::postgres::PgConnectOptions = self.config.url.parse().expect("DATABASE_URL");
        let opts = opts
            .options([("search_path", self.config.schema.as_str())])
            .log_statements(tracing::log::LevelFilter::Trace);
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_with(opts)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "Postgres is not reachable at {}: {e}. Start it or set DATABASE_URL.",
                    self.config.url
                )
            })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let url = self.config.url.clone();
        let schema = self.config.schema.clone();
        on_own_runtime(async move {
            if let Ok(pool) = sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(&url)
                .await
            {
                // A service a test dropped without stopping it may still hold a transaction on
                // the schema's tables (its tasks cannot run while this drop blocks the test's
                // runtime): such sessions are ended first, and the drop never waits long.
                let _ = sqlx::query("SET lock_timeout = '2s'").execute(&pool).await;
                let mut last = None;
                for _ in 0..3 {
                    let _ = sqlx::query(
                        "SELECT pg_terminate_backend(pid) FROM (
                           SELECT DISTINCT l.pid FROM pg_locks l
                             JOIN pg_class c ON c.oid = l.relation
                             JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE n.nspname = $1 AND l.pid <> pg_backend_pid()) AS holders",
                    )
                    .bind(&schema)
                    .execute(&pool)
                    .await;
                    match sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"
                    )))
                    .execute(&pool)
                    .await
                    {
                        Ok(_) => {
                            last = None;
                            break;
                        }
                        Err(e) => last = Some(e),
                    }
                }
                if let Some(e) = last {
                    eprintln!("test schema {schema} was not dropped: {e}");
                }
                pool.close().await;
            }
        });
    }
}

/// A subject/stream prefix of its own for one test; its streams are deleted on drop.
pub struct TestNats {
    /// Config with the unique prefix; hand it to the service under test.
    pub config: NatsConfig,
}

impl Default for TestNats {
    fn default() -> Self {
        Self::new()
    }
}

impl TestNats {
    /// A new unique prefix.
    #[must_use]
    pub fn new() -> Self {
        let config = NatsConfig {
            url: nats_url(),
            subject_prefix: format!("t{}", short_id()),
            duplicate_window_secs: 120,
            ..NatsConfig::default()
        };
        Self { config }
    }

    /// A connected client for assertions.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(&self.config.url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "NATS is not reachable at {}: {e}. Start nats-server -js or set NATS_URL.",
                    self.config.url
                )
            })
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        let url = self.config.url.clone();
        let subjects = self.config.subjects();
        on_own_runtime(async move {
            if let Ok(client) = async_nats::connect(&url).await {
                let js = async_nats::jetstream::new(client);
                for name in [
                    subjects.devices_stream(),
                    subjects.inventory_stream(),
                    subjects.events_stream(),
                ] {
                    let _ = js.delete_stream(&name).await;
                }
            }
        });
    }
}

/// Polls `check` until it returns `Some`, for at most `timeout`.
///
/// # Panics
/// When the timeout passes, naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut wait = Duration::from_millis(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(200));
    }
}

/// Reads every message currently in `stream` whose subject matches `filter`, without
/// consuming them for anyone else (an ephemeral ordered read from the start).
pub async fn stream_messages(
    client: &async_nats::Client,
    stream: &str,
    filter: &str,
) -> Vec<async_nats::jetstream::Message> {
    use futures::StreamExt as _;
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream(stream).await.expect("stream exists");
    let info = stream.get_info().await.expect("stream info");
    let total = info.state.messages;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            filter_subject: filter.to_owned(),
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .expect("ephemeral consumer");
    let pending = consumer.cached_info().num_pending;
    let mut out = Vec::new();
    if pending == 0 || total == 0 {
        return out;
    }
    // Small pulls: with no acks, a message the client drops (a large pull of megabyte messages
    // overruns it) is gone, so never ask for more than a few at once.
    while (out.len() as u64) < pending {
        let want = usize::try_from(pending - out.len() as u64)
            .unwrap_or(usize::MAX)
            .min(16);
        let mut batch = consumer
            .fetch()
            .max_messages(want)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .expect("fetch");
        let before = out.len();
        while let Some(m) = batch.next().await {
            out.push(m.expect("message"));
            if out.len() as u64 >= pending {
                break;
            }
        }
        if out.len() == before {
            break;
        }
    }
    out
}
