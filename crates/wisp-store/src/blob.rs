//! The content-addressed artifact store on disk.
//!
//! Layout under the root: `blobs/<sha256>.zip` (the package as uploaded),
//! `code/<sha256>/` (unpacked, shared read-only by every instance of every function with
//! that package) and `tmp/` (work in progress; emptied at start). A package appears in
//! `blobs/` and `code/` only by `rename`, so a crash never leaves a half-written one there.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::package::{self, UnpackLimits};
use crate::{BlobStore, Result, StoreError};

pub struct FsBlobStore {
    root: PathBuf,
    limits: UnpackLimits,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl FsBlobStore {
    pub fn open(root: &Path, limits: UnpackLimits) -> Result<Self> {
        for sub in ["blobs", "code"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let tmp = root.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
        }
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        Ok(FsBlobStore {
            root: root.to_path_buf(),
            limits,
        })
    }

    fn blob_path(&self, sha: &str) -> PathBuf {
        self.root.join("blobs").join(format!("{sha}.zip"))
    }

    fn tmp_path(&self) -> PathBuf {
        self.root
            .join("tmp")
            .join(uuid::Uuid::new_v4().simple().to_string())
    }

    fn check_sha(sha: &str) -> Result<()> {
        if is_sha256_hex(sha) {
            Ok(())
        } else {
            Err(StoreError::Corrupt(format!("not a sha256: {sha:?}")))
        }
    }
}

impl BlobStore for FsBlobStore {
    fn put_package(&self, zip: &[u8]) -> Result<String> {
        let sha = hex::encode(Sha256::digest(zip));
        let code = self.root.join("code").join(&sha);
        let blob = self.blob_path(&sha);
        if code.is_dir() && blob.is_file() {
            return Ok(sha); // Deduplicated: the same bytes were stored before.
        }
        // Unpack first: a package that fails validation must leave nothing behind.
        let staging = self.tmp_path();
        fs::create_dir(&staging).map_err(io_err(&staging))?;
        if let Err(e) = package::unpack(zip, &staging, self.limits) {
            let _ = fs::remove_dir_all(&staging);
            return Err(e.into());
        }
        let staged_blob = self.tmp_path();
        let write = (|| {
            let mut f = fs::File::create(&staged_blob)?;
            f.write_all(zip)?;
            f.sync_all()?;
            fs::rename(&staged_blob, &blob)
        })();
        if let Err(e) = write {
            let _ = fs::remove_dir_all(&staging);
            let _ = fs::remove_file(&staged_blob);
            return Err(io_err(&blob)(e));
        }
        if code.is_dir() {
            let _ = fs::remove_dir_all(&staging);
        } else if let Err(e) = fs::rename(&staging, &code) {
            let _ = fs::remove_dir_all(&staging);
            if !code.is_dir() {
                return Err(io_err(&code)(e));
            }
        }
        Ok(sha)
    }

    fn code_dir(&self, sha: &str) -> Result<PathBuf> {
        Self::check_sha(sha)?;
        let dir = self.root.join("code").join(sha);
        if dir.is_dir() {
            return Ok(dir);
        }
        // The unpacked tree can be rebuilt from the blob (for instance after a crash
        // between the two renames, or if someone cleaned `code/`).
        let zip = self.read_package(sha)?;
        let staging = self.tmp_path();
        fs::create_dir(&staging).map_err(io_err(&staging))?;
        if let Err(e) = package::unpack(&zip, &staging, self.limits) {
            let _ = fs::remove_dir_all(&staging);
            return Err(e.into());
        }
        if fs::rename(&staging, &dir).is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        Ok(dir)
    }

    fn read_package(&self, sha: &str) -> Result<Vec<u8>> {
        Self::check_sha(sha)?;
        let path = self.blob_path(sha);
        fs::read(&path).map_err(io_err(&path))
    }

    fn collect_garbage(&self, keep: &[String]) -> Result<usize> {
        let mut removed = 0;
        let blobs = self.root.join("blobs");
        for entry in fs::read_dir(&blobs).map_err(io_err(&blobs))? {
            let entry = entry.map_err(io_err(&blobs))?;
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(sha) = name.strip_suffix(".zip") else {
                continue;
            };
            if !keep.iter().any(|k| k == sha) {
                let _ = fs::remove_file(entry.path());
                let _ = fs::remove_dir_all(self.root.join("code").join(sha));
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use zip::write::SimpleFileOptions;

    fn zip_of(name: &str, data: &[u8]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file(name, SimpleFileOptions::default()).unwrap();
        w.write_all(data).unwrap();
        w.finish().unwrap().into_inner()
    }

    #[test]
    fn stores_deduplicates_and_collects() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path(), UnpackLimits::default()).unwrap();
        let zip = zip_of("app.py", b"print(1)");
        let a = store.put_package(&zip).unwrap();
        let b = store.put_package(&zip).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            fs::read(store.code_dir(&a).unwrap().join("app.py")).unwrap(),
            b"print(1)"
        );
        assert_eq!(store.read_package(&a).unwrap(), zip);
        assert!(store.code_dir("../../etc").is_err());
        assert_eq!(store.collect_garbage(&[]).unwrap(), 1);
        assert!(store.read_package(&a).is_err());
    }

    #[test]
    fn hostile_package_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path(), UnpackLimits::default()).unwrap();
        assert!(store.put_package(&zip_of("../evil", b"x")).is_err());
        for sub in ["blobs", "code", "tmp"] {
            assert_eq!(
                fs::read_dir(dir.path().join(sub)).unwrap().count(),
                0,
                "{sub}"
            );
        }
        assert!(!dir.path().join("evil").exists());
    }
}
