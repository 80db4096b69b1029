//! The broker part of a Kafka trigger's configuration, with the names Lambda's
//! self-managed Kafka event source mapping uses, and its translation to librdkafka settings.

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wisp_core::error::Result;
use wisp_core::Error;

/// Where a consumer with no committed offset starts.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StartingPosition {
    /// The oldest record the broker still has.
    #[default]
    TrimHorizon,
    /// Only records produced after the trigger first connected.
    Latest,
}

/// SASL mechanisms librdkafka speaks without Kerberos.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// TLS to the brokers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Tls {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// PEM file of the CA(s) that signed the brokers' certificates (default: the system's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// PEM client certificate and key, for brokers that require mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<String>,
}

fn yes() -> bool {
    true
}

/// A Kafka trigger's broker configuration (what `validate` stores).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port` of one or more brokers to bootstrap from.
    pub bootstrap_servers: Vec<String>,
    /// Exactly one topic, as Lambda.
    pub topics: Vec<String>,
    /// The group offsets are committed under (default: the trigger's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group_id: Option<String>,
    #[serde(default)]
    pub starting_position: StartingPosition,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Secret: stored, never shown nor logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// With `Username`/`Password`; default PLAIN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl_mechanism: Option<SaslMechanism>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
}

const MAX_SERVERS: usize = 32;

/// Kafka's own rule for topic names (legal characters, at most 249 of them).
pub fn valid_topic(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn printable(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

fn check_server(server: &str) -> Result<()> {
    if server.contains('@') {
        return Err(Error::invalid(
            "BootstrapServers must not carry credentials: put credentials in Username/Password.",
        ));
    }
    if server.contains("://") {
        return Err(Error::invalid(format!(
            "BootstrapServers entries are host:port, without a scheme (got {:?}); use Tls for TLS.",
            server.chars().take(100).collect::<String>()
        )));
    }
    let Some((host, port)) = server.rsplit_once(':') else {
        return Err(Error::invalid(
            "BootstrapServers entries must be host:port.",
        ));
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
        });
    if !host_ok || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(Error::invalid(format!(
            "BootstrapServers entry {:?} is not host:port.",
            server.chars().take(100).collect::<String>()
        )));
    }
    Ok(())
}

fn check_path(field: &str, path: &Option<String>) -> Result<()> {
    if let Some(p) = path {
        if !printable(p, 4096) {
            return Err(Error::invalid(format!(
                "Tls.{field} must be a file path (1-4096 printable characters)."
            )));
        }
    }
    Ok(())
}

impl KafkaConfig {
    /// Parses and checks a configuration strictly.
    pub fn parse(config: &Value) -> Result<KafkaConfig> {
        let cfg: KafkaConfig = serde_json::from_value(config.clone())
            .map_err(|e| Error::invalid(format!("Invalid Kafka trigger configuration: {e}")))?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<()> {
        if self.bootstrap_servers.is_empty() || self.bootstrap_servers.len() > MAX_SERVERS {
            return Err(Error::invalid(format!(
                "BootstrapServers must list 1 to {MAX_SERVERS} host:port entries."
            )));
        }
        for s in &self.bootstrap_servers {
            check_server(s)?;
        }
        if self.topics.len() != 1 {
            return Err(Error::invalid("Topics must hold exactly one topic name."));
        }
        if !valid_topic(&self.topics[0]) {
            return Err(Error::invalid(
                "Topics: a topic name is 1-249 characters of a-z, A-Z, 0-9, '.', '_' and '-'.",
            ));
        }
        if let Some(g) = &self.consumer_group_id {
            if !printable(g, 200) {
                return Err(Error::invalid(
                    "ConsumerGroupId must be 1-200 printable characters.",
                ));
            }
        }
        match (&self.username, &self.password) {
            (Some(u), Some(p)) => {
                if !printable(u, 512) || p.is_empty() || p.len() > 4096 || p.contains('\0') {
                    return Err(Error::invalid(
                        "Username must be 1-512 printable characters and Password 1-4096 characters.",
                    ));
                }
            }
            (None, None) => {
                if self.sasl_mechanism.is_some() {
                    return Err(Error::invalid("SaslMechanism needs Username and Password."));
                }
            }
            _ => {
                return Err(Error::invalid(
                    "Username and Password go together: give both or neither.",
                ))
            }
        }
        if let Some(tls) = &self.tls {
            check_path("CaFile", &tls.ca_file)?;
            check_path("ClientCertFile", &tls.client_cert_file)?;
            check_path("ClientKeyFile", &tls.client_key_file)?;
            if tls.client_cert_file.is_some() != tls.client_key_file.is_some() {
                return Err(Error::invalid(
                    "Tls.ClientCertFile and Tls.ClientKeyFile go together.",
                ));
            }
        }
        Ok(())
    }

    pub fn topic(&self) -> &str {
        &self.topics[0]
    }

    /// What the event's `bootstrapServers` says.
    pub fn servers(&self) -> String {
        self.bootstrap_servers.join(",")
    }

    fn tls_enabled(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.enabled)
    }

