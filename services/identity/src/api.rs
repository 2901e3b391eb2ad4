//! The admin HTTP API (`/api/v1/…`, JSON, bearer admin token). Every error is a JSON body
//! `{"error": {"status", "message"}}` with the matching status code.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::control::{Control, NewAgent, NewSyncService, NewTenant, SourceFields};
use crate::error::Error;

/// JSON body extractor whose rejections are JSON errors too.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(Error::Invalid(e.body_text())),
            Err(e) => Err(Error::BadRequest(e.body_text())),
        }
    }
}

fn parse_id(id: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(id).map_err(|_| Error::BadRequest(format!("{id:?} is not a valid id")))
}

async fn require_token(State(control): State<Arc<Control>>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(crate::bootstrap::token_hash);
    match presented {
        Some(hash) if control.platform.admin_token_hashes.contains(&hash) => next.run(req).await,
        _ => Error::Unauthorized.into_response(),
    }
}

/// The `/api/v1` routes.
pub fn router(control: Arc<Control>) -> Router {
    let api = Router::new()
        .route("/platform", get(platform))
        .route("/tenants", get(list_tenants).post(create_tenant))
        .route("/tenants/{slug}", get(get_tenant))
        .route(
            "/tenants/{slug}/sync-services",
            get(list_syncs).post(onboard_sync),
        )
        .route("/tenants/{slug}/agents", axum::routing::post(enroll_agent))
        .route(
            "/tenants/{slug}/integration-sources",
            get(list_sources).post(create_source),
        )
        .route(
            "/tenants/{slug}/integration-sources/{id}",
            get(get_source).patch(update_source).delete(delete_source),
        )
        .fallback(|| async { Error::NotFound("no such API route".to_owned()) })
        .layer(middleware::from_fn_with_state(
            control.clone(),
            require_token,
        ))
        .with_state(control);
    Router::new().nest("/api/v1", api)
}

type ApiResult<T> = Result<T, Error>;

async fn platform(State(c): State<Arc<Control>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "platform_tenant_id": c.platform.tenant_id,
        "slug": c.platform.slug,
        "trust_domain": c.platform.trust_domain,
    }))
}

async fn list_tenants(State(c): State<Arc<Control>>) -> ApiResult<impl IntoResponse> {
    Ok(Json(c.list_tenants().await?))
}

async fn get_tenant(
    State(c): State<Arc<Control>>,
    Path(slug): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(c.tenant(&slug).await?))
}

async fn create_tenant(
    State(c): State<Arc<Control>>,
    ApiJson(body): ApiJson<NewTenant>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, Json(c.create_tenant(body).await?)))
}

async fn list_syncs(
    State(c): State<Arc<Control>>,
    Path(slug): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(c.list_sync_services(&slug).await?))
}

async fn onboard_sync(
    State(c): State<Arc<Control>>,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<NewSyncService>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(c.onboard_sync(&slug, body).await?),
    ))
}

async fn enroll_agent(
    State(c): State<Arc<Control>>,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<NewAgent>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(c.enroll_agent(&slug, body).await?),
    ))
}

async fn list_sources(
    State(c): State<Arc<Control>>,
    Path(slug): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(c.list_sources(&slug).await?))
}

async fn create_source(
    State(c): State<Arc<Control>>,
    Path(slug): Path<String>,
    ApiJson(body): ApiJson<SourceFields>,
) -> ApiResult<impl IntoResponse> {
    Ok((
        StatusCode::CREATED,
        Json(c.create_source(&slug, body).await?),
    ))
}

async fn get_source(
    State(c): State<Arc<Control>>,
    Path((slug, id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(c.get_source(&slug, parse_id(&id)?).await?))
}

async fn update_source(
    State(c): State<Arc<Control>>,
    Path((slug, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<SourceFields>,
) -> ApiResult<impl IntoResponse> {
    Ok(Json(c.update_source(&slug, parse_id(&id)?, body).await?))
}

async fn delete_source(
    State(c): State<Arc<Control>>,
    Path((slug, id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    c.delete_source(&slug, parse_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
