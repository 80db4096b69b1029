//! The NATS JetStream trigger's configuration: what `validate` accepts and stores.
//!
//! The trigger binds a durable pull consumer on an existing stream (or, with
//! `CreateStream`, on one it creates when missing). Credentials live in
//! `Username`/`Password` or `Token`, never in a server URL.

use std::time::Duration;
use wisp_triggers::connect::printable;
pub use wisp_triggers::connect::Tls;

use serde::{Deserialize, Serialize};
use wisp_core::error::Result;
use wisp_core::Error;

/// The broker part of a `nats` trigger's configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct NatsConfig {
    /// `nats://host:port` or `tls://host:port` (4222 by default), 1-16 of them.
    pub servers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Secret: token authentication, instead of a username and password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// The JetStream stream consumed.
    pub stream: String,
    /// When set, the stream is created (file storage, these subjects) if it does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_stream: Option<CreateStream>,
    /// Only messages on subjects matching this filter (wildcards allowed); all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The durable pull consumer's name (default `wisp-<trigger id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable: Option<String>,
    /// Where a new durable consumer starts: `all` (the stream's first message) or `new`
    /// (only messages published from now on). Default `all`. `StartingPosition`
    /// (`TRIM_HORIZON` / `LATEST`) is accepted as another way to say it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deliver_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starting_position: Option<String>,
    /// Seconds the server waits for an acknowledgement before it delivers a message again
    /// (default 60). While the function works on a batch, wisp tells the server so
    /// ("in progress") every third of this, so a slow batch is not delivered twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ack_wait: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct CreateStream {
    pub subjects: Vec<String>,
}

pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(60);

/// Stream and consumer names: no whitespace, no `.`, `*`, `>`, path separators.
fn name(what: &str, s: &str) -> Result<()> {
    printable(what, s, 200)?;
    if s.chars()
        .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err(Error::invalid(format!(
            "{what} must not contain whitespace, '.', '*', '>', '/' or '\\'."
        )));
    }
    Ok(())
}

/// A subject or a filter: dot-separated tokens; `*` a whole token, `>` the last one.
pub fn subject(what: &str, s: &str) -> Result<()> {
    printable(what, s, 1024)?;
    let tokens: Vec<&str> = s.split('.').collect();
    for (i, t) in tokens.iter().enumerate() {
        let bad = t.is_empty()
            || t.chars().any(char::is_whitespace)
            || (t.contains('*') && *t != "*")
            || (t.contains('>') && (*t != ">" || i + 1 != tokens.len()));
        if bad {
            return Err(Error::invalid(format!(
                "{what} {s:?} is not a valid NATS subject (dot-separated tokens, '*' a whole token, '>' only last)."
            )));
        }
    }
    Ok(())
}

impl NatsConfig {
    /// Parses and checks a configuration; returns it normalised.
    pub fn parse(value: &serde_json::Value) -> Result<NatsConfig> {
        let mut cfg: NatsConfig = serde_json::from_value(value.clone())
            .map_err(|e| Error::invalid(format!("Invalid nats trigger configuration: {e}")))?;
        if cfg.servers.is_empty() || cfg.servers.len() > 16 {
            return Err(Error::invalid("Servers must list 1-16 server URLs."));
        }
        let mut any_tls = false;
        for s in &cfg.servers {
            any_tls |= check_server(s)?;
        }
        name("Stream", &cfg.stream)?;
        if let Some(d) = &cfg.durable {
            name("Durable", d)?;
        }
        if let Some(s) = &cfg.subject {
            subject("Subject", s)?;
        }
        if let Some(cs) = &cfg.create_stream {
            if cs.subjects.is_empty() || cs.subjects.len() > 64 {
                return Err(Error::invalid(
                    "CreateStream.Subjects must list 1-64 subjects.",
                ));
            }
            for s in &cs.subjects {
                subject("CreateStream.Subjects", s)?;
            }
        }
        if let Some(u) = &cfg.username {
            printable("Username", u, 1024)?;
        }
        for (what, secret) in [("Password", &cfg.password), ("Token", &cfg.token)] {
            if let Some(s) = secret {
                if s.is_empty() || s.len() > 4096 {
                    return Err(Error::invalid(format!("{what} must be 1-4096 characters.")));
                }
            }
        }
        if cfg.password.is_some() != cfg.username.is_some() {
            return Err(Error::invalid("Username and Password go together."));
        }
        if cfg.token.is_some() && cfg.username.is_some() {
            return Err(Error::invalid(
                "Use either Token or Username/Password, not both.",
            ));
        }
        let from_position = match cfg.starting_position.take().as_deref() {
            None => None,
            Some("TRIM_HORIZON") => Some("all"),
            Some("LATEST") => Some("new"),
            Some(other) => {
                return Err(Error::invalid(format!(
                    "StartingPosition must be TRIM_HORIZON or LATEST, not {other:?}."
                )))
            }
        };
        let policy = match (cfg.deliver_policy.as_deref(), from_position) {
            (Some(p), _) if p != "all" && p != "new" => {
                return Err(Error::invalid(format!(
                    "DeliverPolicy must be \"all\" or \"new\", not {p:?}."
                )))
            }
            (Some(p), Some(q)) if p != q => {
                return Err(Error::invalid(
                    "DeliverPolicy and StartingPosition disagree; give one of them.",
                ))
            }
            (Some(p), _) => p.to_string(),
            (None, Some(q)) => q.to_string(),
            (None, None) => "all".to_string(),
        };
        cfg.deliver_policy = Some(policy);
        if let Some(w) = cfg.ack_wait {
            if !(1..=3600).contains(&w) {
                return Err(Error::invalid(
                    "AckWait must be between 1 and 3600 seconds.",
                ));
            }
        }
        cfg.tls = Tls::normalise(
            cfg.tls.take(),
            any_tls,
            "set Tls.Enabled or use tls:// URLs",
        )?;
        Ok(cfg)
    }

