//! The MQTT connector (trigger kind `mqtt`, MQTT 3.1.1 and 5): subscribes with a
//! persistent session and invokes a function with batches of messages, at least once
//! (QoS 1 and 2): a message is acknowledged only after its batch was delivered or sent to
//! its failure destination (a wisp queue, or a topic on the same broker, published with
//! QoS 1 and confirmed).
//!
//! The event: `{"eventSource": "wisp:mqtt", "broker", "clientId", "messages": [{"topic",
//! "qos", "retain", "dup", "payload": "<base64>", "properties": {...}}]}`.

mod config;
mod consume;
pub mod link;

use futures_util::future::BoxFuture;
use serde_json::Value;
use wisp_core::error::Result;
use wisp_core::Error;
use wisp_triggers::connect::{Connector, Ctx};

pub use config::Config;

pub const KIND: &str = "mqtt";

/// The `mqtt` trigger kind.
#[derive(Debug, Default)]
pub struct Mqtt;

impl Connector for Mqtt {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn validate(&self, config: &Value) -> Result<Value> {
        let cfg = Config::parse(config)?;
        serde_json::to_value(cfg).map_err(|e| Error::service(e.to_string()))
    }

    fn secret_fields(&self) -> &'static [&'static str] {
        &["Password"]
    }

    fn run(&self, ctx: Ctx, config: Value) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            match Config::parse(&config) {
                Ok(cfg) => consume::run(ctx, cfg).await,
                Err(e) => ctx.status(|s| {
                    s.state = "Invalid".into();
                    s.last_error = Some(e.message);
                }),
            }
        })
    }
}
