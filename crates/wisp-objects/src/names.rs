//! Bucket names and object keys, validated as S3 does.

use std::net::Ipv4Addr;

use crate::limits::KEY_MAX_BYTES;

/// Why a bucket name is refused, in words a user can act on.
pub fn bucket_name_problem(name: &str) -> Option<&'static str> {
    let b = name.as_bytes();
    if !(3..=63).contains(&b.len()) {
        return Some("bucket names must be 3 to 63 characters long");
    }
    if !b
        .iter()
        .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
    {
        return Some("bucket names may contain only lowercase letters, digits, '.' and '-'");
    }
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return Some("bucket names must begin and end with a letter or digit");
    }
    if name.contains("..") {
        return Some("bucket names must not contain two adjacent periods");
    }
    if name.parse::<Ipv4Addr>().is_ok() {
        return Some("bucket names must not be formatted as an IP address");
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(prefix) {
            return Some(
                "bucket names must not start with a reserved prefix (xn--, sthree-, amzn-s3-demo-)",
            );
        }
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if name.ends_with(suffix) {
            return Some("bucket names must not end with a reserved suffix (-s3alias, --ol-s3, .mrap, --x-s3, --table-s3)");
        }
    }
    None
}

/// Why an object key is refused. Keys are arbitrary UTF-8 (`../`, `/`, NUL-free unicode
/// are all fine): they are only ever compared and stored in the database, never turned
/// into a path.
pub fn key_problem(key: &str) -> Option<&'static str> {
    if key.is_empty() {
        return Some("object keys must not be empty");
    }
    if key.len() > KEY_MAX_BYTES {
        return Some("object keys must be at most 1024 bytes (UTF-8)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, ok: bool) {
        assert_eq!(bucket_name_problem(name).is_none(), ok, "{name:?}");
    }

    #[test]
    fn bucket_names() {
        for good in [
            "abc",
            "my-bucket",
            "my.bucket.1",
            "a1b",
            "123",
            &"a".repeat(63),
        ] {
            check(good, true);
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "My-Bucket",
            "my_bucket",
            "-abc",
            "abc-",
            ".abc",
            "abc.",
            "a..b",
            "192.168.5.4",
            "xn--abc",
            "sthree-abc",
            "abc-s3alias",
            "abc--ol-s3",
            "abc/def",
            "../x",
            "..",
            "a b",
            "ébc",
        ] {
            check(bad, false);
        }
    }

    #[test]
    fn keys() {
        assert!(key_problem("../../etc/passwd").is_none());
        assert!(key_problem("dir/ünïcödé ✓.txt").is_none());
        assert!(key_problem(&"k".repeat(1024)).is_none());
        assert!(key_problem(&"k".repeat(1025)).is_some());
        assert!(key_problem("").is_some());
        // 1024 bytes, counted in UTF-8: 342 three-byte characters are 1026 bytes.
        assert!(key_problem(&"✓".repeat(342)).is_some());
    }
}
