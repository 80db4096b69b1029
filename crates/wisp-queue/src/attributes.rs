//! A queue's settings and the `Attributes` map that CreateQueue, SetQueueAttributes and
//! GetQueueAttributes speak: every value is a string there, parsed and checked here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{clip, ErrorKind, QueueError, Result};
use crate::limits::{
    DELAY_MAX_S, MAX_RECEIVE_COUNT_MAX, MESSAGE_MAX_BYTES, MESSAGE_MIN_LIMIT_BYTES,
    OPAQUE_ATTRIBUTE_MAX_BYTES, RECEIVE_WAIT_MAX_S, RETENTION_MAX_S, RETENTION_MIN_S,
    VISIBILITY_TIMEOUT_MAX_S,
};
use crate::names;

/// A queue's settings. Stored as JSON; fields added later take their defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueSettings {
    pub visibility_timeout_s: u32,
    pub message_retention_s: u32,
    pub delay_s: u32,
    pub receive_wait_s: u32,
    pub maximum_message_size: u32,
    pub redrive_policy: Option<RedrivePolicy>,
    /// Stored and returned, not enforced (wisp's access control is its API keys).
    pub policy: Option<String>,
    /// Stored and returned, not enforced.
    pub redrive_allow_policy: Option<String>,
    /// Stored and returned; wisp does not encrypt messages at rest.
    pub sqs_managed_sse_enabled: bool,
    pub kms_master_key_id: Option<String>,
    pub kms_data_key_reuse_period_s: Option<u32>,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            visibility_timeout_s: 30,
            message_retention_s: 345_600,
            delay_s: 0,
            receive_wait_s: 0,
            maximum_message_size: MESSAGE_MAX_BYTES as u32,
            redrive_policy: None,
            policy: None,
            redrive_allow_policy: None,
            sqs_managed_sse_enabled: false,
            kms_master_key_id: None,
            kms_data_key_reuse_period_s: None,
        }
    }
}

/// Where messages go after `max_receive_count` receives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedrivePolicy {
    /// The dead-letter queue's name (same region and account).
    pub dead_letter_queue: String,
    pub max_receive_count: u32,
}

/// The attributes a client may set.
const SETTABLE: &[&str] = &[
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "Policy",
    "ReceiveMessageWaitTimeSeconds",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "VisibilityTimeout",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
];

/// Attributes computed by wisp, readable only.
const READ_ONLY: &[&str] = &[
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
];

/// Attributes of FIFO queues, which wisp does not have.
const FIFO_ONLY: &[&str] = &[
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
];

/// Every name GetQueueAttributes knows, in the order `All` lists them.
pub const READABLE: &[&str] = &[
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesDelayed",
    "ApproximateNumberOfMessagesNotVisible",
    "CreatedTimestamp",
    "DelaySeconds",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "LastModifiedTimestamp",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "Policy",
    "QueueArn",
    "ReceiveMessageWaitTimeSeconds",
    "RedriveAllowPolicy",
    "RedrivePolicy",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
];

/// Checks that `name` may be asked for with GetQueueAttributes (`All` included).
pub fn check_readable(name: &str) -> Result<()> {
    if name == "All" || READABLE.contains(&name) || FIFO_ONLY.contains(&name) {
        Ok(())
    } else {
        Err(unknown_attribute(name))
    }
}

fn unknown_attribute(name: &str) -> QueueError {
    QueueError::new(
        ErrorKind::InvalidAttributeName,
        format!("Unknown Attribute {}.", clip(name)),
    )
}

fn bad_value(name: &str, why: &str) -> QueueError {
    QueueError::new(
        ErrorKind::InvalidAttributeValue,
        format!("Invalid value for the parameter {name}: {why}."),
    )
}

fn parse_u32(name: &str, value: &str, min: u32, max: u32, unit: &str) -> Result<u32> {
    let why = format!("must be an integer from {min} to {max} ({unit})");
    if value.is_empty() || value.len() > 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_value(name, &why));
    }
    match value.parse::<u64>() {
        Ok(n) if n >= min as u64 && n <= max as u64 => Ok(n as u32),
        _ => Err(bad_value(name, &why)),
    }
}

