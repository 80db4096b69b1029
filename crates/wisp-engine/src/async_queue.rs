//! The worker that runs accepted asynchronous invocations from the durable queue.
//!
//! An event leaves the queue only after its invocation succeeded or used up its attempts
//! (one try and two retries, with backoff), so a crash at any point means the event runs
//! again after restart: at least once, never lost. Which events are running is kept in
//! memory only, for the same reason.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::Notify;
use wisp_core::{ErrorKind, InvocationType};
use wisp_runtime::Outcome;
use wisp_store::AsyncEvent;

use crate::Engine;

/// How long a throttled event waits before it is tried again (not counted as an attempt).
const THROTTLE_RETRY: Duration = Duration::from_millis(500);
/// Upper bound on the worker's sleep when nothing is due.
const IDLE_POLL: Duration = Duration::from_secs(1);

pub struct AsyncQueue {
    wake: Notify,
    running: Mutex<Running>,
    stopped: AtomicBool,
}

/// Events being run, and those that finished since the worker began its latest read of
/// the queue: the read may predate their update (a retry pushed later, a completion), so
/// that read's copy of them is stale and must not start them again.
#[derive(Default)]
struct Running {
    ids: HashSet<i64>,
    finished: HashSet<i64>,
}

impl AsyncQueue {
    pub fn new() -> Self {
        AsyncQueue {
            wake: Notify::new(),
            running: Mutex::new(Running::default()),
            stopped: AtomicBool::new(false),
        }
    }