    pub fn tls_enabled(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.enabled)
    }

    pub fn ack_wait(&self) -> Duration {
        self.ack_wait
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_ACK_WAIT)
    }

    pub fn deliver_new(&self) -> bool {
        self.deliver_policy.as_deref() == Some("new")
    }
}

/// Checks one server URL; returns whether it asks for TLS.
fn check_server(s: &str) -> Result<bool> {
    printable("Servers", s, 1024)?;
    let (tls, rest) = if let Some(r) = s.strip_prefix("nats://") {
        (false, r)
    } else if let Some(r) = s.strip_prefix("tls://") {
        (true, r)
    } else {
        return Err(Error::invalid(format!(
            "Server {s:?} must start with nats:// or tls:// (for example nats://127.0.0.1:4222)."
        )));
    };
    if rest.contains('@') {
        return Err(Error::invalid(
            "Server URLs must not carry credentials: put credentials in Username/Password or Token.",
        ));
    }
    if rest.contains('/') || rest.contains('?') || rest.contains('#') {
        return Err(Error::invalid(format!(
            "Server {s:?} must be only scheme://host:port."
        )));
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (h, Some(p)),
        _ => (rest, None),
    };
    if let Some(p) = port {
        if !matches!(p.parse::<u16>(), Ok(n) if n > 0) {
            return Err(Error::invalid(format!(
                "Server {s:?} has an invalid port (1-65535)."
            )));
        }
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
    {
        return Err(Error::invalid(format!("Server {s:?} has no valid host.")));
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_and_normalises() {
        let c = NatsConfig::parse(
            &json!({"Servers": ["nats://127.0.0.1:4222"], "Stream": "ORDERS",
            "Subject": "orders.>", "StartingPosition": "LATEST"}),
        )
        .unwrap();
        assert!(c.deliver_new());
        assert_eq!(c.starting_position, None);
        assert_eq!(c.ack_wait(), DEFAULT_ACK_WAIT);
        let c = NatsConfig::parse(
            &json!({"Servers": ["tls://nats.example.com:4222"], "Stream": "S",
            "Token": "t", "CreateStream": {"Subjects": ["a.*", "b.>"]}}),
        )
        .unwrap();
        assert!(c.tls_enabled());
        assert_eq!(c.deliver_policy.as_deref(), Some("all"));
        // Normalised configs parse again to the same thing (they are stored that way).
        let again = NatsConfig::parse(&serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn refuses_bad_configs() {
        let base = |extra: serde_json::Value| {
            let mut v = json!({"Servers": ["nats://h:4222"], "Stream": "S"});
            for (k, x) in extra.as_object().unwrap() {
                v[k] = x.clone();
            }
            v
        };
        for (bad, says) in [
            (
                base(json!({"Servers": ["nats://u:p@h:4222"]})),
                "Username/Password",
            ),
            (base(json!({"Servers": []})), "1-16"),
            (base(json!({"Servers": ["http://h:4222"]})), "nats://"),
            (base(json!({"Servers": ["nats://h:0"]})), "port"),
            (
                base(json!({"Servers": ["nats://h:4222/x"]})),
                "scheme://host:port",
            ),
            (base(json!({"Servers": ["nats://:4222"]})), "host"),
            (base(json!({"Stream": "a.b"})), "Stream"),
            (base(json!({"Stream": ""})), "Stream"),
            (base(json!({"Durable": "d d"})), "Durable"),
            (base(json!({"Subject": "a..b"})), "subject"),
            (base(json!({"Subject": "a.>.b"})), "subject"),
            (base(json!({"Subject": "a.b*"})), "subject"),
            (base(json!({"Password": "p"})), "go together"),
            (
                base(json!({"Username": "u", "Password": "p", "Token": "t"})),
                "either",
            ),
            (base(json!({"DeliverPolicy": "last"})), "DeliverPolicy"),
            (
                base(json!({"StartingPosition": "AT_TIMESTAMP"})),
                "StartingPosition",
            ),
            (
                base(json!({"DeliverPolicy": "all", "StartingPosition": "LATEST"})),
                "disagree",
            ),
            (base(json!({"AckWait": 0})), "AckWait"),
            (
                base(json!({"CreateStream": {"Subjects": []}})),
                "CreateStream",
            ),
            (
                base(json!({"Tls": {"CaFile": "/nonexistent"}})),
                "no such file",
            ),
            (base(json!({"Topic": "x"})), "unknown field"),
            (
                json!({"Servers": ["nats://h:4222"]}),
                "missing field `Stream`",
            ),
        ] {
            let err = NatsConfig::parse(&bad)
                .expect_err(&bad.to_string())
                .to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
    }
}
