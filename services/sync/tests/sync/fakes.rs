//! Local HTTP stand-ins for Armis and NetBox that check authentication and paging as strictly
//! as the real APIs: a token is required and expires, `length`/`from` (Armis) and
//! `limit`/`offset` (NetBox) are required, and pages follow the documented shapes.
//! Shared by the tests and the benchmark.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// How a query's devices are produced.
#[derive(Clone)]
pub enum Devices {
    /// A fixed list.
    List(Arc<Vec<Value>>),
    /// `count` devices made on demand (so a million need no memory in the server).
    Generated {
        /// How many.
        count: usize,
        /// Device `i`.
        make: fn(usize) -> Value,
    },
}

impl Devices {
    fn len(&self) -> usize {
        match self {
            Self::List(l) => l.len(),
            Self::Generated { count, .. } => *count,
        }
    }

    fn get(&self, i: usize) -> Value {
        match self {
            Self::List(l) => l[i].clone(),
            Self::Generated { make, .. } => make(i),
        }
    }
}

/// Armis test server state.
pub struct ArmisState {
    secret: String,
    queries: Mutex<HashMap<String, Devices>>,
    tokens: Mutex<HashMap<String, u64>>,
    issued: AtomicU64,
    /// Searches a token may serve before it expires (401); 0 = never.
    pub token_uses: AtomicU64,
    /// Answer every search with 500.
    pub fail: AtomicBool,
    /// Hold every search until `release` is notified.
    pub hang: AtomicBool,
    /// Wakes held searches.
    pub release: Notify,
    /// `next` at the end of the results: 0 (default) or null.
    pub null_at_end: AtomicBool,
    /// Access tokens issued.
    pub token_requests: AtomicU64,
    /// Searches answered 401.
    pub unauthorized: AtomicU64,
    /// (aql, from) of every authorised search, in order.
    pub searches: Mutex<Vec<(String, u64)>>,
}

/// A running Armis test server.
#[derive(Clone)]
pub struct FakeArmis {
    /// `http://127.0.0.1:port`.
    pub url: String,
    /// Its state.
    pub state: Arc<ArmisState>,
}

impl FakeArmis {
    /// Starts a server that accepts `secret` and answers `queries`.
    pub async fn start(secret: &str, queries: Vec<(&str, Devices)>) -> Self {
        let state = Arc::new(ArmisState {
            secret: secret.to_owned(),
            queries: Mutex::new(
                queries
                    .into_iter()
                    .map(|(q, d)| (q.to_owned(), d))
                    .collect(),
            ),
            tokens: Mutex::new(HashMap::new()),
            issued: AtomicU64::new(0),
            token_uses: AtomicU64::new(0),
            fail: AtomicBool::new(false),
            hang: AtomicBool::new(false),
            release: Notify::new(),
            null_at_end: AtomicBool::new(false),
            token_requests: AtomicU64::new(0),
            unauthorized: AtomicU64::new(0),
            searches: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/api/v1/access_token/", post(armis_token))
            .route("/api/v1/search/", get(armis_search))
            .with_state(state.clone());
        let url = serve(app).await;
        Self { url, state }
    }

    /// Makes every token issued so far invalid (the next search with one gets 401).
    pub fn expire_tokens(&self) {
        self.state.tokens.lock().unwrap().clear();
    }

    /// Replaces a query's devices.
    pub fn set_query(&self, aql: &str, devices: Devices) {
        self.state
            .queries
            .lock()
            .unwrap()
            .insert(aql.to_owned(), devices);
    }

    /// Runs of `aql` so far (searches from offset 0).
    pub fn runs(&self, aql: &str) -> usize {
        self.state
            .searches
            .lock()
            .unwrap()
            .iter()
            .filter(|(q, from)| q == aql && *from == 0)
            .count()
    }
}

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "success": false, "message": message })),
    )
        .into_response()
}

