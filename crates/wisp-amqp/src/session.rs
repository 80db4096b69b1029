//! One trigger's life: connect, consume in batches, deliver, acknowledge; reconnect with
//! backoff when the broker goes away.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::FieldTable;
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};
use serde_json::Value;
use tokio::sync::{Mutex, OwnedSemaphorePermit};
use tokio::task::JoinSet;
use wisp_triggers::connect::{gather, Backoff, Ctx, Delivered, BATCH_PAYLOAD_MAX_BYTES};

use crate::config::AmqpConfig;
use crate::event;

/// How long connecting (TCP, TLS, AMQP handshake) may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// AMQP heartbeat: a broker that vanished without closing the socket is noticed within
/// about two of these.
const HEARTBEAT_SECS: u16 = 10;
/// How often the queue's depth is read for the status' lag.
const LAG_EVERY: Duration = Duration::from_secs(2);

/// Runs the trigger until its task is aborted.
pub async fn run(ctx: Ctx, config: Value) {
    // The stored configuration was checked by `validate`; files named in it are read at
    // connect time (they may have changed since).
    let cfg: AmqpConfig = match serde_json::from_value(config) {
        Ok(c) => c,
        Err(e) => {
            ctx.connection_failed(&format!("invalid stored configuration: {e}"));
            return std::future::pending().await;
        }
    };
    let source_arn = cfg.event_source_arn.clone().unwrap_or_else(|| {
        format!(
            "arn:aws:mq:{}:{}:broker:wisp:{}",
            ctx.region(),
            wisp_core::name::ACCOUNT_ID,
            ctx.id()
        )
    });
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        cfg,
        source_arn,
    });
    // Batches in flight outlive a lost connection (their acks then fail and the broker
    // redelivers): they keep their slots, so a new session never exceeds the concurrency.
    let mut batches = JoinSet::new();
    let mut backoff = Backoff::new(Duration::from_millis(500));
    loop {
        let error = session(&shared, &mut batches, &mut backoff).await;
        ctx.connection_failed(&shared.scrub(&error));
        backoff.wait().await;
    }
}

struct Shared {
    ctx: Ctx,
    cfg: AmqpConfig,
    source_arn: String,
}

impl Shared {
    /// Removes the password from a message, should a library ever echo it.
    fn scrub(&self, msg: &str) -> String {
        match &self.cfg.password {
            Some(p) if !p.is_empty() => msg.replace(p.as_str(), "******"),
            _ => msg.to_string(),
        }
    }
}

/// One connection's worth of consuming. Returns why it ended.
async fn session(shared: &Arc<Shared>, batches: &mut JoinSet<()>, backoff: &mut Backoff) -> String {
    let ctx = &shared.ctx;
    let cfg = &shared.cfg;
    let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connect(cfg)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return e,
        Err(_) => return format!("connecting to {} timed out", cfg.url),
    };
    let queue = cfg.queue.as_str();
    let delivery = ctx.delivery();
    let prefetch = cfg
        .prefetch
        .map(u64::from)
        .unwrap_or(delivery.batch_size as u64 * delivery.maximum_concurrency as u64)
        .min(u16::MAX as u64) as u16;
    let opened = async {
        let consume = conn.create_channel().await?;
        consume
            .basic_qos(prefetch, BasicQosOptions { global: false })
            .await?;
        let declared = consume
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let publish = conn.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let lag = conn.create_channel().await?;
        let consumer = consume
            .basic_consume(
                queue.into(),
                format!("wisp-{}", ctx.id()).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok::<_, lapin::Error>((consumer, publish, lag, declared.message_count()))
    };
    let (consumer, publish, lag_channel, depth) =
        match tokio::time::timeout(CONNECT_TIMEOUT, opened).await {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                return format!(
                    "queue {queue:?} on virtual host {:?}: {e}",
                    cfg.virtual_host
                )
            }
            Err(_) => return format!("opening queue {queue:?} timed out"),
        };
    ctx.connected();
    ctx.status(|s| s.lag = Some(depth.into()));
    backoff.reset();
    tracing::info!(trigger = %ctx.id(), url = %cfg.url, queue, prefetch, "consuming from RabbitMQ");

    // Side work of this connection only: dropped (aborted) when the session ends.
    let mut side = JoinSet::new();
    side.spawn(poll_lag(ctx.clone(), lag_channel, queue.to_string()));

    let consumer = Arc::new(Mutex::new(consumer));
    let window = delivery.window();
    let batch_size = delivery.batch_size as usize;
    let error = loop {
        while batches.try_join_next().is_some() {}
        let permit = ctx.slot().await;
        let (items, err) = gather(batch_size, window, BATCH_PAYLOAD_MAX_BYTES / 2, |wait| {
            next_delivery(consumer.clone(), wait)
        })
        .await;
        if let Some(e) = err {
            // What was gathered is unacknowledged on a channel that is gone: the broker
            // delivers it again, so it is not invoked now.
            break e;
        }
        if items.is_empty() {
            break "the consumer ended".to_string();
        }
        batches.spawn(handle_batch(shared.clone(), publish.clone(), items, permit));
    };
    drop(side);
    let _ = tokio::time::timeout(Duration::from_secs(2), conn.close(200, "OK".into())).await;
    error
}

/// The next delivery, waiting at most `wait` (forever for `None`).
async fn next_delivery(
    consumer: Arc<Mutex<Consumer>>,
    wait: Option<Duration>,
) -> Result<Option<(lapin::message::Delivery, usize)>, String> {
    let mut consumer = consumer.lock().await;
    let next = match wait {
        None => consumer.next().await,
        Some(d) => match tokio::time::timeout(d, consumer.next()).await {
            Ok(n) => n,
            Err(_) => return Ok(None),
        },
    };
    match next {
        Some(Ok(d)) => {
            let size = d.data.len() + 512;
            Ok(Some((d, size)))
        }
        Some(Err(e)) => Err(format!("consuming: {e}")),
        None => Err("the broker cancelled the consumer".into()),
    }
}

