//! Sends S3 requests to the object service; everything else to the platform's API. Told
//! apart as LocalStack does: the service in the SigV4 credential scope (or other S3-only
//! markers), and, for unsigned requests, paths the platform does not serve.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower::ServiceExt;

/// Path prefixes of the Lambda, SQS and wisp APIs.
const PLATFORM_PREFIXES: &[&str] = &[
    "/2015-03-31/",
    "/2016-08-19/",
    "/2017-03-31/",
    "/2017-10-31/",
    "/2019-09-25/",
    "/2019-09-30/",
    "/2021-10-31/",
    "/wisp/",
    "/metrics",
];

fn is_platform(request: &Request) -> bool {
    let path = request.uri().path();
    (path == "/" && request.headers().contains_key("x-amz-target"))
        || PLATFORM_PREFIXES.iter().any(|p| path.starts_with(p))
}

fn signed(request: &Request) -> bool {
    request.headers().contains_key("authorization")
        || request
            .uri()
            .query()
            .is_some_and(|q| q.contains("X-Amz-Signature="))
}

pub async fn route(State(objects): State<Router>, request: Request, next: Next) -> Response {
    let s3 = wisp_objects::is_s3_request(&request) || (!signed(&request) && !is_platform(&request));
    if !s3 {
        return next.run(request).await;
    }
    match objects.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
    .into_response()
}