async fn armis_token(
    State(s): State<Arc<ArmisState>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let form_encoded = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_encoded {
        return error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "form body expected");
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    if form.get("secret_key") != Some(&s.secret) {
        return error(StatusCode::UNAUTHORIZED, "invalid secret key");
    }
    s.token_requests.fetch_add(1, Ordering::SeqCst);
    let n = s.issued.fetch_add(1, Ordering::SeqCst);
    let token = format!("token-{n}-{}", uuid::Uuid::new_v4().simple());
    s.tokens.lock().unwrap().insert(token.clone(), 0);
    let exp = chrono::Utc::now() + chrono::Duration::hours(1);
    Json(json!({
        "data": { "access_token": token, "expiration_utc": exp.to_rfc3339() },
        "success": true,
    }))
    .into_response()
}

async fn armis_search(
    State(s): State<Arc<ArmisState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        s.unauthorized.fetch_add(1, Ordering::SeqCst);
        return error(StatusCode::UNAUTHORIZED, "missing token");
    };
    {
        let mut tokens = s.tokens.lock().unwrap();
        let limit = s.token_uses.load(Ordering::SeqCst);
        match tokens.get_mut(token) {
            None => {
                s.unauthorized.fetch_add(1, Ordering::SeqCst);
                return error(StatusCode::UNAUTHORIZED, "invalid or expired token");
            }
            Some(uses) => {
                if limit > 0 && *uses >= limit {
                    tokens.remove(token);
                    s.unauthorized.fetch_add(1, Ordering::SeqCst);
                    return error(StatusCode::UNAUTHORIZED, "token expired");
                }
                *uses += 1;
            }
        }
    }
    let (Some(aql), Some(length), Some(from)) = (q.get("aql"), q.get("length"), q.get("from"))
    else {
        return error(StatusCode::BAD_REQUEST, "aql, length and from are required");
    };
    let (Ok(length), Ok(from)) = (length.parse::<usize>(), from.parse::<usize>()) else {
        return error(StatusCode::BAD_REQUEST, "length and from must be integers");
    };
    if length == 0 || length > 10_000 {
        return error(StatusCode::BAD_REQUEST, "length must be 1..=10000");
    }
    s.searches.lock().unwrap().push((aql.clone(), from as u64));
    if s.hang.load(Ordering::SeqCst) {
        s.release.notified().await;
    }
    if s.fail.load(Ordering::SeqCst) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "search backend down");
    }
    let devices = s.queries.lock().unwrap().get(aql).cloned();
    let Some(devices) = devices else {
        return error(StatusCode::BAD_REQUEST, "AQL does not parse");
    };
    let total = devices.len();
    let end = (from + length).min(total);
    let results: Vec<Value> = (from.min(end)..end).map(|i| devices.get(i)).collect();
    let next = if end < total {
        json!(end)
    } else if s.null_at_end.load(Ordering::SeqCst) {
        Value::Null
    } else {
        json!(0)
    };
    let prev = if from == 0 {
        Value::Null
    } else {
        json!(from.saturating_sub(length))
    };
    Json(json!({
        "data": { "count": results.len(), "next": next, "prev": prev, "results": results, "total": total },
        "success": true,
    }))
    .into_response()
}

/// An Armis device.
pub fn armis_device(i: usize) -> Value {
    json!({
        "id": i + 1,
        "ipAddress": format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
        "macAddress": format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", (i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255),
        "name": format!("dev-{i}"),
        "type": "Server",
        "category": "Computers",
        "manufacturer": "Dell",
        "model": "R640",
        "operatingSystem": "Linux",
        "firstSeen": "2026-01-01T00:00:00Z",
        "lastSeen": "2026-11-22T00:00:00Z",
        "riskLevel": 3,
        "tags": ["prod"],
    })
}

