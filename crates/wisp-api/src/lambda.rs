//! The Lambda REST API: functions, versions, concurrency and Invoke.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};
use wisp_core::limits::{
    CODE_REQUEST_MAX_BYTES, CONTROL_REQUEST_MAX_BYTES, LOG_TAIL_BYTES, SYNC_PAYLOAD_MAX_BYTES,
};
use wisp_core::Error;
use wisp_engine::{AliasInput, ConfigInput, CreateInput, Engine, InvokeMode, Invoked, Resolved};
use wisp_runtime::Outcome;

use crate::error::{parse_json, read_body, ApiResult};
use crate::shapes::{self, configuration};

type Eng = State<Arc<Engine>>;
type Params = Query<HashMap<String, String>>;

pub fn routes() -> Router<Arc<Engine>> {
    Router::new()
        .route(
            "/2015-03-31/functions",
            post(create_function).get(list_functions),
        )
        .route(
            "/2015-03-31/functions/",
            post(create_function).get(list_functions),
        )
        .route(
            "/2015-03-31/functions/{name}",
            get(get_function).delete(delete_function),
        )
        .route(
            "/2015-03-31/functions/{name}/configuration",
            get(get_configuration).put(update_configuration),
        )
        .route("/2015-03-31/functions/{name}/code", put(update_code))
        .route("/2015-03-31/functions/{name}/invocations", post(invoke))
        .route(
            "/2015-03-31/functions/{name}/versions",
            post(publish_version).get(list_versions),
        )
        .route(
            "/2017-10-31/functions/{name}/concurrency",
            put(put_concurrency).delete(delete_concurrency),
        )
        .route(
            "/2019-09-30/functions/{name}/concurrency",
            get(get_concurrency),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases",
            post(create_alias).get(list_aliases),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases/{alias}",
            get(get_alias).put(update_alias).delete(delete_alias),
        )
        .route(
            "/2017-03-31/tags/{arn}",
            post(tag_resource).get(list_tags).delete(untag_resource),
        )
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config",
            get(get_invoke_config)
                .put(put_invoke_config)
                .post(update_invoke_config)
                .delete(delete_invoke_config),
        )
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config/list",
            get(list_invoke_configs),
        )
        .route("/2016-08-19/account-settings", get(account_settings))
        .route("/2016-08-19/account-settings/", get(account_settings))
}

fn qualifier(params: &HashMap<String, String>) -> Option<&str> {
    params.get("Qualifier").map(String::as_str)
}

fn config_json(engine: &Engine, r: &Resolved) -> Value {
    configuration(r, &engine.config().region)
}

async fn create_function(State(engine): Eng, body: Body) -> ApiResult<Response> {
    let bytes = read_body(body, CODE_REQUEST_MAX_BYTES, "CreateFunction").await?;
    let mut req: shapes::CreateFunction = parse_json(&bytes)?;
    if req.package_type.as_deref().is_some_and(|p| p != "Zip") {
        return Err(
            Error::invalid("PackageType Image is not supported by this server: use Zip.").into(),
        );
    }
    let extra = req.opaque();
    let input = CreateInput {
        name: req.function_name,
        runtime: req.runtime,
        handler: req.handler,
        role: req.role,
        memory_mb: req.memory_size,
        timeout_s: req.timeout,
        env: req.environment.and_then(|e| e.variables),
        description: req.description,
        code: req.code.map(|c| c.into_input()).unwrap_or_default(),
        publish: req.publish.unwrap_or(false),
        tags: req.tags.take(),
        extra,
    };
    let resolved = engine.create_function(input).await?;
    Ok((StatusCode::CREATED, Json(config_json(&engine, &resolved))).into_response())
}

async fn list_functions(State(engine): Eng, Query(params): Params) -> ApiResult<Json<Value>> {
    let max_items = match params.get("MaxItems") {
        Some(m) => Some(
            m.parse::<usize>()
                .map_err(|_| Error::invalid("MaxItems must be a number."))?,
        ),
        None => None,
    };
    let (specs, next) =
        engine.list_functions(params.get("Marker").map(String::as_str), max_items)?;
    let functions: Vec<Value> = specs
        .into_iter()
        .map(|spec| {
            let r = Resolved {
                spec: Arc::new(spec),
                version: "$LATEST".into(),
                reserved_concurrency: None,
                alias: None,
            };
            config_json(&engine, &r)
        })
        .collect();
    let mut doc = json!({ "Functions": functions });
    if let Some(next) = next {
        doc["NextMarker"] = next.into();
    }
    Ok(Json(doc))
}

