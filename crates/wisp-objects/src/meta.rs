//! Metadata: buckets, objects, multipart uploads and notification rules in one SQLite
//! database (WAL mode, as `wisp-store`). Every function here is one transaction.
//!
//! Object bodies live in [`crate::blobs`], named by generated ids; a row refers to its
//! blob by that id. The order of writes keeps two rules true across a crash: a row
//! never refers to a missing blob (the blob is renamed into place before the row that
//! refers to it commits), and a blob no row refers to is deleted (right after the commit
//! that dropped the reference, or by the sweep at start-up).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use s3s::{s3_error, S3Error, S3ErrorCode, S3Result};
use serde::{Deserialize, Serialize};

use crate::limits::{BUCKETS_MAX, UPLOADS_IN_PROGRESS_MAX};
use crate::notify::NotificationRule;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY,
    created_ms INTEGER NOT NULL,
    notifications TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    modified_ms INTEGER NOT NULL,
    meta TEXT NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    meta TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS uploads_bucket ON uploads (bucket);
CREATE TABLE IF NOT EXISTS parts (
    upload TEXT NOT NULL,
    number INTEGER NOT NULL,
    blob TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    modified_ms INTEGER NOT NULL,
    PRIMARY KEY (upload, number)
) WITHOUT ROWID;
"#;

/// The HTTP headers stored with an object and returned by GetObject / HeadObject.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// `x-amz-meta-*`, names without the prefix.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user: BTreeMap<String, String>,
}

/// One stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRow {
    pub bucket: String,
    pub key: String,
    pub blob: String,
    pub size: u64,
    /// Unquoted: hex MD5, or `hex-N` for a multipart object.
    pub etag: String,
    pub modified_ms: i64,
    pub meta: ObjectMeta,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRow {
    pub id: String,
    pub bucket: String,
    pub key: String,
    pub created_ms: i64,
    pub meta: ObjectMeta,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRow {
    pub number: i32,
    pub blob: String,
    pub size: u64,
    pub etag: String,
    pub modified_ms: i64,
}

/// What a listing returns before it is put in S3's shape.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listing {
    pub objects: Vec<ObjectRow>,
    pub common_prefixes: Vec<String>,
    pub truncated: bool,
    /// Where the next page starts, when truncated.
    pub next: Option<Cursor>,
}

/// A position in a listing: after a key, or after every key under a common prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cursor {
    After(String),
    AfterPrefix(String),
}

impl Cursor {
    /// The continuation token S3 clients hand back: opaque, so hex.
    pub fn to_token(&self) -> String {
        match self {
            Cursor::After(k) => format!("k{}", hex::encode(k)),
            Cursor::AfterPrefix(p) => format!("p{}", hex::encode(p)),
        }
    }

    pub fn from_token(token: &str) -> Option<Cursor> {
        let decode = |s: &str| String::from_utf8(hex::decode(s).ok()?).ok();
        match token.split_at_checked(1)? {
            ("k", rest) => Some(Cursor::After(decode(rest)?)),
            ("p", rest) => Some(Cursor::AfterPrefix(decode(rest)?)),
            _ => None,
        }
    }
}

pub fn internal(e: impl std::fmt::Display) -> S3Error {
    tracing::error!(error = %e, "object store metadata error");
    S3Error::with_message(
        S3ErrorCode::InternalError,
        "internal error in the object store; see the server log",
    )
}

pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

fn tx(conn: &mut Connection) -> S3Result<Transaction<'_>> {
    conn.transaction().map_err(internal)
}

