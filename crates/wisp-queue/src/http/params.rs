//! Request parameters: the top-level JSON object of a request, read one named, typed
//! parameter at a time, so a hostile body gets an SQS error naming the parameter.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};

use crate::error::{clip, ErrorKind, QueueError, Result};
use crate::limits::{BATCH_ENTRY_ID_MAX_CHARS, BATCH_MAX_ENTRIES};
use crate::message::{self, MessageAttributeValue, MessageAttributes};
use crate::names;
use crate::service::QueueService;
use crate::store::NewMessage;

/// A request's top-level JSON object, read one named, typed parameter at a time.
pub(super) struct Params(Map<String, Value>);

fn type_error(name: &str, expected: &str) -> QueueError {
    QueueError::invalid(format!("The parameter {name} must be {expected}."))
}

fn as_string<'a>(name: &str, v: &'a Value) -> Result<&'a str> {
    v.as_str().ok_or_else(|| type_error(name, "a string"))
}

fn as_int(name: &str, v: &Value) -> Result<i64> {
    v.as_i64().ok_or_else(|| type_error(name, "an integer"))
}

/// An integer parameter within `min..=max`.
pub(super) fn in_range(name: &str, value: i64, min: i64, max: i64) -> Result<u32> {
    if value < min || value > max {
        return Err(QueueError::invalid(format!(
            "Value {value} for parameter {name} is invalid. Reason: must be between {min} and {max}."
        )));
    }
    Ok(value as u32)
}

