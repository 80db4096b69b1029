//! One invocation of a component: a fresh `Store`, instantiate from the function's
//! `ProxyPre`, hand it the request, collect the response, and turn whatever happened
//! (a response, a trap, an exhausted memory limit, a timeout) into an [`InvokeResult`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::BodyExt as _;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView as _;
use wisp_core::limits::SYNC_PAYLOAD_MAX_BYTES;
use wisp_core::InvocationStatus;
use wisp_runtime::{Instance, Invocation, InvokeResult, Outcome};

use crate::event;
use crate::host::{Grants, Host, Limiter, LogSink, MemoryStats};

/// Time a guest blocked in a host call (an outbound request, a sleep) gets past its
/// deadline before the invocation is abandoned; a computing guest is interrupted by the
/// epoch deadline at the deadline itself.
const HOST_CALL_GRACE: Duration = Duration::from_millis(50);

/// An "instance" of a function version: the shared pre-instantiated component and the
/// function's limits and grants. Each invocation instantiates anew into a fresh store, so
/// an instance holds no guest state and can always serve the next request.
pub(crate) struct WasmInstance {
    pub engine: Engine,
    pub pre: ProxyPre<Host>,
    pub grants: Grants,
    pub memory_limit_bytes: usize,
    pub timeout: Duration,
    pub log_limit_bytes: usize,
    /// Time spent loading the component at start, reported by the first invocation.
    pub start_ms: Option<f64>,
}

type Head = Result<http::Response<HyperOutgoingBody>, ErrorCode>;
type Ran = (wasmtime::Result<()>, Store<Host>);

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
    async fn run(&mut self, invocation: Invocation) -> InvokeResult {
        let request_id = invocation.request_id.clone();
        let begun = Instant::now();
        let deadline = begun + self.timeout;
        let logs = LogSink::new(self.log_limit_bytes);
        let stats = Arc::new(MemoryStats::default());
        let (ending, init_ms) = self.execute(&invocation, deadline, &logs, &stats).await;
        let run_ms = (begun.elapsed().as_secs_f64() * 1000.0 - init_ms).max(0.0);
        let init_ms = init_ms + self.start_ms.take().unwrap_or(0.0);
        let outcome = self.outcome(ending, &request_id, invocation.http_event);
        let peak = stats.peak_bytes.load(Ordering::Relaxed) as u64;
        InvokeResult {
            outcome,
            logs: logs.take(),
            init_ms: Some(init_ms),
            run_ms,
            max_memory_mb: peak.div_ceil(1024 * 1024),
            reusable: true,
        }
    }

    /// Runs the component; returns how it ended and the instantiation time (ms).
    async fn execute(
        &self,
        invocation: &Invocation,
        deadline: Instant,
        logs: &LogSink,
        stats: &Arc<MemoryStats>,
    ) -> (Ending, f64) {
        let limiter = Limiter::new(self.memory_limit_bytes, stats.clone());
        let mut store = Store::new(&self.engine, Host::new(&self.grants, logs, limiter));
        store.limiter(|host| &mut host.limiter);
        // Checked at every epoch tick: past the deadline the guest traps with
        // `Trap::Interrupt`; before it, the guest yields, so a guest that computes
        // without calling the host does not hold a runtime thread for its whole timeout.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        let instantiating = Instant::now();
        let proxy = match self.pre.instantiate_async(&mut store).await {
            Ok(p) => p,
            Err(e) => {
                let init_ms = instantiating.elapsed().as_secs_f64() * 1000.0;
                return (classify_error(&e, stats), init_ms);
            }
        };
        let init_ms = instantiating.elapsed().as_secs_f64() * 1000.0;

        let request = if invocation.http_event {
            event::from_http_event(&invocation.payload)
                .unwrap_or_else(|| event::plain(&invocation.payload))
        } else {
            event::plain(&invocation.payload)
        };
        let request = match request.into_http() {
            Ok(r) => r.map(|b| {
                http_body_util::Full::new(b).map_err(
                    |never: std::convert::Infallible| -> wasmtime_wasi_http::Error {
                        match never {}
                    },
                )
            }),
            Err(e) => return (Ending::ErrorResponse(format!("bad request: {e}")), init_ms),
        };
        let (tx, mut rx) = tokio::sync::oneshot::channel::<Head>();
        let resources = (|| -> wasmtime::Result<_> {
            let mut http = store.data_mut().http();
            let req = http.new_incoming_request(Scheme::Http, request)?;
            let out = http.new_response_outparam(tx)?;
            Ok((req, out))
        })();
        let (req, out) = match resources {
            Ok(r) => r,
            Err(e) => return (Ending::Trap(format!("{e:#}")), init_ms),
        };
        let mut task = tokio::spawn(async move {
            let result = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out)
                .await;
            (result, store)
        });

        let wait = async {
            // The handler usually sets the response head first and then streams the body,
            // so wait for whichever comes first: the head, or the handler's end.
            let mut ended: Option<Result<Ran, tokio::task::JoinError>> = None;
            let head = tokio::select! {
                biased;
                head = &mut rx => head.ok(),
                joined = &mut task => {
                    ended = Some(joined);
                    rx.try_recv().ok()
                }
            };
            let body = match head {
                Some(Ok(response)) => {
                    let (parts, body) = response.into_parts();
                    Some(Ok((parts, collect(body).await)))
                }
                Some(Err(code)) => Some(Err(code)),
                None => None,
            };
            let ran = match ended {
                Some(joined) => joined,
                None => (&mut task).await,
            };
            let (result, _store) = match ran {
                Ok(r) => r,
                Err(e) => return Ending::Trap(format!("the invocation task failed: {e}")),
            };
            if let Err(e) = result {
                return classify_error(&e, stats);
            }
            match body {
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
            }
        };
        let ending = match tokio::time::timeout_at((deadline + HOST_CALL_GRACE).into(), wait).await
        {
            Ok(ending) => ending,
            Err(_) => {
                // Blocked in a host call past the deadline: dropping the task drops the
                // store, which frees the instance's pool slot.
                task.abort();
                Ending::TimedOut
            }
        };
        (ending, init_ms)
    }

    fn outcome(&self, ending: Ending, request_id: &str, http_event: bool) -> Outcome {
        let function_error = |error_type: &str, message: String| {
            let body = serde_json::json!({ "errorMessage": message, "errorType": error_type });
            Outcome::FunctionError {
                error_type: error_type.to_string(),
                body: body.to_string().into(),
            }
        };
        match ending {
            Ending::Response {
                status,
                headers,
                body,
            } => {
                if http_event {
                    Outcome::Success(event::http_result(status, &headers, &body).into())
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
        }
    }
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
