//! The embedded [`Store`]: one SQLite database in WAL mode.
//!
//! WAL with `synchronous=NORMAL` keeps every committed transaction across a crash of the
//! process (`kill -9`); only a power loss can take the last few. That is the guarantee
//! behind "an accepted asynchronous invocation survives a crash": the 202 is sent after
//! the insert commits.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};
use wisp_core::{FunctionSpec, InvocationRecord, InvocationStatus, InvocationType};

use crate::{Alias, AsyncEvent, FunctionRow, FunctionUrl, Result, Store, StoreError, TriggerRow};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS functions (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    next_version INTEGER NOT NULL DEFAULT 1,
    reserved_concurrency INTEGER
);
CREATE TABLE IF NOT EXISTS versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    spec TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    function TEXT NOT NULL,
    name TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (function, name)
);
CREATE TABLE IF NOT EXISTS function_urls (
    function TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    url_id TEXT NOT NULL UNIQUE,
    doc TEXT NOT NULL,
    PRIMARY KEY (function, qualifier)
);
CREATE TABLE IF NOT EXISTS triggers (
    id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    doc TEXT NOT NULL,
    last_fire_ms INTEGER
);
CREATE INDEX IF NOT EXISTS triggers_function ON triggers (function);
CREATE TABLE IF NOT EXISTS invoke_configs (
    function TEXT NOT NULL,
    qualifier TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (function, qualifier)
);
CREATE TABLE IF NOT EXISTS tags (
    function TEXT PRIMARY KEY,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS async_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    function TEXT NOT NULL,
    qualifier TEXT,
    payload BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    due_ms INTEGER NOT NULL,
    enqueued_ms INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS async_events_due ON async_events (state, due_ms);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    function TEXT NOT NULL,
    version TEXT NOT NULL,
    invocation_type TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    billed_ms INTEGER NOT NULL,
    init_ms REAL,
    max_memory_mb INTEGER NOT NULL,
    memory_size_mb INTEGER NOT NULL,
    status TEXT NOT NULL,
    error_type TEXT,
    logs TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_function ON records (function, seq);
"#;

pub struct SqliteStore {
    conn: Mutex<Connection>,
}

fn to_json(spec: &FunctionSpec) -> Result<String> {
    serde_json::to_string(spec).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_json(text: &str) -> Result<FunctionSpec> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl SqliteStore {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite itself consistent (the transaction
        // rolls back), so the poisoned guard is safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Dead letters kept across all functions.
const DEAD_LETTERS_MAX: i64 = 10_000;

fn function_exists(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM functions WHERE name = ?1",
            params![name],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .is_some())
}

fn insert_event(tx: &rusqlite::Transaction<'_>, e: &AsyncEvent) -> Result<()> {
    tx.execute(
        "INSERT INTO async_events (request_id, function, qualifier, payload, attempts, due_ms, enqueued_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![e.request_id, e.function, e.qualifier, e.payload, e.attempts, e.due_ms, e.enqueued_ms],
    )?;
    Ok(())
}

fn doc_of<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn parse_doc<T: serde::de::DeserializeOwned>(doc: &str) -> Result<T> {
    serde_json::from_str(doc).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn json_of(alias: &Alias) -> Result<String> {
    doc_of(alias)
}

fn alias_of(doc: &str) -> Result<Alias> {
    parse_doc(doc)
}

fn row_to_function(
    name_spec: String,
    next_version: i64,
    reserved: Option<i64>,
) -> Result<FunctionRow> {
    Ok(FunctionRow {
        latest: from_json(&name_spec)?,
        next_version: next_version as u64,
        reserved_concurrency: reserved.map(|r| r as u32),
    })
}

fn row_to_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<AsyncEvent> {
    Ok(AsyncEvent {
        id: row.get(0)?,
        request_id: row.get(1)?,
        function: row.get(2)?,
        qualifier: row.get(3)?,
        payload: row.get(4)?,
        attempts: row.get::<_, i64>(5)? as u32,
        due_ms: row.get(6)?,
        enqueued_ms: row.get(7)?,
    })
}

/// Whether two specs describe the same code and configuration (what PublishVersion
/// compares to decide that nothing changed). A version's description is its own label,
/// not part of what it runs.
fn same_content(a: &FunctionSpec, b: &FunctionSpec) -> bool {
    a.code_sha256 == b.code_sha256
        && a.runtime == b.runtime
        && a.handler == b.handler
        && a.memory_mb == b.memory_mb
        && a.timeout_s == b.timeout_s
        && a.env == b.env
        && a.role == b.role
        && a.extra == b.extra
}

impl Store for SqliteStore {
    fn create_function(&self, spec: &FunctionSpec, publish: bool) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO functions (name, spec, next_version) VALUES (?1, ?2, 1)",
            params![spec.name, to_json(spec)?],
        )?;
        if inserted == 0 {
            return Ok(false);
        }
        if publish {
            tx.execute(
                "INSERT INTO versions (name, version, spec) VALUES (?1, 1, ?2)",
                params![spec.name, to_json(spec)?],
            )?;
            tx.execute(
                "UPDATE functions SET next_version = 2 WHERE name = ?1",
                params![spec.name],
            )?;
        }
        tx.commit()?;
        Ok(true)
    }

    fn get_function(&self, name: &str) -> Result<Option<FunctionRow>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT spec, next_version, reserved_concurrency FROM functions WHERE name = ?1",
                params![name],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                },
            )
            .optional()?;
        row.map(|(s, n, r)| row_to_function(s, n, r)).transpose()
    }

    fn list_functions(&self, after: Option<&str>, limit: usize) -> Result<Vec<FunctionRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT spec, next_version, reserved_concurrency FROM functions
             WHERE name > ?1 ORDER BY name LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after.unwrap_or(""), limit as i64], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (s, n, r) = row?;
            out.push(row_to_function(s, n, r)?);
        }
        Ok(out)
    }

    fn update_function(&self, spec: &FunctionSpec, expected_revision: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let current: Option<String> = tx
            .query_row(
                "SELECT spec FROM functions WHERE name = ?1",
                params![spec.name],
                |r| r.get(0),
            )
            .optional()?;
        let Some(current) = current else {
            return Ok(false);
        };
        if from_json(&current)?.revision_id != expected_revision {
            return Ok(false);
        }
        tx.execute(
            "UPDATE functions SET spec = ?2 WHERE name = ?1",
            params![spec.name, to_json(spec)?],
        )?;
        tx.commit()?;
        Ok(true)
    }

    fn delete_function(&self, name: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute("DELETE FROM functions WHERE name = ?1", params![name])?;
        tx.execute("DELETE FROM versions WHERE name = ?1", params![name])?;
        tx.execute("DELETE FROM aliases WHERE function = ?1", params![name])?;
        tx.execute("DELETE FROM tags WHERE function = ?1", params![name])?;
        tx.execute(
            "DELETE FROM function_urls WHERE function = ?1",
            params![name],
        )?;
        tx.execute("DELETE FROM triggers WHERE function = ?1", params![name])?;
        tx.execute(
            "DELETE FROM invoke_configs WHERE function = ?1",
            params![name],
        )?;
        tx.execute(
            "DELETE FROM async_events WHERE function = ?1 AND state = 'pending'",
            params![name],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn usage(&self) -> Result<(u64, u64, u64)> {
        let conn = self.conn();
        let (count, latest_size, reserved): (i64, i64, i64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(json_extract(spec, '$.code_size')), 0),
                    COALESCE(SUM(reserved_concurrency), 0) FROM functions",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let versions_size: i64 = conn.query_row(
            "SELECT COALESCE(SUM(json_extract(spec, '$.code_size')), 0) FROM versions",
            [],
            |r| r.get(0),
        )?;
        Ok((
            count as u64,
            (latest_size + versions_size) as u64,
            reserved as u64,
        ))
    }

    fn publish_version(
        &self,
        name: &str,
        description: Option<&str>,
    ) -> Result<Option<(u64, FunctionSpec)>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let row: Option<(String, i64)> = tx
            .query_row(
                "SELECT spec, next_version FROM functions WHERE name = ?1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((spec, next)) = row else {
            return Ok(None);
        };
        let mut latest = from_json(&spec)?;
        if let Some(d) = description {
            latest.description = d.to_string();
        }
        let newest: Option<(i64, String)> = tx
            .query_row(
                "SELECT version, spec FROM versions WHERE name = ?1 ORDER BY version DESC LIMIT 1",
                params![name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((v, s)) = newest {
            let newest = from_json(&s)?;
            if same_content(&newest, &latest) {
                return Ok(Some((v as u64, newest)));
            }
        }
        tx.execute(
            "INSERT INTO versions (name, version, spec) VALUES (?1, ?2, ?3)",
            params![name, next, to_json(&latest)?],
        )?;
        tx.execute(
            "UPDATE functions SET next_version = ?2 WHERE name = ?1",
            params![name, next + 1],
        )?;
        tx.commit()?;
        Ok(Some((next as u64, latest)))
    }

    fn get_version(&self, name: &str, version: u64) -> Result<Option<FunctionSpec>> {
        let conn = self.conn();
        let spec: Option<String> = conn
            .query_row(
                "SELECT spec FROM versions WHERE name = ?1 AND version = ?2",
                params![name, version as i64],
                |r| r.get(0),
            )
            .optional()?;
        spec.map(|s| from_json(&s)).transpose()
    }

    fn list_versions(&self, name: &str) -> Result<Vec<(u64, FunctionSpec)>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT version, spec FROM versions WHERE name = ?1 ORDER BY version")?;
        let rows = stmt.query_map(params![name], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (v, s) = row?;
            out.push((v as u64, from_json(&s)?));
        }
        Ok(out)
    }

    fn delete_version(&self, name: &str, version: u64) -> Result<bool> {
        let conn = self.conn();
        let n = conn.execute(
            "DELETE FROM versions WHERE name = ?1 AND version = ?2",
            params![name, version as i64],
        )?;
        Ok(n > 0)
    }

    fn set_reserved_concurrency(&self, name: &str, value: Option<u32>) -> Result<bool> {
        let conn = self.conn();
        let n = conn.execute(
            "UPDATE functions SET reserved_concurrency = ?2 WHERE name = ?1",
            params![name, value.map(i64::from)],
        )?;
        Ok(n > 0)
    }

    fn referenced_code(&self) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut out = Vec::new();
        for sql in ["SELECT spec FROM functions", "SELECT spec FROM versions"] {
            let mut stmt = conn.prepare(sql)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            for row in rows {
                out.push(from_json(&row?)?.code_sha256);
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn create_alias(&self, alias: &Alias) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if !function_exists(&tx, &alias.function)? {
            return Ok(false);
        }
        let n = tx.execute(
            "INSERT OR IGNORE INTO aliases (function, name, doc) VALUES (?1, ?2, ?3)",
            params![alias.function, alias.name, json_of(alias)?],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn get_alias(&self, function: &str, name: &str) -> Result<Option<Alias>> {
        let conn = self.conn();
        let doc: Option<String> = conn
            .query_row(
                "SELECT doc FROM aliases WHERE function = ?1 AND name = ?2",
                params![function, name],
                |r| r.get(0),
            )
            .optional()?;
        doc.map(|d| alias_of(&d)).transpose()
    }

    fn list_aliases(&self, function: &str) -> Result<Vec<Alias>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT doc FROM aliases WHERE function = ?1 ORDER BY name")?;
        let rows = stmt.query_map(params![function], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(alias_of(&row?)?);
        }
        Ok(out)
    }

    fn update_alias(&self, alias: &Alias, expected_revision: &str) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let doc: Option<String> = tx
            .query_row(
                "SELECT doc FROM aliases WHERE function = ?1 AND name = ?2",
                params![alias.function, alias.name],
                |r| r.get(0),
            )
            .optional()?;
        let Some(doc) = doc else { return Ok(false) };
        if alias_of(&doc)?.revision_id != expected_revision {
            return Ok(false);
        }
        tx.execute(
            "UPDATE aliases SET doc = ?3 WHERE function = ?1 AND name = ?2",
            params![alias.function, alias.name, json_of(alias)?],
        )?;
        tx.commit()?;
        Ok(true)
    }

    fn delete_alias(&self, function: &str, name: &str) -> Result<bool> {
        let n = self.conn().execute(
            "DELETE FROM aliases WHERE function = ?1 AND name = ?2",
            params![function, name],
        )?;
        Ok(n > 0)
    }

    fn tags(&self, function: &str) -> Result<Option<std::collections::BTreeMap<String, String>>> {
        let conn = self.conn();
        if !function_exists(&conn, function)? {
            return Ok(None);
        }
        let doc: Option<String> = conn
            .query_row(
                "SELECT doc FROM tags WHERE function = ?1",
                params![function],
                |r| r.get(0),
            )
            .optional()?;
        match doc {
            Some(d) => serde_json::from_str(&d)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(e.to_string())),
            None => Ok(Some(Default::default())),
        }
    }

    fn set_tags(
        &self,
        function: &str,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if !function_exists(&tx, function)? {
            return Ok(false);
        }
        let doc = serde_json::to_string(tags).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute(
            "INSERT INTO tags (function, doc) VALUES (?1, ?2) ON CONFLICT (function) DO UPDATE SET doc = ?2",
            params![function, doc],
        )?;
        tx.commit()?;
        Ok(true)
    }

    fn create_url(&self, url: &FunctionUrl) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if !function_exists(&tx, &url.function)? {
            return Ok(false);
        }
        let n = tx.execute(
            "INSERT OR IGNORE INTO function_urls (function, qualifier, url_id, doc) VALUES (?1, ?2, ?3, ?4)",
            params![url.function, url.qualifier, url.url_id, doc_of(url)?],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    fn get_url(&self, function: &str, qualifier: &str) -> Result<Option<FunctionUrl>> {
        let conn = self.conn();
        let doc: Option<String> = conn
            .query_row(
                "SELECT doc FROM function_urls WHERE function = ?1 AND qualifier = ?2",
                params![function, qualifier],
                |r| r.get(0),
            )
            .optional()?;
        doc.map(|d| parse_doc(&d)).transpose()
    }

    fn url_by_id(&self, url_id: &str) -> Result<Option<FunctionUrl>> {
        let conn = self.conn();
        let doc: Option<String> = conn
            .query_row(
                "SELECT doc FROM function_urls WHERE url_id = ?1",
                params![url_id],
                |r| r.get(0),
            )
            .optional()?;
        doc.map(|d| parse_doc(&d)).transpose()
    }

    fn list_urls(&self, function: &str) -> Result<Vec<FunctionUrl>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT doc FROM function_urls WHERE function = ?1 ORDER BY qualifier")?;
        let rows = stmt.query_map(params![function], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(parse_doc(&row?)?);
        }
        Ok(out)
    }

    fn update_url(&self, url: &FunctionUrl) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE function_urls SET doc = ?3 WHERE function = ?1 AND qualifier = ?2",
            params![url.function, url.qualifier, doc_of(url)?],
        )?;
        Ok(n > 0)
    }

    fn delete_url(&self, function: &str, qualifier: &str) -> Result<bool> {
        let n = self.conn().execute(
            "DELETE FROM function_urls WHERE function = ?1 AND qualifier = ?2",
            params![function, qualifier],
        )?;
        Ok(n > 0)
    }

    fn create_trigger(&self, trigger: &TriggerRow) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if !function_exists(&tx, &trigger.function)? {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO triggers (id, function, doc) VALUES (?1, ?2, ?3)",
            params![trigger.id, trigger.function, doc_of(trigger)?],
        )?;
        tx.commit()?;
        Ok(true)
    }

    fn list_triggers(&self, function: Option<&str>) -> Result<Vec<TriggerRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT doc FROM triggers WHERE ?1 IS NULL OR function = ?1 ORDER BY function, id",
        )?;
        let rows = stmt.query_map(params![function], |r| r.get::<_, String>(0))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(parse_doc(&row?)?);
        }
        Ok(out)
    }

    fn delete_trigger(&self, id: &str) -> Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM triggers WHERE id = ?1", params![id])?
            > 0)
    }

    fn update_trigger(&self, trigger: &TriggerRow) -> Result<bool> {
        let n = self.conn().execute(
            "UPDATE triggers SET doc = ?2 WHERE id = ?1",
            params![trigger.id, doc_of(trigger)?],
        )?;
        Ok(n > 0)
    }

    fn last_fire(&self, id: &str) -> Result<Option<i64>> {
        let conn = self.conn();
        let v: Option<Option<i64>> = conn
            .query_row(
                "SELECT last_fire_ms FROM triggers WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.flatten())
    }

    fn record_fire(
        &self,
        id: &str,
        previous_ms: Option<i64>,
        fire_ms: i64,
        event: Option<&AsyncEvent>,
    ) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let n = tx.execute(
            "UPDATE triggers SET last_fire_ms = ?2 WHERE id = ?1 AND last_fire_ms IS ?3",
            params![id, fire_ms, previous_ms],
        )?;
        if n == 0 {
            return Ok(false);
        }
        if let Some(e) = event {
            insert_event(&tx, e)?;
        }
        tx.commit()?;
        Ok(true)
    }

    fn enqueue_event(&self, e: &AsyncEvent) -> Result<i64> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO async_events (request_id, function, qualifier, payload, attempts, due_ms, enqueued_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![e.request_id, e.function, e.qualifier, e.payload, e.attempts, e.due_ms, e.enqueued_ms],
        )?;
        Ok(conn.last_insert_rowid())
    }

    fn due_events(&self, now_ms: i64, limit: usize) -> Result<Vec<AsyncEvent>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, request_id, function, qualifier, payload, attempts, due_ms, enqueued_ms
             FROM async_events WHERE state = 'pending' AND due_ms <= ?1 ORDER BY due_ms, id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![now_ms, limit as i64], row_to_event)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn next_due_ms(&self) -> Result<Option<i64>> {
        let conn = self.conn();
        Ok(conn.query_row(
            "SELECT MIN(due_ms) FROM async_events WHERE state = 'pending'",
            [],
            |r| r.get(0),
        )?)
    }

    fn complete_event(&self, id: i64, follow_up: Option<&AsyncEvent>) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM async_events WHERE id = ?1", params![id])?;
        if let Some(e) = follow_up {
            insert_event(&tx, e)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn retry_event(&self, id: i64, attempts: u32, due_ms: i64, error: &str) -> Result<()> {
        self.conn().execute(
            "UPDATE async_events SET attempts = ?2, due_ms = ?3, last_error = ?4 WHERE id = ?1",
            params![id, attempts, due_ms, error],
        )?;
        Ok(())
    }

    fn fail_event(
        &self,
        id: i64,
        attempts: u32,
        error: &str,
        follow_up: Option<&AsyncEvent>,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "UPDATE async_events SET state = 'failed', attempts = ?2, last_error = ?3 WHERE id = ?1",
            params![id, attempts, error],
        )?;
        if let Some(e) = follow_up {
            insert_event(&tx, e)?;
        }
        // Dead letters are kept for inspection and redrive, but within a bound: past it
        // the oldest go, and the log says so.
        let pruned = tx.execute(
            "DELETE FROM async_events WHERE state = 'failed' AND id NOT IN
             (SELECT id FROM async_events WHERE state = 'failed' ORDER BY id DESC LIMIT ?1)",
            params![DEAD_LETTERS_MAX],
        )?;
        tx.commit()?;
        if pruned > 0 {
            tracing::warn!(
                pruned,
                "dead letters over the bound of {DEAD_LETTERS_MAX}: the oldest were dropped"
            );
        }
        Ok(())
    }

    fn dead_letters(&self, function: &str, limit: usize) -> Result<Vec<(AsyncEvent, String)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT id, request_id, function, qualifier, payload, attempts, due_ms, enqueued_ms, COALESCE(last_error, '')
             FROM async_events WHERE state = 'failed' AND function = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![function, limit as i64], |r| {
            Ok((row_to_event(r)?, r.get(8)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn redrive(&self, function: &str) -> Result<u64> {
        let now = wisp_core::time::now_ms();
        let n = self.conn().execute(
            "UPDATE async_events SET state = 'pending', attempts = 0, due_ms = ?2, enqueued_ms = ?2
             WHERE state = 'failed' AND function = ?1",
            params![function, now],
        )?;
        Ok(n as u64)
    }

    fn put_invoke_config(
        &self,
        function: &str,
        qualifier: &str,
        doc: &serde_json::Value,
    ) -> Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if !function_exists(&tx, function)? {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO invoke_configs (function, qualifier, doc) VALUES (?1, ?2, ?3)
             ON CONFLICT (function, qualifier) DO UPDATE SET doc = ?3",
            params![function, qualifier, doc.to_string()],
        )?;
        tx.commit()?;
        Ok(true)
    }

    fn get_invoke_config(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<serde_json::Value>> {
        let conn = self.conn();
        let doc: Option<String> = conn
            .query_row(
                "SELECT doc FROM invoke_configs WHERE function = ?1 AND qualifier = ?2",
                params![function, qualifier],
                |r| r.get(0),
            )
            .optional()?;
        doc.map(|d| parse_doc(&d)).transpose()
    }

    fn list_invoke_configs(&self, function: &str) -> Result<Vec<(String, serde_json::Value)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT qualifier, doc FROM invoke_configs WHERE function = ?1 ORDER BY qualifier",
        )?;
        let rows = stmt.query_map(params![function], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (q, d) = row?;
            out.push((q, parse_doc(&d)?));
        }
        Ok(out)
    }

    fn delete_invoke_config(&self, function: &str, qualifier: &str) -> Result<bool> {
        let n = self.conn().execute(
            "DELETE FROM invoke_configs WHERE function = ?1 AND qualifier = ?2",
            params![function, qualifier],
        )?;
        Ok(n > 0)
    }

    fn pending_event_count(&self) -> Result<u64> {
        let conn = self.conn();
        Ok(conn.query_row(
            "SELECT COUNT(*) FROM async_events WHERE state = 'pending'",
            [],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    fn append_records(&self, records: &[InvocationRecord], retain: u64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT INTO records (request_id, function, version, invocation_type, start_ms,
                 duration_ms, billed_ms, init_ms, max_memory_mb, memory_size_mb, status, error_type, logs)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            for r in records {
                stmt.execute(params![
                    r.request_id,
                    r.function_name,
                    r.version,
                    r.invocation_type.as_str(),
                    r.start_time_ms,
                    r.duration_ms,
                    r.billed_duration_ms as i64,
                    r.init_duration_ms,
                    r.max_memory_used_mb as i64,
                    r.memory_size_mb,
                    r.status.as_str(),
                    r.error_type,
                    r.logs,
                ])?;
            }
        }
        tx.execute(
            "DELETE FROM records WHERE seq <= (SELECT MAX(seq) FROM records) - ?1",
            params![retain as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn records(
        &self,
        function: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>> {
        let conn = self.conn();
        query_records(
            &conn,
            "WHERE function = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            params![function, after_seq, limit as i64],
        )
    }

    fn recent_records(&self, function: &str, limit: usize) -> Result<Vec<InvocationRecord>> {
        let conn = self.conn();
        let mut out = query_records(
            &conn,
            "WHERE function = ?1 ORDER BY seq DESC LIMIT ?2",
            params![function, limit as i64],
        )?;
        out.reverse();
        Ok(out)
    }
}

fn query_records(
    conn: &Connection,
    tail: &str,
    args: impl rusqlite::Params,
) -> Result<Vec<InvocationRecord>> {
    let sql = format!(
        "SELECT seq, request_id, function, version, invocation_type, start_ms, duration_ms,
                billed_ms, init_ms, max_memory_mb, memory_size_mb, status, error_type, logs
         FROM records {tail}"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(args, |r| {
        let kind: String = r.get(4)?;
        let status: String = r.get(11)?;
        Ok(InvocationRecord {
            seq: r.get(0)?,
            request_id: r.get(1)?,
            function_name: r.get(2)?,
            version: r.get(3)?,
            invocation_type: if kind == "Event" {
                InvocationType::Event
            } else {
                InvocationType::RequestResponse
            },
            start_time_ms: r.get(5)?,
            duration_ms: r.get(6)?,
            billed_duration_ms: r.get::<_, i64>(7)? as u64,
            init_duration_ms: r.get(8)?,
            max_memory_used_mb: r.get::<_, i64>(9)? as u64,
            memory_size_mb: r.get(10)?,
            status: InvocationStatus::parse(&status).unwrap_or(InvocationStatus::Error),
            error_type: r.get(12)?,
            logs: r.get(13)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, sha: &str) -> FunctionSpec {
        FunctionSpec {
            name: name.into(),
            runtime: "python3.11".into(),
            handler: "app.handler".into(),
            memory_mb: 128,
            timeout_s: 3,
            env: Default::default(),
            description: String::new(),
            role: String::new(),
            code_sha256: sha.into(),
            code_size: 1,
            last_modified_ms: 0,
            revision_id: "r1".into(),
            extra: Default::default(),
        }
    }

    #[test]
    fn function_life_cycle() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        assert!(store.create_function(&spec("a", "x"), true).unwrap());
        assert!(!store.create_function(&spec("a", "x"), false).unwrap());
        assert!(store.create_function(&spec("b", "y"), false).unwrap());
        let page = store.list_functions(Some("a"), 10).unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].latest.name, "b");
        // Publishing unchanged content returns the existing version.
        assert_eq!(store.publish_version("a", None).unwrap().unwrap().0, 1);
        let mut changed = spec("a", "z");
        changed.revision_id = "r2".into();
        assert!(!store.update_function(&changed, "stale").unwrap());
        assert!(store.update_function(&changed, "r1").unwrap());
        let (v, spec) = store.publish_version("a", Some("second")).unwrap().unwrap();
        assert_eq!((v, spec.description.as_str()), (2, "second"));
        assert_eq!(
            store.get_function("a").unwrap().unwrap().latest.description,
            ""
        );
        assert_eq!(store.usage().unwrap(), (2, 4, 0));
        assert_eq!(store.list_versions("a").unwrap().len(), 2);
        assert_eq!(store.referenced_code().unwrap(), vec!["x", "y", "z"]);
        assert!(store.delete_function("a").unwrap());
        assert!(store.get_function("a").unwrap().is_none());
        assert!(store.list_versions("a").unwrap().is_empty());
    }

    #[test]
    fn events_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = SqliteStore::open(&path).unwrap();
            for i in 0..3 {
                store
                    .enqueue_event(&AsyncEvent {
                        id: 0,
                        request_id: format!("r{i}"),
                        function: "f".into(),
                        qualifier: None,
                        payload: b"{}".to_vec(),
                        attempts: 0,
                        due_ms: i,
                        enqueued_ms: 0,
                    })
                    .unwrap();
            }
        }
        let store = SqliteStore::open(&path).unwrap();
        let due = store.due_events(1, 10).unwrap();
        assert_eq!(due.len(), 2);
        store.complete_event(due[0].id, None).unwrap();
        store.retry_event(due[1].id, 1, 100, "boom").unwrap();
        assert_eq!(store.next_due_ms().unwrap(), Some(2));
        store.fail_event(due[1].id, 3, "boom", None).unwrap();
        assert_eq!(store.pending_event_count().unwrap(), 1);
        let dead = store.dead_letters("f", 10).unwrap();
        assert_eq!((dead.len(), dead[0].1.as_str()), (1, "boom"));
        assert_eq!(store.redrive("f").unwrap(), 1);
        assert_eq!(store.pending_event_count().unwrap(), 2);
        assert!(store.dead_letters("f", 10).unwrap().is_empty());
    }
}
