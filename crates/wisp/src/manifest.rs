//! `wisp.toml`: a project's functions, parsed strictly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The manifest format; only 1 exists.
    pub version: u32,
    #[serde(default)]
    pub functions: BTreeMap<String, FunctionDef>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct FunctionDef {
    pub runtime: String,
    /// Required by every runtime but `wasm` (a component's entry point is its export).
    #[serde(default)]
    pub handler: Option<String>,
    /// The code folder, relative to the manifest.
    #[serde(default)]
    pub path: Option<PathBuf>,
    pub memory_mb: Option<u32>,
    pub timeout_s: Option<u32>,
    pub description: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Events that invoke the function. When present, `wisp deploy` makes the function's
    /// triggers exactly these (an empty list removes them all); when absent, it leaves
    /// them alone.
    #[serde(default)]
    pub triggers: Option<Vec<TriggerDef>>,
}

/// One trigger of a function: exactly one of `schedule`, `http` and `queue`.
#[derive(Debug, Deserialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TriggerDef {
    /// `rate(5 minutes)` or `cron(0 12 * * ? *)`.
    pub schedule: Option<String>,
    /// The schedule's time zone (IANA name), UTC by default.
    pub timezone: Option<String>,
    /// `skip` (default) or `fire_once`: what to do about fires missed while the server was down.
    pub missed: Option<String>,
    /// `"POST /orders/{id}"`: a route on the HTTP routes listener.
    pub http: Option<String>,
    /// A wisp queue, by name or ARN: an event source mapping from it.
    pub queue: Option<String>,
    /// For a queue: records per batch (1-10000; over 10 needs a batching window).
    pub batch_size: Option<u32>,
    /// For a queue: seconds to gather a batch (0-300).
    pub batching_window_s: Option<u32>,
    /// For a queue: report failed records (`batchItemFailures`) instead of failing the batch.
    pub report_batch_item_failures: Option<bool>,
    /// A version or alias to invoke instead of $LATEST.
    pub qualifier: Option<String>,
    /// A broker connector (`kafka`, `nats`, `rabbitmq`, `redis`, `mqtt`), with its
    /// `config`: the same object the trigger API takes. `${NAME}` in its strings is
    /// replaced by the environment variable NAME when deploying, so that credentials need
    /// not be written in the manifest.
    pub kind: Option<String>,
    pub config: Option<toml::Table>,
}

