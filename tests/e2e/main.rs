//! Cross-service flows against a real Postgres and a real NATS with JetStream.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default,
    missing_docs
)]

mod churn;
mod common;
mod compose;
mod config_reference;
mod full_flow;
mod identity_events;
mod main_job;
mod restart;
mod tracing;
mod two_tenants;