impl Params {
    pub(super) fn parse(bytes: &[u8]) -> Result<Self> {
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(Params(Map::new()));
        }
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(map)) => Ok(Params(map)),
            Ok(_) => Err(QueueError::invalid(
                "The request body must be a JSON object.",
            )),
            Err(e) => Err(QueueError::invalid(format!(
                "The request body is not valid JSON: {e}."
            ))),
        }
    }

    pub(super) fn from_value(name: &str, v: &Value) -> Result<Self> {
        match v {
            Value::Object(map) => Ok(Params(map.clone())),
            _ => Err(type_error(name, "an object")),
        }
    }

    /// A parameter; JSON `null` counts as absent.
    pub(super) fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub(super) fn str(&self, name: &str) -> Result<Option<&str>> {
        self.get(name).map(|v| as_string(name, v)).transpose()
    }

    pub(super) fn required_str(&self, name: &str) -> Result<&str> {
        self.str(name)?.ok_or_else(|| QueueError::missing(name))
    }

    pub(super) fn int(&self, name: &str) -> Result<Option<i64>> {
        self.get(name).map(|v| as_int(name, v)).transpose()
    }

    pub(super) fn string_list(&self, name: &str) -> Result<Option<Vec<String>>> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let list = v
            .as_array()
            .ok_or_else(|| type_error(name, "a list of strings"))?;
        if list.len() > 1000 {
            return Err(QueueError::invalid(format!("{name} has too many entries.")));
        }
        list.iter()
            .map(|item| as_string(name, item).map(str::to_string))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    pub(super) fn string_map(&self, name: &str) -> Result<Option<BTreeMap<String, String>>> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        let map = v
            .as_object()
            .ok_or_else(|| type_error(name, "a map of strings to strings"))?;
        if map.len() > 1000 {
            return Err(QueueError::invalid(format!("{name} has too many entries.")));
        }
        map.iter()
            .map(|(k, v)| Ok((k.clone(), as_string(&format!("{name}.{k}"), v)?.to_string())))
            .collect::<Result<BTreeMap<_, _>>>()
            .map(Some)
    }

    /// The queue `QueueUrl` names.
    pub(super) fn queue(&self) -> Result<String> {
        names::name_from_url(self.required_str("QueueUrl")?)
    }

    /// A batch's `Entries`: 1 to 10 objects with distinct, valid `Id`s.
    pub(super) fn entries(&self, kind: &str) -> Result<Vec<(String, Params)>> {
        let Some(v) = self.get("Entries") else {
            return Err(empty_batch(kind));
        };
        let list = v
            .as_array()
            .ok_or_else(|| type_error("Entries", "a list"))?;
        if list.is_empty() {
            return Err(empty_batch(kind));
        }
        if list.len() > BATCH_MAX_ENTRIES {
            return Err(QueueError::new(
                ErrorKind::TooManyEntriesInBatchRequest,
                format!(
                    "Maximum number of entries per request are {BATCH_MAX_ENTRIES}. You have sent {}.",
                    list.len()
                ),
            ));
        }
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(list.len());
        for item in list {
            let entry = Params::from_value("Entries[]", item)?;
            let id = entry.required_str("Id")?.to_string();
            let valid = !id.is_empty()
                && id.len() <= BATCH_ENTRY_ID_MAX_CHARS
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                return Err(QueueError::new(
                    ErrorKind::InvalidBatchEntryId,
                    format!("A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most {BATCH_ENTRY_ID_MAX_CHARS} letters long. Got {:?}.", clip(&id)),
                ));
            }
            if !seen.insert(id.clone()) {
                return Err(QueueError::new(
                    ErrorKind::BatchEntryIdsNotDistinct,
                    format!("Id {id} repeated."),
                ));
            }
            out.push((id, entry));
        }
        Ok(out)
    }

    /// `MessageAttributes`: name → {DataType, StringValue | BinaryValue}.
    pub(super) fn message_attributes(&self) -> Result<MessageAttributes> {
        let Some(v) = self.get("MessageAttributes") else {
            return Ok(MessageAttributes::new());
        };
        let map = v
            .as_object()
            .ok_or_else(|| type_error("MessageAttributes", "a map"))?;
        let mut out = MessageAttributes::new();
        for (name, value) in map {
            let field = format!("MessageAttributes.{}", clip(name));
            let value = Params::from_value(&field, value)?;
            if value.get("StringListValues").is_some() || value.get("BinaryListValues").is_some() {
                return Err(QueueError::invalid(format!(
                    "{field}: StringListValues and BinaryListValues are not supported (nor by SQS); use StringValue or BinaryValue."
                )));
            }
            let data_type = value
                .str("DataType")?
                .ok_or_else(|| QueueError::invalid(format!("{field} must have a DataType.")))?;
            let binary_value = value
                .str("BinaryValue")?
                .map(|b| message::decode_base64(&format!("{field}.BinaryValue"), b))
                .transpose()?;
            out.insert(
                name.clone(),
                MessageAttributeValue {
                    data_type: data_type.to_string(),
                    string_value: value.str("StringValue")?.map(str::to_string),
                    binary_value,
                },
            );
        }
        Ok(out)
    }

    /// `MessageSystemAttributes`: only `AWSTraceHeader` (a String) may be sent.
    pub(super) fn trace_header(&self) -> Result<Option<String>> {
        let Some(v) = self.get("MessageSystemAttributes") else {
            return Ok(None);
        };
        let map = v
            .as_object()
            .ok_or_else(|| type_error("MessageSystemAttributes", "a map"))?;
        let mut trace = None;
        for (name, value) in map {
            if name != "AWSTraceHeader" {
                return Err(QueueError::invalid(format!(
                    "Message system attribute {} is not supported: only AWSTraceHeader can be sent.",
                    clip(name)
                )));
            }
            let value = Params::from_value("MessageSystemAttributes.AWSTraceHeader", value)?;
            if value.str("DataType")? != Some("String") {
                return Err(QueueError::invalid(
                    "The AWSTraceHeader system attribute must have DataType String.",
                ));
            }
            trace = Some(
                value
                    .str("StringValue")?
                    .ok_or_else(|| {
                        QueueError::invalid(
                            "The AWSTraceHeader system attribute needs a StringValue.",
                        )
                    })?
                    .to_string(),
            );
        }
        Ok(trace)
    }

    /// A message to send from a SendMessage request or batch entry.
    pub(super) fn new_message(&self) -> Result<NewMessage> {
        if self.get("MessageDeduplicationId").is_some() {
            return Err(QueueError::invalid(
                "The request includes a parameter that is not valid for this queue type: MessageDeduplicationId applies only to FIFO queues, which wisp does not support.",
            ));
        }
        // MessageGroupId is accepted and ignored: standard queues take it for fair queueing.
        self.str("MessageGroupId")?;
        let body = self.required_str("MessageBody")?.to_string();
        let delay_s = self
            .int("DelaySeconds")?
            .map(|d| in_range("DelaySeconds", d, 0, crate::limits::DELAY_MAX_S as i64))
            .transpose()?;
        let m = NewMessage {
            body,
            attributes: self.message_attributes()?,
            trace_header: self.trace_header()?,
            delay_s,
        };
        QueueService::check_message(&m)?;
        Ok(m)
    }
}

fn empty_batch(kind: &str) -> QueueError {
    QueueError::new(
        ErrorKind::EmptyBatchRequest,
        format!("There should be at least one {kind}BatchRequestEntry in the request."),
    )
}
