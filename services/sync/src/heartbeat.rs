//! Heartbeats: `PushStatus` with one `{service_type: sync, source: status}` status on the
//! interval the gateway gave in `Hello`. Reaching the gateway here is also what reconnects
//! (and says `Hello` again) after the gateway restarted while the sync was idle.

use std::sync::Arc;

use sr_proto::GatewayServiceStatus;
use tokio_util::sync::CancellationToken;

use crate::metrics::ResultLabel;
use crate::poller::ConfigState;
use crate::source::Shared;

/// Sends heartbeats until `cancel`.
pub async fn run(
    shared: Arc<Shared>,
    config: Arc<std::sync::Mutex<ConfigState>>,
    cancel: CancellationToken,
) {
    let timer = shared.timer.clone();
    let mut due = timer.now();
    loop {
        let interval = shared
            .session
            .hello_info()
            .map_or(std::time::Duration::from_secs(30), |h| h.heartbeat_interval);
        due += interval;
        tokio::select! {
            () = cancel.cancelled() => return,
            () = timer.sleep_until(due) => {}
        }
        let now = timer.now();
        if due < now {
            due = now;
        }
        let (sources, failing) = shared.health_summary();
        let stale = config
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .stale;
        let message = serde_json::json!({ "sources": sources, "failing": failing, "stale": stale });
        let status = GatewayServiceStatus {
            service_name: "sync".to_owned(),
            available: failing == 0,
            message: serde_json::to_vec(&message).unwrap_or_default(),
            service_type: "sync".to_owned(),
            agent_id: shared.session.component_id().to_owned(),
            source: "status".to_owned(),
            ..Default::default()
        };
        let result = match shared.session.push_status(vec![status]).await {
            Ok(()) => "ok",
            Err(e) => {
                tracing::debug!(error = %e, "Heartbeat not delivered");
                "error"
            }
        };
        shared
            .metrics
            .heartbeats
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
    }
}
