//! wisp's own API, for what Lambda has no API for: health, runtimes, invocation records
//! and code downloads.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use wisp_core::Error;
use wisp_engine::Engine;

use crate::error::ApiResult;

pub fn routes() -> Router<Arc<Engine>> {
    Router::new()
        .route("/wisp/v1/health", get(health))
        .route("/wisp/v1/runtimes", get(runtimes))
        .route("/wisp/v1/functions/{name}/records", get(records))
        .route("/wisp/v1/code/{sha}", get(code))
        .route("/metrics", get(metrics))
        .route(
            "/wisp/v1/notifications/{name}",
            axum::routing::post(object_notification),
        )
        .route("/wisp/v1/functions/{name}/dead-letters", get(dead_letters))
        .route(
            "/wisp/v1/functions/{name}/redrive",
            axum::routing::post(redrive),
        )
}

async fn dead_letters(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let limit = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100);
    Ok(Json(
        json!({ "DeadLetters": engine.dead_letters(&name, limit)? }),
    ))
}

async fn redrive(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "Redriven": engine.redrive(&name)? })))
}

/// A webhook for external object stores: each S3 event record in the body (AWS's,
/// MinIO's or Ceph's shape) becomes an asynchronous invocation of the function named in
/// the path, with the AWS S3 event notification document.
async fn object_notification(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
    body: axum::body::Body,
) -> ApiResult<Json<Value>> {
    let bytes = crate::error::read_body(body, 1024 * 1024, "ObjectNotification").await?;
    let records = wisp_objects::parse_external_notification(&bytes)
        .map_err(|e| Error::invalid(e.to_string()))?;
    engine.resolve(&name, None)?;
    let mut accepted = 0;
    for (_, _, _, record) in records {
        let payload = bytes::Bytes::from(json!({ "Records": [record] }).to_string());
        engine
            .invoke(
                &name,
                None,
                wisp_engine::InvokeMode::Event,
                payload,
                None,
                None,
            )
            .await?;
        accepted += 1;
    }
    Ok(Json(json!({ "Accepted": accepted })))
}

async fn metrics(State(engine): State<Arc<Engine>>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        engine.metrics_text(),
    )
}

async fn health(State(engine): State<Arc<Engine>>) -> Json<Value> {
    let cfg = engine.config();
    Json(json!({ "status": "ok", "FunctionUrls": cfg.url_base, "Routes": cfg.routes_base }))
}

async fn runtimes(State(engine): State<Arc<Engine>>) -> Json<Value> {
    Json(json!({ "Runtimes": engine.runtimes() }))
}

async fn records(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let number = |key: &str, default: i64| -> ApiResult<i64> {
        match params.get(key) {
            Some(v) => v
                .parse()
                .map_err(|_| Error::invalid(format!("{key} must be a number.")).into()),
            None => Ok(default),
        }
    };
    let after = number("after", 0)?;
    let limit = number("limit", 100)?.clamp(1, 1000) as usize;
    engine.resolve(&name, None)?;
    let records = match params.get("tail") {
        Some(_) => engine.recent_records(&name, number("tail", 20)?.clamp(1, 1000) as usize)?,
        None => engine.records(&name, after, limit)?,
    };
    Ok(Json(json!({ "Records": records })))
}

async fn code(
    State(engine): State<Arc<Engine>>,
    Path(sha): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let zip = engine.read_package(&sha)?;
    Ok(([("content-type", "application/zip")], zip))
}