fn bucket_exists(conn: &Connection, bucket: &str) -> S3Result<bool> {
    conn.query_row(
        "SELECT 1 FROM buckets WHERE name = ?1",
        [bucket],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
    .map_err(internal)
}

fn require_bucket(conn: &Connection, bucket: &str) -> S3Result<()> {
    if bucket_exists(conn, bucket)? {
        Ok(())
    } else {
        Err(s3_error!(
            NoSuchBucket,
            "The specified bucket does not exist: {bucket}"
        ))
    }
}

fn rules_of(conn: &Connection, bucket: &str) -> S3Result<Vec<NotificationRule>> {
    let doc: Option<String> = conn
        .query_row(
            "SELECT notifications FROM buckets WHERE name = ?1",
            [bucket],
            |r| r.get(0),
        )
        .optional()
        .map_err(internal)?;
    match doc {
        Some(doc) => serde_json::from_str(&doc).map_err(internal),
        None => Err(s3_error!(
            NoSuchBucket,
            "The specified bucket does not exist: {bucket}"
        )),
    }
}

// ------------------------------------------------------------------------- buckets

pub fn create_bucket(conn: &mut Connection, bucket: &str, now_ms: i64) -> S3Result<()> {
    let tx = tx(conn)?;
    if bucket_exists(&tx, bucket)? {
        return Err(s3_error!(
            BucketAlreadyOwnedByYou,
            "Your previous request to create the named bucket succeeded and you already own it."
        ));
    }
    let count: i64 = tx
        .query_row("SELECT COUNT(*) FROM buckets", [], |r| r.get(0))
        .map_err(internal)?;
    if count as usize >= BUCKETS_MAX {
        return Err(s3_error!(
            TooManyBuckets,
            "You have attempted to create more buckets than allowed ({BUCKETS_MAX}); delete one first."
        ));
    }
    tx.execute(
        "INSERT INTO buckets (name, created_ms) VALUES (?1, ?2)",
        params![bucket, now_ms],
    )
    .map_err(internal)?;
    tx.commit().map_err(internal)
}

pub fn head_bucket(conn: &Connection, bucket: &str) -> S3Result<()> {
    require_bucket(conn, bucket)
}

/// Deletes an empty bucket; its unfinished multipart uploads go with it. Returns the
/// blobs of their parts, to delete.
pub fn delete_bucket(conn: &mut Connection, bucket: &str) -> S3Result<Vec<String>> {
    let tx = tx(conn)?;
    require_bucket(&tx, bucket)?;
    let any: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM objects WHERE bucket = ?1 LIMIT 1",
            [bucket],
            |r| r.get(0),
        )
        .optional()
        .map_err(internal)?;
    if any.is_some() {
        return Err(s3_error!(
            BucketNotEmpty,
            "The bucket you tried to delete is not empty."
        ));
    }
    let blobs = {
        let mut stmt = tx
            .prepare(
                "SELECT p.blob FROM parts p JOIN uploads u ON u.id = p.upload WHERE u.bucket = ?1",
            )
            .map_err(internal)?;
        let rows = stmt
            .query_map([bucket], |r| r.get::<_, String>(0))
            .map_err(internal)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(internal)?
    };
    tx.execute(
        "DELETE FROM parts WHERE upload IN (SELECT id FROM uploads WHERE bucket = ?1)",
        [bucket],
    )
    .map_err(internal)?;
    tx.execute("DELETE FROM uploads WHERE bucket = ?1", [bucket])
        .map_err(internal)?;
    tx.execute("DELETE FROM buckets WHERE name = ?1", [bucket])
        .map_err(internal)?;
    tx.commit().map_err(internal)?;
    Ok(blobs)
}

pub fn list_buckets(conn: &Connection) -> S3Result<Vec<(String, i64)>> {
    let mut stmt = conn
        .prepare("SELECT name, created_ms FROM buckets ORDER BY name")
        .map_err(internal)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(internal)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(internal)
}

pub fn notification_rules(conn: &Connection, bucket: &str) -> S3Result<Vec<NotificationRule>> {
    rules_of(conn, bucket)
}

pub fn set_notification_rules(
    conn: &mut Connection,
    bucket: &str,
    rules: &[NotificationRule],
) -> S3Result<()> {
    let doc = serde_json::to_string(rules).map_err(internal)?;
    let n = conn
        .execute(
            "UPDATE buckets SET notifications = ?2 WHERE name = ?1",
            params![bucket, doc],
        )
        .map_err(internal)?;
    if n == 0 {
        return Err(s3_error!(
            NoSuchBucket,
            "The specified bucket does not exist: {bucket}"
        ));
    }
    Ok(())
}

// ------------------------------------------------------------------------- objects

fn object_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ObjectRow> {
    let meta: String = r.get(6)?;
    Ok(ObjectRow {
        bucket: r.get(0)?,
        key: r.get(1)?,
        blob: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        etag: r.get(4)?,
        modified_ms: r.get(5)?,
        // A row is only ever written by this crate; an unreadable one loses its headers,
        // not its body.
        meta: serde_json::from_str(&meta).unwrap_or_default(),
    })
}

