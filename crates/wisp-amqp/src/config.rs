//! The RabbitMQ trigger's configuration: what `validate` accepts and stores.
//!
//! Credentials live in `Username`/`Password`, never in the URL, so that the URL can be shown
//! and logged as it is; the virtual host lives in `VirtualHost`, not in the URL's path, so
//! that there is one place to read it from.

use serde::{Deserialize, Serialize};
use wisp_core::error::Result;
use wisp_core::Error;
use wisp_triggers::connect::printable;
pub use wisp_triggers::connect::Tls;

/// The broker part of a `rabbitmq` trigger's configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AmqpConfig {
    /// `amqp://host[:port]` or `amqps://host[:port]` (5672 / 5671 by default).
    pub url: String,
    /// The virtual host (default `/`).
    #[serde(default = "default_vhost")]
    pub virtual_host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Secret: stored, never shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// The one queue consumed (Lambda's `Queues` holds exactly one).
    pub queue: String,
    /// Unacknowledged messages the broker may push ahead (basic.qos); by default
    /// `BatchSize × MaximumConcurrency`, so the client never holds more than it can work on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefetch: Option<u32>,
    /// The `eventSourceArn` events carry; by default a stable pseudo-ARN of the trigger
    /// (`arn:aws:mq:<region>:000000000000:broker:wisp:<trigger id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_source_arn: Option<String>,
}

fn default_vhost() -> String {
    "/".into()
}

/// Host and port taken from the URL.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl AmqpConfig {
    /// Parses and checks a configuration; returns it normalised (TLS turned on for
    /// `amqps://`).
    pub fn parse(value: &serde_json::Value) -> Result<AmqpConfig> {
        let mut cfg: AmqpConfig = serde_json::from_value(value.clone())
            .map_err(|e| Error::invalid(format!("Invalid rabbitmq trigger configuration: {e}")))?;
        let endpoint = cfg.endpoint()?;
        // AMQP short strings: queue names and virtual hosts are at most 255 bytes.
        printable("Queue", &cfg.queue, 255)?;
        printable("VirtualHost", &cfg.virtual_host, 255)?;
        if let Some(u) = &cfg.username {
            printable("Username", u, 255)?;
        }
        if let Some(p) = &cfg.password {
            if p.is_empty() || p.len() > 1024 {
                return Err(Error::invalid("Password must be 1-1024 characters."));
            }
        }
        if cfg.password.is_some() && cfg.username.is_none() {
            return Err(Error::invalid("Password needs a Username."));
        }
        if cfg.prefetch.is_some_and(|p| !(1..=65535).contains(&p)) {
            return Err(Error::invalid("Prefetch must be between 1 and 65535."));
        }
        if let Some(arn) = &cfg.event_source_arn {
            printable("EventSourceArn", arn, 1024)?;
            if !arn.starts_with("arn:") {
                return Err(Error::invalid("EventSourceArn must be an ARN (arn:...)."));
            }
        }
        cfg.tls = Tls::normalise(
            cfg.tls.take(),
            endpoint.tls,
            "set Tls.Enabled or use amqps://",
        )?;
        Ok(cfg)
    }

    pub fn tls_enabled(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.enabled)
    }

    /// The broker's host and port from `Url`, refusing what does not belong there.
    pub fn endpoint(&self) -> Result<Endpoint> {
        let url = self.url.as_str();
        printable("Url", url, 1024)?;
        let (tls, rest) = if let Some(rest) = url.strip_prefix("amqp://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("amqps://") {
            (true, rest)
        } else {
            return Err(Error::invalid(
                "Url must start with amqp:// or amqps:// (for example amqp://127.0.0.1:5672).",
            ));
        };
        if rest.contains('@') {
            return Err(Error::invalid(
                "Url must not carry credentials: put credentials in Username/Password.",
            ));
        }
        if rest.contains('?') || rest.contains('#') {
            return Err(Error::invalid("Url must not have a query or a fragment."));
        }
        let authority = match rest.split_once('/') {
            None => rest,
            Some((a, "")) => a,
            Some(_) => {
                return Err(Error::invalid(
                    "Url must not name a virtual host: put it in VirtualHost.",
                ))
            }
        };
        let tls = tls || self.tls.as_ref().is_some_and(|t| t.enabled);
        let default_port = if tls { 5671 } else { 5672 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| Error::invalid("Url has an unclosed IPv6 address."))?;
            let port = match after.strip_prefix(':') {
                Some(p) => parse_port(p)?,
                None if after.is_empty() => default_port,
                None => return Err(Error::invalid("Url has a malformed host:port.")),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), parse_port(p)?),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        {
            return Err(Error::invalid("Url has no valid host."));
        }
        Ok(Endpoint { tls, host, port })
    }
}