fn opaque_json(name: &str, value: &str) -> Result<String> {
    if value.len() > OPAQUE_ATTRIBUTE_MAX_BYTES {
        return Err(bad_value(
            name,
            &format!("longer than {OPAQUE_ATTRIBUTE_MAX_BYTES} bytes"),
        ));
    }
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(serde_json::Value::Object(_)) => Ok(value.to_string()),
        _ => Err(bad_value(name, "must be a JSON object")),
    }
}

fn parse_redrive_policy(region: &str, value: &str) -> Result<RedrivePolicy> {
    const NAME: &str = "RedrivePolicy";
    let shape =
        "must be a JSON object {\"deadLetterTargetArn\": QUEUE_ARN, \"maxReceiveCount\": N}";
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(value)
    else {
        return Err(bad_value(NAME, shape));
    };
    let mut target = None;
    let mut count = None;
    for (key, v) in &map {
        match key.as_str() {
            "deadLetterTargetArn" => target = v.as_str().map(str::to_string),
            "maxReceiveCount" => {
                let range =
                    format!("maxReceiveCount must be an integer from 1 to {MAX_RECEIVE_COUNT_MAX}");
                let n = match v {
                    serde_json::Value::Number(n) => n.as_u64(),
                    serde_json::Value::String(s) => {
                        Some(parse_u32(NAME, s, 1, MAX_RECEIVE_COUNT_MAX, "receives")? as u64)
                    }
                    _ => None,
                };
                match n {
                    Some(n) if (1..=MAX_RECEIVE_COUNT_MAX as u64).contains(&n) => {
                        count = Some(n as u32)
                    }
                    _ => return Err(bad_value(NAME, &range)),
                }
            }
            other => {
                return Err(bad_value(
                    NAME,
                    &format!("unknown key {:?}; {shape}", clip(other)),
                ))
            }
        }
    }
    let (Some(target), Some(max_receive_count)) = (target, count) else {
        return Err(bad_value(NAME, shape));
    };
    let dead_letter_queue = names::name_from_arn(region, &target)
        .map_err(|e| bad_value(NAME, &format!("deadLetterTargetArn: {}", e.message)))?;
    Ok(RedrivePolicy {
        dead_letter_queue,
        max_receive_count,
    })
}

impl QueueSettings {
    /// `self` with the client's attributes applied (CreateQueue on the defaults,
    /// SetQueueAttributes on the current settings). Nothing is applied unless all are valid.
    pub fn apply(&self, region: &str, attributes: &BTreeMap<String, String>) -> Result<Self> {
        let mut out = self.clone();
        for (name, value) in attributes {
            let name = name.as_str();
            match name {
                "VisibilityTimeout" => {
                    out.visibility_timeout_s =
                        parse_u32(name, value, 0, VISIBILITY_TIMEOUT_MAX_S, "seconds")?
                }
                "MessageRetentionPeriod" => {
                    out.message_retention_s =
                        parse_u32(name, value, RETENTION_MIN_S, RETENTION_MAX_S, "seconds")?
                }
                "DelaySeconds" => out.delay_s = parse_u32(name, value, 0, DELAY_MAX_S, "seconds")?,
                "ReceiveMessageWaitTimeSeconds" => {
                    out.receive_wait_s = parse_u32(name, value, 0, RECEIVE_WAIT_MAX_S, "seconds")?
                }
                "MaximumMessageSize" => {
                    out.maximum_message_size = parse_u32(
                        name,
                        value,
                        MESSAGE_MIN_LIMIT_BYTES,
                        MESSAGE_MAX_BYTES as u32,
                        "bytes",
                    )?
                }
                "RedrivePolicy" => {
                    out.redrive_policy = if value.is_empty() {
                        None
                    } else {
                        Some(parse_redrive_policy(region, value)?)
                    }
                }
                "Policy" => {
                    out.policy = (!value.is_empty())
                        .then(|| opaque_json(name, value))
                        .transpose()?
                }
                "RedriveAllowPolicy" => {
                    out.redrive_allow_policy = (!value.is_empty())
                        .then(|| opaque_json(name, value))
                        .transpose()?
                }
                "SqsManagedSseEnabled" => {
                    out.sqs_managed_sse_enabled = match value.as_str() {
                        "true" => true,
                        "false" => false,
                        _ => return Err(bad_value(name, "must be \"true\" or \"false\"")),
                    }
                }
                "KmsMasterKeyId" => {
                    if value.len() > 2048 {
                        return Err(bad_value(name, "longer than 2048 bytes"));
                    }
                    out.kms_master_key_id = (!value.is_empty()).then(|| value.clone());
                }
                "KmsDataKeyReusePeriodSeconds" => {
                    out.kms_data_key_reuse_period_s =
                        Some(parse_u32(name, value, 60, 86_400, "seconds")?)
                }
                "FifoQueue" if value == "false" => {}
                "FifoQueue" => {
                    return Err(QueueError::new(
                        ErrorKind::UnsupportedOperation,
                        "FIFO queues are not supported by wisp; leave out FifoQueue or set it to \"false\".",
                    ))
                }
                _ if FIFO_ONLY.contains(&name) => {
                    return Err(QueueError::new(
                        ErrorKind::InvalidAttributeName,
                        format!("Attribute {name} applies only to FIFO queues, which wisp does not support."),
                    ))
                }
                _ if READ_ONLY.contains(&name) => {
                    return Err(QueueError::new(
                        ErrorKind::InvalidAttributeName,
                        format!("Attribute {name} is computed by the queue and cannot be set."),
                    ))
                }
                _ => return Err(unknown_attribute(name)),
            }
        }
        Ok(out)
    }