async fn get_function(
    State(engine): Eng,
    Path(name): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let r = engine.resolve(&name, qualifier(&params))?;
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let mut doc = json!({
        "Configuration": config_json(&engine, &r),
        "Code": {
            "RepositoryType": "S3",
            "Location": format!("http://{host}/wisp/v1/code/{}", r.spec.code_sha256),
        },
    });
    let arn = wisp_core::name::function_arn(&engine.config().region, &r.spec.name, None);
    let tags = engine.list_tags(&arn)?;
    if !tags.is_empty() {
        doc["Tags"] = json!(tags);
    }
    if let Some(n) = r.reserved_concurrency {
        doc["Concurrency"] = json!({ "ReservedConcurrentExecutions": n });
    }
    Ok(Json(doc))
}

async fn get_configuration(
    State(engine): Eng,
    Path(name): Path<String>,
    Query(params): Params,
) -> ApiResult<Json<Value>> {
    let r = engine.resolve(&name, qualifier(&params))?;
    Ok(Json(config_json(&engine, &r)))
}

async fn delete_function(
    State(engine): Eng,
    Path(name): Path<String>,
    Query(params): Params,
) -> ApiResult<StatusCode> {
    engine.delete_function(&name, qualifier(&params))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn update_code(
    State(engine): Eng,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<Json<Value>> {
    let bytes = read_body(body, CODE_REQUEST_MAX_BYTES, "UpdateFunctionCode").await?;
    let req: shapes::UpdateCode = parse_json(&bytes)?;
    let code = shapes::FunctionCode {
        zip_file: req.zip_file,
        s3_bucket: req.s3_bucket,
        s3_key: req.s3_key,
        s3_object_version: req.s3_object_version,
        image_uri: req.image_uri,
        source_kms_key_arn: None,
    };
    if req.dry_run == Some(true) {
        let r = engine.resolve(&name, None)?;
        return Ok(Json(config_json(&engine, &r)));
    }
    let r = engine
        .update_code(
            &name,
            code.into_input(),
            req.publish.unwrap_or(false),
            req.revision_id.as_deref(),
        )
        .await?;
    Ok(Json(config_json(&engine, &r)))
}

async fn update_configuration(
    State(engine): Eng,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<Json<Value>> {
    let bytes = read_body(
        body,
        CONTROL_REQUEST_MAX_BYTES,
        "UpdateFunctionConfiguration",
    )
    .await?;
    let mut req: shapes::UpdateConfiguration = parse_json(&bytes)?;
    let extra = req.opaque();
    let input = ConfigInput {
        runtime: req.runtime,
        handler: req.handler,
        role: req.role,
        memory_mb: req.memory_size,
        timeout_s: req.timeout,
        env: req.environment.map(|e| e.variables.unwrap_or_default()),
        description: req.description,
        revision_id: req.revision_id,
        extra,
    };
    let r = engine.update_configuration(&name, input).await?;
    Ok(Json(config_json(&engine, &r)))
}

async fn publish_version(
    State(engine): Eng,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let bytes = read_body(body, CONTROL_REQUEST_MAX_BYTES, "PublishVersion").await?;
    let req: shapes::PublishVersion = parse_json(&bytes)?;
    let r = engine.publish_version(
        &name,
        req.code_sha256.as_deref(),
        req.revision_id.as_deref(),
        req.description.as_deref(),
    )?;
    Ok((StatusCode::CREATED, Json(config_json(&engine, &r))).into_response())
}

async fn list_versions(State(engine): Eng, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let versions: Vec<Value> = engine
        .list_versions(&name)?
        .iter()
        .map(|r| {
            let mut doc = config_json(&engine, r);
            // Listed among versions, $LATEST is named by its qualified ARN (as AWS does).
            if r.version == "$LATEST" {
                let arn = wisp_core::name::function_arn(
                    &engine.config().region,
                    &r.spec.name,
                    Some("$LATEST"),
                );
                doc["FunctionArn"] = arn.into();
            }
            doc
        })
        .collect();
    Ok(Json(json!({ "Versions": versions })))
}

async fn put_concurrency(
    State(engine): Eng,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<Json<Value>> {
    let bytes = read_body(body, CONTROL_REQUEST_MAX_BYTES, "PutFunctionConcurrency").await?;
    let req: shapes::PutConcurrency = parse_json(&bytes)?;
    let n = engine.put_concurrency(&name, req.reserved_concurrent_executions)?;
    Ok(Json(json!({ "ReservedConcurrentExecutions": n })))
}

async fn get_concurrency(State(engine): Eng, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(match engine.get_concurrency(&name)? {
        Some(n) => json!({ "ReservedConcurrentExecutions": n }),
        None => json!({}),
    }))
}

async fn delete_concurrency(State(engine): Eng, Path(name): Path<String>) -> ApiResult<StatusCode> {
    engine.delete_concurrency(&name)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn invoke_config_body(body: Body) -> ApiResult<Value> {
    let bytes = read_body(
        body,
        CONTROL_REQUEST_MAX_BYTES,
        "PutFunctionEventInvokeConfig",
    )
    .await?;
    parse_json(&bytes)
}

/// PutFunctionEventInvokeConfig replaces the settings; UpdateFunctionEventInvokeConfig
/// (`merge`) changes only the fields given.
async fn store_invoke_config(
    engine: &Engine,
    name: &str,
    params: &HashMap<String, String>,
    body: Body,
    merge: bool,
) -> ApiResult<Json<Value>> {
    let input = invoke_config_body(body).await?;
    Ok(Json(
        engine
            .put_invoke_config(name, qualifier(params), input, merge)
            .await?,
    ))
}

async fn put_invoke_config(
    State(engine): Eng,
    Path(name): Path<String>,
    Query(params): Params,
    body: Body,
) -> ApiResult<Json<Value>> {
    store_invoke_config(&engine, &name, &params, body, false).await
}

async fn update_invoke_config(
    State(engine): Eng,
    Path(name): Path<String>,
    Query(params): Params,
    body: Body,
) -> ApiResult<Json<Value>> {
    store_invoke_config(&engine, &name, &params, body, true).await
}

async fn get_invoke_config(
    State(engine): Eng,
    Path(name): Path<String>,
    Query(params): Params,
) -> ApiResult<Json<Value>> {
    Ok(Json(engine.get_invoke_config(&name, qualifier(&params))?))
}

async fn delete_invoke_config(
    State(engine): Eng,
    Path(name): Path<String>,
    Query(params): Params,
) -> ApiResult<StatusCode> {
    engine.delete_invoke_config(&name, qualifier(&params))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_invoke_configs(
    State(engine): Eng,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({ "FunctionEventInvokeConfigs": engine.list_invoke_configs(&name)? }),
    ))
}

fn alias_json(engine: &Engine, a: &wisp_store::Alias) -> Value {
    shapes::alias(a, engine.alias_arn(a))
}

fn alias_input(
    version: Option<String>,
    description: Option<String>,
    routing: Option<shapes::RoutingConfig>,
    revision_id: Option<String>,
) -> AliasInput {
    AliasInput {
        version,
        description,
        weights: routing.map(|r| r.additional_version_weights.unwrap_or_default()),
        revision_id,
    }
}

async fn create_alias(
    State(engine): Eng,
    Path(name): Path<String>,
    body: Body,
) -> ApiResult<Response> {
    let bytes = read_body(body, CONTROL_REQUEST_MAX_BYTES, "CreateAlias").await?;
    let req: shapes::CreateAlias = parse_json(&bytes)?;
    let input = alias_input(
        Some(req.function_version),
        req.description,
        req.routing_config,
        None,
    );
    let alias = engine.create_alias(&name, &req.name, input)?;
    Ok((StatusCode::CREATED, Json(alias_json(&engine, &alias))).into_response())
}

async fn list_aliases(
    State(engine): Eng,
    Path(name): Path<String>,
    Query(params): Params,
) -> ApiResult<Json<Value>> {
    let aliases = engine.list_aliases(&name, params.get("FunctionVersion").map(String::as_str))?;
    let max = params
        .get("MaxItems")
        .and_then(|m| m.parse::<usize>().ok())
        .unwrap_or(50)
        .clamp(1, 10_000);
    let after = params.get("Marker");
    let page: Vec<&wisp_store::Alias> = aliases
        .iter()
        .filter(|a| after.is_none_or(|m| a.name.as_str() > m.as_str()))
        .take(max + 1)
        .collect();
    let mut doc = json!({ "Aliases": page.iter().take(max).map(|a| alias_json(&engine, a)).collect::<Vec<_>>() });
    if page.len() > max {
        doc["NextMarker"] = page[max - 1].name.clone().into();
    }
    Ok(Json(doc))
}

async fn get_alias(
    State(engine): Eng,
    Path((name, alias)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(alias_json(&engine, &engine.get_alias(&name, &alias)?)))
}

async fn update_alias(
    State(engine): Eng,
    Path((name, alias)): Path<(String, String)>,
    body: Body,
) -> ApiResult<Json<Value>> {
    let bytes = read_body(body, CONTROL_REQUEST_MAX_BYTES, "UpdateAlias").await?;
    let req: shapes::UpdateAlias = parse_json(&bytes)?;
    let input = alias_input(
        req.function_version,
        req.description,
        req.routing_config,
        req.revision_id,
    );
    Ok(Json(alias_json(
        &engine,
        &engine.update_alias(&name, &alias, input)?,
    )))
}

async fn delete_alias(
    State(engine): Eng,
    Path((name, alias)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    engine.delete_alias(&name, &alias)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn tag_resource(
    State(engine): Eng,
    Path(arn): Path<String>,
    body: Body,
) -> ApiResult<StatusCode> {
    let bytes = read_body(body, CONTROL_REQUEST_MAX_BYTES, "TagResource").await?;
    let req: shapes::TagResource = parse_json(&bytes)?;
    engine.tag(&arn, req.tags)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_tags(State(engine): Eng, Path(arn): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "Tags": engine.list_tags(&arn)? })))
}

async fn untag_resource(
    State(engine): Eng,
    Path(arn): Path<String>,
    uri: axum::http::Uri,
) -> ApiResult<StatusCode> {
    // tagKeys repeats, so the query is read as pairs rather than as a map.
    let keys: Vec<String> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .filter(|(k, _)| k == "tagKeys")
        .map(|(_, v)| v.into_owned())
        .collect();
    engine.untag(&arn, &keys)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn account_settings(State(engine): Eng) -> ApiResult<Json<Value>> {
    let cfg = engine.config();
    let (count, code_size, unreserved) = engine.usage()?;
    Ok(Json(json!({
        "AccountLimit": {
            "TotalCodeSize": 80530636800u64,
            "CodeSizeUnzipped": wisp_core::limits::UNZIPPED_MAX_BYTES,
            "CodeSizeZipped": wisp_core::limits::ZIP_MAX_BYTES,
            "ConcurrentExecutions": cfg.max_concurrency,
            "UnreservedConcurrentExecutions": unreserved,
        },
        "AccountUsage": { "TotalCodeSize": code_size, "FunctionCount": count },
    })))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The last `LOG_TAIL_BYTES` of a log, cut at a character boundary.
fn log_tail(log: &str) -> &str {
    let mut start = log.len().saturating_sub(LOG_TAIL_BYTES);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    &log[start..]
}

async fn invoke(
    State(engine): Eng,
    Path(name): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let mode = match header(&headers, "x-amz-invocation-type") {
        None | Some("RequestResponse") => InvokeMode::RequestResponse,
        Some("Event") => InvokeMode::Event,
        Some("DryRun") => InvokeMode::DryRun,
        Some(other) => {
            return Err(Error::invalid(format!(
                "InvocationType '{}' is not one of RequestResponse, Event, DryRun.",
                other.chars().take(40).collect::<String>()
            ))
            .into())
        }
    };
    let tail = match header(&headers, "x-amz-log-type") {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(_) => return Err(Error::invalid("LogType must be None or Tail.").into()),
    };
    let client_context = match header(&headers, "x-amz-client-context") {
        Some(b64) => {
            // Lambda accepts only a JSON object here, and refuses anything else before
            // the function runs.
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .filter(|text| matches!(serde_json::from_str::<Value>(text), Ok(Value::Object(_))))
                .ok_or_else(|| {
                    Error::new(
                        wisp_core::ErrorKind::InvalidRequestContent,
                        "Client context must be a valid Base64-encoded JSON object.",
                    )
                })?;
            Some(decoded)
        }
        None => None,
    };
    let payload = read_body(body, SYNC_PAYLOAD_MAX_BYTES, "Invoke").await?;
    let invoked = engine
        .invoke(
            &name,
            qualifier(&params),
            mode,
            payload,
            client_context,
            None,
        )
        .await?;
    let result = match invoked {
        Invoked::DryRun => return Ok(StatusCode::NO_CONTENT.into_response()),
        Invoked::Queued { request_id } => {
            let mut response = StatusCode::ACCEPTED.into_response();
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert("x-amzn-requestid", v);
            }
            return Ok(response);
        }
        Invoked::Done(result) => result,
    };
    let (body, function_error) = match result.outcome {
        Outcome::Success(body) => (body, false),
        Outcome::FunctionError { body, .. } => (body, true),
        Outcome::Failed {
            error_type,
            message,
            ..
        } => (
            json!({ "errorMessage": message, "errorType": error_type })
                .to_string()
                .into(),
            true,
        ),
    };
    let mut response = (StatusCode::OK, body).into_response();
    let h = response.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&result.request_id) {
        h.insert("x-amzn-requestid", v);
    }
    if let Ok(v) = HeaderValue::from_str(&result.version) {
        h.insert("x-amz-executed-version", v);
    }
    if function_error {
        h.insert(
            "x-amz-function-error",
            HeaderValue::from_static("Unhandled"),
        );
    }
    if tail {
        let encoded = base64::engine::general_purpose::STANDARD.encode(log_tail(&result.log));
        if let Ok(v) = HeaderValue::from_str(&encoded) {
            h.insert("x-amz-log-result", v);
        }
    }
    Ok(response)
}
