//! The event a NATS JetStream trigger invokes its function with (`wisp:nats`), in the
//! spirit of Lambda's broker shapes: one batch of one consumer, payloads base64.
//!
//! ```json
//! {"eventSource": "wisp:nats", "eventSourceArn": "arn:wisp:nats:us-east-1:000000000000:trigger/<id>",
//!  "stream": "ORDERS", "consumer": "wisp-<id>",
//!  "messages": [{"subject": "orders.eu", "sequence": {"stream": 42, "consumer": 7},
//!                "timestamp": 1700000000123, "headers": {"Nats-Msg-Id": ["abc"]},
//!                "redelivered": false, "numDelivered": 1, "data": "eyJpZCI6IDF9"}]}
//! ```

use serde_json::{json, Map, Value};
use wisp_triggers::connect::b64;

/// What the event needs of one message.
pub struct Msg<'a> {
    pub subject: &'a str,
    pub stream_seq: u64,
    pub consumer_seq: u64,
    /// Milliseconds since the epoch when the stream stored it.
    pub timestamp_ms: i64,
    pub delivered: i64,
    pub headers: Option<&'a async_nats::HeaderMap>,
    pub data: &'a [u8],
}

pub fn message(m: &Msg<'_>) -> Value {
    let headers: Map<String, Value> = m
        .headers
        .map(|h| {
            h.iter()
                .map(|(k, vs)| {
                    let k: &str = k.as_ref();
                    (
                        k.to_string(),
                        Value::Array(vs.iter().map(|v| json!(v.as_str())).collect()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    json!({
        "subject": m.subject,
        "sequence": {"stream": m.stream_seq, "consumer": m.consumer_seq},
        "timestamp": m.timestamp_ms,
        "headers": headers,
        "redelivered": m.delivered > 1,
        "numDelivered": m.delivered,
        "data": b64(m.data),
    })
}

pub fn event(source_arn: &str, stream: &str, consumer: &str, messages: Vec<Value>) -> Value {
    json!({
        "eventSource": "wisp:nats",
        "eventSourceArn": source_arn,
        "stream": stream,
        "consumer": consumer,
        "messages": messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_a_message() {
        let mut h = async_nats::HeaderMap::new();
        h.insert("k", "v1");
        h.append("k", "v2");
        let m = message(&Msg {
            subject: "orders.eu",
            stream_seq: 42,
            consumer_seq: 7,
            timestamp_ms: 1_700_000_000_123,
            delivered: 2,
            headers: Some(&h),
            data: b"\xff\x00",
        });
        assert_eq!(
            m,
            json!({"subject": "orders.eu", "sequence": {"stream": 42, "consumer": 7},
                "timestamp": 1_700_000_000_123i64, "headers": {"k": ["v1", "v2"]},
                "redelivered": true, "numDelivered": 2, "data": "/wA="})
        );
        let e = event("arn:x", "S", "C", vec![m]);
        assert_eq!(e["eventSource"], "wisp:nats");
        assert_eq!(e["messages"].as_array().unwrap().len(), 1);
    }
}
