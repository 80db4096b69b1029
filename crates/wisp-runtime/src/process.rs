//! The process executor: one OS process per instance, driven through the Runtime API.
//!
//! Isolation per instance: an empty environment but the function's variables and Lambda's,
//! its own working directory and `TMPDIR`, its own session and process group, a cgroup with
//! the function's memory limit and a process cap (where the machine has cgroups), and
//! `PR_SET_PDEATHSIG` so that a server killed with SIGKILL takes its instances with it.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use wisp_core::limits::INSTANCE_MAX_PIDS;
use wisp_core::{FunctionSpec, InvocationStatus, RuntimeKind};

use crate::cgroup::{Cgroups, InstanceCgroup};
use crate::logs::LogCapture;
use crate::runtime_api::{ApiEvent, Delivered, RuntimeApi};
use crate::{Executor, Instance, Interpreters, Invocation, InvokeResult, Outcome, StartError};

const PYTHON_BOOTSTRAP: &str = include_str!("../bootstraps/python/bootstrap.py");
const NODE_BOOTSTRAP: &str = include_str!("../bootstraps/node/bootstrap.js");

/// How long a runtime may take to initialise (Lambda: 10 s).
const INIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How often resident memory is checked where there are no cgroups.
const RSS_POLL: Duration = Duration::from_millis(20);

pub struct ProcessExecutorConfig {
    /// Instances' working directories go under `<data_dir>/instances`, the bootstraps
    /// under `<data_dir>/runtime`.
    pub data_dir: PathBuf,
    pub region: String,
    pub interpreters: Interpreters,
    pub cgroups: Cgroups,
    /// Output kept per invocation.
    pub log_limit_bytes: usize,
}

pub struct ProcessExecutor {
    cfg: Arc<ProcessExecutorConfig>,
    instances_dir: PathBuf,
    runtime_dir: PathBuf,
}

