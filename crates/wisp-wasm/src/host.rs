//! What one invocation's `Store` holds: the WASI context (declared variables only, no
//! preopened directories, no sockets), the wasi:http context with the outbound allow-list,
//! the memory limiter that also measures peak linear memory, and the captured output.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

/// The environment variable that lists the hosts a function may call over HTTP
/// (`host` or `host:port`, comma-separated). The platform reads it; the guest never sees
/// it, so it is configuration, not data.
pub const ALLOWED_HOSTS_VAR: &str = "WISP_ALLOWED_HOSTS";

/// The environment variable by which a function opts into instance reuse: the number of
/// invocations one instantiated component may serve (1, the default, is a fresh instance
/// per invocation). Like the allow-list, the platform reads it and the guest never sees it.
pub const INSTANCE_REUSE_VAR: &str = "WISP_WASM_INSTANCE_REUSE";

/// The most invocations one instance may serve, whatever a function asks.
pub const INSTANCE_REUSE_MAX: u32 = 1_000_000;

/// Parses [`INSTANCE_REUSE_VAR`]: a whole number from 1 to [`INSTANCE_REUSE_MAX`].
pub fn parse_reuse(value: &str) -> Result<u32, String> {
    match value.trim().parse::<u32>() {
        Ok(n) if (1..=INSTANCE_REUSE_MAX).contains(&n) => Ok(n),
        _ => Err(format!(
            "{INSTANCE_REUSE_VAR} must be a whole number from 1 to {INSTANCE_REUSE_MAX} (invocations one instance may serve); got '{value}'."
        )),
    }
}

/// A function's outbound HTTP allow-list: exact `host` (any port) or `host:port` entries.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    entries: Vec<String>,
}

impl AllowList {
    pub fn parse(spec: &str) -> AllowList {
        AllowList {
            entries: spec
                .split(',')
                .map(|e| e.trim().to_ascii_lowercase())
                .filter(|e| !e.is_empty())
                .collect(),
        }
    }

    /// Whether a request to `host` on `port` may leave.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let with_port = format!("{host}:{port}");
        self.entries.iter().any(|e| *e == host || *e == with_port)
    }
}

/// The future that drives a request's I/O, as the wasi:http hooks pass it around.
type IoFuture = Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>;

/// The wasi:http hooks: outgoing requests go out only to allow-listed hosts.
pub struct Hooks {
    allow: Arc<AllowList>,
}

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> Box<
        dyn Future<Output = wasmtime_wasi_http::Result<(http::Response<WasiBody>, IoFuture)>>
            + Send,
    > {
        let uri = request.uri();
        let host = uri.host().unwrap_or("").to_string();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if !self.allow.allows(&host, port) {
            tracing::debug!(%host, port, "outbound HTTP refused: host not on the allow-list");
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        // The default hook ignores this future too: it completes the outgoing body, which
        // the default sender drives itself.
        drop(fut);
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as IoFuture,
            ))
        })
    }
}

/// Linear memory accounting shared between the limiter (inside the store) and the
/// invocation (which may have to drop the store on a timeout and still report).
#[derive(Debug, Default)]
pub struct MemoryStats {
    pub peak_bytes: AtomicUsize,
    /// Set when a growth was refused because of MemorySize.
    pub over_limit: AtomicBool,
}

/// Caps the sum of all linear memories of the instance at the function's MemorySize and
/// records the peak. Tables, instance and memory counts use wasmtime's `StoreLimits`.
pub struct Limiter {
    limit_bytes: usize,
    total_bytes: usize,
    stats: Arc<MemoryStats>,
    others: StoreLimits,
}

impl Limiter {
    pub fn new(limit_bytes: usize, stats: Arc<MemoryStats>) -> Limiter {
        Limiter {
            limit_bytes,
            total_bytes: 0,
            stats,
            others: StoreLimitsBuilder::new()
                .memory_size(limit_bytes)
                .instances(10_000)
                .tables(10_000)
                .memories(10_000)
                .build(),
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        let next = self.total_bytes.saturating_sub(current) + desired;
        if next > self.limit_bytes {
            self.stats.over_limit.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        self.total_bytes = next;
        self.stats.peak_bytes.fetch_max(next, Ordering::Relaxed);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.others.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.others.instances()
    }

    fn tables(&self) -> usize {
        self.others.tables()
    }

    fn memories(&self) -> usize {
        self.others.memories()
    }
}

/// The guest's stdout and stderr, interleaved in one bounded buffer: past the limit the
/// output is counted and dropped, and the log says so with a marker. Writes never fail,
/// so a chatty guest is not broken by the bound.
#[derive(Clone)]
pub struct LogSink {
    inner: Arc<Mutex<LogBuffer>>,
}

struct LogBuffer {
    bytes: Vec<u8>,
    limit: usize,
    dropped: u64,
}

impl LogSink {
    pub fn new(limit: usize) -> LogSink {
        LogSink {
            inner: Arc::new(Mutex::new(LogBuffer {
                bytes: Vec::new(),
                limit,
                dropped: 0,
            })),
        }
    }

    fn append(&self, data: &[u8]) {
        let mut buf = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let room = buf.limit.saturating_sub(buf.bytes.len());
        let kept = room.min(data.len());
        buf.bytes.extend_from_slice(&data[..kept]);
        buf.dropped += (data.len() - kept) as u64;
    }

    /// The captured output, with a marker if some was dropped.
    pub fn take(&self) -> String {
        let mut buf = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut text = String::from_utf8_lossy(&std::mem::take(&mut buf.bytes)).into_owned();
        if buf.dropped > 0 {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!(
                "[wisp: output truncated, {} bytes dropped]\n",
                buf.dropped
            ));
            buf.dropped = 0;
        }
        text
    }
}

impl IsTerminal for LogSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// How much one `check-write` lets the guest write; writes never block.
const LOG_WRITE_PERMIT_BYTES: usize = 64 * 1024;

#[wasmtime_wasi::async_trait]
impl Pollable for LogSink {
    async fn ready(&mut self) {}
}

impl OutputStream for LogSink {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(LOG_WRITE_PERMIT_BYTES)
    }
}

