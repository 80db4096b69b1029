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
use wisp_triggers::{sqs, TriggerInput, TriggerStatus, Triggers};

use crate::error::{parse_json, read_body, ApiResult};
use crate::esm_brokers;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct CreateTrigger {
    kind: String,
    function_name: String,
    qualifier: Option<String>,
    config: Value,
}

/// A trigger as the API shows it (a connector's credentials hidden).
fn trigger_json(t: &Triggers, row: &wisp_store::TriggerRow, status: &TriggerStatus) -> Value {
    let config = t.public_config(row);
    json!({
        "Id": row.id,
        "Kind": row.kind,
        "FunctionName": row.function,
        "Qualifier": row.qualifier,
        "Config": config,
        "CreatedMs": row.created_ms,
        "Status": status,
    })
}

async fn create(State(t): State<Arc<Triggers>>, body: Body) -> ApiResult<Response> {
    let bytes = read_body(body, CONTROL_REQUEST_MAX_BYTES, "CreateTrigger").await?;
    let req: CreateTrigger = parse_json(&bytes)?;
    let row = t
        .create(TriggerInput {
            kind: req.kind,
            function: req.function_name,
            qualifier: req.qualifier,
            config: req.config,
        })
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(trigger_json(&t, &row, &TriggerStatus::default())),
    )
        .into_response())
}

