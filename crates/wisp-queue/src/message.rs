//! Messages: bodies, message attributes, their size as SQS counts it, and the MD5 digests
//! SQS returns (`MD5OfMessageBody`, `MD5OfMessageAttributes`).

use std::collections::BTreeMap;

use base64::Engine as _;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

use crate::error::{clip, ErrorKind, QueueError, Result};
use crate::limits::{MESSAGE_ATTRIBUTES_MAX, MESSAGE_ATTRIBUTE_NAME_MAX_CHARS};

/// A message attribute's value. `DataType` is `String`, `Number` or `Binary`, optionally
/// followed by `.` and a custom label (`Number.int`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageAttributeValue {
    #[serde(rename = "DataType")]
    pub data_type: String,
    #[serde(
        rename = "StringValue",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub string_value: Option<String>,
    /// Raw bytes (base64 on the wire and in the database).
    #[serde(
        rename = "BinaryValue",
        default,
        skip_serializing_if = "Option::is_none",
        with = "base64_bytes"
    )]
    pub binary_value: Option<Vec<u8>>,
}

pub type MessageAttributes = BTreeMap<String, MessageAttributeValue>;

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => {
                s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
            }
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| {
            base64::engine::general_purpose::STANDARD
                .decode(t)
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

impl MessageAttributeValue {
    pub fn string(value: impl Into<String>) -> Self {
        MessageAttributeValue {
            data_type: "String".into(),
            string_value: Some(value.into()),
            binary_value: None,
        }
    }

    pub fn number(value: impl Into<String>) -> Self {
        MessageAttributeValue {
            data_type: "Number".into(),
            string_value: Some(value.into()),
            binary_value: None,
        }
    }

    pub fn binary(value: impl Into<Vec<u8>>) -> Self {
        MessageAttributeValue {
            data_type: "Binary".into(),
            string_value: None,
            binary_value: Some(value.into()),
        }
    }

    fn base_type(&self) -> &str {
        self.data_type
            .split_once('.')
            .map_or(self.data_type.as_str(), |(base, _)| base)
    }

    /// The value's bytes as SQS counts and digests them.
    fn value_bytes(&self) -> &[u8] {
        match (&self.string_value, &self.binary_value) {
            (Some(s), _) => s.as_bytes(),
            (None, Some(b)) => b,
            (None, None) => &[],
        }
    }

    /// The JSON shape of a Lambda SQS event's `messageAttributes` entry.
    pub fn lambda_json(&self) -> serde_json::Value {
        serde_json::json!({
            "stringValue": self.string_value,
            "binaryValue": self.binary_value.as_ref().map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": self.data_type,
        })
    }
}

/// Characters SQS allows in a body and in string values: `#x9 | #xA | #xD | #x20-#xD7FF |
/// #xE000-#xFFFD | #x10000-#x10FFFF` (XML 1.0's).
pub fn allowed_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..='\u{10FFFF}')
}

/// Checks a message body (non-empty, allowed characters).
pub fn check_body(body: &str) -> Result<()> {
    if body.is_empty() {
        return Err(QueueError::missing("MessageBody"));
    }
    if let Some((i, c)) = body.char_indices().find(|(_, c)| !allowed_char(*c)) {
        return Err(QueueError::new(
            ErrorKind::InvalidMessageContents,
            format!(
                "Invalid characters found in MessageBody: U+{:04X} at byte {i}. Allowed: #x9, #xA, #xD, #x20 to #xD7FF, #xE000 to #xFFFD, #x10000 to #x10FFFF.",
                c as u32
            ),
        ));
    }
    Ok(())
}

fn check_attribute_name(name: &str) -> Result<()> {
    let bad = |why: &str| {
        QueueError::invalid(format!(
            "Invalid message attribute name {:?}: {why}.",
            clip(name)
        ))
    };
    if name.is_empty() || name.chars().count() > MESSAGE_ATTRIBUTE_NAME_MAX_CHARS {
        return Err(bad(&format!(
            "a name has 1 to {MESSAGE_ATTRIBUTE_NAME_MAX_CHARS} characters"
        )));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(bad(
            "allowed characters are A-Z, a-z, 0-9, '_', '-' and '.'",
        ));
    }
    if name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        return Err(bad(
            "a name cannot start or end with '.' or have two '.' in a row",
        ));
    }
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("aws.") || lower.starts_with("amazon.") {
        return Err(bad(
            "names starting with \"AWS.\" or \"Amazon.\" are reserved",
        ));
    }
    Ok(())
}

