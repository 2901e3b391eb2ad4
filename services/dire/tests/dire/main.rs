//! DIRE tests against a real Postgres and a real NATS with JetStream. Tests publish JSON arrays
//! of DeviceUpdate straight to JetStream, as the gateway does.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default,
    missing_docs
)]

mod ahead;
mod api;
mod churn;
mod common;
mod consumer;
mod faker;
mod migrations;
mod rules;
mod settled;
