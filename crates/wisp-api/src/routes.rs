//! The HTTP routes listener (API gateway): serves the `http` triggers on a port of its own,
//! apart from the management API, delivering API Gateway payload 2.0 events.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use wisp_core::limits::SYNC_PAYLOAD_MAX_BYTES;
use wisp_triggers::http::Match;
use wisp_triggers::Triggers;

use crate::urls::{apply_cors, http_request, invoke_for_http, EventContext, HttpAnswers};

fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "message": text }))).into_response()
}

/// Routes answer as API Gateway does.
const ROUTE_ANSWERS: HttpAnswers = HttpAnswers {
    function_error: StatusCode::INTERNAL_SERVER_ERROR,
    throttled: "Too Many Requests",
    not_found: "Not Found",
    message,
};

/// The router of the routes listener.
pub fn routes_router(triggers: Arc<Triggers>) -> Router {
    Router::new()
        .fallback(serve)
        .with_state(triggers)
        .layer(axum::middleware::from_fn_with_state(
            crate::limits::Limits::default(),
            crate::limits::layer,
        ))
}

async fn serve(
    State(triggers): State<Arc<Triggers>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let raw_path = parts.uri.path().to_string();
    let decoded: String = raw_path
        .split('/')
        .map(|segment| {
            percent_encoding::percent_decode_str(segment)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect::<Vec<_>>()
        .join("/");
    let table = triggers.routes();
    let preflight = parts.method == Method::OPTIONS
        && parts.headers.contains_key("access-control-request-method");
    let (route, params) = match table.find(parts.method.as_str(), &decoded) {
        Match::Found { route, params } if !(preflight && route.method != "OPTIONS") => {
            (route, params)
        }
        Match::Found { route, .. } | Match::MethodNotAllowed(_, Some(route))
            if preflight && route.cors.is_some() =>
        {
            let mut response = StatusCode::NO_CONTENT.into_response();
            apply_cors(
                route.cors.as_ref(),
                parts.headers.get("origin"),
                &mut response,
                true,
            );
            return response;
        }
        Match::Found { .. } | Match::NotFound => {
            return message(StatusCode::NOT_FOUND, "Not Found")
        }
        Match::MethodNotAllowed(allowed, _) => {
            let mut response = message(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
            if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                response.headers_mut().insert("allow", v);
            }
            return response;
        }
    };
    let body = match axum::body::to_bytes(body, SYNC_PAYLOAD_MAX_BYTES).await {
        Ok(b) => b,
        Err(_) => return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let context = EventContext {
        source_ip: peer.ip().to_string(),
        api_id: "wisp-routes",
        route_key: &route.route_key,
        path_parameters: Some(&params),
    };
    let target = match &route.qualifier {
        Some(q) => format!("{}:{q}", route.function),
        None => route.function.clone(),
    };
    let origin = parts.headers.get("origin").cloned();
    let request = http_request(parts, raw_path, body);
    let mut response = invoke_for_http(
        triggers.engine(),
        &target,
        request,
        context,
        &request_id,
        &ROUTE_ANSWERS,
    )
    .await;
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("apigw-requestid", v);
    }
    apply_cors(route.cors.as_ref(), origin.as_ref(), &mut response, false);
    response
}
