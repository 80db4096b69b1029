//! Function URLs: the management API (2021-10-31) and the listener that serves the URLs
//! themselves, on a port of its own so that no URL path can collide with the
//! AWS-compatible API. A URL is `http://<listener>/<url-id>/...`; the path below the
//! URL id is the event's `rawPath`, as below a URL's root on AWS.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use wisp_auth::SignedRequest;
use wisp_core::limits::{CONTROL_REQUEST_MAX_BYTES, SYNC_PAYLOAD_MAX_BYTES};
use wisp_engine::{Engine, Invoked, UrlInput};
use wisp_runtime::{HttpHead, HttpRequest, Outcome};
use wisp_store::FunctionUrl;

use crate::auth::Auth;
use crate::error::{parse_json, read_body, ApiResult};

type Params = Query<std::collections::HashMap<String, String>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
struct UrlConfigBody {
    auth_type: Option<String>,
    cors: Option<Value>,
    invoke_mode: Option<String>,
}

fn url_json(engine: &Engine, url: &FunctionUrl, with_modified: bool) -> Value {
    let qualifier = (url.qualifier != "$LATEST").then_some(url.qualifier.as_str());
    let mut doc = json!({
        "FunctionUrl": engine.url_of(url),
        "FunctionArn": wisp_core::name::function_arn(&engine.config().region, &url.function, qualifier),
        "AuthType": url.auth_type,
        "CreationTime": url.created,
        "InvokeMode": url.invoke_mode,
    });
    if let Some(c) = &url.cors {
        doc["Cors"] = c.clone();
    }
    if with_modified {
        doc["LastModifiedTime"] = url.modified.clone().into();
    }
    doc
}

async fn body_input(body: Body, op: &str) -> ApiResult<UrlInput> {
    let bytes = read_body(body, CONTROL_REQUEST_MAX_BYTES, op).await?;
    let req: UrlConfigBody = parse_json(&bytes)?;
    Ok(UrlInput {
        auth_type: req.auth_type,
        cors: req.cors,
        invoke_mode: req.invoke_mode,
    })
}

async fn create(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
    Query(p): Params,
    body: Body,
) -> ApiResult<Response> {
    let input = body_input(body, "CreateFunctionUrlConfig").await?;
    let url = engine.create_url(&name, p.get("Qualifier").map(String::as_str), input)?;
    Ok((StatusCode::CREATED, Json(url_json(&engine, &url, false))).into_response())
}

async fn read(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
    Query(p): Params,
) -> ApiResult<Json<Value>> {
    let url = engine.get_url(&name, p.get("Qualifier").map(String::as_str))?;
    Ok(Json(url_json(&engine, &url, true)))
}

async fn update(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
    Query(p): Params,
    body: Body,
) -> ApiResult<Json<Value>> {
    let input = body_input(body, "UpdateFunctionUrlConfig").await?;
    let url = engine.update_url(&name, p.get("Qualifier").map(String::as_str), input)?;
    Ok(Json(url_json(&engine, &url, true)))
}

async fn remove(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
    Query(p): Params,
) -> ApiResult<StatusCode> {
    engine.delete_url(&name, p.get("Qualifier").map(String::as_str))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list(
    State(engine): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let urls: Vec<Value> = engine
        .list_urls(&name)?
        .iter()
        .map(|u| url_json(&engine, u, true))
        .collect();
    Ok(Json(json!({ "FunctionUrlConfigs": urls })))
}

/// The management routes, on the main API.
pub fn routes() -> Router<Arc<Engine>> {
    Router::new()
        .route(
            "/2021-10-31/functions/{name}/url",
            get(read).post(create).put(update).delete(remove),
        )
        .route("/2021-10-31/functions/{name}/urls", get(list))
}

#[derive(Clone)]
struct UrlState {
    engine: Arc<Engine>,
    auth: Auth,
}

/// The router of the URL listener.
pub fn url_router(engine: Arc<Engine>, auth: Auth) -> Router {
    Router::new()
        .fallback(serve)
        .with_state(UrlState { engine, auth })
        .layer(axum::middleware::from_fn_with_state(
            crate::limits::Limits::default(),
            crate::limits::layer,
        ))
}

pub(crate) fn message(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({ "Message": text }))).into_response()
}

