//! One Kafka trigger's consuming loop.
//!
//! The consumer assigns itself every partition of the topic (no group membership: a trigger
//! is one consumer) and reads each partition from its own librdkafka queue. Offsets live on
//! the broker under the consumer group id (OffsetCommit/OffsetFetch), so a restarted wisp —
//! or a restarted broker — resumes from the last committed offset of every partition.
//!
//! Ordering: a batch holds records of one partition, in offset order, and a partition has at
//! most one batch in flight; batches of different partitions run concurrently up to
//! `MaximumConcurrency`. A batch's offset (its last record's + 1) is committed only after
//! [`Ctx::deliver`] returned (and, for a broker failure destination, after the failure
//! record was acknowledged by the broker).
//!
//! Backpressure: the loop takes a concurrency slot before it takes a record off any partition
//! queue, and librdkafka prefetches into those queues only up to the bounds set in
//! [`KafkaConfig::consumer_config`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{select_all, FutureExt};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;
use wisp_triggers::connect::{self, Backoff, Ctx, Delivered};

use crate::config::{valid_topic, KafkaConfig, StartingPosition};
use crate::event::{event, Record};

/// How long a metadata request may take before the broker counts as unreachable.
const METADATA_TIMEOUT: Duration = Duration::from_secs(8);

/// Per partition: what was handled and what the broker confirmed as committed.
#[derive(Default)]
struct Offsets {
    /// The offset after the last handled batch (what to commit).
    done: HashMap<i32, i64>,
    /// The last offset the broker acknowledged as committed.
    committed: HashMap<i32, i64>,
}

/// librdkafka's callbacks: logs, errors, statistics (lag, broker state) and commit results.
pub struct Context {
    ctx: Ctx,
    topic: String,
    starting: StartingPosition,
    offsets: Arc<Mutex<Offsets>>,
    /// Partitions assigned (the statistics tell when the topic grew).
    assigned: AtomicUsize,
    grew: AtomicBool,
    up: AtomicBool,
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        // Connection failures repeat every reconnect; the status carries them. Only
        // librdkafka's serious complaints reach the server log above debug.
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::warn!(trigger = %self.ctx.id(), facility = fac, "librdkafka: {log_message}")
            }
            _ => {
                tracing::debug!(trigger = %self.ctx.id(), facility = fac, "librdkafka: {log_message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let msg = format!("Kafka: {reason}");
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            if self.up.swap(false, Ordering::SeqCst) {
                self.ctx.connection_failed(&msg);
            }
        } else {
            tracing::debug!(trigger = %self.ctx.id(), %error, "{reason}");
            self.ctx
                .status(|s| s.last_error = Some(msg.chars().take(500).collect()));
        }
    }

    fn stats(&self, stats: Statistics) {
        let up = stats.brokers.values().any(|b| b.state == "UP");
        if up && !self.up.swap(true, Ordering::SeqCst) {
            self.ctx.connected();
        } else if !up && self.up.swap(false, Ordering::SeqCst) {
            self.ctx
                .connection_failed("Kafka: no broker connection (reconnecting)");
        }
        let Some(topic) = stats.topics.get(&self.topic) else {
            return;
        };
        let mut lag = 0i64;
        let mut partitions = 0usize;
        for p in topic.partitions.values().filter(|p| p.partition >= 0) {
            partitions += 1;
            if p.hi_offset < 0 {
                continue;
            }
            let from = if p.committed_offset >= 0 {
                p.committed_offset
            } else if p.app_offset >= 0 {
                p.app_offset
            } else {
                match self.starting {
                    StartingPosition::TrimHorizon => p.lo_offset.max(0),
                    StartingPosition::Latest => p.hi_offset,
                }
            };
            lag += (p.hi_offset - from).max(0);
        }
        if partitions > self.assigned.load(Ordering::SeqCst) {
            self.grew.store(true, Ordering::SeqCst);
        }
        self.ctx.status(|s| s.lag = Some(lag as u64));
    }
}

