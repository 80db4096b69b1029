//! One connection to the broker, MQTT 3.1.1 or 5, behind one interface: rumqttc has a
//! client and an event loop per protocol version, with their own packet types.
//!
//! The event loop must be polled all the time — it sends the keep-alive pings and writes
//! the acknowledgements the client queues — so it runs in a task of its own (the *pump*)
//! that turns what arrives into [`Inbound`]s on a bounded channel. The broker is asked to
//! hold back (MQTT 5 Receive Maximum) but not trusted to: when the channel is full the pump
//! stops polling and TCP holds the rest back on the broker. Acknowledgements and failure
//! records never wait for the pump (a deep request queue; a connection of their own).

use std::time::Duration;

use bytes::Bytes;
use rumqttc::{TlsConfiguration, Transport};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use wisp_triggers::connect::b64;

use crate::config::{Config, Endpoint};

/// Acknowledgements (and subscribe requests) that may wait for the event loop.
const ACK_QUEUE: usize = 65_536;

/// The largest message wisp accepts from the broker.
pub const MAX_PACKET_BYTES: usize = 64 * 1024 * 1024;

/// A received message, with what is needed to acknowledge it.
#[derive(Debug, Clone)]
pub enum Raw {
    V4(rumqttc::Publish),
    V5(rumqttc::v5::mqttbytes::v5::Publish),
}

impl Raw {
    pub fn payload_len(&self) -> usize {
        match self {
            Raw::V4(p) => p.payload.len() + p.topic.len(),
            Raw::V5(p) => p.payload.len() + p.topic.len(),
        }
    }

    /// The message in the event.
    pub fn to_json(&self) -> Value {
        match self {
            Raw::V4(p) => json!({
                "topic": p.topic,
                "qos": p.qos as u8,
                "retain": p.retain,
                "dup": p.dup,
                "payload": b64(&p.payload),
                "properties": {},
            }),
            Raw::V5(p) => json!({
                "topic": String::from_utf8_lossy(&p.topic),
                "qos": p.qos as u8,
                "retain": p.retain,
                "dup": p.dup,
                "payload": b64(&p.payload),
                "properties": p.properties.as_ref().map(properties).unwrap_or_default(),
            }),
        }
    }
}

/// MQTT 5 publish properties, with the names Lambda-style events use (camelCase).
fn properties(p: &rumqttc::v5::mqttbytes::v5::PublishProperties) -> Value {
    let mut m = Map::new();
    if let Some(v) = p.payload_format_indicator {
        m.insert("payloadFormatIndicator".into(), json!(v));
    }
    if let Some(v) = p.message_expiry_interval {
        m.insert("messageExpiryInterval".into(), json!(v));
    }
    if let Some(v) = &p.content_type {
        m.insert("contentType".into(), json!(v));
    }
    if let Some(v) = &p.response_topic {
        m.insert("responseTopic".into(), json!(v));
    }
    if let Some(v) = &p.correlation_data {
        m.insert("correlationData".into(), json!(b64(v)));
    }
    if !p.user_properties.is_empty() {
        // Pairs, not an object: a user property name may repeat.
        let pairs: Vec<Value> = p
            .user_properties
            .iter()
            .map(|(k, v)| json!([k, v]))
            .collect();
        m.insert("userProperties".into(), Value::Array(pairs));
    }
    if !p.subscription_identifiers.is_empty() {
        m.insert(
            "subscriptionIdentifiers".into(),
            json!(p.subscription_identifiers),
        );
    }
    Value::Object(m)
}

/// What the pump hands over.
#[derive(Debug)]
pub enum Inbound {
    /// The broker accepted the connection; whether it had kept our session.
    Connected {
        session_present: bool,
    },
    Message(Raw),
    /// The broker granted every subscription.
    Subscribed,
    /// Filters the broker refused to subscribe.
    SubscribeRefused(Vec<String>),
    /// The connection is gone (or was refused); the session must start over.
    Down(String),
}

/// The client half of a connection.
#[derive(Clone)]
pub enum Client {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

impl Client {
    pub async fn subscribe(&self, topics: &[String], qos: u8) -> Result<(), String> {
        match self {
            Client::V4(c) => {
                let q = rumqttc::qos(qos).map_err(|e| e.to_string())?;
                c.subscribe_many(
                    topics
                        .iter()
                        .map(|t| rumqttc::SubscribeFilter::new(t.clone(), q)),
                )
                .await
                .map_err(|e| format!("subscribing: {e}"))
            }
            Client::V5(c) => {
                let q = rumqttc::v5::mqttbytes::qos(qos).ok_or("bad QoS")?;
                c.subscribe_many(
                    topics
                        .iter()
                        .map(|t| rumqttc::v5::mqttbytes::v5::Filter::new(t.clone(), q)),
                )
                .await
                .map_err(|e| format!("subscribing: {e}"))
            }
        }
    }

