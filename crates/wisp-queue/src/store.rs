//! [`QueueStore`]: queues and their messages in one SQLite database in WAL mode.
//!
//! WAL with `synchronous=NORMAL` keeps every committed transaction across a crash of the
//! process (`kill -9`); only a power loss can take the last few. A send is acknowledged
//! after its insert commits, so an acknowledged message survives a crash.
//!
//! Visibility is a timestamp, not a state: a received message gets `visible_at_ms = now +
//! visibility timeout`, so after a crash or restart it becomes receivable again on its own
//! once that time has passed. Every receive gives a message a new receipt handle; a delete
//! or visibility change must present the latest one, so a consumer whose visibility timeout
//! ran out cannot delete a message someone else has received since.
//!
//! Every method is one transaction and takes the current time (`now_ms`, Unix epoch
//! milliseconds) from its caller, so tests drive the clock.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use base64::Engine as _;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::attributes::QueueSettings;
use crate::error::{clip, ErrorKind, QueueError, Result};
use crate::limits::VISIBILITY_TIMEOUT_MAX_S;
use crate::message::{md5_hex, MessageAttributes};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '{}',
    created_ms INTEGER NOT NULL,
    modified_ms INTEGER NOT NULL,
    -- Messages the queue holds, kept in step by every write below (bounds a queue).
    depth INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    attributes TEXT,
    trace_header TEXT,
    dead_letter_source TEXT,
    sent_ms INTEGER NOT NULL,
    visible_at_ms INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    received_ms INTEGER,
    first_receive_ms INTEGER
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, visible_at_ms, seq);
"#;

/// A queue as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueRow {
    pub name: String,
    pub settings: QueueSettings,
    pub tags: BTreeMap<String, String>,
    pub created_ms: i64,
    pub modified_ms: i64,
}

/// Whether CreateQueue made a queue or found an equal one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    New,
    Existing,
}

/// A message to send, already checked (body characters, attribute names and types).
#[derive(Clone, Debug, PartialEq)]
pub struct NewMessage {
    pub body: String,
    pub attributes: MessageAttributes,
    /// `AWSTraceHeader`, the only system attribute a sender may set.
    pub trace_header: Option<String>,
    /// `None`: the queue's `DelaySeconds`.
    pub delay_s: Option<u32>,
}

/// A sent message's id and digests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub message_id: String,
    pub md5_of_body: String,
    pub md5_of_attributes: Option<String>,
}

/// A received message.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    pub message_id: String,
    /// The handle for DeleteMessage and ChangeMessageVisibility; new on every receive.
    pub receipt_handle: String,
    pub body: String,
    pub md5_of_body: String,
    /// Every message attribute the message was sent with.
    pub attributes: MessageAttributes,
    pub sent_ms: i64,
    /// How many times the message has been received, this receive included.
    pub receive_count: u32,
    pub first_receive_ms: i64,
    pub trace_header: Option<String>,
    /// For a message moved to a dead-letter queue: the queue it came from.
    pub dead_letter_source: Option<String>,
}

/// What one receive did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReceiveOutcome {
    pub messages: Vec<Received>,
    /// Messages moved to the dead-letter queue (named) by this receive.
    pub moved_to: Option<(String, usize)>,
    /// The receive stopped early while removing expired or dead-lettered messages: more
    /// may be visible, so look again at once rather than wait.
    pub more_ready: bool,
}

/// Message counts of a queue, as GetQueueAttributes reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Receivable now.
    pub visible: u64,
    /// Received and not yet visible again ("in flight").
    pub not_visible: u64,
    /// Sent with a delay that has not passed.
    pub delayed: u64,
}

/// A receipt handle: the message id and a token that changes on every receive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceiptHandle {
    pub message_id: String,
    pub token: String,
}

impl ReceiptHandle {
    fn fresh(message_id: &str) -> Self {
        ReceiptHandle {
            message_id: message_id.to_string(),
            token: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    pub fn encode(&self) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("wisp1:{}:{}", self.message_id, self.token))
    }

