use std::sync::Arc;
use std::time::Duration;

use sr_testkit::{TestDb, TestNats};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const EVENTS_TOKEN: &str = "e2e-events-token";

/// One NATS prefix shared by every service of a test, and a schema per service.
pub struct Stack {
    pub nats: TestNats,
    pub identity_db: TestDb,
    pub events_db: TestDb,
    pub dir: tempfile::TempDir,
}

/// A running service and how to stop it.
pub struct Running<E> {
    pub base: String,
    shutdown: CancellationToken,
    handle: JoinHandle<Result<(), E>>,
}

impl<E: std::fmt::Debug> Running<E> {
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.handle)
            .await
            .expect("service stops in time")
            .expect("service task")
            .expect("service ran cleanly");
    }
}

impl Stack {
    pub fn new() -> Self {
        Self {
            nats: TestNats::new(),
            identity_db: TestDb::new("identity"),
            events_db: TestDb::new("events"),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub async fn identity(
        &self,
    ) -> (
        Running<sr_identity::Error>,
        Arc<sr_identity::Control>,
        String,
    ) {
        let mut c = sr_identity::Config::default();
        c.database = self.identity_db.config.clone();
        c.nats = self.nats.config.clone();
        c.http.listen = "127.0.0.1:0".parse().unwrap();
        c.bootstrap.output_dir = self.dir.path().to_path_buf();
        c.secrets.dev_mode = true;
        let app = sr_identity::App::build_with_clock(c, Arc::new(sr_runtime::SystemClock))
            .await
            .expect("identity starts");
        let base = format!("http://{}", app.http_addr());
        let control = app.control();
        let token = std::fs::read_to_string(self.dir.path().join("admin-token")).unwrap();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run_until(shutdown.clone()));
        (
            Running {
                base,
                shutdown,
                handle,
            },
            control,
            token,
        )
    }

    pub async fn events(&self) -> Running<sr_events::Error> {
        let mut c = sr_events::Config::default();
        c.database = self.events_db.config.clone();
        c.nats = self.nats.config.clone();
        c.http.listen = "127.0.0.1:0".parse().unwrap();
        c.api.token = EVENTS_TOKEN.to_owned();
        let app = sr_events::App::build(c).await.expect("events starts");
        let base = format!("http://{}", app.http_addr());
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(app.run_until(shutdown.clone()));
        Running {
            base,
            shutdown,
            handle,
        }
    }
}