const OBJECT_COLUMNS: &str = "bucket, key, blob, size, etag, modified_ms, meta";

pub fn get_object(conn: &Connection, bucket: &str, key: &str) -> S3Result<ObjectRow> {
    let row = conn
        .query_row(
            &format!("SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ?1 AND key = ?2"),
            [bucket, key],
            object_from_row,
        )
        .optional()
        .map_err(internal)?;
    match row {
        Some(row) => Ok(row),
        None => {
            require_bucket(conn, bucket)?;
            Err(s3_error!(NoSuchKey, "The specified key does not exist."))
        }
    }
}

/// Stores (or replaces) an object whose blob is already in place. Returns the blob it
/// replaced (to delete) and the bucket's notification rules as they were at the commit.
pub fn put_object(
    conn: &mut Connection,
    row: &ObjectRow,
) -> S3Result<(Option<String>, Vec<NotificationRule>)> {
    let tx = tx(conn)?;
    let rules = rules_of(&tx, &row.bucket)?;
    let old = replace_object(&tx, row)?;
    tx.commit().map_err(internal)?;
    Ok((old, rules))
}

fn replace_object(tx: &Transaction<'_>, row: &ObjectRow) -> S3Result<Option<String>> {
    let old: Option<String> = tx
        .query_row(
            "SELECT blob FROM objects WHERE bucket = ?1 AND key = ?2",
            [&row.bucket, &row.key],
            |r| r.get(0),
        )
        .optional()
        .map_err(internal)?;
    let meta = serde_json::to_string(&row.meta).map_err(internal)?;
    tx.execute(
        "INSERT OR REPLACE INTO objects (bucket, key, blob, size, etag, modified_ms, meta)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            row.bucket,
            row.key,
            row.blob,
            row.size as i64,
            row.etag,
            row.modified_ms,
            meta
        ],
    )
    .map_err(internal)?;
    Ok(old)
}

/// Removes an object. Returns its blob (None if there was no such key) and the bucket's
/// notification rules.
pub fn delete_object(
    conn: &mut Connection,
    bucket: &str,
    key: &str,
) -> S3Result<(Option<String>, Vec<NotificationRule>)> {
    let tx = tx(conn)?;
    let rules = rules_of(&tx, bucket)?;
    let old: Option<String> = tx
        .query_row(
            "DELETE FROM objects WHERE bucket = ?1 AND key = ?2 RETURNING blob",
            [bucket, key],
            |r| r.get(0),
        )
        .optional()
        .map_err(internal)?;
    tx.commit().map_err(internal)?;
    Ok((old, rules))
}

/// One page of a bucket's keys in UTF-8 byte order (SQLite's BINARY collation compares
/// UTF-8 bytes, which is S3's order), with keys that contain `delimiter` after `prefix`
/// rolled up into common prefixes. `max_keys` counts objects and prefixes together.
pub fn list_objects(
    conn: &Connection,
    bucket: &str,
    prefix: &str,
    delimiter: &str,
    start: Option<&Cursor>,
    max_keys: usize,
) -> S3Result<Listing> {
    require_bucket(conn, bucket)?;
    let mut out = Listing::default();
    // Exclusive lower bound of the next batch; every key is non-empty, so "" is "from the
    // start".
    let mut after = String::new();
    let mut last_prefix: Option<String> = None;
    match start {
        Some(Cursor::After(k)) => after = k.clone(),
        Some(Cursor::AfterPrefix(p)) => {
            after = skip_past(p);
            last_prefix = Some(p.clone());
        }
        None => {}
    }
    const BATCH: i64 = 256;
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ?1 AND key > ?2 AND key >= ?3
             ORDER BY key LIMIT ?4"
        ))
        .map_err(internal)?;
    'batches: loop {
        let rows = stmt
            .query_map(params![bucket, after, prefix, BATCH], object_from_row)
            .map_err(internal)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(internal)?;
        let full_batch = rows.len() as i64 == BATCH;
        if rows.is_empty() {
            break;
        }
        for row in rows {
            if !row.key.starts_with(prefix) {
                break 'batches;
            }
            let rest = &row.key[prefix.len()..];
            let rolled = (!delimiter.is_empty())
                .then(|| rest.find(delimiter))
                .flatten()
                .map(|i| format!("{prefix}{}", &rest[..i + delimiter.len()]));
            match rolled {
                Some(cp) => {
                    if last_prefix.as_deref() == Some(cp.as_str()) {
                        after = row.key;
                        continue;
                    }
                    if out.objects.len() + out.common_prefixes.len() >= max_keys {
                        out.truncated = true;
                        break 'batches;
                    }
                    // Jump over every other key under this prefix.
                    after = skip_past(&cp);
                    out.next = Some(Cursor::AfterPrefix(cp.clone()));
                    out.common_prefixes.push(cp.clone());
                    last_prefix = Some(cp);
                    continue 'batches;
                }
                None => {
                    if out.objects.len() + out.common_prefixes.len() >= max_keys {
                        out.truncated = true;
                        break 'batches;
                    }
                    after = row.key.clone();
                    out.next = Some(Cursor::After(row.key.clone()));
                    out.objects.push(row);
                }
            }
        }
        if !full_batch {
            break;
        }
    }
    if !out.truncated {
        out.next = None;
    }
    Ok(out)
}

