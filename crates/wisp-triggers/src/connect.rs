//! Broker connectors: what every connector to an outside broker (Kafka, NATS JetStream,
//! RabbitMQ, Redis Streams, MQTT) shares, so that each broker's crate holds only what is
//! particular to its protocol.
//!
//! A connector is registered with [`crate::Triggers`] under its kind. Its configuration is
//! one JSON object: the delivery settings every kind shares ([`Delivery`]: batch size,
//! batching window, concurrency, retries, failure destination) are taken out of it here, and
//! the rest — connection, credentials, TLS, topic, group — is the connector's to check.
//!
//! The delivery contract, the same for every broker:
//! - A connector takes a slot ([`Ctx::slot`]) *before* it fetches a batch, so no more than
//!   `MaximumConcurrency` batches are in flight and nothing piles up in memory: while the
//!   function is saturated, consumption pauses.
//! - [`Ctx::deliver`] invokes the function with a batch, retrying with exponential backoff up
//!   to `MaximumRetryAttempts`. Only when it returns does the connector acknowledge (commit
//!   the offset, ack the message, XACK, PUBACK): success and "sent to the failure destination"
//!   both end a message's life; a crash before that redelivers it (at least once).
//! - A batch whose retries are exhausted goes to the failure destination: a wisp queue
//!   (`OnFailure: "arn:aws:sqs:..."`), handled here, or a destination of the broker itself
//!   (a topic, subject, queue or stream name), which the connector publishes
//!   [`Ctx::failure_record`] to. With no destination the batch is discarded and counted, as
//!   Lambda does.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wisp_core::error::Result;
use wisp_core::Error;
use wisp_engine::{InvokeMode, Invoked};
use wisp_runtime::Outcome;
use wisp_store::TriggerRow;

use crate::{TriggerStatus, Triggers};

/// A batch's event stays under Lambda's synchronous payload limit, with room for the shape.
pub const BATCH_PAYLOAD_MAX_BYTES: usize = wisp_core::limits::SYNC_PAYLOAD_MAX_BYTES - 64 * 1024;

/// One broker's connector.
pub trait Connector: Send + Sync + 'static {
    /// The trigger kind this connector runs (`TriggerRow::kind`, the API's `Kind`).
    fn kind(&self) -> &'static str;

    /// Checks the broker's part of a configuration (the [`Delivery`] keys are already taken
    /// out) strictly — unknown fields are errors — and returns it normalised for storing.
    fn validate(&self, config: &Value) -> Result<Value>;

    /// The top-level configuration fields that hold secrets (passwords, tokens, keys):
    /// they are stored, but never returned by the API nor written to a log.
    fn secret_fields(&self) -> &'static [&'static str];

    /// Runs one trigger until its task is aborted (the trigger was deleted or changed).
    /// `config` is what [`Connector::validate`] returned. The future must reconnect with
    /// backoff on its own when the broker goes away, reporting it through [`Ctx::status`].
    /// Work it spawns must be owned by it (a `JoinSet`), so that aborting it stops them.
    fn run(&self, ctx: Ctx, config: Value) -> BoxFuture<'static, ()>;
}

/// The delivery settings every connector shares, with Lambda's event source mapping names.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Delivery {
    /// Records per invocation, 1-10000 (default 100).
    pub batch_size: u32,
    /// How long to gather a batch before invoking with fewer than `BatchSize`, 0-300 s.
    pub maximum_batching_window_in_seconds: u32,
    /// Batches in flight at once, 1-1000 (default 1: one batch at a time, which keeps the
    /// broker's order where it promises one).
    pub maximum_concurrency: u32,
    /// Retries of a failed batch before it goes to the failure destination, 0-10000
    /// (default 3).
    pub maximum_retry_attempts: u32,
    /// The first retry's delay in milliseconds, doubled each retry up to 30 s (default 500).
    pub retry_base_delay_ms: u64,
    /// Where a batch goes when its retries are exhausted: a wisp queue ARN, or a name on the
    /// broker itself (topic, subject, queue, stream) that the connector publishes to.
    pub on_failure: Option<String>,
    /// A disabled trigger is kept but does not consume.
    pub enabled: bool,
    /// What Lambda's event source mapping API was given that only it shows back (the
    /// access configuration, with an inline secret hidden); kept, not read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_source_mapping: Option<Value>,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery {
            batch_size: 100,
            maximum_batching_window_in_seconds: 0,
            maximum_concurrency: 1,
            maximum_retry_attempts: 3,
            retry_base_delay_ms: 500,
            on_failure: None,
            enabled: true,
            event_source_mapping: None,
        }
    }
}

