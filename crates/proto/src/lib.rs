//! Generated Rust types and gRPC stubs for `proto/monitoring.proto`, the wire contract
//! between agents / sync services and the gateway. This crate holds no logic.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// Package `monitoring`: messages and the `AgentGatewayService` client and server.
pub mod monitoring {
    tonic::include_proto!("monitoring");
}

pub use monitoring::*;
