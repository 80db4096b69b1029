//! Lambda's self-managed Kafka event: records grouped by `topic-partition`, keys and values
//! base64, header values as arrays of byte values.

use rdkafka::message::{Headers, Message, Timestamp};
use serde_json::{json, Map, Value};
use wisp_triggers::connect::b64;

/// One consumed record, copied out of librdkafka's buffers.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub timestamp_type: &'static str,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    pub fn from_message<M: Message>(m: &M) -> Record {
        let (timestamp, timestamp_type) = match m.timestamp() {
            Timestamp::NotAvailable => (-1, "NO_TIMESTAMP_TYPE"),
            Timestamp::CreateTime(t) => (t, "CREATE_TIME"),
            Timestamp::LogAppendTime(t) => (t, "LOG_APPEND_TIME"),
        };
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                    .collect()
            })
            .unwrap_or_default();
        Record {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp,
            timestamp_type,
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            headers,
        }
    }

    /// Roughly what the record adds to the event before base64 (for the batch budget).
    pub fn size(&self) -> usize {
        self.topic.len()
            + self.key.as_ref().map_or(0, Vec::len)
            + self.value.as_ref().map_or(0, Vec::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.len() * 4)
                .sum::<usize>()
            + 128
    }

    fn to_json(&self) -> Value {
        let headers: Vec<Value> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let mut h = Map::new();
                h.insert(k.clone(), json!(v));
                Value::Object(h)
            })
            .collect();
        let mut r = json!({
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp": self.timestamp,
            "timestampType": self.timestamp_type,
            // A tombstone (no value) is null, an empty value "".
            "value": self.value.as_deref().map(b64),
            "headers": headers,
        });
        if let Some(k) = &self.key {
            r["key"] = json!(b64(k));
        }
        r
    }
}

/// The event for a batch (records in offset order within each partition).
pub fn event(bootstrap_servers: &str, records: &[Record]) -> Value {
    let mut groups: Map<String, Value> = Map::new();
    for r in records {
        let key = format!("{}-{}", r.topic, r.partition);
        match groups
            .entry(key)
            .or_insert_with(|| Value::Array(Vec::new()))
        {
            Value::Array(list) => list.push(r.to_json()),
            _ => unreachable!("only arrays are inserted"),
        }
    }
    json!({
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": bootstrap_servers,
        "records": groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lambda_shape() {
        let r = Record {
            topic: "orders".into(),
            partition: 2,
            offset: 15,
            timestamp: 1545084650987,
            timestamp_type: "CREATE_TIME",
            key: Some(b"k1".to_vec()),
            value: Some(vec![0xff, 0x00, b'x']),
            headers: vec![("h".into(), b"va".to_vec())],
        };
        let mut tomb = r.clone();
        tomb.offset = 16;
        tomb.key = None;
        tomb.value = None;
        let e = event("a:1,b:2", &[r, tomb]);
        assert_eq!(e["eventSource"], "SelfManagedKafka");
        assert_eq!(e["bootstrapServers"], "a:1,b:2");
        let list = e["records"]["orders-2"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["key"], "azE=");
        assert_eq!(list[0]["value"], "/wB4");
        assert_eq!(list[0]["headers"], json!([{"h": [118, 97]}]));
        assert_eq!(list[0]["timestampType"], "CREATE_TIME");
        assert!(list[1].get("key").is_none());
        assert!(list[1]["value"].is_null());
    }
}
