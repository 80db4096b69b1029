//! The Redis Streams connector (trigger kind `redis`): consumes a stream through a
//! consumer group and invokes a function with batches of entries, at least once.
//!
//! - Reading: `XREADGROUP GROUP <Group> <Consumer> COUNT <BatchSize> BLOCK ...`, after this
//!   consumer's own pending entries (what a crash left unacknowledged) and with a periodic
//!   `XAUTOCLAIM` of entries idle too long on any consumer of the group.
//! - Acknowledging: `XACK` only once the batch was delivered (or sent to its failure
//!   destination: a wisp queue, or a stream on the same server that gets an `XADD`).
//! - The event: `{"eventSource": "wisp:redis", "stream", "group", "records": [{"id",
//!   "fields": {"<name>": "<base64 value>"}, "deliveryCount"}]}`; see [`event`].

mod config;
mod consume;
pub mod event;

use futures_util::future::BoxFuture;
use serde_json::Value;
use wisp_core::error::Result;
use wisp_core::Error;
use wisp_triggers::connect::{Connector, Ctx};

pub use config::Config;

pub const KIND: &str = "redis";

/// The `redis` trigger kind.
#[derive(Debug, Default)]
pub struct RedisStreams;

impl Connector for RedisStreams {
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