fn is_text(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return true };
    let ct = ct.to_ascii_lowercase();
    ct.starts_with("text/")
        || [
            "json",
            "xml",
            "javascript",
            "x-www-form-urlencoded",
            "yaml",
            "csv",
        ]
        .iter()
        .any(|t| ct.contains(t))
}

/// How an HTTP front (function URLs, routes) words its own failures.
pub(crate) struct HttpAnswers {
    pub function_error: StatusCode,
    pub throttled: &'static str,
    pub not_found: &'static str,
    pub message: fn(StatusCode, &str) -> Response,
}

/// Function URLs answer as Lambda's do.
const URL_ANSWERS: HttpAnswers = HttpAnswers {
    function_error: StatusCode::BAD_GATEWAY,
    throttled: "Rate Exceeded.",
    not_found: "No function URL here.",
    message,
};

/// Invokes `target` for an HTTP request and maps the result (or the failure) to HTTP. A
/// function that takes HTTP (wasm) answers the request itself; any other gets the payload
/// 2.0 event and its result is mapped as Lambda maps it.
pub(crate) async fn invoke_for_http(
    engine: &Arc<Engine>,
    target: &str,
    request: HttpRequest,
    context: EventContext<'_>,
    request_id: &str,
    answers: &HttpAnswers,
) -> Response {
    let say = answers.message;
    let invoked = engine
        .invoke_http(target, request, request_id.to_string(), |r| {
            bytes::Bytes::from(event(r, &context, request_id).to_string())
        })
        .await;
    match invoked {
        Ok(Invoked::Done(result)) => match (result.outcome, result.http) {
            (Outcome::Success(body), Some(head)) => head_response(*head, body),
            (Outcome::Success(body), None) => http_response(&body),
            _ => say(answers.function_error, "Internal Server Error"),
        },
        Ok(_) => say(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
        Err(e) if e.kind == wisp_core::ErrorKind::TooManyRequests => {
            say(StatusCode::TOO_MANY_REQUESTS, answers.throttled)
        }
        Err(e) if e.kind == wisp_core::ErrorKind::RequestTooLarge => {
            say(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")
        }
        Err(e) if e.kind == wisp_core::ErrorKind::ResourceNotFound => {
            say(StatusCode::NOT_FOUND, answers.not_found)
        }
        Err(e) => {
            tracing::warn!(error = %e, target, "HTTP invocation failed");
            say(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// A function's own HTTP answer, as it gave it; the framing headers are the server's.
fn head_response(head: HttpHead, body: bytes::Bytes) -> Response {
    let status = StatusCode::from_u16(head.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, body).into_response();
    let mut headers = head.headers;
    for framing in [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "trailer",
    ] {
        headers.remove(framing);
    }
    if !headers.contains_key("content-type") {
        response.headers_mut().remove("content-type");
    }
    response.headers_mut().extend(headers);
    response
}

/// What the payload 2.0 event says of a request besides the request itself.
pub(crate) struct EventContext<'a> {
    pub source_ip: String,
    /// API Gateway's `apiId` (a URL's id, or "wisp-routes").
    pub api_id: &'a str,
    /// `$default` for a URL, `POST /orders/{id}` for a route.
    pub route_key: &'a str,
    pub path_parameters: Option<&'a BTreeMap<String, String>>,
}

/// The request a front received, for a function: `path` is below a URL's root (for a
/// route, the whole path).
pub(crate) fn http_request(
    parts: axum::http::request::Parts,
    path: String,
    body: bytes::Bytes,
) -> HttpRequest {
    HttpRequest {
        query: parts.uri.query().unwrap_or("").to_string(),
        method: parts.method,
        path,
        headers: parts.headers,
        body,
    }
}

/// The API Gateway HTTP API payload (format 2.0) that Lambda sends for a URL request.
pub(crate) fn event(req: &HttpRequest, context: &EventContext<'_>, request_id: &str) -> Value {
    let HttpRequest {
        method,
        path: raw_path,
        query: raw_query,
        headers,
        body,
    } = req;
    let body: &[u8] = body;
    let source_ip = context.source_ip.as_str();
    let mut hmap: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies: Vec<String> = Vec::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name.as_str() == "cookie" {
            cookies.extend(
                value
                    .split(';')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty()),
            );
            continue;
        }
        hmap.entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(raw_query.as_bytes()) {
        query
            .entry(k.into_owned())
            .and_modify(|e| {
                e.push(',');
                e.push_str(&v);
            })
            .or_insert_with(|| v.into_owned());
    }
    let now_ms = wisp_core::time::now_ms();
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(now_ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let time_text = format!(
        "{:02}/{}/{:04}:{:02}:{:02}:{:02} +0000",
        t.day(),
        MONTHS[u8::from(t.month()) as usize - 1],
        t.year(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let text = is_text(headers.get("content-type").and_then(|v| v.to_str().ok()));
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut doc = json!({
        "version": "2.0",
        "routeKey": context.route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": hmap,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": context.api_id,
            "domainName": host,
            "domainPrefix": context.api_id,
            "http": {
                "method": method.as_str(),
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or(""),
            },
            "requestId": request_id,
            "routeKey": context.route_key,
            "stage": "$default",
            "time": time_text,
            "timeEpoch": now_ms,
        },
        "isBase64Encoded": !text && !body.is_empty(),
    });
    if !cookies.is_empty() {
        doc["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        doc["queryStringParameters"] = json!(query);
    }
    if let Some(params) = context.path_parameters.filter(|p| !p.is_empty()) {
        doc["pathParameters"] = json!(params);
    }
    if !body.is_empty() {
        doc["body"] = if text {
            String::from_utf8_lossy(body).into_owned().into()
        } else {
            base64::engine::general_purpose::STANDARD
                .encode(body)
                .into()
        };
    }
    doc
}

/// Maps a handler's result to HTTP as Lambda does: a document with `statusCode` is a
/// response description; anything else is a 200 JSON body.
pub(crate) fn http_response(result: &[u8]) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(result).ok();
    let Some(Value::Object(doc)) = parsed.as_ref().filter(|v| v.get("statusCode").is_some()) else {
        let mut r = (StatusCode::OK, result.to_vec()).into_response();
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        return r;
    };
    let status = doc
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body: Vec<u8> = match doc.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if doc.get("isBase64Encoded") == Some(&Value::Bool(true)) => {
            match base64::engine::general_purpose::STANDARD.decode(s) {
                Ok(b) => b,
                Err(_) => {
                    return message(
                        StatusCode::BAD_GATEWAY,
                        "The function returned a body that is not valid base64.",
                    )
                }
            }
        }
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(other) => other.to_string().into_bytes(),
    };
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Some(Value::Object(headers)) = doc.get("headers") {
        for (k, v) in headers {
            let value = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(k.as_str()),
                HeaderValue::from_str(&value),
            ) {
                h.insert(name, value);
            }
        }
    }
    if let Some(Value::Array(cookies)) = doc.get("cookies") {
        for c in cookies.iter().filter_map(Value::as_str) {
            if let Ok(v) = HeaderValue::from_str(c) {
                h.append("set-cookie", v);
            }
        }
    }
    response
}

fn cors_list(cors: &Value, key: &str) -> Vec<String> {
    cors[key]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Adds the CORS headers the URL's configuration allows for this request's origin.
pub(crate) fn apply_cors(
    cors: Option<&Value>,
    origin: Option<&HeaderValue>,
    response: &mut Response,
    preflight: bool,
) {
    let (Some(cors), Some(origin)) = (cors, origin.and_then(|o| o.to_str().ok())) else {
        return;
    };
    let origins = cors_list(cors, "AllowOrigins");
    let allowed = origins
        .iter()
        .any(|o| o == "*" || o.eq_ignore_ascii_case(origin));
    if !allowed {
        return;
    }
    let h = response.headers_mut();
    let credentials = cors["AllowCredentials"].as_bool() == Some(true);
    let value = if origins.iter().any(|o| o == "*") && !credentials {
        "*"
    } else {
        origin
    };
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    put("access-control-allow-origin", value);
    if credentials {
        put("access-control-allow-credentials", "true");
    }
    if preflight {
        let methods = cors_list(cors, "AllowMethods");
        if !methods.is_empty() {
            put("access-control-allow-methods", &methods.join(","));
        }
        let allow_headers = cors_list(cors, "AllowHeaders");
        if !allow_headers.is_empty() {
            put("access-control-allow-headers", &allow_headers.join(","));
        }
        if let Some(age) = cors["MaxAge"].as_u64() {
            put("access-control-max-age", &age.to_string());
        }
    } else {
        let expose = cors_list(cors, "ExposeHeaders");
        if !expose.is_empty() {
            put("access-control-expose-headers", &expose.join(","));
        }
    }
}

async fn serve(
    State(state): State<UrlState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let trimmed = path.trim_start_matches('/');
    let (url_id, rest) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    let url = match state.engine.url_by_id(url_id) {
        Ok(Some(url)) => url,
        Ok(None) => return message(StatusCode::NOT_FOUND, "No function URL here."),
        Err(e) => return message(StatusCode::INTERNAL_SERVER_ERROR, &e.message),
    };
    let raw_path = format!("/{rest}");
    let body = match axum::body::to_bytes(body, SYNC_PAYLOAD_MAX_BYTES).await {
        Ok(b) => b,
        Err(_) => return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
    };
    let origin = parts.headers.get("origin").cloned();
    if parts.method == Method::OPTIONS
        && url.cors.is_some()
        && parts.headers.contains_key("access-control-request-method")
    {
        let mut response = StatusCode::OK.into_response();
        apply_cors(url.cors.as_ref(), origin.as_ref(), &mut response, true);
        return response;
    }
    if url.auth_type == "AWS_IAM" {
        if let Some(keys) = &state.auth.keys {
            let headers = crate::auth::header_pairs(&parts.headers);
            let signed = SignedRequest {
                method: parts.method.as_str(),
                raw_path: path,
                raw_query: parts.uri.query().unwrap_or(""),
                headers: &headers,
                body: &body,
            };
            let keys = keys.read().unwrap_or_else(|p| p.into_inner());
            let verified = wisp_auth::verify(&signed, time::OffsetDateTime::now_utc(), |id| {
                keys.find(id).map(|k| k.secret_access_key.clone())
            });
            if let Err(e) = verified {
                return message(StatusCode::FORBIDDEN, &format!("Forbidden: {e}"));
            }
        }
    }
    let request_id = uuid::Uuid::new_v4().to_string();
    let context = EventContext {
        source_ip: peer.ip().to_string(),
        api_id: &url.url_id,
        route_key: "$default",
        path_parameters: None,
    };
    let target = format!("{}:{}", url.function, url.qualifier);
    let request = http_request(parts, raw_path, body);
    let mut response = invoke_for_http(
        &state.engine,
        &target,
        request,
        context,
        &request_id,
        &URL_ANSWERS,
    )
    .await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    apply_cors(url.cors.as_ref(), origin.as_ref(), &mut response, false);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(result: &str, status: u16, body: &str) {
        let r = http_response(result.as_bytes());
        assert_eq!(r.status().as_u16(), status, "{result}");
        let bytes = futures_executor_block(r);
        assert_eq!(bytes, body, "{result}");
    }

    fn futures_executor_block(r: Response) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let b = rt
            .block_on(axum::body::to_bytes(r.into_body(), 1 << 20))
            .unwrap();
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[test]
    fn maps_results_like_lambda() {
        check(r#"{"statusCode": 201, "body": "made"}"#, 201, "made");
        check(
            r#"{"statusCode": 200, "body": "aGk=", "isBase64Encoded": true}"#,
            200,
            "hi",
        );
        check(
            r#"{"order_handled": true}"#,
            200,
            r#"{"order_handled": true}"#,
        );
        check(r#""plain""#, 200, r#""plain""#);
        check(r#"{"statusCode": 204}"#, 204, "");
    }
}
