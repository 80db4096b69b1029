//! wisp's WebAssembly runtime: functions that are `wasi:http/proxy` components (the same
//! artifacts `wasmtime serve` and Spin run), on wasmtime.
//!
//! Fast by construction, the way `wasmtime serve` is: a component is compiled once, at
//! deploy time, and its compiled code is kept on disk keyed by the package's sha256 and
//! the engine's settings; each function version has one `ProxyPre` (imports resolved
//! ahead of time); instances come from the pooling allocator with copy-on-write memory
//! images; every invocation gets a fresh `Store`, so nothing leaks from one request to the
//! next; timeouts are epoch deadlines driven by one ticker thread, not a thread per
//! request.
//!
//! Sandboxed by default: no filesystem, no environment beyond the declared variables, no
//! sockets, and outbound HTTP only to the hosts of the function's allow-list
//! ([`host::ALLOWED_HOSTS_VAR`]). Linear memory is capped at MemorySize.

pub mod compile;
pub mod event;
pub mod host;
mod invoke;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wisp_core::FunctionSpec;
use wisp_runtime::{Executor, Instance, StartError};

pub use compile::CompileError;
use host::{Grants, Host};

/// The runtime name functions declare to run as components.
pub const RUNTIME: &str = "wasm";

/// How often the epoch ticker advances: the granularity of timeouts, and how often a
/// guest that computes without calling the host yields its thread to other tasks.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Instantiated components kept between invocations (functions that opt into instance
/// reuse), across all functions: each holds a slot of the pooling allocator.
const KEPT_INSTANCES_MAX: u32 = 64;

/// Compiled components kept in memory at once; past this, the least recently used is
/// dropped and reloaded (mmapped, no compile) from the disk cache when next needed.
const LOADED_COMPONENTS_MAX: usize = 4096;

#[derive(Debug, Clone)]
pub struct WasmConfig {
    /// Where compiled components are kept (`<data-dir>/wasm-cache`).
    pub cache_dir: PathBuf,
    /// Invocations that may run at once (the node's concurrency limit): sizes the pool.
    pub max_concurrent: u32,
    /// Captured stdout/stderr per invocation.
    pub log_limit_bytes: usize,
}

/// One compiled, linked component, shared by every instance of every function (and
/// version) whose package has the same sha256.
struct Loaded {
    pre: ProxyPre<Host>,
    last_used: Mutex<Instant>,
}

pub struct WasmExecutor {
    engine: Engine,
    linker: Linker<Host>,
    cfg: WasmConfig,
    engine_key: String,
    /// Compiled components by package sha256. The `OnceCell` makes concurrent deploys of
    /// the same bytes compile once.
    loaded: Mutex<HashMap<String, Arc<tokio::sync::OnceCell<Arc<Loaded>>>>>,
    /// Compiling is CPU-heavy: at most this many at once, whatever the deploy load.
    compiling: tokio::sync::Semaphore,
    /// Room for instances kept between invocations ([`KEPT_INSTANCES_MAX`]).
    keep_room: Arc<tokio::sync::Semaphore>,
    dropper: invoke::Dropper,
}

