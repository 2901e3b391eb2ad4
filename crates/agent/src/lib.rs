//! `sr-agent`: the agent's config client. Enrolled with a bundle (the bootstrap JSON
//! `agent.json` and the certificate files it names), it calls `Hello` and `GetConfig` on the
//! gateway over mTLS, and applies the sweep section of the answer by writing it atomically to
//! `sweep.json` (format: [`sweepfile`]). It polls `GetConfig` with the version in hand on the
//! gateway's poll interval; a `not_modified` answer leaves the file untouched, and when the
//! gateway is unreachable, refuses, or sends no sweep section, the existing local file stays
//! in force. It reconnects (and says `Hello` again) with a capped exponential backoff.
//!
//! It does not sweep (a sweeper reads `sweep.json`) and never talks to any KV store: the
//! gateway is its only source of configuration.

pub mod agent;
pub mod cli;
pub mod enrollment;
pub mod sweepfile;

pub use agent::{Agent, AgentError, AgentOptions, PollOutcome};
pub use enrollment::Enrollment;
pub use sweepfile::SweepFile;
