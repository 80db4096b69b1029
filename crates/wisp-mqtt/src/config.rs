//! An MQTT trigger's configuration: broker, protocol version, credentials, TLS, topic
//! filters, QoS and the persistent session's client id.

use serde::{Deserialize, Serialize};
use wisp_core::error::Result;
use wisp_core::Error;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Tls {
    #[serde(default)]
    pub enabled: bool,
    /// PEM file with the CA certificate(s) to trust (default: the system's bundle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

/// The broker part of an `mqtt` trigger's configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Config {
    /// `mqtt://host:1883` or `mqtts://host:8883` (TLS), without credentials.
    pub url: String,
    /// 3 (MQTT 3.1.1) or 5 (MQTT 5.0, the default).
    #[serde(default = "default_version")]
    pub protocol_version: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Topic filters to subscribe to (`+` and `#` wildcards, `$share/...` allowed).
    pub topics: Vec<String>,
    /// The subscription's QoS: 1 (default, at least once), 2, or 0 (at most once: the
    /// broker does not resend what a crash lost).
    #[serde(default = "default_qos")]
    pub qos: u8,
    /// The session's client id (default `wisp-<trigger id>`). The session is persistent
    /// (clean session off), so the broker queues messages while wisp is away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// MQTT 5: how long the broker keeps the session after a disconnect (default one
    /// week). MQTT 3.1.1 sessions last until the broker drops them.
    #[serde(default = "default_expiry")]
    pub session_expiry_seconds: u32,
    /// Keep-alive interval (default 30).
    #[serde(default = "default_keep_alive")]
    pub keep_alive_seconds: u16,
}

fn default_version() -> u8 {
    5
}
fn default_qos() -> u8 {
    1
}
fn default_expiry() -> u32 {
    7 * 24 * 3600
}
fn default_keep_alive() -> u16 {
    30
}

/// The parts of the URL the connector uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

fn text_ok(what: &str, v: &str, max: usize) -> Result<()> {
    if v.is_empty() || v.len() > max || v.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{what} must be 1-{max} printable characters."
        )));
    }
    Ok(())
}

/// Checks one topic filter as MQTT defines them: `#` only as the whole last level, `+`
/// only as a whole level, no NUL.
pub fn check_filter(f: &str) -> Result<()> {
    let bad = |why: &str| Error::invalid(format!("Topic filter '{f}' is invalid: {why}."));
    if f.is_empty() || f.len() > 65_535 {
        return Err(bad("it must be 1-65535 bytes"));
    }
    if f.contains('\0') {
        return Err(bad("it contains NUL"));
    }
    let levels: Vec<&str> = f.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Err(bad("'#' must be the whole last level"));
        }
        if level.contains('+') && *level != "+" {
            return Err(bad("'+' must be a whole level"));
        }
    }
    if let Some(rest) = f.strip_prefix("$share/") {
        let (group, filter) = rest.split_once('/').unwrap_or((rest, ""));
        if group.is_empty() || group.contains(['+', '#']) || filter.is_empty() {
            return Err(bad("a shared subscription is $share/<group>/<filter>"));
        }
    }
    Ok(())
}

impl Config {
    /// Parses and checks a configuration strictly, and returns it normalised.
    pub fn parse(value: &serde_json::Value) -> Result<Config> {
        let mut cfg: Config = serde_json::from_value(value.clone())
            .map_err(|e| Error::invalid(format!("Invalid mqtt trigger configuration: {e}")))?;
        let ep = cfg.endpoint()?;
        if ep.tls {
            cfg.tls.get_or_insert_with(Tls::default).enabled = true;
        }
        if let Some(tls) = &cfg.tls {
            if let Some(ca) = &tls.ca_file {
                if !tls.enabled {
                    return Err(Error::invalid("Tls.CaFile needs Tls.Enabled: true."));
                }
                text_ok("Tls.CaFile", ca, 4096)?;
                if std::fs::metadata(ca).map(|m| !m.is_file()).unwrap_or(true) {
                    return Err(Error::invalid(format!(
                        "Tls.CaFile {ca} is not a readable file on the server."
                    )));
                }
            }
        }
        if cfg.protocol_version != 3 && cfg.protocol_version != 5 {
            return Err(Error::invalid(
                "ProtocolVersion must be 3 (MQTT 3.1.1) or 5 (MQTT 5.0).",
            ));
        }
        if cfg.qos > 2 {
            return Err(Error::invalid("Qos must be 0, 1 or 2."));
        }
        if cfg.topics.is_empty() || cfg.topics.len() > 100 {
            return Err(Error::invalid("Topics must list 1-100 topic filters."));
        }
        for t in &cfg.topics {
            check_filter(t)?;
        }
        if let Some(id) = &cfg.client_id {
            text_ok("ClientId", id, 256)?;
        }
        if let Some(u) = &cfg.username {
            text_ok("Username", u, 1024)?;
        }
        if let Some(p) = &cfg.password {
            if p.is_empty() || p.len() > 4096 {
                return Err(Error::invalid("Password must be 1-4096 characters."));
            }
            if cfg.username.is_none() {
                return Err(Error::invalid("Password needs a Username."));
            }
        }
        if !(5..=3600).contains(&cfg.keep_alive_seconds) {
            return Err(Error::invalid(
                "KeepAliveSeconds must be between 5 and 3600.",
            ));
        }
        Ok(cfg)
    }