impl ConsumerContext for Context {
    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => {
                let mut o = self.offsets.lock().expect("offsets lock");
                for e in offsets.elements_for_topic(&self.topic) {
                    if let (Ok(()), Offset::Offset(n)) = (e.error(), e.offset()) {
                        let c = o.committed.entry(e.partition()).or_insert(n);
                        *c = (*c).max(n);
                    }
                }
            }
            Err(e) => self.ctx.status(|s| {
                s.last_error = Some(format!("Kafka offset commit failed (will retry): {e}"))
            }),
        }
    }
}

type KConsumer = StreamConsumer<Context>;

/// Drops the consumer on a blocking thread: closing it may wait on the broker.
struct Closing(Option<Arc<KConsumer>>);

impl Drop for Closing {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn_blocking(move || drop(c));
            }
        }
    }
}

/// Why a session ended.
enum End {
    /// Could not connect or set up: shown in the status, retried with backoff.
    Failed(String),
    /// Set up again from the committed offsets (the topic changed, a task failed).
    Restart(String),
}

/// Runs a trigger until aborted.
pub async fn run(ctx: Ctx, config: Value) {
    let cfg = match KafkaConfig::parse(&config) {
        Ok(c) => c,
        Err(e) => {
            ctx.connection_failed(&format!("invalid stored configuration: {}", e.message));
            return;
        }
    };
    let mut backoff = Backoff::new(Duration::from_millis(500));
    loop {
        match session(&ctx, &cfg, &mut backoff).await {
            End::Failed(e) => ctx.connection_failed(&e),
            End::Restart(why) => {
                tracing::info!(trigger = %ctx.id(), %why, "restarting the Kafka consumer")
            }
        }
        backoff.wait().await;
    }
}

async fn partitions(
    consumer: Arc<KConsumer>,
    topic: String,
    servers: String,
) -> Result<Vec<i32>, String> {
    tokio::task::spawn_blocking(move || {
        let md = consumer
            .fetch_metadata(Some(&topic), METADATA_TIMEOUT)
            .map_err(|e| format!("Kafka: cannot reach the brokers {servers}: {e}"))?;
        let t = md
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .ok_or_else(|| format!("Kafka: the brokers did not describe topic {topic}"))?;
        if let Some(err) = t.error() {
            return Err(format!(
                "Kafka: topic {topic}: {}",
                RDKafkaErrorCode::from(err)
            ));
        }
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        if ids.is_empty() {
            return Err(format!("Kafka: topic {topic} has no partitions"));
        }
        Ok(ids)
    })
    .await
    .unwrap_or_else(|e| Err(format!("Kafka: metadata task failed: {e}")))
}

async fn session(ctx: &Ctx, cfg: &KafkaConfig, backoff: &mut Backoff) -> End {
    let topic = cfg.topic().to_string();
    let group = cfg
        .consumer_group_id
        .clone()
        .unwrap_or_else(|| ctx.id().to_string());
    let client_id = format!("wisp-{}", ctx.id());
    let offsets = Arc::new(Mutex::new(Offsets::default()));
    let context = Context {
        ctx: ctx.clone(),
        topic: topic.clone(),
        starting: cfg.starting_position,
        offsets: offsets.clone(),
        assigned: AtomicUsize::new(usize::MAX),
        grew: AtomicBool::new(false),
        up: AtomicBool::new(false),
    };
    let created: KafkaResult<KConsumer> = cfg
        .consumer_config(&client_id, &group, ctx.delivery().batch_size)
        .create_with_context(context);
    let consumer = match created {
        Ok(c) => Arc::new(c),
        Err(e) => return End::Failed(format!("Kafka: cannot create the consumer: {e}")),
    };
    let closing = Closing(Some(consumer.clone()));
    let ids = match partitions(consumer.clone(), topic.clone(), cfg.servers()).await {
        Ok(ids) => ids,
        Err(e) => return End::Failed(e),
    };
    consumer
        .context()
        .assigned
        .store(ids.len(), Ordering::SeqCst);
    let mut tpl = TopicPartitionList::new();
    for p in &ids {
        if let Err(e) = tpl.add_partition_offset(&topic, *p, Offset::Stored) {
            return End::Failed(format!("Kafka: {e}"));
        }
    }
    if let Err(e) = consumer.assign(&tpl) {
        return End::Failed(format!("Kafka: cannot assign the topic's partitions: {e}"));
    }
    let mut queues: Vec<(i32, StreamPartitionQueue<Context>)> = Vec::with_capacity(ids.len());
    for p in &ids {
        match consumer.split_partition_queue(&topic, *p) {
            Some(q) => queues.push((*p, q)),
            None => return End::Failed(format!("Kafka: no queue for partition {p} of {topic}")),
        }
    }
    let producer = match ctx.delivery().broker_failure_destination() {
        Some(_) => match cfg
            .producer_config(&format!("{client_id}-failures"))
            .create::<FutureProducer>()
        {
            Ok(p) => Some(p),
            Err(e) => {
                return End::Failed(format!("Kafka: cannot create the failure producer: {e}"))
            }
        },
        None => None,
    };
    consumer.context().up.store(true, Ordering::SeqCst);
    ctx.connected();
    backoff.reset();
    tracing::info!(trigger = %ctx.id(), %topic, partitions = ids.len(), %group, "Kafka consumer assigned");

    let end = consume(ctx, cfg, &consumer, &queues, producer, &offsets).await;
    drop(queues);
    drop(consumer);
    drop(closing);
    end
}

