//! Stream entries as Redis returns them, and the event a batch of them becomes.
//!
//! Replies are read from raw [`redis::Value`]s rather than the crate's typed stream
//! replies, because those key fields by `String` in a `HashMap`: field names and values
//! of a stream entry are binary-safe and may repeat, and the event must keep them exactly.

use redis::Value;
use serde_json::{json, Map, Value as Json};
use wisp_triggers::connect::b64;

/// One stream entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub id: String,
    /// Field/value pairs in the entry's order; `None` for an entry that was deleted
    /// (XDEL, trimming) while it was pending.
    pub fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    pub delivery_count: u64,
}

impl Entry {
    /// Bytes the entry adds to an event (base64 grows them by a third).
    pub fn size(&self) -> usize {
        let raw: usize = self
            .fields
            .iter()
            .flatten()
            .map(|(k, v)| k.len() + v.len())
            .sum();
        raw * 4 / 3 + self.id.len() + 64
    }

    /// The entry in the event: `fields` maps each field name to its base64 value. When
    /// that cannot keep the entry exactly — a field name that is not UTF-8, or a name that
    /// repeats — `rawFields` carries every `[name, value]` pair, both base64, in order.
    pub fn to_json(&self) -> Json {
        let pairs = self.fields.as_deref().unwrap_or_default();
        let mut fields = Map::new();
        let mut exact = true;
        for (k, v) in pairs {
            match std::str::from_utf8(k) {
                Ok(name) if !fields.contains_key(name) => {
                    fields.insert(name.to_string(), Json::String(b64(v)));
                }
                _ => exact = false,
            }
        }
        let mut rec = json!({
            "id": self.id,
            "timestamp": id_millis(&self.id),
            "fields": fields,
            "deliveryCount": self.delivery_count,
        });
        if !exact {
            rec["rawFields"] = pairs.iter().map(|(k, v)| json!([b64(k), b64(v)])).collect();
        }
        rec
    }
}

/// The milliseconds part of a stream id (`<ms>-<seq>`).
fn id_millis(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

/// The event for a batch.
pub fn event(url: &str, stream: &str, group: &str, consumer: &str, entries: &[Entry]) -> Json {
    json!({
        "eventSource": "wisp:redis",
        "url": url,
        "stream": stream,
        "group": group,
        "consumer": consumer,
        "records": entries.iter().map(Entry::to_json).collect::<Vec<_>>(),
    })
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.clone().into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

pub fn string(v: &Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b).ok())
}

pub fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => string(other)?.parse().ok(),
    }
}

/// The elements of an array, or the key/value pairs of a map flattened (RESP3).
pub fn items(v: &Value) -> Option<Vec<Value>> {
    match v {
        Value::Array(a) | Value::Set(a) => Some(a.clone()),
        Value::Map(m) => Some(m.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect()),
        _ => None,
    }
}

/// One entry: `[id, [field, value, ...]]` (the list is nil for a deleted entry).
fn entry(v: &Value) -> Result<Entry, String> {
    let parts = items(v).ok_or("a stream entry is not an array")?;
    let id = parts
        .first()
        .and_then(string)
        .ok_or("a stream entry has no id")?;
    let fields = match parts.get(1) {
        None | Some(Value::Nil) => None,
        Some(list) => {
            let flat = items(list).ok_or("a stream entry's fields are not an array")?;
            let mut pairs = Vec::with_capacity(flat.len() / 2);
            for kv in flat.chunks(2) {
                match kv {
                    [k, v] => pairs.push((
                        bytes(k).ok_or("a field name is not a string")?,
                        bytes(v).ok_or("a field value is not a string")?,
                    )),
                    _ => return Err("a stream entry has an odd number of fields".into()),
                }
            }
            Some(pairs)
        }
    };
    Ok(Entry {
        id,
        fields,
        delivery_count: 1,
    })
}

/// A list of entries.
pub fn entries(v: &Value) -> Result<Vec<Entry>, String> {
    match v {
        Value::Nil => Ok(Vec::new()),
        v => items(v)
            .ok_or("a list of stream entries is not an array")?
            .iter()
            .map(entry)
            .collect(),
    }
}

/// An XREADGROUP reply for one stream: nil (timed out) or `[[stream, [entries]]]`.
pub fn xreadgroup(v: &Value) -> Result<Vec<Entry>, String> {
    let streams = match v {
        Value::Nil => return Ok(Vec::new()),
        v => items(v).ok_or("XREADGROUP replied with something else than an array")?,
    };
    let mut out = Vec::new();
    // RESP2: [[name, entries], ...]; RESP3 map flattened: [name, entries, ...].
    if streams.len() == 2 && !matches!(streams[0], Value::Array(_)) {
        out.extend(entries(&streams[1])?);
    } else {
        for s in &streams {
            let pair = items(s).ok_or("XREADGROUP stream reply is not an array")?;
            if let Some(list) = pair.get(1) {
                out.extend(entries(list)?);
            }
        }
    }
    Ok(out)
}

