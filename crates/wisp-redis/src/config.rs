//! A Redis Streams trigger's configuration: connection, credentials, TLS, stream, group.

use serde::{Deserialize, Serialize};
use wisp_core::error::Result;
use wisp_core::Error;

/// Where a new consumer group starts reading when wisp creates it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum StartingPosition {
    /// The whole stream, from its first entry (`XGROUP CREATE ... 0`).
    #[default]
    #[serde(rename = "TRIM_HORIZON")]
    TrimHorizon,
    /// Only entries added after the group was created (`XGROUP CREATE ... $`).
    #[serde(rename = "LATEST")]
    Latest,
}

impl StartingPosition {
    pub fn group_start_id(self) -> &'static str {
        match self {
            StartingPosition::TrimHorizon => "0",
            StartingPosition::Latest => "$",
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Tls {
    #[serde(default)]
    pub enabled: bool,
    /// PEM file with the CA certificate(s) to trust instead of the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

/// The broker part of a `redis` trigger's configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Config {
    /// `redis://host:port/db` or `rediss://host:port/db` (TLS), without credentials.
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// The stream key to consume.
    pub stream: String,
    /// The consumer group (created with `MKSTREAM` if it does not exist).
    pub group: String,
    /// This trigger's consumer name in the group (default `wisp-<trigger id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    #[serde(default)]
    pub starting_position: StartingPosition,
    /// Entries pending on any consumer of the group for longer than this are claimed
    /// (`XAUTOCLAIM`) and delivered again: the way entries of a consumer that died are
    /// not stuck forever. Make it longer than a batch's worst delivery time (default 300).
    #[serde(default = "default_claim_idle")]
    pub claim_idle_seconds: u64,
}

fn default_claim_idle() -> u64 {
    300
}

/// The parts of the URL the connector uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub db: i64,
    pub tls: bool,
}

fn name_ok(what: &str, v: &str) -> Result<()> {
    if v.is_empty() || v.len() > 1024 || v.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{what} must be 1-1024 printable characters."
        )));
    }
    Ok(())
}

impl Config {
    /// Parses and checks a configuration strictly, and returns it normalised.
    pub fn parse(value: &serde_json::Value) -> Result<Config> {
        let mut cfg: Config = serde_json::from_value(value.clone())
            .map_err(|e| Error::invalid(format!("Invalid redis trigger configuration: {e}")))?;
        let ep = cfg.endpoint()?;
        if ep.tls {
            // rediss:// means TLS; say so in the stored configuration too.
            cfg.tls.get_or_insert_with(Tls::default).enabled = true;
        }
        if let Some(tls) = &cfg.tls {
            if let Some(ca) = &tls.ca_file {
                if !tls.enabled {
                    return Err(Error::invalid("Tls.CaFile needs Tls.Enabled: true."));
                }
                name_ok("Tls.CaFile", ca)?;
                if std::fs::metadata(ca).map(|m| !m.is_file()).unwrap_or(true) {
                    return Err(Error::invalid(format!(
                        "Tls.CaFile {ca} is not a readable file on the server."
                    )));
                }
            }
        }
        name_ok("Stream", &cfg.stream)?;
        name_ok("Group", &cfg.group)?;
        if let Some(c) = &cfg.consumer {
            name_ok("Consumer", c)?;
        }
        if let Some(u) = &cfg.username {
            name_ok("Username", u)?;
            if cfg.password.is_none() {
                return Err(Error::invalid("Username needs a Password."));
            }
        }
        if let Some(p) = &cfg.password {
            if p.is_empty() || p.len() > 4096 {
                return Err(Error::invalid("Password must be 1-4096 characters."));
            }
        }
        if !(1..=86_400).contains(&cfg.claim_idle_seconds) {
            return Err(Error::invalid(
                "ClaimIdleSeconds must be between 1 and 86400.",
            ));
        }
        Ok(cfg)
    }

