//! One Redis Streams trigger at work: connect, make sure the group exists, read batches
//! with XREADGROUP, deliver them, XACK them.
//!
//! What a crash (of wisp, or of the connection) leaves behind is the consumer's pending
//! entries list (PEL): entries read but not acknowledged. So every session first re-reads
//! this consumer's own PEL (id `0`) before new entries (`>`), and every so often claims
//! (XAUTOCLAIM) entries idle too long on any consumer of the group, which is how entries
//! of a consumer that is gone for good, or whose XACK failed, are delivered again.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Value};
use tokio::task::JoinSet;
use tokio::time::Instant;
use wisp_triggers::connect::{Backoff, Ctx, Delivered, BATCH_PAYLOAD_MAX_BYTES};

use crate::config::{Config, Endpoint};
use crate::event::{self, Entry};

/// The longest one XREADGROUP blocks: the loop comes back this often to refresh the lag
/// and claim idle entries.
const BLOCK: Duration = Duration::from_secs(2);
/// How often the lag (XINFO GROUPS) is refreshed.
const LAG_EVERY: Duration = Duration::from_secs(2);
/// Commands other than the blocking read must answer within this.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the trigger until its task is aborted.
pub async fn run(ctx: Ctx, cfg: Config) {
    let consumer = cfg
        .consumer
        .clone()
        .unwrap_or_else(|| format!("wisp-{}", ctx.id()));
    let mut backoff = Backoff::new(Duration::from_millis(500));
    loop {
        let error = match Session::open(&cfg, &consumer).await {
            Ok(mut session) => {
                ctx.connected();
                session.consume(&ctx, &mut backoff).await
            }
            Err(e) => e,
        };
        ctx.connection_failed(&error);
        backoff.wait().await;
    }
}

/// A redis error as a status line: the crate's messages name the command and the
/// server's reply, never the credentials.
fn msg(what: &str, e: redis::RedisError) -> String {
    format!("{what}: {e}")
}

struct Session {
    cfg: Config,
    url: String,
    consumer: String,
    /// Blocking reads only: a blocked XREADGROUP holds its connection.
    reader: MultiplexedConnection,
    /// Everything else (XACK, XADD, XINFO, XPENDING), shared by the delivery tasks.
    ops: MultiplexedConnection,
    /// Ids being delivered now, which an XAUTOCLAIM must not hand out a second time.
    inflight: Arc<Mutex<HashSet<String>>>,
    /// Set by a delivery task whose XACK or failure publish failed: the session is over.
    broken: Arc<Mutex<Option<String>>>,
    /// Re-reading this consumer's own pending entries: the last id read.
    pending_cursor: Option<String>,
    /// XAUTOCLAIM's cursor, and when the next round is due.
    claim_cursor: String,
    next_claim: Instant,
    /// Entries read beyond what the batch being gathered could take.
    carry: VecDeque<Entry>,
}

async fn client(cfg: &Config, ep: &Endpoint) -> Result<Client, String> {
    let scheme = if ep.tls { "rediss" } else { "redis" };
    let host = if ep.host.contains(':') {
        format!("[{}]", ep.host)
    } else {
        ep.host.clone()
    };
    let url = format!("{scheme}://{host}:{}/{}", ep.port, ep.db);
    let mut info = redis::IntoConnectionInfo::into_connection_info(url.as_str())
        .map_err(|e| msg("bad Url", e))?;
    let mut settings = info.redis_settings().clone();
    if let Some(u) = &cfg.username {
        settings = settings.set_username(u);
    }
    if let Some(p) = &cfg.password {
        settings = settings.set_password(p);
    }
    info = info.set_redis_settings(settings);
    let ca = cfg.tls.as_ref().and_then(|t| t.ca_file.clone());
    match ca {
        Some(path) if ep.tls => {
            let pem = tokio::fs::read(&path)
                .await
                .map_err(|e| format!("reading Tls.CaFile {path}: {e}"))?;
            Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            )
            .map_err(|e| msg("TLS setup", e))
        }
        _ => Client::open(info).map_err(|e| msg("bad Url", e)),
    }
}

