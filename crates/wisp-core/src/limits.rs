//! Every bound the platform enforces, in one place, with units in the names.

/// Synchronous invoke payload and response limit (Lambda: 6 MB).
pub const SYNC_PAYLOAD_MAX_BYTES: usize = 6 * 1024 * 1024;
/// Asynchronous invoke payload limit (Lambda: 1 MB since 2025).
pub const ASYNC_PAYLOAD_MAX_BYTES: usize = 1024 * 1024;
/// A zipped package sent inline (Lambda: 50 MB).
pub const ZIP_MAX_BYTES: usize = 50 * 1024 * 1024;
/// A request body that carries a base64 zip: the zip limit plus base64 and JSON overhead.
pub const CODE_REQUEST_MAX_BYTES: usize = ZIP_MAX_BYTES / 3 * 4 + 1024 * 1024;
/// Other control-plane request bodies.
pub const CONTROL_REQUEST_MAX_BYTES: usize = 1024 * 1024;
/// Unpacked package size (Lambda: 250 MB).
pub const UNZIPPED_MAX_BYTES: u64 = 250 * 1024 * 1024;
/// Entries in one package.
pub const ZIP_MAX_ENTRIES: usize = 10_000;
/// Total size of a function's environment variables (Lambda: 4 KB).
pub const ENV_MAX_BYTES: usize = 4 * 1024;
pub const MEMORY_MIN_MB: u32 = 128;
pub const MEMORY_MAX_MB: u32 = 10_240;
pub const MEMORY_DEFAULT_MB: u32 = 128;
pub const TIMEOUT_MIN_S: u32 = 1;
pub const TIMEOUT_MAX_S: u32 = 900;
pub const TIMEOUT_DEFAULT_S: u32 = 3;
pub const DESCRIPTION_MAX_CHARS: usize = 256;
pub const HANDLER_MAX_CHARS: usize = 128;
pub const FUNCTION_NAME_MAX_CHARS: usize = 64;
/// Captured stdout/stderr per invocation; the rest is dropped with a marker.
pub const LOG_MAX_BYTES_PER_INVOCATION: usize = 256 * 1024;
/// The tail returned by `X-Amz-Log-Type: Tail`.
pub const LOG_TAIL_BYTES: usize = 4 * 1024;
/// ListFunctions page size bounds.
pub const LIST_MAX_ITEMS: usize = 10_000;
pub const LIST_DEFAULT_ITEMS: usize = 50;
/// Processes one instance may hold (fork bombs stop here where cgroups exist).
pub const INSTANCE_MAX_PIDS: u32 = 512;
