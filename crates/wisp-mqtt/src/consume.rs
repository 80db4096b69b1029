//! One MQTT trigger at work: a persistent session, batches of messages delivered to the
//! function, and acknowledgements (PUBACK/PUBREC) sent only after delivery, in the order
//! the messages arrived — MQTT requires that order, so a batch that finishes early waits
//! for the batches before it to be acknowledged first.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use wisp_triggers::connect::{Backoff, Ctx, Delivered, BATCH_PAYLOAD_MAX_BYTES};

use crate::config::Config;
use crate::link::{self, Client, Inbound, Raw};

/// How long the loop waits for a first message before it looks around again.
const IDLE: Duration = Duration::from_secs(2);
/// How long a batch's acknowledgements may wait to be queued.
const ACK_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the trigger until its task is aborted.
pub async fn run(ctx: Ctx, cfg: Config) {
    let client_id = cfg
        .client_id
        .clone()
        .unwrap_or_else(|| format!("wisp-{}", ctx.id()));
    let mut backoff = Backoff::new(Duration::from_millis(500));
    loop {
        let error = session(&ctx, &cfg, &client_id, &mut backoff).await;
        ctx.connection_failed(&error);
        backoff.wait().await;
    }
}

fn endpoint_label(cfg: &Config) -> String {
    match cfg.endpoint() {
        Ok(ep) => format!(
            "{}://{}:{}",
            if ep.tls { "mqtts" } else { "mqtt" },
            ep.host,
            ep.port
        ),
        Err(_) => String::new(),
    }
}

/// One connection's life; returns why it ended. Everything it started (the pump and the
/// batches in flight) stops with it: unacknowledged messages are the broker's to resend.
async fn session(ctx: &Ctx, cfg: &Config, client_id: &str, backoff: &mut Backoff) -> String {
    let d = ctx.delivery();
    let window = (d.batch_size as usize).saturating_mul(d.maximum_concurrency as usize);
    let mut tasks = JoinSet::new();
    let (client, mut rx) = match link::open(cfg, client_id, window, &mut tasks).await {
        Ok(l) => l,
        Err(e) => return e,
    };
    match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
        Ok(Some(Inbound::Connected { session_present })) => {
            tracing::info!(trigger = %ctx.id(), session_present, "MQTT connected");
        }
        Ok(Some(Inbound::Down(e))) => return e,
        Ok(_) => return "the broker did not accept the connection".into(),
        Err(_) => return "no CONNACK within 30 s".into(),
    }
    // Connected once the SUBACK comes back (through `gather`, as messages of a kept
    // session may arrive before it).
    if let Err(e) = client.subscribe(&cfg.topics, cfg.qos).await {
        return e;
    }
    let label = endpoint_label(cfg);
    let turn = Arc::new(tokio::sync::Mutex::new(()));
    let broken: Arc<Mutex<Option<String>>> = Arc::default();
    let mut previous: Option<oneshot::Receiver<()>> = None;
    loop {
        while tasks.try_join_next().is_some() {}
        if let Some(e) = broken.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return e;
        }
        let permit = ctx.slot().await;
        let batch = match gather(ctx, &mut rx).await {
            Ok(b) => b,
            Err(e) => return e,
        };
        if batch.is_empty() {
            continue;
        }
        backoff.reset();
        let event = json!({
            "eventSource": "wisp:mqtt",
            "broker": label,
            "clientId": client_id,
            "messages": batch.iter().map(Raw::to_json).collect::<Vec<Value>>(),
        });
        let (done_tx, done_rx) = oneshot::channel();
        let before = previous.replace(done_rx);
        let (ctx, client) = (ctx.clone(), client.clone());
        let (cfg, client_id) = (cfg.clone(), client_id.to_string());
        let (turn, broken) = (turn.clone(), broken.clone());
        tasks.spawn(async move {
            let _permit = permit;
            let link = (&cfg, client_id.as_str(), &client);
            let result = finish(&ctx, link, &turn, &event, &batch, before).await;
            match result {
                Ok(()) => {
                    let _ = done_tx.send(());
                }
                Err(e) => {
                    broken
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                }
            }
        });
    }
}

/// The next batch: up to BatchSize messages within the batching window and the payload
/// budget; empty when none came within [`IDLE`].
async fn gather(ctx: &Ctx, rx: &mut mpsc::Receiver<Inbound>) -> Result<Vec<Raw>, String> {
    let max = ctx.delivery().batch_size as usize;
    let budget = BATCH_PAYLOAD_MAX_BYTES / 2;
    let mut batch = Vec::new();
    let mut bytes = 0usize;
    let mut deadline: Option<Instant> = None;
    while batch.len() < max && bytes < budget {
        let next = match deadline {
            None => match tokio::time::timeout(IDLE, rx.recv()).await {
                Ok(n) => n,
                Err(_) => return Ok(batch),
            },
            Some(d) => match rx.try_recv() {
                Ok(n) => Some(n),
                Err(mpsc::error::TryRecvError::Disconnected) => None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(batch);
                    }
                    match tokio::time::timeout(left, rx.recv()).await {
                        Ok(n) => n,
                        Err(_) => return Ok(batch),
                    }
                }
            },
        };
        match next {
            Some(Inbound::Message(raw)) => {
                bytes += raw.payload_len() * 4 / 3 + 128;
                batch.push(raw);
                if deadline.is_none() {
                    deadline = Some(Instant::now() + ctx.delivery().window());
                }
            }
            Some(Inbound::Connected { .. }) => {}
            Some(Inbound::Subscribed) => ctx.connected(),
            Some(Inbound::SubscribeRefused(which)) => {
                return Err(format!(
                    "the broker refused the subscription: {}",
                    which.join(", ")
                ))
            }
            Some(Inbound::Down(e)) => return Err(e),
            None => return Err("the connection's event loop stopped".into()),
        }
    }
    Ok(batch)
}

/// Delivers one batch, then acknowledges its messages once the batch before it was.
async fn finish(
    ctx: &Ctx,
    (cfg, client_id, client): (&Config, &str, &Client),
    turn: &tokio::sync::Mutex<()>,
    event: &Value,
    batch: &[Raw],
    before: Option<oneshot::Receiver<()>>,
) -> Result<(), String> {
    match ctx.deliver(event).await {
        Delivered::Ok(_) | Delivered::SentToQueue | Delivered::Discarded => {}
        Delivered::ToBrokerDestination {
            destination,
            record,
        } => {
            let _turn = turn.lock().await;
            link::publish_confirmed(
                cfg,
                client_id,
                &destination,
                record.to_string().into_bytes(),
            )
            .await?;
            ctx.dead_lettered();
        }
    }
    if let Some(before) = before {
        before
            .await
            .map_err(|_| "an earlier batch was not acknowledged".to_string())?;
    }
    // Bounded: should the acknowledgements not get through (a broker flooding the
    // connection), the session starts over and the broker sends them again.
    let acks = async {
        for raw in batch {
            client.ack(raw).await?;
        }
        Ok::<(), String>(())
    };
    tokio::time::timeout(ACK_TIMEOUT, acks)
        .await
        .map_err(|_| "acknowledgements not taken within 60 s".to_string())??;
    Ok(())
}