/// The longest wait between two attempts of a batch, and between reconnects.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

const DELIVERY_KEYS: [&str; 8] = [
    "BatchSize",
    "MaximumBatchingWindowInSeconds",
    "MaximumConcurrency",
    "MaximumRetryAttempts",
    "RetryBaseDelayMs",
    "OnFailure",
    "Enabled",
    "EventSourceMapping",
];

impl Delivery {
    /// Takes the delivery keys out of a configuration object and checks them; returns them
    /// with the rest of the object (the broker's part).
    pub fn split(config: &Value) -> Result<(Delivery, Value)> {
        let Some(obj) = config.as_object() else {
            return Err(Error::invalid("A trigger's Config must be a JSON object."));
        };
        let (mut mine, mut rest) = (Map::new(), Map::new());
        for (k, v) in obj {
            if DELIVERY_KEYS.contains(&k.as_str()) {
                mine.insert(k.clone(), v.clone());
            } else {
                rest.insert(k.clone(), v.clone());
            }
        }
        let mut d = serde_json::to_value(Delivery::default()).expect("serialisable");
        for (k, v) in mine {
            d[k] = v;
        }
        let d: Delivery = serde_json::from_value(d)
            .map_err(|e| Error::invalid(format!("Invalid trigger configuration: {e}")))?;
        d.check()?;
        Ok((d, Value::Object(rest)))
    }

    fn check(&self) -> Result<()> {
        if !(1..=10_000).contains(&self.batch_size) {
            return Err(Error::invalid("BatchSize must be between 1 and 10000."));
        }
        if self.maximum_batching_window_in_seconds > 300 {
            return Err(Error::invalid(
                "MaximumBatchingWindowInSeconds must be between 0 and 300.",
            ));
        }
        if !(1..=1000).contains(&self.maximum_concurrency) {
            return Err(Error::invalid(
                "MaximumConcurrency must be between 1 and 1000.",
            ));
        }
        if self.maximum_retry_attempts > 10_000 {
            return Err(Error::invalid(
                "MaximumRetryAttempts must be between 0 and 10000.",
            ));
        }
        if !(1..=60_000).contains(&self.retry_base_delay_ms) {
            return Err(Error::invalid(
                "RetryBaseDelayMs must be between 1 and 60000.",
            ));
        }
        if let Some(dest) = &self.on_failure {
            if dest.is_empty() || dest.len() > 1024 || dest.chars().any(char::is_control) {
                return Err(Error::invalid(
                    "OnFailure must be a wisp queue ARN or a destination name on the broker (1-1024 printable characters).",
                ));
            }
        }
        Ok(())
    }

    /// The batching window.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.maximum_batching_window_in_seconds.into())
    }

    /// The failure destination on the broker, if it is not a wisp queue.
    pub fn broker_failure_destination(&self) -> Option<&str> {
        self.on_failure
            .as_deref()
            .filter(|d| !d.starts_with("arn:aws:sqs:"))
    }

    fn merged(&self, rest: Value) -> Value {
        let mut doc = rest;
        if let (Some(obj), Value::Object(d)) = (
            doc.as_object_mut(),
            serde_json::to_value(self).expect("serialisable"),
        ) {
            for (k, v) in d {
                if !v.is_null() {
                    obj.insert(k, v);
                }
            }
        }
        doc
    }
}

/// Checks a whole configuration through a connector and returns it normalised.
pub(crate) fn normalise(connector: &dyn Connector, config: &Value) -> Result<Value> {
    let (delivery, rest) = Delivery::split(config)?;
    let rest = connector.validate(&rest)?;
    Ok(delivery.merged(rest))
}

/// A configuration as the API shows it: secrets replaced by `"******"`.
pub(crate) fn redacted(connector: &dyn Connector, config: &Value) -> Value {
    let mut doc = config.clone();
    if let Some(obj) = doc.as_object_mut() {
        for field in connector.secret_fields() {
            if let Some(v) = obj.get_mut(*field) {
                if !v.is_null() {
                    *v = Value::String("******".into());
                }
            }
        }
    }
    doc
}

