//! Persistence for wisp: the registry of functions and versions, the durable async event
//! queue and the invocation records (SQLite, bundled), and the content-addressed artifact
//! store for code packages (the filesystem). This crate knows nothing of HTTP.
//!
//! The embedded implementations sit behind the [`Store`] and [`BlobStore`] traits so that
//! a cluster mode can put them on a distributed engine without touching their callers.

pub mod blob;
pub mod package;
pub mod sqlite;

use std::path::PathBuf;

use wisp_core::{FunctionSpec, InvocationRecord};

pub use blob::FsBlobStore;
pub use package::{PackageError, UnpackLimits};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Package(#[from] PackageError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A function as the registry holds it: `$LATEST` and its counters.
#[derive(Debug, Clone)]
pub struct FunctionRow {
    pub latest: FunctionSpec,
    pub next_version: u64,
    pub reserved_concurrency: Option<u32>,
}

/// A named pointer to a version, optionally splitting traffic with a second version.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Alias {
    pub function: String,
    pub name: String,
    /// `$LATEST` or a version number.
    pub version: String,
    pub description: String,
    /// (version, weight in 0..=1) taking that share of the alias's traffic.
    pub additional: Option<(u64, f64)>,
    pub revision_id: String,
}

/// A function URL: an HTTP endpoint of its own that invokes one function (or alias).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FunctionUrl {
    pub function: String,
    /// `$LATEST` or an alias name.
    pub qualifier: String,
    /// The URL's id: its path prefix on the URL listener.
    pub url_id: String,
    /// `NONE` or `AWS_IAM`.
    pub auth_type: String,
    /// The `Cors` document as given, if any.
    pub cors: Option<serde_json::Value>,
    pub invoke_mode: String,
    pub created: String,
    pub modified: String,
}

/// A trigger: a source of events bound to a function (or one of its aliases/versions).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TriggerRow {
    pub id: String,
    /// The source kind, e.g. `schedule` or `http`.
    pub kind: String,
    pub function: String,
    pub qualifier: Option<String>,
    /// The kind's own configuration, validated by the kind before it is stored.
    pub config: serde_json::Value,
    pub created_ms: i64,
}

/// An accepted asynchronous invocation, waiting in the durable queue.
#[derive(Debug, Clone)]
pub struct AsyncEvent {
    pub id: i64,
    pub request_id: String,
    pub function: String,
    pub qualifier: Option<String>,
    pub payload: Vec<u8>,
    pub attempts: u32,
    pub due_ms: i64,
    pub enqueued_ms: i64,
}

