//! Listings in S3's shape.

use s3s::dto::*;

use super::{etag, timestamp};
use crate::meta::{Cursor, ObjectRow};

/// `encoding-type=url`: keys and prefixes percent-encoded (botocore asks for it and
/// decodes), so that keys with characters XML cannot carry survive.
pub(super) fn encoder(encoding: Option<&EncodingType>) -> impl Fn(&str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~')
        .remove(b'/');
    let url = encoding.is_some_and(|e| e.as_str() == EncodingType::URL);
    move |s: &str| {
        if url {
            percent_encoding::utf8_percent_encode(s, SET).to_string()
        } else {
            s.to_string()
        }
    }
}

pub(super) fn contents(
    objects: &[ObjectRow],
    enc: &impl Fn(&str) -> String,
) -> Option<Vec<Object>> {
    (!objects.is_empty()).then(|| {
        objects
            .iter()
            .map(|o| Object {
                key: Some(enc(&o.key)),
                size: Some(o.size as i64),
                e_tag: Some(etag(&o.etag)),
                last_modified: Some(timestamp(o.modified_ms)),
                storage_class: Some(ObjectStorageClass::from_static(
                    ObjectStorageClass::STANDARD,
                )),
                ..Default::default()
            })
            .collect()
    })
}

pub(super) fn prefixes(cps: &[String], enc: &impl Fn(&str) -> String) -> Option<Vec<CommonPrefix>> {
    (!cps.is_empty()).then(|| {
        cps.iter()
            .map(|p| CommonPrefix {
                prefix: Some(enc(p)),
            })
            .collect()
    })
}

/// A start-after key (or v1 marker) that is itself a common prefix resumes after every
/// key under it, as the page that returned it rolled them all up.
pub(super) fn start_cursor(after: String, prefix: &str, delimiter: &str) -> Cursor {
    if !delimiter.is_empty() {
        if let Some(rest) = after.strip_prefix(prefix) {
            if rest.find(delimiter).map(|i| i + delimiter.len()) == Some(rest.len()) {
                return Cursor::AfterPrefix(after);
            }
        }
    }
    Cursor::After(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_after_a_common_prefix_skips_it() {
        assert_eq!(
            start_cursor("a/".into(), "", "/"),
            Cursor::AfterPrefix("a/".into())
        );
        assert_eq!(
            start_cursor("a/b".into(), "", "/"),
            Cursor::After("a/b".into())
        );
        assert_eq!(
            start_cursor("p/a/".into(), "p/", "/"),
            Cursor::AfterPrefix("p/a/".into())
        );
        assert_eq!(
            start_cursor("a/".into(), "", ""),
            Cursor::After("a/".into())
        );
    }

    #[test]
    fn url_encoding_of_listings() {
        let enc = encoder(Some(&EncodingType::from_static(EncodingType::URL)));
        assert_eq!(enc("a b/c+d&ü"), "a%20b/c%2Bd%26%C3%BC");
        let plain = encoder(None);
        assert_eq!(plain("a b"), "a b");
    }
}
