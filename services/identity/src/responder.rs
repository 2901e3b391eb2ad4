//! NATS request/reply responders (`sr.rpc.identity.>`, queue group `identity`) for the
//! gateway and sync services: sync config, lookups, heartbeats and source run outcomes.

use std::sync::Arc;

use async_nats::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sr_core::rpc::{
    ComponentLookupRequest, HeartbeatRequest, PlatformAssignmentRequest, RpcError, RpcErrorCode,
    RpcReply, SourceStatusReport, SyncConfigRequest, TenantLookupRequest,
};
use sr_core::subjects::identity_ops;
use sr_runtime::rpc::encode_reply;

use crate::control::Control;
use crate::metrics::RpcLabel;

fn decode<T: DeserializeOwned>(msg: &Message) -> Result<T, RpcError> {
    serde_json::from_slice(&msg.payload).map_err(|e| {
        RpcError::new(
            RpcErrorCode::InvalidArgument,
            format!("malformed request: {e}"),
        )
    })
}

fn reply<T: Serialize>(result: Result<T, RpcError>) -> (Vec<u8>, String) {
    match result {
        Ok(body) => (encode_reply(&RpcReply::Ok(body)), "ok".to_owned()),
        Err(e) => {
            let outcome = format!("{:?}", e.code).to_lowercase();
            (encode_reply::<()>(&RpcReply::Error(e)), outcome)
        }
    }
}

/// Answers one request.
pub async fn handle(control: Arc<Control>, msg: Message) -> Vec<u8> {
    let op = msg
        .subject
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_owned();
    let c = &control;
    let (body, outcome) = match op.as_str() {
        identity_ops::SYNC_CONFIG => reply(match decode::<SyncConfigRequest>(&msg) {
            Ok(r) => c
                .sync_config(&r.caller, &r.current_version)
                .await
                .map_err(RpcError::from),
            Err(e) => Err(e),
        }),
        identity_ops::TENANT_LOOKUP => reply(match decode::<TenantLookupRequest>(&msg) {
            Ok(r) => c
                .tenant_info(r.tenant_id, &r.slug)
                .await
                .map_err(RpcError::from),
            Err(e) => Err(e),
        }),
        identity_ops::COMPONENT_LOOKUP => reply(match decode::<ComponentLookupRequest>(&msg) {
            Ok(r) => c
                .component_info(r.tenant_id, &r.component_id)
                .await
                .map_err(RpcError::from),
            Err(e) => Err(e),
        }),
        identity_ops::PLATFORM_ASSIGNMENT => {
            reply(match decode::<PlatformAssignmentRequest>(&msg) {
                Ok(r) => c
                    .platform_assignment(&r.sync_component_id, r.tenant_id)
                    .await
                    .map_err(RpcError::from),
                Err(e) => Err(e),
            })
        }
        identity_ops::HEARTBEAT => reply(match decode::<HeartbeatRequest>(&msg) {
            Ok(r) => c.heartbeat(&r).await.map_err(RpcError::from),
            Err(e) => Err(e),
        }),
        identity_ops::SOURCE_STATUS => reply(match decode::<SourceStatusReport>(&msg) {
            Ok(r) => c
                .source_status(&r)
                .await
                .map(|()| sr_core::rpc::Ack {})
                .map_err(RpcError::from),
            Err(e) => Err(e),
        }),
        other => reply::<()>(Err(RpcError::new(
            RpcErrorCode::NotFound,
            format!("unknown operation {other:?}"),
        ))),
    };
    control
        .metrics
        .rpc_requests
        .get_or_create(&RpcLabel { op, outcome })
        .inc();
    body
}
