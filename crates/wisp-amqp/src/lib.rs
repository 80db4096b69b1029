//! The RabbitMQ (AMQP 0-9-1) connector: trigger kind `rabbitmq`.
//!
//! One trigger consumes one queue with manual acknowledgements and invokes its function
//! with Lambda's `aws:rmq` event. The broker is told (basic.qos) to push no more than
//! `BatchSize × MaximumConcurrency` unacknowledged messages, so the client never buffers more
//! than the function can take; a batch's messages are acknowledged one by one (delivery
//! tag, `multiple = false`) only after `Ctx::deliver` returned — and, for a failure queue on
//! the broker, after the broker confirmed the failure record. A connection lost before that
//! leaves the messages unacknowledged, so RabbitMQ delivers them again (at least once).

mod config;
mod event;
mod session;

use futures_util::future::BoxFuture;
use serde_json::Value;
use wisp_core::error::Result;
use wisp_triggers::connect::{Connector, Ctx};

pub use config::AmqpConfig;

/// The `rabbitmq` trigger kind.
pub struct RabbitMqConnector;

impl Connector for RabbitMqConnector {
    fn kind(&self) -> &'static str {
        "rabbitmq"
    }

    fn validate(&self, config: &Value) -> Result<Value> {
        let cfg = AmqpConfig::parse(config)?;
        Ok(serde_json::to_value(cfg).expect("a config serialises"))
    }

    fn secret_fields(&self) -> &'static [&'static str] {
        &["Password"]
    }

    fn run(&self, ctx: Ctx, config: Value) -> BoxFuture<'static, ()> {
        Box::pin(session::run(ctx, config))
    }
}
