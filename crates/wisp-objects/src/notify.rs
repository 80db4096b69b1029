//! Bucket notifications: the configuration model (Lambda function configurations with
//! event types and key filters), which configurations an event matches, the S3 event
//! notification document (AWS's structure, version 2.1) and the parsing of the same
//! documents when another S3 server (MinIO, Ceph RGW, ...) posts them to a webhook.

use percent_encoding::percent_decode_str;
use s3s::dto::{
    Event, FilterRule, FilterRuleName, LambdaFunctionConfiguration, NotificationConfiguration,
    NotificationConfigurationFilter, S3KeyFilter,
};
use s3s::{s3_error, S3Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::limits::{
    EXTERNAL_NOTIFICATION_MAX_BYTES, EXTERNAL_NOTIFICATION_MAX_RECORDS, FUNCTION_ARN_MAX_BYTES,
    KEY_MAX_BYTES, NOTIFICATION_CONFIGS_MAX,
};
use crate::Error;

/// One notification to deliver: run `function_arn` with `event` (a whole S3 event
/// notification document, `{"Records": [one record]}`).
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectNotification {
    /// As written in the bucket's `LambdaFunctionConfiguration` (a function ARN, possibly
    /// qualified with a version or alias).
    pub function_arn: String,
    pub event: Value,
}

/// A stored `LambdaFunctionConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRule {
    pub id: String,
    pub function_arn: String,
    /// As configured, e.g. `s3:ObjectCreated:*`.
    pub events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
}

/// Every event type S3 accepts in a notification configuration. wisp emits the
/// `ObjectCreated` and `ObjectRemoved:Delete` ones; the others are accepted (so that
/// configurations written for S3 load) and never fire.
const KNOWN_EVENTS: &[&str] = &[
    "s3:TestEvent",
    "s3:ObjectCreated:*",
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
    "s3:ObjectRemoved:*",
    "s3:ObjectRemoved:Delete",
    "s3:ObjectRemoved:DeleteMarkerCreated",
    "s3:ObjectRestore:*",
    "s3:ObjectRestore:Post",
    "s3:ObjectRestore:Completed",
    "s3:ObjectRestore:Delete",
    "s3:ReducedRedundancyLostObject",
    "s3:Replication:*",
    "s3:Replication:OperationFailedReplication",
    "s3:Replication:OperationMissedThreshold",
    "s3:Replication:OperationReplicatedAfterThreshold",
    "s3:Replication:OperationNotTracked",
    "s3:LifecycleExpiration:*",
    "s3:LifecycleExpiration:Delete",
    "s3:LifecycleExpiration:DeleteMarkerCreated",
    "s3:LifecycleTransition",
    "s3:IntelligentTiering",
    "s3:ObjectTagging:*",
    "s3:ObjectTagging:Put",
    "s3:ObjectTagging:Delete",
    "s3:ObjectAcl:Put",
];

