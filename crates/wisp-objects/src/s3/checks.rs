//! What a write or read request must satisfy: key and metadata bounds, the checksums
//! a client sends (headers, or trailers of an aws-chunked body), preconditions.

use s3s::checksum::ChecksumHasher;
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Result};

use super::{etag, timestamp};
use crate::blobs::WriteError;
use crate::limits::{KEY_MAX_BYTES, USER_METADATA_MAX_BYTES};
use crate::meta::{internal, ObjectMeta, ObjectRow};
use crate::names::key_problem;

pub(super) fn write_error(e: WriteError) -> S3Error {
    match e {
        WriteError::TooLarge(max) => s3_error!(
            EntityTooLarge,
            "Your proposed upload exceeds the maximum allowed size ({max} bytes)."
        ),
        WriteError::Body(m) => s3_error!(IncompleteBody, "{m}"),
        WriteError::Io(e) => internal(e),
    }
}

pub(super) fn check_key(key: &str) -> S3Result<()> {
    match key_problem(key) {
        None => Ok(()),
        Some(m) if key.len() > KEY_MAX_BYTES => Err(s3_error!(KeyTooLongError, "{m}")),
        Some(m) => Err(s3_error!(InvalidArgument, "{m}")),
    }
}

/// The stored headers of a new object. `aws-chunked` is a transfer detail of the upload,
/// not the object's encoding: S3 drops it, and so does this.
#[allow(clippy::too_many_arguments)]
pub(super) fn object_meta(
    content_type: Option<String>,
    content_encoding: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    metadata: Option<Metadata>,
) -> S3Result<ObjectMeta> {
    let content_encoding = content_encoding
        .map(|e| {
            e.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("aws-chunked"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .filter(|e| !e.is_empty());
    let user: std::collections::BTreeMap<String, String> =
        metadata.unwrap_or_default().into_iter().collect();
    let user_bytes: usize = user.iter().map(|(k, v)| k.len() + v.len()).sum();
    if user_bytes > USER_METADATA_MAX_BYTES {
        return Err(s3_error!(
            MetadataTooLarge,
            "Your metadata headers exceed the maximum allowed metadata size ({USER_METADATA_MAX_BYTES} bytes)."
        ));
    }
    Ok(ObjectMeta {
        content_type,
        content_encoding,
        content_disposition,
        content_language,
        cache_control,
        user,
    })
}

/// Checksums a client asked to be checked, from headers or (after the body) trailers.
#[derive(Default)]
pub(super) struct Expected {
    pub(super) crc32: Option<String>,
    pub(super) crc32c: Option<String>,
    pub(super) sha1: Option<String>,
    pub(super) sha256: Option<String>,
    pub(super) crc64nvme: Option<String>,
    pub(super) content_md5: Option<String>,
}

impl Expected {
    pub(super) fn hasher(
        &self,
        algorithm: Option<&ChecksumAlgorithm>,
        headers: &axum::http::HeaderMap,
    ) -> ChecksumHasher {
        let mut h = ChecksumHasher::default();
        let trailer = headers
            .get("x-amz-trailer")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let algorithm = algorithm
            .map(|a| a.as_str().to_ascii_uppercase())
            .unwrap_or_default();
        let want = |value: &Option<String>, name: &str| {
            value.is_some()
                || algorithm == name
                || trailer.contains(&format!("x-amz-checksum-{}", name.to_ascii_lowercase()))
        };
        if want(&self.crc32, "CRC32") {
            h.crc32 = Some(Default::default());
        }
        if want(&self.crc32c, "CRC32C") {
            h.crc32c = Some(Default::default());
        }
        if want(&self.sha1, "SHA1") {
            h.sha1 = Some(Default::default());
        }
        if want(&self.sha256, "SHA256") {
            h.sha256 = Some(Default::default());
        }
        if want(&self.crc64nvme, "CRC64NVME") {
            h.crc64nvme = Some(Default::default());
        }
        h
    }

    /// Adds what came in trailing headers (aws-chunked bodies).
    pub(super) fn add_trailers(&mut self, trailers: Option<&s3s::TrailingHeaders>) {
        let Some(t) = trailers else { return };
        t.read(|h| {
            let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(String::from);
            self.crc32 = self.crc32.take().or_else(|| get("x-amz-checksum-crc32"));
            self.crc32c = self.crc32c.take().or_else(|| get("x-amz-checksum-crc32c"));
            self.sha1 = self.sha1.take().or_else(|| get("x-amz-checksum-sha1"));
            self.sha256 = self.sha256.take().or_else(|| get("x-amz-checksum-sha256"));
            self.crc64nvme = self
                .crc64nvme
                .take()
                .or_else(|| get("x-amz-checksum-crc64nvme"));
        });
    }

    /// Compares, and returns the computed checksums to echo back.
    pub(super) fn verify(&self, computed: Checksum, md5: &[u8; 16]) -> S3Result<Checksum> {
        if let Some(given) = &self.content_md5 {
            let ours = base64_md5(md5);
            if given.trim() != ours {
                return Err(s3_error!(
                    BadDigest,
                    "The Content-MD5 you specified did not match what we received."
                ));
            }
        }
        let pairs = [
            ("CRC32", &self.crc32, &computed.checksum_crc32),
            ("CRC32C", &self.crc32c, &computed.checksum_crc32c),
            ("SHA1", &self.sha1, &computed.checksum_sha1),
            ("SHA256", &self.sha256, &computed.checksum_sha256),
            ("CRC64NVME", &self.crc64nvme, &computed.checksum_crc64nvme),
        ];
        for (name, given, ours) in pairs {
            if let Some(given) = given {
                if Some(given) != ours.as_ref() {
                    return Err(s3_error!(
                        BadDigest,
                        "The {name} you specified did not match the calculated checksum."
                    ));
                }
            }
        }
        Ok(computed)
    }
}

fn base64_md5(md5: &[u8; 16]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(md5)
}

/// GetObject / HeadObject preconditions, in S3's order of precedence.
pub(super) fn check_conditions(
    row: &ObjectRow,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let ours = etag(&row.etag);
    let modified = time::OffsetDateTime::from(timestamp(row.modified_ms));
    let secs = |t: &Timestamp| time::OffsetDateTime::from(t.clone()).unix_timestamp();
    match if_match {
        Some(ETagCondition::Any) => {}
        Some(ETagCondition::ETag(e)) if e.strong_cmp(&ours) => {}
        Some(_) => {
            return Err(s3_error!(
                PreconditionFailed,
                "At least one of the pre-conditions you specified did not hold"
            ))
        }
        None => {
            if let Some(t) = if_unmodified_since {
                if modified.unix_timestamp() > secs(t) {
                    return Err(s3_error!(
                        PreconditionFailed,
                        "At least one of the pre-conditions you specified did not hold"
                    ));
                }
            }
        }
    }
    match if_none_match {
        Some(ETagCondition::Any) => return Err(s3_error!(NotModified)),
        Some(ETagCondition::ETag(e)) if e.weak_cmp(&ours) => return Err(s3_error!(NotModified)),
        Some(_) => {}
        None => {
            if let Some(t) = if_modified_since {
                if modified.unix_timestamp() <= secs(t) {
                    return Err(s3_error!(NotModified));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use md5::{Digest, Md5};

    use super::*;

    #[test]
    fn content_md5_is_base64() {
        let md5: [u8; 16] = Md5::digest(b"hello").into();
        assert_eq!(base64_md5(&md5), "XUFAKrxLKna5cZ2REBfFkg==");
        let empty: [u8; 16] = Md5::digest(b"").into();
        assert_eq!(base64_md5(&empty), "1B2M2Y8AsgTpgAmY7PhCfg==");
    }

    #[test]
    fn aws_chunked_is_not_stored_as_content_encoding() {
        let m = object_meta(None, Some("aws-chunked".into()), None, None, None, None).unwrap();
        assert_eq!(m.content_encoding, None);
        let m = object_meta(
            None,
            Some("gzip,aws-chunked".into()),
            None,
            None,
            None,
            None,
        )
        .unwrap();
        assert_eq!(m.content_encoding.as_deref(), Some("gzip"));
        let big: Metadata = [("k".to_string(), "v".repeat(USER_METADATA_MAX_BYTES))].into();
        assert!(object_meta(None, None, None, None, None, Some(big)).is_err());
    }
}
