//! Sweepgen service tests against a real Postgres and a real NATS with JetStream (and, for the
//! whole path, real identity and gateway services with real certificates).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default,
    clippy::panic,
    missing_docs
)]

mod api;
mod common;
mod configs;
mod gateway;
mod parts;
mod replicas;