/// Checks message attributes: at most 10, valid names, data types and values.
pub fn check_attributes(attributes: &MessageAttributes) -> Result<()> {
    if attributes.len() > MESSAGE_ATTRIBUTES_MAX {
        return Err(QueueError::invalid(format!(
            "Number of message attributes [{}] exceeds the allowed maximum [{MESSAGE_ATTRIBUTES_MAX}].",
            attributes.len()
        )));
    }
    for (name, value) in attributes {
        check_attribute_name(name)?;
        let bad = |why: &str| {
            QueueError::invalid(format!("The message attribute '{}' {why}.", clip(name)))
        };
        let dt = &value.data_type;
        if dt.is_empty() || dt.chars().count() > MESSAGE_ATTRIBUTE_NAME_MAX_CHARS {
            return Err(bad("must have a DataType of 1 to 256 characters"));
        }
        if !dt.chars().all(allowed_char) {
            return Err(bad("has invalid characters in its DataType"));
        }
        match value.base_type() {
            "String" | "Number" => {
                let Some(s) = &value.string_value else {
                    return Err(bad("must contain a non-empty StringValue for its DataType"));
                };
                if value.binary_value.is_some() {
                    return Err(bad("must have only a StringValue for a String or Number DataType"));
                }
                if s.is_empty() {
                    return Err(bad("must contain a non-empty value of message attribute type"));
                }
                if !s.chars().all(allowed_char) {
                    return Err(QueueError::new(
                        ErrorKind::InvalidMessageContents,
                        format!(
                            "The message attribute '{}' has invalid characters in its StringValue.",
                            clip(name)
                        ),
                    ));
                }
                if value.base_type() == "Number" && !is_number(s) {
                    return Err(bad("has an invalid numeric value"));
                }
            }
            "Binary" => {
                let Some(b) = &value.binary_value else {
                    return Err(bad("must contain a non-empty BinaryValue for a Binary DataType"));
                };
                if value.string_value.is_some() {
                    return Err(bad("must have only a BinaryValue for a Binary DataType"));
                }
                if b.is_empty() {
                    return Err(bad("must contain a non-empty value of message attribute type"));
                }
            }
            _ => {
                return Err(bad(
                    "has an invalid DataType: use String, Number or Binary, optionally followed by '.' and a label",
                ))
            }
        }
    }
    Ok(())
}

/// A decimal number as SQS accepts it: an optional sign, digits with an optional decimal
/// point, and an optional exponent.
fn is_number(s: &str) -> bool {
    let s = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && digits(e)
    });
    mantissa_ok && exponent_ok && s.len() <= 100
}

/// A message's size as SQS counts it against `MaximumMessageSize`: the body plus each
/// attribute's name, data type and value.
pub fn message_size(body: &str, attributes: &MessageAttributes) -> usize {
    body.len()
        + attributes
            .iter()
            .map(|(name, v)| name.len() + v.data_type.len() + v.value_bytes().len())
            .sum::<usize>()
}

/// The hex MD5 of a body (`MD5OfMessageBody`, `MD5OfBody`).
pub fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// `MD5OfMessageAttributes` as SQS computes it: over the attributes sorted by name, each
/// as length-prefixed (4 bytes, big-endian) name and data type, a transport byte (1 for
/// string values, 2 for binary ones) and the length-prefixed value. `None` when empty.
pub fn md5_of_attributes(attributes: &MessageAttributes) -> Option<String> {
    if attributes.is_empty() {
        return None;
    }
    fn put(md5: &mut Md5, bytes: &[u8]) {
        md5.update((bytes.len() as u32).to_be_bytes());
        md5.update(bytes);
    }
    let mut md5 = Md5::new();
    for (name, value) in attributes {
        put(&mut md5, name.as_bytes());
        put(&mut md5, value.data_type.as_bytes());
        match (&value.string_value, &value.binary_value) {
            (Some(s), _) => {
                md5.update([1u8]);
                put(&mut md5, s.as_bytes());
            }
            (None, Some(b)) => {
                md5.update([2u8]);
                put(&mut md5, b);
            }
            (None, None) => {}
        }
    }
    Some(hex::encode(md5.finalize()))
}

