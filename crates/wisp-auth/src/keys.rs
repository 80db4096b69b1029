//! The access keys a server accepts, kept in one JSON file readable only by its owner.
//!
//! The admin key is created on first start, or taken from the environment
//! (`WISP_ROOT_ACCESS_KEY_ID` / `WISP_ROOT_SECRET_ACCESS_KEY`, as MinIO does with its root
//! user); an admin key from the environment is never written to disk. More keys can be
//! created and revoked; they persist.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub created: String,
}

impl AccessKey {
    /// A new random key: an AWS-shaped id (`AKIA` + 16 characters) and a 40-character secret.
    pub fn generate(admin: bool) -> Self {
        const ID_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        const SECRET_CHARS: &[u8] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let random: Vec<u8> = (0..4)
            .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
            .collect();
        // v4 UUIDs carry 122 random bits; skipping the version/variant bytes keeps only
        // random ones.
        let bytes: Vec<u8> = random
            .chunks(16)
            .flat_map(|c| {
                c.iter()
                    .enumerate()
                    .filter(|(i, _)| *i != 6 && *i != 8)
                    .map(|(_, b)| *b)
            })
            .collect();
        let id: String = bytes[..16]
            .iter()
            .map(|b| ID_CHARS[(*b % 32) as usize] as char)
            .collect();
        let secret: String = bytes[16..56]
            .iter()
            .map(|b| SECRET_CHARS[(*b % 64) as usize] as char)
            .collect();
        AccessKey {
            access_key_id: format!("AKIA{id}"),
            secret_access_key: secret,
            admin,
            created: String::new(),
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Stored {
    keys: Vec<AccessKey>,
}

/// The key file and the keys in force.
#[derive(Debug)]
pub struct KeyFile {
    path: PathBuf,
    stored: Stored,
    /// An admin key from the environment, which replaces the stored one.
    root: Option<AccessKey>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("could not read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid key file: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl KeyFile {
    /// Opens (or creates, with a fresh admin key) the key file at `path`.
    pub fn open(path: &Path, root: Option<(String, String)>) -> Result<Self, KeyError> {
        let io = |source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let stored = match fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| KeyError::Corrupt {
                path: path.to_path_buf(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::default(),
            Err(e) => return Err(io(e)),
        };
        let root = root.map(|(id, secret)| AccessKey {
            access_key_id: id,
            secret_access_key: secret,
            admin: true,
            created: String::new(),
        });
        let mut file = KeyFile {
            path: path.to_path_buf(),
            stored,
            root,
        };
        if file.root.is_none() && !file.stored.keys.iter().any(|k| k.admin) {
            let mut admin = AccessKey::generate(true);
            admin.created = now_text();
            file.stored.keys.insert(0, admin);
            file.save()?;
        } else if path.exists() {
            // Tighten the mode of a file that was loosened by hand.
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
        Ok(file)
    }

    fn save(&self) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: self.path.clone(),
            source,
        };
        let tmp = self.path.with_extension("tmp");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        let text = serde_json::to_vec_pretty(&self.stored).expect("keys serialise");
        f.write_all(&text).map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::rename(&tmp, &self.path).map_err(io)
    }

    /// The admin key in force.
    pub fn admin(&self) -> &AccessKey {
        self.root
            .as_ref()
            .or_else(|| self.stored.keys.iter().find(|k| k.admin))
            .expect("an admin key always exists")
    }

    /// The key with this id, if it is in force.
    pub fn find(&self, access_key_id: &str) -> Option<&AccessKey> {
        if let Some(root) = &self.root {
            if root.access_key_id == access_key_id {
                return Some(root);
            }
        }
        self.stored
            .keys
            .iter()
            // With an environment root key, the stored admin key is not in force.
            .filter(|k| !(k.admin && self.root.is_some()))
            .find(|k| k.access_key_id == access_key_id)
    }

    /// Whether `token` is the secret of a key in force (for webhooks that can only send a
    /// bearer token). Compared in constant time.
    pub fn accepts_bearer(&self, token: &str) -> bool {
        let mut in_force: Vec<&AccessKey> = self
            .stored
            .keys
            .iter()
            .filter(|k| !(k.admin && self.root.is_some()))
            .collect();
        in_force.extend(self.root.as_ref());
        in_force.iter().fold(false, |found, k| {
            let s = k.secret_access_key.as_bytes();
            let t = token.as_bytes();
            let same =
                s.len() == t.len() && s.iter().zip(t).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
            found | same
        })
    }

    pub fn create(&mut self) -> Result<AccessKey, KeyError> {
        let mut key = AccessKey::generate(false);
        key.created = now_text();
        self.stored.keys.push(key.clone());
        self.save()?;
        Ok(key)
    }

    /// Revokes a non-admin key; `Ok(false)` if there is no such key.
    pub fn revoke(&mut self, access_key_id: &str) -> Result<bool, KeyError> {
        let before = self.stored.keys.len();
        self.stored
            .keys
            .retain(|k| k.admin || k.access_key_id != access_key_id);
        if self.stored.keys.len() == before {
            return Ok(false);
        }
        self.save()?;
        Ok(true)
    }

    /// Keys that can be revoked (the admin key cannot).
    pub fn list(&self) -> Vec<&AccessKey> {
        self.stored.keys.iter().filter(|k| !k.admin).collect()
    }
}

fn now_text() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_key_created_once_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        let first = KeyFile::open(&path, None).unwrap().admin().clone();
        assert!(first.access_key_id.starts_with("AKIA") && first.access_key_id.len() == 20);
        assert_eq!(first.secret_access_key.len(), 40);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = KeyFile::open(&path, None).unwrap();
        assert_eq!(again.admin(), &first);
    }

    #[test]
    fn root_from_environment_replaces_stored_admin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        let stored_admin = KeyFile::open(&path, None).unwrap().admin().clone();
        let mut keys = KeyFile::open(&path, Some(("ROOT".into(), "s3cret".into()))).unwrap();
        assert_eq!(keys.admin().access_key_id, "ROOT");
        assert!(keys.find(&stored_admin.access_key_id).is_none());
        let extra = keys.create().unwrap();
        assert!(keys.find(&extra.access_key_id).is_some());
        assert!(keys.revoke(&extra.access_key_id).unwrap());
        assert!(keys.find(&extra.access_key_id).is_none());
        assert!(!keys.revoke("ROOT").unwrap());
        assert!(!fs::read_to_string(&path).unwrap().contains("s3cret"));
    }
}