/// Validates a PutBucketNotificationConfiguration body into rules. Refuses what wisp
/// cannot deliver (SQS, SNS, EventBridge destinations) rather than storing it silently.
pub fn rules_from_config(config: NotificationConfiguration) -> S3Result<Vec<NotificationRule>> {
    if config
        .queue_configurations
        .as_ref()
        .is_some_and(|c| !c.is_empty())
        || config
            .topic_configurations
            .as_ref()
            .is_some_and(|c| !c.is_empty())
        || config.event_bridge_configuration.is_some()
    {
        return Err(s3_error!(
            InvalidArgument,
            "wisp delivers bucket notifications to functions only: use LambdaFunctionConfigurations (queue, topic and EventBridge destinations are not supported)"
        ));
    }
    let configs = config.lambda_function_configurations.unwrap_or_default();
    if configs.len() > NOTIFICATION_CONFIGS_MAX {
        return Err(s3_error!(
            InvalidArgument,
            "at most {NOTIFICATION_CONFIGS_MAX} LambdaFunctionConfigurations per bucket"
        ));
    }
    let mut rules: Vec<NotificationRule> = Vec::with_capacity(configs.len());
    for c in configs {
        let arn = c.lambda_function_arn;
        if arn.is_empty() || arn.len() > FUNCTION_ARN_MAX_BYTES {
            return Err(s3_error!(
                InvalidArgument,
                "LambdaFunctionArn must be a function ARN"
            ));
        }
        if c.events.is_empty() {
            return Err(s3_error!(
                InvalidArgument,
                "each configuration needs at least one event type"
            ));
        }
        let mut events = Vec::with_capacity(c.events.len());
        for e in c.events {
            let e: String = e.into();
            if !KNOWN_EVENTS.contains(&e.as_str()) {
                return Err(s3_error!(
                    InvalidArgument,
                    "The event is not supported for notifications: {e:?} (for example s3:ObjectCreated:*, s3:ObjectCreated:Put, s3:ObjectRemoved:*)"
                ));
            }
            if !events.contains(&e) {
                events.push(e);
            }
        }
        let (mut prefix, mut suffix) = (None, None);
        let filter_rules = c
            .filter
            .and_then(|f| f.key)
            .and_then(|k| k.filter_rules)
            .unwrap_or_default();
        for r in filter_rules {
            let name = r
                .name
                .as_ref()
                .map(|n| n.as_str().to_ascii_lowercase())
                .unwrap_or_default();
            let value = r.value.unwrap_or_default();
            if value.len() > KEY_MAX_BYTES {
                return Err(s3_error!(
                    InvalidArgument,
                    "filter rule values are at most 1024 bytes"
                ));
            }
            let slot = match name.as_str() {
                "prefix" => &mut prefix,
                "suffix" => &mut suffix,
                _ => {
                    return Err(s3_error!(
                        InvalidArgument,
                        "filter rule names must be prefix or suffix, not {name:?}"
                    ))
                }
            };
            if slot.is_some() {
                return Err(s3_error!(
                    InvalidArgument,
                    "Cannot specify more than one {name} rule in a filter."
                ));
            }
            *slot = Some(value);
        }
        let id = match c.id.filter(|id| !id.is_empty()) {
            Some(id) => id,
            None => generated_id(),
        };
        if id.len() > 1024 {
            return Err(s3_error!(
                InvalidArgument,
                "configuration ids are at most 1024 bytes"
            ));
        }
        if rules.iter().any(|r| r.id == id) {
            return Err(s3_error!(
                InvalidArgument,
                "configuration ids must be unique: {id:?}"
            ));
        }
        rules.push(NotificationRule {
            id,
            function_arn: arn,
            events,
            prefix,
            suffix,
        });
    }
    Ok(rules)
}

fn generated_id() -> String {
    // S3 makes up an opaque id for a configuration without one.
    uuid::Uuid::new_v4().simple().to_string()
}

/// The rules in GetBucketNotificationConfiguration's shape.
pub fn config_from_rules(rules: &[NotificationRule]) -> Vec<LambdaFunctionConfiguration> {
    rules
        .iter()
        .map(|r| {
            let mut filter_rules = Vec::new();
            for (name, value) in [("Prefix", &r.prefix), ("Suffix", &r.suffix)] {
                if let Some(v) = value {
                    filter_rules.push(FilterRule {
                        name: Some(FilterRuleName::from(name.to_string())),
                        value: Some(v.clone()),
                    });
                }
            }
            LambdaFunctionConfiguration {
                events: r.events.iter().cloned().map(Event::from).collect(),
                filter: (!filter_rules.is_empty()).then_some(NotificationConfigurationFilter {
                    key: Some(S3KeyFilter {
                        filter_rules: Some(filter_rules),
                    }),
                }),
                id: Some(r.id.clone()),
                lambda_function_arn: r.function_arn.clone(),
            }
        })
        .collect()
}

/// Does `rule` fire for `event_name` (e.g. `ObjectCreated:Put`) on `key`? Filters apply
/// to the key as stored (not URL-encoded).
pub fn rule_matches(rule: &NotificationRule, event_name: &str, key: &str) -> bool {
    let (family, _) = event_name.split_once(':').unwrap_or((event_name, ""));
    let event_ok = rule.events.iter().any(|e| {
        let e = e.strip_prefix("s3:").unwrap_or(e);
        e == event_name || e.strip_suffix(":*").is_some_and(|f| f == family)
    });
    event_ok
        && rule.prefix.as_deref().is_none_or(|p| key.starts_with(p))
        && rule.suffix.as_deref().is_none_or(|s| key.ends_with(s))
}