impl ProcessExecutor {
    pub fn new(cfg: ProcessExecutorConfig) -> std::io::Result<Self> {
        let instances_dir = cfg.data_dir.join("instances");
        let runtime_dir = cfg.data_dir.join("runtime");
        // Instances never outlive their server: whatever is here is left over from a crash.
        if instances_dir.exists() {
            std::fs::remove_dir_all(&instances_dir)?;
        }
        std::fs::create_dir_all(&instances_dir)?;
        for (dir, file, text) in [
            ("python", "bootstrap.py", PYTHON_BOOTSTRAP),
            ("node", "bootstrap.js", NODE_BOOTSTRAP),
        ] {
            let dir = runtime_dir.join(dir);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join(file), text)?;
        }
        // A package.json with "type": "module" in some folder above the data dir would
        // otherwise make Node load the bootstrap as an ES module.
        std::fs::write(
            runtime_dir.join("node").join("package.json"),
            "{\"type\":\"commonjs\"}\n",
        )?;
        Ok(ProcessExecutor {
            cfg: Arc::new(cfg),
            instances_dir,
            runtime_dir,
        })
    }

    pub fn interpreters(&self) -> &Interpreters {
        &self.cfg.interpreters
    }

    async fn start_instance(
        &self,
        spec: &FunctionSpec,
        version: &str,
        code_dir: PathBuf,
    ) -> Result<ProcessInstance, StartError> {
        let kind = spec.runtime_kind();
        let interpreter = self
            .cfg
            .interpreters
            .interpreter(kind, &spec.runtime)
            .map_err(|e| StartError::Unavailable(e.message))?
            .map(Path::to_path_buf);
        let (program, args, runtime_dir): (PathBuf, Vec<String>, PathBuf) = match kind {
            RuntimeKind::Python { .. } => {
                let dir = self.runtime_dir.join("python");
                let script = dir.join("bootstrap.py").to_string_lossy().into_owned();
                let args = ["-S", "-u", "-B"]
                    .map(String::from)
                    .into_iter()
                    .chain([script])
                    .collect();
                (interpreter.unwrap_or_default(), args, dir)
            }
            RuntimeKind::Node { .. } => {
                let dir = self.runtime_dir.join("node");
                let heap_mb = u64::from(spec.memory_mb) * 9 / 10;
                let args = vec![
                    format!("--max-old-space-size={heap_mb}"),
                    dir.join("bootstrap.js").to_string_lossy().into_owned(),
                ];
                (interpreter.unwrap_or_default(), args, dir)
            }
            RuntimeKind::Provided => (code_dir.join("bootstrap"), Vec::new(), code_dir.clone()),
            RuntimeKind::Wasm => {
                return Err(StartError::Unavailable(
                    "wasm functions run on the WebAssembly runtime, not as processes".into(),
                ))
            }
        };
        if kind == RuntimeKind::Provided && !program.is_file() {
            return Err(StartError::Init {
                error_type: "Runtime.InvalidEntrypoint".into(),
                message: "Couldn't find valid bootstrap(s): the package has no executable file named 'bootstrap' at its root.".into(),
            });
        }

        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.instances_dir.join(&id);
        let work = dir.join("work");
        std::fs::create_dir_all(dir.join("tmp"))?;
        std::fs::create_dir_all(&work)?;
        // Handlers open bundled files by relative path, as on Lambda where the working
        // directory is the task root. The instance keeps a working directory of its own
        // (so what it writes there stays its own), which links to the package's top-level
        // entries.
        if let Ok(entries) = std::fs::read_dir(&code_dir) {
            for entry in entries.flatten() {
                let _ = std::os::unix::fs::symlink(entry.path(), work.join(entry.file_name()));
            }
        }
        let cgroup = match self
            .cfg
            .cgroups
            .create(&id, spec.memory_mb, INSTANCE_MAX_PIDS)
        {
            Ok(cg) => cg.map(Arc::new),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(StartError::Io(e));
            }
        };
        let api = RuntimeApi::start().await?;

        let mut env: Vec<(String, String)> = vec![
            ("PATH".into(), "/usr/local/bin:/usr/bin:/bin".into()),
            ("LANG".into(), "C.UTF-8".into()),
            ("TZ".into(), ":UTC".into()),
        ];
        env.extend(spec.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        let today = time::OffsetDateTime::now_utc().date();
        let stream = format!(
            "{:04}/{:02}/{:02}/[{version}]{id}",
            today.year(),
            u8::from(today.month()),
            today.day()
        );
        env.extend(
            [
                ("AWS_LAMBDA_RUNTIME_API", api.addr.to_string()),
                ("_HANDLER", spec.handler.clone()),
                ("LAMBDA_TASK_ROOT", code_dir.to_string_lossy().into_owned()),
                (
                    "LAMBDA_RUNTIME_DIR",
                    runtime_dir.to_string_lossy().into_owned(),
                ),
                ("AWS_LAMBDA_FUNCTION_NAME", spec.name.clone()),
                (
                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                    spec.memory_mb.to_string(),
                ),
                ("AWS_LAMBDA_FUNCTION_VERSION", version.to_string()),
                (
                    "AWS_LAMBDA_LOG_GROUP_NAME",
                    format!("/aws/lambda/{}", spec.name),
                ),
                ("AWS_LAMBDA_LOG_STREAM_NAME", stream),
                ("AWS_REGION", self.cfg.region.clone()),
                ("AWS_DEFAULT_REGION", self.cfg.region.clone()),
                ("AWS_EXECUTION_ENV", format!("AWS_Lambda_{}", spec.runtime)),
                ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
                ("TMPDIR", dir.join("tmp").to_string_lossy().into_owned()),
                ("HOME", dir.join("tmp").to_string_lossy().into_owned()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        );

        let mut cmd = Command::new(&program);
        cmd.args(&args)
            .env_clear()
            .envs(env)
            .current_dir(&work)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let procs_files: Vec<CString> =
            cgroup.as_ref().map(|c| c.procs_files()).unwrap_or_default();
        // SAFETY: the closure runs in the forked child before exec. It calls only
        // async-signal-safe functions (setsid, prctl, open, write, close) on memory
        // allocated before the fork, and allocates nothing itself.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for file in &procs_files {
                    let fd = libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::close(fd);
                    if written != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let started = Instant::now();
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                if let Some(cg) = cgroup {
                    let _ = tokio::task::spawn_blocking(move || cg.destroy()).await;
                }
                let _ = std::fs::remove_dir_all(&dir);
                return Err(StartError::Init {
                    error_type: "Runtime.InvalidEntrypoint".into(),
                    message: format!("Could not start {}: {e}", program.display()),
                });
            }
        };
        let pid = child.id().unwrap_or(0) as i32;
        let mut streams: Vec<OwnedFd> = Vec::new();
        if let Some(out) = child.stdout.take() {
            streams.extend(out.into_owned_fd().ok());
        }
        if let Some(err) = child.stderr.take() {
            streams.extend(err.into_owned_fd().ok());
        }
        let logs = LogCapture::start(streams, self.cfg.log_limit_bytes);
        Ok(ProcessInstance {
            child,
            pid,
            api,
            logs,
            cgroup,
            dir,
            memory_mb: spec.memory_mb,
            timeout: Duration::from_secs(u64::from(spec.timeout_s)),
            started,
            ready: false,
            stopped: false,
        })
    }
}

