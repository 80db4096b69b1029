//! Lambda's event source mappings for self-managed brokers, onto wisp's connector triggers:
//! Kafka (`SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS`) becomes a `kafka`
//! trigger and RabbitMQ (`EventSourceArn: arn:aws:mq:...` with `Queues`) a `rabbitmq` one.
//!
//! Where Lambda reads credentials from Secrets Manager, wisp has no secret service: a
//! `SourceAccessConfigurations` URI is either the secret's value itself — the JSON document
//! Lambda expects in the secret, `{"username": "...", "password": "..."}` — or
//! `env:NAME`, the name of an environment variable of the *server* holding that document.
//! Either way the credentials are stored with the trigger and never returned: the API shows
//! `env:NAME` as given and an inline secret as `******`.
//!
//! Amazon MQ brokers are found by ARN on AWS; here the broker's address is given in
//! `SelfManagedEventSource.Endpoints.RABBITMQ_BROKER_URL` (a wisp extension).

use serde_json::{json, Map, Value};
use wisp_core::error::Result;
use wisp_core::Error;
use wisp_store::TriggerRow;

pub const KAFKA: &str = "kafka";
pub const RABBITMQ: &str = "rabbitmq";

const KAFKA_ENDPOINTS: &str = "KAFKA_BOOTSTRAP_SERVERS";
const RABBITMQ_ENDPOINT: &str = "RABBITMQ_BROKER_URL";
const HIDDEN: &str = "******";

/// The Lambda fields that only brokers take.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BrokerFields {
    pub starting_position: Option<String>,
    pub topics: Option<Vec<String>>,
    pub queues: Option<Vec<String>>,
    pub source_access_configurations: Option<Vec<Value>>,
    pub self_managed_event_source: Option<Value>,
    pub self_managed_kafka_event_source_config: Option<Value>,
    pub destination_config: Option<Value>,
    pub maximum_retry_attempts: Option<i64>,
}

impl BrokerFields {
    fn any(&self) -> bool {
        self.starting_position.is_some()
            || self.topics.is_some()
            || self.queues.is_some()
            || self.source_access_configurations.is_some()
            || self.self_managed_event_source.is_some()
            || self.self_managed_kafka_event_source_config.is_some()
            || self.destination_config.is_some()
            || self.maximum_retry_attempts.is_some()
    }

    fn endpoints(&self, key: &str) -> Option<&Value> {
        self.self_managed_event_source
            .as_ref()?
            .get("Endpoints")?
            .get(key)
    }
}

/// Which connector a new mapping is for: `None` for a wisp queue (sqs).
pub fn kind_of(
    event_source_arn: Option<&str>,
    fields: &BrokerFields,
) -> Result<Option<&'static str>> {
    if fields.endpoints(KAFKA_ENDPOINTS).is_some() {
        return Ok(Some(KAFKA));
    }
    if event_source_arn.is_some_and(|a| a.starts_with("arn:aws:mq:"))
        || fields.endpoints(RABBITMQ_ENDPOINT).is_some()
    {
        return Ok(Some(RABBITMQ));
    }
    if event_source_arn.is_some_and(|a| a.starts_with("arn:aws:kafka:")) {
        return Err(Error::invalid(
            "Amazon MSK is not reachable from wisp: map a self-managed Kafka cluster with SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS.",
        ));
    }
    if fields.any() {
        return Err(Error::invalid(
            "StartingPosition, Topics, Queues, SourceAccessConfigurations, SelfManagedEventSource, DestinationConfig and MaximumRetryAttempts apply to Kafka and RabbitMQ mappings, not to a queue.",
        ));
    }
    Ok(None)
}

fn string_list(v: &Value, what: &str) -> Result<Vec<String>> {
    v.as_array()
        .and_then(|a| a.iter().map(|s| s.as_str().map(str::to_string)).collect())
        .ok_or_else(|| Error::invalid(format!("{what} must be a list of strings.")))
}