/// The rules of a bucket that fire for an event, in configuration order.
pub fn matching<'a>(
    rules: &'a [NotificationRule],
    event_name: &str,
    key: &str,
) -> Vec<&'a NotificationRule> {
    rules
        .iter()
        .filter(|r| rule_matches(r, event_name, key))
        .collect()
}

/// URL-encodes a key as S3 does in event notifications: form encoding (a space becomes
/// `+`), with `/` kept.
pub fn encode_event_key(key: &str) -> String {
    key.split('/')
        .map(|seg| form_urlencoded::byte_serialize(seg.as_bytes()).collect::<String>())
        .collect::<Vec<_>>()
        .join("/")
}

/// The inverse of [`encode_event_key`]. None if the result is not UTF-8.
pub fn decode_event_key(key: &str) -> Option<String> {
    let plus = key.replace('+', " ");
    percent_decode_str(&plus)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// What happened, for the event record.
#[derive(Debug, Clone)]
pub struct EventFacts {
    pub region: String,
    /// e.g. `ObjectCreated:Put`, `ObjectRemoved:Delete`.
    pub event_name: &'static str,
    pub bucket: String,
    pub key: String,
    /// Created objects only.
    pub size: Option<u64>,
    /// Created objects only; unquoted.
    pub etag: Option<String>,
    pub sequencer: String,
    pub principal: String,
    pub source_ip: String,
    pub request_id: String,
    pub time: time::OffsetDateTime,
}

/// The S3 event notification document for one configuration, with exactly AWS's fields
/// (structure version 2.1).
pub fn event_document(facts: &EventFacts, configuration_id: &str) -> Value {
    let mut object = Map::new();
    object.insert("key".into(), json!(encode_event_key(&facts.key)));
    if let Some(size) = facts.size {
        object.insert("size".into(), json!(size));
    }
    if let Some(etag) = &facts.etag {
        object.insert("eTag".into(), json!(etag));
    }
    object.insert("sequencer".into(), json!(facts.sequencer));
    json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": facts.region,
            "eventTime": event_time(facts.time),
            "eventName": facts.event_name,
            "userIdentity": { "principalId": facts.principal },
            "requestParameters": { "sourceIPAddress": facts.source_ip },
            "responseElements": {
                "x-amz-request-id": facts.request_id,
                "x-amz-id-2": format!("wisp/{}", facts.request_id),
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": configuration_id,
                "bucket": {
                    "name": facts.bucket,
                    "ownerIdentity": { "principalId": crate::OWNER_ID },
                    "arn": format!("arn:aws:s3:::{}", facts.bucket),
                },
                "object": Value::Object(object),
            }
        }]
    })
}

