//! HTTP for wisp: the Lambda-compatible REST API (2015-03-31 and friends) and wisp's own
//! extensions under `/wisp/v1`. Handlers translate between HTTP and [`wisp_engine::Engine`]
//! calls and hold no platform logic; errors leave in AWS's shape.

pub mod auth;
pub mod error;
mod esm_brokers;
pub mod lambda;
pub mod limits;
pub mod objects;
pub mod routes;
pub mod shapes;
pub mod triggers_api;
pub mod urls;
pub mod wisp_ext;

use std::sync::Arc;

use axum::Router;
use wisp_engine::Engine;

pub use error::ApiError;

/// The whole management and invoke API on one router, behind authentication.
///
/// The queue API (SQS's JSON protocol: `POST /` with `X-Amz-Target: AmazonSQS.*`) shares
/// the endpoint with the Lambda API, as on LocalStack: one `endpoint_url` for every boto3
/// client.
pub fn router(
    engine: Arc<Engine>,
    auth: auth::Auth,
    triggers: Arc<wisp_triggers::Triggers>,
    queues: Arc<wisp_queue::QueueService>,
    objects: Router,
) -> Router {
    let platform = Router::new()
        .merge(lambda::routes())
        .merge(wisp_ext::routes())
        .merge(urls::routes())
        .fallback(error::unknown_operation)
        .with_state(engine);
    Router::new()
        .merge(auth::routes().with_state(auth.clone()))
        .merge(triggers_api::routes().with_state(triggers))
        .merge(wisp_queue::router(queues))
        .merge(platform)
        .layer(axum::middleware::from_fn_with_state(auth, auth::layer))
        .layer(axum::middleware::from_fn_with_state(
            limits::Limits::default(),
            limits::layer,
        ))
        // S3 requests go to the object service before the API's own layers: their bodies
        // stream (up to 5 GiB) and the S3 service verifies its signatures itself,
        // aws-chunked uploads included.
        .layer(axum::middleware::from_fn_with_state(
            objects,
            objects::route,
        ))
}
