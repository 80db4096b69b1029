//! Finds the language interpreters this machine has, once, at start-up.
//!
//! Runtime names map to real executables: `python3.11` to a CPython 3.11, `nodejs20.x` to
//! a Node.js 20. Launchers such as pyenv shims are resolved to the interpreter they would
//! run (`sys.executable`), because a shim costs ~80 ms on every cold start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;
use wisp_core::{Error, RuntimeKind};

#[derive(Debug, Clone, Default)]
pub struct Interpreters {
    python: BTreeMap<u32, PathBuf>,
    node: BTreeMap<u32, PathBuf>,
}

async fn output_of(program: &Path, args: &[&str]) -> Option<String> {
    let run = Command::new(program)
        .args(args)
        .env_remove("PYTHONPATH")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .ok()?
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn candidates(names: &[String]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for fixed in ["/usr/local/bin", "/usr/bin", "/bin"] {
        dirs.push(PathBuf::from(fixed));
    }
    let mut out = Vec::new();
    for dir in dirs {
        for name in names {
            let path = dir.join(name);
            if path.is_file() && !out.contains(&path) {
                out.push(path);
            }
        }
    }
    out
}

impl Interpreters {
    pub async fn discover() -> Self {
        let mut found = Interpreters::default();
        let mut names: Vec<String> = (6..=20).map(|m| format!("python3.{m}")).collect();
        names.push("python3".into());
        const PROBE_ARGS: &[&str] = &[
            "-S",
            "-c",
            "import sys; print(sys.version_info[1]); print(sys.executable)",
        ];
        // Probed concurrently: each launcher shim can cost ~100 ms.
        let pythons = candidates(&names);
        let outputs =
            futures_util::future::join_all(pythons.iter().map(|c| output_of(c, PROBE_ARGS))).await;
        for out in outputs {
            let Some(out) = out else { continue };
            let mut lines = out.lines();
            let (Some(minor), Some(exe)) = (lines.next(), lines.next()) else {
                continue;
            };
            let (Ok(minor), exe) = (minor.parse::<u32>(), PathBuf::from(exe)) else {
                continue;
            };
            if exe.is_file() {
                found.python.entry(minor).or_insert(exe);
            }
        }
        for candidate in candidates(&["node".into(), "nodejs".into()]) {
            let Some(version) = output_of(&candidate, &["--version"]).await else {
                continue;
            };
            let major = version
                .trim_start_matches('v')
                .split('.')
                .next()
                .and_then(|m| m.parse::<u32>().ok());
            if let Some(major) = major {
                let exe = std::fs::canonicalize(&candidate).unwrap_or(candidate);
                found.node.entry(major).or_insert(exe);
            }
        }
        found
    }

    /// The runtime names this machine can run.
    pub fn available(&self) -> Vec<String> {
        let mut out: Vec<String> = self.python.keys().map(|m| format!("python3.{m}")).collect();
        out.extend(self.node.keys().map(|m| format!("nodejs{m}.x")));
        out.push("provided".into());
        out.push("provided.al2".into());
        out.push("provided.al2023".into());
        out.push("wasm".into());
        out
    }

    /// The interpreter for a runtime, or `None` for `provided` (the package brings its own).
    pub fn interpreter(&self, kind: RuntimeKind, name: &str) -> Result<Option<&Path>, Error> {
        let found = match kind {
            // `provided` packages bring their own bootstrap; components run in-process.
            RuntimeKind::Provided | RuntimeKind::Wasm => return Ok(None),
            RuntimeKind::Python { minor } => self.python.get(&minor),
            RuntimeKind::Node { major } => self.node.get(&major),
        };
        found.map(|p| Some(p.as_path())).ok_or_else(|| {
            Error::invalid(format!(
                "The runtime parameter of {name} is not supported on this server: no matching interpreter is installed. Available runtimes: {}.",
                self.available().join(", ")
            ))
        })
    }
}
