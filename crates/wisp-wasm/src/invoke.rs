//! One invocation of a component: a fresh `Store`, instantiate from the function's
//! `ProxyPre`, hand it the request, collect the response, and turn whatever happened
//! (a response, a trap, an exhausted memory limit, a timeout) into an [`InvokeResult`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::BodyExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView as _;
use wisp_core::limits::SYNC_PAYLOAD_MAX_BYTES;
use wisp_core::InvocationStatus;
use wisp_runtime::{HttpHead, Instance, Invocation, InvokeResult, Outcome};

use crate::event;
use crate::host::{Grants, Host, Limiter, LogSink, MemoryStats};

/// Time a guest blocked in a host call (an outbound request, a sleep) gets past its
/// deadline before the invocation is abandoned; a computing guest is interrupted by the
/// epoch deadline at the deadline itself.
const HOST_CALL_GRACE: Duration = Duration::from_millis(50);

/// An "instance" of a function version: the shared pre-instantiated component and the
/// function's limits and grants. By default each invocation instantiates anew into a fresh
/// store, so an instance holds no guest state between requests. A function that opts into
/// instance reuse ([`crate::host::INSTANCE_REUSE_VAR`]) keeps its instantiated component
/// for up to that many invocations, while the executor has room for kept instances.
pub(crate) struct WasmInstance {
    pub engine: Engine,
    pub pre: ProxyPre<Host>,
    pub grants: Grants,
    pub memory_limit_bytes: usize,
    pub timeout: Duration,
    pub log_limit_bytes: usize,
    /// Time spent loading the component at start, reported by the first invocation.
    pub start_ms: Option<f64>,
    /// Room for instances kept between invocations, shared by the whole executor: each
    /// kept instance holds a slot of the pooling allocator.
    pub keep_room: Arc<Semaphore>,
    /// Where used stores go to be dropped, off the request's path.
    pub dropper: Dropper,
    /// The instance kept from the previous invocation, if the function reuses instances.
    /// (In a mutex only so that `&WasmInstance` is `Send`: a `Store` is not `Sync`.)
    pub kept: std::sync::Mutex<Option<Ready>>,
}

/// An instantiated component ready to serve an invocation: a fresh one, or one kept from
/// the previous invocation of the same function.
pub(crate) struct Ready {
    store: Store<Host>,
    proxy: Proxy,
    logs: LogSink,
    stats: Arc<MemoryStats>,
    /// Invocations it has served.
    served: u32,
    /// Its place among the kept instances, once it has been kept.
    room: Option<OwnedSemaphorePermit>,
}

type Head = Result<http::Response<HyperOutgoingBody>, ErrorCode>;

/// How a run ended, before it is worded as an outcome.
enum Ending {
    Response {
        status: u16,
        headers: http::HeaderMap,
        body: Bytes,
    },
    TooLarge,
    ErrorResponse(String),
    NoResponse,
    Trap(String),
    OutOfMemory,
    TimedOut,
}