impl TriggerDef {
    /// The trigger as the API takes it: (kind, config).
    pub fn to_api(&self) -> anyhow::Result<(String, serde_json::Value)> {
        if let Some(kind) = &self.kind {
            let others = [
                self.schedule.is_some(),
                self.http.is_some(),
                self.queue.is_some(),
                self.timezone.is_some(),
                self.missed.is_some(),
                self.batch_size.is_some(),
                self.batching_window_s.is_some(),
                self.report_batch_item_failures.is_some(),
            ];
            if others.iter().any(|b| *b) {
                bail!("a trigger with kind = \"{kind}\" takes its settings in config = {{ ... }}");
            }
            let config = self
                .config
                .clone()
                .ok_or_else(|| anyhow::anyhow!("kind = \"{kind}\" needs config = {{ ... }}"))?;
            let mut value = serde_json::to_value(config)?;
            expand_env(&mut value)?;
            return Ok((kind.clone(), value));
        }
        if self.config.is_some() {
            bail!("config = {{ ... }} belongs to a trigger with kind = \"...\"");
        }
        let queue_only = [
            self.batch_size.is_some(),
            self.batching_window_s.is_some(),
            self.report_batch_item_failures.is_some(),
        ];
        if self.queue.is_none() && queue_only.iter().any(|b| *b) {
            bail!("batch_size, batching_window_s and report_batch_item_failures apply to queue triggers");
        }
        if let Some(queue) = &self.queue {
            if self.schedule.is_some()
                || self.http.is_some()
                || self.timezone.is_some()
                || self.missed.is_some()
            {
                bail!("a trigger has exactly one of schedule, http and queue");
            }
            let arn = if queue.starts_with("arn:") {
                queue.clone()
            } else {
                format!("arn:aws:sqs:us-east-1:000000000000:{queue}")
            };
            let mut cfg = serde_json::json!({ "EventSourceArn": arn });
            if let Some(n) = self.batch_size {
                cfg["BatchSize"] = n.into();
            }
            if let Some(w) = self.batching_window_s {
                cfg["MaximumBatchingWindowInSeconds"] = w.into();
            }
            if self.report_batch_item_failures == Some(true) {
                cfg["FunctionResponseTypes"] = serde_json::json!(["ReportBatchItemFailures"]);
            }
            return Ok(("sqs".into(), cfg));
        }
        match (&self.schedule, &self.http) {
            (Some(expr), None) => {
                let mut cfg = serde_json::json!({ "ScheduleExpression": expr });
                if let Some(tz) = &self.timezone {
                    cfg["ScheduleExpressionTimezone"] = tz.clone().into();
                }
                if let Some(m) = &self.missed {
                    cfg["MissedFires"] = m.to_ascii_uppercase().into();
                }
                Ok(("schedule".into(), cfg))
            }
            (None, Some(route)) => {
                let (method, path) = route.split_once(' ').ok_or_else(|| {
                    anyhow::anyhow!("http = \"{route}\": expected \"METHOD /path\"")
                })?;
                if self.timezone.is_some() || self.missed.is_some() {
                    bail!("timezone and missed apply to schedules, not to http = \"{route}\"");
                }
                Ok((
                    "http".into(),
                    serde_json::json!({ "Method": method, "Path": path.trim() }),
                ))
            }
            _ => {
                bail!("a trigger has exactly one of schedule = \"...\", http = \"METHOD /path\" and queue = \"NAME\"")
            }
        }
    }
}

/// Replaces `${NAME}` in every string of a trigger's config by the environment variable
/// NAME (an unset variable is an error, not an empty string).
fn expand_env(value: &mut serde_json::Value) -> anyhow::Result<()> {
    match value {
        serde_json::Value::String(s) => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let end = after
                    .find('}')
                    .ok_or_else(|| anyhow::anyhow!("unclosed ${{ in a trigger's config"))?;
                let name = &after[..end];
                let v = std::env::var(name).with_context(|| {
                    format!("environment variable {name} (named in a trigger's config) is not set")
                })?;
                out.push_str(&v);
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        serde_json::Value::Array(items) => {
            for v in items {
                expand_env(v)?;
            }
        }
        serde_json::Value::Object(map) => {
            for v in map.values_mut() {
                expand_env(v)?;
            }
        }
        _ => {}
    }
    Ok(())
}

impl Manifest {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read {}", path.display()))?;
        let manifest: Manifest = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid manifest", path.display()))?;
        if manifest.version != 1 {
            bail!(
                "{}: manifest version {} is not supported; use version = 1",
                path.display(),
                manifest.version
            );
        }
        if manifest.functions.is_empty() {
            bail!("{}: declares no [functions.NAME] table", path.display());
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        toml::from_str::<Manifest>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn strict_manifest() {
        let ok = parse(
            "version = 1\n[functions.a]\nruntime = \"python3.11\"\nhandler = \"app.handler\"\nenv = { X = \"1\" }\n",
        )
        .unwrap();
        assert_eq!(ok.functions["a"].env["X"], "1");
        let err =
            parse("version = 1\n[functions.a]\nruntime = \"x\"\nhandler = \"y\"\nmemroy_mb = 3\n")
                .unwrap_err();
        assert!(err.contains("memroy_mb"), "{err}");
        assert!(parse("[functions.a]\nruntime = \"x\"\nhandler = \"y\"\n").is_err());
    }
}