/// Invokes the function with one batch and acknowledges it afterwards.
async fn handle_batch(
    shared: Arc<Shared>,
    publish: Channel,
    items: Vec<lapin::message::Delivery>,
    permit: OwnedSemaphorePermit,
) {
    let ctx = &shared.ctx;
    let messages = items
        .iter()
        .map(|d| event::message(&d.properties, d.redelivered, &d.data))
        .collect();
    let event = event::event(
        &shared.source_arn,
        &shared.cfg.queue,
        &shared.cfg.virtual_host,
        messages,
    );
    let outcome = ctx.deliver(&event).await;
    // The event (maybe megabytes) is not needed past this point.
    drop(event);
    if let Delivered::ToBrokerDestination {
        destination,
        record,
    } = outcome
    {
        if let Err(e) = publish_failure(ctx, &publish, &destination, &record).await {
            tracing::warn!(trigger = %ctx.id(), error = %e, "failure record not published; the batch stays unacknowledged and is delivered again");
            return;
        }
        ctx.dead_lettered();
    }
    for d in &items {
        if let Err(e) = d.acker.ack(BasicAckOptions { multiple: false }).await {
            // The channel is gone: the broker delivers the rest again.
            tracing::debug!(trigger = %ctx.id(), error = %e, "ack failed");
            break;
        }
    }
    drop(permit);
}

/// Publishes a failure record to a queue on the broker (default exchange, persistent,
/// mandatory, confirmed). Retries while the channel lives; an error means the channel is
/// gone, and with it the batch's deliveries.
async fn publish_failure(
    ctx: &Ctx,
    channel: &Channel,
    queue: &str,
    record: &Value,
) -> Result<(), String> {
    let body = record.to_string();
    let mut backoff = Backoff::new(Duration::from_millis(500));
    loop {
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                body.as_bytes(),
                BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_content_type("application/json".into()),
            )
            .await
            .map_err(|e| format!("publishing to failure queue {queue:?}: {e}"))?
            .await
            .map_err(|e| format!("publishing to failure queue {queue:?}: {e}"))?;
        let problem = match confirm {
            Confirmation::Ack(None) => return Ok(()),
            Confirmation::Ack(Some(_)) => format!(
                "failure destination {queue:?}: no such queue on the broker (the record was returned)"
            ),
            Confirmation::Nack(_) => format!("failure destination {queue:?}: the broker refused the record"),
            Confirmation::NotRequested => return Ok(()),
        };
        ctx.status(|s| s.last_error = Some(problem.clone()));
        tracing::warn!(trigger = %ctx.id(), error = %problem, "retrying the failure record");
        backoff.wait().await;
        if !channel.status().connected() {
            return Err("the channel closed".into());
        }
    }
}

/// Reads the queue's depth (messages ready) for the status, until the session ends.
async fn poll_lag(ctx: Ctx, channel: Channel, queue: String) {
    loop {
        tokio::time::sleep(LAG_EVERY).await;
        let declared = channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        match declared {
            Ok(q) => ctx.status(|s| s.lag = Some(q.message_count().into())),
            Err(_) => return,
        }
    }
}

async fn connect(cfg: &AmqpConfig) -> Result<Connection, String> {
    let endpoint = cfg.endpoint().map_err(|e| e.to_string())?;
    let mut userinfo = AMQPUserInfo::default();
    if let Some(u) = &cfg.username {
        userinfo.username = u.clone();
        userinfo.password = cfg.password.clone().unwrap_or_default();
    }
    let uri = AMQPUri {
        scheme: if endpoint.tls {
            AMQPScheme::AMQPS
        } else {
            AMQPScheme::AMQP
        },
        authority: AMQPAuthority {
            userinfo,
            host: endpoint.host.clone(),
            port: endpoint.port,
        },
        vhost: cfg.virtual_host.clone(),
        query: AMQPQueryString {
            heartbeat: Some(HEARTBEAT_SECS),
            connection_timeout: Some(CONNECT_TIMEOUT.as_millis() as u64),
            ..Default::default()
        },
    };
    let tls = tls_config(cfg)?;
    let runtime = lapin::runtime::default_runtime().map_err(|e| e.to_string())?;
    let props = ConnectionProperties::default().with_connection_name("wisp".into());
    Connection::connect_uri_with_config(uri, props, tls, runtime)
        .await
        .map_err(|e| format!("connecting to {}: {e}", cfg.url))
}

fn tls_config(cfg: &AmqpConfig) -> Result<OwnedTLSConfig, String> {
    let mut out = OwnedTLSConfig::default();
    let Some(tls) = cfg.tls.as_ref().filter(|t| t.enabled) else {
        return Ok(out);
    };
    let read = |what: &str, path: &str| {
        std::fs::read(path).map_err(|e| format!("reading Tls.{what} {path}: {e}"))
    };
    if let Some(ca) = &tls.ca_file {
        let pem = read("CaFile", ca)?;
        out.cert_chain =
            Some(String::from_utf8(pem).map_err(|_| format!("Tls.CaFile {ca} is not PEM"))?);
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert_file, &tls.client_key_file) {
        out.identity = Some(OwnedIdentity::PKCS8 {
            pem: read("ClientCertFile", cert)?,
            key: read("ClientKeyFile", key)?,
        });
    }
    Ok(out)
}
