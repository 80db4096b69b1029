//! The Invoke entry point: payload checks, then the durable queue (Event) or the
//! dispatcher (RequestResponse).

use bytes::Bytes;
use wisp_core::error::Result;
use wisp_core::limits::{ASYNC_PAYLOAD_MAX_BYTES, SYNC_PAYLOAD_MAX_BYTES};
use wisp_core::{Error, ErrorKind, InvocationType};
use wisp_runtime::HttpRequest;
use wisp_store::AsyncEvent;

use crate::control::store_err;
use crate::{DispatchResult, Engine, InvokeRequest};

/// How the caller asked to invoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvokeMode {
    RequestResponse,
    Event,
    DryRun,
}

/// What Invoke returns.
#[derive(Debug)]
pub enum Invoked {
    Done(DispatchResult),
    Queued { request_id: String },
    DryRun,
}

fn check_payload(payload: &Bytes, limit: usize, operation: &str) -> Result<Bytes> {
    if payload.len() > limit {
        return Err(Error::too_large(limit, operation));
    }
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(Bytes::from_static(b"{}"));
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_err() {
        return Err(Error::new(
            ErrorKind::InvalidRequestContent,
            "Could not parse request body into json: the payload must be a JSON document.",
        ));
    }
    Ok(payload.clone())
}

impl Engine {
    pub async fn invoke(
        self: &std::sync::Arc<Self>,
        function: &str,
        qualifier: Option<&str>,
        mode: InvokeMode,
        payload: Bytes,
        client_context: Option<String>,
        request_id: Option<String>,
    ) -> Result<Invoked> {
        let limit = if mode == InvokeMode::Event {
            ASYNC_PAYLOAD_MAX_BYTES
        } else {
            SYNC_PAYLOAD_MAX_BYTES
        };
        let payload = check_payload(&payload, limit, "Invoke")?;
        let target = self.resolve(function, qualifier)?;
        let request_id = request_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let fref = wisp_core::parse_function_ref(function)?;
        let shown_qualifier = fref
            .qualifier
            .map(|q| q.to_string())
            .or(qualifier.map(str::to_string));
        match mode {
            InvokeMode::DryRun => Ok(Invoked::DryRun),
            InvokeMode::Event => {
                let now = wisp_core::time::now_ms();
                let event = AsyncEvent {
                    id: 0,
                    request_id: request_id.clone(),
                    function: target.spec.name.clone(),
                    qualifier: shown_qualifier,
                    payload: payload.to_vec(),
                    attempts: 0,
                    due_ms: now,
                    enqueued_ms: now,
                };
                let store = self.store.clone();
                tokio::task::spawn_blocking(move || store.enqueue_event(&event))
                    .await
                    .map_err(|e| Error::service(e.to_string()))?
                    .map_err(store_err)?;
                self.queue.notify();
                Ok(Invoked::Queued { request_id })
            }
            InvokeMode::RequestResponse => {
                let req = self.sync_request(
                    target,
                    shown_qualifier.as_deref(),
                    request_id,
                    payload,
                    client_context,
                    None,
                );
                self.run_to_completion(req).await
            }
        }
    }

    /// Invokes synchronously for an HTTP request received by a function URL or a route
    /// (`function` may carry a qualifier). A function whose runtime takes HTTP (wasm) gets
    /// the request itself; any other gets the API Gateway payload 2.0 event that `event`
    /// makes from it, built only then.
    pub async fn invoke_http(
        self: &std::sync::Arc<Self>,
        function: &str,
        request: HttpRequest,
        request_id: String,
        event: impl FnOnce(&HttpRequest) -> Bytes,
    ) -> Result<Invoked> {
        let target = self.resolve(function, None)?;
        let (payload, http) = if self.dispatcher.takes_http(&target.spec.runtime) {
            if request.body.len() > SYNC_PAYLOAD_MAX_BYTES {
                return Err(Error::too_large(SYNC_PAYLOAD_MAX_BYTES, "Invoke"));
            }
            (Bytes::new(), Some(Box::new(request)))
        } else {
            let payload = event(&request);
            if payload.len() > SYNC_PAYLOAD_MAX_BYTES {
                return Err(Error::too_large(SYNC_PAYLOAD_MAX_BYTES, "Invoke"));
            }
            (payload, None)
        };
        let qualifier = wisp_core::parse_function_ref(function)?
            .qualifier
            .map(|q| q.to_string());
        let req = self.sync_request(
            target,
            qualifier.as_deref(),
            request_id,
            payload,
            None,
            http,
        );
        self.run_to_completion(req).await
    }

    fn sync_request(
        &self,
        target: crate::Resolved,
        shown_qualifier: Option<&str>,
        request_id: String,
        payload: Bytes,
        client_context: Option<String>,
        http: Option<Box<HttpRequest>>,
    ) -> InvokeRequest {
        let invoked_arn =
            wisp_core::name::function_arn(&self.cfg.region, &target.spec.name, shown_qualifier);
        InvokeRequest {
            target,
            request_id,
            payload,
            invocation_type: InvocationType::RequestResponse,
            client_context,
            invoked_arn,
            http,
        }
    }

    /// Runs a synchronous invocation to completion even if the caller disconnects, as
    /// Lambda does: the invocation is recorded and its instance returned to the pool.
    async fn run_to_completion(&self, req: InvokeRequest) -> Result<Invoked> {
        let dispatcher = self.dispatcher.clone();
        let handle = tokio::spawn(async move { dispatcher.invoke(req).await });
        let result = handle.await.map_err(|e| Error::service(e.to_string()))??;
        Ok(Invoked::Done(result))
    }
}
