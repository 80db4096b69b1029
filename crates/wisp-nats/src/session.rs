//! One trigger's life: connect, bind the durable pull consumer, fetch in batches, deliver,
//! acknowledge. The client reconnects to the servers on its own; the consumer is bound
//! again after errors the pull stream cannot recover from.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, message::Acker, AckKind};
use async_nats::{ConnectOptions, Event, ServerAddr};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::{Mutex, OwnedSemaphorePermit};
use tokio::task::JoinSet;
use wisp_triggers::connect::{gather, Backoff, Ctx, Delivered, BATCH_PAYLOAD_MAX_BYTES};

use crate::config::NatsConfig;
use crate::event;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The pull requests' lifetime and the server's idle heartbeat within it: a server that
/// went away is noticed within about two heartbeats.
const PULL_EXPIRES: Duration = Duration::from_secs(10);
const PULL_HEARTBEAT: Duration = Duration::from_secs(4);
/// How often the consumer's pending count is read for the status' lag.
const LAG_EVERY: Duration = Duration::from_secs(2);

type Messages = pull::Stream;

struct Shared {
    ctx: Ctx,
    cfg: NatsConfig,
    durable: String,
    source_arn: String,
}

impl Shared {
    /// Removes secrets from a message, should a library ever echo one.
    fn scrub(&self, msg: &str) -> String {
        let mut out = msg.to_string();
        for s in [&self.cfg.password, &self.cfg.token].into_iter().flatten() {
            if !s.is_empty() {
                out = out.replace(s.as_str(), "******");
            }
        }
        out
    }
}

/// Runs the trigger until its task is aborted.
pub async fn run(ctx: Ctx, config: Value) {
    let cfg: NatsConfig = match serde_json::from_value(config) {
        Ok(c) => c,
        Err(e) => {
            ctx.connection_failed(&format!("invalid stored configuration: {e}"));
            return std::future::pending().await;
        }
    };
    let durable = cfg.durable.clone().unwrap_or_else(|| {
        let id: String = ctx
            .id()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("wisp-{id}")
    });
    let source_arn = format!(
        "arn:wisp:nats:{}:{}:trigger/{}",
        ctx.region(),
        wisp_core::name::ACCOUNT_ID,
        ctx.id()
    );
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        cfg,
        durable,
        source_arn,
    });
    let mut backoff = Backoff::new(Duration::from_millis(500));
    // The client reconnects by itself once it was connected; the first connection is ours
    // to retry.
    let client = loop {
        match connect(&shared).await {
            Ok(c) => break c,
            Err(e) => {
                ctx.connection_failed(&shared.scrub(&e));
                backoff.wait().await;
            }
        }
    };
    let js = jetstream::new(client.clone());
    // Batches in flight outlive a consumer rebinding; they keep their slots.
    let mut batches = JoinSet::new();
    loop {
        let error = consume(&shared, &js, &mut batches, &mut backoff).await;
        let error = shared.scrub(&error);
        if client.connection_state() == async_nats::connection::State::Connected {
            tracing::warn!(trigger = %ctx.id(), %error, "rebinding the JetStream consumer");
            ctx.status(|s| {
                s.state = "Reconnecting".into();
                s.last_error = Some(error.chars().take(500).collect());
            });
        } else {
            ctx.connection_failed(&error);
        }
        backoff.wait().await;
    }
}