impl Instance for WasmInstance {
    fn invoke(&mut self, invocation: Invocation) -> BoxFuture<'_, InvokeResult> {
        Box::pin(self.run(invocation))
    }

    fn stop(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

impl WasmInstance {
    async fn run(&mut self, mut invocation: Invocation) -> InvokeResult {
        let request_id = invocation.request_id.clone();
        let http_request = invocation.http.is_some();
        let begun = Instant::now();
        let deadline = begun + self.timeout;
        let kept = self
            .kept
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let (ending, init_ms, logs, stats) = match kept {
            Some(kept) => {
                let (logs, stats) = (kept.logs.clone(), kept.stats.clone());
                let ending = self.execute(kept, &mut invocation, deadline).await;
                (ending, None, logs, stats)
            }
            None => {
                let logs = LogSink::new(self.log_limit_bytes);
                let stats = Arc::new(MemoryStats::default());
                let instantiating = Instant::now();
                let ending = match self.instantiate(&logs, &stats, deadline).await {
                    Ok(ready) => {
                        let init_ms = instantiating.elapsed().as_secs_f64() * 1000.0;
                        let ending = self.execute(ready, &mut invocation, deadline).await;
                        (ending, init_ms)
                    }
                    Err(e) => (
                        classify_error(&e, &stats),
                        instantiating.elapsed().as_secs_f64() * 1000.0,
                    ),
                };
                (ending.0, Some(ending.1), logs, stats)
            }
        };
        let run_ms = (begun.elapsed().as_secs_f64() * 1000.0 - init_ms.unwrap_or(0.0)).max(0.0);
        let init_ms = match (init_ms, self.start_ms.take()) {
            (Some(i), start) => Some(i + start.unwrap_or(0.0)),
            (None, Some(start)) => Some(start),
            (None, None) => None,
        };
        let (outcome, http) = self.outcome(ending, &request_id, http_request);
        let peak = stats.peak_bytes.load(Ordering::Relaxed) as u64;
        InvokeResult {
            outcome,
            logs: logs.take(),
            init_ms,
            run_ms,
            max_memory_mb: peak.div_ceil(1024 * 1024),
            reusable: true,
            http,
        }
    }

    /// A fresh store with the component instantiated in it.
    async fn instantiate(
        &self,
        logs: &LogSink,
        stats: &Arc<MemoryStats>,
        deadline: Instant,
    ) -> wasmtime::Result<Ready> {
        let limiter = Limiter::new(self.memory_limit_bytes, stats.clone());
        let mut store = Store::new(&self.engine, Host::new(&self.grants, logs, limiter));
        store.limiter(|host| &mut host.limiter);
        // A core module's start function runs at instantiation: the deadline holds there.
        set_deadline(&mut store, deadline);
        let proxy = self.pre.instantiate_async(&mut store).await?;
        Ok(Ready {
            store,
            proxy,
            logs: logs.clone(),
            stats: stats.clone(),
            served: 0,
            room: None,
        })
    }

    /// Runs the component's handler for one invocation and returns how it ended. A store
    /// that is not kept is dropped by the handler's task after the answer is in: freeing
    /// a pool slot (resetting its memory) is not on the request's path.
    async fn execute(
        &mut self,
        ready: Ready,
        invocation: &mut Invocation,
        deadline: Instant,
    ) -> Ending {
        let Ready {
            mut store,
            proxy,
            logs,
            stats,
            served,
            room,
        } = ready;
        stats.over_limit.store(false, Ordering::Relaxed);
        set_deadline(&mut store, deadline);

        let request = match invocation.http.take() {
            Some(http) => event::from_http(*http),
            None => event::plain(&invocation.payload),
        };
        let request = match request.into_http() {
            Ok(r) => r.map(|b| {
                http_body_util::Full::new(b).map_err(
                    |never: std::convert::Infallible| -> wasmtime_wasi_http::Error {
                        match never {}
                    },
                )
            }),
            Err(e) => return Ending::ErrorResponse(format!("bad request: {e}")),
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<Head>();
        let resources = (|| -> wasmtime::Result<_> {
            let mut http = store.data_mut().http();
            let req = http.new_incoming_request(Scheme::Http, request)?;
            let out = http.new_response_outparam(tx)?;
            Ok((req, out))
        })();
        let (req, out) = match resources {
            Ok(r) => r,
            Err(e) => return Ending::Trap(format!("{e:#}")),
        };
        // The handler runs in this task, driven together with the reading of its answer:
        // no task to spawn and no cross-thread wake-up on the request's path.
        let (ending, handled) = {
            let call = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out);
            match tokio::time::timeout_at(
                (deadline + HOST_CALL_GRACE).into(),
                drive(call, rx, &stats),
            )
            .await
            {
                Ok(done) => done,
                // Blocked in a host call past the deadline (a computing guest is
                // interrupted by the epoch deadline before this).
                Err(_) => (Ending::TimedOut, false),
            }
        };
        let room = if handled && self.grants.reuse > served + 1 {
            room.or_else(|| self.keep_room.clone().try_acquire_owned().ok())
        } else {
            None
        };
        match room {
            Some(room) => {
                *self.kept.get_mut().unwrap_or_else(|p| p.into_inner()) = Some(Ready {
                    store,
                    proxy,
                    logs,
                    stats,
                    served: served + 1,
                    room: Some(room),
                })
            }
            // Not to be kept, or no room for another kept instance: it goes, off the path.
            None => self.dropper.drop_later(store),
        }
        ending
    }

    fn outcome(
        &self,
        ending: Ending,
        request_id: &str,
        http_request: bool,
    ) -> (Outcome, Option<Box<HttpHead>>) {
        let function_error = |error_type: &str, message: String| {
            let body = serde_json::json!({ "errorMessage": message, "errorType": error_type });
            Outcome::FunctionError {
                error_type: error_type.to_string(),
                body: body.to_string().into(),
            }
        };
        let outcome = match ending {
            Ending::Response {
                status,
                headers,
                body,
            } => {
                if http_request {
                    return (
                        Outcome::Success(body),
                        Some(Box::new(HttpHead { status, headers })),
                    );
                } else if status < 400 {
                    Outcome::Success(body)
                } else {
                    // A plain invoke has no HTTP status to carry an error: a 4xx or 5xx
                    // answer is the function's error, with the body as its message.
                    let text: String = String::from_utf8_lossy(&body).chars().take(1024).collect();
                    function_error(
                        "Function.HttpError",
                        format!("The component answered {status}: {text}"),
                    )
                }
            }
            Ending::TooLarge => function_error(
                "Function.ResponseSizeTooLarge",
                format!(
                    "Response payload size exceeded maximum allowed payload size ({SYNC_PAYLOAD_MAX_BYTES} bytes)."
                ),
            ),
            Ending::ErrorResponse(message) => function_error(
                "Function.HttpError",
                format!("The component answered with an error: {message}"),
            ),
            Ending::NoResponse => function_error(
                "Runtime.NoResponse",
                "The component returned without setting a response.".into(),
            ),
            Ending::Trap(message) => Outcome::Failed {
                status: InvocationStatus::Crashed,
                error_type: "Runtime.WasmTrap".into(),
                message: format!("RequestId: {request_id} Error: the component trapped: {message}"),
            },
            Ending::OutOfMemory => Outcome::Failed {
                status: InvocationStatus::OutOfMemory,
                error_type: "Runtime.OutOfMemory".into(),
                message: format!(
                    "RequestId: {request_id} Error: the component's linear memory would grow past its MemorySize ({} MB)",
                    self.memory_limit_bytes / (1024 * 1024)
                ),
            },
            Ending::TimedOut => {
                let now = wisp_core::time::lambda_timestamp(wisp_core::time::now_ms());
                Outcome::Failed {
                    status: InvocationStatus::Timeout,
                    error_type: "Sandbox.Timedout".into(),
                    message: format!(
                        "{now} {request_id} Task timed out after {:.2} seconds",
                        self.timeout.as_secs_f64()
                    ),
                }
            }
        };
        (outcome, None)
    }
}

/// Drops used stores after the answer has gone. Dropping a store returns its instance's
/// slot to the pooling allocator, which resets the slot's memory and tables: hundreds of
/// microseconds for a lone request with cold caches. The drop is a task of its own,
/// spawned before the invocation returns: the runtime runs the task the invocation's end
/// wakes (the one writing the response) before it, and a thread of its own would compete
/// with the request path for the two cores instead.
#[derive(Clone)]
pub(crate) struct Dropper {
    room: Arc<Semaphore>,
}

/// Stores waiting to be dropped; past this, a store is dropped where it is. Each holds a
/// pool slot until it is dropped: the pool has room for these.
pub(crate) const DROP_QUEUE_MAX: u32 = 32;

impl Dropper {
    pub(crate) fn new() -> Dropper {
        Dropper {
            room: Arc::new(Semaphore::new(DROP_QUEUE_MAX as usize)),
        }
    }

    fn drop_later(&self, store: Store<Host>) {
        match self.room.clone().try_acquire_owned() {
            Ok(permit) => drop(tokio::spawn(async move {
                drop(store);
                drop(permit);
            })),
            Err(_) => drop(store),
        }
    }
}

/// Checked at every epoch tick: past the deadline the guest traps with `Trap::Interrupt`;
/// before it, the guest yields, so a guest that computes without calling the host does not
/// hold a runtime thread for its whole timeout.
fn set_deadline(store: &mut Store<Host>, deadline: Instant) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        Ok(if Instant::now() >= deadline {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Yield(1)
        })
    });
}

