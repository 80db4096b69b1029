//! Bounds on the work the API takes in at once: requests in flight, and requests whose
//! bodies are large (package uploads are buffered whole, up to ~68 MB each, so only a few
//! may be read at a time). Excess requests wait for a slot rather than being refused, so a
//! burst slows down instead of exhausting memory.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tokio::sync::Semaphore;
use wisp_core::limits::CONTROL_REQUEST_MAX_BYTES;

/// Requests being handled at once.
pub const MAX_IN_FLIGHT: usize = 1024;
/// Requests with a body over 1 MB (or of unknown length) being read at once.
pub const MAX_LARGE_BODIES: usize = 4;

#[derive(Clone)]
pub struct Limits {
    in_flight: Arc<Semaphore>,
    large: Arc<Semaphore>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            large: Arc::new(Semaphore::new(MAX_LARGE_BODIES)),
        }
    }
}

fn is_large(request: &Request) -> bool {
    let length = request
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match length {
        Some(n) => n > CONTROL_REQUEST_MAX_BYTES,
        // Chunked bodies have no declared length: count them as large.
        None => request.headers().contains_key("transfer-encoding"),
    }
}

pub async fn layer(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    // The semaphores are never closed, so acquiring cannot fail.
    let _slot = limits.in_flight.acquire().await.ok();
    let _large = if is_large(&request) {
        limits.large.acquire().await.ok()
    } else {
        None
    };
    next.run(request).await
}