/// An XAUTOCLAIM reply: `[next cursor, [entries], [deleted ids]]`.
pub fn xautoclaim(v: &Value) -> Result<(String, Vec<Entry>), String> {
    let parts = items(v).ok_or("XAUTOCLAIM replied with something else than an array")?;
    let cursor = parts
        .first()
        .and_then(string)
        .ok_or("XAUTOCLAIM gave no cursor")?;
    let found = match parts.get(1) {
        Some(list) => entries(list)?,
        None => Vec::new(),
    };
    Ok((cursor, found))
}

/// An XPENDING (extended form) reply: `[[id, consumer, idle ms, deliveries], ...]`.
pub fn xpending_counts(v: &Value) -> Vec<(String, u64)> {
    items(v)
        .unwrap_or_default()
        .iter()
        .filter_map(|row| {
            let row = items(row)?;
            Some((string(row.first()?)?, int(row.get(3)?)? as u64))
        })
        .collect()
}

/// From an XINFO GROUPS reply, one group's `pending` and `lag` (Redis 7; nil when Redis
/// cannot tell, after deletions).
pub fn group_info(v: &Value, group: &str) -> Option<(u64, Option<u64>)> {
    for g in items(v)? {
        let kv = items(&g)?;
        let mut name = None;
        let (mut pending, mut lag) = (0u64, None);
        for pair in kv.chunks(2) {
            if let [k, v] = pair {
                match string(k).as_deref() {
                    Some("name") => name = string(v),
                    Some("pending") => pending = int(v).unwrap_or(0).max(0) as u64,
                    Some("lag") => lag = int(v).map(|l| l.max(0) as u64),
                    _ => {}
                }
            }
        }
        if name.as_deref() == Some(group) {
            return Some((pending, lag));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bs(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    #[test]
    fn reads_xreadgroup_and_builds_the_event() {
        let reply = Value::Array(vec![Value::Array(vec![
            bs(b"s"),
            Value::Array(vec![
                Value::Array(vec![
                    bs(b"1700000000000-0"),
                    Value::Array(vec![
                        bs(b"data"),
                        bs(b"{\"id\":1}"),
                        bs(b"x"),
                        bs(&[0xff, 0]),
                    ]),
                ]),
                Value::Array(vec![bs(b"1700000000001-3"), Value::Nil]),
            ]),
        ])]);
        let got = xreadgroup(&reply).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].fields, None);
        let ev = event("redis://h:1/0", "s", "g", "c", &got[..1]);
        let rec = &ev["records"][0];
        assert_eq!(rec["id"], "1700000000000-0");
        assert_eq!(rec["timestamp"], 1700000000000u64);
        assert_eq!(rec["fields"]["data"], b64(b"{\"id\":1}"));
        assert_eq!(rec["fields"]["x"], b64(&[0xff, 0]));
        assert!(rec.get("rawFields").is_none());
        assert_eq!(xreadgroup(&Value::Nil).unwrap(), vec![]);
    }

    #[test]
    fn keeps_repeated_and_binary_field_names_exactly() {
        let e = Entry {
            id: "1-1".into(),
            fields: Some(vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"a".to_vec(), b"2".to_vec()),
                (vec![0xc3], b"3".to_vec()),
            ]),
            delivery_count: 2,
        };
        let j = e.to_json();
        assert_eq!(j["fields"]["a"], b64(b"1"));
        assert_eq!(j["rawFields"][1], json!([b64(b"a"), b64(b"2")]));
        assert_eq!(j["rawFields"][2], json!([b64(&[0xc3]), b64(b"3")]));
        assert_eq!(j["deliveryCount"], 2);
    }

    #[test]
    fn refuses_malformed_replies() {
        assert!(xreadgroup(&Value::Int(3)).is_err());
        let odd = Value::Array(vec![Value::Array(vec![
            bs(b"s"),
            Value::Array(vec![Value::Array(vec![
                bs(b"1-1"),
                Value::Array(vec![bs(b"a")]),
            ])]),
        ])]);
        assert!(xreadgroup(&odd).is_err());
    }

    #[test]
    fn reads_group_info() {
        let reply = Value::Array(vec![Value::Array(vec![
            bs(b"name"),
            bs(b"g"),
            bs(b"pending"),
            Value::Int(4),
            bs(b"lag"),
            Value::Int(10),
        ])]);
        assert_eq!(group_info(&reply, "g"), Some((4, Some(10))));
        assert_eq!(group_info(&reply, "h"), None);
    }
}