/// ISO 8601 with milliseconds, as S3 writes it: `1970-01-01T00:00:00.000Z`.
pub fn event_time(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// One record of an external notification document: bucket, key (decoded), event name
/// (`ObjectCreated:Put`, without the `s3:` prefix some servers add) and the record itself,
/// normalised to AWS's shape (that event name, the key URL-encoded as S3 does, a numeric
/// size), ready to hand to a function inside `{"Records": [record]}`.
pub type ExternalRecord = (String, String, String, Value);

/// Parses the S3 event notification document another S3 server posts to a webhook:
/// AWS's shape (`{"Records": [...]}`), MinIO's (the same with top-level `EventName` and
/// `Key` = `bucket/key`), Ceph RGW's (`eventSource: ceph:s3`, keys not URL-encoded, sizes
/// as strings). Bounded: 1 MiB, 1 000 records.
pub fn parse_external_notification(body: &[u8]) -> Result<Vec<ExternalRecord>, Error> {
    let bad = |m: &str| Error::InvalidNotification(m.to_string());
    if body.len() > EXTERNAL_NOTIFICATION_MAX_BYTES {
        return Err(bad("the document is larger than 1 MiB"));
    }
    let doc: Value = serde_json::from_slice(body).map_err(|e| bad(&format!("not JSON: {e}")))?;
    let records = doc
        .get("Records")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no \"Records\" array: not an S3 event notification"))?;
    if records.len() > EXTERNAL_NOTIFICATION_MAX_RECORDS {
        return Err(bad("more than 1000 records"));
    }
    // MinIO's top-level Key (bucket/key, not encoded) is the reliable key of a
    // single-record document.
    let minio_key = (records.len() == 1)
        .then(|| doc.get("Key").and_then(Value::as_str))
        .flatten();
    let mut out = Vec::with_capacity(records.len());
    for (i, rec) in records.iter().enumerate() {
        let bad_rec = |m: &str| Error::InvalidNotification(format!("record {i}: {m}"));
        let event_name = rec
            .get("eventName")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_rec("no eventName"))?;
        let event_name = event_name
            .strip_prefix("s3:")
            .unwrap_or(event_name)
            .to_string();
        let s3 = rec.get("s3").ok_or_else(|| bad_rec("no s3 object"))?;
        let bucket = s3
            .pointer("/bucket/name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_rec("no s3.bucket.name"))?
            .to_string();
        let raw_key = s3
            .pointer("/object/key")
            .and_then(Value::as_str)
            .ok_or_else(|| bad_rec("no s3.object.key"))?;
        let from_minio = minio_key.and_then(|k| k.strip_prefix(bucket.as_str())?.strip_prefix('/'));
        let key = match from_minio {
            Some(k) => k.to_string(),
            None if rec.get("eventSource").and_then(Value::as_str) == Some("ceph:s3") => {
                raw_key.to_string()
            }
            None => decode_event_key(raw_key)
                .ok_or_else(|| bad_rec("s3.object.key is not URL-encoded UTF-8"))?,
        };
        let mut record = rec.clone();
        record["eventName"] = json!(event_name);
        record["s3"]["object"]["key"] = json!(encode_event_key(&key));
        if let Some(size) = record["s3"]["object"]
            .get("size")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<u64>().ok())
        {
            record["s3"]["object"]["size"] = json!(size);
        }
        out.push((bucket, key, event_name, record));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(events: &[&str], prefix: Option<&str>, suffix: Option<&str>) -> NotificationRule {
        NotificationRule {
            id: "r".into(),
            function_arn: "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            prefix: prefix.map(String::from),
            suffix: suffix.map(String::from),
        }
    }

    #[test]
    fn matching_rules() {
        let check = |r: &NotificationRule, ev: &str, key: &str, expect: bool| {
            assert_eq!(rule_matches(r, ev, key), expect, "{r:?} {ev} {key}");
        };
        let any_created = rule(&["s3:ObjectCreated:*"], None, None);
        check(&any_created, "ObjectCreated:Put", "a", true);
        check(
            &any_created,
            "ObjectCreated:CompleteMultipartUpload",
            "a",
            true,
        );
        check(&any_created, "ObjectCreated:Copy", "a", true);
        check(&any_created, "ObjectRemoved:Delete", "a", false);
        let put_only = rule(&["s3:ObjectCreated:Put"], None, None);
        check(&put_only, "ObjectCreated:Put", "a", true);
        check(
            &put_only,
            "ObjectCreated:CompleteMultipartUpload",
            "a",
            false,
        );
        let removed = rule(&["s3:ObjectRemoved:*"], None, None);
        check(&removed, "ObjectRemoved:Delete", "a", true);
        check(&removed, "ObjectCreated:Put", "a", false);
        let filtered = rule(
            &["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
            Some("images/"),
            Some(".jpg"),
        );
        check(&filtered, "ObjectCreated:Put", "images/cat.jpg", true);
        check(&filtered, "ObjectRemoved:Delete", "images/cat.jpg", true);
        check(&filtered, "ObjectCreated:Put", "images/cat.png", false);
        check(&filtered, "ObjectCreated:Put", "docs/cat.jpg", false);
        check(&filtered, "ObjectCreated:Put", "images/.jpg", true);
        // Filters compare the key as stored, not its URL encoding.
        let spaced = rule(&["s3:ObjectCreated:*"], Some("my dir/"), None);
        check(&spaced, "ObjectCreated:Put", "my dir/x", true);
        let rules = vec![any_created, put_only, removed];
        assert_eq!(matching(&rules, "ObjectCreated:Put", "k").len(), 2);
    }

    fn config(events: &[&str], filters: &[(&str, &str)]) -> NotificationConfiguration {
        let filter_rules: Vec<FilterRule> = filters
            .iter()
            .map(|(n, v)| FilterRule {
                name: Some(FilterRuleName::from(n.to_string())),
                value: Some(v.to_string()),
            })
            .collect();
        NotificationConfiguration {
            lambda_function_configurations: Some(vec![LambdaFunctionConfiguration {
                events: events.iter().map(|e| Event::from(e.to_string())).collect(),
                filter: Some(NotificationConfigurationFilter {
                    key: Some(S3KeyFilter {
                        filter_rules: Some(filter_rules),
                    }),
                }),
                id: None,
                lambda_function_arn: "arn:aws:lambda:us-east-1:000000000000:function:f".into(),
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn config_validation_and_round_trip() {
        let rules = rules_from_config(config(
            &["s3:ObjectCreated:*"],
            &[("prefix", "in/"), ("Suffix", ".csv")],
        ))
        .unwrap();
        assert_eq!(rules[0].prefix.as_deref(), Some("in/"));
        assert_eq!(rules[0].suffix.as_deref(), Some(".csv"));
        assert!(!rules[0].id.is_empty());
        let back = config_from_rules(&rules);
        assert_eq!(back[0].lambda_function_arn, rules[0].function_arn);
        let names: Vec<String> = back[0]
            .filter
            .as_ref()
            .unwrap()
            .key
            .as_ref()
            .unwrap()
            .filter_rules
            .as_ref()
            .unwrap()
            .iter()
            .map(|r| r.name.as_ref().unwrap().as_str().to_string())
            .collect();
        assert_eq!(names, vec!["Prefix", "Suffix"]);

        for (events, filters) in [
            (&["s3:ObjectCreated:Nope"][..], &[][..]),
            (&[][..], &[][..]),
            (&["s3:ObjectCreated:*"][..], &[("regex", ".*")][..]),
            (
                &["s3:ObjectCreated:*"][..],
                &[("prefix", "a"), ("prefix", "b")][..],
            ),
        ] {
            let e = rules_from_config(config(events, filters)).unwrap_err();
            assert_eq!(
                e.code(),
                &s3s::S3ErrorCode::InvalidArgument,
                "{events:?} {filters:?}"
            );
        }
        let mut queue = config(&["s3:ObjectCreated:*"], &[]);
        queue.queue_configurations = Some(vec![s3s::dto::QueueConfiguration {
            events: vec![],
            filter: None,
            id: None,
            queue_arn: "arn:aws:sqs:us-east-1:0:q".into(),
        }]);
        assert!(rules_from_config(queue).is_err());
        // An empty configuration clears the rules.
        assert!(rules_from_config(NotificationConfiguration::default())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn event_keys() {
        assert_eq!(encode_event_key("red flower.jpg"), "red+flower.jpg");
        assert_eq!(encode_event_key("dir/a+b=c?.txt"), "dir/a%2Bb%3Dc%3F.txt");
        assert_eq!(encode_event_key("ü/../x"), "%C3%BC/../x");
        for k in ["red flower.jpg", "dir/a+b=c?.txt", "ü/../x", "%41"] {
            assert_eq!(decode_event_key(&encode_event_key(k)).as_deref(), Some(k));
        }
    }

    #[test]
    fn document_shape() {
        let facts = EventFacts {
            region: "us-east-1".into(),
            event_name: "ObjectCreated:Put",
            bucket: "photos".into(),
            key: "my cat.jpg".into(),
            size: Some(1024),
            etag: Some("d41d8cd98f00b204e9800998ecf8427e".into()),
            sequencer: "0055AED6DCD90281E5".into(),
            principal: "AKID".into(),
            source_ip: "127.0.0.1".into(),
            request_id: "C3D13FE58DE4C810".into(),
            time: time::macros::datetime!(2024-05-06 07:08:09.123 UTC),
        };
        let doc = event_document(&facts, "cfg");
        let r = &doc["Records"][0];
        assert_eq!(r["eventVersion"], "2.1");
        assert_eq!(r["eventSource"], "aws:s3");
        assert_eq!(r["eventTime"], "2024-05-06T07:08:09.123Z");
        assert_eq!(r["eventName"], "ObjectCreated:Put");
        assert_eq!(r["s3"]["s3SchemaVersion"], "1.0");
        assert_eq!(r["s3"]["configurationId"], "cfg");
        assert_eq!(r["s3"]["bucket"]["arn"], "arn:aws:s3:::photos");
        assert_eq!(r["s3"]["object"]["key"], "my+cat.jpg");
        assert_eq!(r["s3"]["object"]["size"], 1024);
        assert_eq!(
            r["s3"]["object"]["eTag"],
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        let removed = EventFacts {
            event_name: "ObjectRemoved:Delete",
            size: None,
            etag: None,
            ..facts
        };
        let doc = event_document(&removed, "cfg");
        let obj = doc["Records"][0]["s3"]["object"].as_object().unwrap();
        let mut fields: Vec<&str> = obj.keys().map(String::as_str).collect();
        fields.sort();
        assert_eq!(fields, vec!["key", "sequencer"]);
    }

    #[test]
    fn external_documents() {
        // AWS's own shape (as a Lambda receives it).
        let aws = br#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
            "s3":{"bucket":{"name":"b"},"object":{"key":"red+flower%21.jpg","size":3}}}]}"#;
        let got = parse_external_notification(aws).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].0.as_str(), got[0].1.as_str(), got[0].2.as_str()),
            ("b", "red flower!.jpg", "ObjectCreated:Put")
        );
        assert_eq!(got[0].3["s3"]["object"]["key"], "red+flower%21.jpg");

        // MinIO: "s3:" prefixed names, a top-level Key (bucket/key) and EventName; the
        // record's key is query-escaped (slashes too).
        let minio = br#"{"EventName":"s3:ObjectRemoved:Delete","Key":"b/dir/a b.txt","Records":[{"eventVersion":"2.0",
            "eventSource":"minio:s3","eventName":"s3:ObjectRemoved:Delete",
            "s3":{"bucket":{"name":"b"},"object":{"key":"dir%2Fa+b.txt","sequencer":"1"}}}]}"#;
        let got = parse_external_notification(minio).unwrap();
        assert_eq!(
            (got[0].0.as_str(), got[0].1.as_str(), got[0].2.as_str()),
            ("b", "dir/a b.txt", "ObjectRemoved:Delete")
        );
        assert_eq!(got[0].3["eventName"], "ObjectRemoved:Delete");
        assert_eq!(got[0].3["s3"]["object"]["key"], "dir/a+b.txt");

        // Ceph RGW: raw keys, string sizes.
        let ceph = br#"{"Records":[{"eventVersion":"2.1","eventSource":"ceph:s3","eventName":"ObjectCreated:Put",
            "s3":{"bucket":{"name":"b"},"object":{"key":"50%+off.txt","size":"1024"}}}]}"#;
        let got = parse_external_notification(ceph).unwrap();
        assert_eq!(got[0].1, "50%+off.txt");
        assert_eq!(got[0].3["s3"]["object"]["size"], 1024);

        for bad in [
            &b"not json"[..],
            br#"{"no":"records"}"#,
            br#"{"Records":[{"s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}"#,
            br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"object":{"key":"k"}}}]}"#,
            br#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"%FF"}}}]}"#,
        ] {
            assert!(parse_external_notification(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(
            parse_external_notification(&vec![b' '; EXTERNAL_NOTIFICATION_MAX_BYTES + 1]).is_err()
        );
    }
}
