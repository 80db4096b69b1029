//! The record kept for every invocation.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvocationType {
    RequestResponse,
    Event,
}

impl InvocationType {
    pub fn as_str(self) -> &'static str {
        match self {
            InvocationType::RequestResponse => "RequestResponse",
            InvocationType::Event => "Event",
        }
    }
}

/// How an invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvocationStatus {
    /// The handler returned a result.
    Success,
    /// The handler (or its initialisation) reported an error.
    Error,
    /// The instance ran past the function's timeout and was killed.
    Timeout,
    /// The instance went over its memory limit and was killed.
    OutOfMemory,
    /// The instance exited or broke the Runtime API protocol mid-invocation.
    Crashed,
}

impl InvocationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvocationStatus::Success => "Success",
            InvocationStatus::Error => "Error",
            InvocationStatus::Timeout => "Timeout",
            InvocationStatus::OutOfMemory => "OutOfMemory",
            InvocationStatus::Crashed => "Crashed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Success" => InvocationStatus::Success,
            "Error" => InvocationStatus::Error,
            "Timeout" => InvocationStatus::Timeout,
            "OutOfMemory" => InvocationStatus::OutOfMemory,
            "Crashed" => InvocationStatus::Crashed,
            _ => return None,
        })
    }
}

/// One invocation, as the records API returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InvocationRecord {
    /// Assigned by the store; 0 until written.
    pub seq: i64,
    pub request_id: String,
    pub function_name: String,
    pub version: String,
    pub invocation_type: InvocationType,
    pub start_time_ms: i64,
    pub duration_ms: f64,
    pub billed_duration_ms: u64,
    /// The cold start's initialisation time; `None` on a warm instance.
    pub init_duration_ms: Option<f64>,
    pub max_memory_used_mb: u64,
    pub memory_size_mb: u32,
    pub status: InvocationStatus,
    pub error_type: Option<String>,
    pub logs: String,
}

/// Lambda bills in 1 ms increments, rounding up.
pub fn billed_ms(duration_ms: f64) -> u64 {
    duration_ms.max(0.0).ceil().max(1.0) as u64
}