/// Exponential backoff with jitter, for retries and reconnects.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(base: Duration) -> Self {
        Backoff { base, next: base }
    }

    /// The next delay (up to [`MAX_BACKOFF`], with up to 25% jitter), doubling the one after.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next.min(MAX_BACKOFF);
        self.next = (self.next * 2).min(MAX_BACKOFF);
        let jitter = d.as_millis() as u64 / 4;
        let extra = if jitter == 0 {
            0
        } else {
            uuid::Uuid::new_v4().as_u128() as u64 % jitter
        };
        d + Duration::from_millis(extra)
    }

    /// Sleeps for the next delay.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.next_delay()).await;
    }

    /// Starts over (after a success).
    pub fn reset(&mut self) {
        self.next = self.base;
    }
}

/// How a batch's delivery ended. Either way the connector may now acknowledge it.
#[derive(Debug, Clone, PartialEq)]
pub enum Delivered {
    /// The function succeeded; its result.
    Ok(bytes::Bytes),
    /// Retries were exhausted and the batch went to the wisp queue named by `OnFailure`.
    SentToQueue,
    /// Retries were exhausted; the connector must publish [`Ctx::failure_record`] to this
    /// destination on its broker (and acknowledge only once that publish succeeded).
    ToBrokerDestination { destination: String, record: Value },
    /// Retries were exhausted and there is no failure destination: the batch is dropped
    /// (counted in the status), as Lambda does.
    Discarded,
}

/// What a running connector is given: its trigger, its settings and the way to the
/// function.
#[derive(Clone)]
pub struct Ctx {
    triggers: Arc<Triggers>,
    row: Arc<TriggerRow>,
    delivery: Arc<Delivery>,
    slots: Arc<Semaphore>,
}

impl Ctx {
    pub(crate) fn new(triggers: Arc<Triggers>, row: &TriggerRow, delivery: Delivery) -> Ctx {
        Ctx {
            slots: Arc::new(Semaphore::new(delivery.maximum_concurrency as usize)),
            triggers,
            row: Arc::new(row.clone()),
            delivery: Arc::new(delivery),
        }
    }

    /// The trigger's id (for logs: never log the configuration, it holds credentials).
    pub fn id(&self) -> &str {
        &self.row.id
    }

    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// The function's ARN, for event shapes that carry it.
    pub fn function_arn(&self) -> String {
        wisp_core::name::function_arn(
            &self.triggers.engine().config().region,
            &self.row.function,
            self.row.qualifier.as_deref(),
        )
    }

    /// The region events are stamped with.
    pub fn region(&self) -> String {
        self.triggers.engine().config().region.clone()
    }