    /// Queues the acknowledgement (PUBACK, or PUBREC for QoS 2) of a message.
    pub async fn ack(&self, raw: &Raw) -> Result<(), String> {
        match (self, raw) {
            (Client::V4(c), Raw::V4(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            (Client::V5(c), Raw::V5(p)) => c.ack(p).await.map_err(|e| e.to_string()),
            _ => Err("a message acknowledged on the wrong connection".into()),
        }
        .map_err(|e| format!("acknowledging: {e}"))
    }
}

async fn transport(cfg: &Config, ep: &Endpoint) -> Result<Option<Transport>, String> {
    if !ep.tls {
        return Ok(None);
    }
    let path = cfg
        .tls
        .as_ref()
        .and_then(|t| t.ca_file.clone())
        .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
    let ca = tokio::fs::read(&path)
        .await
        .map_err(|e| format!("reading the CA file {path}: {e}"))?;
    Ok(Some(Transport::tls_with_config(TlsConfiguration::Simple {
        ca,
        alpn: None,
        client_auth: None,
    })))
}

/// Connects (lazily: the event loop connects on its first poll) and starts the pump.
/// `window` is how many unacknowledged messages may be held (the channel's size, and
/// MQTT 5's Receive Maximum).
pub async fn open(
    cfg: &Config,
    client_id: &str,
    window: usize,
    tasks: &mut tokio::task::JoinSet<()>,
) -> Result<(Client, mpsc::Receiver<Inbound>), String> {
    let ep = cfg.endpoint().map_err(|e| e.message)?;
    let transport = transport(cfg, &ep).await?;
    let window = window.clamp(1, 65_535);
    // The channel holds what arrived and is not yet in a batch. MQTT 5's Receive Maximum
    // (= `window`) should bound what the broker sends unacknowledged and MQTT 3.1.1 leaves it
    // to the broker's own window — but a broker may send more (mosquitto 2.0.11 honours the
    // Receive Maximum only until the first PUBACK, then sends its whole queue). So the
    // channel is bounded on its own: when it is full the pump stops polling and TCP holds
    // the rest back on the broker.
    let capacity = window.max(1024) + 8;
    let (tx, rx) = mpsc::channel(capacity);
    // Acknowledgements queue here until the event loop writes them, which it does one per
    // poll while it may read many messages per poll: room for many, so that a batch's
    // acknowledgements do not wait for the pump (which may be waiting for the channel).
    let requests = ACK_QUEUE;
    let addr = format!("{}:{}", ep.host, ep.port);
    let keep_alive = Duration::from_secs(cfg.keep_alive_seconds.into());
    let client = if cfg.protocol_version == 5 {
        let mut o = rumqttc::v5::MqttOptions::new(client_id, ep.host.clone(), ep.port);
        o.set_keep_alive(keep_alive)
            .set_clean_start(false)
            .set_session_expiry_interval(Some(cfg.session_expiry_seconds))
            .set_receive_maximum(Some(window as u16))
            .set_max_packet_size(Some(MAX_PACKET_BYTES as u32))
            .set_manual_acks(true)
            .set_connection_timeout(10)
            .set_request_channel_capacity(requests);
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            o.set_credentials(u.clone(), p.clone());
        }
        if let Some(t) = transport {
            o.set_transport(t);
        }
        let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(o, requests);
        let addr = addr.clone();
        tasks.spawn(async move {
            use rumqttc::v5::mqttbytes::v5::{Packet, SubscribeReasonCode};
            use rumqttc::v5::Event;
            loop {
                let inbound = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(c))) => Inbound::Connected {
                        session_present: c.session_present,
                    },
                    Ok(Event::Incoming(Packet::Publish(p))) => Inbound::Message(Raw::V5(p)),
                    Ok(Event::Incoming(Packet::SubAck(s))) => {
                        let refused: Vec<String> = s
                            .return_codes
                            .iter()
                            .filter(|c| !matches!(c, SubscribeReasonCode::Success(_)))
                            .map(|c| format!("{c:?}"))
                            .collect();
                        if refused.is_empty() {
                            Inbound::Subscribed
                        } else {
                            Inbound::SubscribeRefused(refused)
                        }
                    }
                    Ok(Event::Incoming(Packet::Disconnect(d))) => {
                        Inbound::Down(format!("the broker disconnected: {:?}", d.reason_code))
                    }
                    Ok(_) => continue,
                    Err(e) => Inbound::Down(format!("{addr}: {e}")),
                };
                let down = matches!(inbound, Inbound::Down(_));
                if tx.send(inbound).await.is_err() || down {
                    return;
                }
            }
        });
        Client::V5(client)
    } else {
        let mut o = rumqttc::MqttOptions::new(client_id, ep.host.clone(), ep.port);
        o.set_keep_alive(keep_alive)
            .set_clean_session(false)
            .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
            .set_manual_acks(true)
            .set_request_channel_capacity(requests);
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            o.set_credentials(u.clone(), p.clone());
        }
        if let Some(t) = transport {
            o.set_transport(t);
        }
        let (client, mut eventloop) = rumqttc::AsyncClient::new(o, requests);
        eventloop.network_options.set_connection_timeout(10);
        let addr = addr.clone();
        tasks.spawn(async move {
            use rumqttc::{Event, Packet, SubscribeReasonCode};
            loop {
                let inbound = match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(c))) => Inbound::Connected {
                        session_present: c.session_present,
                    },
                    Ok(Event::Incoming(Packet::Publish(p))) => Inbound::Message(Raw::V4(p)),
                    Ok(Event::Incoming(Packet::SubAck(s))) => {
                        let refused = s
                            .return_codes
                            .iter()
                            .filter(|c| matches!(c, SubscribeReasonCode::Failure))
                            .count();
                        if refused == 0 {
                            Inbound::Subscribed
                        } else {
                            Inbound::SubscribeRefused(vec![format!("{refused} topic filter(s)")])
                        }
                    }
                    Ok(_) => continue,
                    Err(e) => Inbound::Down(format!("{addr}: {e}")),
                };
                let down = matches!(inbound, Inbound::Down(_));
                if tx.send(inbound).await.is_err() || down {
                    return;
                }
            }
        });
        Client::V4(client)
    };
    Ok((client, rx))
}