/// NetBox test server state.
pub struct NetboxState {
    token: String,
    devices: Mutex<Vec<Value>>,
    /// `next` as an absolute URL (true) or a relative one.
    pub absolute_next: AtomicBool,
    /// Offset whose page answers 500 (u64::MAX = none).
    pub fail_offset: AtomicU64,
    /// Pages answered, as (limit, offset).
    pub pages: Mutex<Vec<(usize, usize)>>,
    base: Mutex<String>,
}

/// A running NetBox test server.
#[derive(Clone)]
pub struct FakeNetbox {
    /// `http://127.0.0.1:port`.
    pub url: String,
    /// Its state.
    pub state: Arc<NetboxState>,
}

impl FakeNetbox {
    /// Starts a server that accepts `token` and lists `devices`.
    pub async fn start(token: &str, devices: Vec<Value>) -> Self {
        let state = Arc::new(NetboxState {
            token: token.to_owned(),
            devices: Mutex::new(devices),
            absolute_next: AtomicBool::new(true),
            fail_offset: AtomicU64::new(u64::MAX),
            pages: Mutex::new(Vec::new()),
            base: Mutex::new(String::new()),
        });
        let app = Router::new()
            .route("/api/dcim/devices/", get(netbox_devices))
            .with_state(state.clone());
        let url = serve(app).await;
        url.clone_into(&mut state.base.lock().unwrap());
        Self { url, state }
    }

    /// Runs so far (pages at offset 0).
    pub fn runs(&self) -> usize {
        self.state
            .pages
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, o)| *o == 0)
            .count()
    }
}

async fn netbox_devices(
    State(s): State<Arc<NetboxState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if auth.is_empty() {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"detail": "Authentication credentials were not provided."})),
        )
            .into_response();
    }
    if auth != format!("Token {}", s.token) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"detail": "Invalid token"})),
        )
            .into_response();
    }
    let (Some(Ok(limit)), Some(Ok(offset))) = (
        q.get("limit").map(|v| v.parse::<usize>()),
        q.get("offset").map(|v| v.parse::<usize>()),
    ) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"detail": "limit and offset are required"})),
        )
            .into_response();
    };
    if limit == 0 || limit > 1000 {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"detail": "limit 1..=1000"})),
        )
            .into_response();
    }
    s.pages.lock().unwrap().push((limit, offset));
    if s.fail_offset.load(Ordering::SeqCst) == offset as u64 {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"detail": "database is locked"})),
        )
            .into_response();
    }
    let devices = s.devices.lock().unwrap().clone();
    let total = devices.len();
    let end = (offset + limit).min(total);
    let results: Vec<Value> = devices[offset.min(end)..end].to_vec();
    let link = |o: usize| {
        let path = format!("/api/dcim/devices/?limit={limit}&offset={o}");
        if s.absolute_next.load(Ordering::SeqCst) {
            // NetBox behind a proxy names its own idea of the host.
            json!(format!("http://netbox.internal:8000{path}"))
        } else {
            json!(path)
        }
    };
    let next = if end < total { link(end) } else { Value::Null };
    let previous = if offset == 0 {
        Value::Null
    } else {
        link(offset.saturating_sub(limit))
    };
    Json(json!({ "count": total, "next": next, "previous": previous, "results": results }))
        .into_response()
}

/// A NetBox device; every tenth has no primary IPv4.
pub fn netbox_device(i: usize) -> Value {
    let ip = if i % 10 == 9 {
        Value::Null
    } else {
        json!({ "id": 10_000 + i, "address": format!("192.168.{}.{}/24", (i >> 8) & 255, (i & 255).max(1)) })
    };
    json!({
        "id": i + 1,
        "name": format!("nb-{i}"),
        "role": { "id": 1, "name": "server" },
        "site": { "id": 1, "name": "dc1" },
        "primary_ip4": ip,
        "primary_ip6": null,
    })
}

/// Distinct values of `key` in the metadata of `devices`.
pub fn distinct(devices: &[Value], key: &str) -> HashSet<String> {
    devices
        .iter()
        .filter_map(|d| d["metadata"][key].as_str().map(str::to_owned))
        .collect()
}