    /// The connection settings shared by the consumer and the failure producer.
    pub fn client_config(&self, client_id: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.servers())
            .set("client.id", client_id)
            // Reconnect quickly after a broker comes back, but do not hammer a dead one.
            .set("reconnect.backoff.ms", "100")
            .set("reconnect.backoff.max.ms", "2000")
            .set("socket.connection.setup.timeout.ms", "10000")
            .set("socket.keepalive.enable", "true");
        let sasl = self.username.is_some();
        let protocol = match (self.tls_enabled(), sasl) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        c.set("security.protocol", protocol);
        if let (Some(u), Some(p)) = (&self.username, &self.password) {
            c.set(
                "sasl.mechanism",
                self.sasl_mechanism.unwrap_or(SaslMechanism::Plain).as_str(),
            )
            .set("sasl.username", u)
            .set("sasl.password", p);
        }
        if let Some(tls) = self.tls.as_ref().filter(|t| t.enabled) {
            if let Some(ca) = &tls.ca_file {
                c.set("ssl.ca.location", ca);
            }
            if let (Some(cert), Some(key)) = (&tls.client_cert_file, &tls.client_key_file) {
                c.set("ssl.certificate.location", cert)
                    .set("ssl.key.location", key);
            }
        }
        c
    }

    /// The consumer's settings: offsets are committed by the connector only, after the
    /// function handled a batch; prefetching is bounded per partition.
    pub fn consumer_config(&self, client_id: &str, group: &str, batch_size: u32) -> ClientConfig {
        let mut c = self.client_config(client_id);
        c.set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set(
                "auto.offset.reset",
                match self.starting_position {
                    StartingPosition::TrimHorizon => "earliest",
                    StartingPosition::Latest => "latest",
                },
            )
            // Backpressure: librdkafka prefetches into per-partition queues only up to these
            // bounds, and the connector stops taking from a queue while its function is busy.
            .set("queued.min.messages", batch_size.max(500).to_string())
            .set("queued.max.messages.kbytes", "8192")
            .set("fetch.max.bytes", "8388608")
            .set("max.partition.fetch.bytes", "2097152")
            .set("fetch.wait.max.ms", "100")
            // Lag and broker state for `wisp triggers status`.
            .set("statistics.interval.ms", "1000");
        c
    }

    /// The failure-destination producer's settings: acknowledged by the broker before the
    /// batch is committed; a bounded queue.
    pub fn producer_config(&self, client_id: &str) -> ClientConfig {
        let mut c = self.client_config(client_id);
        c.set("acks", "all")
            .set("message.timeout.ms", "30000")
            .set("queue.buffering.max.messages", "1000")
            .set("queue.buffering.max.kbytes", "65536")
            .set("linger.ms", "0");
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok() -> Value {
        json!({"BootstrapServers": ["127.0.0.1:9092"], "Topics": ["orders"]})
    }

    #[test]
    fn accepts_and_normalises() {
        let c = KafkaConfig::parse(&ok()).unwrap();
        assert_eq!(c.starting_position, StartingPosition::TrimHorizon);
        let stored = serde_json::to_value(&c).unwrap();
        assert_eq!(stored["StartingPosition"], "TRIM_HORIZON");
        let full = json!({
            "BootstrapServers": ["a.example:9092", "b.example:9093"], "Topics": ["t.1_x-y"],
            "ConsumerGroupId": "g", "StartingPosition": "LATEST", "Username": "u",
            "Password": "p", "SaslMechanism": "SCRAM-SHA-512",
            "Tls": {"Enabled": true, "CaFile": "/etc/ca.pem"}
        });
        let c = KafkaConfig::parse(&full).unwrap();
        assert_eq!(c.servers(), "a.example:9092,b.example:9093");
        assert_eq!(
            c.client_config("x").get("security.protocol"),
            Some("sasl_ssl")
        );
        assert_eq!(
            c.client_config("x").get("sasl.mechanism"),
            Some("SCRAM-SHA-512")
        );
    }

    #[test]
    fn refuses_bad_configs() {
        let with = |k: &str, v: Value| {
            let mut c = ok();
            c[k] = v;
            c
        };
        for (bad, why) in [
            (with("Nope", json!(1)), "unknown field"),
            (with("BootstrapServers", json!([])), "1 to"),
            (with("BootstrapServers", json!("h:1")), "invalid type"),
            (
                with("BootstrapServers", json!(["u:p@h:9092"])),
                "Username/Password",
            ),
            (
                with("BootstrapServers", json!(["kafka://h:9092"])),
                "scheme",
            ),
            (with("BootstrapServers", json!(["h"])), "host:port"),
            (with("BootstrapServers", json!(["h:0"])), "host:port"),
            (with("BootstrapServers", json!(["h:99999"])), "host:port"),
            (with("BootstrapServers", json!(["h x:1"])), "host:port"),
            (with("Topics", json!([])), "exactly one"),
            (with("Topics", json!(["a", "b"])), "exactly one"),
            (with("Topics", json!(["a/b"])), "topic name"),
            (with("Topics", json!([".."])), "topic name"),
            (with("Topics", json!(["x".repeat(250)])), "topic name"),
            (
                with("StartingPosition", json!("AT_TIMESTAMP")),
                "unknown variant",
            ),
            (with("ConsumerGroupId", json!("")), "ConsumerGroupId"),
            (with("ConsumerGroupId", json!("a\nb")), "ConsumerGroupId"),
            (with("Username", json!("u")), "together"),
            (with("SaslMechanism", json!("PLAIN")), "needs Username"),
            (with("SaslMechanism", json!("GSSAPI")), "unknown variant"),
            (
                with("Tls", json!({"Enabled": true, "Bogus": 1})),
                "unknown field",
            ),
            (with("Tls", json!({"ClientCertFile": "/a"})), "together"),
            (with("Tls", json!({"CaFile": ""})), "CaFile"),
        ] {
            let err = KafkaConfig::parse(&bad).unwrap_err().message;
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
