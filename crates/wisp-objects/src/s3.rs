//! The `S3` trait of s3s on top of [`crate::meta`] (SQLite) and [`crate::blobs`] (files).
//! s3s parses and serialises the protocol (XML, headers, aws-chunked bodies, signatures);
//! this file is the storage semantics.

use std::io::SeekFrom;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use md5::{Digest, Md5};
use rusqlite::Connection;
use s3s::dto::*;
use s3s::{s3_error, S3ErrorCode, S3Request, S3Response, S3Result, S3};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::Semaphore;
use tokio_util::io::ReaderStream;

mod checks;
mod listing;

use self::checks::{check_conditions, check_key, object_meta, write_error, Expected};
use self::listing::{contents, encoder, prefixes, start_cursor};
use crate::blobs::{Blobs, Written};
use crate::limits::*;
use crate::meta::{self, internal, Cursor, ObjectRow, PartRow, UploadRow};
use crate::names::bucket_name_problem;
use crate::notify::{self, EventFacts, NotificationRule, ObjectNotification};
use crate::{auth::ClientAccessKey, NotifyHook, OWNER_ID};

pub struct Backend {
    pub db: Arc<Mutex<Connection>>,
    pub blobs: Arc<Blobs>,
    pub region: String,
    pub notify: NotifyHook,
    writes: Arc<Semaphore>,
    last_sequencer: AtomicU64,
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn timestamp(ms: i64) -> Timestamp {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    Timestamp::from(t)
}

fn etag(value: &str) -> ETag {
    ETag::Strong(value.to_string())
}

/// Who and where, for event records.
struct Caller {
    principal: String,
    source_ip: String,
}

fn caller<T>(req: &S3Request<T>) -> Caller {
    let principal = req
        .extensions
        .get::<ClientAccessKey>()
        .map(|c| c.0.clone())
        .or_else(|| req.credentials.as_ref().map(|c| c.access_key.clone()))
        .unwrap_or_else(|| "anonymous".into());
    let source_ip = req
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    Caller {
        principal,
        source_ip,
    }
}

fn request_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_ascii_uppercase()
}

impl Backend {
    /// Streams a body into a new blob, checking the checksums the client declared (in
    /// headers or aws-chunked trailers); a blob that fails the check is discarded.
    async fn receive_body(
        &self,
        body: Option<StreamingBlob>,
        max_bytes: u64,
        mut expected: Expected,
        algorithm: Option<&ChecksumAlgorithm>,
        headers: &axum::http::HeaderMap,
        trailers: Option<&s3s::TrailingHeaders>,
    ) -> S3Result<(Written, Checksum)> {
        let mut hasher = expected.hasher(algorithm, headers);
        let written = match body {
            Some(body) => self.blobs.write(body, max_bytes, &mut hasher).await,
            None => {
                let empty = futures_util::stream::empty::<Result<bytes::Bytes, std::io::Error>>();
                self.blobs.write(empty, 0, &mut hasher).await
            }
        }
        .map_err(write_error)?;
        expected.add_trailers(trailers);
        match expected.verify(hasher.finalize(), &written.md5) {
            Ok(c) => Ok((written, c)),
            Err(e) => {
                self.blobs.discard(&written.id).await;
                Err(e)
            }
        }
    }

    pub fn new(db: Connection, blobs: Blobs, region: &str, notify: NotifyHook) -> Self {
        Backend {
            db: Arc::new(Mutex::new(db)),
            blobs: Arc::new(blobs),
            region: region.to_string(),
            notify,
            writes: Arc::new(Semaphore::new(CONCURRENT_WRITES_MAX)),
            last_sequencer: AtomicU64::new(0),
        }
    }

    /// Runs one metadata transaction off the async threads.
    async fn db<T, F>(&self, f: F) -> S3Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> S3Result<T> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || {
            let mut conn = db.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(internal)?
    }

