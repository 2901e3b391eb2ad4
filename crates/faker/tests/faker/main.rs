//! Faker tests: real HTTP against a faker running in-process on 127.0.0.1:0, and the
//! generator checked directly where a million devices are involved.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::field_reassign_with_default,
    missing_docs
)]

mod aql;
mod auth;
mod churn;
mod common;
mod generator;
mod ops;
mod paging;