/// Publishes one message with QoS 1 on a connection of its own and waits for the broker's
/// PUBACK: the failure records. Its own connection, because the consuming one's event loop
/// may be waiting for room to hand over a message, and a PUBACK must not wait for that.
/// Callers take turns (one client id, `<ClientId>-failures`).
pub async fn publish_confirmed(
    cfg: &Config,
    client_id: &str,
    topic: &str,
    payload: Vec<u8>,
) -> Result<(), String> {
    let ep = cfg.endpoint().map_err(|e| e.message)?;
    let transport = transport(cfg, &ep).await?;
    let id = format!("{client_id}-failures");
    let keep_alive = Duration::from_secs(cfg.keep_alive_seconds.into());
    let once = async {
        if cfg.protocol_version == 5 {
            use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
            use rumqttc::v5::Event;
            let mut o = rumqttc::v5::MqttOptions::new(id, ep.host.clone(), ep.port);
            o.set_keep_alive(keep_alive)
                .set_clean_start(true)
                .set_max_packet_size(Some(MAX_PACKET_BYTES as u32))
                .set_connection_timeout(10);
            if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
                o.set_credentials(u.clone(), p.clone());
            }
            if let Some(t) = transport {
                o.set_transport(t);
            }
            let (client, mut eventloop) = rumqttc::v5::AsyncClient::new(o, 8);
            client
                .publish(
                    topic,
                    rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                    false,
                    Bytes::from(payload),
                )
                .await
                .map_err(|e| e.to_string())?;
            let mut sent = None;
            loop {
                match eventloop.poll().await.map_err(|e| e.to_string())? {
                    Event::Outgoing(rumqttc::Outgoing::Publish(pkid)) => sent = Some(pkid),
                    Event::Incoming(Packet::PubAck(a)) if Some(a.pkid) == sent => {
                        return match a.reason {
                            PubAckReason::Success | PubAckReason::NoMatchingSubscribers => Ok(()),
                            other => Err(format!("the broker refused it: {other:?}")),
                        };
                    }
                    _ => {}
                }
            }
        } else {
            use rumqttc::{Event, Packet};
            let mut o = rumqttc::MqttOptions::new(id, ep.host.clone(), ep.port);
            // A failure record holds a whole batch: rumqttc's default limit is 10 KiB.
            o.set_keep_alive(keep_alive)
                .set_clean_session(true)
                .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
            if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
                o.set_credentials(u.clone(), p.clone());
            }
            if let Some(t) = transport {
                o.set_transport(t);
            }
            let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 8);
            eventloop.network_options.set_connection_timeout(10);
            client
                .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
                .await
                .map_err(|e| e.to_string())?;
            let mut sent = None;
            loop {
                match eventloop.poll().await.map_err(|e| e.to_string())? {
                    Event::Outgoing(rumqttc::Outgoing::Publish(pkid)) => sent = Some(pkid),
                    Event::Incoming(Packet::PubAck(a)) if Some(a.pkid) == sent => return Ok(()),
                    _ => {}
                }
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(30), once).await {
        Ok(r) => r,
        Err(_) => Err("no PUBACK within 30 s".into()),
    }
    .map_err(|e| format!("publishing to failure topic {topic}: {e}"))
}