fn parse_port(p: &str) -> Result<u16> {
    match p.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(Error::invalid("Url has an invalid port (1-65535).")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_and_normalises() {
        let c =
            AmqpConfig::parse(&json!({"Url": "amqp://127.0.0.1:5673", "Queue": "orders"})).unwrap();
        assert_eq!(c.virtual_host, "/");
        assert_eq!(
            c.endpoint().unwrap(),
            Endpoint {
                tls: false,
                host: "127.0.0.1".into(),
                port: 5673
            }
        );
        let c = AmqpConfig::parse(&json!({"Url": "amqps://mq.example.com/", "Queue": "q",
            "Username": "u", "Password": "p", "VirtualHost": "prod"}))
        .unwrap();
        assert!(c.tls_enabled());
        assert_eq!(c.endpoint().unwrap().port, 5671);
        let c =
            AmqpConfig::parse(&json!({"Url": "amqp://h", "Queue": "q", "Tls": {"Enabled": true}}))
                .unwrap();
        assert_eq!(c.endpoint().unwrap().port, 5671);
    }

    #[test]
    fn refuses_bad_configs() {
        for (bad, says) in [
            (
                json!({"Url": "amqp://u:p@h:5672", "Queue": "q"}),
                "Username/Password",
            ),
            (
                json!({"Url": "amqp://h:5672/vh", "Queue": "q"}),
                "VirtualHost",
            ),
            (json!({"Url": "http://h:5672", "Queue": "q"}), "amqp://"),
            (json!({"Url": "amqp://h:0", "Queue": "q"}), "port"),
            (json!({"Url": "amqp://h:99999", "Queue": "q"}), "port"),
            (
                json!({"Url": "amqp://h?heartbeat=1", "Queue": "q"}),
                "query",
            ),
            (json!({"Url": "amqp://", "Queue": "q"}), "host"),
            (json!({"Url": "amqp://h", "Queue": ""}), "Queue"),
            (json!({"Url": "amqp://h", "Queue": "a\u{0}b"}), "Queue"),
            (
                json!({"Url": "amqp://h", "Queue": "x".repeat(256)}),
                "Queue",
            ),
            (json!({"Url": "amqp://h"}), "missing field `Queue`"),
            (
                json!({"Url": "amqp://h", "Queue": "q", "Queues": ["q"]}),
                "unknown field",
            ),
            (
                json!({"Url": "amqp://h", "Queue": "q", "Password": "p"}),
                "Username",
            ),
            (
                json!({"Url": "amqp://h", "Queue": "q", "Prefetch": 0}),
                "Prefetch",
            ),
            (
                json!({"Url": "amqp://h", "Queue": "q", "Prefetch": 70000}),
                "Prefetch",
            ),
            (
                json!({"Url": "amqp://h", "Queue": "q", "Tls": {"CaFile": "/nonexistent"}}),
                "no such file",
            ),
            (
                json!({"Url": "amqp://h", "Queue": "q", "Tls": {"Enabled": "yes"}}),
                "invalid type",
            ),
            (
                json!({"Url": "amqp://h", "Queue": "q", "EventSourceArn": "x"}),
                "ARN",
            ),
            (json!({"Url": 5, "Queue": "q"}), "invalid type"),
        ] {
            let err = AmqpConfig::parse(&bad)
                .expect_err(&bad.to_string())
                .to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