impl Session {
    async fn open(cfg: &Config, consumer: &str) -> Result<Session, String> {
        let ep = cfg.endpoint().map_err(|e| e.message)?;
        let client = client(cfg, &ep).await?;
        let conf = |response: Duration| {
            AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(10)))
                .set_response_timeout(Some(response))
        };
        let connecting = format!("connecting to {}:{}", ep.host, ep.port);
        let reader = client
            .get_multiplexed_async_connection_with_config(&conf(BLOCK + RESPONSE_TIMEOUT))
            .await
            .map_err(|e| msg(&connecting, e))?;
        let mut ops = client
            .get_multiplexed_async_connection_with_config(&conf(RESPONSE_TIMEOUT))
            .await
            .map_err(|e| msg(&connecting, e))?;
        let created: Result<Value, _> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&cfg.stream)
            .arg(&cfg.group)
            .arg(cfg.starting_position.group_start_id())
            .arg("MKSTREAM")
            .query_async(&mut ops)
            .await;
        if let Err(e) = created {
            if !e.to_string().contains("BUSYGROUP") {
                return Err(msg("XGROUP CREATE", e));
            }
        }
        Ok(Session {
            cfg: cfg.clone(),
            url: format!(
                "{}://{}:{}/{}",
                if ep.tls { "rediss" } else { "redis" },
                ep.host,
                ep.port,
                ep.db
            ),
            consumer: consumer.to_string(),
            reader,
            ops,
            inflight: Arc::default(),
            broken: Arc::default(),
            pending_cursor: Some("0".into()),
            claim_cursor: "0-0".into(),
            next_claim: Instant::now(),
            carry: VecDeque::new(),
        })
    }

    /// Consumes until the connection fails; returns why. Batches still being delivered
    /// are stopped with it (their entries stay pending and are read again).
    async fn consume(&mut self, ctx: &Ctx, backoff: &mut Backoff) -> String {
        let mut tasks = JoinSet::new();
        let mut next_lag = Instant::now();
        loop {
            while tasks.try_join_next().is_some() {}
            if let Some(e) = self.broken.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return e;
            }
            if Instant::now() >= next_lag {
                next_lag = Instant::now() + LAG_EVERY;
                if let Err(e) = self.refresh_lag(ctx).await {
                    return e;
                }
            }
            let permit = ctx.slot().await;
            let batch = match self.gather(ctx).await {
                Ok(b) => b,
                Err(e) => return e,
            };
            backoff.reset();
            if batch.is_empty() {
                continue;
            }
            {
                let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
                inflight.extend(batch.iter().map(|e| e.id.clone()));
            }
            let event = event::event(
                &self.url,
                &self.cfg.stream,
                &self.cfg.group,
                &self.consumer,
                &batch,
            );
            let ids: Vec<String> = batch.into_iter().map(|e| e.id).collect();
            let (ctx, mut ops) = (ctx.clone(), self.ops.clone());
            let (stream, group) = (self.cfg.stream.clone(), self.cfg.group.clone());
            let (inflight, broken) = (self.inflight.clone(), self.broken.clone());
            tasks.spawn(async move {
                let _permit = permit;
                let done = finish(&ctx, &mut ops, &stream, &group, &ids, &event).await;
                let mut set = inflight.lock().unwrap_or_else(|p| p.into_inner());
                for id in &ids {
                    set.remove(id);
                }
                if let Err(e) = done {
                    *broken.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            });
        }
    }

    async fn refresh_lag(&mut self, ctx: &Ctx) -> Result<(), String> {
        let info: Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.cfg.stream)
            .query_async(&mut self.ops)
            .await
            .map_err(|e| msg("XINFO GROUPS", e))?;
        match event::group_info(&info, &self.cfg.group) {
            Some((pending, lag)) => ctx.status(|s| s.lag = Some(pending + lag.unwrap_or(0))),
            // The group was deleted behind our back: start over (which creates it).
            None => return Err(format!("consumer group {} is gone", self.cfg.group)),
        }
        Ok(())
    }

    /// Gathers one batch: up to BatchSize entries, within the batching window and the
    /// payload budget. Empty when nothing came within [`BLOCK`].
    async fn gather(&mut self, ctx: &Ctx) -> Result<Vec<Entry>, String> {
        let max = ctx.delivery().batch_size as usize;
        let budget = BATCH_PAYLOAD_MAX_BYTES / 2;
        let mut batch: Vec<Entry> = Vec::new();
        let mut bytes = 0usize;
        let mut deadline: Option<Instant> = None;
        loop {
            while batch.len() < max && (batch.is_empty() || bytes < budget) {
                let Some(e) = self.carry.pop_front() else {
                    break;
                };
                bytes += e.size();
                batch.push(e);
            }
            if batch.len() >= max || (!batch.is_empty() && bytes >= budget) {
                return Ok(batch);
            }
            let wait = match deadline {
                None if batch.is_empty() => Some(BLOCK),
                None => {
                    let d = Instant::now() + ctx.delivery().window();
                    deadline = Some(d);
                    Some(d.saturating_duration_since(Instant::now()))
                }
                Some(d) => Some(d.saturating_duration_since(Instant::now())),
            }
            .filter(|w| *w >= Duration::from_millis(1));
            let got = self.read(max - batch.len(), wait).await?;
            if got.is_empty() && (batch.is_empty() || wait.is_none()) {
                return Ok(batch);
            }
            self.carry.extend(got);
        }
    }

    /// The next entries: this consumer's own pending ones first, then idle ones claimed
    /// from the group when a claim round is due, then new ones (blocking up to `wait`).
    async fn read(&mut self, count: usize, wait: Option<Duration>) -> Result<Vec<Entry>, String> {
        if let Some(cursor) = self.pending_cursor.clone() {
            let reply: Value = self
                .xreadgroup(count, None, &cursor)
                .await
                .map_err(|e| msg("XREADGROUP (pending)", e))?;
            let found = event::xreadgroup(&reply)?;
            match found.last() {
                None => self.pending_cursor = None,
                Some(last) => self.pending_cursor = Some(last.id.clone()),
            }
            return self.usable(found).await;
        }
        if Instant::now() >= self.next_claim {
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&self.cfg.stream)
                .arg(&self.cfg.group)
                .arg(&self.consumer)
                .arg(self.cfg.claim_idle_seconds * 1000)
                .arg(&self.claim_cursor)
                .arg("COUNT")
                .arg(count)
                .query_async(&mut self.ops)
                .await
                .map_err(|e| msg("XAUTOCLAIM", e))?;
            let (cursor, found) = event::xautoclaim(&reply)?;
            if cursor == "0-0" {
                // A whole pass over the group's pending entries: the next one later.
                let every = Duration::from_secs(self.cfg.claim_idle_seconds.div_ceil(2));
                self.next_claim = Instant::now() + every.min(Duration::from_secs(30));
            }
            self.claim_cursor = cursor;
            if !found.is_empty() {
                return self.usable(found).await;
            }
        }
        let reply: Value = self
            .xreadgroup(count, wait, ">")
            .await
            .map_err(|e| msg("XREADGROUP", e))?;
        event::xreadgroup(&reply)
    }

    async fn xreadgroup(
        &mut self,
        count: usize,
        wait: Option<Duration>,
        from: &str,
    ) -> redis::RedisResult<Value> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.cfg.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(w) = wait {
            cmd.arg("BLOCK").arg(w.as_millis().max(1) as u64);
        }
        cmd.arg("STREAMS").arg(&self.cfg.stream).arg(from);
        cmd.query_async(&mut self.reader).await
    }

    /// Entries read again (pending or claimed): drops those being delivered right now,
    /// acknowledges those deleted from the stream (nothing is left to deliver), and fills
    /// in how often each was delivered.
    async fn usable(&mut self, found: Vec<Entry>) -> Result<Vec<Entry>, String> {
        let mut busy = self
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        busy.extend(self.carry.iter().map(|e| e.id.clone()));
        let (mut live, gone): (Vec<Entry>, Vec<Entry>) = found
            .into_iter()
            .filter(|e| !busy.contains(&e.id))
            .partition(|e| e.fields.is_some());
        if !gone.is_empty() {
            let ids: Vec<&str> = gone.iter().map(|e| e.id.as_str()).collect();
            tracing::warn!(
                count = ids.len(),
                "pending stream entries were deleted before delivery; acknowledging them"
            );
            let _: Value = redis::cmd("XACK")
                .arg(&self.cfg.stream)
                .arg(&self.cfg.group)
                .arg(&ids)
                .query_async(&mut self.ops)
                .await
                .map_err(|e| msg("XACK", e))?;
        }
        if !live.is_empty() {
            let first = live.first().map(|e| e.id.clone()).unwrap_or_default();
            let last = live.last().map(|e| e.id.clone()).unwrap_or_default();
            let reply: Value = redis::cmd("XPENDING")
                .arg(&self.cfg.stream)
                .arg(&self.cfg.group)
                .arg(&first)
                .arg(&last)
                .arg(live.len())
                .arg(&self.consumer)
                .query_async(&mut self.ops)
                .await
                .map_err(|e| msg("XPENDING", e))?;
            let counts: std::collections::HashMap<String, u64> =
                event::xpending_counts(&reply).into_iter().collect();
            for e in &mut live {
                e.delivery_count = counts.get(&e.id).copied().unwrap_or(1);
            }
        }
        Ok(live)
    }
}

/// Delivers one batch and acknowledges it; only then is it off the PEL.
async fn finish(
    ctx: &Ctx,
    ops: &mut MultiplexedConnection,
    stream: &str,
    group: &str,
    ids: &[String],
    event: &serde_json::Value,
) -> Result<(), String> {
    match ctx.deliver(event).await {
        Delivered::Ok(_) | Delivered::SentToQueue | Delivered::Discarded => {}
        Delivered::ToBrokerDestination {
            destination,
            record,
        } => {
            let error = record["errorMessage"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let _: Value = redis::cmd("XADD")
                .arg(&destination)
                .arg("*")
                .arg("record")
                .arg(record.to_string())
                .arg("error")
                .arg(error)
                .arg("triggerId")
                .arg(ctx.id())
                .arg("sourceStream")
                .arg(stream)
                .query_async(ops)
                .await
                .map_err(|e| msg(&format!("XADD to failure stream {destination}"), e))?;
            ctx.dead_lettered();
        }
    }
    let _: Value = redis::cmd("XACK")
        .arg(stream)
        .arg(group)
        .arg(ids)
        .query_async(ops)
        .await
        .map_err(|e| msg("XACK", e))?;
    Ok(())
}
