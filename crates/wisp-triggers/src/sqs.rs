//! The `sqs` trigger: Lambda's event source mapping from a wisp queue to a function.
//!
//! At least once, with backpressure: a poller takes a concurrency slot *before* it
//! receives, so no more batches are in flight than `ScalingConfig.MaximumConcurrency`
//! and nothing piles up in memory. A batch's messages are deleted only after the function
//! succeeded for them (all of them, or — with `ReportBatchItemFailures` — all but the ones
//! it listed); the others become visible again after the queue's visibility timeout and,
//! past the queue's `maxReceiveCount`, move to its dead-letter queue.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use wisp_core::error::Result;
use wisp_core::Error;
use wisp_engine::{InvokeMode, Invoked};
use wisp_queue::{QueueService, Received};
use wisp_runtime::Outcome;
use wisp_store::TriggerRow;

use crate::Triggers;

pub const KIND: &str = "sqs";

/// A batch's event stays under Lambda's synchronous payload limit.
const BATCH_PAYLOAD_MAX_BYTES: usize = wisp_core::limits::SYNC_PAYLOAD_MAX_BYTES - 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Scaling {
    pub maximum_concurrency: u32,
}

/// The mapping's settings, as Lambda's CreateEventSourceMapping names them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Config {
    pub event_source_arn: String,
    #[serde(default = "default_batch")]
    pub batch_size: u32,
    #[serde(default)]
    pub maximum_batching_window_in_seconds: u32,
    #[serde(default)]
    pub scaling_config: Option<Scaling>,
    #[serde(default)]
    pub function_response_types: Vec<String>,
    #[serde(default = "default_enabled")]
    pub enabled: bool,
}

fn default_batch() -> u32 {
    10
}

fn default_enabled() -> bool {
    true
}

impl Config {
    pub fn from_value(v: &Value) -> Result<Config> {
        let cfg: Config = serde_json::from_value(v.clone())
            .map_err(|e| Error::invalid(format!("Invalid event source mapping: {e}")))?;
        if !cfg.event_source_arn.starts_with("arn:aws:sqs:") {
            return Err(Error::invalid(format!(
                "EventSourceArn '{}' is not a queue ARN (arn:aws:sqs:REGION:ACCOUNT:NAME).",
                cfg.event_source_arn.chars().take(200).collect::<String>()
            )));
        }
        if !(1..=10_000).contains(&cfg.batch_size) {
            return Err(Error::invalid("BatchSize must be between 1 and 10000."));
        }
        if cfg.maximum_batching_window_in_seconds > 300 {
            return Err(Error::invalid(
                "MaximumBatchingWindowInSeconds must be between 0 and 300.",
            ));
        }
        if cfg.batch_size > 10 && cfg.maximum_batching_window_in_seconds == 0 {
            return Err(Error::invalid(
                "Maximum batch window in seconds must be greater than 0 if maximum batch size is greater than 10",
            ));
        }
        if let Some(s) = &cfg.scaling_config {
            if !(2..=1000).contains(&s.maximum_concurrency) {
                return Err(Error::invalid(
                    "ScalingConfig.MaximumConcurrency must be between 2 and 1000.",
                ));
            }
        }
        for t in &cfg.function_response_types {
            if t != "ReportBatchItemFailures" {
                return Err(Error::invalid(format!(
                    "FunctionResponseTypes: '{t}' is not ReportBatchItemFailures."
                )));
            }
        }
        Ok(cfg)
    }

    fn concurrency(&self) -> usize {
        self.scaling_config
            .as_ref()
            .map_or(5, |s| s.maximum_concurrency as usize)
    }
}

/// The mapping as Lambda's API returns it.
pub fn mapping_json(row: &TriggerRow, cfg: &Config, region: &str) -> Value {
    let mut doc = json!({
        "UUID": row.id,
        "EventSourceArn": cfg.event_source_arn,
        "FunctionArn": wisp_core::name::function_arn(region, &row.function, row.qualifier.as_deref()),
        "BatchSize": cfg.batch_size,
        "MaximumBatchingWindowInSeconds": cfg.maximum_batching_window_in_seconds,
        "FunctionResponseTypes": cfg.function_response_types,
        "LastModified": row.created_ms as f64 / 1000.0,
        "State": if cfg.enabled { "Enabled" } else { "Disabled" },
        "StateTransitionReason": "USER_INITIATED",
    });
    if let Some(s) = &cfg.scaling_config {
        doc["ScalingConfig"] = json!({ "MaximumConcurrency": s.maximum_concurrency });
    }
    doc
}