/// What a finished batch task hands back: which queue, partition and offset to commit.
struct Done {
    queue: usize,
    partition: i32,
    next: i64,
}

async fn consume(
    ctx: &Ctx,
    cfg: &KafkaConfig,
    consumer: &Arc<KConsumer>,
    queues: &[(i32, StreamPartitionQueue<Context>)],
    producer: Option<FutureProducer>,
    offsets: &Arc<Mutex<Offsets>>,
) -> End {
    let topic = cfg.topic();
    let servers = cfg.servers();
    let n = queues.len();
    let mut busy = vec![false; n];
    let mut tasks: JoinSet<Done> = JoinSet::new();
    let mut permit: Option<OwnedSemaphorePermit> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut rotate = 0usize;
    loop {
        // Partitions with nothing in flight, starting from a rotating one so that a busy
        // partition cannot starve the others.
        let idle: Vec<usize> = if permit.is_some() {
            (0..n)
                .map(|i| (i + rotate) % n)
                .filter(|i| !busy[*i])
                .collect()
        } else {
            Vec::new()
        };
        let race = async {
            if idle.is_empty() {
                return std::future::pending().await;
            }
            let futs = idle.iter().map(|&i| {
                let q = &queues[i].1;
                async move { (i, q.recv().await.map(|m| Record::from_message(&m))) }.boxed()
            });
            select_all(futs).await.0
        };
        tokio::select! {
            p = ctx.slot(), if permit.is_none() => permit = Some(p),
            Some(done) = tasks.join_next(), if !tasks.is_empty() => match done {
                Ok(d) => {
                    busy[d.queue] = false;
                    offsets.lock().expect("offsets lock").done.insert(d.partition, d.next);
                    commit(ctx, consumer, topic, &[(d.partition, d.next)]);
                }
                Err(e) => return End::Restart(format!("a batch task failed: {e}")),
            },
            (i, first) = race => {
                rotate = rotate.wrapping_add(1);
                let first = match first {
                    Ok(r) => r,
                    Err(e) => {
                        ctx.status(|s| s.last_error = Some(format!("Kafka: {e}")));
                        continue;
                    }
                };
                let records = gather_rest(ctx, &queues[i].1, first).await;
                let Some(last) = records.last() else { continue };
                let done = Done { queue: i, partition: queues[i].0, next: last.offset + 1 };
                let ev = event(&servers, &records);
                busy[i] = true;
                let permit = permit.take().expect("a batch is taken only with a slot");
                tasks.spawn(handle(ctx.clone(), producer.clone(), ev, done, permit));
            }
            m = consumer.recv() => match m {
                // Records arrive on the partition queues; one on the main queue was fetched
                // before its queue was split off: start over from the committed offsets
                // rather than hand it over out of order.
                Ok(m) => return End::Restart(format!(
                    "a record of partition {} reached the consumer's main queue", m.partition()
                )),
                Err(e) => ctx.status(|s| s.last_error = Some(format!("Kafka: {e}"))),
            },
            _ = tick.tick() => {
                let pending: Vec<(i32, i64)> = {
                    let o = offsets.lock().expect("offsets lock");
                    o.done
                        .iter()
                        .filter(|(p, d)| o.committed.get(p).is_none_or(|c| c < d))
                        .map(|(p, d)| (*p, *d))
                        .collect()
                };
                if !pending.is_empty() {
                    commit(ctx, consumer, topic, &pending);
                }
                if consumer.context().grew.load(Ordering::SeqCst) && tasks.is_empty() {
                    return End::Restart("the topic has more partitions".into());
                }
            }
        }
    }
}

