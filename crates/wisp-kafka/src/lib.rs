//! wisp's Kafka connector (trigger kind `kafka`): consumes one topic through librdkafka and
//! invokes a function with Lambda's self-managed Kafka event, committing each partition's
//! offset only after the function handled the batch (at least once, in partition order).
//!
//! - [`config`]: the configuration (Lambda's event source mapping names) and its librdkafka
//!   settings.
//! - [`event`]: the event shape.
//! - [`consumer`]: the consuming loop (assignment, batching, commits, status).

pub mod config;
pub mod consumer;
pub mod event;

use futures_util::future::BoxFuture;
use serde_json::Value;
use wisp_core::error::Result;
use wisp_triggers::connect::{Connector, Ctx};

/// The `kafka` trigger kind.
pub struct KafkaConnector;

impl Connector for KafkaConnector {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn validate(&self, config: &Value) -> Result<Value> {
        let cfg = config::KafkaConfig::parse(config)?;
        Ok(serde_json::to_value(cfg).expect("a parsed configuration serialises"))
    }

    fn secret_fields(&self) -> &'static [&'static str] {
        &["Password"]
    }

    fn run(&self, ctx: Ctx, config: Value) -> BoxFuture<'static, ()> {
        Box::pin(consumer::run(ctx, config))
    }
}