/// Reads a `{"username","password"}` secret from an access configuration's URI.
fn basic_auth(uri: &str) -> Result<(String, String)> {
    let (doc, origin) = match uri.strip_prefix("env:") {
        Some(name) => (
            std::env::var(name).map_err(|_| {
                Error::invalid(format!(
                    "SourceAccessConfigurations: the server has no environment variable {}.",
                    name.chars().take(100).collect::<String>()
                ))
            })?,
            "the environment variable",
        ),
        None if uri.trim_start().starts_with('{') => (uri.to_string(), "the URI"),
        None => {
            return Err(Error::invalid(
                "SourceAccessConfigurations URI: wisp has no Secrets Manager; give the secret's JSON ({\"username\": ..., \"password\": ...}) or env:NAME of a server environment variable holding it.",
            ))
        }
    };
    let v: Value = serde_json::from_str(&doc).map_err(|_| {
        Error::invalid(format!(
            "SourceAccessConfigurations: {origin} is not a JSON secret {{\"username\": ..., \"password\": ...}}."
        ))
    })?;
    match (
        v.get("username").and_then(Value::as_str),
        v.get("password").and_then(Value::as_str),
    ) {
        (Some(u), Some(p)) => Ok((u.to_string(), p.to_string())),
        _ => Err(Error::invalid(format!(
            "SourceAccessConfigurations: {origin} lacks \"username\" or \"password\"."
        ))),
    }
}

