//! The engine: the control plane (functions, versions, concurrency) and the data plane
//! (dispatch to instances, the durable async queue, invocation records) behind one handle.
//! It holds the platform's logic; `wisp-api` only translates HTTP to calls on [`Engine`].

pub mod aliases;
pub mod async_queue;
pub mod control;
pub mod dispatch;
pub mod invoke;
pub mod invoke_config;
pub mod metrics;
pub mod records;
pub mod routing;
pub mod urls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wisp_runtime::{Executor, Interpreters};
use wisp_store::{BlobStore, Store};

pub use aliases::AliasInput;
pub use control::{CodeInput, ConfigInput, CreateInput, Resolved};
pub use dispatch::{DispatchResult, InvokeRequest};
pub use invoke::{InvokeMode, Invoked};
pub use urls::UrlInput;

/// Sends a message to a queue named by its ARN (the queue service implements it; the
/// engine does not know queues). Used for queue destinations and dead-letter queues.
pub trait QueueSink: Send + Sync + 'static {
    fn exists(&self, queue_arn: &str) -> futures_util::future::BoxFuture<'_, bool>;
    fn send(
        &self,
        queue_arn: &str,
        body: String,
    ) -> futures_util::future::BoxFuture<'_, Result<(), String>>;
}

/// Everything the engine is configured with.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    pub region: String,
    /// Node-wide limit on invocations running at once.
    pub max_concurrency: u32,
    /// Node-wide limit on live instances, busy or idle.
    pub max_instances: u32,
    /// How long an invocation waits for a free slot before it is throttled.
    pub queue_wait: Duration,
    /// How long an idle instance is kept warm.
    pub keep_alive: Duration,
    /// First async retry delay; the second is twice as long.
    pub async_retry_base: Duration,
    /// Async events run at once.
    pub async_concurrency: usize,
    /// Invocation records kept.
    pub records_retain: u64,
    /// Where function URLs are served, e.g. `http://127.0.0.1:8791`.
    pub url_base: String,
    /// Where HTTP routes are served, e.g. `http://127.0.0.1:8792`.
    pub routes_base: String,
}

/// The running platform.
pub struct Engine {
    pub(crate) cfg: EngineConfig,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) interpreters: Interpreters,
    pub(crate) dispatcher: Arc<dispatch::Dispatcher>,
    pub(crate) queue: async_queue::AsyncQueue,
    pub(crate) cache: control::SpecCache,
    /// Where queue destinations and dead-letter queues are delivered, when the server has
    /// queues.
    pub(crate) queue_sink: std::sync::OnceLock<Arc<dyn QueueSink>>,
    /// Shared by requests that store packages, exclusive for garbage collection.
    pub(crate) gc_lock: Arc<tokio::sync::RwLock<()>>,
}

impl Engine {
    /// Assembles the engine and starts its background tasks (record writer, async worker,
    /// idle-instance reaper). Call within a Tokio runtime.
    pub fn start(
        cfg: EngineConfig,
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        executor: Arc<dyn Executor>,
        interpreters: Interpreters,
    ) -> Arc<Self> {
        let records = records::RecordSink::start(store.clone(), cfg.records_retain);
        let dispatcher = dispatch::Dispatcher::start(&cfg, executor, blobs.clone(), records);
        let engine = Arc::new(Engine {
            queue: async_queue::AsyncQueue::new(),
            cfg,
            store,
            blobs,
            interpreters,
            dispatcher,
            cache: control::SpecCache::default(),
            gc_lock: Arc::default(),
            queue_sink: std::sync::OnceLock::new(),
        });
        engine.collect_garbage();
        async_queue::spawn_worker(engine.clone());
        engine.prepare_stored();
        engine
    }

    /// Lets the executor prepare the packages of stored functions in the background (the
    /// wasm runtime loads their compiled components from its disk cache), so that the
    /// first invocation after a restart does not pay for it. Bounded: at most
    /// `PREPARE_AT_START_MAX` functions; the others are prepared by their first start.
    fn prepare_stored(self: &Arc<Self>) {
        const PREPARE_AT_START_MAX: usize = 1024;
        let engine = self.clone();
        tokio::spawn(async move {
            let mut marker: Option<String> = None;
            let mut prepared = 0;
            loop {
                let Ok((specs, next)) = engine.list_functions(marker.as_deref(), Some(500)) else {
                    return;
                };
                for spec in specs {
                    if wisp_core::RuntimeKind::parse(&spec.runtime).ok()
                        != Some(wisp_core::RuntimeKind::Wasm)
                    {
                        continue;
                    }
                    if prepared >= PREPARE_AT_START_MAX {
                        return;
                    }
                    prepared += 1;
                    if let Ok(dir) = engine.blobs.code_dir(&spec.code_sha256) {
                        if let Err(e) = engine
                            .dispatcher
                            .prepare(&spec.runtime, &spec.code_sha256, dir)
                            .await
                        {
                            tracing::warn!(function = %spec.name, error = %e, "could not prepare a stored package");
                        }
                    }
                }
                match next {
                    Some(m) => marker = Some(m),
                    None => return,
                }
            }
        });
    }

    /// The Prometheus exposition of the platform's metrics.
    pub fn metrics_text(&self) -> String {
        let (idle, busy) = self.dispatcher.instance_counts();
        let depth = self.store.pending_event_count().unwrap_or(0);
        self.dispatcher.metrics().render(idle, busy, depth)
    }

    /// Connects the queue service, for destinations and dead-letter queues that are queues.
    pub fn set_queue_sink(&self, sink: Arc<dyn QueueSink>) {
        let _ = self.queue_sink.set(sink);
    }

    /// Tells the async worker that events were queued by someone else (a trigger that
    /// wrote its fire and event in one transaction).
    pub fn wake_async_queue(&self) {
        self.queue.notify();
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Runtime names this server can run.
    pub fn runtimes(&self) -> Vec<String> {
        self.interpreters.available()
    }

    /// Stops taking work, lets running invocations finish within `grace`, stops every
    /// instance and flushes the records.
    pub async fn shutdown(&self, grace: Duration) {
        self.queue.stop();
        self.dispatcher.shutdown(grace).await;
    }
}
