//! Gateway tests: a real identity service and a real gateway in-process, real Postgres and
//! NATS, client certificates issued by identity's CA (and hostile ones made by hand).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default,
    missing_docs
)]

mod common;
mod mtls;
mod rpcs;
mod streams;
mod tracing;