/// Which messages the function reported as failed; `None` means the whole batch failed
/// (an unreadable response, or an identifier not in the batch, as Lambda treats them).
fn reported_failures(body: &[u8], ids: &HashSet<&str>) -> Option<HashSet<String>> {
    let doc: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            return if body.iter().all(u8::is_ascii_whitespace) {
                Some(HashSet::new())
            } else {
                None
            }
        }
    };
    let Some(list) = doc.get("batchItemFailures") else {
        return Some(HashSet::new());
    };
    if list.is_null() {
        return Some(HashSet::new());
    }
    let mut failed = HashSet::new();
    for item in list.as_array()? {
        let id = item.get("itemIdentifier")?.as_str()?;
        if !ids.contains(id) {
            return None;
        }
        failed.insert(id.to_string());
    }
    Some(failed)
}

/// Receives one batch: up to BatchSize messages, within the batching window.
async fn receive_batch(
    queues: &QueueService,
    queue: &str,
    cfg: &Config,
) -> std::result::Result<Vec<Received>, wisp_queue::QueueError> {
    let first_max = cfg.batch_size.min(10) as usize;
    let mut batch = queues
        .receive_wait(queue, first_max, None, Duration::from_secs(20))
        .await?;
    if batch.is_empty() || cfg.maximum_batching_window_in_seconds == 0 {
        return Ok(batch);
    }
    let deadline =
        Instant::now() + Duration::from_secs(cfg.maximum_batching_window_in_seconds.into());
    let mut size: usize = batch.iter().map(|m| m.body.len()).sum();
    while batch.len() < cfg.batch_size as usize && size < BATCH_PAYLOAD_MAX_BYTES / 2 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let want = (cfg.batch_size as usize - batch.len()).min(10);
        let more = queues
            .receive_wait(queue, want, None, left.min(Duration::from_secs(20)))
            .await?;
        size += more.iter().map(|m| m.body.len()).sum::<usize>();
        batch.extend(more);
    }
    Ok(batch)
}

async fn process(
    triggers: Arc<Triggers>,
    queues: Arc<QueueService>,
    row: TriggerRow,
    cfg: Config,
    queue: String,
    batch: Vec<Received>,
) {
    let records: Vec<Value> = batch
        .iter()
        .map(|m| queues.lambda_record(&queue, m))
        .collect();
    let payload = bytes::Bytes::from(json!({ "Records": records }).to_string());
    let target = match &row.qualifier {
        Some(q) => format!("{}:{q}", row.function),
        None => row.function.clone(),
    };
    let invoked = triggers
        .engine
        .invoke(
            &target,
            None,
            InvokeMode::RequestResponse,
            payload,
            None,
            None,
        )
        .await;
    let ids: HashSet<&str> = batch.iter().map(|m| m.message_id.as_str()).collect();
    let failed: Option<HashSet<String>> = match invoked {
        Ok(Invoked::Done(result)) => match result.outcome {
            Outcome::Success(body)
                if cfg
                    .function_response_types
                    .iter()
                    .any(|t| t == "ReportBatchItemFailures") =>
            {
                reported_failures(&body, &ids)
            }
            Outcome::Success(_) => Some(HashSet::new()),
            other => {
                let error = other.error_type().unwrap_or("error").to_string();
                triggers.set_status(&row.id, |s| s.last_error = Some(error));
                None
            }
        },
        Ok(_) => None,
        Err(e) => {
            triggers.set_status(&row.id, |s| s.last_error = Some(e.message.clone()));
            None
        }
    };
    let Some(failed) = failed else { return };
    let mut deleted = 0u64;
    for m in batch.iter().filter(|m| !failed.contains(&m.message_id)) {
        match queues.delete(&queue, &m.receipt_handle).await {
            Ok(_) => deleted += 1,
            Err(e) => {
                tracing::warn!(mapping = %row.id, error = %e, "could not delete a processed message")
            }
        }
    }
    triggers.set_status(&row.id, |s| s.fired += deleted);
}