/// Takes more records of the same partition into the batch, as far as the batch size,
/// batching window and payload budget allow.
async fn gather_rest(ctx: &Ctx, q: &StreamPartitionQueue<Context>, first: Record) -> Vec<Record> {
    let d = ctx.delivery();
    let mut first = Some(first);
    let (records, err) = connect::gather(
        d.batch_size as usize,
        d.window(),
        connect::BATCH_PAYLOAD_MAX_BYTES / 2,
        |wait| {
            let f = first.take();
            async move {
                if let Some(r) = f {
                    let size = r.size();
                    return Ok(Some((r, size)));
                }
                let got = match wait {
                    None => Ok(q.recv().await),
                    Some(d) => tokio::time::timeout(d, q.recv()).await,
                };
                match got {
                    Err(_) => Ok(None),
                    Ok(Ok(m)) => {
                        let r = Record::from_message(&m);
                        let size = r.size();
                        Ok(Some((r, size)))
                    }
                    Ok(Err(e)) => Err(e),
                }
            }
        },
    )
    .await;
    if let Some(e) = err {
        ctx.status(|s| s.last_error = Some(format!("Kafka: {e}")));
    }
    records
}

/// Commits offsets without waiting (the result comes back through the commit callback;
/// what did not make it is committed again on the next tick).
fn commit(ctx: &Ctx, consumer: &KConsumer, topic: &str, offsets: &[(i32, i64)]) {
    let mut tpl = TopicPartitionList::new();
    for (p, next) in offsets {
        if tpl
            .add_partition_offset(topic, *p, Offset::Offset(*next))
            .is_err()
        {
            return;
        }
    }
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        ctx.status(|s| {
            s.last_error = Some(format!("Kafka offset commit failed (will retry): {e}"))
        });
    }
}

/// Delivers one batch; publishes it to the broker failure destination when its retries
/// are exhausted. Returns only when the batch may be committed.
async fn handle(
    ctx: Ctx,
    producer: Option<FutureProducer>,
    event: Value,
    done: Done,
    permit: OwnedSemaphorePermit,
) -> Done {
    let _permit = permit;
    if let Delivered::ToBrokerDestination {
        destination,
        record,
    } = ctx.deliver(&event).await
    {
        publish_failure(
            &ctx,
            producer.as_ref(),
            &destination,
            &record,
            done.partition,
        )
        .await;
        ctx.dead_lettered();
    }
    done
}

/// Publishes a failure record to a topic, retrying with backoff until the broker took it:
/// until then the batch is not committed (the status says why).
async fn publish_failure(
    ctx: &Ctx,
    producer: Option<&FutureProducer>,
    destination: &str,
    record: &Value,
    partition: i32,
) {
    let body = record.to_string();
    let key = format!("{}", partition);
    let mut backoff = Backoff::new(Duration::from_millis(500));
    loop {
        let error = match producer {
            _ if !valid_topic(destination) => {
                format!("OnFailure {destination:?} is neither a wisp queue ARN nor a valid Kafka topic name")
            }
            None => "no failure producer".to_string(),
            Some(p) => match p
                .send(
                    FutureRecord::to(destination).payload(&body).key(&key),
                    Duration::from_secs(10),
                )
                .await
            {
                Ok(_) => return,
                Err((e, _)) => format!("Kafka: failure destination {destination}: {e}"),
            },
        };
        ctx.status(|s| s.last_error = Some(error.chars().take(500).collect()));
        backoff.wait().await;
    }
}
