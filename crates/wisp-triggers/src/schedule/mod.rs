//! The `schedule` trigger: fires a function on an EventBridge schedule expression.
//!
//! Each fire is written (the trigger's last fire time) together with its event in the
//! durable async queue, in one transaction, before anything runs: after a crash the fire
//! is either recorded and queued, or neither. Fires missed while the server was down are
//! skipped or, with `MissedFires: FIRE_ONCE`, fired once (for the latest missed time).

pub mod expr;

use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use wisp_core::error::Result;
use wisp_core::Error;
use wisp_store::{AsyncEvent, TriggerRow};

use crate::Triggers;
pub use expr::Schedule;

pub const KIND: &str = "schedule";

/// By default a fire this late is still on time (the server was busy, not down).
pub const DEFAULT_GRACE_MS: i64 = 60_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Config {
    /// `rate(5 minutes)` or `cron(0 12 * * ? *)`.
    pub schedule_expression: String,
    /// An IANA time zone for cron expressions; UTC by default.
    #[serde(default)]
    pub schedule_expression_timezone: Option<String>,
    /// `SKIP` (default) or `FIRE_ONCE`.
    #[serde(default)]
    pub missed_fires: Option<String>,
    /// An event to send instead of the EventBridge scheduled event.
    #[serde(default)]
    pub input: Option<Value>,
}

impl Config {
    pub fn from_value(v: &Value) -> Result<Config> {
        let cfg: Config = serde_json::from_value(v.clone())
            .map_err(|e| Error::invalid(format!("Invalid schedule trigger configuration: {e}")))?;
        Schedule::parse(&cfg.schedule_expression).map_err(|e| Error::invalid(e.to_string()))?;
        cfg.timezone()?;
        match cfg.missed_fires.as_deref() {
            None | Some("SKIP") | Some("FIRE_ONCE") => {}
            Some(other) => {
                return Err(Error::invalid(format!(
                    "MissedFires must be SKIP or FIRE_ONCE, not '{other}'."
                )))
            }
        }
        if let Some(input) = &cfg.input {
            if input.to_string().len() > wisp_core::limits::ASYNC_PAYLOAD_MAX_BYTES {
                return Err(Error::invalid(
                    "Input is larger than an async invocation may be.",
                ));
            }
        }
        Ok(cfg)
    }

    fn timezone(&self) -> Result<TimeZone> {
        match &self.schedule_expression_timezone {
            None => Ok(TimeZone::UTC),
            Some(name) => TimeZone::get(name)
                .map_err(|_| Error::invalid(format!("'{name}' is not a time zone this server knows (IANA names such as Europe/Paris)."))),
        }
    }
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// The event of one fire: the EventBridge "Scheduled Event" shape, or the configured input.
fn event(triggers: &Triggers, row: &TriggerRow, cfg: &Config, fire_ms: i64) -> AsyncEvent {
    let request_id = uuid::Uuid::new_v4().to_string();
    let region = &triggers.engine.config().region;
    let payload = match &cfg.input {
        Some(input) => input.clone(),
        None => json!({
            "version": "0",
            "id": request_id,
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": wisp_core::name::ACCOUNT_ID,
            "time": rfc3339(fire_ms),
            "region": region,
            "resources": [format!("arn:aws:events:{region}:{}:rule/wisp-{}", wisp_core::name::ACCOUNT_ID, row.id)],
            "detail": {},
        }),
    };
    let now = wisp_core::time::now_ms();
    AsyncEvent {
        id: 0,
        request_id,
        function: row.function.clone(),
        qualifier: row.qualifier.clone(),
        payload: payload.to_string().into_bytes(),
        attempts: 0,
        due_ms: now,
        enqueued_ms: now,
    }
}

/// The latest fire at or before `now`, starting from a fire `first` that is.
fn latest_missed(schedule: &Schedule, first: i64, anchor: i64, now: i64, tz: &TimeZone) -> i64 {
    if let Schedule::Rate { period_ms } = schedule {
        return anchor + (now - anchor) / period_ms * period_ms;
    }
    let mut latest = first;
    for _ in 0..100_000 {
        match schedule.next_after(latest, anchor, tz) {
            Some(n) if n <= now => latest = n,
            _ => break,
        }
    }
    latest
}

/// The `schedule` kind.
pub struct Schedules;

impl crate::Source for Schedules {
    const KIND: &'static str = KIND;
    type Config = Config;

    fn config(value: &Value) -> Result<Config> {
        Config::from_value(value)
    }

    fn start(
        triggers: &Arc<Triggers>,
        row: &TriggerRow,
        config: Config,
    ) -> Result<Option<tokio::task::JoinHandle<()>>> {
        Ok(Some(tokio::spawn(run(
            triggers.clone(),
            row.clone(),
            config,
        ))))
    }
}

/// Runs one schedule until its trigger is deleted.
pub async fn run(triggers: Arc<Triggers>, row: TriggerRow, cfg: Config) {
    let Ok(schedule) = Schedule::parse(&cfg.schedule_expression) else {
        return;
    };
    let Ok(tz) = cfg.timezone() else { return };
    let fire_once = cfg.missed_fires.as_deref() == Some("FIRE_ONCE");
    let id = row.id.clone();
    loop {
        let last = match triggers.store.last_fire(&id) {
            Ok(last) => last,
            Err(e) => {
                triggers.set_status(&id, |s| s.last_error = Some(e.to_string()));
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let after = last.unwrap_or(row.created_ms);
        let Some(next) = schedule.next_after(after, row.created_ms, &tz) else {
            triggers.set_status(&id, |s| {
                s.state = "Finished".into();
                s.next_fire_ms = None;
            });
            return;
        };
        triggers.set_status(&id, |s| {
            s.state = "Scheduled".into();
            s.last_fire_ms = last;
            s.next_fire_ms = Some(next);
        });
        let now = wisp_core::time::now_ms();
        if next > now {
            tokio::time::sleep(Duration::from_millis((next - now) as u64)).await;
            continue;
        }
        let (fire_ms, event) = if now - next > triggers.schedule_grace_ms {
            // Missed while the server was down: record the latest missed fire, and run
            // it only if asked to.
            let latest = latest_missed(&schedule, next, row.created_ms, now, &tz);
            (
                latest,
                fire_once.then(|| event(&triggers, &row, &cfg, latest)),
            )
        } else {
            (next, Some(event(&triggers, &row, &cfg, next)))
        };
        match triggers
            .store
            .record_fire(&id, last, fire_ms, event.as_ref())
        {
            Ok(true) => {
                if event.is_some() {
                    triggers.engine.wake_async_queue();
                    triggers.set_status(&id, |s| s.fired += 1);
                }
            }
            Ok(false) => {
                // Another writer moved the schedule on, or the trigger is gone.
                let exists = triggers
                    .store
                    .list_triggers(Some(&row.function))
                    .map(|rows| rows.iter().any(|r| r.id == id));
                if matches!(exists, Ok(false)) {
                    return;
                }
            }
            Err(e) => {
                tracing::error!(trigger = %id, error = %e, "could not record a schedule fire");
                triggers.set_status(&id, |s| s.last_error = Some(e.to_string()));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
