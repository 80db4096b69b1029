//! `wisp serve`: assembles the store, the runtime, the engine and the API, and runs them
//! until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use wisp_engine::{Engine, EngineConfig};
use wisp_runtime::cgroup::Cgroups;
use wisp_runtime::{Interpreters, ProcessExecutor, ProcessExecutorConfig};
use wisp_store::{FsBlobStore, SqliteStore, UnpackLimits};

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on. Loopback by default: exposing the API is a deliberate choice.
    #[arg(long, default_value = "127.0.0.1:8790", env = "WISP_LISTEN")]
    listen: SocketAddr,
    /// Address function URLs are served on: a listener of their own, so a URL path can
    /// never collide with the API's paths. Port 0 picks a free port. Default: 127.0.0.1:8791,
    /// or a free port if that one is taken.
    #[arg(long, env = "WISP_URL_LISTEN")]
    url_listen: Option<SocketAddr>,
    /// How late a schedule's fire may be and still run as on time; later, it counts as
    /// missed while the server was down, and the schedule's MissedFires policy applies.
    #[arg(long, default_value_t = 60)]
    schedule_grace_secs: u64,
    /// Address HTTP routes (`http` triggers) are served on, apart from the API. Default:
    /// 127.0.0.1:8792, or a free port if that one is taken.
    #[arg(long, env = "WISP_ROUTES_LISTEN")]
    routes_listen: Option<SocketAddr>,
    /// Where functions, packages, the queue and records are kept.
    #[arg(long, default_value = ".wisp", env = "WISP_DATA_DIR")]
    data_dir: PathBuf,
    /// Region reported in ARNs and to functions.
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Invocations running at once on this node.
    #[arg(long, default_value_t = 64)]
    max_concurrency: u32,
    /// Instances alive at once on this node (busy or idle); at least --max-concurrency.
    #[arg(long, default_value_t = 128)]
    max_instances: u32,
    /// How long an invocation waits for a free slot before it gets 429.
    #[arg(long, default_value_t = 1000)]
    queue_wait_ms: u64,
    /// How long an idle instance is kept warm before it is stopped.
    #[arg(long, default_value_t = 300)]
    keep_alive_secs: u64,
    /// First retry delay of a failed async invocation; the second waits twice as long.
    #[arg(long, default_value_t = 1000)]
    async_retry_base_ms: u64,
    /// Async invocations running at once.
    #[arg(long, default_value_t = 16)]
    async_concurrency: usize,
    /// Invocation records kept (oldest dropped first).
    #[arg(long, default_value_t = 10_000)]
    records_retain: u64,
    /// How long running invocations may take to finish at shutdown.
    #[arg(long, default_value_t = 10)]
    shutdown_grace_secs: u64,
    /// Run instances without cgroup limits even where cgroups are available.
    #[arg(long)]
    no_cgroups: bool,
    /// Accept unsigned requests from anyone who can reach the port. For throwaway local
    /// use only.
    #[arg(long)]
    no_auth: bool,
    /// Serve /metrics without authentication, for a Prometheus scraper (it cannot sign
    /// requests). The metrics name functions and count their invocations.
    #[arg(long)]
    public_metrics: bool,
}