/// Drives a handler call and reads its answer: the response head, or the handler's end,
/// whichever comes first; then the body, while the handler may still be writing it.
/// Returns how it ended and whether the handler returned normally (its instance may then
/// serve again).
async fn drive(
    call: impl std::future::Future<Output = wasmtime::Result<()>>,
    mut head_rx: tokio::sync::oneshot::Receiver<Head>,
    stats: &MemoryStats,
) -> (Ending, bool) {
    tokio::pin!(call);
    let mut result: Option<wasmtime::Result<()>> = None;
    let head = tokio::select! {
        biased;
        head = &mut head_rx => head.ok(),
        r = &mut call => {
            result = Some(r);
            head_rx.try_recv().ok()
        }
    };
    let answer = match head {
        None => None,
        Some(Err(code)) => Some(Err(code)),
        Some(Ok(response)) => {
            let (parts, body) = response.into_parts();
            let collecting = collect(body);
            tokio::pin!(collecting);
            loop {
                tokio::select! {
                    biased;
                    collected = &mut collecting => break Some(Ok((parts, collected))),
                    r = &mut call, if result.is_none() => {
                        let failed = r.is_err();
                        result = Some(r);
                        // A trap in the middle of the body: the body never ends.
                        if failed {
                            break None;
                        }
                    }
                }
            }
        }
    };
    let result = match result {
        Some(r) => r,
        None => call.await,
    };
    if let Err(e) = result {
        return (classify_error(&e, stats), false);
    }
    let ending = match answer {
        Some(Ok((parts, Ok(bytes)))) => Ending::Response {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: bytes,
        },
        Some(Ok((_, Err(Collect::TooLarge)))) => Ending::TooLarge,
        Some(Ok((_, Err(Collect::Failed(e))))) => {
            Ending::ErrorResponse(format!("the response body failed: {e}"))
        }
        Some(Err(code)) => Ending::ErrorResponse(format!("{code:?}")),
        None => Ending::NoResponse,
    };
    (ending, true)
}

enum Collect {
    TooLarge,
    Failed(String),
}

/// Reads a response body up to the synchronous response limit.
async fn collect(mut body: HyperOutgoingBody) -> Result<Bytes, Collect> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Collect::Failed(format!("{e:?}")))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > SYNC_PAYLOAD_MAX_BYTES {
                return Err(Collect::TooLarge);
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(out))
}

/// Words an error from wasmtime: the limiter's flag tells an exhausted MemorySize from
/// other traps (the guest's allocator usually turns a refused growth into a trap of its
/// own), and an epoch interrupt is the timeout.
fn classify_error(e: &wasmtime::Error, stats: &MemoryStats) -> Ending {
    if stats.over_limit.load(Ordering::Relaxed) {
        return Ending::OutOfMemory;
    }
    if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        return Ending::TimedOut;
    }
    // The trap itself ("wasm `unreachable` instruction executed"), not the backtrace of
    // unnamed functions that wasmtime puts in front of it; the guest's own last words
    // (a panic message) are in the log.
    let message = match e.downcast_ref::<Trap>() {
        Some(trap) => trap.to_string(),
        None => e.root_cause().to_string(),
    };
    Ending::Trap(message)
}
