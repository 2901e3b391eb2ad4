//! The agent-config responder: `sr.rpc.sweepgen.agent_config` in queue group `sweepgen`,
//! asked by the gateway on an agent's `Hello` and `GetConfig`. The caller's identity comes
//! from its certificate (the gateway fills it in): tenant, partition and agent id.

use std::sync::Arc;

use async_nats::Message;
use serde::Serialize;
use serde_json::value::RawValue;
use sr_core::rpc::{AgentConfigRequest, RpcError, RpcErrorCode, RpcReply};
use sr_runtime::rpc::encode_reply;
use tracing::Instrument as _;

use crate::configs::Configs;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::projection::partition_of;

/// `AgentConfigReply` with the body already serialised.
#[derive(Serialize)]
struct ReplyRef<'a> {
    not_modified: bool,
    config_version: &'a str,
    config_timestamp: i64,
    sweep: Option<&'a RawValue>,
}

/// Answers one request with the encoded `RpcReply<AgentConfigReply>`.
pub async fn handle(configs: Arc<Configs>, metrics: Metrics, msg: Message) -> Vec<u8> {
    let span = tracing::info_span!(
        "agent_config",
        tenant_id = tracing::field::Empty,
        agent_id = tracing::field::Empty,
        partition = tracing::field::Empty,
    );
    sr_runtime::telemetry::set_parent_from_nats(&span, msg.headers.as_ref());
    async move {
        let (body, outcome) = match answer(&configs, &msg).await {
            Ok((body, not_modified)) => {
                if not_modified {
                    metrics.not_modified.inc();
                }
                (body, if not_modified { "not_modified" } else { "ok" })
            }
            Err(e) => (encode_reply::<()>(&RpcReply::Error(e)), "error"),
        };
        metrics.request("rpc", outcome);
        body
    }
    .instrument(span)
    .await
}

async fn answer(configs: &Configs, msg: &Message) -> Result<(Vec<u8>, bool), RpcError> {
    let req: AgentConfigRequest = serde_json::from_slice(&msg.payload).map_err(|e| {
        RpcError::new(
            RpcErrorCode::InvalidArgument,
            format!("malformed agent config request: {e}"),
        )
    })?;
    let agent_id = req.caller.component_id.trim();
    if agent_id.is_empty() {
        return Err(RpcError::new(
            RpcErrorCode::InvalidArgument,
            "the caller has no component id",
        ));
    }
    let tenant = req.caller.tenant_id;
    let partition = partition_of(&req.caller.partition);
    let span = tracing::Span::current();
    span.record("tenant_id", tracing::field::display(tenant));
    span.record("agent_id", agent_id);
    span.record("partition", partition.as_str());

    let entry = configs
        .entry(tenant, &partition, agent_id)
        .await
        .map_err(RpcError::from)?;
    let not_modified = req.current_version == entry.config_version;
    let sweep = if not_modified {
        None
    } else {
        match &entry.body {
            Some(body) => Some(body.as_ref()),
            None => {
                return Err(Error::TooLarge {
                    agent_id: agent_id.to_owned(),
                    targets: entry.target_count,
                    limit: configs.body_limit(),
                }
                .into());
            }
        }
    };
    let reply = RpcReply::Ok(ReplyRef {
        not_modified,
        config_version: &entry.config_version,
        config_timestamp: entry.config_timestamp,
        sweep,
    });
    Ok((encode_reply(&reply), not_modified))
}