    pub fn notify(&self) {
        self.wake.notify_one();
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for AsyncQueue {
    fn default() -> Self {
        Self::new()
    }
}

pub fn spawn_worker(engine: Arc<Engine>) {
    tokio::spawn(async move {
        loop {
            if engine.queue.stopped.load(Ordering::Acquire) {
                return;
            }
            let notified = engine.queue.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (capacity, in_flight) = {
                let mut running = engine.queue.running();
                // What finished before this read is in it.
                running.finished.clear();
                let n = running.ids.len();
                (engine.cfg.async_concurrency.saturating_sub(n), n)
            };
            if capacity > 0 {
                let now = wisp_core::time::now_ms();
                let store = engine.store.clone();
                let fetch = capacity + in_flight;
                let due = tokio::task::spawn_blocking(move || store.due_events(now, fetch)).await;
                match due {
                    Ok(Ok(events)) => {
                        let mut running = engine.queue.running();
                        let fresh: Vec<AsyncEvent> = events
                            .into_iter()
                            .filter(|e| {
                                !running.ids.contains(&e.id) && !running.finished.contains(&e.id)
                            })
                            .take(capacity)
                            .collect();
                        for event in fresh {
                            running.ids.insert(event.id);
                            tokio::spawn(run_event(engine.clone(), event));
                        }
                    }
                    Ok(Err(e)) => tracing::error!(error = %e, "could not read the async queue"),
                    Err(e) => tracing::error!(error = %e, "async queue read panicked"),
                }
            }
            let sleep = match engine.store.next_due_ms() {
                Ok(Some(due)) => {
                    let wait = (due - wisp_core::time::now_ms()).max(0) as u64;
                    Duration::from_millis(wait).min(IDLE_POLL)
                }
                _ => IDLE_POLL,
            };
            // With every slot busy, wait for one to free up (run_event notifies).
            let sleep = if capacity == 0 {
                IDLE_POLL
            } else {
                sleep.max(Duration::from_millis(5))
            };
            let _ = tokio::time::timeout(sleep, notified).await;
        }
    });
}

async fn run_event(engine: Arc<Engine>, event: AsyncEvent) {
    let id = event.id;
    let cfg = engine.invoke_config_for(&event.function, event.qualifier.as_deref());
    let age_ms = wisp_core::time::now_ms() - event.enqueued_ms;
    let outcome = if age_ms > cfg.max_age_s as i64 * 1000 {
        Attempt::Expired
    } else {
        attempt(&engine, &event).await
    };
    let base = engine.cfg.async_retry_base;
    let attempts = event.attempts + 1;
    let store = engine.store.clone();
    let result = match outcome {
        Attempt::Done { version, body } => {
            let delivery = cfg.on_success.as_deref().map(|d| {
                let doc = record(
                    &engine,
                    &event,
                    "Success",
                    attempts,
                    Some((&version, &body, "")),
                );
                (d.to_string(), doc)
            });
            finish(&engine, &event, delivery, None, attempts).await
        }
        Attempt::Throttled => {
            let due = wisp_core::time::now_ms() + THROTTLE_RETRY.as_millis() as i64;
            let previous = event.attempts;
            blocking(move || store.retry_event(id, previous, due, "throttled")).await
        }
        Attempt::Failed {
            version,
            body,
            error,
        } if attempts > cfg.max_retries => {
            tracing::warn!(request_id = %event.request_id, function = %event.function, %error, "async event failed after {attempts} attempts");
            let delivery = cfg.on_failure.as_deref().map(|d| {
                let doc = record(
                    &engine,
                    &event,
                    "RetriesExhausted",
                    attempts,
                    Some((&version, &body, "Unhandled")),
                );
                (d.to_string(), doc)
            });
            finish(&engine, &event, delivery, Some(error), attempts).await
        }
        Attempt::Failed { error, .. } => {
            let delay = base * 2u32.pow(attempts - 1);
            let due = wisp_core::time::now_ms() + delay.as_millis() as i64;
            blocking(move || store.retry_event(id, attempts, due, &error)).await
        }
        Attempt::Expired => {
            tracing::warn!(request_id = %event.request_id, function = %event.function, "async event older than its maximum age");
            let delivery = cfg.on_failure.as_deref().map(|d| {
                (
                    d.to_string(),
                    record(&engine, &event, "EventAgeExceeded", event.attempts, None),
                )
            });
            finish(
                &engine,
                &event,
                delivery,
                Some("EventAgeExceeded".into()),
                event.attempts,
            )
            .await
        }
        Attempt::Gone => blocking(move || store.complete_event(id, None)).await,
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "could not update the async queue");
    }
    {
        let mut running = engine.queue.running();
        running.ids.remove(&id);
        running.finished.insert(id);
    }
    engine.queue.notify();
}

async fn blocking(
    f: impl FnOnce() -> wisp_store::Result<()> + Send + 'static,
) -> Result<(), String> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The function's dead-letter queue (`DeadLetterConfig.TargetArn`), if it names a queue.
fn dead_letter_queue(engine: &Engine, event: &AsyncEvent) -> Option<String> {
    let target = engine
        .resolve(&event.function, event.qualifier.as_deref())
        .ok()?;
    let arn = target
        .spec
        .extra
        .get("DeadLetterConfig")?
        .get("TargetArn")?
        .as_str()?;
    arn.starts_with("arn:aws:sqs:").then(|| arn.to_string())
}

/// Ends an event. `delivery` is a destination and its record; `failure` is set when the
/// event failed for good. A function destination is queued in the same transaction that
/// removes the event; a queue (destination, or the function's dead-letter queue, which
/// gets the event itself) is sent first, and the event is removed after (a crash between
/// may deliver twice, never zero times). A failure with nowhere to go stays as a dead
/// letter, to be redriven.
async fn finish(
    engine: &Engine,
    event: &AsyncEvent,
    delivery: Option<(String, Value)>,
    failure: Option<String>,
    attempts: u32,
) -> Result<(), String> {
    let store = engine.store.clone();
    let id = event.id;
    let queue_target = match (&delivery, &failure) {
        (Some((arn, doc)), _) if arn.starts_with("arn:aws:sqs:") => {
            Some((arn.clone(), doc.to_string()))
        }
        (None, Some(_)) => dead_letter_queue(engine, event)
            .map(|arn| (arn, String::from_utf8_lossy(&event.payload).into_owned())),
        _ => None,
    };
    if let Some((arn, body)) = queue_target {
        let sent = match engine.queue_sink.get() {
            Some(sink) => sink.send(&arn, body).await,
            None => Err("this server has no queues".to_string()),
        };
        if let Err(e) = sent {
            // Keep the event and try the delivery again later.
            tracing::warn!(request_id = %event.request_id, queue = %arn, error = %e, "could not deliver to a queue");
            let due = wisp_core::time::now_ms() + 1000;
            let previous = event.attempts;
            return blocking(move || {
                store.retry_event(id, previous, due, "destination unavailable")
            })
            .await;
        }
        return blocking(move || store.complete_event(id, None)).await;
    }
    let follow_up = delivery.and_then(|(arn, doc)| engine.destination_event(&arn, &doc));
    blocking(move || match (follow_up, failure) {
        (Some(dest), _) => store.complete_event(id, Some(&dest)),
        (None, None) => store.complete_event(id, None),
        (None, Some(error)) => store.fail_event(id, attempts, &error, None),
    })
    .await
}

/// Lambda's destination record.
fn record(
    engine: &Engine,
    event: &AsyncEvent,
    condition: &str,
    attempts: u32,
    response: Option<(&str, &Bytes, &str)>,
) -> Value {
    let qualifier = event.qualifier.as_deref().unwrap_or("$LATEST");
    let mut doc = json!({
        "version": "1.0",
        "timestamp": wisp_core::time::lambda_timestamp(wisp_core::time::now_ms()).replace("+0000", "Z"),
        "requestContext": {
            "requestId": event.request_id,
            "functionArn": wisp_core::name::function_arn(&engine.cfg.region, &event.function, Some(qualifier)),
            "condition": condition,
            "approximateInvokeCount": attempts,
        },
        "requestPayload": serde_json::from_slice::<Value>(&event.payload).unwrap_or(Value::Null),
    });
    if let Some((version, body, function_error)) = response {
        let mut context = json!({ "statusCode": 200, "executedVersion": version });
        if !function_error.is_empty() {
            context["functionError"] = function_error.into();
        }
        doc["responseContext"] = context;
        doc["responsePayload"] = serde_json::from_slice::<Value>(body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
    }
    doc
}

enum Attempt {
    Done {
        version: String,
        body: Bytes,
    },
    Throttled,
    Failed {
        version: String,
        body: Bytes,
        error: String,
    },
    /// Older than the maximum event age: not tried.
    Expired,
    /// The function no longer exists: the event has nowhere to go.
    Gone,
}

async fn attempt(engine: &Engine, event: &AsyncEvent) -> Attempt {
    let failed = |error: String| Attempt::Failed {
        version: event.qualifier.clone().unwrap_or_else(|| "$LATEST".into()),
        body: Bytes::from(
            json!({ "errorMessage": error, "errorType": "ServiceException" }).to_string(),
        ),
        error,
    };
    let target = match engine.resolve(&event.function, event.qualifier.as_deref()) {
        Ok(t) => t,
        Err(e) if e.kind == ErrorKind::ResourceNotFound => {
            tracing::warn!(request_id = %event.request_id, function = %event.function, "dropping async event: function deleted");
            return Attempt::Gone;
        }
        Err(e) => return failed(e.message),
    };
    let invoked_arn = wisp_core::name::function_arn(
        &engine.cfg.region,
        &event.function,
        event.qualifier.as_deref(),
    );
    let req = crate::InvokeRequest {
        target,
        request_id: event.request_id.clone(),
        payload: event.payload.clone().into(),
        invocation_type: InvocationType::Event,
        client_context: None,
        invoked_arn,
        http: None,
    };
    match engine.dispatcher.invoke(req).await {
        Ok(result) => match result.outcome {
            Outcome::Success(body) => Attempt::Done {
                version: result.version,
                body,
            },
            Outcome::FunctionError { error_type, body } => Attempt::Failed {
                version: result.version,
                body,
                error: error_type,
            },
            Outcome::Failed {
                error_type,
                message,
                ..
            } => Attempt::Failed {
                version: result.version,
                body: Bytes::from(
                    json!({ "errorMessage": message, "errorType": error_type }).to_string(),
                ),
                error: error_type,
            },
        },
        Err(e) if e.kind == ErrorKind::TooManyRequests => Attempt::Throttled,
        Err(e) => failed(e.message),
    }
}
