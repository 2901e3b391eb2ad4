//! JSON request/reply over core NATS: a typed caller and a queue-group responder loop.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Client, HeaderMap, Message};
use futures::StreamExt as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sr_core::rpc::{RpcError, RpcReply};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Nobody subscribes to the subject.
    #[error("no responder for {0}")]
    NoResponders(String),
    /// The responder did not answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// NATS failed.
    #[error("request to {subject} failed: {message}")]
    Transport {
        /// Subject.
        subject: String,
        /// Why.
        message: String,
    },
    /// The reply was not the expected JSON.
    #[error("undecodable reply from {subject}: {message}")]
    Decode {
        /// Subject.
        subject: String,
        /// Why.
        message: String,
    },
    /// The responder answered with an error.
    #[error(transparent)]
    Remote(#[from] RpcError),
}

/// Sends `request` as JSON to `subject` and decodes the [`RpcReply`].
///
/// # Errors
/// [`CallError`] for no responders, timeout, transport, decode or remote errors.
pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
    client: &Client,
    subject: String,
    request: &Req,
    timeout: Duration,
) -> Result<Resp, CallError> {
    let body = serde_json::to_vec(request).map_err(|e| CallError::Decode {
        subject: subject.clone(),
        message: e.to_string(),
    })?;
    let mut headers = HeaderMap::new();
    crate::telemetry::inject_nats(&mut headers);
    let req = async_nats::Request::new()
        .payload(body.into())
        .headers(headers)
        .timeout(Some(timeout));
    let reply = match client.send_request(subject.clone(), req).await {
        Ok(m) => m,
        Err(e) => {
            return Err(match e.kind() {
                async_nats::RequestErrorKind::NoResponders => CallError::NoResponders(subject),
                async_nats::RequestErrorKind::TimedOut => CallError::Timeout(subject),
                _ => CallError::Transport {
                    subject,
                    message: e.to_string(),
                },
            });
        }
    };
    let decoded: RpcReply<Resp> =
        serde_json::from_slice(&reply.payload).map_err(|e| CallError::Decode {
            subject,
            message: e.to_string(),
        })?;
    Ok(decoded.into_result()?)
}

/// Encodes a reply body.
#[must_use]
pub fn encode_reply<T: Serialize>(reply: &RpcReply<T>) -> Vec<u8> {
    serde_json::to_vec(reply).unwrap_or_else(|_| {
        br#"{"error":{"code":"unavailable","message":"reply could not be encoded"}}"#.to_vec()
    })
}

/// Serves `subject` in queue group `queue`: each request runs `handler` (at most
/// `concurrency` at once) and its returned bytes are sent as the reply. Stops when `token`
/// is cancelled, after the requests in flight are answered.
///
/// # Errors
/// The subscription error when NATS refuses it.
pub async fn serve<H, F>(
    client: Client,
    subject: String,
    queue: String,
    concurrency: usize,
    token: CancellationToken,
    handler: H,
) -> Result<JoinHandle<()>, async_nats::SubscribeError>
where
    H: Fn(Message) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = Vec<u8>> + Send + 'static,
{
    let mut sub = client.queue_subscribe(subject.clone(), queue).await?;
    let handler = Arc::new(handler);
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    Ok(tokio::spawn(async move {
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let msg = tokio::select! {
                () = token.cancelled() => break,
                msg = sub.next() => match msg { Some(m) => m, None => break },
            };
            let Some(reply_to) = msg.reply.clone() else {
                tracing::debug!(subject = %msg.subject, "Request without reply subject ignored");
                continue;
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let handler = handler.clone();
            let client = client.clone();
            tasks.spawn(async move {
                let body = handler(msg).await;
                if let Err(e) = client.publish(reply_to, body.into()).await {
                    tracing::warn!(error = %e, "Reply could not be sent");
                }
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        let _ = sub.unsubscribe().await;
        while tasks.join_next().await.is_some() {}
        let _ = client.flush().await;
        tracing::debug!(%subject, "Responder stopped");
    }))
}