    /// Waits for one of the trigger's `MaximumConcurrency` slots. Take it before fetching a
    /// batch and hold it until the batch is acknowledged.
    pub async fn slot(&self) -> OwnedSemaphorePermit {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// Updates what `wisp triggers status` shows.
    pub fn status(&self, f: impl FnOnce(&mut TriggerStatus)) {
        self.triggers.set_status(&self.row.id, f);
    }

    /// Reports a connection failure (the message must not hold credentials).
    pub fn connection_failed(&self, error: &str) {
        tracing::warn!(trigger = %self.row.id, kind = %self.row.kind, %error, "broker connection failed; retrying");
        self.status(|s| {
            s.state = "Reconnecting".into();
            s.connected = Some(false);
            s.last_error = Some(error.chars().take(500).collect());
        });
    }

    /// Reports a (re)established connection.
    pub fn connected(&self) {
        self.status(|s| {
            s.state = "Connected".into();
            s.connected = Some(true);
        });
    }

    /// One invocation of the function with `event`, without retries.
    pub async fn invoke_once(&self, event: &Value) -> std::result::Result<bytes::Bytes, String> {
        let target = match &self.row.qualifier {
            Some(q) => format!("{}:{q}", self.row.function),
            None => self.row.function.clone(),
        };
        let payload = bytes::Bytes::from(event.to_string());
        match self
            .triggers
            .engine()
            .invoke(
                &target,
                None,
                InvokeMode::RequestResponse,
                payload,
                None,
                None,
            )
            .await
        {
            Ok(Invoked::Done(result)) => match result.outcome {
                Outcome::Success(body) => Ok(body),
                Outcome::FunctionError { error_type, body } => Err(format!(
                    "{error_type}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(1000)])
                )),
                Outcome::Failed {
                    error_type,
                    message,
                    ..
                } => Err(format!("{error_type}: {message}")),
            },
            Ok(_) => Err("the invocation did not run synchronously".into()),
            Err(e) => Err(format!("{}: {}", e.kind.as_str(), e.message)),
        }
    }

    /// Delivers a batch: invokes, retries with backoff up to `MaximumRetryAttempts`, then
    /// hands the batch to its failure destination. When this returns, the connector may
    /// acknowledge the batch (for [`Delivered::ToBrokerDestination`], after publishing).
    pub async fn deliver(&self, event: &Value) -> Delivered {
        let mut backoff = Backoff::new(Duration::from_millis(self.delivery.retry_base_delay_ms));
        let mut attempts = 0u32;
        let error = loop {
            attempts += 1;
            match self.invoke_once(event).await {
                Ok(body) => {
                    self.status(|s| {
                        s.fired += 1;
                        s.last_fire_ms = Some(wisp_core::time::now_ms());
                    });
                    return Delivered::Ok(body);
                }
                Err(error) => {
                    self.status(|s| s.last_error = Some(error.chars().take(500).collect()));
                    if attempts > self.delivery.maximum_retry_attempts {
                        break error;
                    }
                    self.status(|s| s.retried += 1);
                    backoff.wait().await;
                }
            }
        };
        let record = self.failure_record(event, &error, attempts);
        match self.delivery.on_failure.clone() {
            Some(dest) if dest.starts_with("arn:aws:sqs:") => {
                let mut backoff = Backoff::new(Duration::from_millis(500));
                loop {
                    match self.send_to_queue(&dest, &record).await {
                        Ok(()) => {
                            self.status(|s| s.dead_lettered += 1);
                            return Delivered::SentToQueue;
                        }
                        // The batch is not acknowledged until it is somewhere: keep trying
                        // (the status shows why).
                        Err(e) => {
                            self.status(|s| {
                                s.last_error = Some(format!("failure destination {dest}: {e}"))
                            });
                            backoff.wait().await;
                        }
                    }
                }
            }
            Some(destination) => Delivered::ToBrokerDestination {
                destination,
                record,
            },
            None => {
                tracing::warn!(trigger = %self.row.id, attempts, "batch discarded after its retries: no failure destination");
                self.status(|s| s.discarded += 1);
                Delivered::Discarded
            }
        }
    }

    /// Counts a batch the connector published to its broker failure destination.
    pub fn dead_lettered(&self) {
        self.status(|s| s.dead_lettered += 1);
    }

    /// The document a failed batch is sent to its failure destination as: Lambda's
    /// invocation record (`requestContext`, `responseContext`) with the batch itself as
    /// `requestPayload`, so that nothing of the messages is lost.
    pub fn failure_record(&self, event: &Value, error: &str, attempts: u32) -> Value {
        json!({
            "version": "1.0",
            "timestamp": wisp_core::time::lambda_timestamp(wisp_core::time::now_ms()),
            "requestContext": {
                "requestId": uuid::Uuid::new_v4().to_string(),
                "functionArn": self.function_arn(),
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": attempts,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": self.row.qualifier.clone().unwrap_or_else(|| "$LATEST".into()),
                "functionError": "Unhandled",
            },
            "errorMessage": error.chars().take(4000).collect::<String>(),
            "triggerId": self.row.id,
            "requestPayload": event,
        })
    }

    async fn send_to_queue(&self, arn: &str, record: &Value) -> std::result::Result<(), String> {
        let queues = self
            .triggers
            .queues()
            .ok_or_else(|| "this server has no queue service".to_string())?;
        let name = queues
            .queue_name_from_arn(arn)
            .await
            .map_err(|e| e.to_string())?;
        queues
            .send(&name, &record.to_string(), Default::default())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Gathers a batch: waits for the first item, then takes more until `max` items, `budget`
/// bytes or the batching window is over. `next` yields one item and its size in bytes
/// (`Ok(None)` when none is ready within the time it is given — given `Some(0)`, it must
/// not wait: past the window the batch takes only what is ready now); an error ends the
/// batch early and is returned with what was gathered. The last item may take the batch
/// past `budget`: leave room for one message.
pub async fn gather<T, F, Fut, E>(
    max: usize,
    window: Duration,
    budget: usize,
    mut next: F,
) -> (Vec<T>, Option<E>)
where
    F: FnMut(Option<Duration>) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<Option<(T, usize)>, E>>,
{
    let mut items = Vec::new();
    let mut bytes = 0usize;
    // The first item: wait as long as it takes.
    match next(None).await {
        Ok(Some((item, size))) => {
            bytes += size;
            items.push(item);
        }
        Ok(None) => return (items, None),
        Err(e) => return (items, Some(e)),
    }
    let deadline = tokio::time::Instant::now() + window;
    while items.len() < max && bytes < budget {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match next(Some(left)).await {
            Ok(Some((item, size))) => {
                bytes += size;
                items.push(item);
            }
            Ok(None) => {
                if left.is_zero() {
                    break;
                }
            }
            Err(e) => return (items, Some(e)),
        }
    }
    (items, None)
}

/// TLS to a broker, as connectors whose client takes a CA file and a client certificate
/// configure it (`Tls` in their config).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Tls {
    #[serde(default)]
    pub enabled: bool,
    /// A PEM file of CA certificates to trust besides the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// A PEM client certificate (chain) and its PKCS#8 PEM key, for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<String>,
}

impl Tls {
    /// Checks TLS settings and returns them normalised: `scheme_tls` (the URL's scheme asks
    /// for TLS) turns TLS on; named files must exist; a certificate needs its key; `None`
    /// when nothing is set. `how` tells the user how to turn TLS on, for the error.
    pub fn normalise(tls: Option<Tls>, scheme_tls: bool, how: &str) -> Result<Option<Tls>> {
        let mut tls = tls.unwrap_or_default();
        if scheme_tls {
            tls.enabled = true;
        }
        for (what, file) in [
            ("Tls.CaFile", &tls.ca_file),
            ("Tls.ClientCertFile", &tls.client_cert_file),
            ("Tls.ClientKeyFile", &tls.client_key_file),
        ] {
            if let Some(f) = file {
                printable(what, f, 4096)?;
                if !std::path::Path::new(f).is_file() {
                    return Err(Error::invalid(format!("{what}: no such file: {f}")));
                }
            }
        }
        if tls.client_cert_file.is_some() != tls.client_key_file.is_some() {
            return Err(Error::invalid(
                "Tls.ClientCertFile and Tls.ClientKeyFile go together.",
            ));
        }
        if !tls.enabled && (tls.ca_file.is_some() || tls.client_cert_file.is_some()) {
            return Err(Error::invalid(format!(
                "Tls files are given but TLS is off: {how}."
            )));
        }
        Ok((tls != Tls::default()).then_some(tls))
    }
}

/// Checks that a configuration string is 1-`max` bytes of printable characters.
pub fn printable(what: &str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() || s.len() > max || s.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{what} must be 1-{max} printable characters."
        )));
    }
    Ok(())
}

