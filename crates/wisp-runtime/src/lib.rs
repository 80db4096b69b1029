//! Executors: what turns a function version into running instances and an event into a
//! result. This crate knows nothing of triggers, HTTP routes or the store; it is given a
//! validated [`FunctionSpec`] and the directory of its unpacked code.
//!
//! The process executor starts one OS process per instance and serves it the AWS Lambda
//! Runtime API (2018-06-01) on a listener of its own. The [`Executor`] and [`Instance`]
//! traits are the seam where a stronger sandbox or the wasm runtime slots in.

pub mod cgroup;
pub mod interpreters;
pub mod logs;
pub mod process;
pub mod runtime_api;

use std::path::PathBuf;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use wisp_core::{FunctionSpec, InvocationStatus};

pub use interpreters::Interpreters;
pub use process::{ProcessExecutor, ProcessExecutorConfig};

/// One event on its way to an instance.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub payload: Bytes,
    pub invoked_function_arn: String,
    /// `X-Amz-Client-Context` as sent by the caller (base64 JSON), decoded.
    pub client_context: Option<String>,
    pub trace_id: String,
    /// The HTTP request a function URL or an HTTP route received, for an executor that
    /// takes requests as they are ([`Executor::takes_http`]): the wasm runtime hands it to
    /// the component and answers with the component's response ([`InvokeResult::http`]),
    /// without an API Gateway JSON document in between. `payload` is then empty. Other
    /// executors get the payload 2.0 event in `payload` and this is `None`.
    pub http: Option<Box<HttpRequest>>,
}

/// An HTTP request on its way to a function that takes HTTP.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: axum::http::Method,
    /// The path the function sees (below a function URL's root; a route's whole path).
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    pub headers: axum::http::HeaderMap,
    pub body: Bytes,
}

/// Status and headers of a function's HTTP answer; the body is the outcome's.
#[derive(Debug, Clone)]
pub struct HttpHead {
    pub status: u16,
    pub headers: axum::http::HeaderMap,
}

/// How one invocation ended, from the executor's point of view.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The handler's result, as the runtime posted it.
    Success(Bytes),
    /// The handler or its initialisation reported an error: the Lambda error document
    /// (`{"errorMessage","errorType","stackTrace"}`) and its type.
    FunctionError { error_type: String, body: Bytes },
    /// The platform stopped the instance: timeout, memory, crash.
    Failed {
        status: InvocationStatus,
        error_type: String,
        message: String,
    },
}

impl Outcome {
    pub fn status(&self) -> InvocationStatus {
        match self {
            Outcome::Success(_) => InvocationStatus::Success,
            Outcome::FunctionError { .. } => InvocationStatus::Error,
            Outcome::Failed { status, .. } => *status,
        }
    }

    pub fn error_type(&self) -> Option<&str> {
        match self {
            Outcome::Success(_) => None,
            Outcome::FunctionError { error_type, .. } | Outcome::Failed { error_type, .. } => {
                Some(error_type)
            }
        }
    }
}

/// What the dispatcher learns from one invocation.
#[derive(Debug, Clone)]
pub struct InvokeResult {
    pub outcome: Outcome,
    /// Output captured during the invocation (and, on a cold start, during init).
    pub logs: String,
    /// Set when this invocation paid for the instance's initialisation.
    pub init_ms: Option<f64>,
    pub run_ms: f64,
    pub max_memory_mb: u64,
    /// False when the instance must not serve another invocation.
    pub reusable: bool,
    /// Set when the invocation carried an HTTP request and the function answered it as
    /// HTTP: `Outcome::Success` then holds the response body.
    pub http: Option<Box<HttpHead>>,
}

/// A running instance of one function version. It serves one invocation at a time.
pub trait Instance: Send {
    fn invoke(&mut self, invocation: Invocation) -> BoxFuture<'_, InvokeResult>;
    /// Stops the instance and every process it started.
    fn stop(self: Box<Self>) -> BoxFuture<'static, ()>;
}

/// Starts instances.
pub trait Executor: Send + Sync + 'static {
    /// Starts an instance; initialisation may continue in the background and is paid for
    /// (and reported) by the first invocation.
    fn start(
        &self,
        spec: &FunctionSpec,
        version: &str,
        code_dir: PathBuf,
    ) -> BoxFuture<'_, Result<Box<dyn Instance>, StartError>>;

    /// Whether instances of `runtime` take HTTP requests as they are
    /// ([`Invocation::http`]) rather than as API Gateway events.
    fn takes_http(&self, _runtime: &str) -> bool {
        false
    }

    /// Checks the settings a function of `runtime` declares in its environment for this
    /// executor (the wasm runtime reads some of its own there); the error is the message
    /// for the caller.
    fn check_config(
        &self,
        _runtime: &str,
        _env: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), String> {
        Ok(())
    }

    /// Forgets what the executor derived from packages that are no longer referenced
    /// (the wasm runtime's compiled components): `referenced` holds every package sha256
    /// still in use. Called after the store's own garbage collection.
    fn collect_garbage(&self, _referenced: &[String]) {}

    /// Checks and prepares a stored package at deploy time, before any function refers to
    /// it: the wasm runtime validates and compiles its component here, so that a bad
    /// artifact is refused with a clear message and no invocation pays for compiling.
    /// The error is the message for the uploader. The process runtime has nothing to do.
    fn prepare(
        &self,
        _runtime: &str,
        _code_sha256: &str,
        _code_dir: PathBuf,
    ) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Unavailable(String),
    /// The instance could not initialise; reported to the caller as a function error.
    #[error("{error_type}: {message}")]
    Init { error_type: String, message: String },
    #[error("could not start the instance: {0}")]
    Io(#[from] std::io::Error),
}