    /// The value of a settable attribute as GetQueueAttributes returns it (`None`: unset).
    pub fn get(&self, region: &str, name: &str) -> Option<String> {
        Some(match name {
            "VisibilityTimeout" => self.visibility_timeout_s.to_string(),
            "MessageRetentionPeriod" => self.message_retention_s.to_string(),
            "DelaySeconds" => self.delay_s.to_string(),
            "ReceiveMessageWaitTimeSeconds" => self.receive_wait_s.to_string(),
            "MaximumMessageSize" => self.maximum_message_size.to_string(),
            "RedrivePolicy" => {
                let p = self.redrive_policy.as_ref()?;
                serde_json::json!({
                    "deadLetterTargetArn": names::queue_arn(region, &p.dead_letter_queue),
                    "maxReceiveCount": p.max_receive_count,
                })
                .to_string()
            }
            "Policy" => self.policy.clone()?,
            "RedriveAllowPolicy" => self.redrive_allow_policy.clone()?,
            "SqsManagedSseEnabled" => self.sqs_managed_sse_enabled.to_string(),
            "KmsMasterKeyId" => self.kms_master_key_id.clone()?,
            "KmsDataKeyReusePeriodSeconds" => self.kms_data_key_reuse_period_s?.to_string(),
            "FifoQueue" => "false".to_string(),
            _ => return None,
        })
    }