/// Base64 of a message's bytes, as the event shapes carry payloads.
pub fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_delivery_keys_and_checks_them() {
        let (d, rest) = Delivery::split(&json!({
            "BatchSize": 10, "OnFailure": "dlq", "Subject": "orders.>"
        }))
        .unwrap();
        assert_eq!(d.batch_size, 10);
        assert_eq!(d.maximum_retry_attempts, 3);
        assert_eq!(d.broker_failure_destination(), Some("dlq"));
        assert_eq!(rest, json!({"Subject": "orders.>"}));
        for bad in [
            json!({"BatchSize": 0}),
            json!({"BatchSize": "ten"}),
            json!({"MaximumConcurrency": 0}),
            json!({"MaximumRetryAttempts": 10_001}),
            json!({"MaximumBatchingWindowInSeconds": 301}),
            json!({"OnFailure": ""}),
            json!({"OnFailure": "a\nb"}),
            json!([1]),
        ] {
            assert!(Delivery::split(&bad).is_err(), "{bad}");
        }
        let (d, _) =
            Delivery::split(&json!({"OnFailure": "arn:aws:sqs:us-east-1:000000000000:q"})).unwrap();
        assert_eq!(d.broker_failure_destination(), None);
    }

    #[test]
    fn backoff_doubles_to_a_cap() {
        let mut b = Backoff::new(Duration::from_millis(100));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(125));
        let second = b.next_delay();
        assert!(second >= Duration::from_millis(200) && second <= Duration::from_millis(250));
        for _ in 0..20 {
            assert!(b.next_delay() <= MAX_BACKOFF + MAX_BACKOFF / 4);
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(125));
    }

    #[tokio::test]
    async fn gathers_up_to_the_batch_size() {
        let mut n = 0;
        let (items, err) = gather::<u32, _, _, ()>(3, Duration::ZERO, 1 << 20, |_| {
            n += 1;
            let v = n;
            async move { Ok(Some((v, 1))) }
        })
        .await;
        assert_eq!(items, vec![1, 2, 3]);
        assert!(err.is_none());
        // Nothing more ready and no window: the batch is what is there.
        let mut left = vec![1u32];
        let (items, _) = gather::<u32, _, _, ()>(10, Duration::ZERO, 1 << 20, |_| {
            let v = left.pop();
            async move { Ok(v.map(|v| (v, 1))) }
        })
        .await;
        assert_eq!(items, vec![1]);
    }
}
