//! Runtime glue every service shares: layered configuration, telemetry (tracing and OTLP
//! export), shutdown signals, the Postgres pool with per-service schema and embedded
//! migrations, NATS/JetStream setup, the ops HTTP server (`/healthz`, `/readyz`,
//! `/metrics`) and a clock that tests can control.
//!
//! It holds no domain logic; services decide what to do, this crate only connects them to
//! the world. Only [`config::load_from_process`] reads the process environment.

pub mod clock;
pub mod config;
pub mod db;
pub mod jetstream;
pub mod ops;
pub mod rpc;
pub mod shutdown;
pub mod telemetry;

pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use ops::{OpsServer, Readiness};
