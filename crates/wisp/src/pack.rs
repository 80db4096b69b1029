//! Packs a folder into a zip the way Lambda expects: paths relative to the folder, modes
//! kept, entries sorted and timestamps fixed so the same folder always gives the same
//! bytes (and the server deduplicates them).

use std::io::{Cursor, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use indicatif::ProgressBar;
use zip::write::SimpleFileOptions;

const SKIP: &[&str] = &[".git", "__pycache__", ".wisp", ".venv"];

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("could not read {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if SKIP.iter().any(|s| name == *s) {
            continue;
        }
        let kind = entry.file_type()?;
        let path = entry.path();
        if kind.is_symlink() {
            eprintln!("warning: skipping symbolic link {}", path.display());
        } else if kind.is_dir() {
            walk(&path, out)?;
        } else if kind.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

pub fn pack(dir: &Path, bar: &ProgressBar) -> anyhow::Result<Vec<u8>> {
    if !dir.is_dir() {
        bail!("{} is not a folder", dir.display());
    }
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    if files.is_empty() {
        bail!("{} has no files to deploy", dir.display());
    }
    let total: u64 = files
        .iter()
        .filter_map(|f| f.metadata().ok())
        .map(|m| m.len())
        .sum();
    bar.set_length(total);
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for file in files {
        let relative = file.strip_prefix(dir)?.to_string_lossy().into_owned();
        let meta = file.metadata()?;
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(meta.permissions().mode() & 0o777)
            .last_modified_time(zip::DateTime::default());
        zip.start_file(relative, options)?;
        let data =
            std::fs::read(&file).with_context(|| format!("could not read {}", file.display()))?;
        zip.write_all(&data)?;
        bar.inc(data.len() as u64);
    }
    Ok(zip.finish()?.into_inner())
}
