//! The dispatcher: admission, the warm pool, cold starts, and the record of every
//! invocation. The policy (who may run, which instance, when an idle one goes) lives in
//! `wisp-scheduler`; this module applies it with real time and real instances.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use wisp_core::{Error, InvocationRecord, InvocationStatus, InvocationType};
use wisp_runtime::{
    Executor, HttpHead, HttpRequest, Instance, Invocation, InvokeResult, Outcome, StartError,
};
use wisp_scheduler::{Admission, IdlePool};
use wisp_store::BlobStore;

use crate::records::RecordSink;
use crate::{EngineConfig, Resolved};

/// Instances are pooled per function, version and revision: a changed function never
/// reuses an instance of its old code or configuration.
type PoolKey = (String, String, String);

struct PoolState {
    admission: Admission,
    idle: IdlePool<PoolKey, Box<dyn Instance>>,
    /// Live instances, busy or idle.
    live: u32,
    /// The current revision of each (function, version) seen, to retire stale instances
    /// when they come back from an invocation.
    current: HashMap<(String, String), String>,
}

pub struct Dispatcher {
    executor: Arc<dyn Executor>,
    blobs: Arc<dyn BlobStore>,
    records: RecordSink,
    state: Mutex<PoolState>,
    released: tokio::sync::Notify,
    queue_wait: Duration,
    max_instances: u32,
    region: String,
    epoch: Instant,
    stopping: AtomicBool,
    metrics: crate::metrics::Metrics,
}

/// One invocation to dispatch.
pub struct InvokeRequest {
    pub target: Resolved,
    pub request_id: String,
    pub payload: Bytes,
    pub invocation_type: InvocationType,
    pub client_context: Option<String>,
    /// The ARN the caller used, with its qualifier if it gave one.
    pub invoked_arn: String,
    /// The HTTP request itself, for a function whose runtime takes HTTP (the payload is
    /// then empty).
    pub http: Option<Box<HttpRequest>>,
}

/// What the caller gets back.
#[derive(Debug)]
pub struct DispatchResult {
    pub request_id: String,
    pub version: String,
    pub outcome: Outcome,
    /// The invocation's log, as the records hold it (START ... REPORT).
    pub log: String,
    /// Status and headers when the function answered an HTTP request as HTTP.
    pub http: Option<Box<HttpHead>>,
}

/// Gives the admission slot back however the invocation ends (even if its future is
/// dropped because the caller went away).
struct Slot<'a> {
    dispatcher: &'a Dispatcher,
    function: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.dispatcher.lock().admission.release(&self.function);
        self.dispatcher.released.notify_waiters();
    }
}

/// Counts a checked-out instance as live until it is checked in; if the invocation's
/// future is dropped instead, the instance is dropped too (which kills it) and the count
/// is corrected here.
struct Lease<'a> {
    dispatcher: &'a Dispatcher,
    held: bool,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.held {
            self.dispatcher.lock().live -= 1;
        }
    }
}

fn stop_in_background(instance: Box<dyn Instance>) {
    tokio::spawn(instance.stop());
}

impl Dispatcher {
    pub fn start(
        cfg: &EngineConfig,
        executor: Arc<dyn Executor>,
        blobs: Arc<dyn BlobStore>,
        records: RecordSink,
    ) -> Arc<Self> {
        let dispatcher = Arc::new(Dispatcher {
            executor,
            blobs,
            records,
            state: Mutex::new(PoolState {
                admission: Admission::new(cfg.max_concurrency),
                idle: IdlePool::default(),
                live: 0,
                current: HashMap::new(),
            }),
            released: tokio::sync::Notify::new(),
            queue_wait: cfg.queue_wait,
            max_instances: cfg.max_instances.max(cfg.max_concurrency),
            region: cfg.region.clone(),
            epoch: Instant::now(),
            stopping: AtomicBool::new(false),
            metrics: crate::metrics::Metrics::default(),
        });
        tokio::spawn(reaper(Arc::downgrade(&dispatcher), cfg.keep_alive));
        dispatcher
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// Live instances: (idle, busy).
    pub fn instance_counts(&self) -> (usize, usize) {
        let state = self.lock();
        let idle = state.idle.len();
        (idle, (state.live as usize).saturating_sub(idle))
    }

    /// Waits up to the queue bound for an admission slot.
    async fn admit(&self, function: &str, reserved: Option<u32>) -> Result<Slot<'_>, Error> {
        let deadline = tokio::time::Instant::now() + self.queue_wait;
        loop {
            if self.stopping.load(Ordering::Acquire) {
                return Err(Error::service("The server is shutting down."));
            }
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let throttle = match self.lock().admission.try_admit(function, reserved) {
                Ok(()) => {
                    return Ok(Slot {
                        dispatcher: self,
                        function: function.to_string(),
                    })
                }
                Err(t) => t,
            };
            // Reserved concurrency of zero throttles at once: waiting cannot help.
            if reserved == Some(0) || tokio::time::timeout_at(deadline, notified).await.is_err() {
                self.metrics.throttle(function);
                return Err(Error::throttled(throttle.reason()));
            }
        }
    }