/// A string greater than every key that starts with `prefix` (but keys that continue
/// with U+10FFFF itself, which the caller skips one by one).
fn skip_past(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

// ------------------------------------------------------------------------- multipart

pub fn create_upload(conn: &mut Connection, upload: &UploadRow) -> S3Result<()> {
    let tx = tx(conn)?;
    require_bucket(&tx, &upload.bucket)?;
    let count: i64 = tx
        .query_row("SELECT COUNT(*) FROM uploads", [], |r| r.get(0))
        .map_err(internal)?;
    if count as usize >= UPLOADS_IN_PROGRESS_MAX {
        return Err(s3_error!(
            SlowDown,
            "Too many multipart uploads in progress ({UPLOADS_IN_PROGRESS_MAX}); complete or abort some first."
        ));
    }
    let meta = serde_json::to_string(&upload.meta).map_err(internal)?;
    tx.execute(
        "INSERT INTO uploads (id, bucket, key, created_ms, meta) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            upload.id,
            upload.bucket,
            upload.key,
            upload.created_ms,
            meta
        ],
    )
    .map_err(internal)?;
    tx.commit().map_err(internal)
}

fn upload_of(conn: &Connection, bucket: &str, key: &str, id: &str) -> S3Result<UploadRow> {
    let row = conn
        .query_row(
            "SELECT id, bucket, key, created_ms, meta FROM uploads WHERE id = ?1 AND bucket = ?2 AND key = ?3",
            [id, bucket, key],
            |r| {
                let meta: String = r.get(4)?;
                Ok(UploadRow {
                    id: r.get(0)?,
                    bucket: r.get(1)?,
                    key: r.get(2)?,
                    created_ms: r.get(3)?,
                    meta: serde_json::from_str(&meta).unwrap_or_default(),
                })
            },
        )
        .optional()
        .map_err(internal)?;
    row.ok_or_else(|| {
        s3_error!(
            NoSuchUpload,
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed."
        )
    })
}

pub fn get_upload(conn: &Connection, bucket: &str, key: &str, id: &str) -> S3Result<UploadRow> {
    upload_of(conn, bucket, key, id)
}

/// Records a part whose blob is in place; returns the blob of the part it replaced.
pub fn put_part(
    conn: &mut Connection,
    bucket: &str,
    key: &str,
    upload: &str,
    part: &PartRow,
) -> S3Result<Option<String>> {
    let tx = tx(conn)?;
    upload_of(&tx, bucket, key, upload)?;
    let old: Option<String> = tx
        .query_row(
            "SELECT blob FROM parts WHERE upload = ?1 AND number = ?2",
            params![upload, part.number],
            |r| r.get(0),
        )
        .optional()
        .map_err(internal)?;
    tx.execute(
        "INSERT OR REPLACE INTO parts (upload, number, blob, size, etag, modified_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![upload, part.number, part.blob, part.size as i64, part.etag, part.modified_ms],
    )
    .map_err(internal)?;
    tx.commit().map_err(internal)?;
    Ok(old)
}

