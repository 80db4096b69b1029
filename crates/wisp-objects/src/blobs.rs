//! Object bodies on disk: `blobs/<2 hex>/<32 hex id>`, written under `tmp/` first.
//!
//! A blob's name is an id this crate generates; nothing a client sends (bucket, key,
//! upload id) ever becomes part of a path, so a key like `../../etc/passwd` is just a
//! string in the database.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use md5::{Digest, Md5};
use s3s::checksum::ChecksumHasher;
use tokio::io::AsyncWriteExt;

/// Where blobs live, under the service's data directory.
#[derive(Debug)]
pub struct Blobs {
    blobs: PathBuf,
    tmp: PathBuf,
}

/// A body written to `tmp/`, not yet in place.
#[derive(Debug)]
pub struct Written {
    pub id: String,
    pub size: u64,
    pub md5: [u8; 16],
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the body is larger than {0} bytes")]
    TooLarge(u64),
    #[error("reading the request body failed: {0}")]
    Body(String),
    #[error("writing the object failed: {0}")]
    Io(#[from] io::Error),
}

fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Blobs {
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let blobs = data_dir.join("blobs");
        let tmp = data_dir.join("tmp");
        std::fs::create_dir_all(&blobs)?;
        std::fs::create_dir_all(&tmp)?;
        Ok(Blobs { blobs, tmp })
    }

    fn path(&self, id: &str) -> io::Result<PathBuf> {
        if !valid_id(id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a blob id: {id:?}"),
            ));
        }
        Ok(self.blobs.join(&id[..2]).join(id))
    }

    fn tmp_path(&self, id: &str) -> io::Result<PathBuf> {
        if !valid_id(id) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not a blob id: {id:?}"),
            ));
        }
        Ok(self.tmp.join(id))
    }

    /// Streams a body into `tmp/`, counting bytes as they arrive (the declared length is
    /// not trusted), hashing MD5 and the checksums `hasher` asks for. The file is on disk
    /// (fsynced) when this returns; a failure removes it.
    pub async fn write<S, E>(
        &self,
        body: S,
        max_bytes: u64,
        hasher: &mut ChecksumHasher,
    ) -> Result<Written, WriteError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let id = new_id();
        let path = self.tmp_path(&id)?;
        let result = async {
            let mut file = tokio::fs::File::create(&path).await?;
            let mut md5 = Md5::new();
            let mut size = 0u64;
            let mut body = body;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| WriteError::Body(e.to_string()))?;
                size += chunk.len() as u64;
                if size > max_bytes {
                    return Err(WriteError::TooLarge(max_bytes));
                }
                md5.update(&chunk);
                hasher.update(&chunk);
                file.write_all(&chunk).await?;
            }
            file.flush().await?;
            file.sync_data().await?;
            Ok(Written {
                id: id.clone(),
                size,
                md5: md5.finalize().into(),
            })
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&path).await;
        }
        result
    }

    /// Copies blobs one after the other into a new body in `tmp/` (a copied object, or the
    /// parts of a multipart upload).
    pub async fn concat(&self, sources: &[String]) -> io::Result<Written> {
        let id = new_id();
        let path = self.tmp_path(&id)?;
        let result = async {
            let mut out = tokio::fs::File::create(&path).await?;
            let mut size = 0u64;
            for src in sources {
                let mut f = tokio::fs::File::open(self.path(src)?).await?;
                size += tokio::io::copy(&mut f, &mut out).await?;
            }
            out.flush().await?;
            out.sync_data().await?;
            Ok(Written {
                id: id.clone(),
                size,
                md5: [0; 16],
            })
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&path).await;
        }
        result
    }

    /// Moves a written body into place. After this, a row may refer to it.
    pub async fn place(&self, id: &str) -> io::Result<()> {
        let to = self.path(id)?;
        if let Some(dir) = to.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        tokio::fs::rename(self.tmp_path(id)?, &to).await
    }

    /// Drops a written body that will not be placed.
    pub async fn discard(&self, id: &str) {
        if let Ok(p) = self.tmp_path(id) {
            let _ = tokio::fs::remove_file(p).await;
        }
    }

    pub async fn read(&self, id: &str) -> io::Result<tokio::fs::File> {
        tokio::fs::File::open(self.path(id)?).await
    }

    /// Deletes placed blobs no row refers to any more. A failure is logged: the sweep at
    /// the next start collects what is left.
    pub async fn remove(&self, ids: impl IntoIterator<Item = String>) {
        for id in ids {
            let result = match self.path(&id) {
                Ok(p) => tokio::fs::remove_file(p).await,
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(blob = %id, error = %e, "could not delete an unreferenced blob; the next start will");
                }
            }
        }
    }

    /// At start-up, before any request: empties `tmp/` and deletes every blob that no row
    /// refers to (left by a crash between a rename and its commit, or between a commit
    /// and the deletion it made due). Returns how many files went.
    pub fn sweep(&self, referenced: &HashSet<String>) -> io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.tmp)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                std::fs::remove_dir_all(entry.path())?;
            } else {
                std::fs::remove_file(entry.path())?;
            }
            removed += 1;
        }
        for dir in std::fs::read_dir(&self.blobs)? {
            let dir = dir?;
            if !dir.file_type()?.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(dir.path())? {
                let entry = entry?;
                let name = entry.file_name();
                let keep = name.to_str().is_some_and(|n| referenced.contains(n));
                if !keep && entry.file_type()?.is_file() {
                    std::fs::remove_file(entry.path())?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(
        parts: &[&'static [u8]],
    ) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Unpin {
        futures_util::stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    #[tokio::test]
    async fn write_place_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let mut h = ChecksumHasher::default();
        let w = blobs
            .write(chunks(&[b"hello ", b"world"]), 100, &mut h)
            .await
            .unwrap();
        assert_eq!(w.size, 11);
        assert_eq!(hex::encode(w.md5), "5eb63bbbe01eeed093cb22bb8f5acdc3");
        blobs.place(&w.id).await.unwrap();
        let kept = blobs.write(chunks(&[b"x"]), 100, &mut h).await.unwrap();
        blobs.place(&kept.id).await.unwrap();
        // A half-written body and an orphan blob.
        std::fs::write(dir.path().join("tmp").join(new_id()), b"partial").unwrap();
        let referenced: HashSet<String> = [kept.id.clone()].into();
        assert_eq!(blobs.sweep(&referenced).unwrap(), 2);
        assert!(blobs.read(&kept.id).await.is_ok());
        assert!(blobs.read(&w.id).await.is_err());
        let c = blobs
            .concat(&[kept.id.clone(), kept.id.clone()])
            .await
            .unwrap();
        assert_eq!(c.size, 2);
    }

    #[tokio::test]
    async fn too_large_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        let mut h = ChecksumHasher::default();
        let e = blobs
            .write(chunks(&[b"12345", b"6"]), 5, &mut h)
            .await
            .unwrap_err();
        assert!(matches!(e, WriteError::TooLarge(5)));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn ids_are_checked_before_becoming_paths() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::open(dir.path()).unwrap();
        assert!(blobs.path("../../etc/passwd").is_err());
        assert!(blobs.path(&"A".repeat(32)).is_err());
        assert!(blobs.path(&new_id()).is_ok());
    }
}