    /// The URL's host, port and scheme; refuses credentials in the URL.
    pub fn endpoint(&self) -> Result<Endpoint> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "Url must look like mqtt://host:1883 or mqtts://host:8883: {why}."
            ))
        };
        let url = url::Url::parse(&self.url).map_err(|e| bad(&e.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::invalid(
                "Url must not carry credentials: put credentials in Username/Password.",
            ));
        }
        let (tls, default_port) = match url.scheme() {
            "mqtt" | "tcp" => (self.tls.as_ref().is_some_and(|t| t.enabled), 1883),
            "mqtts" | "ssl" => (true, 8883),
            other => return Err(bad(&format!("unsupported scheme '{other}'"))),
        };
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']'),
            _ => return Err(bad("no host")),
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(bad("no path, query or fragment allowed"));
        }
        Ok(Endpoint {
            host: host.to_string(),
            port: url.port().unwrap_or(default_port),
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: serde_json::Value) -> String {
        Config::parse(&v).unwrap_err().message
    }

    #[test]
    fn parses_with_defaults() {
        let c = Config::parse(&json!({"Url": "mqtt://127.0.0.1:1884", "Topics": ["a/+/c", "d/#"]}))
            .unwrap();
        assert_eq!(
            (c.protocol_version, c.qos, c.keep_alive_seconds),
            (5, 1, 30)
        );
        assert_eq!(c.endpoint().unwrap().port, 1884);
        let c = Config::parse(&json!({"Url": "mqtts://h", "Topics": ["#"], "ProtocolVersion": 3}))
            .unwrap();
        assert!(c.tls.unwrap().enabled);
    }

    #[test]
    fn refuses_bad_configs() {
        assert!(err(json!({"Url": "mqtt://u:p@h", "Topics": ["a"]})).contains("Username/Password"));
        assert!(err(json!({"Url": "http://h", "Topics": ["a"]})).contains("scheme"));
        assert!(err(json!({"Url": "mqtt://h/x", "Topics": ["a"]})).contains("path"));
        assert!(err(json!({"Url": "mqtt://h", "Topics": []})).contains("Topics"));
        assert!(err(json!({"Url": "mqtt://h", "Topics": ["a/#/b"]})).contains("'#'"));
        assert!(err(json!({"Url": "mqtt://h", "Topics": ["a+"]})).contains("'+'"));
        assert!(err(json!({"Url": "mqtt://h", "Topics": ["$share/g"]})).contains("shared"));
        assert!(err(json!({"Url": "mqtt://h", "Topics": ["a"], "Qos": 3})).contains("Qos"));
        assert!(
            err(json!({"Url": "mqtt://h", "Topics": ["a"], "ProtocolVersion": 4}))
                .contains("ProtocolVersion")
        );
        assert!(
            err(json!({"Url": "mqtt://h", "Topics": ["a"], "Nope": 1})).contains("unknown field")
        );
        assert!(
            err(json!({"Url": "mqtt://h", "Topics": ["a"], "Password": "p"})).contains("Username")
        );
        assert!(
            err(json!({"Url": "mqtt://h", "Topics": ["a"], "ClientId": "a\u{7}"}))
                .contains("ClientId")
        );
        assert!(
            err(json!({"Url": "mqtt://h", "Topics": ["a"], "KeepAliveSeconds": 1}))
                .contains("KeepAliveSeconds")
        );
    }
}