/// Keeps the attributes `MessageAttributeNames` asks for: `All`, `.*`, `prefix.*` or exact
/// names.
pub fn select_attributes(all: &MessageAttributes, wanted: &[String]) -> MessageAttributes {
    if wanted.is_empty() {
        return MessageAttributes::new();
    }
    all.iter()
        .filter(|(name, _)| {
            wanted.iter().any(|w| {
                w == "All"
                    || w == ".*"
                    || w.strip_suffix(".*").is_some_and(|prefix| {
                        name.starts_with(prefix) && name[prefix.len()..].starts_with('.')
                    })
                    || w == *name
            })
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Decodes a base64 `BinaryValue` from the wire.
pub fn decode_base64(field: &str, text: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| QueueError::invalid(format!("{field} is not valid base64.")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_of_body() {
        assert_eq!(md5_hex(b"hello"), "5d41402abc4b2a76b9719d911017c592");
    }

    #[test]
    fn md5_of_message_attributes() {
        // Expected digests computed independently (Python's hashlib and struct, following
        // the algorithm in the SQS Developer Guide).
        let mut attrs = MessageAttributes::new();
        attrs.insert("test".into(), MessageAttributeValue::string("test"));
        assert_eq!(
            md5_of_attributes(&attrs).unwrap(),
            "ddb45ae313fa7f1b0fbf07d6f3b9e1c5"
        );
        attrs.insert("bin".into(), MessageAttributeValue::binary(vec![0u8, 1, 2]));
        attrs.insert(
            "n".into(),
            MessageAttributeValue {
                data_type: "Number.int".into(),
                string_value: Some("42".into()),
                binary_value: None,
            },
        );
        assert_eq!(
            md5_of_attributes(&attrs).unwrap(),
            "adecebeeb0f5889f614e362e97f246f9"
        );
        assert_eq!(md5_of_attributes(&MessageAttributes::new()), None);
    }

    #[test]
    fn bodies() {
        assert!(check_body("hello\tworld\n").is_ok());
        assert!(check_body("emoji 🎉 and ü").is_ok());
        assert_eq!(
            check_body("").unwrap_err().kind,
            ErrorKind::MissingParameter
        );
        assert_eq!(
            check_body("bad \u{1} char").unwrap_err().kind,
            ErrorKind::InvalidMessageContents
        );
        assert_eq!(
            check_body("\u{FFFE}").unwrap_err().kind,
            ErrorKind::InvalidMessageContents
        );
    }

    #[test]
    fn attributes() {
        let check = |name: &str, v: MessageAttributeValue, ok: bool| {
            let mut m = MessageAttributes::new();
            m.insert(name.into(), v);
            assert_eq!(check_attributes(&m).is_ok(), ok, "{name}");
        };
        check("a", MessageAttributeValue::string("x"), true);
        check("a.b-c_d", MessageAttributeValue::number("-1.5e3"), true);
        check("n", MessageAttributeValue::number("12"), true);
        check("n", MessageAttributeValue::number("abc"), false);
        check("n", MessageAttributeValue::number("1e"), false);
        check("b", MessageAttributeValue::binary(vec![0u8, 1, 2]), true);
        check("b", MessageAttributeValue::binary(Vec::new()), false);
        check("s", MessageAttributeValue::string(""), false);
        check("AWS.x", MessageAttributeValue::string("x"), false);
        check("amazon.x", MessageAttributeValue::string("x"), false);
        check(".a", MessageAttributeValue::string("x"), false);
        check("a..b", MessageAttributeValue::string("x"), false);
        check("a b", MessageAttributeValue::string("x"), false);
        check(
            "t",
            MessageAttributeValue {
                data_type: "Number.int".into(),
                string_value: Some("3".into()),
                binary_value: None,
            },
            true,
        );
        check(
            "t",
            MessageAttributeValue {
                data_type: "Blob".into(),
                string_value: Some("3".into()),
                binary_value: None,
            },
            false,
        );
        let many: MessageAttributes = (0..11)
            .map(|i| (format!("a{i}"), MessageAttributeValue::string("x")))
            .collect();
        assert!(check_attributes(&many).is_err());
    }

    #[test]
    fn sizes_and_selection() {
        let mut m = MessageAttributes::new();
        m.insert("name".into(), MessageAttributeValue::string("value"));
        m.insert(
            "other.x".into(),
            MessageAttributeValue::binary(vec![1u8, 2]),
        );
        assert_eq!(message_size("body", &m), 4 + (4 + 6 + 5) + (7 + 6 + 2));
        let pick = |w: &[&str]| {
            let w: Vec<String> = w.iter().map(|s| s.to_string()).collect();
            select_attributes(&m, &w)
                .keys()
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(pick(&[]), Vec::<String>::new());
        assert_eq!(pick(&["All"]), vec!["name", "other.x"]);
        assert_eq!(pick(&[".*"]), vec!["name", "other.x"]);
        assert_eq!(pick(&["other.*"]), vec!["other.x"]);
        assert_eq!(pick(&["name"]), vec!["name"]);
        assert_eq!(pick(&["nope"]), Vec::<String>::new());
    }
}