/// Opens the key file, or says loudly that authentication is off.
fn auth(args: &ServeArgs, data_dir: &std::path::Path) -> anyhow::Result<wisp_api::auth::Auth> {
    if args.no_auth {
        tracing::warn!(
            "AUTHENTICATION IS OFF (--no-auth): anyone who can reach {} can deploy and run code",
            args.listen
        );
        eprintln!("wisp: WARNING: authentication is off (--no-auth); do not expose this server");
        return Ok(wisp_api::auth::Auth {
            keys: None,
            public_metrics: true,
        });
    }
    let root = match (
        std::env::var("WISP_ROOT_ACCESS_KEY_ID"),
        std::env::var("WISP_ROOT_SECRET_ACCESS_KEY"),
    ) {
        (Ok(id), Ok(secret)) if !id.is_empty() && !secret.is_empty() => Some((id, secret)),
        _ => None,
    };
    let path = data_dir.join("credentials.json");
    let keys = wisp_auth::KeyFile::open(&path, root).context("could not open the key file")?;
    tracing::info!(
        access_key_id = %keys.admin().access_key_id,
        "API requests must be signed (AWS SigV4); the admin key's secret is in {} or WISP_ROOT_SECRET_ACCESS_KEY",
        path.display()
    );
    Ok(wisp_api::auth::Auth {
        keys: Some(std::sync::Arc::new(std::sync::RwLock::new(keys))),
        public_metrics: args.public_metrics,
    })
}

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WISP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,s3s=off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    runtime.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("could not create the data dir {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    // The store holds functions' environment variables and the key file: owner only.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("could not restrict {}", data_dir.display()))?;
    }
    let store = Arc::new(
        SqliteStore::open(&data_dir.join("wisp.db")).context("could not open the database")?,
    );
    let blobs = Arc::new(FsBlobStore::open(
        &data_dir.join("artifacts"),
        UnpackLimits::default(),
    )?);
    let interpreters = Interpreters::discover().await;
    let cgroups = if args.no_cgroups {
        Cgroups::disabled()
    } else {
        Cgroups::detect()
    };
    tracing::info!(runtimes = ?interpreters.available(), limits = cgroups.describe(), "runtimes found");
    let executor = Arc::new(
        ProcessExecutor::new(ProcessExecutorConfig {
            data_dir: data_dir.clone(),
            region: args.region.clone(),
            interpreters: interpreters.clone(),
            cgroups,
            log_limit_bytes: wisp_core::limits::LOG_MAX_BYTES_PER_INVOCATION,
        })
        .context("could not prepare the process runtime")?,
    );
    // Components (Runtime `wasm`) run on wasmtime inside the server; everything else as
    // processes. Compiled components are cached in the data dir across restarts.
    let wasm = Arc::new(
        wisp_wasm::WasmExecutor::new(wisp_wasm::WasmConfig {
            cache_dir: data_dir.join("wasm-cache"),
            max_concurrent: args.max_concurrency.max(1),
            log_limit_bytes: wisp_core::limits::LOG_MAX_BYTES_PER_INVOCATION,
        })
        .map_err(anyhow::Error::msg)
        .context("could not prepare the WebAssembly runtime")?,
    );
    let executor = Arc::new(wisp_engine::routing::RuntimeRouter::new(executor, wasm));
    let url_listener = bind_side(args.url_listen, 8791, "function URLs").await?;
    let url_addr = url_listener.local_addr()?;
    let routes_listener = bind_side(args.routes_listen, 8792, "HTTP routes").await?;
    let routes_addr = routes_listener.local_addr()?;
    let cfg = EngineConfig {
        data_dir: data_dir.clone(),
        region: args.region.clone(),
        max_concurrency: args.max_concurrency.max(1),
        max_instances: args.max_instances,
        queue_wait: Duration::from_millis(args.queue_wait_ms),
        keep_alive: Duration::from_secs(args.keep_alive_secs),
        async_retry_base: Duration::from_millis(args.async_retry_base_ms),
        async_concurrency: args.async_concurrency.max(1),
        records_retain: args.records_retain,
        url_base: format!("http://{url_addr}"),
        routes_base: format!("http://{routes_addr}"),
    };
    let engine = Engine::start(cfg, store.clone(), blobs, executor, interpreters);
    let queues = wisp_queue::QueueService::start(
        &data_dir.join("queues.db"),
        wisp_queue::QueueConfig {
            region: args.region.clone(),
            ..Default::default()
        },
    )
    .map_err(|e| anyhow::anyhow!("could not open the queues: {e}"))?;
    engine.set_queue_sink(Arc::new(QueueSink(queues.clone())));
    let triggers = wisp_triggers::Triggers::start(
        engine.clone(),
        store,
        Some(queues.clone()),
        (args.schedule_grace_secs * 1000) as i64,
        connectors(),
    )
    .map_err(|e| anyhow::anyhow!("could not start triggers: {e}"))?;
    let auth = auth(&args, &data_dir)?;
    let objects = object_service(&args, &data_dir, &auth, &engine)?;
    let app = wisp_api::router(
        engine.clone(),
        auth.clone(),
        triggers.clone(),
        queues,
        objects,
    );
    let url_app = wisp_api::urls::url_router(engine.clone(), auth);
    let routes_app = wisp_api::routes::routes_router(triggers.clone());
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("could not listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, urls = %url_addr, routes = %routes_addr, data_dir = %data_dir.display(), "wisp is serving");
    println!("wisp: listening on http://{addr}");
    println!("wisp: function URLs on http://{url_addr}, HTTP routes on http://{routes_addr}");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let url_server = serve_side(url_listener, url_app, stop_rx.clone());
    let routes_server = serve_side(routes_listener, routes_app, stop_rx.clone());
    let mut api_stop = stop_rx;
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = api_stop.wait_for(|stop| *stop).await;
        })
        .await
    });
    wait_for_signal().await;
    tracing::info!("stopping: no new requests; waiting for running invocations");
    let grace = Duration::from_secs(args.shutdown_grace_secs);
    // Stop accepting first; in-flight requests keep their connections until they finish.
    let _ = stop_tx.send(true);
    triggers.stop();
    engine.shutdown(grace).await;
    let _ = tokio::time::timeout(grace, url_server).await;
    let _ = tokio::time::timeout(grace, routes_server).await;
    match tokio::time::timeout(grace, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "server error at shutdown"),
        Ok(Err(e)) => tracing::warn!(error = %e, "server task failed"),
        Err(_) => tracing::warn!("connections still open after the grace period"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Queue destinations and dead-letter queues, for the engine.
struct QueueSink(Arc<wisp_queue::QueueService>);

impl wisp_engine::QueueSink for QueueSink {
    fn exists(&self, queue_arn: &str) -> futures_util::future::BoxFuture<'_, bool> {
        let arn = queue_arn.to_string();
        Box::pin(async move { self.0.queue_name_from_arn(&arn).await.is_ok() })
    }

    fn send(
        &self,
        queue_arn: &str,
        body: String,
    ) -> futures_util::future::BoxFuture<'_, Result<(), String>> {
        let arn = queue_arn.to_string();
        Box::pin(async move {
            let name = self
                .0
                .queue_name_from_arn(&arn)
                .await
                .map_err(|e| e.to_string())?;
            self.0
                .send(&name, &body, wisp_queue::MessageAttributes::new())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

/// The embedded S3-compatible object store; its bucket notifications become async
/// invocations of the configured functions.
fn object_service(
    args: &ServeArgs,
    data_dir: &std::path::Path,
    auth: &wisp_api::auth::Auth,
    engine: &Arc<Engine>,
) -> anyhow::Result<axum::Router> {
    let keys = auth.keys.clone();
    let lookup: wisp_objects::SecretLookup = Arc::new(move |id: &str| {
        let keys = keys.as_ref()?.read().unwrap_or_else(|p| p.into_inner());
        keys.find(id).map(|k| k.secret_access_key.clone())
    });
    let engine = engine.clone();
    let runtime = tokio::runtime::Handle::current();
    let hook: wisp_objects::NotifyHook = Arc::new(move |n: wisp_objects::ObjectNotification| {
        let engine = engine.clone();
        runtime.spawn(async move {
            let payload = bytes::Bytes::from(n.event.to_string());
            let queued = engine
                .invoke(&n.function_arn, None, wisp_engine::InvokeMode::Event, payload, None, None)
                .await;
            if let Err(e) = queued {
                tracing::warn!(function = %n.function_arn, error = %e, "could not deliver an object notification");
            }
        });
    });
    let service = wisp_objects::ObjectService::new(
        &data_dir.join("objects"),
        &args.region,
        lookup,
        !args.no_auth,
        hook,
    )
    .map_err(|e| anyhow::anyhow!("could not open the object store: {e}"))?;
    Ok(service.http_service())
}

/// Binds a side listener (function URLs, HTTP routes): the address given, or by default
/// 127.0.0.1:`default_port`, or a free port if that one is taken.
async fn bind_side(
    addr: Option<SocketAddr>,
    default_port: u16,
    what: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    Ok(match addr {
        Some(addr) => tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("could not listen on {addr} for {what}"))?,
        None => match tokio::net::TcpListener::bind(("127.0.0.1", default_port)).await {
            Ok(l) => l,
            Err(_) => tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?,
        },
    })
}

/// Serves a side listener until the stop signal, telling handlers the peer's address.
fn serve_side(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stop| *stop).await;
        })
        .await
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// The broker connectors this binary carries, one per trigger kind.
fn connectors() -> Vec<Arc<dyn wisp_triggers::connect::Connector>> {
    vec![
        Arc::new(wisp_kafka::KafkaConnector),
        Arc::new(wisp_redis::RedisStreams),
        Arc::new(wisp_mqtt::Mqtt),
        Arc::new(wisp_amqp::RabbitMqConnector),
        Arc::new(wisp_nats::NatsConnector),
    ]
}
