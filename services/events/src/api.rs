//! The read API (`/api/v1/…`, JSON, bearer token `api.token`). Every error is a JSON body
//! `{"error": {"status", "message"}}` with the matching status code.
//!
//! - `GET /api/v1/tenants/{tenant_id}/events?class_uid=&since=&limit=&cursor=`: newest first
//!   (`time`, then `uid`, descending); `since` is RFC 3339 and inclusive; `limit` 1–1000
//!   (default 100); `cursor` is the opaque `next_cursor` of the previous page, which is
//!   `null` on the last page.
//! - `GET /api/v1/tenants/{tenant_id}/quarantine?limit=`: the tenant's most recently
//!   quarantined messages, with reason, subject and body.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sha2::Digest as _;
use sr_core::TenantId;
use uuid::Uuid;

use crate::error::Error;
use crate::store::{EventQuery, Store};

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: i64 = 100;
/// Largest accepted `limit`.
pub const MAX_LIMIT: i64 = 1_000;

struct ApiState {
    store: Store,
    token_sha256: [u8; 32],
}

fn sha256(text: &str) -> [u8; 32] {
    sha2::Sha256::digest(text.as_bytes()).into()
}

async fn require_token(State(s): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    // Comparing digests keeps the comparison time independent of the token's prefix.
    let ok = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| sha256(t.trim()) == s.token_sha256);
    if ok {
        next.run(req).await
    } else {
        Error::Unauthorized.into_response()
    }
}

/// The `/api/v1` routes.
pub fn router(store: Store, token: &str) -> Router {
    let state = Arc::new(ApiState {
        store,
        token_sha256: sha256(token.trim()),
    });
    let api = Router::new()
        .route("/tenants/{tenant_id}/events", get(list_events))
        .route("/tenants/{tenant_id}/quarantine", get(list_quarantine))
        .fallback(|| async { Error::NotFound("no such API route".to_owned()) })
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state);
    Router::new().nest("/api/v1", api)
}

/// Query of the events listing; values are parsed by hand for precise errors.
#[derive(Debug, Deserialize)]
struct EventsParams {
    class_uid: Option<String>,
    since: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
struct QuarantineParams {
    limit: Option<String>,
}

fn tenant(raw: &str) -> Result<TenantId, Error> {
    raw.parse()
        .map_err(|e| Error::BadRequest(format!("tenant_id: {e}")))
}

fn limit(raw: Option<&str>) -> Result<i64, Error> {
    let Some(raw) = raw.filter(|s| !s.is_empty()) else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.parse::<i64>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(Error::BadRequest(format!(
            "limit must be an integer between 1 and {MAX_LIMIT}, got {raw:?}"
        ))),
    }
}

/// Encodes a page position as an opaque cursor.
#[must_use]
pub fn encode_cursor(time: DateTime<Utc>, uid: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("v1:{}:{uid}", time.timestamp_micros()))
}

/// Decodes a cursor made by [`encode_cursor`].
///
/// # Errors
/// [`Error::BadRequest`] for anything else.
pub fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid), Error> {
    let bad = || Error::BadRequest("cursor is not a cursor returned by this API".to_owned());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let mut parts = text.splitn(3, ':');
    let (Some("v1"), Some(micros), Some(uid)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let time = micros
        .parse::<i64>()
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_micros)
        .ok_or_else(bad)?;
    let uid = Uuid::parse_str(uid).map_err(|_| bad())?;
    Ok((time, uid))
}

fn query_error(e: &QueryRejection) -> Error {
    Error::BadRequest(e.body_text())
}

async fn list_events(
    State(s): State<Arc<ApiState>>,
    Path(tenant_id): Path<String>,
    params: Result<Query<EventsParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, Error> {
    let Query(p) = params.map_err(|e| query_error(&e))?;
    let tenant = tenant(&tenant_id)?;
    let class_uid = p
        .class_uid
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|c| {
            c.parse::<i32>()
                .map_err(|_| Error::BadRequest(format!("class_uid must be an integer, got {c:?}")))
        })
        .transpose()?;
    let since = p
        .since
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(|t| {
            DateTime::parse_from_rfc3339(t)
                .map(|d| d.with_timezone(&Utc))
                .map_err(|e| {
                    Error::BadRequest(format!(
                        "since must be an RFC 3339 time (e.g. 2026-11-22T10:00:00Z), got {t:?}: {e}"
                    ))
                })
        })
        .transpose()?;
    let limit = limit(p.limit.as_deref())?;
    let before = p
        .cursor
        .as_deref()
        .filter(|s| !s.is_empty())
        .map(decode_cursor)
        .transpose()?;
    let mut events = s
        .store
        .list_events(&EventQuery {
            tenant,
            class_uid,
            since,
            before,
            limit: limit + 1,
        })
        .await?;
    let more = events.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    events.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = if more {
        events.last().map(|e| encode_cursor(e.time, e.uid))
    } else {
        None
    };
    Ok(Json(
        serde_json::json!({ "events": events, "next_cursor": next_cursor }),
    ))
}

async fn list_quarantine(
    State(s): State<Arc<ApiState>>,
    Path(tenant_id): Path<String>,
    params: Result<Query<QuarantineParams>, QueryRejection>,
) -> Result<Json<serde_json::Value>, Error> {
    let Query(p) = params.map_err(|e| query_error(&e))?;
    let tenant = tenant(&tenant_id)?;
    let limit = limit(p.limit.as_deref())?;
    let rows = s.store.list_quarantine(tenant, limit).await?;
    Ok(Json(serde_json::json!({ "quarantined": rows })))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_a_bad_request() {
        let t = DateTime::<Utc>::from_timestamp_micros(1_763_800_000_123_456).unwrap();
        let u = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(t, u)).unwrap(), (t, u));
        for bad in ["", "abc", "djE6eDp5", &encode_cursor(t, u)[1..]] {
            assert!(
                matches!(decode_cursor(bad), Err(Error::BadRequest(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn limits_default_to_100_and_stay_within_1_to_1000() {
        assert_eq!(limit(None).unwrap(), 100);
        assert_eq!(limit(Some("")).unwrap(), 100);
        assert_eq!(limit(Some("1000")).unwrap(), 1000);
        for bad in ["0", "1001", "-1", "ten"] {
            assert!(limit(Some(bad)).is_err(), "{bad}");
        }
    }
}
