//! From a package to a ready-to-instantiate component: find the one `.wasm`, check that it
//! is a component of the `wasi:http/proxy` world, compile it once and keep the compiled
//! artifact on disk (`<cache>/<sha256>-<engine>.cwasm`), so that neither a second deploy of
//! the same bytes nor a restart compiles again.

use std::hash::Hasher;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::Engine;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::host::Host;

/// What a deploy or a start is told when the package is not a usable component. The
/// messages are shown to the uploader as they are.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("The package is not WebAssembly: expected a WebAssembly component (a .wasm file, starting with \\0asm) or a zip that holds exactly one.")]
    NotWasm,
    #[error("The package holds no .wasm file: a wasm function's package is a component, or a zip that holds exactly one .wasm component.")]
    NoWasmFile,
    #[error("The package holds {0} .wasm files ({1}): a wasm function's package holds exactly one component.")]
    SeveralWasmFiles(usize, String),
    #[error("The .wasm file is a core WebAssembly module, not a component: expected a WebAssembly component exporting wasi:http/incoming-handler (the wasi:http/proxy world). Build it for wasm32-wasip2, or wrap it with `wasm-tools component new`.")]
    CoreModule,
    #[error("The component could not be compiled: {0}")]
    Invalid(String),
    #[error("Expected a WebAssembly component exporting wasi:http/incoming-handler (the wasi:http/proxy world): {0}")]
    NotProxy(String),
    #[error("I/O error while preparing the component: {0}")]
    Io(#[from] std::io::Error),
}

/// The `\0asm` magic every WebAssembly binary starts with.
const WASM_MAGIC: &[u8; 4] = b"\0asm";
/// The version and layer words of a component (a core module has `01 00 00 00`).
const COMPONENT_LAYER: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];

/// The one `.wasm` file of an unpacked package.
pub fn find_component(code_dir: &Path) -> Result<PathBuf, CompileError> {
    let mut found = Vec::new();
    let mut dirs = vec![code_dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                dirs.push(path);
            } else if kind.is_file() && path.extension().is_some_and(|e| e == "wasm") {
                found.push(path);
            }
        }
    }
    match found.len() {
        0 => {
            // A package of one file that is not wasm is "not WebAssembly", not "no file".
            Err(CompileError::NoWasmFile)
        }
        1 => Ok(found.remove(0)),
        n => {
            let mut names: Vec<String> = found
                .iter()
                .filter_map(|p| p.strip_prefix(code_dir).ok())
                .map(|p| p.display().to_string())
                .collect();
            names.sort();
            Err(CompileError::SeveralWasmFiles(n, names.join(", ")))
        }
    }
}

/// Checks the header before handing bytes to the compiler, for a message that says what
/// was expected.
pub fn check_header(bytes: &[u8]) -> Result<(), CompileError> {
    if bytes.len() < 8 || &bytes[..4] != WASM_MAGIC {
        return Err(CompileError::NotWasm);
    }
    if bytes[4..8] != COMPONENT_LAYER {
        return Err(CompileError::CoreModule);
    }
    Ok(())
}

/// Feeds `Hash` output into sha256, so the engine's compatibility hash is the same in
/// every build of the same wasmtime and configuration (std's hasher makes no such promise).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// A short hex digest of everything that makes compiled code incompatible: the wasmtime
/// version, the target and the engine's settings.
pub fn engine_key(engine: &Engine) -> String {
    use std::hash::Hash as _;
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    hex::encode(&h.0.finalize()[..8])
}

/// Where the compiled code is cached, and under which name.
pub struct Cache<'a> {
    pub dir: &'a Path,
    /// [`engine_key`] of the engine (computed once per engine).
    pub engine_key: &'a str,
}

/// Compiles (or loads the compiled artifact of) the component with digest `key` at
/// `wasm_path`, and checks it against the proxy world.
pub fn load(
    engine: &Engine,
    linker: &Linker<Host>,
    cache: Cache<'_>,
    key: &str,
    wasm_path: &Path,
) -> Result<ProxyPre<Host>, CompileError> {
    let cache_dir = cache.dir;
    let cached = cache_dir.join(format!("{key}-{}.cwasm", cache.engine_key));
    let component = match deserialize(engine, &cached) {
        Some(c) => c,
        None => {
            let bytes = std::fs::read(wasm_path)?;
            check_header(&bytes)?;
            let compiled = engine
                .precompile_component(&bytes)
                .map_err(|e| CompileError::Invalid(format!("{e:#}")))?;
            write_atomically(cache_dir, &cached, &compiled)?;
            deserialize(engine, &cached).ok_or_else(|| {
                CompileError::Invalid("the compiled artifact could not be loaded".into())
            })?
        }
    };
    let checked = linker
        .instantiate_pre(&component)
        .and_then(ProxyPre::new)
        .map_err(|e| CompileError::NotProxy(format!("{e:#}")));
    if checked.is_err() {
        // A refused package leaves nothing behind, its compiled code included.
        let _ = std::fs::remove_file(&cached);
    }
    checked
}

fn deserialize(engine: &Engine, path: &Path) -> Option<Component> {
    if !path.is_file() {
        return None;
    }
    // SAFETY: `deserialize_file` trusts the file to be what `precompile_component` wrote,
    // because it maps native code from it. This file is: only `load` writes into the cache
    // directory, which lies in the server's own data directory (mode 0700), and it writes
    // through a temporary file and a rename, so a crash never leaves a half-written
    // artifact under the final name. wasmtime also checks the header against this
    // engine's version and settings and refuses a mismatch, which is then recompiled.
    match unsafe { Component::deserialize_file(engine, path) } {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "compiled component unusable; recompiling");
            let _ = std::fs::remove_file(path);
            None
        }
    }
}

/// Removes the compiled files of packages not in `keep`, and those an engine with other
/// settings (another wasmtime) wrote; returns how many went. Temporary files of a write
/// in progress are left alone.
pub fn collect_garbage(
    dir: &Path,
    engine_key: &str,
    keep: &std::collections::HashSet<&str>,
) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let suffix = format!("-{engine_key}.cwasm");
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.ends_with(".cwasm") {
            continue;
        }
        let wanted = name
            .strip_suffix(&suffix)
            .is_some_and(|sha| keep.contains(sha));
        if !wanted && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}", uuid_like()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        assert!(matches!(
            check_header(b"PK\x03\x04...."),
            Err(CompileError::NotWasm)
        ));
        assert!(matches!(check_header(b"\0asm"), Err(CompileError::NotWasm)));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(CompileError::CoreModule)
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn garbage_is_what_no_package_or_other_engines_left() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "aa-k1.cwasm",
            "bb-k1.cwasm",
            "aa-k0.cwasm",
            ".tmp-1",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let keep = std::collections::HashSet::from(["aa"]);
        assert_eq!(collect_garbage(dir.path(), "k1", &keep), 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".tmp-1", "aa-k1.cwasm", "notes.txt"]);
    }

    #[test]
    fn finds_exactly_one_wasm() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            find_component(dir.path()),
            Err(CompileError::NoWasmFile)
        ));
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.wasm"), b"x").unwrap();
        std::fs::write(dir.path().join("README"), b"x").unwrap();
        assert_eq!(
            find_component(dir.path()).unwrap(),
            dir.path().join("sub/a.wasm")
        );
        std::fs::write(dir.path().join("b.wasm"), b"x").unwrap();
        let e = find_component(dir.path()).unwrap_err().to_string();
        assert!(e.contains("2 .wasm files (b.wasm, sub/a.wasm)"), "{e}");
    }
}
