//! The HTTP routes: the Armis API (`/api/v1/access_token/`, `/api/v1/search/`) and the
//! faker's own control routes (`/faker/…`).
//!
//! Every error is an Armis-style JSON body `{"success": false, "message": …}` with its status.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::json;

use crate::Shared;
use crate::aql::Query;
use crate::error::Error;
use crate::generator::Device;
use crate::tokens::Refusal;

/// Most devices one search page returns; larger `length` values are cut to it.
pub const MAX_PAGE_SIZE: u64 = 1000;
/// Page size when a search names no `length`.
pub const DEFAULT_PAGE_SIZE: u64 = 100;
/// Response header carrying the churn epoch a search page was computed in.
pub const EPOCH_HEADER: &str = "x-faker-churn-epoch";

/// Every route of the faker (the ops routes are added by [`sr_runtime::OpsServer`]).
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/access_token/", post(access_token))
        .route("/api/v1/search/", get(search))
        .route("/faker/status", get(status))
        .route("/faker/churn/advance", post(advance_churn))
        .route("/faker/tokens/invalidate", post(invalidate_tokens))
        .fallback(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                axum::Json(json!({ "success": false, "message": "no such route" })),
            )
        })
        .with_state(shared)
}

/// `POST /api/v1/access_token/` with the form field `secret_key`.
async fn access_token(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    s.metrics.token_requests.inc();
    let secret = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "secret_key")
        .map(|(_, v)| v);
    let refusal = match secret {
        Some(v) if *v == *s.config.auth.secret_key => None,
        Some(_) => Some("invalid secret_key"),
        None => Some("secret_key is required"),
    };
    if let Some(why) = refusal {
        s.metrics.secret_rejections.inc();
        return Error::Unauthorized(why).into_response();
    }
    let (token, expires) = s.tokens.issue(s.clock.now());
    s.metrics.tokens_issued.inc();
    axum::Json(json!({
        "data": {
            "access_token": token,
            "expiration_utc": expires.to_rfc3339_opts(chrono::SecondsFormat::Micros, false),
        },
        "success": true,
    }))
    .into_response()
}

#[derive(Serialize)]
struct PageBody<'a> {
    data: PageData<'a>,
    success: bool,
}

#[derive(Serialize)]
struct PageData<'a> {
    count: usize,
    next: u64,
    prev: Option<u64>,
    results: &'a [Device],
    total: u64,
}

/// `GET /api/v1/search/?aql=&length=&from=` with `Authorization: <token>`.
async fn search(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    s.metrics.search_requests.inc();
    match search_page(&s, &headers, q.as_deref().unwrap_or("")).await {
        Ok(response) => {
            s.metrics.pages_served.inc();
            response
        }
        Err(e) => {
            match &e {
                Error::Unauthorized(_) => s.metrics.unauthorized.inc(),
                Error::BadRequest(_) => s.metrics.bad_requests.inc(),
                Error::Injected => s.metrics.injected_failures.inc(),
                Error::Config(_) | Error::Io { .. } => 0,
            };
            e.into_response()
        }
    }
}

async fn search_page(s: &Arc<Shared>, headers: &HeaderMap, query: &str) -> Result<Response, Error> {
    let token = headers
        .get(header::AUTHORIZATION)
        .ok_or(Error::Unauthorized("the Authorization header is required"))?
        .to_str()
        .map_err(|_| Error::Unauthorized("invalid access token"))?;
    s.tokens
        .check(token.trim(), s.clock.now())
        .map_err(|r| match r {
            Refusal::Unknown => Error::Unauthorized("invalid access token"),
            Refusal::Expired => Error::Unauthorized("access token expired"),
        })?;
    if s.take_injected_failure() {
        return Err(Error::Injected);
    }

    let mut aql = None;
    let mut length = None;
    let mut from = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "aql" => aql = Some(v.into_owned()),
            "length" => length = Some(number("length", &v)?),
            "from" => from = Some(number("from", &v)?),
            _ => {}
        }
    }
    let aql = aql.ok_or_else(|| Error::BadRequest("the aql parameter is required".to_owned()))?;
    let query = Query::parse(&aql).map_err(|e| Error::BadRequest(e.to_string()))?;
    let length = length.unwrap_or(DEFAULT_PAGE_SIZE);
    if length == 0 {
        return Err(Error::BadRequest("length must be at least 1".to_owned()));
    }
    let length = length.min(MAX_PAGE_SIZE);
    let from = from.unwrap_or(0);

    // One epoch for the whole page, so a page never mixes two churn states.
    let epoch = s.churn_epoch();
    let selection = s.select(query).await;
    let total = selection.total();
    let end = from.saturating_add(length).min(total);
    let pairing = s.generator.pairing(epoch);
    let devices: Vec<Device> = (from..end)
        .map(|pos| s.generator.device_with(selection.index(pos), &pairing))
        .collect();
    let count = devices.len();
    let after = from + count as u64;
    let body = PageBody {
        data: PageData {
            count,
            // The contract's clients follow `next` until it is 0.
            next: if count > 0 && after < total { after } else { 0 },
            prev: (from > 0).then(|| from.saturating_sub(length)),
            results: &devices,
            total,
        },
        success: true,
    };
    s.metrics.devices_served.inc_by(count as u64);
    let mut response = axum::Json(body).into_response();
    response
        .headers_mut()
        .insert(EPOCH_HEADER, HeaderValue::from(epoch));
    Ok(response)
}

/// A non-negative integer; values beyond `u64` saturate (they are clamped anyway).
fn number(name: &str, raw: &str) -> Result<u64, Error> {
    let v = raw.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::BadRequest(format!(
            "{name} must be a non-negative integer, got {raw:?}"
        )));
    }
    Ok(v.parse().unwrap_or(u64::MAX))
}

/// `GET /faker/status`: inventory size, churn state and counters.
async fn status(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(json!({
        "devices": s.generator.count(),
        "seed": s.generator.seed(),
        "churn": {
            "epoch": s.churn_epoch(),
            "interval_secs": s.config.churn.interval_secs,
            "fraction": s.config.churn.fraction,
            "swapped_pairs": s.generator.swapped_pairs(),
        },
        "stats": s.metrics.stats(),
    }))
    .into_response()
}

/// `POST /faker/churn/advance`: moves to the next churn epoch now.
async fn advance_churn(State(s): State<Arc<Shared>>) -> Response {
    axum::Json(json!({ "epoch": s.advance_churn() })).into_response()
}

/// `POST /faker/tokens/invalidate`: every token stops working.
async fn invalidate_tokens(State(s): State<Arc<Shared>>) -> Response {
    s.tokens.invalidate_all();
    axum::Json(json!({ "invalidated": true })).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn numbers_saturate_but_non_numbers_are_rejected() {
        assert_eq!(number("length", "1000").unwrap(), 1000);
        assert_eq!(
            number("length", "99999999999999999999999").unwrap(),
            u64::MAX
        );
        for bad in ["", "-1", "1.5", "abc", "0x10"] {
            assert!(number("from", bad).is_err(), "{bad:?}");
        }
    }
}
