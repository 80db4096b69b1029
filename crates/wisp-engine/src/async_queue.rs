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

use tokio::sync::Notify;
use wisp_core::limits::ASYNC_MAX_ATTEMPTS;
use wisp_core::{ErrorKind, InvocationType};
use wisp_store::AsyncEvent;

use crate::Engine;

/// How long a throttled event waits before it is tried again (not counted as an attempt).
const THROTTLE_RETRY: Duration = Duration::from_millis(500);
/// Upper bound on the worker's sleep when nothing is due.
const IDLE_POLL: Duration = Duration::from_secs(1);

pub struct AsyncQueue {
    wake: Notify,
    running: Mutex<HashSet<i64>>,
    stopped: AtomicBool,
}

impl AsyncQueue {
    pub fn new() -> Self {
        AsyncQueue {
            wake: Notify::new(),
            running: Mutex::new(HashSet::new()),
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

    fn running(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
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
            let capacity = engine
                .cfg
                .async_concurrency
                .saturating_sub(engine.queue.running().len());
            if capacity > 0 {
                let now = wisp_core::time::now_ms();
                let store = engine.store.clone();
                let fetch = capacity + engine.queue.running().len();
                let due = tokio::task::spawn_blocking(move || store.due_events(now, fetch)).await;
                match due {
                    Ok(Ok(events)) => {
                        for event in events
                            .into_iter()
                            .filter(|e| !engine.queue.running().contains(&e.id))
                            .take(capacity)
                        {
                            engine.queue.running().insert(event.id);
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
    let outcome = attempt(&engine, &event).await;
    let store = engine.store.clone();
    let base = engine.cfg.async_retry_base;
    let result = tokio::task::spawn_blocking(move || match outcome {
        Attempt::Done => store.complete_event(id),
        Attempt::Throttled => {
            let due = wisp_core::time::now_ms() + THROTTLE_RETRY.as_millis() as i64;
            store.retry_event(id, event.attempts, due, "throttled")
        }
        Attempt::Failed(error) => {
            let attempts = event.attempts + 1;
            if attempts >= ASYNC_MAX_ATTEMPTS {
                tracing::warn!(request_id = %event.request_id, function = %event.function, %error, "async event failed after {attempts} attempts");
                store.fail_event(id, attempts, &error)
            } else {
                let delay = base * 2u32.pow(attempts - 1);
                let due = wisp_core::time::now_ms() + delay.as_millis() as i64;
                store.retry_event(id, attempts, due, &error)
            }
        }
        Attempt::Gone => store.complete_event(id),
    })
    .await;
    if let Ok(Err(e)) = result {
        tracing::error!(error = %e, "could not update the async queue");
    }
    engine.queue.running().remove(&id);
    engine.queue.notify();
}

enum Attempt {
    Done,
    Throttled,
    Failed(String),
    /// The function no longer exists: the event has nowhere to go.
    Gone,
}

async fn attempt(engine: &Engine, event: &AsyncEvent) -> Attempt {
    let target = match engine.resolve(&event.function, event.qualifier.as_deref()) {
        Ok(t) => t,
        Err(e) if e.kind == ErrorKind::ResourceNotFound => {
            tracing::warn!(request_id = %event.request_id, function = %event.function, "dropping async event: function deleted");
            return Attempt::Gone;
        }
        Err(e) => return Attempt::Failed(e.message),
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
    };
    match engine.dispatcher.invoke(req).await {
        Ok(result) => match result.outcome.error_type() {
            None => Attempt::Done,
            Some(error) => Attempt::Failed(error.to_string()),
        },
        Err(e) if e.kind == ErrorKind::TooManyRequests => Attempt::Throttled,
        Err(e) => Attempt::Failed(e.message),
    }
}
