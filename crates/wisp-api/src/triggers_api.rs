//! wisp's trigger API: `/wisp/v1/triggers` (create, list with status, delete).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use wisp_core::limits::CONTROL_REQUEST_MAX_BYTES;
use wisp_triggers::{TriggerInput, TriggerStatus, Triggers};

use crate::error::{parse_json, read_body, ApiResult};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct CreateTrigger {
    kind: String,
    function_name: String,
    qualifier: Option<String>,
    config: Value,
}

fn trigger_json(row: &wisp_store::TriggerRow, status: &TriggerStatus) -> Value {
    json!({
        "Id": row.id,
        "Kind": row.kind,
        "FunctionName": row.function,
        "Qualifier": row.qualifier,
        "Config": row.config,
        "CreatedMs": row.created_ms,
        "Status": status,
    })
}

async fn create(State(t): State<Arc<Triggers>>, body: Body) -> ApiResult<Response> {
    let bytes = read_body(body, CONTROL_REQUEST_MAX_BYTES, "CreateTrigger").await?;
    let req: CreateTrigger = parse_json(&bytes)?;
    let row = t.create(TriggerInput {
        kind: req.kind,
        function: req.function_name,
        qualifier: req.qualifier,
        config: req.config,
    })?;
    Ok((
        StatusCode::CREATED,
        Json(trigger_json(&row, &TriggerStatus::default())),
    )
        .into_response())
}

async fn list(
    State(t): State<Arc<Triggers>>,
    Query(p): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let rows = t.list(p.get("FunctionName").map(String::as_str))?;
    Ok(Json(
        json!({ "Triggers": rows.iter().map(|(r, s)| trigger_json(r, s)).collect::<Vec<_>>() }),
    ))
}

async fn remove(State(t): State<Arc<Triggers>>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    t.delete(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn routes() -> Router<Arc<Triggers>> {
    Router::new()
        .route("/wisp/v1/triggers", get(list).post(create))
        .route("/wisp/v1/triggers/{id}", delete(remove))
}
