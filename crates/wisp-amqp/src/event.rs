//! Lambda's RabbitMQ event shape (`aws:rmq`), built from AMQP deliveries.
//!
//! ```json
//! {"eventSource": "aws:rmq", "eventSourceArn": "arn:aws:mq:...",
//!  "rmqMessagesByQueue": {"orders::/": [{"basicProperties": {...},
//!      "redelivered": false, "data": "<base64 body>"}]}}
//! ```
//! As Lambda does: the body is always base64; string header values are
//! `{"bytes": [..]}` (AMQP long strings are bytes); absent string properties are `null`;
//! `deliveryMode` and `priority` are `0` when absent; `timestamp` is formatted like
//! `"Jan 1, 1970, 12:33:41 AM"` (UTC).

use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde_json::{json, Map, Value};
use wisp_triggers::connect::b64;

/// One message as the event carries it.
pub fn message(properties: &BasicProperties, redelivered: bool, data: &[u8]) -> Value {
    let s = |v: &Option<lapin::types::ShortString>| -> Value {
        v.as_ref()
            .map_or(Value::Null, |s| Value::String(s.as_str().to_string()))
    };
    json!({
        "basicProperties": {
            "contentType": s(properties.content_type()),
            "contentEncoding": s(properties.content_encoding()),
            "headers": properties.headers().as_ref().map_or(Value::Null, table),
            "deliveryMode": properties.delivery_mode().unwrap_or(0),
            "priority": properties.priority().unwrap_or(0),
            "correlationId": s(properties.correlation_id()),
            "replyTo": s(properties.reply_to()),
            "expiration": s(properties.expiration()),
            "messageId": s(properties.message_id()),
            "timestamp": properties.timestamp().map_or(Value::Null, |t| Value::String(java_date(t))),
            "type": s(properties.kind()),
            "userId": s(properties.user_id()),
            "appId": s(properties.app_id()),
            "clusterId": s(properties.cluster_id()),
            "bodySize": data.len(),
        },
        "redelivered": redelivered,
        "data": b64(data),
    })
}

/// The whole event for one batch of one queue.
pub fn event(source_arn: &str, queue: &str, vhost: &str, messages: Vec<Value>) -> Value {
    let mut by_queue = Map::new();
    by_queue.insert(format!("{queue}::{vhost}"), Value::Array(messages));
    json!({
        "eventSource": "aws:rmq",
        "eventSourceArn": source_arn,
        "rmqMessagesByQueue": by_queue,
    })
}

fn table(t: &FieldTable) -> Value {
    Value::Object(
        t.inner()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), value(v)))
            .collect(),
    )
}

fn bytes(b: &[u8]) -> Value {
    json!({ "bytes": b })
}

/// An AMQP field value as Lambda's JSON shows it: strings as bytes, numbers as numbers.
fn value(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Float(n) => json!(n),
        AMQPValue::Double(n) => json!(n),
        AMQPValue::DecimalValue(d) => {
            json!(f64::from(d.value) / 10f64.powi(i32::from(d.scale)))
        }
        AMQPValue::ShortString(s) => bytes(s.as_str().as_bytes()),
        AMQPValue::LongString(s) => bytes(s.as_bytes()),
        AMQPValue::ByteArray(b) => bytes(b.as_slice()),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(value).collect()),
        AMQPValue::Timestamp(t) => json!(t),
        AMQPValue::FieldTable(t) => table(t),
        AMQPValue::Void => Value::Null,
    }
}

/// Seconds since the epoch as Java's default medium date-time ("Jan 1, 1970, 12:33:41 AM"),
/// which is what Lambda's RabbitMQ events carry.
fn java_date(secs: u64) -> String {
    let Ok(ts) = jiff::Timestamp::from_second(secs.min(i64::MAX as u64) as i64) else {
        return secs.to_string();
    };
    ts.strftime("%b %-d, %Y, %-I:%M:%S %p").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{LongString, ShortString};

    #[test]
    fn shapes_a_message_like_lambda() {
        let mut headers = FieldTable::default();
        headers.insert(
            ShortString::from("header1"),
            AMQPValue::LongString(LongString::from("value1")),
        );
        headers.insert(ShortString::from("numberInHeader"), AMQPValue::LongInt(10));
        let props = BasicProperties::default()
            .with_content_type("text/plain".into())
            .with_headers(headers)
            .with_delivery_mode(1)
            .with_priority(34)
            .with_expiration("60000".into())
            .with_timestamp(2021);
        let m = message(&props, false, b"\xff\x00not json");
        assert_eq!(
            m,
            json!({
                "basicProperties": {
                    "contentType": "text/plain", "contentEncoding": null,
                    "headers": {"header1": {"bytes": [118, 97, 108, 117, 101, 49]}, "numberInHeader": 10},
                    "deliveryMode": 1, "priority": 34, "correlationId": null, "replyTo": null,
                    "expiration": "60000", "messageId": null,
                    "timestamp": "Jan 1, 1970, 12:33:41 AM",
                    "type": null, "userId": null, "appId": null, "clusterId": null, "bodySize": 10
                },
                "redelivered": false,
                "data": "/wBub3QganNvbg=="
            })
        );
        let e = event("arn:x", "test", "/", vec![m]);
        assert_eq!(e["eventSource"], "aws:rmq");
        assert!(e["rmqMessagesByQueue"]["test::/"].is_array());
    }

    #[test]
    fn afternoon_dates() {
        assert_eq!(java_date(1_700_000_000), "Nov 14, 2023, 10:13:20 PM");
    }
}