fn engine_config(max_concurrent: u32) -> Config {
    // One slot per running invocation, one per instance kept between invocations, and
    // one per used store waiting to be dropped.
    let n = max_concurrent.max(1) + KEPT_INSTANCES_MAX + invoke::DROP_QUEUE_MAX;
    let mut pool = PoolingAllocationConfig::new();
    // One component instance per running invocation. Components made by language
    // toolchains (componentize-py, jco) hold many core instances and tables, so the
    // per-component counts are generous; slots are address space, not memory, until used.
    pool.total_component_instances(n)
        .total_core_instances(n * 32)
        .total_memories(n * 4)
        .total_tables(n * 32)
        .total_stacks(n)
        .max_core_instances_per_component(64)
        .max_memories_per_component(8)
        .max_tables_per_component(64)
        .max_tables_per_module(8)
        .table_elements(200_000)
        .max_core_instance_size(8 << 20)
        .max_component_instance_size(8 << 20)
        // wasm32's whole address space: MemorySize is enforced by the store's limiter.
        .max_memory_size(4 << 30)
        // Every invocation frees its instance. The first 64 KiB of a memory or a table
        // are reset by hand (zeroed), which is cheaper than returning them to the kernel
        // and faulting them back; the rest goes back in batches, which saves most of the
        // TLB shootdowns each madvise costs. More is worse: zeroing a whole MiB per
        // invocation took a fifth of the CPU under load (bench/RESULTS.md).
        .linear_memory_keep_resident(64 << 10)
        .table_keep_resident(64 << 10)
        .decommit_batch_size(32)
        // ... but only for the slots in use and a few warm ones: with many functions,
        // each idle warm slot would otherwise keep its resident memory.
        .max_unused_warm_slots(16);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed)
        .memory_init_cow(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

impl WasmExecutor {
    /// Builds the engine and the linker (every WASI interface a proxy component may
    /// import; what they may reach is decided per store) and starts the epoch ticker.
    pub fn new(cfg: WasmConfig) -> Result<WasmExecutor, String> {
        std::fs::create_dir_all(&cfg.cache_dir)
            .map_err(|e| format!("could not create {}: {e}", cfg.cache_dir.display()))?;
        let engine = Engine::new(&engine_config(cfg.max_concurrent))
            .map_err(|e| format!("could not configure wasmtime: {e:#}"))?;
        let mut linker = Linker::<Host>::new(&engine);
        // The full WASIp2 set, as `wasmtime serve` links it: components built with a
        // language's standard library import filesystem, sockets and environment
        // interfaces even when they never use them. Linking them grants nothing: each
        // store's context has no preopened directory, no network and only the declared
        // variables.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| format!("could not link WASI: {e:#}"))?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(|e| format!("could not link wasi:http: {e:#}"))?;
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("wisp-wasm-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => return,
                }
            })
            .map_err(|e| format!("could not start the epoch ticker: {e}"))?;
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(WasmExecutor {
            engine_key: compile::engine_key(&engine),
            engine,
            linker,
            cfg,
            loaded: Mutex::new(HashMap::new()),
            compiling: tokio::sync::Semaphore::new(parallel),
            keep_room: Arc::new(tokio::sync::Semaphore::new(KEPT_INSTANCES_MAX as usize)),
            dropper: invoke::Dropper::new(),
        })
    }

    /// The compatibility key of this engine, part of every cache file name.
    pub fn engine_key(&self) -> &str {
        &self.engine_key
    }

    /// The compiled component of package `sha`, compiling it (once) if needed.
    async fn load(&self, sha: &str, code_dir: &Path) -> Result<Arc<Loaded>, CompileError> {
        let cell = {
            let mut map = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
            if map.len() >= LOADED_COMPONENTS_MAX && !map.contains_key(sha) {
                evict_least_recent(&mut map);
            }
            map.entry(sha.to_string()).or_default().clone()
        };
        let loaded = cell
            .get_or_try_init(|| async {
                let _permit = self.compiling.acquire().await;
                let wasm = compile::find_component(code_dir)?;
                let (engine, linker) = (self.engine.clone(), self.linker.clone());
                let cache_dir = self.cfg.cache_dir.clone();
                let engine_key = self.engine_key.clone();
                let key = sha.to_string();
                let pre = tokio::task::spawn_blocking(move || {
                    let cache = compile::Cache {
                        dir: &cache_dir,
                        engine_key: &engine_key,
                    };
                    compile::load(&engine, &linker, cache, &key, &wasm)
                })
                .await
                .map_err(|e| CompileError::Invalid(e.to_string()))??;
                Ok::<_, CompileError>(Arc::new(Loaded {
                    pre,
                    last_used: Mutex::new(Instant::now()),
                }))
            })
            .await;
        match loaded {
            Ok(l) => {
                *l.last_used.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
                Ok(l.clone())
            }
            Err(e) => {
                // Forget the failed cell, so that the map does not keep refused packages.
                let mut map = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
                if map.get(sha).is_some_and(|c| c.get().is_none()) {
                    map.remove(sha);
                }
                Err(e)
            }
        }
    }
}

fn evict_least_recent(map: &mut HashMap<String, Arc<tokio::sync::OnceCell<Arc<Loaded>>>>) {
    let oldest = map
        .iter()
        .filter_map(|(k, c)| {
            c.get()
                .map(|l| (*l.last_used.lock().unwrap_or_else(|p| p.into_inner()), k))
        })
        .min()
        .map(|(_, k)| k.clone());
    if let Some(k) = oldest {
        map.remove(&k);
    }
}

impl Executor for WasmExecutor {
    fn start(
        &self,
        spec: &FunctionSpec,
        _version: &str,
        code_dir: PathBuf,
    ) -> BoxFuture<'_, Result<Box<dyn Instance>, StartError>> {
        let spec = spec.clone();
        Box::pin(async move {
            let started = Instant::now();
            let loaded =
                self.load(&spec.code_sha256, &code_dir)
                    .await
                    .map_err(|e| StartError::Init {
                        error_type: "Runtime.InvalidComponent".into(),
                        message: e.to_string(),
                    })?;
            let instance = invoke::WasmInstance {
                engine: self.engine.clone(),
                pre: loaded.pre.clone(),
                grants: Grants::from_env(&spec.env),
                memory_limit_bytes: spec.memory_mb as usize * 1024 * 1024,
                timeout: Duration::from_secs(u64::from(spec.timeout_s)),
                log_limit_bytes: self.cfg.log_limit_bytes,
                start_ms: Some(started.elapsed().as_secs_f64() * 1000.0),
                keep_room: self.keep_room.clone(),
                dropper: self.dropper.clone(),
                kept: Mutex::new(None),
            };
            Ok(Box::new(instance) as Box<dyn Instance>)
        })
    }

    fn takes_http(&self, _runtime: &str) -> bool {
        true
    }

    fn check_config(
        &self,
        _runtime: &str,
        env: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), String> {
        match env.get(host::INSTANCE_REUSE_VAR) {
            Some(value) => host::parse_reuse(value).map(|_| ()),
            None => Ok(()),
        }
    }

    fn collect_garbage(&self, referenced: &[String]) {
        let keep: std::collections::HashSet<&str> = referenced.iter().map(String::as_str).collect();
        self.loaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|sha, _| keep.contains(sha.as_str()));
        let removed = compile::collect_garbage(&self.cfg.cache_dir, &self.engine_key, &keep);
        if removed > 0 {
            tracing::debug!(removed, "compiled components of deleted packages removed");
        }
    }

    fn prepare(
        &self,
        _runtime: &str,
        code_sha256: &str,
        code_dir: PathBuf,
    ) -> BoxFuture<'_, Result<(), String>> {
        let sha = code_sha256.to_string();
        Box::pin(async move {
            self.load(&sha, &code_dir)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}