    /// Whether CreateQueue's `attributes` agree with these settings (the queue exists and
    /// CreateQueue is then idempotent). Only the attributes given are compared, as SQS does.
    pub fn agrees_with(&self, region: &str, attributes: &BTreeMap<String, String>) -> bool {
        let Ok(requested) = self.apply(region, attributes) else {
            return false;
        };
        attributes.keys().all(|name| {
            (SETTABLE.contains(&name.as_str())
                && self.get(region, name) == requested.get(region, name))
                || name == "FifoQueue"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "us-east-1";

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn check(pairs: &[(&str, &str)], expect: Result<(), ErrorKind>) {
        let got = QueueSettings::default().apply(R, &attrs(pairs)).map(|_| ());
        assert_eq!(got.map_err(|e| e.kind), expect, "{pairs:?}");
    }

    #[test]
    fn values_are_checked() {
        use ErrorKind::*;
        check(&[("VisibilityTimeout", "0")], Ok(()));
        check(&[("VisibilityTimeout", "43200")], Ok(()));
        check(
            &[("VisibilityTimeout", "43201")],
            Err(InvalidAttributeValue),
        );
        check(&[("VisibilityTimeout", "-1")], Err(InvalidAttributeValue));
        check(&[("VisibilityTimeout", "1.5")], Err(InvalidAttributeValue));
        check(&[("VisibilityTimeout", "")], Err(InvalidAttributeValue));
        check(
            &[("VisibilityTimeout", "99999999999999999999")],
            Err(InvalidAttributeValue),
        );
        check(
            &[("MessageRetentionPeriod", "59")],
            Err(InvalidAttributeValue),
        );
        check(&[("MessageRetentionPeriod", "1209600")], Ok(()));
        check(&[("DelaySeconds", "901")], Err(InvalidAttributeValue));
        check(
            &[("ReceiveMessageWaitTimeSeconds", "21")],
            Err(InvalidAttributeValue),
        );
        check(
            &[("MaximumMessageSize", "1023")],
            Err(InvalidAttributeValue),
        );
        check(
            &[("MaximumMessageSize", "262145")],
            Err(InvalidAttributeValue),
        );
        check(&[("Bogus", "1")], Err(InvalidAttributeName));
        check(&[("QueueArn", "x")], Err(InvalidAttributeName));
        check(&[("FifoQueue", "true")], Err(UnsupportedOperation));
        check(&[("FifoQueue", "false")], Ok(()));
        check(
            &[("ContentBasedDeduplication", "true")],
            Err(InvalidAttributeName),
        );
        check(&[("Policy", "not json")], Err(InvalidAttributeValue));
        check(&[("Policy", "{\"Version\":\"2012-10-17\"}")], Ok(()));
        check(
            &[("SqsManagedSseEnabled", "yes")],
            Err(InvalidAttributeValue),
        );
    }

    #[test]
    fn redrive_policy() {
        use ErrorKind::*;
        let arn = "arn:aws:sqs:us-east-1:000000000000:dlq";
        let ok = format!("{{\"deadLetterTargetArn\":\"{arn}\",\"maxReceiveCount\":3}}");
        let s = QueueSettings::default()
            .apply(R, &attrs(&[("RedrivePolicy", &ok)]))
            .unwrap();
        assert_eq!(
            s.redrive_policy,
            Some(RedrivePolicy {
                dead_letter_queue: "dlq".into(),
                max_receive_count: 3
            })
        );
        assert_eq!(s.get(R, "RedrivePolicy").unwrap(), ok);
        // A string count, as the console and many tools send it.
        let as_string = format!("{{\"deadLetterTargetArn\":\"{arn}\",\"maxReceiveCount\":\"5\"}}");
        check(&[("RedrivePolicy", &as_string)], Ok(()));
        for bad in [
            "x".to_string(),
            "{}".to_string(),
            format!("{{\"deadLetterTargetArn\":\"{arn}\"}}"),
            format!("{{\"deadLetterTargetArn\":\"{arn}\",\"maxReceiveCount\":0}}"),
            format!("{{\"deadLetterTargetArn\":\"{arn}\",\"maxReceiveCount\":1001}}"),
            format!("{{\"deadLetterTargetArn\":\"{arn}\",\"maxReceiveCount\":true}}"),
            format!("{{\"deadLetterTargetArn\":\"{arn}\",\"maxReceiveCount\":2,\"x\":1}}"),
            "{\"deadLetterTargetArn\":\"arn:aws:sqs:eu-west-1:000000000000:d\",\"maxReceiveCount\":2}"
                .to_string(),
        ] {
            check(&[("RedrivePolicy", &bad)], Err(InvalidAttributeValue));
        }
        // The empty string removes the policy.
        let cleared = s.apply(R, &attrs(&[("RedrivePolicy", "")])).unwrap();
        assert_eq!(cleared.redrive_policy, None);
    }

    #[test]
    fn create_is_idempotent_only_with_the_same_values() {
        let s = QueueSettings::default()
            .apply(R, &attrs(&[("VisibilityTimeout", "60")]))
            .unwrap();
        assert!(s.agrees_with(R, &attrs(&[])));
        assert!(s.agrees_with(R, &attrs(&[("VisibilityTimeout", "60")])));
        assert!(s.agrees_with(R, &attrs(&[("DelaySeconds", "0")])));
        assert!(!s.agrees_with(R, &attrs(&[("VisibilityTimeout", "30")])));
        assert!(!s.agrees_with(R, &attrs(&[("VisibilityTimeout", "x")])));
    }
}
