//! Memory and process-count limits for instances through cgroups.
//!
//! cgroup v2 is used where the memory controller is delegated to us; otherwise the v1
//! `memory` and `pids` hierarchies; otherwise none (the process executor then falls back
//! to watching the instance's resident memory). Each server keeps its instances under
//! `wisp/<server pid>/<instance>`, and at start removes the groups of servers that are no
//! longer running (killing what was left in them), so a crashed server leaks nothing.

use std::ffi::CString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

const ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone)]
enum Mode {
    V2 {
        base: PathBuf,
    },
    V1 {
        memory: PathBuf,
        pids: Option<PathBuf>,
    },
}

/// The server's cgroup subtree, if it has one.
#[derive(Debug, Clone)]
pub struct Cgroups {
    mode: Option<Mode>,
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value)
}

fn pid_alive(pid: &str) -> bool {
    Path::new("/proc").join(pid).exists()
}

fn procs_in(dir: &Path) -> Vec<i32> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Kills every process in `dir` (and its children groups), then removes the groups.
fn destroy_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                destroy_tree(&entry.path());
            }
        }
    }
    for _ in 0..50 {
        let pids = procs_in(dir);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = fs::remove_dir(dir);
}

/// Removes the subtrees of servers that are gone.
fn reap_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if entry.path().is_dir() && name.bytes().all(|b| b.is_ascii_digit()) && !pid_alive(&name) {
            destroy_tree(&entry.path());
        }
    }
}

impl Cgroups {
    /// A subtree with no limits at all (for tests, or when asked to run without cgroups).
    pub fn disabled() -> Self {
        Cgroups { mode: None }
    }

    pub fn detect() -> Self {
        let me = std::process::id().to_string();
        let v2_root = Path::new(ROOT);
        let v2_controllers =
            fs::read_to_string(v2_root.join("cgroup.controllers")).unwrap_or_default();
        if v2_controllers.split_whitespace().any(|c| c == "memory") {
            let parent = v2_root.join("wisp");
            let base = parent.join(&me);
            let ok = (|| -> io::Result<()> {
                let _ = write(&v2_root.join("cgroup.subtree_control"), "+memory +pids");
                fs::create_dir_all(&parent)?;
                reap_stale(&parent);
                write(&parent.join("cgroup.subtree_control"), "+memory +pids")?;
                fs::create_dir_all(&base)?;
                write(&base.join("cgroup.subtree_control"), "+memory +pids")
            })();
            if ok.is_ok() {
                return Cgroups {
                    mode: Some(Mode::V2 { base }),
                };
            }
        }
        let memory_root = v2_root.join("memory");
        if memory_root.join("memory.limit_in_bytes").exists() {
            let setup = |root: &Path| -> io::Result<PathBuf> {
                let parent = root.join("wisp");
                fs::create_dir_all(&parent)?;
                reap_stale(&parent);
                let base = parent.join(&me);
                fs::create_dir_all(&base)?;
                Ok(base)
            };
            if let Ok(memory) = setup(&memory_root) {
                let pids_root = v2_root.join("pids");
                // The root of the pids hierarchy has no pids.max; its children do.
                let pids = pids_root
                    .join("cgroup.procs")
                    .exists()
                    .then(|| setup(&pids_root).ok())
                    .flatten()
                    .filter(|base| base.join("pids.max").exists());
                return Cgroups {
                    mode: Some(Mode::V1 { memory, pids }),
                };
            }
        }
        Cgroups { mode: None }
    }

    pub fn describe(&self) -> &'static str {
        match self.mode {
            Some(Mode::V2 { .. }) => "cgroup v2 (memory, pids)",
            Some(Mode::V1 { pids: Some(_), .. }) => "cgroup v1 (memory, pids)",
            Some(Mode::V1 { pids: None, .. }) => "cgroup v1 (memory)",
            None => "none (resident memory is polled instead)",
        }
    }

    pub fn enabled(&self) -> bool {
        self.mode.is_some()
    }

    /// Creates the group of one instance with its limits.
    pub fn create(
        &self,
        id: &str,
        memory_mb: u32,
        max_pids: u32,
    ) -> io::Result<Option<InstanceCgroup>> {
        let limit = (u64::from(memory_mb) * 1024 * 1024).to_string();
        let group = match &self.mode {
            None => return Ok(None),
            Some(Mode::V2 { base }) => {
                let dir = base.join(id);
                fs::create_dir(&dir)?;
                let group = InstanceCgroup {
                    dirs: vec![dir.clone()],
                    v2: true,
                };
                write(&dir.join("memory.max"), &limit)?;
                let _ = write(&dir.join("memory.swap.max"), "0");
                let _ = write(&dir.join("pids.max"), &max_pids.to_string());
                group
            }
            Some(Mode::V1 { memory, pids }) => {
                let mem_dir = memory.join(id);
                fs::create_dir(&mem_dir)?;
                let mut group = InstanceCgroup {
                    dirs: vec![mem_dir.clone()],
                    v2: false,
                };
                write(&mem_dir.join("memory.limit_in_bytes"), &limit)?;
                // Without swap accounting this file is absent; with it, swap must not
                // become a way around the limit.
                let _ = write(&mem_dir.join("memory.memsw.limit_in_bytes"), &limit);
                if let Some(pids) = pids {
                    let pids_dir = pids.join(id);
                    fs::create_dir(&pids_dir)?;
                    write(&pids_dir.join("pids.max"), &max_pids.to_string())?;
                    group.dirs.push(pids_dir);
                }
                group
            }
        };
        Ok(Some(group))
    }
}

/// The cgroup(s) of one instance. Dropping it does nothing: call [`InstanceCgroup::destroy`].
#[derive(Debug)]
pub struct InstanceCgroup {
    /// The memory group first, then the pids group on v1.
    dirs: Vec<PathBuf>,
    v2: bool,
}

impl InstanceCgroup {
    /// Paths of the `cgroup.procs` files the child writes itself into before `exec`.
    pub fn procs_files(&self) -> Vec<CString> {
        self.dirs
            .iter()
            .filter_map(|d| {
                CString::new(d.join("cgroup.procs").into_os_string().into_encoded_bytes()).ok()
            })
            .collect()
    }

    fn memory_dir(&self) -> &Path {
        &self.dirs[0]
    }

    /// Starts a new peak-memory measurement (v1 resets on write; v2 since Linux 6.12).
    pub fn reset_peak(&self) {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        let _ = write(
            &self.memory_dir().join(file),
            if self.v2 { "reset" } else { "0" },
        );
    }

    pub fn peak_bytes(&self) -> Option<u64> {
        let file = if self.v2 {
            "memory.peak"
        } else {
            "memory.max_usage_in_bytes"
        };
        fs::read_to_string(self.memory_dir().join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// How many times the kernel's OOM killer has killed a process in this group.
    pub fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        fs::read_to_string(self.memory_dir().join(file))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|n| n.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }

    /// Kills everything in the group, including processes that left the instance's process
    /// group, and removes the group. Blocking: run it off the async threads.
    pub fn destroy(&self) {
        for dir in &self.dirs {
            destroy_tree(dir);
        }
    }
}