async fn list(
    State(t): State<Arc<Triggers>>,
    Query(p): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let rows = t.list(p.get("FunctionName").map(String::as_str))?;
    Ok(Json(
        json!({ "Triggers": rows.iter().map(|(r, s)| trigger_json(&t, r, s)).collect::<Vec<_>>() }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct WantedTrigger {
    kind: String,
    qualifier: Option<String>,
    config: Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct SyncTriggers {
    triggers: Vec<WantedTrigger>,
}

/// `PUT /wisp/v1/functions/{name}/triggers`: makes the function's triggers exactly these.
async fn sync(
    State(t): State<Arc<Triggers>>,
    Path(function): Path<String>,
    body: Body,
) -> ApiResult<Json<Value>> {
    let bytes = read_body(body, CONTROL_REQUEST_MAX_BYTES, "SyncTriggers").await?;
    let req: SyncTriggers = parse_json(&bytes)?;
    if req.triggers.len() > 100 {
        return Err(wisp_core::Error::invalid(
            "A function takes at most 100 triggers in one sync.",
        )
        .into());
    }
    let wanted = req
        .triggers
        .into_iter()
        .map(|w| TriggerInput {
            kind: w.kind,
            function: function.clone(),
            qualifier: w.qualifier,
            config: w.config,
        })
        .collect();
    let report = t.sync(&function, wanted).await?;
    Ok(Json(json!({
        "Kept": report.kept,
        "Created": report.created.iter().map(|(id, kind)| json!({"Id": id, "Kind": kind})).collect::<Vec<_>>(),
        "Removed": report.removed,
    })))
}

async fn remove(State(t): State<Arc<Triggers>>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    t.delete(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

// Lambda's event source mappings (queue -> function) are `sqs` triggers.

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct MappingBody {
    function_name: Option<String>,
    event_source_arn: Option<String>,
    enabled: Option<bool>,
    batch_size: Option<u32>,
    maximum_batching_window_in_seconds: Option<u32>,
    scaling_config: Option<Value>,
    function_response_types: Option<Vec<String>>,
    // Self-managed Kafka and RabbitMQ (see esm_brokers).
    starting_position: Option<String>,
    topics: Option<Vec<String>>,
    queues: Option<Vec<String>>,
    source_access_configurations: Option<Vec<Value>>,
    self_managed_event_source: Option<Value>,
    self_managed_kafka_event_source_config: Option<Value>,
    destination_config: Option<Value>,
    maximum_retry_attempts: Option<i64>,
}

impl MappingBody {
    fn broker_fields(&self) -> esm_brokers::BrokerFields {
        esm_brokers::BrokerFields {
            starting_position: self.starting_position.clone(),
            topics: self.topics.clone(),
            queues: self.queues.clone(),
            source_access_configurations: self.source_access_configurations.clone(),
            self_managed_event_source: self.self_managed_event_source.clone(),
            self_managed_kafka_event_source_config: self
                .self_managed_kafka_event_source_config
                .clone(),
            destination_config: self.destination_config.clone(),
            maximum_retry_attempts: self.maximum_retry_attempts,
        }
    }

    /// The delivery settings a broker mapping takes from Lambda's common fields.
    fn broker_common(&self) -> ApiResult<serde_json::Map<String, Value>> {
        if self.function_response_types.is_some() {
            return Err(wisp_core::Error::invalid(
                "FunctionResponseTypes applies to queue mappings; a Kafka or RabbitMQ batch fails or succeeds whole.",
            )
            .into());
        }
        let mut m = serde_json::Map::new();
        if let Some(n) = self.batch_size {
            m.insert("BatchSize".into(), n.into());
        }
        if let Some(w) = self.maximum_batching_window_in_seconds {
            m.insert("MaximumBatchingWindowInSeconds".into(), w.into());
        }
        if let Some(e) = self.enabled {
            m.insert("Enabled".into(), e.into());
        }
        if let Some(c) = self
            .scaling_config
            .as_ref()
            .and_then(|s| s.get("MaximumConcurrency"))
        {
            m.insert("MaximumConcurrency".into(), c.clone());
        }
        Ok(m)
    }
}

/// The trigger kinds Lambda's event source mapping API shows.
fn is_mapping(kind: &str) -> bool {
    kind == sqs::KIND || kind == esm_brokers::KAFKA || kind == esm_brokers::RABBITMQ
}

fn mapping(t: &Triggers, row: &wisp_store::TriggerRow) -> ApiResult<Value> {
    let region = &t.engine().config().region;
    if row.kind != sqs::KIND {
        return Ok(esm_brokers::mapping_json(row, &row.config, region));
    }
    let cfg = sqs::Config::from_value(&row.config)?;
    Ok(sqs::mapping_json(row, &cfg, region))
}

fn mapping_row(t: &Triggers, id: &str) -> ApiResult<wisp_store::TriggerRow> {
    let row = t.get(id)?;
    if !is_mapping(&row.kind) {
        return Err(wisp_core::Error::not_found(format!(
            "The resource you requested does not exist. (Event source mapping {id})"
        ))
        .into());
    }
    Ok(row)
}

/// Overlays the fields given on a mapping's configuration document.
fn overlay(mut config: Value, body: &MappingBody) -> Value {
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            config[k] = v;
        }
    };
    set(
        "EventSourceArn",
        body.event_source_arn.clone().map(Value::from),
    );
    set("Enabled", body.enabled.map(Value::from));
    set("BatchSize", body.batch_size.map(Value::from));
    set(
        "MaximumBatchingWindowInSeconds",
        body.maximum_batching_window_in_seconds.map(Value::from),
    );
    set("ScalingConfig", body.scaling_config.clone());
    set(
        "FunctionResponseTypes",
        body.function_response_types.clone().map(|v| json!(v)),
    );
    config
}

async fn create_mapping(State(t): State<Arc<Triggers>>, body: Body) -> ApiResult<Response> {
    let bytes = read_body(body, CONTROL_REQUEST_MAX_BYTES, "CreateEventSourceMapping").await?;
    let req: MappingBody = parse_json(&bytes)?;
    let function = req
        .function_name
        .clone()
        .ok_or_else(|| wisp_core::Error::invalid("FunctionName is required."))?;
    if req.event_source_arn.is_none() && req.self_managed_event_source.is_none() {
        return Err(wisp_core::Error::invalid(
            "EventSourceArn (or, for a self-managed broker, SelfManagedEventSource) is required.",
        )
        .into());
    }
    let fref = wisp_core::parse_function_ref(&function)?;
    let fields = req.broker_fields();
    let (kind, config) = match esm_brokers::kind_of(req.event_source_arn.as_deref(), &fields)? {
        None => (sqs::KIND, overlay(json!({}), &req)),
        Some(kind) => (
            kind,
            esm_brokers::config(
                kind,
                json!({}),
                req.event_source_arn.as_deref(),
                &fields,
                req.broker_common()?,
            )?,
        ),
    };
    let row = t
        .create(TriggerInput {
            kind: kind.into(),
            function: fref.name,
            qualifier: fref.qualifier.map(|q| q.to_string()),
            config,
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(mapping(&t, &row)?)).into_response())
}

async fn list_mappings(
    State(t): State<Arc<Triggers>>,
    Query(p): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let function = match p.get("FunctionName") {
        Some(f) => Some(wisp_core::parse_function_ref(f)?.name),
        None => None,
    };
    let mut out = Vec::new();
    for (row, _) in t.list(function.as_deref())? {
        if !is_mapping(&row.kind) {
            continue;
        }
        let doc = mapping(&t, &row)?;
        if p.get("EventSourceArn")
            .is_some_and(|a| doc["EventSourceArn"] != a.as_str())
        {
            continue;
        }
        out.push(doc);
    }
    Ok(Json(json!({ "EventSourceMappings": out })))
}

async fn get_mapping(
    State(t): State<Arc<Triggers>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(mapping(&t, &mapping_row(&t, &id)?)?))
}

async fn update_mapping(
    State(t): State<Arc<Triggers>>,
    Path(id): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let bytes = read_body(body, CONTROL_REQUEST_MAX_BYTES, "UpdateEventSourceMapping").await?;
    let req: MappingBody = parse_json(&bytes)?;
    let row = mapping_row(&t, &id)?;
    let config = if row.kind == sqs::KIND {
        if esm_brokers::kind_of(None, &req.broker_fields())?.is_some() {
            return Err(wisp_core::Error::invalid(
                "A queue mapping cannot become a broker mapping; create a new one.",
            )
            .into());
        }
        overlay(row.config.clone(), &req)
    } else {
        esm_brokers::config(
            &row.kind,
            row.config.clone(),
            req.event_source_arn.as_deref(),
            &req.broker_fields(),
            req.broker_common()?,
        )?
    };
    let row = t.update(&id, req.function_name.clone(), config).await?;
    Ok((StatusCode::ACCEPTED, Json(mapping(&t, &row)?)).into_response())
}

async fn delete_mapping(
    State(t): State<Arc<Triggers>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let row = mapping_row(&t, &id)?;
    let mut doc = mapping(&t, &row)?;
    t.delete(&id)?;
    doc["State"] = "Deleting".into();
    Ok((StatusCode::ACCEPTED, Json(doc)).into_response())
}

pub fn routes() -> Router<Arc<Triggers>> {
    Router::new()
        .route("/wisp/v1/triggers", get(list).post(create))
        .route("/wisp/v1/triggers/{id}", delete(remove))
        .route(
            "/wisp/v1/functions/{name}/triggers",
            axum::routing::put(sync),
        )
        .route(
            "/2015-03-31/event-source-mappings",
            get(list_mappings).post(create_mapping),
        )
        .route(
            "/2015-03-31/event-source-mappings/",
            get(list_mappings).post(create_mapping),
        )
        .route(
            "/2015-03-31/event-source-mappings/{id}",
            get(get_mapping).put(update_mapping).delete(delete_mapping),
        )
}