async fn connect(shared: &Shared) -> Result<async_nats::Client, String> {
    let cfg = &shared.cfg;
    let ctx = shared.ctx.clone();
    let mut opts = ConnectOptions::new()
        .name("wisp")
        .connection_timeout(CONNECT_TIMEOUT)
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((250u64 << attempts.min(7)).min(10_000))
        })
        .event_callback(move |event| {
            let ctx = ctx.clone();
            async move {
                match event {
                    Event::Connected => ctx.connected(),
                    Event::Disconnected => {
                        ctx.connection_failed("disconnected from the NATS server; reconnecting")
                    }
                    Event::ServerError(e) => {
                        tracing::warn!(trigger = %ctx.id(), error = %e, "NATS server error")
                    }
                    _ => {}
                }
            }
        });
    if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
        opts = opts.user_and_password(u.clone(), p.clone());
    }
    if let Some(t) = &cfg.token {
        opts = opts.token(t.clone());
    }
    if let Some(tls) = cfg.tls.as_ref().filter(|t| t.enabled) {
        opts = opts.require_tls(true);
        if let Some(ca) = &tls.ca_file {
            opts = opts.add_root_certificates(ca.into());
        }
        if let (Some(cert), Some(key)) = (&tls.client_cert_file, &tls.client_key_file) {
            opts = opts.add_client_certificate(cert.into(), key.into());
        }
    }
    let addrs = cfg
        .servers
        .iter()
        .map(|s| {
            s.parse::<ServerAddr>()
                .map_err(|e| format!("server {s}: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    opts.connect(addrs)
        .await
        .map_err(|e| format!("connecting to {}: {e}", cfg.servers.join(",")))
}

/// Binds the consumer and consumes until something the pull stream cannot get over.
async fn consume(
    shared: &Arc<Shared>,
    js: &jetstream::Context,
    batches: &mut JoinSet<()>,
    backoff: &mut Backoff,
) -> String {
    let ctx = &shared.ctx;
    let cfg = &shared.cfg;
    let delivery = ctx.delivery();
    let batch_size = delivery.batch_size as usize;
    let stream = match &cfg.create_stream {
        Some(cs) => js
            .get_or_create_stream(jetstream::stream::Config {
                name: cfg.stream.clone(),
                subjects: cs.subjects.clone(),
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("stream {:?}: {e}", cfg.stream)),
        None => js
            .get_stream(&cfg.stream)
            .await
            .map_err(|e| format!("stream {:?}: {e}", cfg.stream)),
    };
    let stream = match stream {
        Ok(s) => s,
        Err(e) => return e,
    };
    // The server hands out no more unacknowledged messages than the trigger works on at
    // once: nothing waits in the client's memory while the function is saturated.
    let max_ack_pending = (delivery.batch_size as i64) * (delivery.maximum_concurrency as i64);
    let consumer_cfg = pull::Config {
        durable_name: Some(shared.durable.clone()),
        filter_subject: cfg.subject.clone().unwrap_or_default(),
        deliver_policy: if cfg.deliver_new() {
            jetstream::consumer::DeliverPolicy::New
        } else {
            jetstream::consumer::DeliverPolicy::All
        },
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: cfg.ack_wait(),
        max_ack_pending,
        ..Default::default()
    };
    let consumer = match stream.create_consumer(consumer_cfg).await {
        Ok(c) => c,
        // An existing durable whose settings cannot change (a different filter or start)
        // is used as it is.
        Err(create) => match stream.get_consumer::<pull::Config>(&shared.durable).await {
            Ok(c) => {
                tracing::warn!(trigger = %ctx.id(), error = %create, durable = %shared.durable, "using the existing durable consumer as it is");
                c
            }
            Err(_) => return format!("consumer {:?}: {create}", shared.durable),
        },
    };
    let messages = match consumer
        .stream()
        .max_messages_per_batch(batch_size)
        .expires(PULL_EXPIRES)
        .heartbeat(PULL_HEARTBEAT)
        .messages()
        .await
    {
        Ok(m) => m,
        Err(e) => return format!("pulling from {:?}: {e}", shared.durable),
    };
    ctx.connected();
    ctx.status(|s| s.last_error = None);
    backoff.reset();
    tracing::info!(trigger = %ctx.id(), stream = %cfg.stream, durable = %shared.durable, "consuming from NATS JetStream");

    let mut side = JoinSet::new();
    side.spawn(poll_lag(ctx.clone(), consumer));

    let messages = Arc::new(Mutex::new(messages));
    let window = delivery.window();
    loop {
        while batches.try_join_next().is_some() {}
        let permit = ctx.slot().await;
        let (items, err) = gather(batch_size, window, BATCH_PAYLOAD_MAX_BYTES / 2, |wait| {
            next_message(messages.clone(), wait)
        })
        .await;
        if !items.is_empty() {
            batches.spawn(handle_batch(shared.clone(), js.clone(), items, permit));
        }
        if let Some(e) = err {
            return e;
        }
    }
}

/// The next message, waiting at most `wait` (forever for `None`). Errors the pull stream
/// recovers from by itself (a missed heartbeat while the server is away) are waited out.
async fn next_message(
    messages: Arc<Mutex<Messages>>,
    wait: Option<Duration>,
) -> Result<Option<(jetstream::Message, usize)>, String> {
    use pull::MessagesErrorKind as K;
    let mut messages = messages.lock().await;
    let deadline = wait.map(|w| tokio::time::Instant::now() + w);
    loop {
        let next = match deadline {
            None => messages.next().await,
            Some(d) => match tokio::time::timeout_at(d, messages.next()).await {
                Ok(n) => n,
                Err(_) => return Ok(None),
            },
        };
        match next {
            Some(Ok(m)) => {
                let size = m.payload.len() + m.subject.len() + 256;
                return Ok(Some((m, size)));
            }
            Some(Err(e)) if matches!(e.kind(), K::MissingHeartbeat | K::NoResponders) => {
                tracing::debug!(error = %e, "pull stream hiccup; waiting for it to recover");
                // A batch in the making is not held back by a server that is away.
                if deadline.is_some() {
                    return Ok(None);
                }
            }
            Some(Err(e)) => return Err(format!("pulling messages: {e}")),
            None => return Err("the pull stream ended".into()),
        }
    }
}

/// Invokes the function with one batch and acknowledges it afterwards. While the function
/// (or the failure publish) works, the server is told the batch is in progress, so it does
/// not deliver it again after AckWait.
async fn handle_batch(
    shared: Arc<Shared>,
    js: jetstream::Context,
    items: Vec<jetstream::Message>,
    permit: OwnedSemaphorePermit,
) {
    let ctx = &shared.ctx;
    let mut messages = Vec::with_capacity(items.len());
    let mut ackers = Vec::with_capacity(items.len());
    for m in items {
        let (stream_seq, consumer_seq, delivered, ts) = match m.info() {
            Ok(i) => (
                i.stream_sequence,
                i.consumer_sequence,
                i.delivered,
                (i.published.unix_timestamp_nanos() / 1_000_000) as i64,
            ),
            Err(_) => (0, 0, 1, 0),
        };
        let (msg, acker) = m.split();
        messages.push(event::message(&event::Msg {
            subject: msg.subject.as_str(),
            stream_seq,
            consumer_seq,
            timestamp_ms: ts,
            delivered,
            headers: msg.headers.as_ref(),
            data: &msg.payload,
        }));
        ackers.push(acker);
    }
    let event = event::event(
        &shared.source_arn,
        &shared.cfg.stream,
        &shared.durable,
        messages,
    );
    let every = shared.cfg.ack_wait() / 3;
    let outcome = in_progress(&ackers, every, ctx.deliver(&event)).await;
    drop(event);
    if let Delivered::ToBrokerDestination {
        destination,
        record,
    } = outcome
    {
        in_progress(
            &ackers,
            every,
            publish_failure(ctx, &js, &destination, &record),
        )
        .await;
        ctx.dead_lettered();
    }
    for a in &ackers {
        if let Err(e) = a.ack().await {
            tracing::debug!(trigger = %ctx.id(), error = %e, "ack failed; the server delivers the message again");
            break;
        }
    }
    drop(permit);
}

/// Runs `work`, telling the server every `every` that the batch is still being worked on.
async fn in_progress<T>(
    ackers: &[Acker],
    every: Duration,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let every = every.max(Duration::from_millis(500));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                for a in ackers {
                    if a.ack_with(AckKind::Progress).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
}

/// Publishes a failure record to a subject through JetStream and waits for the stream's
/// acknowledgement; retries (with the error in the status) until a stream stored it.
async fn publish_failure(ctx: &Ctx, js: &jetstream::Context, subject: &str, record: &Value) {
    let body = bytes::Bytes::from(record.to_string());
    let mut backoff = Backoff::new(Duration::from_millis(500));
    loop {
        let result = match js.publish(subject.to_string(), body.clone()).await {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => return,
            Err(e) => {
                let problem = format!("failure destination {subject:?}: {e}");
                tracing::warn!(trigger = %ctx.id(), error = %problem, "retrying the failure record");
                ctx.status(|s| s.last_error = Some(problem));
                backoff.wait().await;
            }
        }
    }
}

/// Reads the consumer's pending count for the status, until the binding ends.
async fn poll_lag(ctx: Ctx, consumer: jetstream::consumer::Consumer<pull::Config>) {
    loop {
        if let Ok(info) = consumer.get_info().await {
            ctx.status(|s| s.lag = Some(info.num_pending));
        }
        tokio::time::sleep(LAG_EVERY).await;
    }
}