    /// Takes a warm instance or starts one. The bool says whether it is a cold start.
    async fn checkout(
        &self,
        key: &PoolKey,
        target: &Resolved,
    ) -> Result<(Box<dyn Instance>, bool), StartError> {
        let evicted = {
            let mut state = self.lock();
            state
                .current
                .insert((key.0.clone(), key.1.clone()), key.2.clone());
            if let Some(instance) = state.idle.checkout(key) {
                return Ok((instance, false));
            }
            let evicted = if state.live >= self.max_instances {
                state.idle.evict_oldest()
            } else {
                None
            };
            if evicted.is_none() {
                state.live += 1;
            }
            evicted
        };
        if let Some(old) = evicted {
            stop_in_background(old);
        }
        let code_dir = match self.blobs.code_dir(&target.spec.code_sha256) {
            Ok(dir) => dir,
            Err(e) => {
                self.lock().live -= 1;
                return Err(StartError::Unavailable(format!(
                    "the function's code is unavailable: {e}"
                )));
            }
        };
        match self
            .executor
            .start(&target.spec, &target.version, code_dir)
            .await
        {
            Ok(instance) => Ok((instance, true)),
            Err(e) => {
                self.lock().live -= 1;
                Err(e)
            }
        }
    }

    /// Checks a function's runtime-specific settings.
    pub(crate) fn check_config(
        &self,
        runtime: &str,
        env: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), Error> {
        self.executor
            .check_config(runtime, env)
            .map_err(Error::invalid)
    }

    /// Lets the executor forget what it derived from unreferenced packages.
    pub(crate) fn collect_garbage(&self, referenced: &[String]) {
        self.executor.collect_garbage(referenced);
    }

    /// Whether functions of `runtime` take HTTP requests as they are.
    pub(crate) fn takes_http(&self, runtime: &str) -> bool {
        self.executor.takes_http(runtime)
    }

    /// Lets the executor check and prepare a stored package at deploy time.
    pub(crate) async fn prepare(
        &self,
        runtime: &str,
        code_sha256: &str,
        code_dir: std::path::PathBuf,
    ) -> Result<(), String> {
        self.executor.prepare(runtime, code_sha256, code_dir).await
    }

    fn checkin(&self, key: PoolKey, instance: Box<dyn Instance>, reusable: bool) {
        let mut state = self.lock();
        let current = state.current.get(&(key.0.clone(), key.1.clone()));
        let fresh = current == Some(&key.2);
        if reusable && fresh && !self.stopping.load(Ordering::Acquire) {
            let now = self.now_ms();
            state.idle.checkin(key, instance, now);
        } else {
            state.live -= 1;
            drop(state);
            stop_in_background(instance);
        }
    }

    /// Stops idle instances of `function` (all versions if `version` is empty) whose
    /// revision is not `keep_revision`. Busy ones are stopped when they come back.
    pub fn retire(&self, function: &str, version: &str, keep_revision: &str) {
        let stale = {
            let mut state = self.lock();
            let versions: Vec<(String, String)> = state
                .current
                .keys()
                .filter(|(f, v)| f == function && (version.is_empty() || v == version))
                .cloned()
                .collect();
            for key in versions {
                if keep_revision.is_empty() {
                    state.current.remove(&key);
                } else {
                    state.current.insert(key, keep_revision.to_string());
                }
            }
            let stale = state.idle.remove_where(|(f, v, r)| {
                f == function && (version.is_empty() || v == version) && r != keep_revision
            });
            state.live -= stale.len() as u32;
            stale
        };
        for instance in stale {
            stop_in_background(instance);
        }
    }

