//! Sync tests: a real identity service and a real gateway in-process (real Postgres and NATS),
//! local Armis and NetBox servers as strict as the real APIs, and the sync on a manual timer so
//! interval tests move time instead of sleeping.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default,
    missing_docs
)]

mod armis;
mod chunks;
mod common;
mod fakes;
mod netbox;
mod runtime;
mod scheduling;
mod tenancy;