impl tokio::io::AsyncWrite for LogSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The data of one invocation's `Store`.
pub struct Host {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: Hooks,
    pub limiter: Limiter,
}

/// What a function is granted, from its configuration.
#[derive(Debug, Clone)]
pub struct Grants {
    /// The declared variables, without the platform's own settings.
    pub env: Vec<(String, String)>,
    pub allow: Arc<AllowList>,
    /// Invocations one instance may serve (1: a fresh instance per invocation).
    pub reuse: u32,
}

impl Grants {
    pub fn from_env(env: &BTreeMap<String, String>) -> Grants {
        Grants {
            env: env
                .iter()
                .filter(|(k, _)| {
                    k.as_str() != ALLOWED_HOSTS_VAR && k.as_str() != INSTANCE_REUSE_VAR
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            allow: Arc::new(AllowList::parse(
                env.get(ALLOWED_HOSTS_VAR).map(String::as_str).unwrap_or(""),
            )),
            // Checked when the function is configured; a value that got past that
            // (an older server's) means no reuse.
            reuse: env
                .get(INSTANCE_REUSE_VAR)
                .and_then(|v| parse_reuse(v).ok())
                .unwrap_or(1),
        }
    }
}

impl Host {
    pub fn new(grants: &Grants, logs: &LogSink, limiter: Limiter) -> Host {
        // No preopened directories, no inherited environment or stdio, no network: the
        // builder's defaults deny, and nothing here grants.
        let wasi = WasiCtxBuilder::new()
            .envs(&grants.env)
            .stdout(logs.clone())
            .stderr(logs.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        Host {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: Hooks {
                allow: grants.allow.clone(),
            },
            limiter,
        }
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matches_host_or_host_and_port() {
        let allow = AllowList::parse("api.example.com, 127.0.0.1:8080,,");
        assert!(allow.allows("api.example.com", 443));
        assert!(allow.allows("API.example.com", 80));
        assert!(allow.allows("127.0.0.1", 8080));
        assert!(!allow.allows("127.0.0.1", 8081));
        assert!(!allow.allows("example.com", 443));
        assert!(!AllowList::default().allows("localhost", 80));
    }

    #[test]
    fn grants_hide_the_allow_list_from_the_guest() {
        let env = BTreeMap::from([
            ("A".to_string(), "1".to_string()),
            (ALLOWED_HOSTS_VAR.to_string(), "h".to_string()),
            (INSTANCE_REUSE_VAR.to_string(), "50".to_string()),
        ]);
        let g = Grants::from_env(&env);
        assert_eq!(g.env, vec![("A".to_string(), "1".to_string())]);
        assert!(g.allow.allows("h", 1));
        assert_eq!(g.reuse, 50);
        assert_eq!(Grants::from_env(&BTreeMap::new()).reuse, 1);
    }

    #[test]
    fn reuse_must_be_a_bounded_count() {
        assert_eq!(parse_reuse(" 8 "), Ok(8));
        for bad in ["0", "-1", "x", "", "1000001", "1.5"] {
            assert!(parse_reuse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn log_sink_bounds_and_marks() {
        let sink = LogSink::new(10);
        sink.append(b"0123456789abcdef");
        assert_eq!(
            sink.take(),
            "0123456789\n[wisp: output truncated, 6 bytes dropped]\n"
        );
        assert_eq!(sink.take(), "");
    }

    #[test]
    fn limiter_caps_the_sum_and_keeps_the_peak() {
        let stats = Arc::new(MemoryStats::default());
        let mut l = Limiter::new(100, stats.clone());
        assert!(l.memory_growing(0, 60, None).unwrap());
        assert!(l.memory_growing(0, 30, None).unwrap());
        assert!(!l.memory_growing(60, 80, None).unwrap());
        assert!(stats.over_limit.load(Ordering::Relaxed));
        assert_eq!(stats.peak_bytes.load(Ordering::Relaxed), 90);
    }
}
