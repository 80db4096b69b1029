//! A function's validated specification: what the store keeps and the runtime needs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::limits::*;
use crate::runtime::RuntimeKind;

/// Lambda's life-cycle state. wisp prepares code synchronously, so a stored function is
/// always `Active`; the field exists because clients read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FunctionState {
    Active,
}

/// One version of a function (`$LATEST` or a published number), fully validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionSpec {
    pub name: String,
    pub runtime: String,
    pub handler: String,
    pub memory_mb: u32,
    pub timeout_s: u32,
    pub env: BTreeMap<String, String>,
    pub description: String,
    pub role: String,
    /// Hex sha256 of the zip package: the key in the artifact store.
    pub code_sha256: String,
    pub code_size: u64,
    pub last_modified_ms: i64,
    /// Changes on every update, so clients can make conditional updates and the
    /// dispatcher can tell stale instances from current ones.
    pub revision_id: String,
    /// Fields wisp accepts and returns but has no use for (VpcConfig, Layers, ...).
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl FunctionSpec {
    pub fn runtime_kind(&self) -> RuntimeKind {
        // Specs are validated before they are stored, so this cannot fail on stored data;
        // fall back to Provided rather than panic on a hand-edited store.
        RuntimeKind::parse(&self.runtime).unwrap_or(RuntimeKind::Provided)
    }
}

pub fn validate_memory(memory_mb: u32) -> Result<()> {
    if !(MEMORY_MIN_MB..=MEMORY_MAX_MB).contains(&memory_mb) {
        return Err(Error::invalid(format!(
            "MemorySize {memory_mb} is out of range: use {MEMORY_MIN_MB} to {MEMORY_MAX_MB} MB."
        )));
    }
    Ok(())
}

pub fn validate_timeout(timeout_s: u32) -> Result<()> {
    if !(TIMEOUT_MIN_S..=TIMEOUT_MAX_S).contains(&timeout_s) {
        return Err(Error::invalid(format!(
            "Timeout {timeout_s} is out of range: use {TIMEOUT_MIN_S} to {TIMEOUT_MAX_S} seconds."
        )));
    }
    Ok(())
}

pub fn validate_description(description: &str) -> Result<()> {
    if description.chars().count() > DESCRIPTION_MAX_CHARS {
        return Err(Error::invalid(format!(
            "Description is longer than {DESCRIPTION_MAX_CHARS} characters."
        )));
    }
    Ok(())
}

/// Variables Lambda sets itself; a function may not override them.
const RESERVED_ENV: &[&str] = &[
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

pub fn validate_env(env: &BTreeMap<String, String>) -> Result<()> {
    let mut total = 0;
    for (key, value) in env {
        let mut chars = key.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(Error::invalid(format!(
                "Environment variable name '{}' is invalid: start with a letter, then letters, digits or '_'.",
                key.chars().take(64).collect::<String>()
            )));
        }
        if RESERVED_ENV.contains(&key.as_str()) {
            return Err(Error::invalid(format!(
                "Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: {key}"
            )));
        }
        if value.contains('\0') {
            return Err(Error::invalid(format!(
                "Environment variable '{key}' contains a NUL byte."
            )));
        }
        total += key.len() + value.len();
    }
    if total > ENV_MAX_BYTES {
        return Err(Error::invalid(format!(
            "Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: {total} bytes."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn env_rules() {
        assert!(validate_env(&env(&[("STAGE", "dev"), ("A_1", "")])).is_ok());
        assert!(validate_env(&env(&[("1A", "x")])).is_err());
        assert!(validate_env(&env(&[("A-B", "x")])).is_err());
        assert!(validate_env(&env(&[("AWS_REGION", "x")])).is_err());
        assert!(validate_env(&env(&[("BIG", &"x".repeat(5000))])).is_err());
    }

    #[test]
    fn ranges() {
        assert!(validate_memory(128).is_ok() && validate_memory(10240).is_ok());
        assert!(validate_memory(127).is_err() && validate_memory(10241).is_err());
        assert!(validate_timeout(1).is_ok() && validate_timeout(900).is_ok());
        assert!(validate_timeout(0).is_err() && validate_timeout(901).is_err());
    }
}
