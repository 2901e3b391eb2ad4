//! The agent-config responder: `sr.rpc.sweepgen.agent_config` in queue group `sweepgen`,
//! asked by the gateway on an agent's `Hello` and `GetConfig`. The caller's identity comes
//! from its certificate (the gateway fills it in): tenant, partition and agent id.
//!
//! A config whose JSON is larger than one reply (`reply_limit`, from the NATS `max_payload`)
//! is answered in parts: the first reply carries `parts` and the first slice of the JSON text
//! as `sweep_part`; the caller asks for the others with `part` and `part_of` (the version).
//! Parts are cut from the cached body of one version, so they always fit together; when the
//! version changed in between, a part request is answered `not_found` and the caller starts
//! again.

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
    #[serde(skip_serializing_if = "is_zero")]
    parts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    sweep_part: Option<&'a str>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Bytes of the JSON text in one part: the part travels as a JSON string, where escaping at
/// most doubles it, plus the envelope (kept within the reserve below `max_payload`).
fn part_bytes(reply_limit: usize) -> usize {
    (reply_limit / 2).saturating_sub(2).max(4)
}

/// Answers one request with the encoded `RpcReply<AgentConfigReply>`.
pub async fn handle(
    configs: Arc<Configs>,
    metrics: Metrics,
    reply_limit: usize,
    msg: Message,
) -> Vec<u8> {
    let span = tracing::info_span!(
        "agent_config",
        tenant_id = tracing::field::Empty,
        agent_id = tracing::field::Empty,
        partition = tracing::field::Empty,
    );
    sr_runtime::telemetry::set_parent_from_nats(&span, msg.headers.as_ref());
    async move {
        let (body, outcome) = match answer(&configs, reply_limit, &msg).await {
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

async fn answer(
    configs: &Configs,
    reply_limit: usize,
    msg: &Message,
) -> Result<(Vec<u8>, bool), RpcError> {
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
    if req.part > 0 && req.part_of != entry.config_version {
        return Err(RpcError::new(
            RpcErrorCode::NotFound,
            format!(
                "config version {} is no longer current (now {}); fetch it again from part 0",
                req.part_of, entry.config_version
            ),
        ));
    }
    let not_modified = req.part == 0 && req.current_version == entry.config_version;
    let body = match (&entry.body, not_modified) {
        (_, true) => None,
        (Some(body), false) => Some(body.as_ref()),
        (None, false) => {
            return Err(Error::TooLarge {
                agent_id: agent_id.to_owned(),
                targets: entry.target_count,
                limit: configs.body_limit(),
            }
            .into());
        }
    };
    let mut reply = ReplyRef {
        not_modified,
        config_version: &entry.config_version,
        config_timestamp: entry.config_timestamp,
        sweep: None,
        parts: 0,
        sweep_part: None,
    };
    match body {
        Some(body) if body.get().len() <= reply_limit && req.part == 0 => reply.sweep = Some(body),
        Some(body) => {
            let text = body.get();
            let ranges = sr_core::rpc::part_ranges(text, part_bytes(reply_limit));
            let Some(range) = ranges.get(req.part as usize) else {
                return Err(RpcError::new(
                    RpcErrorCode::InvalidArgument,
                    format!(
                        "part {} asked of a config in {} part(s)",
                        req.part,
                        ranges.len()
                    ),
                ));
            };
            reply.parts = u32::try_from(ranges.len()).unwrap_or(u32::MAX);
            reply.sweep_part = Some(&text[range.clone()]);
        }
        None => {}
    }
    Ok((encode_reply(&RpcReply::Ok(reply)), not_modified))
}
