//! Fetching an agent's sweep config from sweepgen over NATS request/reply, part by part when
//! it is larger than one reply (see `sr_core::rpc::AgentConfigReply::parts`).

use std::time::Duration;

use sr_core::rpc::{AgentConfigReply, AgentConfigRequest, CallerIdentity, RpcErrorCode};
use sr_runtime::rpc::{CallError, call};

/// How often a fetch starts again when the config changes between its parts.
const ATTEMPTS: usize = 3;

/// Asks `subject` for the sweep config of `caller`. A config sent in parts is reassembled
/// into `sweep` (so the result never has `parts` set); when the config changes while its
/// parts are fetched, the fetch starts again (at most three times).
///
/// # Errors
/// [`CallError`] from any request; [`CallError::Decode`] when the parts do not form a valid
/// config or together exceed `max_bytes`.
pub async fn fetch(
    client: &async_nats::Client,
    subject: String,
    caller: &CallerIdentity,
    current_version: &str,
    timeout: Duration,
    max_bytes: usize,
) -> Result<AgentConfigReply, CallError> {
    let mut last_error = None;
    for _ in 0..ATTEMPTS {
        let first: AgentConfigReply = call(
            client,
            subject.clone(),
            &request(caller, current_version, 0, ""),
            timeout,
        )
        .await?;
        if first.parts == 0 {
            return Ok(first);
        }
        match fetch_rest(client, &subject, caller, first, timeout, max_bytes).await {
            Ok(reply) => return Ok(reply),
            Err(CallError::Remote(e)) if e.code == RpcErrorCode::NotFound => {
                tracing::debug!(error = %e, "Sweep config changed while fetched in parts; again");
                last_error = Some(CallError::Remote(e));
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or(CallError::Timeout(subject)))
}

async fn fetch_rest(
    client: &async_nats::Client,
    subject: &str,
    caller: &CallerIdentity,
    mut first: AgentConfigReply,
    timeout: Duration,
    max_bytes: usize,
) -> Result<AgentConfigReply, CallError> {
    let decode = |message: String| CallError::Decode {
        subject: subject.to_owned(),
        message,
    };
    let mut text = first
        .sweep_part
        .take()
        .ok_or_else(|| decode("a reply announcing parts carries no sweep_part".into()))?;
    for part in 1..first.parts {
        let reply: AgentConfigReply = call(
            client,
            subject.to_owned(),
            &request(caller, "", part, &first.config_version),
            timeout,
        )
        .await?;
        if reply.config_version != first.config_version || reply.parts != first.parts {
            return Err(decode(format!(
                "part {part} belongs to version {} in {} parts, not {} in {}",
                reply.config_version, reply.parts, first.config_version, first.parts
            )));
        }
        let piece = reply
            .sweep_part
            .ok_or_else(|| decode(format!("part {part} carries no sweep_part")))?;
        if text.len() + piece.len() > max_bytes {
            return Err(decode(format!(
                "the sweep config is larger than the {max_bytes}-byte response limit"
            )));
        }
        text.push_str(&piece);
    }
    let sweep = serde_json::from_str(&text)
        .map_err(|e| decode(format!("the reassembled sweep config is invalid: {e}")))?;
    first.sweep = Some(sweep);
    first.parts = 0;
    Ok(first)
}

fn request(
    caller: &CallerIdentity,
    current_version: &str,
    part: u32,
    part_of: &str,
) -> AgentConfigRequest {
    AgentConfigRequest {
        caller: caller.clone(),
        current_version: current_version.to_owned(),
        part,
        part_of: part_of.to_owned(),
    }
}
