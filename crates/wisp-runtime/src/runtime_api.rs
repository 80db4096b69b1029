//! The server side of the AWS Lambda Runtime API (2018-06-01), one listener per instance.
//!
//! Each instance gets its own loopback port, so an instance can only ever receive its own
//! events. Handlers here only move data between the instance's process and the
//! [`crate::process`] code that drives it, through two channels.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{to_bytes, Body};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use bytes::Bytes;
use tokio::sync::mpsc;
use wisp_core::limits::SYNC_PAYLOAD_MAX_BYTES;

/// Largest error document a runtime may post.
const ERROR_BODY_MAX_BYTES: usize = 1024 * 1024;

/// An invocation handed to the runtime by `/next`.
#[derive(Debug)]
pub struct Delivered {
    pub request_id: String,
    pub payload: Bytes,
    pub deadline_ms: i64,
    pub invoked_function_arn: String,
    pub client_context: Option<String>,
    pub trace_id: String,
}

/// What the runtime told us.
#[derive(Debug)]
pub enum ApiEvent {
    /// The runtime asked for work: on the first call, its initialisation is complete.
    Next,
    Response {
        request_id: String,
        body: Bytes,
    },
    Error {
        request_id: String,
        error_type: String,
        body: Bytes,
    },
    InitError {
        error_type: String,
        body: Bytes,
    },
    ResponseTooLarge {
        request_id: String,
    },
}

struct ApiState {
    invocations: tokio::sync::Mutex<mpsc::Receiver<Delivered>>,
    events: mpsc::Sender<ApiEvent>,
    current: Mutex<Option<String>>,
}

/// A running Runtime API listener. Dropping it stops the listener.
pub struct RuntimeApi {
    pub addr: SocketAddr,
    pub invocations: mpsc::Sender<Delivered>,
    pub events: mpsc::Receiver<ApiEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn runtime_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let body = serde_json::json!({ "errorMessage": message, "errorType": error_type });
    (status, axum::Json(body)).into_response()
}

fn accepted() -> Response {
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({"status": "OK"})),
    )
        .into_response()
}

async fn next(State(state): State<Arc<ApiState>>) -> Response {
    let _ = state.events.send(ApiEvent::Next).await;
    let delivered = state.invocations.lock().await.recv().await;
    let Some(d) = delivered else {
        return runtime_error(
            StatusCode::GONE,
            "InstanceStopping",
            "the instance is stopping",
        );
    };
    *state.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(d.request_id.clone());
    let mut headers = HeaderMap::new();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    put("lambda-runtime-aws-request-id", &d.request_id);
    put("lambda-runtime-deadline-ms", &d.deadline_ms.to_string());
    put(
        "lambda-runtime-invoked-function-arn",
        &d.invoked_function_arn,
    );
    put("lambda-runtime-trace-id", &d.trace_id);
    if let Some(cc) = &d.client_context {
        put("lambda-runtime-client-context", cc);
    }
    put("content-type", "application/json");
    (StatusCode::OK, headers, d.payload).into_response()
}

/// Checks that `id` is the invocation in progress, and ends it.
fn finish(state: &ApiState, id: &str) -> bool {
    let mut current = state.current.lock().unwrap_or_else(|p| p.into_inner());
    if current.as_deref() == Some(id) {
        *current = None;
        true
    } else {
        false
    }
}

async fn response(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    body: Body,
) -> Response {
    let body = match to_bytes(body, SYNC_PAYLOAD_MAX_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            if finish(&state, &id) {
                let _ = state
                    .events
                    .send(ApiEvent::ResponseTooLarge { request_id: id })
                    .await;
            }
            return runtime_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &format!("Response payload size exceeded maximum allowed payload size ({SYNC_PAYLOAD_MAX_BYTES} bytes)."),
            );
        }
    };
    if !finish(&state, &id) {
        return runtime_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            "Invalid request ID",
        );
    }
    let _ = state
        .events
        .send(ApiEvent::Response {
            request_id: id,
            body,
        })
        .await;
    accepted()
}

/// Reads an error document, normalising it to `{"errorMessage","errorType",...}`.
async fn error_document(headers: &HeaderMap, body: Body) -> (String, Bytes) {
    let raw = to_bytes(body, ERROR_BODY_MAX_BYTES)
        .await
        .unwrap_or_default();
    let header_type = headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match serde_json::from_slice::<serde_json::Value>(&raw) {
        Ok(serde_json::Value::Object(doc)) => {
            let error_type = doc
                .get("errorType")
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .or(header_type)
                .unwrap_or_else(|| "Unhandled".into());
            (error_type, raw)
        }
        _ => {
            let error_type = header_type.unwrap_or_else(|| "Unhandled".into());
            let doc = serde_json::json!({
                "errorMessage": String::from_utf8_lossy(&raw),
                "errorType": error_type,
            });
            (error_type, Bytes::from(doc.to_string()))
        }
    }
}

async fn error(
    State(state): State<Arc<ApiState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (error_type, body) = error_document(&headers, body).await;
    if !finish(&state, &id) {
        return runtime_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            "Invalid request ID",
        );
    }
    let _ = state
        .events
        .send(ApiEvent::Error {
            request_id: id,
            error_type,
            body,
        })
        .await;
    accepted()
}

async fn init_error(
    State(state): State<Arc<ApiState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (error_type, body) = error_document(&headers, body).await;
    let _ = state
        .events
        .send(ApiEvent::InitError { error_type, body })
        .await;
    accepted()
}

impl RuntimeApi {
    /// Binds a loopback port and serves the Runtime API on it.
    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (inv_tx, inv_rx) = mpsc::channel(1);
        let (ev_tx, ev_rx) = mpsc::channel(16);
        let state = Arc::new(ApiState {
            invocations: tokio::sync::Mutex::new(inv_rx),
            events: ev_tx,
            current: Mutex::new(None),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state);
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(RuntimeApi {
            addr,
            invocations: inv_tx,
            events: ev_rx,
            task,
        })
    }
}