    fn write_permit(&self) -> S3Result<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.writes).try_acquire_owned().map_err(|_| {
            s3_error!(
                SlowDown,
                "Too many uploads in progress ({CONCURRENT_WRITES_MAX}); retry shortly."
            )
        })
    }

    /// Increasing across events (and restarts, the clock permitting), as S3's sequencers
    /// are per key.
    fn sequencer(&self) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as u64;
        let mut prev = self.last_sequencer.load(Ordering::Relaxed);
        loop {
            let next = now.max(prev + 1);
            match self.last_sequencer.compare_exchange(
                prev,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return format!("{next:018X}"),
                Err(p) => prev = p,
            }
        }
    }

    /// Hands one notification per matching configuration to the hook, after the change
    /// committed.
    #[allow(clippy::too_many_arguments)]
    fn fire(
        &self,
        rules: &[NotificationRule],
        who: &Caller,
        event_name: &'static str,
        bucket: &str,
        key: &str,
        size: Option<u64>,
        etag: Option<&str>,
    ) {
        let matched = notify::matching(rules, event_name, key);
        if matched.is_empty() {
            return;
        }
        let facts = EventFacts {
            region: self.region.clone(),
            event_name,
            bucket: bucket.to_string(),
            key: key.to_string(),
            size,
            etag: etag.map(String::from),
            sequencer: self.sequencer(),
            principal: who.principal.clone(),
            source_ip: who.source_ip.clone(),
            request_id: request_id(),
            time: time::OffsetDateTime::now_utc(),
        };
        for rule in matched {
            let n = ObjectNotification {
                function_arn: rule.function_arn.clone(),
                event: notify::event_document(&facts, &rule.id),
            };
            let hook = Arc::clone(&self.notify);
            // The object is stored whatever the hook does; a panicking hook must not turn
            // that into a failed request.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(n))).is_err() {
                tracing::error!(bucket, key, function = %rule.function_arn, "the notification hook panicked");
            }
        }
    }

    /// Places a written body and commits the row that refers to it; on a refused commit
    /// the body goes. Returns the rules in force at the commit.
    async fn commit_object(
        &self,
        written: &Written,
        row: ObjectRow,
    ) -> S3Result<Vec<NotificationRule>> {
        if let Err(e) = self.blobs.place(&written.id).await {
            self.blobs.discard(&written.id).await;
            return Err(internal(e));
        }
        let result = self.db(move |c| meta::put_object(c, &row)).await;
        match result {
            Ok((old, rules)) => {
                self.blobs.remove(old).await;
                Ok(rules)
            }
            Err(e) => {
                self.blobs.remove([written.id.clone()]).await;
                Err(e)
            }
        }
    }

    /// The row of an object and its open blob. An overwrite can delete the blob between
    /// the read and the open; read again then.
    async fn open_object(&self, bucket: &str, key: &str) -> S3Result<(ObjectRow, tokio::fs::File)> {
        for _ in 0..3 {
            let (b, k) = (bucket.to_string(), key.to_string());
            let row = self.db(move |c| meta::get_object(c, &b, &k)).await?;
            match self.blobs.read(&row.blob).await {
                Ok(f) => return Ok((row, f)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(internal(e)),
            }
        }
        Err(s3_error!(SlowDown, "The object is being replaced; retry."))
    }

    async fn require_bucket(&self, bucket: &str) -> S3Result<()> {
        let b = bucket.to_string();
        self.db(move |c| meta::head_bucket(c, &b)).await
    }

    async fn delete_one(&self, bucket: &str, key: &str, who: &Caller) -> S3Result<bool> {
        let (b, k) = (bucket.to_string(), key.to_string());
        let (old, rules) = self.db(move |c| meta::delete_object(c, &b, &k)).await?;
        let existed = old.is_some();
        self.blobs.remove(old).await;
        if existed {
            self.fire(&rules, who, "ObjectRemoved:Delete", bucket, key, None, None);
        }
        Ok(existed)
    }

    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        bucket: String,
        prefix: String,
        delimiter: String,
        start: Option<Cursor>,
        max_keys: Option<i32>,
    ) -> S3Result<(meta::Listing, usize)> {
        let max = match max_keys {
            None => LIST_MAX_KEYS,
            Some(n) if n < 0 => {
                return Err(s3_error!(
                    InvalidArgument,
                    "max-keys must be between 0 and 1000"
                ))
            }
            Some(n) => (n as usize).min(LIST_MAX_KEYS),
        };
        let listing = self
            .db(move |c| meta::list_objects(c, &bucket, &prefix, &delimiter, start.as_ref(), max))
            .await?;
        Ok((listing, max))
    }
}