    /// Parses a handle; a string no receive could have returned is `ReceiptHandleIsInvalid`.
    pub fn parse(handle: &str) -> Result<Self> {
        let invalid = || {
            QueueError::new(
                ErrorKind::ReceiptHandleIsInvalid,
                format!(
                    "The input receipt handle {:?} is not a valid receipt handle. Use the ReceiptHandle a ReceiveMessage returned.",
                    clip(handle)
                ),
            )
        };
        if handle.is_empty() || handle.len() > 200 {
            return Err(invalid());
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(handle)
            .map_err(|_| invalid())?;
        let text = String::from_utf8(bytes).map_err(|_| invalid())?;
        let mut parts = text.split(':');
        let (Some("wisp1"), Some(id), Some(token), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        if uuid::Uuid::parse_str(id).is_err()
            || token.len() != 32
            || !token.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(invalid());
        }
        Ok(ReceiptHandle {
            message_id: id.to_string(),
            token: token.to_string(),
        })
    }
}

pub struct QueueStore {
    conn: Mutex<Connection>,
}

fn json_of<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| QueueError::internal(e.to_string()))
}

fn parse_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| QueueError::internal(format!("corrupt row: {e}")))
}

/// The queue's settings and depth, or `QueueDoesNotExist`.
fn load(conn: &Connection, name: &str) -> Result<(QueueSettings, u64)> {
    let row: Option<(String, i64)> = conn
        .query_row(
            "SELECT settings, depth FROM queues WHERE name = ?1",
            [name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match row {
        Some((settings, depth)) => Ok((parse_json(&settings)?, depth.max(0) as u64)),
        None => Err(QueueError::no_queue(name)),
    }
}

fn exists(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn
        .query_row("SELECT 1 FROM queues WHERE name = ?1", [name], |_| Ok(()))
        .optional()?
        .is_some())
}

fn add_depth(conn: &Connection, name: &str, delta: i64) -> Result<()> {
    if delta != 0 {
        conn.execute(
            "UPDATE queues SET depth = MAX(depth + ?2, 0) WHERE name = ?1",
            params![name, delta],
        )?;
    }
    Ok(())
}

/// A redrive policy must name an existing queue other than the queue itself.
fn check_dead_letter_target(conn: &Connection, name: &str, settings: &QueueSettings) -> Result<()> {
    if let Some(policy) = &settings.redrive_policy {
        let bad = |why: &str| {
            QueueError::new(
                ErrorKind::InvalidAttributeValue,
                format!("Invalid value for the parameter RedrivePolicy: {why}."),
            )
        };
        if policy.dead_letter_queue == name {
            return Err(bad("a queue cannot be its own dead-letter queue"));
        }
        if !exists(conn, &policy.dead_letter_queue)? {
            return Err(bad(&format!(
                "dead-letter target queue {} does not exist; create it first",
                policy.dead_letter_queue
            )));
        }
    }
    Ok(())
}

fn retention_cutoff_ms(settings: &QueueSettings, now_ms: i64) -> i64 {
    now_ms - settings.message_retention_s as i64 * 1000
}

impl QueueStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(QueueStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite itself consistent (the transaction
        // rolls back when dropped), so the poisoned guard is safe to use.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates a queue. If it exists, `same` decides whether the request agrees with it
    /// (then `Existing`) or not (`QueueNameExists`).
    pub fn create_queue(
        &self,
        name: &str,
        settings: &QueueSettings,
        tags: &BTreeMap<String, String>,
        same: impl FnOnce(&QueueSettings) -> bool,
        max_queues: usize,
        now_ms: i64,
    ) -> Result<Created> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Ok((existing, _)) = load(&tx, name) {
            return if same(&existing) {
                Ok(Created::Existing)
            } else {
                Err(QueueError::new(
                    ErrorKind::QueueNameExists,
                    format!("A queue named {name} already exists with different attributes. Use SetQueueAttributes to change them, or another name."),
                ))
            };
        }
        let count: i64 = tx.query_row("SELECT COUNT(*) FROM queues", [], |r| r.get(0))?;
        if count as usize >= max_queues {
            return Err(QueueError::new(
                ErrorKind::OverLimit,
                format!("This wisp already has {count} queues, the most it keeps. Delete a queue first."),
            ));
        }
        check_dead_letter_target(&tx, name, settings)?;
        tx.execute(
            "INSERT INTO queues (name, settings, tags, created_ms, modified_ms) VALUES (?1, ?2, ?3, ?4, ?4)",
            params![name, json_of(settings)?, json_of(tags)?, now_ms],
        )?;
        tx.commit()?;
        Ok(Created::New)
    }

    pub fn queue(&self, name: &str) -> Result<QueueRow> {
        let conn = self.conn();
        let row: Option<(String, String, i64, i64)> = conn
            .query_row(
                "SELECT settings, tags, created_ms, modified_ms FROM queues WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((settings, tags, created_ms, modified_ms)) = row else {
            return Err(QueueError::no_queue(name));
        };
        Ok(QueueRow {
            name: name.to_string(),
            settings: parse_json(&settings)?,
            tags: parse_json(&tags)?,
            created_ms,
            modified_ms,
        })
    }

    /// Names starting with `prefix`, after `after`, in name order, at most `limit`.
    pub fn list_queues(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let conn = self.conn();
        // substr rather than LIKE: '_' is both a wildcard of LIKE and a queue name character.
        let mut stmt = conn.prepare_cached(
            "SELECT name FROM queues WHERE substr(name, 1, length(?1)) = ?1 AND name > ?2 ORDER BY name LIMIT ?3",
        )?;
        let names = stmt
            .query_map(params![prefix, after.unwrap_or(""), limit as i64], |r| {
                r.get(0)
            })?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(names)
    }

    /// Queues whose redrive policy names `name` as their dead-letter queue.
    pub fn dead_letter_sources(&self, name: &str) -> Result<Vec<String>> {
        let conn = self.conn();
        load(&conn, name)?;
        let mut stmt = conn.prepare_cached("SELECT name, settings FROM queues ORDER BY name")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut out = Vec::new();
        for (source, settings) in rows {
            let settings: QueueSettings = parse_json(&settings)?;
            if settings
                .redrive_policy
                .is_some_and(|p| p.dead_letter_queue == name)
            {
                out.push(source);
            }
        }
        Ok(out)
    }

    /// Replaces a queue's settings with `update(current)`.
    pub fn update_settings(
        &self,
        name: &str,
        update: impl FnOnce(&QueueSettings) -> Result<QueueSettings>,
        now_ms: i64,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (current, _) = load(&tx, name)?;
        let next = update(&current)?;
        check_dead_letter_target(&tx, name, &next)?;
        tx.execute(
            "UPDATE queues SET settings = ?2, modified_ms = ?3 WHERE name = ?1",
            params![name, json_of(&next)?, now_ms],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Changes a queue's tags with `update`.
    pub fn update_tags(
        &self,
        name: &str,
        update: impl FnOnce(&mut BTreeMap<String, String>) -> Result<()>,
    ) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let tags: Option<String> = tx
            .query_row("SELECT tags FROM queues WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        let Some(tags) = tags else {
            return Err(QueueError::no_queue(name));
        };
        let mut tags: BTreeMap<String, String> = parse_json(&tags)?;
        update(&mut tags)?;
        tx.execute(
            "UPDATE queues SET tags = ?2 WHERE name = ?1",
            params![name, json_of(&tags)?],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes a queue and its messages.
    pub fn delete_queue(&self, name: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if tx.execute("DELETE FROM queues WHERE name = ?1", [name])? == 0 {
            return Err(QueueError::no_queue(name));
        }
        tx.execute("DELETE FROM messages WHERE queue = ?1", [name])?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes every message of a queue; returns how many.
    pub fn purge(&self, name: &str) -> Result<u64> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        load(&tx, name)?;
        let n = tx.execute("DELETE FROM messages WHERE queue = ?1", [name])?;
        tx.execute("UPDATE queues SET depth = 0 WHERE name = ?1", [name])?;
        tx.commit()?;
        Ok(n as u64)
    }

    /// Sends messages in one transaction. The outer error is the queue's (missing, full);
    /// each message has its own result (too large for the queue's `MaximumMessageSize`).
    /// Returns only after the commit.
    pub fn send(
        &self,
        queue: &str,
        messages: &[NewMessage],
        max_depth: u64,
        now_ms: i64,
    ) -> Result<Vec<Result<Sent>>> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (settings, depth) = load(&tx, queue)?;
        if depth + messages.len() as u64 > max_depth {
            return Err(QueueError::new(
                ErrorKind::OverLimit,
                format!("Queue {queue} holds {depth} messages and wisp keeps at most {max_depth} per queue. Receive and delete messages, or purge the queue, then send again."),
            ));
        }
        let mut out = Vec::with_capacity(messages.len());
        let mut inserted = 0i64;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO messages (id, queue, body, attributes, trace_header, sent_ms, visible_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for m in messages {
                let size = crate::message::message_size(&m.body, &m.attributes);
                if size > settings.maximum_message_size as usize {
                    out.push(Err(QueueError::invalid(format!(
                        "One or more parameters are invalid. Reason: Message must be shorter than {} bytes (this one is {size} bytes: body plus message attributes).",
                        settings.maximum_message_size
                    ))));
                    continue;
                }
                let id = uuid::Uuid::new_v4().to_string();
                let delay_ms = m.delay_s.unwrap_or(settings.delay_s) as i64 * 1000;
                let attributes = if m.attributes.is_empty() {
                    None
                } else {
                    Some(json_of(&m.attributes)?)
                };
                insert.execute(params![
                    id,
                    queue,
                    m.body,
                    attributes,
                    m.trace_header,
                    now_ms,
                    now_ms + delay_ms
                ])?;
                inserted += 1;
                out.push(Ok(Sent {
                    message_id: id,
                    md5_of_body: md5_hex(m.body.as_bytes()),
                    md5_of_attributes: crate::message::md5_of_attributes(&m.attributes),
                }));
            }
        }
        add_depth(&tx, queue, inserted)?;
        tx.commit()?;
        Ok(out)
    }

    /// Receives up to `max` visible messages, hiding each for `visibility_timeout_s` (the
    /// queue's when `None`). A message past its redrive policy's `maxReceiveCount` moves to
    /// the dead-letter queue instead; one past the retention period is deleted.
    pub fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility_timeout_s: Option<u32>,
        now_ms: i64,
    ) -> Result<ReceiveOutcome> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (settings, _) = load(&tx, queue)?;
        let visible_at_ms =
            now_ms + visibility_timeout_s.unwrap_or(settings.visibility_timeout_s) as i64 * 1000;
        let cutoff_ms = retention_cutoff_ms(&settings, now_ms);
        // A dead-letter queue deleted since the policy was set: messages stay and are
        // delivered, as nothing could receive them elsewhere.
        let redrive = match &settings.redrive_policy {
            Some(p) if exists(&tx, &p.dead_letter_queue)? => Some(p.clone()),
            Some(p) => {
                tracing::warn!(queue, dead_letter_queue = %p.dead_letter_queue, "dead-letter queue is gone; delivering instead");
                None
            }
            None => None,
        };
        let mut outcome = ReceiveOutcome::default();
        let mut seen: HashSet<i64> = HashSet::new();
        let (mut expired, mut moved) = (0i64, 0usize);
        // Each round replaces what the last one removed (expired or dead-lettered); the
        // bound keeps one receive short however many such messages lie ahead.
        for round in 0..8 {
            let want = max - outcome.messages.len();
            type Row = (
                i64,
                String,
                String,
                Option<String>,
                Option<String>,
                Option<String>,
                i64,
                i64,
                Option<i64>,
            );
            let rows: Vec<Row> = {
                let mut select = tx.prepare_cached(
                    "SELECT seq, id, body, attributes, trace_header, dead_letter_source, sent_ms, receive_count, first_receive_ms
                     FROM messages WHERE queue = ?1 AND visible_at_ms <= ?2 ORDER BY visible_at_ms, seq LIMIT ?3",
                )?;
                let rows = select
                    .query_map(params![queue, now_ms, (want + seen.len()) as i64], |r| {
                        Ok((
                            r.get(0)?,
                            r.get(1)?,
                            r.get(2)?,
                            r.get(3)?,
                            r.get(4)?,
                            r.get(5)?,
                            r.get(6)?,
                            r.get(7)?,
                            r.get(8)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<Row>>>()?;
                rows
            };
            let mut progressed = false;
            for (
                seq,
                id,
                body,
                attributes,
                trace_header,
                dead_letter_source,
                sent_ms,
                count,
                first,
            ) in rows
            {
                if !seen.insert(seq) {
                    continue;
                }
                progressed = true;
                if sent_ms <= cutoff_ms {
                    tx.execute("DELETE FROM messages WHERE seq = ?1", [seq])?;
                    expired += 1;
                    continue;
                }
                let receive_count = count.max(0) as u32 + 1;
                if let Some(p) = redrive
                    .as_ref()
                    .filter(|p| receive_count > p.max_receive_count)
                {
                    tx.execute(
                        "UPDATE messages SET queue = ?2, visible_at_ms = ?3, receive_count = 0, receipt = NULL,
                         received_ms = NULL, first_receive_ms = NULL, dead_letter_source = ?4 WHERE seq = ?1",
                        params![seq, p.dead_letter_queue, now_ms, queue],
                    )?;
                    moved += 1;
                    continue;
                }
                let handle = ReceiptHandle::fresh(&id).encode();
                let first_receive_ms = first.unwrap_or(now_ms);
                tx.execute(
                    "UPDATE messages SET receive_count = ?2, receipt = ?3, received_ms = ?4, first_receive_ms = ?5,
                     visible_at_ms = ?6 WHERE seq = ?1",
                    params![seq, receive_count, handle, now_ms, first_receive_ms, visible_at_ms],
                )?;
                let attributes: MessageAttributes = match attributes {
                    Some(text) => parse_json(&text)?,
                    None => MessageAttributes::new(),
                };
                outcome.messages.push(Received {
                    message_id: id,
                    receipt_handle: handle,
                    md5_of_body: md5_hex(body.as_bytes()),
                    body,
                    attributes,
                    sent_ms,
                    receive_count,
                    first_receive_ms,
                    trace_header,
                    dead_letter_source,
                });
                if outcome.messages.len() == max {
                    break;
                }
            }
            if !progressed || outcome.messages.len() == max {
                break;
            }
            outcome.more_ready = round == 7;
        }
        add_depth(&tx, queue, -(expired + moved as i64))?;
        if moved > 0 {
            if let Some(p) = &redrive {
                add_depth(&tx, &p.dead_letter_queue, moved as i64)?;
                outcome.moved_to = Some((p.dead_letter_queue.clone(), moved));
            }
        }
        tx.commit()?;
        Ok(outcome)
    }

    /// When the next hidden or delayed message of a queue becomes visible, if any.
    pub fn next_visible_ms(&self, queue: &str, now_ms: i64) -> Result<Option<i64>> {
        let conn = self.conn();
        Ok(conn.query_row(
            "SELECT MIN(visible_at_ms) FROM messages WHERE queue = ?1 AND visible_at_ms > ?2",
            params![queue, now_ms],
            |r| r.get(0),
        )?)
    }

    /// Deletes the message a receipt handle names, if that handle is still its latest.
    /// Returns whether a message was deleted: a stale handle (the message was received
    /// again since) or a message already gone deletes nothing and is not an error, as in SQS.
    pub fn delete_message(&self, queue: &str, handle: &str) -> Result<bool> {
        let parsed = ReceiptHandle::parse(handle)?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        load(&tx, queue)?;
        let n = tx.execute(
            "DELETE FROM messages WHERE id = ?1 AND queue = ?2 AND receipt = ?3",
            params![parsed.message_id, queue, handle],
        )?;
        add_depth(&tx, queue, -(n as i64))?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Sets a received message's visibility timeout to `timeout_s` from now. The handle
    /// must be the message's latest, the message still in flight, and the new deadline at
    /// most 12 hours after the receive.
    pub fn change_visibility(
        &self,
        queue: &str,
        handle: &str,
        timeout_s: u32,
        now_ms: i64,
    ) -> Result<()> {
        let parsed = ReceiptHandle::parse(handle)?;
        if timeout_s > VISIBILITY_TIMEOUT_MAX_S {
            return Err(QueueError::invalid(format!(
                "Value {timeout_s} for parameter VisibilityTimeout is invalid. Reason: must be from 0 to {VISIBILITY_TIMEOUT_MAX_S} seconds."
            )));
        }
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        load(&tx, queue)?;
        let row: Option<(Option<String>, i64, Option<i64>)> = tx
            .query_row(
                "SELECT receipt, visible_at_ms, received_ms FROM messages WHERE id = ?1 AND queue = ?2",
                params![parsed.message_id, queue],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let gone = || {
            QueueError::invalid(format!(
                "Value {} for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not available for visibility timeout change.",
                clip(handle)
            ))
        };
        let Some((Some(receipt), visible_at_ms, received_ms)) = row else {
            return Err(gone());
        };
        if receipt != handle {
            return Err(gone());
        }
        if visible_at_ms <= now_ms {
            return Err(QueueError::new(
                ErrorKind::MessageNotInflight,
                "The message is not in flight: its visibility timeout has passed. Receive it again for a new receipt handle.",
            ));
        }
        let deadline_ms = now_ms + timeout_s as i64 * 1000;
        let limit_ms = received_ms.unwrap_or(now_ms) + VISIBILITY_TIMEOUT_MAX_S as i64 * 1000;
        if deadline_ms > limit_ms {
            return Err(QueueError::invalid(format!(
                "Value {timeout_s} for parameter VisibilityTimeout is invalid. Reason: Total VisibilityTimeout for the message is beyond the limit [{VISIBILITY_TIMEOUT_MAX_S} seconds]."
            )));
        }
        tx.execute(
            "UPDATE messages SET visible_at_ms = ?2 WHERE id = ?1",
            params![parsed.message_id, deadline_ms],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Message counts of a queue (messages past retention not counted).
    pub fn counts(&self, queue: &str, now_ms: i64) -> Result<Counts> {
        let conn = self.conn();
        let (settings, _) = load(&conn, queue)?;
        let cutoff_ms = retention_cutoff_ms(&settings, now_ms);
        let (visible, not_visible, delayed): (i64, i64, i64) = conn.query_row(
            "SELECT COALESCE(SUM(visible_at_ms <= ?2), 0),
                    COALESCE(SUM(visible_at_ms > ?2 AND receipt IS NOT NULL), 0),
                    COALESCE(SUM(visible_at_ms > ?2 AND receipt IS NULL), 0)
             FROM messages WHERE queue = ?1 AND sent_ms > ?3",
            params![queue, now_ms, cutoff_ms],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        Ok(Counts {
            visible: visible as u64,
            not_visible: not_visible as u64,
            delayed: delayed as u64,
        })
    }

    /// Deletes every message past its queue's retention period; returns how many. One
    /// transaction per queue, so sends and receives are never held up for long.
    pub fn sweep_expired(&self, now_ms: i64) -> Result<u64> {
        let queues: Vec<(String, String)> = {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached("SELECT name, settings FROM queues")?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows
        };
        let mut total = 0u64;
        for (name, settings) in queues {
            let settings: QueueSettings = parse_json(&settings)?;
            let mut conn = self.conn();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "DELETE FROM messages WHERE queue = ?1 AND sent_ms <= ?2",
                params![name, retention_cutoff_ms(&settings, now_ms)],
            )?;
            add_depth(&tx, &name, -(n as i64))?;
            tx.commit()?;
            total += n as u64;
        }
        Ok(total)
    }

    /// Messages a queue holds, all states (the bound `max_depth` applies to).
    pub fn depth(&self, queue: &str) -> Result<u64> {
        let conn = self.conn();
        Ok(load(&conn, queue)?.1)
    }
}

#[cfg(test)]
mod tests;