impl Executor for ProcessExecutor {
    fn start(
        &self,
        spec: &FunctionSpec,
        version: &str,
        code_dir: PathBuf,
    ) -> BoxFuture<'_, Result<Box<dyn Instance>, StartError>> {
        let spec = spec.clone();
        let version = version.to_string();
        async move {
            let instance = self.start_instance(&spec, &version, code_dir).await?;
            Ok(Box::new(instance) as Box<dyn Instance>)
        }
        .boxed()
    }
}

/// One process instance.
pub struct ProcessInstance {
    child: Child,
    pid: i32,
    api: RuntimeApi,
    logs: LogCapture,
    cgroup: Option<Arc<InstanceCgroup>>,
    dir: PathBuf,
    memory_mb: u32,
    timeout: Duration,
    started: Instant,
    ready: bool,
    stopped: bool,
}

/// Resident memory of one process, in bytes (`VmRSS`, or `VmHWM` for the peak).
fn proc_status_bytes(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Why the wait for the runtime ended.
enum Waited {
    Event(ApiEvent),
    Exited(ExitStatus),
    TimedOut,
    OverMemory,
}

fn failed(status: InvocationStatus, error_type: &str, message: String) -> Outcome {
    Outcome::Failed {
        status,
        error_type: error_type.into(),
        message,
    }
}

impl ProcessInstance {
    /// Waits for the next event from the runtime, the process's exit, the deadline or (without
    /// cgroups) the memory limit, whichever comes first.
    async fn wait(&mut self, deadline: tokio::time::Instant) -> Waited {
        let limit_bytes = u64::from(self.memory_mb) * 1024 * 1024;
        let poll_rss = self.cgroup.is_none();
        let mut rss_tick = tokio::time::interval(RSS_POLL);
        loop {
            tokio::select! {
                event = self.api.events.recv() => {
                    // The channel closes only if the listener task died; treat it as a crash.
                    return match event {
                        Some(e) => Waited::Event(e),
                        None => Waited::Exited(self.child.wait().await.unwrap_or_default()),
                    };
                }
                status = self.child.wait() => return Waited::Exited(status.unwrap_or_default()),
                _ = tokio::time::sleep_until(deadline) => return Waited::TimedOut,
                _ = rss_tick.tick(), if poll_rss => {
                    if proc_status_bytes(self.pid, "VmRSS:").unwrap_or(0) > limit_bytes {
                        return Waited::OverMemory;
                    }
                }
            }
        }
    }

    fn kill_now(&mut self) {
        if self.pid > 0 {
            let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
        let _ = self.child.start_kill();
    }

    /// Explains a process that is gone: over its memory, or exited on its own.
    fn exit_outcome(&self, status: ExitStatus, oom_before: u64, request_id: &str) -> Outcome {
        use std::os::unix::process::ExitStatusExt;
        let oom = self
            .cgroup
            .as_ref()
            .is_some_and(|c| c.oom_kills() > oom_before);
        let how = match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit status {code}"),
            (None, Some(9)) => "signal: killed".to_string(),
            (None, Some(sig)) => format!("signal: {sig}"),
            _ => "unknown".to_string(),
        };
        if oom {
            failed(
                InvocationStatus::OutOfMemory,
                "Runtime.OutOfMemory",
                format!("RequestId: {request_id} Error: Runtime exited with error: {how}"),
            )
        } else {
            failed(
                InvocationStatus::Crashed,
                "Runtime.ExitError",
                format!("RequestId: {request_id} Error: Runtime exited with error: {how}"),
            )
        }
    }

    fn peak_memory_mb(&self) -> u64 {
        let bytes = match &self.cgroup {
            Some(cg) => cg.peak_bytes(),
            None => proc_status_bytes(self.pid, "VmHWM:"),
        };
        bytes.unwrap_or(0).div_ceil(1024 * 1024)
    }

    /// Waits for the runtime's first `/next`: its initialisation is then complete.
    async fn initialise(&mut self, request_id: &str) -> Result<(), Outcome> {
        let oom_before = self.cgroup.as_ref().map_or(0, |c| c.oom_kills());
        let deadline = tokio::time::Instant::from_std(self.started + INIT_TIMEOUT);
        loop {
            return match self.wait(deadline).await {
                Waited::Event(ApiEvent::Next) => Ok(()),
                Waited::Event(ApiEvent::InitError { error_type, body }) => {
                    Err(Outcome::FunctionError { error_type, body })
                }
                Waited::Event(_) => continue,
                Waited::Exited(status) => Err(self.exit_outcome(status, oom_before, request_id)),
                Waited::TimedOut => Err(failed(
                    InvocationStatus::Timeout,
                    "Sandbox.Timedout",
                    format!(
                        "RequestId: {request_id} Error: Runtime init timed out after {:.2} seconds",
                        INIT_TIMEOUT.as_secs_f64()
                    ),
                )),
                Waited::OverMemory => Err(failed(
                    InvocationStatus::OutOfMemory,
                    "Runtime.OutOfMemory",
                    format!(
                        "RequestId: {request_id} Error: Runtime exited with error: signal: killed"
                    ),
                )),
            };
        }
    }

    async fn run(&mut self, invocation: Invocation) -> InvokeResult {
        let request_id = invocation.request_id.clone();
        let mut init_ms = None;
        if !self.ready {
            let result = self.initialise(&request_id).await;
            init_ms = Some(self.started.elapsed().as_secs_f64() * 1000.0);
            if let Err(outcome) = result {
                return self.conclude(outcome, init_ms, 0.0, false).await;
            }
            self.ready = true;
        }
        if let Some(cg) = &self.cgroup {
            cg.reset_peak();
        }
        let oom_before = self.cgroup.as_ref().map_or(0, |c| c.oom_kills());
        let run_start = Instant::now();
        let deadline = tokio::time::Instant::from_std(run_start + self.timeout);
        let deadline_ms = wisp_core::time::now_ms() + self.timeout.as_millis() as i64;
        let delivered = Delivered {
            request_id: request_id.clone(),
            payload: invocation.payload,
            deadline_ms,
            invoked_function_arn: invocation.invoked_function_arn,
            client_context: invocation.client_context,
            trace_id: invocation.trace_id,
        };
        if self.api.invocations.send(delivered).await.is_err() {
            let outcome = failed(
                InvocationStatus::Crashed,
                "Runtime.ExitError",
                format!("RequestId: {request_id} Error: the runtime API of the instance is gone"),
            );
            return self.conclude(outcome, init_ms, 0.0, false).await;
        }
        let (outcome, reusable) = loop {
            match self.wait(deadline).await {
                Waited::Event(ApiEvent::Next) => continue,
                Waited::Event(ApiEvent::Response {
                    request_id: id,
                    body,
                }) if id == request_id => break (Outcome::Success(body), true),
                Waited::Event(ApiEvent::Error {
                    request_id: id,
                    error_type,
                    body,
                }) if id == request_id => {
                    break (Outcome::FunctionError { error_type, body }, true)
                }
                Waited::Event(ApiEvent::ResponseTooLarge { .. }) => {
                    let body = serde_json::json!({
                        "errorMessage": format!("Response payload size exceeded maximum allowed payload size ({} bytes).", wisp_core::limits::SYNC_PAYLOAD_MAX_BYTES),
                        "errorType": "Function.ResponseSizeTooLarge",
                    });
                    break (
                        Outcome::FunctionError {
                            error_type: "Function.ResponseSizeTooLarge".into(),
                            body: body.to_string().into(),
                        },
                        true,
                    );
                }
                Waited::Event(ApiEvent::InitError { error_type, body }) => {
                    break (Outcome::FunctionError { error_type, body }, false)
                }
                Waited::Event(_) => continue,
                Waited::Exited(status) => {
                    break (self.exit_outcome(status, oom_before, &request_id), false)
                }
                Waited::TimedOut => {
                    let now = wisp_core::time::lambda_timestamp(wisp_core::time::now_ms());
                    let message = format!(
                        "{now} {request_id} Task timed out after {:.2} seconds",
                        self.timeout.as_secs_f64()
                    );
                    break (
                        failed(InvocationStatus::Timeout, "Sandbox.Timedout", message),
                        false,
                    );
                }
                Waited::OverMemory => {
                    let message = format!(
                        "RequestId: {request_id} Error: Runtime exited with error: signal: killed"
                    );
                    break (
                        failed(
                            InvocationStatus::OutOfMemory,
                            "Runtime.OutOfMemory",
                            message,
                        ),
                        false,
                    );
                }
            }
        };
        let run_ms = run_start.elapsed().as_secs_f64() * 1000.0;
        self.conclude(outcome, init_ms, run_ms, reusable).await
    }

    async fn conclude(
        &mut self,
        outcome: Outcome,
        init_ms: Option<f64>,
        run_ms: f64,
        reusable: bool,
    ) -> InvokeResult {
        let max_memory_mb = self.peak_memory_mb();
        if !reusable {
            // Kill first, so that the pipes reach end of file and settle reads everything.
            self.kill_now();
        }
        self.logs.settle().await;
        InvokeResult {
            outcome,
            logs: self.logs.take(),
            init_ms,
            run_ms,
            max_memory_mb,
            reusable,
            http: None,
        }
    }
}

impl Instance for ProcessInstance {
    fn invoke(&mut self, invocation: Invocation) -> BoxFuture<'_, InvokeResult> {
        self.run(invocation).boxed()
    }

    fn stop(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        async move {
            self.stopped = true;
            self.kill_now();
            if let Some(cg) = self.cgroup.clone() {
                let _ = tokio::task::spawn_blocking(move || cg.destroy()).await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
            let dir = self.dir.clone();
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        }
        .boxed()
    }
}

impl Drop for ProcessInstance {
    fn drop(&mut self) {
        if !self.stopped {
            // Dropped without stop (a cancelled invocation, a panic): still take every
            // process down. The cgroup is emptied by killing, then removed best-effort.
            self.kill_now();
            if let Some(cg) = self.cgroup.take() {
                std::thread::spawn(move || cg.destroy());
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