/// The registry, queue and records. Every method is one transaction.
pub trait Store: Send + Sync + 'static {
    /// Inserts a new function; `Ok(false)` when the name is taken. With `publish`, version
    /// 1 is created in the same transaction.
    fn create_function(&self, spec: &FunctionSpec, publish: bool) -> Result<bool>;
    fn get_function(&self, name: &str) -> Result<Option<FunctionRow>>;
    /// Functions whose names sort after `after`, at most `limit`.
    fn list_functions(&self, after: Option<&str>, limit: usize) -> Result<Vec<FunctionRow>>;
    /// Replaces `$LATEST` if its revision is still `expected_revision`; `Ok(false)` if
    /// the function is gone or was changed meanwhile.
    fn update_function(&self, spec: &FunctionSpec, expected_revision: &str) -> Result<bool>;
    /// Deletes a function, its versions and its queued events; `Ok(false)` if absent.
    fn delete_function(&self, name: &str) -> Result<bool>;
    /// Publishes `$LATEST` as the next version unless the newest version already has the
    /// same code and configuration; returns the version's spec and number.
    /// `description`, if given, becomes the new version's description.
    fn publish_version(
        &self,
        name: &str,
        description: Option<&str>,
    ) -> Result<Option<(u64, FunctionSpec)>>;
    /// (function count, total code size of all versions in bytes, sum of reserved concurrency).
    fn usage(&self) -> Result<(u64, u64, u64)>;
    fn get_version(&self, name: &str, version: u64) -> Result<Option<FunctionSpec>>;
    fn list_versions(&self, name: &str) -> Result<Vec<(u64, FunctionSpec)>>;
    fn delete_version(&self, name: &str, version: u64) -> Result<bool>;
    /// Sets (`Some`) or clears (`None`) reserved concurrency; `Ok(false)` if absent.
    fn set_reserved_concurrency(&self, name: &str, value: Option<u32>) -> Result<bool>;
    /// Every code package still referenced by some function or version.
    fn referenced_code(&self) -> Result<Vec<String>>;

    /// Inserts an alias; `Ok(false)` if the name is taken or the function is gone.
    fn create_alias(&self, alias: &Alias) -> Result<bool>;
    fn get_alias(&self, function: &str, name: &str) -> Result<Option<Alias>>;
    fn list_aliases(&self, function: &str) -> Result<Vec<Alias>>;
    /// Replaces an alias if its revision is still `expected_revision`.
    fn update_alias(&self, alias: &Alias, expected_revision: &str) -> Result<bool>;
    fn delete_alias(&self, function: &str, name: &str) -> Result<bool>;

    /// A function's tags; `None` if the function does not exist.
    fn tags(&self, function: &str) -> Result<Option<std::collections::BTreeMap<String, String>>>;
    /// Replaces a function's tags; `Ok(false)` if the function does not exist.
    fn set_tags(
        &self,
        function: &str,
        tags: &std::collections::BTreeMap<String, String>,
    ) -> Result<bool>;

    /// Inserts a URL config; `Ok(false)` if the function already has one for the qualifier.
    fn create_url(&self, url: &FunctionUrl) -> Result<bool>;
    fn get_url(&self, function: &str, qualifier: &str) -> Result<Option<FunctionUrl>>;
    fn url_by_id(&self, url_id: &str) -> Result<Option<FunctionUrl>>;
    fn list_urls(&self, function: &str) -> Result<Vec<FunctionUrl>>;
    fn update_url(&self, url: &FunctionUrl) -> Result<bool>;
    fn delete_url(&self, function: &str, qualifier: &str) -> Result<bool>;

    /// Inserts a trigger; `Ok(false)` if the function does not exist.
    fn create_trigger(&self, trigger: &TriggerRow) -> Result<bool>;
    /// Triggers, of one function or all.
    fn list_triggers(&self, function: Option<&str>) -> Result<Vec<TriggerRow>>;
    fn delete_trigger(&self, id: &str) -> Result<bool>;
    /// Replaces a trigger's configuration (and qualifier); `Ok(false)` if it is gone.
    fn update_trigger(&self, trigger: &TriggerRow) -> Result<bool>;
    /// A trigger's last recorded fire time (schedules).
    fn last_fire(&self, id: &str) -> Result<Option<i64>>;
    /// Records a fire at `fire_ms` (only if the last recorded one is still `previous_ms`)
    /// and, in the same transaction, queues its event: a fire is neither lost nor doubled
    /// by a crash. `event` is `None` to record a skipped fire. `Ok(false)` if another
    /// writer recorded a fire meanwhile.
    fn record_fire(
        &self,
        id: &str,
        previous_ms: Option<i64>,
        fire_ms: i64,
        event: Option<&AsyncEvent>,
    ) -> Result<bool>;

    /// Durably queues an event; returns once it is committed.
    fn enqueue_event(&self, event: &AsyncEvent) -> Result<i64>;
    /// Pending events due at `now_ms`, oldest first.
    fn due_events(&self, now_ms: i64, limit: usize) -> Result<Vec<AsyncEvent>>;
    /// The earliest due time among pending events.
    fn next_due_ms(&self) -> Result<Option<i64>>;
    /// Removes a finished event; `follow_up` (a destination's event) is queued in the same
    /// transaction, so it is neither lost nor doubled.
    fn complete_event(&self, id: i64, follow_up: Option<&AsyncEvent>) -> Result<()>;
    fn retry_event(&self, id: i64, attempts: u32, due_ms: i64, error: &str) -> Result<()>;
    /// Keeps an event that exhausted its attempts, marked failed, for inspection.
    fn fail_event(
        &self,
        id: i64,
        attempts: u32,
        error: &str,
        follow_up: Option<&AsyncEvent>,
    ) -> Result<()>;
    /// A function's dead letters (events that used up their attempts or aged out), newest
    /// first, with their last error.
    fn dead_letters(&self, function: &str, limit: usize) -> Result<Vec<(AsyncEvent, String)>>;
    /// Sends a function's dead letters back to the queue, with fresh attempts.
    fn redrive(&self, function: &str) -> Result<u64>;

    /// The asynchronous invocation settings of a function version or alias (JSON as the
    /// API spells it).
    fn put_invoke_config(
        &self,
        function: &str,
        qualifier: &str,
        doc: &serde_json::Value,
    ) -> Result<bool>;
    fn get_invoke_config(
        &self,
        function: &str,
        qualifier: &str,
    ) -> Result<Option<serde_json::Value>>;
    fn list_invoke_configs(&self, function: &str) -> Result<Vec<(String, serde_json::Value)>>;
    fn delete_invoke_config(&self, function: &str, qualifier: &str) -> Result<bool>;
    fn pending_event_count(&self) -> Result<u64>;

    /// Appends records in one transaction and prunes the oldest beyond `retain`.
    fn append_records(&self, records: &[InvocationRecord], retain: u64) -> Result<()>;
    fn records(
        &self,
        function: &str,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<InvocationRecord>>;
    /// The newest `limit` records of a function, oldest first.
    fn recent_records(&self, function: &str, limit: usize) -> Result<Vec<InvocationRecord>>;
}

/// Code packages by their sha256.
pub trait BlobStore: Send + Sync + 'static {
    /// Validates and unpacks `zip`, then stores it; returns its hex sha256. A package that
    /// fails validation leaves nothing behind.
    fn put_package(&self, zip: &[u8]) -> Result<String>;
    /// The unpacked code of a stored package.
    fn code_dir(&self, sha256: &str) -> Result<PathBuf>;
    /// The zip itself, as uploaded.
    fn read_package(&self, sha256: &str) -> Result<Vec<u8>>;
    /// Removes packages not in `keep`.
    fn collect_garbage(&self, keep: &[String]) -> Result<usize>;
}
