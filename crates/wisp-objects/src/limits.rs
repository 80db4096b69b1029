//! Every bound the object store keeps, with its unit in its name.

/// Largest object one PutObject (or CopyObject) may store: S3's own limit.
pub const OBJECT_MAX_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// Largest part of a multipart upload: S3's own limit.
pub const PART_MAX_BYTES: u64 = 5 * 1024 * 1024 * 1024;
/// Smallest part but the last one, checked at CompleteMultipartUpload (S3's rule).
pub const PART_MIN_BYTES: u64 = 5 * 1024 * 1024;
/// Part numbers run from 1 to this (S3's rule).
pub const PARTS_MAX: i32 = 10_000;
/// Largest object a multipart upload may assemble: S3's own limit.
pub const MULTIPART_OBJECT_MAX_BYTES: u64 = 5 * 1024 * 1024 * 1024 * 1024;
/// Buckets per server.
pub const BUCKETS_MAX: usize = 1_000;
/// Multipart uploads in progress per server; one more is refused until some complete or
/// are aborted.
pub const UPLOADS_IN_PROGRESS_MAX: usize = 10_000;
/// An upload neither completed nor aborted for this long is aborted at start-up.
pub const UPLOAD_MAX_AGE_MS: i64 = 7 * 24 * 3600 * 1000;
/// Object keys: UTF-8, at most this many bytes (S3's rule).
pub const KEY_MAX_BYTES: usize = 1024;
/// User metadata (names and values of `x-amz-meta-*`), as S3 counts it.
pub const USER_METADATA_MAX_BYTES: usize = 2 * 1024;
/// Keys per page of ListObjects, ListObjectsV2 and ListParts, and per DeleteObjects.
pub const LIST_MAX_KEYS: usize = 1_000;
/// Lambda function configurations per bucket.
pub const NOTIFICATION_CONFIGS_MAX: usize = 100;
/// A function ARN in a notification configuration.
pub const FUNCTION_ARN_MAX_BYTES: usize = 2_048;
/// XML request bodies (CompleteMultipartUpload with 10 000 parts, DeleteObjects with
/// 1 000 keys of 1 KiB, notification configurations).
pub const XML_BODY_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Object bodies being written at once (PutObject, UploadPart, CopyObject, Complete);
/// past it a request gets 503 SlowDown, which every SDK retries.
pub const CONCURRENT_WRITES_MAX: usize = 64;
/// External notification documents (a webhook body).
pub const EXTERNAL_NOTIFICATION_MAX_BYTES: usize = 1024 * 1024;
/// Records in one external notification document.
pub const EXTERNAL_NOTIFICATION_MAX_RECORDS: usize = 1_000;
