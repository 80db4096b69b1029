//! The NATS JetStream connector: trigger kind `nats`.
//!
//! One trigger binds a durable pull consumer (explicit acknowledgements) on a stream and
//! invokes its function with `wisp:nats` events. The consumer's `max_ack_pending` is
//! `BatchSize × MaximumConcurrency`, so the server never hands the client more than the
//! function can work on; each message is acknowledged only after `Ctx::deliver` returned
//! (and, for a failure subject, after JetStream stored the failure record). A failed batch
//! is not nak'ed: `Ctx::deliver` already retried it with backoff, so the server is not
//! asked for a redelivery storm. With `MaximumConcurrency` 1 one batch is in flight at a
//! time, in stream order.

mod config;
mod event;
mod session;

use futures_util::future::BoxFuture;
use serde_json::Value;
use wisp_core::error::Result;
use wisp_triggers::connect::{Connector, Ctx};

pub use config::NatsConfig;

/// The `nats` trigger kind.
pub struct NatsConnector;

impl Connector for NatsConnector {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn validate(&self, config: &Value) -> Result<Value> {
        let cfg = NatsConfig::parse(config)?;
        Ok(serde_json::to_value(cfg).expect("a config serialises"))
    }

    fn secret_fields(&self) -> &'static [&'static str] {
        &["Password", "Token"]
    }

    fn run(&self, ctx: Ctx, config: Value) -> BoxFuture<'static, ()> {
        Box::pin(session::run(ctx, config))
    }
}