pub fn list_parts(
    conn: &Connection,
    upload: &str,
    after: i32,
    limit: usize,
) -> S3Result<Vec<PartRow>> {
    let mut stmt = conn
        .prepare(
            "SELECT number, blob, size, etag, modified_ms FROM parts WHERE upload = ?1 AND number > ?2
             ORDER BY number LIMIT ?3",
        )
        .map_err(internal)?;
    let rows = stmt
        .query_map(params![upload, after, limit as i64], |r| {
            Ok(PartRow {
                number: r.get(0)?,
                blob: r.get(1)?,
                size: r.get::<_, i64>(2)? as u64,
                etag: r.get(3)?,
                modified_ms: r.get(4)?,
            })
        })
        .map_err(internal)?;
    rows.collect::<Result<Vec<_>, _>>().map_err(internal)
}

/// Replaces the upload by the object assembled from `used` parts (whose blob is in place).
/// Returns the blobs to delete (the replaced object's and every part's) and the
/// notification rules. Fails with NoSuchUpload if the upload finished meanwhile.
pub fn complete_upload(
    conn: &mut Connection,
    upload: &str,
    row: &ObjectRow,
) -> S3Result<(Vec<String>, Vec<NotificationRule>)> {
    let tx = tx(conn)?;
    upload_of(&tx, &row.bucket, &row.key, upload)?;
    let rules = rules_of(&tx, &row.bucket)?;
    let mut garbage = {
        let mut stmt = tx
            .prepare("SELECT blob FROM parts WHERE upload = ?1")
            .map_err(internal)?;
        let rows = stmt
            .query_map([upload], |r| r.get::<_, String>(0))
            .map_err(internal)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(internal)?
    };
    garbage.extend(replace_object(&tx, row)?);
    tx.execute("DELETE FROM parts WHERE upload = ?1", [upload])
        .map_err(internal)?;
    tx.execute("DELETE FROM uploads WHERE id = ?1", [upload])
        .map_err(internal)?;
    tx.commit().map_err(internal)?;
    Ok((garbage, rules))
}

/// Drops an upload and its parts; returns their blobs.
pub fn abort_upload(
    conn: &mut Connection,
    bucket: &str,
    key: &str,
    upload: &str,
) -> S3Result<Vec<String>> {
    let tx = tx(conn)?;
    upload_of(&tx, bucket, key, upload)?;
    let blobs = {
        let mut stmt = tx
            .prepare("SELECT blob FROM parts WHERE upload = ?1")
            .map_err(internal)?;
        let rows = stmt
            .query_map([upload], |r| r.get::<_, String>(0))
            .map_err(internal)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(internal)?
    };
    tx.execute("DELETE FROM parts WHERE upload = ?1", [upload])
        .map_err(internal)?;
    tx.execute("DELETE FROM uploads WHERE id = ?1", [upload])
        .map_err(internal)?;
    tx.commit().map_err(internal)?;
    Ok(blobs)
}

/// Drops uploads created before `before_ms` with their parts (the sweep then deletes
/// the blobs). Returns how many.
pub fn expire_uploads(conn: &mut Connection, before_ms: i64) -> rusqlite::Result<usize> {
    let tx = conn.transaction()?;
    tx.execute(
        "DELETE FROM parts WHERE upload IN (SELECT id FROM uploads WHERE created_ms < ?1)",
        [before_ms],
    )?;
    let n = tx.execute("DELETE FROM uploads WHERE created_ms < ?1", [before_ms])?;
    tx.commit()?;
    Ok(n)
}