/// The `sqs` kind (event source mappings).
pub struct Mappings;

impl crate::Source for Mappings {
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
        let queues = triggers
            .queues()
            .cloned()
            .ok_or_else(|| Error::invalid("this server has no queue service"))?;
        Ok(Some(tokio::spawn(run(
            triggers.clone(),
            queues,
            row.clone(),
            config,
        ))))
    }
}

/// Polls one mapping until it is removed.
pub async fn run(triggers: Arc<Triggers>, queues: Arc<QueueService>, row: TriggerRow, cfg: Config) {
    let id = row.id.clone();
    if !cfg.enabled {
        triggers.set_status(&id, |s| s.state = "Disabled".into());
        return;
    }
    let queue = loop {
        match queues.queue_name_from_arn(&cfg.event_source_arn).await {
            Ok(name) => break name,
            Err(e) => {
                triggers.set_status(&id, |s| {
                    s.state = "Waiting".into();
                    s.last_error = Some(e.to_string());
                });
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    triggers.set_status(&id, |s| {
        s.state = "Enabled".into();
        s.last_error = None;
    });
    let slots = Arc::new(Semaphore::new(cfg.concurrency()));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        match receive_batch(&queues, &queue, &cfg).await {
            Ok(batch) if batch.is_empty() => drop(permit),
            Ok(batch) => {
                let (t, q, r, c, name) = (
                    triggers.clone(),
                    queues.clone(),
                    row.clone(),
                    cfg.clone(),
                    queue.clone(),
                );
                tokio::spawn(async move {
                    process(t, q, r, c, name, batch).await;
                    drop(permit);
                });
            }
            Err(e) => {
                drop(permit);
                triggers.set_status(&id, |s| s.last_error = Some(e.to_string()));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_item_failures() {
        let ids: HashSet<&str> = ["a", "b"].into_iter().collect();
        let got = |body: &str| {
            reported_failures(body.as_bytes(), &ids).map(|s| {
                let mut v: Vec<_> = s.into_iter().collect();
                v.sort();
                v
            })
        };
        assert_eq!(
            got(r#"{"batchItemFailures": [{"itemIdentifier": "b"}]}"#),
            Some(vec!["b".to_string()])
        );
        assert_eq!(got(r#"{"batchItemFailures": []}"#), Some(vec![]));
        assert_eq!(got("null"), Some(vec![]));
        assert_eq!(got(""), Some(vec![]));
        assert_eq!(
            got(r#"{"batchItemFailures": [{"itemIdentifier": "zzz"}]}"#),
            None
        );
        assert_eq!(
            got(r#"{"batchItemFailures": [{"itemIdentifier": ""}]}"#),
            None
        );
        assert_eq!(got("not json"), None);
    }

    #[test]
    fn validates_like_lambda() {
        let ok = json!({"EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:q"});
        assert_eq!(Config::from_value(&ok).unwrap().batch_size, 10);
        for bad in [
            json!({"EventSourceArn": "arn:aws:sns:x"}),
            json!({"EventSourceArn": "arn:aws:sqs:us-east-1:0:q", "BatchSize": 0}),
            json!({"EventSourceArn": "arn:aws:sqs:us-east-1:0:q", "BatchSize": 100}),
            json!({"EventSourceArn": "arn:aws:sqs:us-east-1:0:q", "ScalingConfig": {"MaximumConcurrency": 1}}),
            json!({"EventSourceArn": "arn:aws:sqs:us-east-1:0:q", "FunctionResponseTypes": ["Other"]}),
            json!({"EventSourceArn": "arn:aws:sqs:us-east-1:0:q", "Colour": 1}),
        ] {
            assert!(Config::from_value(&bad).is_err(), "{bad}");
        }
    }
}