    /// Runs one invocation to its end and records it. Throttles and shutdown are errors;
    /// everything that happened inside the function is in the result.
    pub async fn invoke(&self, req: InvokeRequest) -> Result<DispatchResult, Error> {
        let spec = req.target.spec.clone();
        let _slot = self
            .admit(&spec.name, req.target.reserved_concurrency)
            .await?;
        let key: PoolKey = (
            spec.name.clone(),
            req.target.version.clone(),
            spec.revision_id.clone(),
        );
        let start_ms = wisp_core::time::now_ms();
        let started = Instant::now();
        let invocation = Invocation {
            request_id: req.request_id.clone(),
            payload: req.payload,
            invoked_function_arn: req.invoked_arn,
            client_context: req.client_context,
            http: req.http,
            trace_id: format!(
                "Root=1-{:08x}-{};Parent={};Sampled=0",
                start_ms / 1000,
                &uuid::Uuid::new_v4().simple().to_string()[..24],
                &uuid::Uuid::new_v4().simple().to_string()[..16]
            ),
        };
        let result = match self.checkout(&key, &req.target).await {
            Ok((mut instance, _cold)) => {
                let mut lease = Lease {
                    dispatcher: self,
                    held: true,
                };
                let result = instance.invoke(invocation).await;
                lease.held = false;
                self.checkin(key, instance, result.reusable);
                result
            }
            Err(StartError::Init {
                error_type,
                message,
            }) => {
                let body = serde_json::json!({ "errorMessage": message, "errorType": error_type });
                InvokeResult {
                    outcome: Outcome::FunctionError {
                        error_type,
                        body: body.to_string().into(),
                    },
                    logs: String::new(),
                    init_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
                    run_ms: 0.0,
                    max_memory_mb: 0,
                    reusable: false,
                    http: None,
                }
            }
            Err(e) => {
                tracing::error!(function = %spec.name, error = %e, "could not start an instance");
                return Err(Error::service(format!(
                    "Could not start an instance of {}: {e}",
                    spec.name
                )));
            }
        };
        let log = format_log(
            &req.request_id,
            &req.target.version,
            spec.memory_mb,
            &result,
        );
        let record = InvocationRecord {
            seq: 0,
            request_id: req.request_id.clone(),
            function_name: spec.name.clone(),
            version: req.target.version.clone(),
            invocation_type: req.invocation_type,
            start_time_ms: start_ms,
            duration_ms: round2(result.run_ms),
            billed_duration_ms: wisp_core::record::billed_ms(result.run_ms),
            init_duration_ms: result.init_ms.map(round2),
            max_memory_used_mb: result.max_memory_mb,
            memory_size_mb: spec.memory_mb,
            status: result.outcome.status(),
            error_type: result.outcome.error_type().map(str::to_string),
            logs: log.clone(),
        };
        self.metrics.invocation(
            &spec.name,
            record.status,
            result.run_ms,
            result.init_ms,
            record.billed_duration_ms,
            spec.memory_mb,
        );
        self.records.submit(record).await;
        Ok(DispatchResult {
            request_id: req.request_id,
            version: req.target.version,
            outcome: result.outcome,
            log,
            http: result.http,
        })
    }

    /// Refuses new work, waits for running invocations up to `grace`, stops all instances
    /// and flushes the records.
    pub async fn shutdown(&self, grace: Duration) {
        self.stopping.store(true, Ordering::Release);
        self.released.notify_waiters();
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let notified = self.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().admission.node_active() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::warn!("shutdown grace period over; stopping busy instances");
                break;
            }
        }
        let idle = self.lock().idle.drain_all();
        let stops: Vec<_> = idle.into_iter().map(|i| i.stop()).collect();
        futures_util::future::join_all(stops).await;
        self.records.flush().await;
    }
}

fn round2(ms: f64) -> f64 {
    (ms * 100.0).round() / 100.0
}

/// The invocation's log in Lambda's shape: START, the output, END, REPORT.
fn format_log(request_id: &str, version: &str, memory_mb: u32, r: &InvokeResult) -> String {
    let mut log = format!("START RequestId: {request_id} Version: {version}\n");
    log.push_str(&r.logs);
    if !log.ends_with('\n') {
        log.push('\n');
    }
    if let Outcome::Failed {
        status, message, ..
    } = &r.outcome
    {
        if *status != InvocationStatus::Success {
            log.push_str(message);
            log.push('\n');
        }
    }
    log.push_str(&format!("END RequestId: {request_id}\n"));
    log.push_str(&format!(
        "REPORT RequestId: {request_id}\tDuration: {:.2} ms\tBilled Duration: {} ms\tMemory Size: {memory_mb} MB\tMax Memory Used: {} MB",
        r.run_ms,
        wisp_core::record::billed_ms(r.run_ms),
        r.max_memory_mb
    ));
    if let Some(init) = r.init_ms {
        log.push_str(&format!("\tInit Duration: {init:.2} ms"));
    }
    log.push_str("\t\n");
    log
}

/// Stops instances idle past the keep-alive.
async fn reaper(dispatcher: std::sync::Weak<Dispatcher>, keep_alive: Duration) {
    let period = (keep_alive / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let Some(d) = dispatcher.upgrade() else {
            return;
        };
        let expired = {
            let mut state = d.lock();
            let now = d.now_ms();
            let expired = state.idle.expire(now, keep_alive.as_millis() as u64);
            state.live -= expired.len() as u32;
            expired
        };
        for instance in expired {
            stop_in_background(instance);
        }
    }
}