/// Builds (or, for an update, overlays) a connector configuration from Lambda's fields.
/// `common` holds the delivery settings already taken from the request (BatchSize, ...).
pub fn config(
    kind: &str,
    base: Value,
    arn: Option<&str>,
    f: &BrokerFields,
    common: Map<String, Value>,
) -> Result<Value> {
    let mut cfg = match base {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (k, v) in common {
        cfg.insert(k, v);
    }
    if let Some(n) = f.maximum_retry_attempts {
        // Lambda's -1 ("retry until the record expires") is bounded here.
        let n = if n < 0 { 10_000 } else { n };
        cfg.insert("MaximumRetryAttempts".into(), n.into());
    }
    if let Some(d) = &f.destination_config {
        if let Some(dest) = d.get("OnFailure").and_then(|o| o.get("Destination")) {
            let dest = dest.as_str().ok_or_else(|| {
                Error::invalid("DestinationConfig.OnFailure.Destination must be a string.")
            })?;
            // A Kafka topic destination is written `kafka://topic` on Lambda.
            let dest = dest.strip_prefix("kafka://").unwrap_or(dest);
            cfg.insert("OnFailure".into(), dest.into());
        }
        if d.get("OnSuccess").is_some() {
            return Err(Error::invalid(
                "DestinationConfig.OnSuccess is not supported for event source mappings.",
            ));
        }
    }
    if let Some(p) = &f.starting_position {
        if !matches!(p.as_str(), "TRIM_HORIZON" | "LATEST") {
            return Err(Error::invalid(
                "StartingPosition must be TRIM_HORIZON or LATEST.",
            ));
        }
        if kind == RABBITMQ {
            return Err(Error::invalid(
                "StartingPosition does not apply to RabbitMQ.",
            ));
        }
        cfg.insert("StartingPosition".into(), p.clone().into());
    }
    let mut vhost: Option<String> = None;
    let mut esm = cfg
        .remove("EventSourceMapping")
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    for sac in f.source_access_configurations.iter().flatten() {
        let ty = sac.get("Type").and_then(Value::as_str).unwrap_or("");
        let uri = sac.get("URI").and_then(Value::as_str).unwrap_or("");
        match ty {
            "BASIC_AUTH" | "SASL_SCRAM_256_AUTH" | "SASL_SCRAM_512_AUTH" => {
                let (user, pass) = basic_auth(uri)?;
                cfg.insert("Username".into(), user.into());
                cfg.insert("Password".into(), pass.into());
                esm.insert("AccessConfiguration".into(), json!({"Type": ty, "URI": if uri.starts_with("env:") { uri } else { HIDDEN }}));
                if kind == KAFKA {
                    let mech = match ty {
                        "BASIC_AUTH" => "PLAIN",
                        "SASL_SCRAM_256_AUTH" => "SCRAM-SHA-256",
                        _ => "SCRAM-SHA-512",
                    };
                    cfg.insert("SaslMechanism".into(), mech.into());
                } else if ty != "BASIC_AUTH" {
                    return Err(Error::invalid(format!("{ty} does not apply to RabbitMQ; use BASIC_AUTH.")));
                }
            }
            "VIRTUAL_HOST" if kind == RABBITMQ => vhost = Some(uri.to_string()),
            other => {
                return Err(Error::invalid(format!(
                    "SourceAccessConfigurations Type '{}' is not supported here (BASIC_AUTH, SASL_SCRAM_256_AUTH, SASL_SCRAM_512_AUTH{}).",
                    other.chars().take(60).collect::<String>(),
                    if kind == RABBITMQ { ", VIRTUAL_HOST" } else { "" }
                )))
            }
        }
    }
    match kind {
        KAFKA => {
            if let Some(eps) = f.endpoints(KAFKA_ENDPOINTS) {
                let servers = string_list(eps, "KAFKA_BOOTSTRAP_SERVERS")?;
                // Lambda takes one comma-separated string or several entries.
                let servers: Vec<String> = servers
                    .iter()
                    .flat_map(|s| s.split(','))
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                cfg.insert("BootstrapServers".into(), json!(servers));
            }
            if let Some(t) = &f.topics {
                cfg.insert("Topics".into(), json!(t));
            }
            if let Some(g) = f
                .self_managed_kafka_event_source_config
                .as_ref()
                .and_then(|c| c.get("ConsumerGroupId"))
            {
                cfg.insert("ConsumerGroupId".into(), g.clone());
            }
            if f.queues.is_some() {
                return Err(Error::invalid(
                    "Queues applies to RabbitMQ, not to Kafka (use Topics).",
                ));
            }
        }
        _ => {
            if let Some(url) = f.endpoints(RABBITMQ_ENDPOINT) {
                let url = match url {
                    Value::String(s) => s.clone(),
                    other => string_list(other, "RABBITMQ_BROKER_URL")?
                        .into_iter()
                        .next()
                        .ok_or_else(|| Error::invalid("RABBITMQ_BROKER_URL is empty."))?,
                };
                cfg.insert("Url".into(), url.into());
            } else if !cfg.contains_key("Url") {
                return Err(Error::invalid(
                    "wisp cannot look up an Amazon MQ broker by ARN: give its address in SelfManagedEventSource.Endpoints.RABBITMQ_BROKER_URL (amqp://host:port).",
                ));
            }
            if let Some(q) = &f.queues {
                if q.len() != 1 {
                    return Err(Error::invalid("Queues must name exactly one queue."));
                }
                cfg.insert("Queue".into(), q[0].clone().into());
            }
            if let Some(v) = vhost {
                cfg.insert("VirtualHost".into(), v.into());
            }
            // The connector stamps its events with it.
            if let Some(arn) = arn {
                cfg.insert("EventSourceArn".into(), arn.into());
            }
            if f.topics.is_some() {
                return Err(Error::invalid(
                    "Topics applies to Kafka, not to RabbitMQ (use Queues).",
                ));
            }
        }
    }
    if !esm.is_empty() {
        cfg.insert("EventSourceMapping".into(), Value::Object(esm));
    }
    Ok(Value::Object(cfg))
}

/// A broker mapping as Lambda's API shows it. `config` is the stored configuration; no
/// secret of it is shown.
pub fn mapping_json(row: &TriggerRow, config: &Value, region: &str) -> Value {
    let get = |k: &str| config.get(k).cloned().unwrap_or(Value::Null);
    let enabled = config
        .get("Enabled")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let mut doc = json!({
        "UUID": row.id,
        "FunctionArn": wisp_core::name::function_arn(region, &row.function, row.qualifier.as_deref()),
        "BatchSize": get("BatchSize"),
        "MaximumBatchingWindowInSeconds": get("MaximumBatchingWindowInSeconds"),
        "MaximumRetryAttempts": get("MaximumRetryAttempts"),
        "LastModified": row.created_ms as f64 / 1000.0,
        "State": if enabled { "Enabled" } else { "Disabled" },
        "StateTransitionReason": "USER_INITIATED",
    });
    if let Some(c) = config.get("MaximumConcurrency") {
        doc["ScalingConfig"] = json!({ "MaximumConcurrency": c });
    }
    if let Some(d) = config.get("OnFailure").and_then(Value::as_str) {
        let d = if row.kind == KAFKA && !d.starts_with("arn:") {
            format!("kafka://{d}")
        } else {
            d.to_string()
        };
        doc["DestinationConfig"] = json!({ "OnFailure": { "Destination": d } });
    }
    let esm = config.get("EventSourceMapping");
    if let Some(a) = esm.and_then(|m| m.get("AccessConfiguration")) {
        doc["SourceAccessConfigurations"] = json!([a]);
    }
    if row.kind == KAFKA {
        let servers = get("BootstrapServers");
        doc["SelfManagedEventSource"] = json!({ "Endpoints": { KAFKA_ENDPOINTS: servers } });
        doc["Topics"] = get("Topics");
        doc["StartingPosition"] = get("StartingPosition");
        doc["SelfManagedKafkaEventSourceConfig"] =
            json!({ "ConsumerGroupId": get("ConsumerGroupId") });
    } else {
        doc["EventSourceArn"] = get("EventSourceArn");
        doc["Queues"] = json!([get("Queue")]);
        doc["SelfManagedEventSource"] = json!({ "Endpoints": { RABBITMQ_ENDPOINT: [get("Url")] } });
        if let Some(v) = config.get("VirtualHost") {
            let mut sacs = doc["SourceAccessConfigurations"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            sacs.push(json!({"Type": "VIRTUAL_HOST", "URI": v}));
            doc["SourceAccessConfigurations"] = json!(sacs);
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_fields_map_onto_the_connector() {
        let f: BrokerFields = serde_json::from_value(json!({
            "SelfManagedEventSource": {"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["127.0.0.1:9092,127.0.0.1:9093"]}},
            "Topics": ["orders"],
            "StartingPosition": "TRIM_HORIZON",
            "SelfManagedKafkaEventSourceConfig": {"ConsumerGroupId": "g1"},
            "SourceAccessConfigurations": [{"Type": "SASL_SCRAM_256_AUTH", "URI": "{\"username\": \"u\", \"password\": \"p\"}"}],
            "DestinationConfig": {"OnFailure": {"Destination": "kafka://orders-dlq"}},
            "MaximumRetryAttempts": -1
        })).unwrap();
        assert_eq!(kind_of(None, &f).unwrap(), Some(KAFKA));
        let cfg = config(KAFKA, json!({}), None, &f, Map::new()).unwrap();
        assert_eq!(
            cfg["BootstrapServers"],
            json!(["127.0.0.1:9092", "127.0.0.1:9093"])
        );
        assert_eq!(cfg["Password"], "p");
        assert_eq!(cfg["SaslMechanism"], "SCRAM-SHA-256");
        assert_eq!(cfg["OnFailure"], "orders-dlq");
        assert_eq!(cfg["MaximumRetryAttempts"], 10_000);
        assert_eq!(
            cfg["EventSourceMapping"]["AccessConfiguration"]["URI"],
            HIDDEN
        );
        let row = TriggerRow {
            id: "u".into(),
            kind: KAFKA.into(),
            function: "f".into(),
            qualifier: None,
            config: cfg.clone(),
            created_ms: 0,
        };
        let shown = mapping_json(&row, &cfg, "us-east-1").to_string();
        assert!(!shown.contains("\"p\""), "{shown}");
        assert!(shown.contains("kafka://orders-dlq"));
    }

    #[test]
    fn rabbitmq_needs_an_address_and_one_queue() {
        let arn = "arn:aws:mq:us-east-1:000000000000:broker:b:b-1";
        let f: BrokerFields = serde_json::from_value(json!({"Queues": ["q"]})).unwrap();
        assert_eq!(kind_of(Some(arn), &f).unwrap(), Some(RABBITMQ));
        assert!(config(RABBITMQ, json!({}), Some(arn), &f, Map::new()).is_err());
        let f: BrokerFields = serde_json::from_value(json!({
            "Queues": ["q"],
            "SelfManagedEventSource": {"Endpoints": {"RABBITMQ_BROKER_URL": ["amqp://127.0.0.1:5672"]}},
            "SourceAccessConfigurations": [{"Type": "VIRTUAL_HOST", "URI": "/prod"}]
        })).unwrap();
        let cfg = config(RABBITMQ, json!({}), Some(arn), &f, Map::new()).unwrap();
        assert_eq!(cfg["Url"], "amqp://127.0.0.1:5672");
        assert_eq!(cfg["Queue"], "q");
        assert_eq!(cfg["VirtualHost"], "/prod");
        for bad in [
            json!({"Queues": ["a", "b"], "SelfManagedEventSource": {"Endpoints": {"RABBITMQ_BROKER_URL": ["amqp://x"]}}}),
            json!({"Queues": ["a"], "StartingPosition": "LATEST", "SelfManagedEventSource": {"Endpoints": {"RABBITMQ_BROKER_URL": ["amqp://x"]}}}),
            json!({"Queues": ["a"], "SourceAccessConfigurations": [{"Type": "BASIC_AUTH", "URI": "arn:aws:secretsmanager:x"}], "SelfManagedEventSource": {"Endpoints": {"RABBITMQ_BROKER_URL": ["amqp://x"]}}}),
        ] {
            let f: BrokerFields = serde_json::from_value(bad.clone()).unwrap();
            assert!(
                config(RABBITMQ, json!({}), Some(arn), &f, Map::new()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn queue_mappings_refuse_broker_fields() {
        let f: BrokerFields = serde_json::from_value(json!({"Topics": ["t"]})).unwrap();
        assert!(kind_of(Some("arn:aws:sqs:us-east-1:0:q"), &f).is_err());
        assert_eq!(
            kind_of(Some("arn:aws:sqs:us-east-1:0:q"), &BrokerFields::default()).unwrap(),
            None
        );
    }
}
