//! Events service tests against a real Postgres and a real NATS with JetStream.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default,
    clippy::type_complexity,
    missing_docs
)]

mod api;
mod common;
mod consume;
mod retention;