/// Every blob a row refers to.
pub fn referenced_blobs(conn: &Connection) -> rusqlite::Result<HashSet<String>> {
    let mut out = HashSet::new();
    for sql in ["SELECT blob FROM objects", "SELECT blob FROM parts"] {
        let mut stmt = conn.prepare(sql)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        for b in rows {
            out.insert(b?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn
    }

    fn put(conn: &mut Connection, key: &str) {
        let row = ObjectRow {
            bucket: "b".into(),
            key: key.into(),
            blob: format!("blob-{key}"),
            size: 1,
            etag: "e".into(),
            modified_ms: 0,
            meta: ObjectMeta::default(),
        };
        put_object(conn, &row).unwrap();
    }

    fn setup(keys: &[&str]) -> Connection {
        let mut conn = db();
        create_bucket(&mut conn, "b", 0).unwrap();
        for k in keys {
            put(&mut conn, k);
        }
        conn
    }

    /// Lists every page and returns (objects and prefixes per page, tokens went through).
    fn pages(
        conn: &Connection,
        prefix: &str,
        delim: &str,
        max: usize,
    ) -> Vec<(Vec<String>, Vec<String>)> {
        let mut out = Vec::new();
        let mut cursor: Option<Cursor> = None;
        loop {
            let page = list_objects(conn, "b", prefix, delim, cursor.as_ref(), max).unwrap();
            out.push((
                page.objects.iter().map(|o| o.key.clone()).collect(),
                page.common_prefixes.clone(),
            ));
            if !page.truncated {
                assert!(page.next.is_none());
                break;
            }
            // Through the token, as a client would.
            cursor = Some(Cursor::from_token(&page.next.unwrap().to_token()).unwrap());
            assert!(out.len() < 100, "listing does not end");
        }
        out
    }

    #[test]
    fn list_flat_and_paged() {
        let conn = setup(&["a", "b/1", "b/2", "c", "ü", "z"]);
        let all = pages(&conn, "", "", 1000);
        assert_eq!(
            all,
            vec![(
                vec!["a", "b/1", "b/2", "c", "z", "ü"]
                    .into_iter()
                    .map(String::from)
                    .collect(),
                vec![]
            )]
        );
        let paged = pages(&conn, "", "", 2);
        assert_eq!(paged.len(), 3);
        let flat: Vec<String> = paged.into_iter().flat_map(|p| p.0).collect();
        assert_eq!(flat, vec!["a", "b/1", "b/2", "c", "z", "ü"]);
    }

    #[test]
    fn list_with_delimiter_and_prefix() {
        let conn = setup(&["a", "b/1", "b/2", "b/c/3", "c/x", "d"]);
        assert_eq!(
            pages(&conn, "", "/", 1000),
            vec![(
                vec!["a".to_string(), "d".into()],
                vec!["b/".to_string(), "c/".into()]
            )]
        );
        assert_eq!(
            pages(&conn, "b/", "/", 1000),
            vec![(
                vec!["b/1".to_string(), "b/2".into()],
                vec!["b/c/".to_string()]
            )]
        );
        // One entry per page; a prefix counts as one and is never repeated.
        let p = pages(&conn, "", "/", 1);
        let seen: Vec<String> = p
            .iter()
            .flat_map(|(o, c)| o.iter().chain(c.iter()).cloned())
            .collect();
        assert_eq!(seen, vec!["a", "b/", "c/", "d"]);
        assert_eq!(p.len(), 4);
        // A prefix that matches nothing.
        assert_eq!(pages(&conn, "nope", "/", 10), vec![(vec![], vec![])]);
    }

    #[test]
    fn list_prefix_rolled_keys_with_max_codepoint() {
        // Keys under one common prefix that sort after the jump target are still rolled
        // into the same prefix, not listed twice.
        let conn = setup(&["p/\u{10FFFF}x", "p/a", "q"]);
        assert_eq!(
            pages(&conn, "", "/", 1000),
            vec![(vec!["q".to_string()], vec!["p/".to_string()])]
        );
        let p = pages(&conn, "", "/", 1);
        let seen: Vec<String> = p
            .iter()
            .flat_map(|(o, c)| o.iter().chain(c.iter()).cloned())
            .collect();
        assert_eq!(seen, vec!["p/", "q"]);
    }

    #[test]
    fn list_exactly_full_page_is_not_truncated() {
        let conn = setup(&["a", "b"]);
        let page = list_objects(&conn, "b", "", "", None, 2).unwrap();
        assert!(!page.truncated);
        let page = list_objects(&conn, "b", "", "", None, 0).unwrap();
        assert!(page.truncated && page.objects.is_empty());
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        for c in [
            Cursor::After("a/../b ü".into()),
            Cursor::AfterPrefix("x/".into()),
        ] {
            assert_eq!(Cursor::from_token(&c.to_token()), Some(c));
        }
        for bad in ["", "k0", "xzz", "kzz", "pff"] {
            assert!(Cursor::from_token(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn bucket_life_cycle() {
        let mut conn = db();
        create_bucket(&mut conn, "b", 1).unwrap();
        assert_eq!(
            create_bucket(&mut conn, "b", 1).unwrap_err().code(),
            &S3ErrorCode::BucketAlreadyOwnedByYou
        );
        put(&mut conn, "k");
        assert_eq!(
            delete_bucket(&mut conn, "b").unwrap_err().code(),
            &S3ErrorCode::BucketNotEmpty
        );
        let (old, _) = delete_object(&mut conn, "b", "k").unwrap();
        assert_eq!(old.as_deref(), Some("blob-k"));
        assert_eq!(delete_object(&mut conn, "b", "k").unwrap().0, None);
        delete_bucket(&mut conn, "b").unwrap();
        assert_eq!(
            head_bucket(&conn, "b").unwrap_err().code(),
            &S3ErrorCode::NoSuchBucket
        );
        assert_eq!(
            get_object(&conn, "b", "k").unwrap_err().code(),
            &S3ErrorCode::NoSuchBucket
        );
    }

    #[test]
    fn overwrite_returns_old_blob_and_referenced_set_tracks() {
        let mut conn = setup(&["k"]);
        let mut row = get_object(&conn, "b", "k").unwrap();
        row.blob = "new".into();
        let (old, _) = put_object(&mut conn, &row).unwrap();
        assert_eq!(old.as_deref(), Some("blob-k"));
        let refs = referenced_blobs(&conn).unwrap();
        assert!(refs.contains("new") && !refs.contains("blob-k"));
    }

    #[test]
    fn multipart_rows() {
        let mut conn = setup(&[]);
        let up = UploadRow {
            id: "u1".into(),
            bucket: "b".into(),
            key: "k".into(),
            created_ms: 5,
            meta: ObjectMeta::default(),
        };
        create_upload(&mut conn, &up).unwrap();
        let part = |n: i32, blob: &str| PartRow {
            number: n,
            blob: blob.into(),
            size: 10,
            etag: "e".into(),
            modified_ms: 0,
        };
        assert_eq!(
            put_part(&mut conn, "b", "k", "u1", &part(1, "p1")).unwrap(),
            None
        );
        assert_eq!(
            put_part(&mut conn, "b", "k", "u1", &part(1, "p1b"))
                .unwrap()
                .as_deref(),
            Some("p1")
        );
        put_part(&mut conn, "b", "k", "u1", &part(2, "p2")).unwrap();
        assert_eq!(
            put_part(&mut conn, "b", "other", "u1", &part(3, "x"))
                .unwrap_err()
                .code(),
            &S3ErrorCode::NoSuchUpload
        );
        assert_eq!(list_parts(&conn, "u1", 0, 1000).unwrap().len(), 2);
        assert_eq!(list_parts(&conn, "u1", 1, 1000).unwrap().len(), 1);
        // A bucket with an unfinished upload and no object can be deleted... after the
        // object goes; here complete it first.
        let row = ObjectRow {
            bucket: "b".into(),
            key: "k".into(),
            blob: "whole".into(),
            size: 20,
            etag: "x-2".into(),
            modified_ms: 0,
            meta: ObjectMeta::default(),
        };
        let (mut garbage, _) = complete_upload(&mut conn, "u1", &row).unwrap();
        garbage.sort();
        assert_eq!(garbage, vec!["p1b", "p2"]);
        assert_eq!(
            complete_upload(&mut conn, "u1", &row).unwrap_err().code(),
            &S3ErrorCode::NoSuchUpload
        );
        create_upload(
            &mut conn,
            &UploadRow {
                id: "u2".into(),
                ..up.clone()
            },
        )
        .unwrap();
        put_part(&mut conn, "b", "k", "u2", &part(1, "q1")).unwrap();
        assert_eq!(abort_upload(&mut conn, "b", "k", "u2").unwrap(), vec!["q1"]);
        create_upload(
            &mut conn,
            &UploadRow {
                id: "u3".into(),
                ..up
            },
        )
        .unwrap();
        assert_eq!(expire_uploads(&mut conn, 6).unwrap(), 1);
    }
}
