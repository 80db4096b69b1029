//! Every bound the queue service enforces, with its unit in its name.

/// The account id in every queue URL and ARN (wisp has one account).
pub const ACCOUNT_ID: &str = "000000000000";

/// The largest message wisp accepts: body plus message attributes (names, data types and
/// values), as SQS counts them. AWS has since raised its own cap to 1 MiB; wisp keeps the
/// classic 256 KiB so a queue's database stays small.
pub const MESSAGE_MAX_BYTES: usize = 262_144;
/// The smallest `MaximumMessageSize` a queue may set.
pub const MESSAGE_MIN_LIMIT_BYTES: u32 = 1_024;
/// The sum of the sizes of the messages in one `SendMessageBatch`.
pub const BATCH_PAYLOAD_MAX_BYTES: usize = 262_144;
/// Entries in one batch request.
pub const BATCH_MAX_ENTRIES: usize = 10;
/// Length of a batch entry id (`[A-Za-z0-9_-]`).
pub const BATCH_ENTRY_ID_MAX_CHARS: usize = 80;
/// Message attributes on one message.
pub const MESSAGE_ATTRIBUTES_MAX: usize = 10;
/// Length of a message attribute's name and of its data type.
pub const MESSAGE_ATTRIBUTE_NAME_MAX_CHARS: usize = 256;

/// `MaxNumberOfMessages` of one receive.
pub const RECEIVE_MAX_MESSAGES: u32 = 10;
/// `WaitTimeSeconds` of one receive (long polling).
pub const RECEIVE_WAIT_MAX_S: u32 = 20;

/// `VisibilityTimeout`, of a queue or of one message (12 hours).
pub const VISIBILITY_TIMEOUT_MAX_S: u32 = 43_200;
/// `DelaySeconds`, of a queue or of one message (15 minutes).
pub const DELAY_MAX_S: u32 = 900;
/// `MessageRetentionPeriod` bounds (1 minute to 14 days).
pub const RETENTION_MIN_S: u32 = 60;
pub const RETENTION_MAX_S: u32 = 1_209_600;
/// `maxReceiveCount` of a redrive policy.
pub const MAX_RECEIVE_COUNT_MAX: u32 = 1_000;

/// Queue names: `[A-Za-z0-9_-]`, 1 to 80 characters.
pub const QUEUE_NAME_MAX_CHARS: usize = 80;
/// Queues one wisp keeps (default; `QueueConfig::max_queues`).
pub const QUEUES_MAX: usize = 1_000;
/// Messages one queue keeps, in flight or not (default; `QueueConfig::max_messages_per_queue`).
pub const QUEUE_MESSAGES_MAX: u64 = 1_000_000;
/// `MaxResults` of `ListQueues` and `ListDeadLetterSourceQueues`.
pub const LIST_MAX_RESULTS: usize = 1_000;
/// Tags on one queue.
pub const QUEUE_TAGS_MAX: usize = 50;
/// A request body wisp reads at most. The largest valid request (a 256 KiB batch whose
/// bodies are all escaped control characters, six bytes each in JSON) fits.
pub const REQUEST_MAX_BYTES: usize = 2 * 1024 * 1024;
/// Opaque attributes wisp stores but does not act on (`Policy`, `RedriveAllowPolicy`, ...).
pub const OPAQUE_ATTRIBUTE_MAX_BYTES: usize = 20_480;
