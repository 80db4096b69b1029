//! Triggers: sources that turn events into invocations. Each kind is one module with the
//! same shape (its configuration, validated when the trigger is created, and what runs
//! it); every event goes through the engine's invoke path, so limits, records, retries
//! and metrics apply as they do to a direct Invoke.
//!
//! Kinds:
//! - `schedule` ([`schedule`]): EventBridge `rate(...)`/`cron(...)` expressions in a time
//!   zone. A fire is recorded and its event queued in one transaction, so a crash neither
//!   loses nor doubles it; fires missed while the server was down are skipped or fired once.
//! - `http` ([`http`]): method + path routes (`POST /orders/{id}`, `/{proxy+}`) served on
//!   their own listener; the listener itself lives in `wisp-api`.
//!
//! - broker connectors ([`connect`]): Kafka, NATS JetStream, RabbitMQ, Redis Streams and
//!   MQTT live in crates of their own and are registered here as [`connect::Connector`]s;
//!   this crate gives them the delivery contract they share (batching, concurrency slots,
//!   retries with backoff, failure destinations, status).
//!
//! Triggers are stored in the engine's store (`TriggerRow`), so they survive restarts and
//! are removed with their function.

pub mod connect;
pub mod http;
pub mod schedule;
pub mod sqs;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;
use wisp_core::error::Result;
use wisp_core::Error;
use wisp_engine::Engine;
use wisp_store::{Store, TriggerRow};

/// One kind of trigger: how its configuration is read and checked, and what runs it.
/// Every kind delivers its events through the engine's invoke path.
pub trait Source {
    /// The kind's name: `TriggerRow::kind` and the API's `Kind`.
    const KIND: &'static str;
    type Config: serde::Serialize + serde::de::DeserializeOwned;
    /// Parses and validates a configuration (strictly: unknown fields are errors).
    fn config(value: &Value) -> Result<Self::Config>;
    /// Starts the task that runs one trigger, if the kind runs one (HTTP routes are
    /// served by the routes listener instead).
    fn start(
        triggers: &Arc<Triggers>,
        row: &TriggerRow,
        config: Self::Config,
    ) -> Result<Option<tokio::task::JoinHandle<()>>>;
}

/// Validates a configuration through its kind and returns it normalised, for storing.
fn normalised<S: Source>(value: &Value) -> Result<Value> {
    serde_json::to_value(S::config(value)?).map_err(|e| Error::service(e.to_string()))
}

/// At most this many triggers per server.
pub const MAX_TRIGGERS: usize = 10_000;

/// A new trigger, as the API or a manifest gives it.
#[derive(Debug, Clone)]
pub struct TriggerInput {
    pub kind: String,
    pub function: String,
    pub qualifier: Option<String>,
    pub config: Value,
}

/// What [`Triggers::sync`] did: ids kept, created (with their kind) and removed.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    pub kept: Vec<String>,
    pub created: Vec<(String, String)>,
    pub removed: Vec<String>,
}

/// What a trigger is doing now, for `wisp triggers status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TriggerStatus {
    pub state: String,
    pub last_fire_ms: Option<i64>,
    pub next_fire_ms: Option<i64>,
    pub fired: u64,
    pub last_error: Option<String>,
    /// Broker connectors: whether the broker is reachable now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected: Option<bool>,
    /// Broker connectors: messages on the broker not yet handled (when the broker says).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
    /// Batches invoked again after a failure.
    pub retried: u64,
    /// Batches sent to the failure destination after their retries.
    pub dead_lettered: u64,
    /// Batches dropped after their retries (no failure destination).
    pub discarded: u64,
}

pub struct Triggers {
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
    tasks: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    status: Mutex<HashMap<String, TriggerStatus>>,
    routes: RwLock<Arc<http::RouteTable>>,
    queues: Option<Arc<wisp_queue::QueueService>>,
    /// How late a schedule's fire may be and still run as on time; later, it counts as
    /// missed (the server was down) and the schedule's MissedFires policy applies.
    schedule_grace_ms: i64,
    /// Broker connectors by kind.
    connectors: HashMap<&'static str, Arc<dyn connect::Connector>>,
}

