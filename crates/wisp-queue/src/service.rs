//! [`QueueService`]: the queue store behind an async API, with long polling (woken by a
//! per-queue [`Notify`], never by polling the database) and the retention sweeper.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::attributes::{self, QueueSettings};
use crate::error::{clip, QueueError, Result};
use crate::limits::{
    ACCOUNT_ID, DELAY_MAX_S, MESSAGE_MAX_BYTES, QUEUES_MAX, QUEUE_MESSAGES_MAX, QUEUE_TAGS_MAX,
    RECEIVE_MAX_MESSAGES, RECEIVE_WAIT_MAX_S, VISIBILITY_TIMEOUT_MAX_S,
};
use crate::message::{self, MessageAttributes};
use crate::names;
use crate::store::{
    Counts, Created, NewMessage, QueueRow, QueueStore, ReceiveOutcome, Received, Sent,
};

/// How a [`QueueService`] runs.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// The region in queue ARNs (`arn:aws:sqs:REGION:000000000000:NAME`).
    pub region: String,
    pub max_queues: usize,
    pub max_messages_per_queue: u64,
    /// How often messages past their queue's retention period are deleted.
    pub sweep_interval: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            region: "us-east-1".into(),
            max_queues: QUEUES_MAX,
            max_messages_per_queue: QUEUE_MESSAGES_MAX,
            sweep_interval: Duration::from_secs(60),
        }
    }
}

/// The queues of one wisp. Cheap to share (`Arc`); every method is safe to call
/// concurrently. See the crate documentation for how the rest of wisp uses it.
pub struct QueueService {
    store: Arc<QueueStore>,
    config: QueueConfig,
    /// One `Notify` per queue someone has waited on; woken by sends to that queue.
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
}

/// Unix epoch milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    if tags.len() > QUEUE_TAGS_MAX {
        return Err(QueueError::invalid(format!(
            "Too many tags: {} (a queue has at most {QUEUE_TAGS_MAX}).",
            tags.len()
        )));
    }
    for (k, v) in tags {
        if k.is_empty() || k.chars().count() > 128 || v.chars().count() > 256 {
            return Err(QueueError::invalid(format!(
                "Invalid tag {:?}: a key has 1 to 128 characters, a value at most 256.",
                clip(k)
            )));
        }
    }
    Ok(())
}

impl QueueService {
    /// Opens the queue database at `path` (created if missing). Does not start the
    /// retention sweeper: see [`QueueService::start`].
    pub fn open(path: &Path, config: QueueConfig) -> Result<Arc<Self>> {
        let store = QueueStore::open(path)?;
        Ok(Arc::new(QueueService {
            store: Arc::new(store),
            config,
            waiters: Mutex::new(HashMap::new()),
        }))
    }

    /// [`QueueService::open`], then [`QueueService::spawn_sweeper`]. Call inside a Tokio
    /// runtime.
    pub fn start(path: &Path, config: QueueConfig) -> Result<Arc<Self>> {
        let service = Self::open(path, config)?;
        service.spawn_sweeper();
        Ok(service)
    }

