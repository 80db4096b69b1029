//! Validation and unpacking of zip packages. A package is hostile until proven otherwise:
//! entries may try to escape with `../` or absolute paths, smuggle symlinks, or expand to
//! far more than their compressed size. Sizes are counted while decompressing; the
//! headers' claims are not trusted.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use wisp_core::limits::{UNZIPPED_MAX_BYTES, ZIP_MAX_ENTRIES};

#[derive(Debug, Clone, Copy)]
pub struct UnpackLimits {
    pub max_total_bytes: u64,
    pub max_entries: usize,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_total_bytes: UNZIPPED_MAX_BYTES,
            max_entries: ZIP_MAX_ENTRIES,
        }
    }
}

/// Why a package was refused. The messages are shown to the uploader as they are.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error(
        "Could not unzip uploaded file. Please check your file, then try to upload again. ({0})"
    )]
    NotAZip(String),
    #[error("The package has {0} entries; the limit is {1}.")]
    TooManyEntries(usize, usize),
    #[error("Unzipped size must be smaller than {0} bytes.")]
    TooLarge(u64),
    #[error("Entry '{0}' escapes the package (absolute path or '..'): entries must be relative paths inside the package.")]
    Escapes(String),
    #[error("Entry '{0}' is a symbolic link: links are not allowed in packages.")]
    Symlink(String),
    #[error("Entry '{0}' appears twice in the package.")]
    Duplicate(String),
    #[error("I/O error while unpacking: {0}")]
    Io(#[from] io::Error),
}

const S_IFMT: u32 = 0o170000;
const S_IFLNK: u32 = 0o120000;

/// A path that stays under the package root: only normal components.
fn safe_relative(name: &str) -> Option<PathBuf> {
    if name.contains('\0') || name.contains('\\') {
        return None;
    }
    let path = Path::new(name);
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

/// The first bytes of every WebAssembly binary.
const WASM_MAGIC: &[u8] = b"\0asm";

/// Where a package that is a bare WebAssembly binary (not a zip) is placed.
pub const RAW_COMPONENT_NAME: &str = "component.wasm";

/// A bare WebAssembly binary is a package of one file: the wasm runtime accepts a
/// component's bytes as they are, as `wasmtime serve` does. Whether it is a usable
/// component is for the runtime to say.
fn place_raw_component(
    bytes: &[u8],
    dest: &Path,
    limits: UnpackLimits,
) -> Result<u64, PackageError> {
    if bytes.len() as u64 > limits.max_total_bytes {
        return Err(PackageError::TooLarge(limits.max_total_bytes));
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(dest.join(RAW_COMPONENT_NAME))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(bytes.len() as u64)
}

/// Unpacks `zip` into `dest`, which must be an empty directory. On error `dest` may hold
/// a partial tree: the caller removes it.
pub fn unpack(zip: &[u8], dest: &Path, limits: UnpackLimits) -> Result<u64, PackageError> {
    if zip.starts_with(WASM_MAGIC) {
        return place_raw_component(zip, dest, limits);
    }
    let mut archive = zip::ZipArchive::new(io::Cursor::new(zip))
        .map_err(|e| PackageError::NotAZip(e.to_string()))?;
    if archive.len() > limits.max_entries {
        return Err(PackageError::TooManyEntries(
            archive.len(),
            limits.max_entries,
        ));
    }
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|e| PackageError::NotAZip(e.to_string()))?;
        let name = entry.name().to_string();
        let shown: String = name.chars().take(200).collect();
        let Some(relative) = safe_relative(&name) else {
            return Err(PackageError::Escapes(shown));
        };
        if entry.unix_mode().is_some_and(|m| m & S_IFMT == S_IFLNK) {
            return Err(PackageError::Symlink(shown));
        }
        let target = dest.join(&relative);
        if entry.is_dir() {
            fs::create_dir_all(&target)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        let executable = entry.unix_mode().is_some_and(|m| m & 0o111 != 0);
        let mut file = match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(if executable { 0o755 } else { 0o644 })
            .open(&target)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(PackageError::Duplicate(shown))
            }
            Err(e) => return Err(e.into()),
        };
        let remaining = limits.max_total_bytes - total;
        let written = io::copy(&mut (&mut entry).take(remaining + 1), &mut file).map_err(|e| {
            match e.kind() {
                io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => {
                    PackageError::NotAZip(e.to_string())
                }
                _ => PackageError::Io(e),
            }
        })?;
        if written > remaining {
            return Err(PackageError::TooLarge(limits.max_total_bytes));
        }
        total += written;
        file.flush()?;
    }
    Ok(total)
}

/// Makes `path` executable by its owner, group and others.
pub fn make_executable(path: &Path) -> io::Result<()> {
    let mut perms = fs::metadata(path)?.permissions();
    perms.set_mode(perms.mode() | 0o755);
    fs::set_permissions(path, perms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;

    fn build(entries: &[(&str, &[u8], Option<u32>)]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        for (name, data, mode) in entries {
            let mut opts = SimpleFileOptions::default();
            if let Some(m) = mode {
                opts = opts.unix_permissions(*m);
            }
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    fn check(zip: &[u8], limits: UnpackLimits, expect_ok: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let got = unpack(zip, dir.path(), limits);
        assert_eq!(got.is_ok(), expect_ok, "{got:?}");
        dir
    }

    #[test]
    fn a_bare_wasm_binary_is_a_package_of_one_file() {
        let wasm = b"\0asm\x0d\0\x01\0rest";
        let dir = check(wasm, UnpackLimits::default(), true);
        assert_eq!(fs::read(dir.path().join(RAW_COMPONENT_NAME)).unwrap(), wasm);
        let small = UnpackLimits {
            max_total_bytes: 4,
            max_entries: 10,
        };
        check(wasm, small, false);
    }

    #[test]
    fn unpacks_normal_packages_with_modes() {
        let zip = build(&[
            ("app.py", b"x=1", None),
            ("bin/run", b"#!/bin/sh", Some(0o755)),
        ]);
        let dir = check(&zip, UnpackLimits::default(), true);
        assert_eq!(fs::read(dir.path().join("app.py")).unwrap(), b"x=1");
        let mode = fs::metadata(dir.path().join("bin/run"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);
    }

    #[test]
    fn refuses_hostile_packages() {
        let limits = UnpackLimits::default();
        check(&build(&[("../evil", b"x", None)]), limits, false);
        check(&build(&[("a/../../evil", b"x", None)]), limits, false);
        check(&build(&[("/tmp/evil", b"x", None)]), limits, false);
        let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
        w.add_symlink("link", "/etc/passwd", SimpleFileOptions::default())
            .unwrap();
        check(&w.finish().unwrap().into_inner(), limits, false);
        check(b"not a zip", limits, false);
        let small = UnpackLimits {
            max_total_bytes: 1000,
            max_entries: 3,
        };
        check(&build(&[("big", &[0u8; 1001], None)]), small, false);
        check(&build(&[("ok", &[0u8; 1000], None)]), small, true);
        let many: Vec<(String, &[u8], Option<u32>)> =
            (0..4).map(|i| (format!("f{i}"), &b""[..], None)).collect();
        let many: Vec<(&str, &[u8], Option<u32>)> =
            many.iter().map(|(n, d, m)| (n.as_str(), *d, *m)).collect();
        check(&build(&many), small, false);
    }
}