fn owner() -> Owner {
    Owner {
        display_name: Some("wisp".into()),
        id: Some(OWNER_ID.into()),
    }
}

#[async_trait::async_trait]
impl S3 for Backend {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let bucket = req.input.bucket;
        if let Some(problem) = bucket_name_problem(&bucket) {
            return Err(s3_error!(
                InvalidBucketName,
                "The specified bucket is not valid: {problem}."
            ));
        }
        let b = bucket.clone();
        self.db(move |c| meta::create_bucket(c, &b, now_ms()))
            .await?;
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: Some(self.region.clone()),
            ..Default::default()
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let b = req.input.bucket;
        let blobs = self.db(move |c| meta::delete_bucket(c, &b)).await?;
        self.blobs.remove(blobs).await;
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let rows = self.db(|c| meta::list_buckets(c)).await?;
        let buckets = rows
            .into_iter()
            .map(|(name, created)| Bucket {
                name: Some(name),
                creation_date: Some(timestamp(created)),
                bucket_region: Some(self.region.clone()),
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(owner()),
            ..Default::default()
        }))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.require_bucket(&req.input.bucket).await?;
        // S3 answers an empty constraint for us-east-1.
        let location_constraint = (self.region != "us-east-1")
            .then(|| BucketLocationConstraint::from(self.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint,
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let who = caller(&req);
        let trailers = req.trailing_headers.clone();
        let headers = req.headers;
        let input = req.input;
        check_key(&input.key)?;
        if input
            .content_length
            .is_some_and(|n| n as u64 > OBJECT_MAX_BYTES)
        {
            return Err(s3_error!(
                EntityTooLarge,
                "Your proposed upload exceeds the maximum allowed size ({OBJECT_MAX_BYTES} bytes)."
            ));
        }
        let meta = object_meta(
            input.content_type,
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.metadata,
        )?;
        self.require_bucket(&input.bucket).await?;
        let _permit = self.write_permit()?;
        let expected = Expected {
            crc32: input.checksum_crc32,
            crc32c: input.checksum_crc32c,
            sha1: input.checksum_sha1,
            sha256: input.checksum_sha256,
            crc64nvme: input.checksum_crc64nvme,
            content_md5: input.content_md5,
        };
        let (written, checksums) = self
            .receive_body(
                input.body,
                OBJECT_MAX_BYTES,
                expected,
                input.checksum_algorithm.as_ref(),
                &headers,
                trailers.as_ref(),
            )
            .await?;
        let tag = hex::encode(written.md5);
        let row = ObjectRow {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            blob: written.id.clone(),
            size: written.size,
            etag: tag.clone(),
            modified_ms: now_ms(),
            meta,
        };
        let rules = self.commit_object(&written, row).await?;
        self.fire(
            &rules,
            &who,
            "ObjectCreated:Put",
            &input.bucket,
            &input.key,
            Some(written.size),
            Some(&tag),
        );
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag(&tag)),
            checksum_crc32: checksums.checksum_crc32,
            checksum_crc32c: checksums.checksum_crc32c,
            checksum_sha1: checksums.checksum_sha1,
            checksum_sha256: checksums.checksum_sha256,
            checksum_crc64nvme: checksums.checksum_crc64nvme,
            size: Some(written.size as i64),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let input = req.input;
        if input.part_number.is_some() {
            return Err(s3_error!(
                NotImplemented,
                "GetObject by partNumber is not supported; use a Range."
            ));
        }
        let (row, mut file) = self.open_object(&input.bucket, &input.key).await?;
        check_conditions(
            &row,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let (start, len, content_range) = match &input.range {
            None => (0, row.size, None),
            Some(range) => {
                let r = range.check(row.size).map_err(|_| {
                    s3_error!(InvalidRange, "The requested range is not satisfiable")
                })?;
                let range_str = format!("bytes {}-{}/{}", r.start, r.end - 1, row.size);
                (r.start, r.end - r.start, Some(range_str))
            }
        };
        if start > 0 {
            file.seek(SeekFrom::Start(start)).await.map_err(internal)?;
        }
        let body = ReaderStream::with_capacity(file.take(len), 64 * 1024);
        let m = row.meta;
        Ok(S3Response::new(GetObjectOutput {
            body: Some(StreamingBlob::wrap(body)),
            content_length: Some(len as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(&row.etag)),
            last_modified: Some(timestamp(row.modified_ms)),
            content_type: input
                .response_content_type
                .or(m.content_type)
                .or_else(|| Some("binary/octet-stream".into())),
            content_encoding: input.response_content_encoding.or(m.content_encoding),
            content_disposition: input.response_content_disposition.or(m.content_disposition),
            content_language: input.response_content_language.or(m.content_language),
            cache_control: input.response_cache_control.or(m.cache_control),
            metadata: (!m.user.is_empty()).then(|| m.user.into_iter().collect()),
            ..Default::default()
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        let (b, k) = (input.bucket.clone(), input.key.clone());
        let row = self.db(move |c| meta::get_object(c, &b, &k)).await?;
        check_conditions(
            &row,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let (len, content_range) = match &input.range {
            None => (row.size, None),
            Some(range) => {
                let r = range.check(row.size).map_err(|_| {
                    s3_error!(InvalidRange, "The requested range is not satisfiable")
                })?;
                (
                    r.end - r.start,
                    Some(format!("bytes {}-{}/{}", r.start, r.end - 1, row.size)),
                )
            }
        };
        let m = row.meta;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(len as i64),
            content_range,
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag(&row.etag)),
            last_modified: Some(timestamp(row.modified_ms)),
            content_type: m
                .content_type
                .or_else(|| Some("binary/octet-stream".into())),
            content_encoding: m.content_encoding,
            content_disposition: m.content_disposition,
            content_language: m.content_language,
            cache_control: m.cache_control,
            metadata: (!m.user.is_empty()).then(|| m.user.into_iter().collect()),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let who = caller(&req);
        let input = req.input;
        check_key(&input.key)?;
        self.delete_one(&input.bucket, &input.key, &who).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let who = caller(&req);
        let input = req.input;
        if input.delete.objects.len() > LIST_MAX_KEYS {
            return Err(s3_error!(
                MalformedXML,
                "at most {LIST_MAX_KEYS} keys per DeleteObjects request"
            ));
        }
        self.require_bucket(&input.bucket).await?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for obj in input.delete.objects {
            let result = match check_key(&obj.key) {
                Ok(()) => self
                    .delete_one(&input.bucket, &obj.key, &who)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) if quiet => {}
                Ok(()) => deleted.push(DeletedObject {
                    key: Some(obj.key),
                    ..Default::default()
                }),
                Err(e) => errors.push(s3s::dto::Error {
                    code: Some(e.code().as_str().to_string()),
                    key: Some(obj.key),
                    message: e.message().map(String::from),
                    version_id: None,
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: (!deleted.is_empty()).then_some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let who = caller(&req);
        let input = req.input;
        let (src_bucket, src_key) = match &input.copy_source {
            CopySource::Bucket {
                bucket,
                key,
                version_id,
            } => {
                if version_id.as_deref().is_some_and(|v| v != "null") {
                    return Err(s3_error!(
                        NotImplemented,
                        "buckets are not versioned; copy without a versionId"
                    ));
                }
                (bucket.to_string(), key.to_string())
            }
            _ => return Err(s3_error!(NotImplemented, "copy sources must be bucket/key")),
        };
        check_key(&input.key)?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if src_bucket == input.bucket && src_key == input.key && !replace {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata."
            ));
        }
        self.require_bucket(&input.bucket).await?;
        let _permit = self.write_permit()?;
        // Read the source row and copy its blob; retry if an overwrite removed it between.
        let mut copied = None;
        for _ in 0..3 {
            let (b, k) = (src_bucket.clone(), src_key.clone());
            let src = self.db(move |c| meta::get_object(c, &b, &k)).await?;
            check_conditions(
                &src,
                input.copy_source_if_match.as_ref(),
                input.copy_source_if_none_match.as_ref(),
                input.copy_source_if_modified_since.as_ref(),
                input.copy_source_if_unmodified_since.as_ref(),
            )
            .map_err(|e| {
                if e.code() == &S3ErrorCode::NotModified {
                    s3_error!(
                        PreconditionFailed,
                        "At least one of the pre-conditions you specified did not hold"
                    )
                } else {
                    e
                }
            })?;
            match self.blobs.concat(std::slice::from_ref(&src.blob)).await {
                Ok(w) => {
                    copied = Some((src, w));
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(internal(e)),
            }
        }
        let Some((src, written)) = copied else {
            return Err(s3_error!(
                SlowDown,
                "The source object is being replaced; retry."
            ));
        };
        let meta = if replace {
            object_meta(
                input.content_type,
                input.content_encoding,
                input.content_disposition,
                input.content_language,
                input.cache_control,
                input.metadata,
            )?
        } else {
            src.meta.clone()
        };
        let modified_ms = now_ms();
        let row = ObjectRow {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            blob: written.id.clone(),
            size: written.size,
            etag: src.etag.clone(),
            modified_ms,
            meta,
        };
        let rules = self.commit_object(&written, row).await?;
        self.fire(
            &rules,
            &who,
            "ObjectCreated:Copy",
            &input.bucket,
            &input.key,
            Some(written.size),
            Some(&src.etag),
        );
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&src.etag)),
                last_modified: Some(timestamp(modified_ms)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().unwrap_or_default();
        let start = match (&input.continuation_token, &input.start_after) {
            (Some(t), _) => Some(Cursor::from_token(t).ok_or_else(|| {
                s3_error!(
                    InvalidArgument,
                    "The continuation token provided is incorrect"
                )
            })?),
            (None, Some(after)) if !after.is_empty() => {
                Some(start_cursor(after.clone(), &prefix, &delimiter))
            }
            _ => None,
        };
        let (listing, max) = self
            .list(
                input.bucket.clone(),
                prefix.clone(),
                delimiter.clone(),
                start,
                input.max_keys,
            )
            .await?;
        let enc = encoder(input.encoding_type.as_ref());
        let key_count = (listing.objects.len() + listing.common_prefixes.len()) as i32;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(enc(&prefix)),
            delimiter: input.delimiter.as_deref().map(&enc),
            start_after: input.start_after.as_deref().map(&enc),
            max_keys: Some(max as i32),
            key_count: Some(key_count),
            continuation_token: input.continuation_token,
            next_continuation_token: listing.next.as_ref().map(Cursor::to_token),
            is_truncated: Some(listing.truncated),
            contents: contents(&listing.objects, &enc),
            common_prefixes: prefixes(&listing.common_prefixes, &enc),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        let prefix = input.prefix.clone().unwrap_or_default();
        let delimiter = input.delimiter.clone().unwrap_or_default();
        let start = input
            .marker
            .clone()
            .filter(|m| !m.is_empty())
            .map(|m| start_cursor(m, &prefix, &delimiter));
        let (listing, max) = self
            .list(
                input.bucket.clone(),
                prefix.clone(),
                delimiter.clone(),
                start,
                input.max_keys,
            )
            .await?;
        let enc = encoder(input.encoding_type.as_ref());
        let next_marker = listing.next.as_ref().map(|c| match c {
            Cursor::After(k) | Cursor::AfterPrefix(k) => enc(k),
        });
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: Some(enc(&prefix)),
            delimiter: input.delimiter.as_deref().map(&enc),
            marker: Some(input.marker.as_deref().map(&enc).unwrap_or_default()),
            next_marker,
            max_keys: Some(max as i32),
            is_truncated: Some(listing.truncated),
            contents: contents(&listing.objects, &enc),
            common_prefixes: prefixes(&listing.common_prefixes, &enc),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let input = req.input;
        check_key(&input.key)?;
        let meta = object_meta(
            input.content_type,
            input.content_encoding,
            input.content_disposition,
            input.content_language,
            input.cache_control,
            input.metadata,
        )?;
        let upload = UploadRow {
            id: crate::blobs::new_id(),
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            created_ms: now_ms(),
            meta,
        };
        let id = upload.id.clone();
        self.db(move |c| meta::create_upload(c, &upload)).await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let trailers = req.trailing_headers.clone();
        let headers = req.headers;
        let input = req.input;
        if !(1..=PARTS_MAX).contains(&input.part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "Part number must be an integer between 1 and {PARTS_MAX}, inclusive"
            ));
        }
        if input
            .content_length
            .is_some_and(|n| n as u64 > PART_MAX_BYTES)
        {
            return Err(s3_error!(
                EntityTooLarge,
                "A part is at most {PART_MAX_BYTES} bytes."
            ));
        }
        let (b, k, u) = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
        );
        self.db(move |c| meta::get_upload(c, &b, &k, &u)).await?;
        let _permit = self.write_permit()?;
        let expected = Expected {
            crc32: input.checksum_crc32,
            crc32c: input.checksum_crc32c,
            sha1: input.checksum_sha1,
            sha256: input.checksum_sha256,
            crc64nvme: input.checksum_crc64nvme,
            content_md5: input.content_md5,
        };
        let (written, checksums) = self
            .receive_body(
                input.body,
                PART_MAX_BYTES,
                expected,
                input.checksum_algorithm.as_ref(),
                &headers,
                trailers.as_ref(),
            )
            .await?;
        if let Err(e) = self.blobs.place(&written.id).await {
            self.blobs.discard(&written.id).await;
            return Err(internal(e));
        }
        let tag = hex::encode(written.md5);
        let part = PartRow {
            number: input.part_number,
            blob: written.id.clone(),
            size: written.size,
            etag: tag.clone(),
            modified_ms: now_ms(),
        };
        let (b, k, u) = (input.bucket, input.key, input.upload_id);
        match self.db(move |c| meta::put_part(c, &b, &k, &u, &part)).await {
            Ok(old) => self.blobs.remove(old).await,
            Err(e) => {
                self.blobs.remove([written.id]).await;
                return Err(e);
            }
        }
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(etag(&tag)),
            checksum_crc32: checksums.checksum_crc32,
            checksum_crc32c: checksums.checksum_crc32c,
            checksum_sha1: checksums.checksum_sha1,
            checksum_sha256: checksums.checksum_sha256,
            checksum_crc64nvme: checksums.checksum_crc64nvme,
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let who = caller(&req);
        let input = req.input;
        let requested = input
            .multipart_upload
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if requested.is_empty() {
            return Err(s3_error!(
                MalformedXML,
                "You must specify at least one part."
            ));
        }
        if requested.len() > PARTS_MAX as usize {
            return Err(s3_error!(MalformedXML, "At most {PARTS_MAX} parts."));
        }
        let (b, k, u) = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
        );
        let (upload, stored) = self
            .db(move |c| {
                let upload = meta::get_upload(c, &b, &k, &u)?;
                let parts = meta::list_parts(c, &u, 0, PARTS_MAX as usize)?;
                Ok((upload, parts))
            })
            .await?;
        let mut chosen: Vec<&PartRow> = Vec::with_capacity(requested.len());
        let mut prev = 0;
        for p in &requested {
            let n = p.part_number.unwrap_or(0);
            if n <= prev {
                return Err(s3_error!(
                    InvalidPartOrder,
                    "The list of parts was not in ascending order."
                ));
            }
            prev = n;
            let part = stored.iter().find(|s| s.number == n).ok_or_else(|| {
                s3_error!(
                    InvalidPart,
                    "One or more of the specified parts could not be found: part {n}."
                )
            })?;
            if let Some(e) = &p.e_tag {
                if e.value().trim_matches('"') != part.etag {
                    return Err(s3_error!(
                        InvalidPart,
                        "The ETag of part {n} does not match the uploaded part."
                    ));
                }
            }
            chosen.push(part);
        }
        for p in &chosen[..chosen.len() - 1] {
            if p.size < PART_MIN_BYTES {
                return Err(s3_error!(
                    EntityTooSmall,
                    "Your proposed upload is smaller than the minimum allowed size: every part but the last must be at least {PART_MIN_BYTES} bytes (part {}).",
                    p.number
                ));
            }
        }
        let total: u64 = chosen.iter().map(|p| p.size).sum();
        if total > MULTIPART_OBJECT_MAX_BYTES {
            return Err(s3_error!(
                EntityTooLarge,
                "The object would exceed {MULTIPART_OBJECT_MAX_BYTES} bytes."
            ));
        }
        let mut md5s = Md5::new();
        for p in &chosen {
            md5s.update(hex::decode(&p.etag).map_err(internal)?);
        }
        let tag = format!("{}-{}", hex::encode(md5s.finalize()), chosen.len());
        let _permit = self.write_permit()?;
        let sources: Vec<String> = chosen.iter().map(|p| p.blob.clone()).collect();
        let written = match self.blobs.concat(&sources).await {
            Ok(w) => w,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(s3_error!(
                    NoSuchUpload,
                    "The upload was completed or aborted meanwhile."
                ))
            }
            Err(e) => return Err(internal(e)),
        };
        if let Err(e) = self.blobs.place(&written.id).await {
            self.blobs.discard(&written.id).await;
            return Err(internal(e));
        }
        let row = ObjectRow {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            blob: written.id.clone(),
            size: written.size,
            etag: tag.clone(),
            modified_ms: now_ms(),
            meta: upload.meta,
        };
        let u = input.upload_id.clone();
        let rules = match self.db(move |c| meta::complete_upload(c, &u, &row)).await {
            Ok((garbage, rules)) => {
                self.blobs.remove(garbage).await;
                rules
            }
            Err(e) => {
                self.blobs.remove([written.id]).await;
                return Err(e);
            }
        };
        self.fire(
            &rules,
            &who,
            "ObjectCreated:CompleteMultipartUpload",
            &input.bucket,
            &input.key,
            Some(written.size),
            Some(&tag),
        );
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(etag(&tag)),
            location: Some(format!("/{}/{}", input.bucket, input.key)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let input = req.input;
        let blobs = self
            .db(move |c| meta::abort_upload(c, &input.bucket, &input.key, &input.upload_id))
            .await?;
        self.blobs.remove(blobs).await;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let input = req.input;
        let max = match input.max_parts {
            None => LIST_MAX_KEYS,
            Some(n) if n < 0 => {
                return Err(s3_error!(
                    InvalidArgument,
                    "max-parts must be between 0 and 1000"
                ))
            }
            Some(n) => (n as usize).min(LIST_MAX_KEYS),
        };
        let marker = input.part_number_marker.unwrap_or(0);
        let (b, k, u) = (
            input.bucket.clone(),
            input.key.clone(),
            input.upload_id.clone(),
        );
        let mut parts = self
            .db(move |c| {
                meta::get_upload(c, &b, &k, &u)?;
                meta::list_parts(c, &u, marker, max + 1)
            })
            .await?;
        let truncated = parts.len() > max;
        parts.truncate(max);
        let next = parts.last().map(|p| p.number);
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: Some(max as i32),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: if truncated { next } else { None },
            is_truncated: Some(truncated),
            owner: Some(owner()),
            parts: Some(
                parts
                    .into_iter()
                    .map(|p| Part {
                        part_number: Some(p.number),
                        size: Some(p.size as i64),
                        e_tag: Some(etag(&p.etag)),
                        last_modified: Some(timestamp(p.modified_ms)),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }))
    }

    async fn put_bucket_notification_configuration(
        &self,
        req: S3Request<PutBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketNotificationConfigurationOutput>> {
        let input = req.input;
        let rules = notify::rules_from_config(input.notification_configuration)?;
        self.db(move |c| meta::set_notification_rules(c, &input.bucket, &rules))
            .await?;
        Ok(S3Response::new(
            PutBucketNotificationConfigurationOutput::default(),
        ))
    }

    async fn get_bucket_notification_configuration(
        &self,
        req: S3Request<GetBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketNotificationConfigurationOutput>> {
        let b = req.input.bucket;
        let rules = self.db(move |c| meta::notification_rules(c, &b)).await?;
        let configs = notify::config_from_rules(&rules);
        Ok(S3Response::new(GetBucketNotificationConfigurationOutput {
            lambda_function_configurations: (!configs.is_empty()).then_some(configs),
            ..Default::default()
        }))
    }
}
