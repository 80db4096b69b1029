//! Durable message queues with an SQS-compatible API.
//!
//! wisp's queues speak SQS's JSON protocol (what current boto3, the AWS CLI and the AWS
//! SDKs send): `POST /` with `X-Amz-Target: AmazonSQS.<Operation>` and a JSON body. Errors
//! carry the modeled shape in `__type` and the legacy code in `x-amzn-query-error`, so
//! botocore raises `client.exceptions.QueueDoesNotExist` with `Error.Code ==
//! "AWS.SimpleQueueService.NonExistentQueue"`, as against AWS.
//!
//! # Layers
//!
//! - [`store::QueueStore`]: queues and messages in one SQLite database (WAL,
//!   `synchronous=NORMAL`); every method one transaction, the clock passed in.
//! - [`QueueService`]: the store behind an async API, long polling, the retention sweeper.
//! - [`router`]: the HTTP API over a `QueueService`.
//!
//! # Guarantees
//!
//! - A send is acknowledged after its insert commits: it survives `kill -9`.
//! - A received message is hidden until its visibility timeout passes, then receivable
//!   again, across restarts too (visibility is a timestamp in the row).
//! - Receipt handles change on every receive; deleting with a stale one deletes nothing,
//!   so a slow consumer cannot delete a message someone else has received since.
//! - A receive that would exceed a redrive policy's `maxReceiveCount` moves the message to
//!   the dead-letter queue instead (same message id and sent time).
//! - Messages past their queue's `MessageRetentionPeriod` are never delivered and are
//!   deleted by the sweeper.
//! - Bounds ([`limits`]): 256 KiB per message (body plus attributes), 10 entries per
//!   batch, 1 to 10 messages per receive, 20 s of long polling, 1000 queues, a million
//!   messages per queue, 2 MiB per request. FIFO queues are refused as unsupported.
//!
//! # Using it from the rest of wisp (no HTTP)
//!
//! ```no_run
//! # async fn demo() -> Result<(), wisp_queue::QueueError> {
//! use std::collections::BTreeMap;
//! use std::time::Duration;
//! use wisp_queue::{MessageAttributes, QueueConfig, QueueService};
//!
//! // In the server, inside the Tokio runtime: opens <data-dir>/queues.db and starts the
//! // retention sweeper (which stops by itself when the service is dropped).
//! let queues = QueueService::start(std::path::Path::new(".wisp/queues.db"), QueueConfig::default())?;
//! queues.create_queue("orders", &BTreeMap::new(), BTreeMap::new()).await?;
//!
//! // An event source mapping: resolve the ARN once, then poll.
//! let name = queues.queue_name_from_arn("arn:aws:sqs:us-east-1:000000000000:orders").await?;
//! let id = queues.send(&name, "{\"order\": 1}", MessageAttributes::new()).await?;
//! // Up to 10 messages, hidden for 30 s, waiting up to 20 s for one to arrive.
//! let batch = queues.receive_wait(&name, 10, Some(30), Duration::from_secs(20)).await?;
//! let records: Vec<_> = batch.iter().map(|m| queues.lambda_record(&name, m)).collect();
//! // ... invoke the function with {"Records": records} ...
//! for m in &batch {
//!     queues.delete(&name, &m.receipt_handle).await?; // on success
//!     // or, to retry later: queues.change_visibility(&name, &m.receipt_handle, 10).await?;
//! }
//! # let _ = (id, records);
//! # Ok(()) }
//! ```
//!
//! The data-plane calls of [`QueueService`]:
//!
//! - `send(queue, body, attributes) -> message id`, and `send_messages` for checked batches
//! - `receive(queue, max, visibility_timeout_s) -> Vec<Received>`: what is visible now
//! - `receive_wait(queue, max, visibility_timeout_s, wait) -> Vec<Received>`: long polling
//! - `delete(queue, receipt_handle) -> bool`, `change_visibility(queue, receipt_handle, timeout_s)`
//! - `queue_arn(name)`, `queue_name_from_arn(arn)`, `lambda_record(queue, &Received)`
//! - `notifier(queue) -> Arc<Notify>`: woken on every send to the queue (enable the
//!   `notified()` future before looking at the queue)

pub mod attributes;
pub mod error;
mod http;
pub mod limits;
pub mod message;
pub mod names;
mod service;
pub mod store;

pub use error::{ErrorKind, QueueError};
pub use http::router;
pub use message::{MessageAttributeValue, MessageAttributes};
pub use service::{now_ms, QueueConfig, QueueService};
pub use store::{Counts, NewMessage, Received, Sent};