    /// Starts the task that deletes messages past their queue's retention period every
    /// `sweep_interval`. It ends by itself once the service is dropped.
    pub fn spawn_sweeper(self: &Arc<Self>) -> JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let every = self.config.sweep_interval.max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(service) = weak.upgrade() else {
                    return;
                };
                let store = service.store.clone();
                drop(service);
                match tokio::task::spawn_blocking(move || store.sweep_expired(now_ms())).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => tracing::debug!(messages = n, "deleted messages past retention"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "retention sweep failed"),
                    Err(e) => tracing::warn!(error = %e, "retention sweep task failed"),
                }
            }
        })
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    pub fn region(&self) -> &str {
        &self.config.region
    }

    /// `arn:aws:sqs:REGION:000000000000:NAME` (whether or not the queue exists).
    pub fn queue_arn(&self, name: &str) -> String {
        names::queue_arn(&self.config.region, name)
    }

    /// The name of the queue an ARN names; `QueueDoesNotExist` if there is no such queue.
    pub async fn queue_name_from_arn(&self, arn: &str) -> Result<String> {
        let name = names::name_from_arn(&self.config.region, arn)?;
        self.queue(&name).await?;
        Ok(name)
    }

    /// The handle woken (`notify_waiters`) whenever messages are sent to `queue`, a
    /// message's visibility is set to 0, or messages are dead-lettered into it. Enable a
    /// `notified()` future before checking the queue, or a send in between is missed.
    /// Visibility timeouts and delays running out wake nobody: [`QueueService::receive_wait`]
    /// handles those with a timer.
    pub fn notifier(&self, queue: &str) -> Arc<Notify> {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        waiters.entry(queue.to_string()).or_default().clone()
    }

    fn wake(&self, queue: &str) {
        let waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = waiters.get(queue) {
            n.notify_waiters();
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&QueueStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| QueueError::internal(format!("queue task failed: {e}")))?
    }

    // ------------------------------------------------------------------ queues

    /// Creates a queue with the given attributes (strings, as SQS takes them) and tags.
    /// Idempotent when a queue of that name exists with the same values for the given
    /// attributes; `QueueNameExists` otherwise.
    pub async fn create_queue(
        &self,
        name: &str,
        attributes: &BTreeMap<String, String>,
        tags: BTreeMap<String, String>,
    ) -> Result<()> {
        names::validate_queue_name(name)?;
        check_tags(&tags)?;
        let region = self.config.region.clone();
        let settings = QueueSettings::default().apply(&region, attributes)?;
        let (owned, attributes) = (name.to_string(), attributes.clone());
        let (max_queues, now) = (self.config.max_queues, now_ms());
        let created = self
            .blocking(move |s| {
                s.create_queue(
                    &owned,
                    &settings,
                    &tags,
                    |existing| existing.agrees_with(&region, &attributes),
                    max_queues,
                    now,
                )
            })
            .await?;
        if created == Created::New {
            tracing::info!(queue = name, "queue created");
        }
        Ok(())
    }

    pub async fn queue(&self, name: &str) -> Result<QueueRow> {
        let name = name.to_string();
        self.blocking(move |s| s.queue(&name)).await
    }

    /// Queue names starting with `prefix`, after `after`, in name order.
    pub async fn list_queues(
        &self,
        prefix: &str,
        after: Option<String>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let prefix = prefix.to_string();
        self.blocking(move |s| s.list_queues(&prefix, after.as_deref(), limit))
            .await
    }

    pub async fn dead_letter_sources(&self, name: &str) -> Result<Vec<String>> {
        let name = name.to_string();
        self.blocking(move |s| s.dead_letter_sources(&name)).await
    }

    /// The attributes GetQueueAttributes returns for `wanted` (`All` for every one).
    pub async fn get_attributes(
        &self,
        name: &str,
        wanted: &[String],
    ) -> Result<BTreeMap<String, String>> {
        for w in wanted {
            attributes::check_readable(w)?;
        }
        let queue = self.queue(name).await?;
        let all = wanted.iter().any(|w| w == "All");
        let wants = |n: &str| all || wanted.iter().any(|w| w == n);
        let counts = if [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        .iter()
        .any(|n| wants(n))
        {
            self.counts(name).await?
        } else {
            Counts::default()
        };
        let mut out = BTreeMap::new();
        for &n in attributes::READABLE {
            if !wants(n) {
                continue;
            }
            let value = match n {
                "ApproximateNumberOfMessages" => Some(counts.visible.to_string()),
                "ApproximateNumberOfMessagesNotVisible" => Some(counts.not_visible.to_string()),
                "ApproximateNumberOfMessagesDelayed" => Some(counts.delayed.to_string()),
                "CreatedTimestamp" => Some((queue.created_ms / 1000).to_string()),
                "LastModifiedTimestamp" => Some((queue.modified_ms / 1000).to_string()),
                "QueueArn" => Some(self.queue_arn(name)),
                _ => queue.settings.get(&self.config.region, n),
            };
            if let Some(v) = value {
                out.insert(n.to_string(), v);
            }
        }
        Ok(out)
    }

    /// Changes a queue's attributes; all or nothing.
    pub async fn set_attributes(
        &self,
        name: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<()> {
        let region = self.config.region.clone();
        let (name, attributes, now) = (name.to_string(), attributes.clone(), now_ms());
        self.blocking(move |s| {
            s.update_settings(&name, |current| current.apply(&region, &attributes), now)
        })
        .await
    }

    pub async fn counts(&self, name: &str) -> Result<Counts> {
        let name = name.to_string();
        self.blocking(move |s| s.counts(&name, now_ms())).await
    }

    /// Deletes every message of a queue; returns how many.
    pub async fn purge(&self, name: &str) -> Result<u64> {
        let name = name.to_string();
        self.blocking(move |s| s.purge(&name)).await
    }

    /// Deletes a queue and its messages. Long polls on it end.
    pub async fn delete_queue(&self, name: &str) -> Result<()> {
        let owned = name.to_string();
        self.blocking(move |s| s.delete_queue(&owned)).await?;
        let waiter = {
            let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
            waiters.remove(name)
        };
        if let Some(n) = waiter {
            n.notify_waiters();
        }
        Ok(())
    }

    pub async fn tag_queue(&self, name: &str, tags: BTreeMap<String, String>) -> Result<()> {
        let name = name.to_string();
        self.blocking(move |s| {
            s.update_tags(&name, |current| {
                current.extend(tags);
                check_tags(current)
            })
        })
        .await
    }

    pub async fn untag_queue(&self, name: &str, keys: Vec<String>) -> Result<()> {
        let name = name.to_string();
        self.blocking(move |s| {
            s.update_tags(&name, |current| {
                for k in &keys {
                    current.remove(k);
                }
                Ok(())
            })
        })
        .await
    }

    // ------------------------------------------------------------------ messages

    /// Checks a message before it is sent: body, attributes, delay, trace header, size.
    pub fn check_message(m: &NewMessage) -> Result<()> {
        message::check_body(&m.body)?;
        message::check_attributes(&m.attributes)?;
        if let Some(d) = m.delay_s {
            if d > DELAY_MAX_S {
                return Err(QueueError::invalid(format!(
                    "Value {d} for parameter DelaySeconds is invalid. Reason: must be from 0 to {DELAY_MAX_S} seconds."
                )));
            }
        }
        if let Some(t) = &m.trace_header {
            if t.is_empty() || t.len() > 8192 || !t.chars().all(message::allowed_char) {
                return Err(QueueError::invalid(
                    "The AWSTraceHeader system attribute must be a non-empty string of at most 8192 bytes.",
                ));
            }
        }
        let size = message::message_size(&m.body, &m.attributes);
        if size > MESSAGE_MAX_BYTES {
            return Err(QueueError::invalid(format!(
                "One or more parameters are invalid. Reason: Message must be shorter than {MESSAGE_MAX_BYTES} bytes (this one is {size} bytes: body plus message attributes)."
            )));
        }
        Ok(())
    }

    /// Sends checked messages (see [`QueueService::check_message`]) in one transaction;
    /// returns after the commit, one result per message.
    pub async fn send_messages(
        &self,
        queue: &str,
        messages: Vec<NewMessage>,
    ) -> Result<Vec<Result<Sent>>> {
        let owned = queue.to_string();
        let max = self.config.max_messages_per_queue;
        let out = self
            .blocking(move |s| s.send(&owned, &messages, max, now_ms()))
            .await?;
        if out.iter().any(|r| r.is_ok()) {
            self.wake(queue);
        }
        Ok(out)
    }

    /// Sends one message with the given message attributes; returns its id once stored.
    pub async fn send(
        &self,
        queue: &str,
        body: &str,
        attributes: MessageAttributes,
    ) -> Result<String> {
        let m = NewMessage {
            body: body.to_string(),
            attributes,
            trace_header: None,
            delay_s: None,
        };
        Self::check_message(&m)?;
        let mut out = self.send_messages(queue, vec![m]).await?;
        out.pop()
            .unwrap_or_else(|| Err(QueueError::internal("send returned nothing")))
            .map(|sent| sent.message_id)
    }

    fn check_receive(max: usize, visibility_timeout_s: Option<u32>) -> Result<()> {
        if max == 0 || max > RECEIVE_MAX_MESSAGES as usize {
            return Err(QueueError::invalid(format!(
                "Value {max} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and {RECEIVE_MAX_MESSAGES}, if provided."
            )));
        }
        if let Some(v) = visibility_timeout_s {
            if v > VISIBILITY_TIMEOUT_MAX_S {
                return Err(QueueError::invalid(format!(
                    "Value {v} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and {VISIBILITY_TIMEOUT_MAX_S}, if provided."
                )));
            }
        }
        Ok(())
    }

    /// Receives up to `max` (1 to 10) messages now, hiding them for `visibility_timeout_s`
    /// (the queue's `VisibilityTimeout` when `None`). Empty when none is visible.
    pub async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility_timeout_s: Option<u32>,
    ) -> Result<Vec<Received>> {
        Ok(self
            .receive_outcome(queue, max, visibility_timeout_s)
            .await?
            .messages)
    }

    async fn receive_outcome(
        &self,
        queue: &str,
        max: usize,
        visibility_timeout_s: Option<u32>,
    ) -> Result<ReceiveOutcome> {
        Self::check_receive(max, visibility_timeout_s)?;
        let owned = queue.to_string();
        let outcome = self
            .blocking(move |s| s.receive(&owned, max, visibility_timeout_s, now_ms()))
            .await?;
        if let Some((dlq, n)) = &outcome.moved_to {
            tracing::info!(queue, dead_letter_queue = %dlq, messages = n, "moved messages past maxReceiveCount to the dead-letter queue");
            self.wake(dlq);
        }
        Ok(outcome)
    }

    /// [`QueueService::receive`], waiting up to `wait` (at most 20 s) for a message: woken
    /// by a send, or by a timer when a hidden or delayed message becomes visible.
    pub async fn receive_wait(
        &self,
        queue: &str,
        max: usize,
        visibility_timeout_s: Option<u32>,
        wait: Duration,
    ) -> Result<Vec<Received>> {
        if wait > Duration::from_secs(RECEIVE_WAIT_MAX_S as u64) {
            return Err(QueueError::invalid(format!(
                "Value {} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= {RECEIVE_WAIT_MAX_S}, if provided.",
                wait.as_secs()
            )));
        }
        let deadline = Instant::now() + wait;
        // The first try also checks that the queue exists before a waiter is registered.
        let first = self.receive(queue, max, visibility_timeout_s).await?;
        if !first.is_empty() || wait.is_zero() {
            return Ok(first);
        }
        let notify = self.notifier(queue);
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            // Registered before looking, so a send between the look and the wait wakes us.
            notified.as_mut().enable();
            let got = self
                .receive_outcome(queue, max, visibility_timeout_s)
                .await?;
            if !got.messages.is_empty() {
                return Ok(got.messages);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            if got.more_ready {
                continue;
            }
            let owned = queue.to_string();
            let at_ms = now_ms();
            let next = self
                .blocking(move |s| s.next_visible_ms(&owned, at_ms))
                .await?;
            let wake_at = match next {
                Some(ms) => deadline.min(now + Duration::from_millis((ms - at_ms).max(1) as u64)),
                None => deadline,
            };
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }

    /// Deletes a received message. A stale handle (the message was received again since)
    /// or an already deleted message deletes nothing and is not an error; returns whether
    /// a message was deleted. A malformed handle is `ReceiptHandleIsInvalid`.
    pub async fn delete(&self, queue: &str, receipt_handle: &str) -> Result<bool> {
        let (queue, handle) = (queue.to_string(), receipt_handle.to_string());
        self.blocking(move |s| s.delete_message(&queue, &handle))
            .await
    }

    /// Hides a received message for `timeout_s` more seconds from now (0: visible now).
    pub async fn change_visibility(
        &self,
        queue: &str,
        receipt_handle: &str,
        timeout_s: u32,
    ) -> Result<()> {
        let (owned, handle) = (queue.to_string(), receipt_handle.to_string());
        self.blocking(move |s| s.change_visibility(&owned, &handle, timeout_s, now_ms()))
            .await?;
        if timeout_s == 0 {
            self.wake(queue);
        }
        Ok(())
    }

    /// A received message as one record of a Lambda SQS event (`Records[]`), as Lambda's
    /// event source mapping delivers it.
    pub fn lambda_record(&self, queue: &str, m: &Received) -> serde_json::Value {
        let mut attributes = serde_json::json!({
            "ApproximateReceiveCount": m.receive_count.to_string(),
            "SentTimestamp": m.sent_ms.to_string(),
            "SenderId": ACCOUNT_ID,
            "ApproximateFirstReceiveTimestamp": m.first_receive_ms.to_string(),
        });
        if let Some(t) = &m.trace_header {
            attributes["AWSTraceHeader"] = t.clone().into();
        }
        if let Some(source) = &m.dead_letter_source {
            attributes["DeadLetterQueueSourceArn"] = self.queue_arn(source).into();
        }
        let message_attributes: serde_json::Map<String, serde_json::Value> = m
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.lambda_json()))
            .collect();
        let mut record = serde_json::json!({
            "messageId": m.message_id,
            "receiptHandle": m.receipt_handle,
            "body": m.body,
            "attributes": attributes,
            "messageAttributes": message_attributes,
            "md5OfBody": m.md5_of_body,
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn(queue),
            "awsRegion": self.config.region,
        });
        if let Some(md5) = message::md5_of_attributes(&m.attributes) {
            record["md5OfMessageAttributes"] = md5.into();
        }
        record
    }
}

impl std::fmt::Debug for QueueService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueService")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