    /// The URL's host, port, database and scheme; refuses credentials in the URL.
    pub fn endpoint(&self) -> Result<Endpoint> {
        let bad = |why: &str| {
            Error::invalid(format!(
                "Url must look like redis://host:6379/0 or rediss://host:6380/0: {why}."
            ))
        };
        let url = url::Url::parse(&self.url).map_err(|e| bad(&e.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::invalid(
                "Url must not carry credentials: put credentials in Username/Password.",
            ));
        }
        let tls = match url.scheme() {
            "redis" => self.tls.as_ref().is_some_and(|t| t.enabled),
            "rediss" => true,
            other => return Err(bad(&format!("unsupported scheme '{other}'"))),
        };
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']'),
            _ => return Err(bad("no host")),
        };
        if url.query().is_some() || url.fragment().is_some() {
            return Err(bad("no query or fragment allowed"));
        }
        let db = match url.path().trim_start_matches('/') {
            "" => 0,
            d => d
                .parse::<i64>()
                .ok()
                .filter(|d| (0..=100_000).contains(d))
                .ok_or_else(|| bad("the path must be a database number"))?,
        };
        Ok(Endpoint {
            host: host.to_string(),
            port: url.port().unwrap_or(6379),
            db,
            tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(v: serde_json::Value) -> Config {
        Config::parse(&v).unwrap()
    }

    fn err(v: serde_json::Value) -> String {
        Config::parse(&v).unwrap_err().message
    }

    #[test]
    fn parses_and_normalises() {
        let c = ok(json!({"Url": "redis://127.0.0.1:7000/2", "Stream": "s", "Group": "g"}));
        assert_eq!(c.starting_position, StartingPosition::TrimHorizon);
        assert_eq!(c.claim_idle_seconds, 300);
        let ep = c.endpoint().unwrap();
        assert_eq!(
            ep,
            Endpoint {
                host: "127.0.0.1".into(),
                port: 7000,
                db: 2,
                tls: false
            }
        );
        let c = ok(
            json!({"Url": "rediss://h", "Stream": "s", "Group": "g", "StartingPosition": "LATEST"}),
        );
        assert!(c.tls.unwrap().enabled);
        assert_eq!(c.starting_position.group_start_id(), "$");
    }

    #[test]
    fn refuses_bad_configs() {
        assert!(
            err(json!({"Url": "redis://u:p@h:1/0", "Stream": "s", "Group": "g"}))
                .contains("Username/Password")
        );
        assert!(
            err(json!({"Url": "redis://:p@h:1/0", "Stream": "s", "Group": "g"}))
                .contains("Username/Password")
        );
        assert!(
            err(json!({"Url": "redis://h", "Stream": "s", "Group": "g", "Bogus": 1}))
                .contains("unknown field")
        );
        assert!(err(json!({"Url": "http://h", "Stream": "s", "Group": "g"})).contains("scheme"));
        assert!(
            err(json!({"Url": "redis://h/x", "Stream": "s", "Group": "g"})).contains("database")
        );
        assert!(err(json!({"Url": "redis://h", "Stream": "", "Group": "g"})).contains("Stream"));
        assert!(err(json!({"Url": "redis://h", "Stream": "s", "Group": "a\nb"})).contains("Group"));
        assert!(err(json!({"Url": "redis://h", "Stream": "s"})).contains("Group"));
        assert!(
            err(json!({"Url": "redis://h", "Stream": "s", "Group": "g", "Username": "u"}))
                .contains("Password")
        );
        assert!(err(json!({"Url": "redis://h", "Stream": "s", "Group": "g", "StartingPosition": "AT_TIMESTAMP"}))
            .contains("unknown variant"));
        assert!(err(json!({"Url": "redis://h", "Stream": "s", "Group": "g", "Tls": {"CaFile": "/etc/hostname"}}))
            .contains("Tls.Enabled"));
        assert!(err(json!({"Url": "redis://h", "Stream": "s", "Group": "g", "Tls": {"Enabled": true, "CaFile": "/nonexistent/ca.pem"}}))
            .contains("not a readable file"));
        assert!(err(
            json!({"Url": "redis://h", "Stream": "s", "Group": "g", "ClaimIdleSeconds": 0})
        )
        .contains("ClaimIdleSeconds"));
    }
}