fn store_err(e: wisp_store::StoreError) -> Error {
    tracing::error!(error = %e, "trigger store failure");
    Error::service("The server could not complete the request; see its log.")
}

impl Triggers {
    /// Loads every stored trigger and starts the ones that run.
    pub fn start(
        engine: Arc<Engine>,
        store: Arc<dyn Store>,
        queues: Option<Arc<wisp_queue::QueueService>>,
        schedule_grace_ms: i64,
        connectors: Vec<Arc<dyn connect::Connector>>,
    ) -> Result<Arc<Self>> {
        let triggers = Arc::new(Triggers {
            engine,
            store,
            queues,
            schedule_grace_ms,
            connectors: connectors.into_iter().map(|c| (c.kind(), c)).collect(),
            tasks: Mutex::new(HashMap::new()),
            status: Mutex::new(HashMap::new()),
            routes: RwLock::new(Arc::default()),
        });
        triggers.reconcile()?;
        // Triggers of a deleted function are removed with it in the store; this picks that
        // up (and anything else changed behind the API's back).
        let weak = Arc::downgrade(&triggers);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
            loop {
                tick.tick().await;
                let Some(t) = weak.upgrade() else { return };
                if let Err(e) = t.reconcile() {
                    tracing::warn!(error = %e, "trigger reconcile failed");
                }
            }
        });
        Ok(triggers)
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The HTTP routes in force.
    pub fn routes(&self) -> Arc<http::RouteTable> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_status(&self, id: &str, f: impl FnOnce(&mut TriggerStatus)) {
        let mut map = self.status.lock().unwrap_or_else(|p| p.into_inner());
        f(map.entry(id.to_string()).or_default());
    }

    /// Brings running tasks and the route table in line with the store: starts what is
    /// new, stops what is gone (a deleted trigger, or one whose function was deleted).
    pub fn reconcile(self: &Arc<Self>) -> Result<()> {
        let rows = self.store.list_triggers(None).map_err(store_err)?;
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|id, task| {
            let keep = rows.iter().any(|r| &r.id == id);
            if !keep {
                task.abort();
            }
            keep
        });
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|id, _| rows.iter().any(|r| &r.id == id));
        for row in &rows {
            if tasks.contains_key(&row.id) {
                continue;
            }
            let started = match row.kind.as_str() {
                schedule::KIND => self.start_source::<schedule::Schedules>(row),
                sqs::KIND => self.start_source::<sqs::Mappings>(row),
                http::KIND => self.start_source::<http::Routes>(row),
                other => match self.connectors.get(other) {
                    Some(c) => self.start_connector(c.as_ref(), row),
                    None => Err(Error::invalid(format!("unknown trigger kind '{other}'"))),
                },
            };
            match started {
                Ok(Some(task)) => {
                    tasks.insert(row.id.clone(), task);
                }
                Ok(None) => {}
                Err(e) => self.set_status(&row.id, |s| {
                    s.state = "Invalid".into();
                    s.last_error = Some(e.message);
                }),
            }
        }
        let table = http::RouteTable::build(rows.iter().filter(|r| r.kind == http::KIND));
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        Ok(())
    }

    fn start_connector(
        self: &Arc<Self>,
        connector: &dyn connect::Connector,
        row: &TriggerRow,
    ) -> Result<Option<tokio::task::JoinHandle<()>>> {
        let (delivery, rest) = connect::Delivery::split(&row.config)?;
        let config = connector.validate(&rest)?;
        if !delivery.enabled {
            self.set_status(&row.id, |s| s.state = "Disabled".into());
            return Ok(None);
        }
        self.set_status(&row.id, |s| s.state = "Connecting".into());
        let ctx = connect::Ctx::new(self.clone(), row, delivery);
        Ok(Some(tokio::spawn(connector.run(ctx, config))))
    }

    /// The kinds this server knows, for error messages.
    fn kinds(&self) -> String {
        let mut kinds: Vec<&str> = vec![schedule::KIND, http::KIND, sqs::KIND];
        let mut more: Vec<&str> = self.connectors.keys().copied().collect();
        more.sort_unstable();
        kinds.extend(more);
        kinds.join(", ")
    }

    /// A trigger's configuration as the API shows it: a connector's secrets are hidden.
    pub fn public_config(&self, row: &TriggerRow) -> Value {
        match self.connectors.get(row.kind.as_str()) {
            Some(c) => connect::redacted(c.as_ref(), &row.config),
            None => row.config.clone(),
        }
    }

    /// Validates a configuration of a kind and returns it normalised, for storing.
    fn normalise(&self, kind: &str, config: &Value) -> Result<Value> {
        match kind {
            schedule::KIND => normalised::<schedule::Schedules>(config),
            sqs::KIND => normalised::<sqs::Mappings>(config),
            http::KIND => normalised::<http::Routes>(config),
            other => match self.connectors.get(other) {
                Some(c) => connect::normalise(c.as_ref(), config),
                None => Err(Error::invalid(format!(
                    "Trigger kind '{}' is not one of: {}.",
                    other.chars().take(40).collect::<String>(),
                    self.kinds()
                ))),
            },
        }
    }

    fn start_source<S: Source>(
        self: &Arc<Self>,
        row: &TriggerRow,
    ) -> Result<Option<tokio::task::JoinHandle<()>>> {
        let config = S::config(&row.config)?;
        S::start(self, row, config)
    }

    pub fn queues(&self) -> Option<&Arc<wisp_queue::QueueService>> {
        self.queues.as_ref()
    }

    /// Checks that a mapping's queue exists (as Lambda does at creation).
    async fn check_queue(&self, cfg: &sqs::Config) -> Result<()> {
        let Some(queues) = &self.queues else {
            return Err(Error::invalid("This server has no queue service."));
        };
        queues
            .queue_name_from_arn(&cfg.event_source_arn)
            .await
            .map(|_| ())
            .map_err(|_| {
                Error::invalid(format!(
                    "The provided queue does not exist: {}",
                    cfg.event_source_arn
                ))
            })
    }

    /// Validates and stores a trigger, then starts it.
    pub async fn create(self: &Arc<Self>, input: TriggerInput) -> Result<TriggerRow> {
        if input.kind == sqs::KIND {
            self.check_queue(&sqs::Config::from_value(&input.config)?)
                .await?;
        }
        // The function (and qualifier) must exist now; events resolve it again when they fire.
        let target = self
            .engine
            .resolve(&input.function, input.qualifier.as_deref())?;
        if input.kind == http::KIND {
            let cfg = http::Config::from_value(&input.config)?;
            let existing = self.store.list_triggers(None).map_err(store_err)?;
            http::check_conflicts(&cfg, existing.iter().filter(|r| r.kind == http::KIND))?;
        }
        let config = self.normalise(&input.kind, &input.config)?;
        if self.store.list_triggers(None).map_err(store_err)?.len() >= MAX_TRIGGERS {
            return Err(Error::invalid(format!(
                "This server holds at most {MAX_TRIGGERS} triggers."
            )));
        }
        // Event source mappings are named by a UUID, as on Lambda.
        let id = if input.kind == sqs::KIND || self.connectors.contains_key(input.kind.as_str()) {
            uuid::Uuid::new_v4().to_string()
        } else {
            uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
        };
        let row = TriggerRow {
            id,
            kind: input.kind,
            function: target.spec.name.clone(),
            qualifier: input.qualifier,
            config,
            created_ms: wisp_core::time::now_ms(),
        };
        if !self.store.create_trigger(&row).map_err(store_err)? {
            return Err(Error::not_found(format!(
                "Function not found: {}",
                row.function
            )));
        }
        self.reconcile()?;
        Ok(row)
    }

    /// Makes a function's triggers exactly `wanted` (what `wisp deploy` does with a
    /// manifest): keeps the ones whose kind, qualifier and normalised configuration match
    /// — so a schedule keeps its fire history and a connector its connection — removes
    /// the rest, then creates what is missing. Every wanted trigger is checked before
    /// anything changes. Compared here rather than by the client because stored
    /// configurations hold secrets the API never returns.
    pub async fn sync(
        self: &Arc<Self>,
        function: &str,
        wanted: Vec<TriggerInput>,
    ) -> Result<SyncReport> {
        let target = self.engine.resolve(function, None)?;
        let name = target.spec.name.clone();
        let mut normalised = Vec::with_capacity(wanted.len());
        for input in &wanted {
            if input.function != name && input.function != function {
                return Err(Error::invalid(format!(
                    "Every trigger synced for {name} must name it (got {}).",
                    input.function.chars().take(100).collect::<String>()
                )));
            }
            normalised.push(self.normalise(&input.kind, &input.config)?);
        }
        let existing = self.store.list_triggers(Some(&name)).map_err(store_err)?;
        let mut report = SyncReport::default();
        let mut matched = vec![false; wanted.len()];
        for row in existing {
            let same = wanted
                .iter()
                .zip(&normalised)
                .enumerate()
                .find(|(i, (w, cfg))| {
                    !matched[*i]
                        && w.kind == row.kind
                        && w.qualifier == row.qualifier
                        && **cfg == row.config
                });
            match same {
                Some((i, _)) => {
                    matched[i] = true;
                    report.kept.push(row.id);
                }
                None => {
                    self.delete(&row.id)?;
                    report.removed.push(row.id);
                }
            }
        }
        for (input, done) in wanted.into_iter().zip(matched) {
            if !done {
                let row = self
                    .create(TriggerInput {
                        function: name.clone(),
                        ..input
                    })
                    .await?;
                report.created.push((row.id, row.kind));
            }
        }
        Ok(report)
    }

    pub fn list(&self, function: Option<&str>) -> Result<Vec<(TriggerRow, TriggerStatus)>> {
        let rows = self.store.list_triggers(function).map_err(store_err)?;
        let status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        Ok(rows
            .into_iter()
            .map(|r| {
                let s = status.get(&r.id).cloned().unwrap_or_default();
                (r, s)
            })
            .collect())
    }

    pub fn get(&self, id: &str) -> Result<TriggerRow> {
        self.store
            .list_triggers(None)
            .map_err(store_err)?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| {
                Error::not_found(format!(
                    "The resource you requested does not exist. (Trigger {id})"
                ))
            })
    }

    /// Replaces a trigger's configuration and restarts it.
    pub async fn update(
        self: &Arc<Self>,
        id: &str,
        function: Option<String>,
        config: Value,
    ) -> Result<TriggerRow> {
        let mut row = self.get(id)?;
        row.config = match row.kind.as_str() {
            sqs::KIND => {
                let cfg = sqs::Config::from_value(&config)?;
                self.check_queue(&cfg).await?;
                normalised::<sqs::Mappings>(&config)?
            }
            kind => self.normalise(kind, &config)?,
        };
        if let Some(f) = function {
            let fref = wisp_core::parse_function_ref(&f)?;
            self.engine.resolve(&f, None)?;
            row.function = fref.name;
            row.qualifier = fref.qualifier.map(|q| q.to_string());
        }
        if !self.store.update_trigger(&row).map_err(store_err)? {
            return Err(Error::not_found(format!("Trigger not found: {id}")));
        }
        if let Some(task) = self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
        {
            task.abort();
        }
        self.reconcile()?;
        Ok(row)
    }

    pub fn delete(self: &Arc<Self>, id: &str) -> Result<()> {
        if !self.store.delete_trigger(id).map_err(store_err)? {
            return Err(Error::not_found(format!("Trigger not found: {id}")));
        }
        self.reconcile()
    }

    /// Stops every trigger task (at shutdown).
    pub fn stop(&self) {
        for (_, task) in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).drain() {
            task.abort();
        }
    }
}
