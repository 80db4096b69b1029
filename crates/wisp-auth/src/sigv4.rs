//! AWS Signature Version 4 (header form).
//!
//! The canonical request is rebuilt from the request as received: the method, the path
//! re-encoded as botocore encodes it (each byte outside the unreserved set percent-encoded
//! once more, so an already-encoded `%3A` becomes `%253A`), the query sorted and strictly
//! encoded, the headers the client listed in `SignedHeaders` (values trimmed, inner runs
//! of spaces collapsed), and the payload's sha256.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

type HmacSha256 = Hmac<Sha256>;

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's `X-Amz-Date` may be from the server's clock.
pub const MAX_SKEW_SECS: i64 = 5 * 60;

/// Why a request was refused. Each maps to the AWS error a client expects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Missing Authentication Token")]
    Missing,
    #[error("{0}")]
    Malformed(String),
    #[error("The security token included in the request is invalid.")]
    UnknownKey,
    #[error("Signature expired: {0} is now earlier than {1} (or later than {2}).")]
    Expired(String, String, String),
    #[error("The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")]
    Mismatch,
}

impl AuthError {
    /// The AWS error type (`x-amzn-ErrorType`).
    pub fn aws_type(&self) -> &'static str {
        match self {
            AuthError::Missing => "MissingAuthenticationTokenException",
            AuthError::Malformed(_) => "IncompleteSignatureException",
            AuthError::UnknownKey => "UnrecognizedClientException",
            AuthError::Expired(..) | AuthError::Mismatch => "InvalidSignatureException",
        }
    }
}

/// The parts of a request that the signature covers.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// The path as sent on the wire (percent-encoded once by the client).
    pub raw_path: &'a str,
    /// The query string as sent, without `?`.
    pub raw_query: &'a str,
    /// Every header, names in any case; repeated names allowed.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn decode(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Percent-encodes every byte outside the unreserved set (and outside `keep`).
fn encode(s: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// botocore normalises the path (dot segments) and then quotes it again, keeping '/'.
fn canonical_uri(raw_path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in raw_path.split('/') {
        match seg {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut path = segments.join("/");
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    if raw_path.ends_with('/') && !path.ends_with('/') {
        path.push('/');
    }
    encode(path.as_bytes(), true)
}

fn canonical_query(raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode(&decode(k), false), encode(&decode(v), false))
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn canonical_header_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn canonical_request(req: &SignedRequest<'_>, signed_headers: &[String]) -> String {
    let mut headers = String::new();
    for name in signed_headers {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| canonical_header_value(v))
            .collect();
        headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload_hash = req
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-content-sha256"))
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| sha256_hex(req.body));
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(req.raw_path),
        canonical_query(req.raw_query),
        headers,
        signed_headers.join(";"),
        payload_hash
    )
}

/// Derived signing keys, by (secret, date, region, service). A key is valid for a whole
/// day, so the four HMACs that derive it run once per client and day, not per request
/// (AWS's SDKs cache it the same way). Bounded: cleared when full.
static KEY_CACHE: std::sync::Mutex<Option<std::collections::HashMap<[u8; 32], Vec<u8>>>> =
    std::sync::Mutex::new(None);
const KEY_CACHE_MAX: usize = 1024;

fn cached_signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    // Keyed by a digest so that secrets are not kept in the clear a second time.
    let mut id = Sha256::new();
    for part in [secret, date, region, service] {
        id.update(part.as_bytes());
        id.update([0]);
    }
    let id: [u8; 32] = id.finalize().into();
    let mut cache = KEY_CACHE.lock().unwrap_or_else(|p| p.into_inner());
    let map = cache.get_or_insert_with(Default::default);
    if let Some(key) = map.get(&id) {
        return key.clone();
    }
    let key = signing_key(secret, date, region, service);
    if map.len() >= KEY_CACHE_MAX {
        map.clear();
    }
    map.insert(id, key.clone());
    key
}

fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, service.as_bytes());
    hmac(&k, b"aws4_request")
}

fn signature(
    req: &SignedRequest<'_>,
    signed: &[String],
    amz_date: &str,
    scope: &str,
    key: &[u8],
) -> String {
    let string_to_sign = format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request(req, signed).as_bytes())
    );
    hex::encode(hmac(key, string_to_sign.as_bytes()))
}

fn amz_date(t: OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn parse_amz_date(s: &str) -> Option<OffsetDateTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<u32>().ok();
    let date = time::Date::from_calendar_date(
        n(0..4)? as i32,
        time::Month::try_from(n(4..6)? as u8).ok()?,
        n(6..8)? as u8,
    )
    .ok()?;
    let t = time::Time::from_hms(n(9..11)? as u8, n(11..13)? as u8, n(13..15)? as u8).ok()?;
    Some(date.with_time(t).assume_utc())
}

/// Signs a request: returns the headers to add (`x-amz-date`, `authorization`). `host`
/// must be among `req.headers`.
pub fn sign(
    req: &SignedRequest<'_>,
    access_key: &str,
    secret: &str,
    region: &str,
    service: &str,
    now: OffsetDateTime,
) -> Vec<(String, String)> {
    let date_time = amz_date(now);
    let date = &date_time[..8];
    let mut headers = req.headers.to_vec();
    headers.push(("x-amz-date", date_time.as_str()));
    let mut signed: Vec<String> = headers
        .iter()
        .map(|(k, _)| k.to_ascii_lowercase())
        .collect();
    signed.sort();
    signed.dedup();
    let with_date = SignedRequest {
        headers: &headers,
        ..*req
    };
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let sig = signature(
        &with_date,
        &signed,
        &date_time,
        &scope,
        &signing_key(secret, date, region, service),
    );
    vec![
        ("x-amz-date".into(), date_time),
        (
            "authorization".into(),
            format!(
                "{ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={}, Signature={sig}",
                signed.join(";")
            ),
        ),
    ]
}

/// What a verified request was signed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key: String,
    pub region: String,
    pub service: String,
}

fn header<'a>(req: &SignedRequest<'a>, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// Verifies a request's signature. `secret_for` looks an access key up.
pub fn verify(
    req: &SignedRequest<'_>,
    now: OffsetDateTime,
    secret_for: impl FnOnce(&str) -> Option<String>,
) -> Result<Verified, AuthError> {
    let auth = header(req, "authorization").ok_or(AuthError::Missing)?;
    let rest = auth
        .strip_prefix(ALGORITHM)
        .ok_or_else(|| AuthError::Malformed(format!("Authorization must use {ALGORITHM}.")))?;
    let (mut credential, mut signed_headers, mut provided) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            provided = Some(v);
        }
    }
    let (Some(credential), Some(signed_headers), Some(provided)) =
        (credential, signed_headers, provided)
    else {
        return Err(AuthError::Malformed(
            "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature'.".into(),
        ));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, "aws4_request"] = scope.as_slice() else {
        return Err(AuthError::Malformed(format!(
            "Credential '{credential}' is not KEY/DATE/REGION/SERVICE/aws4_request."
        )));
    };
    let signed: Vec<String> = signed_headers
        .split(';')
        .map(str::to_ascii_lowercase)
        .collect();
    if !signed.iter().any(|h| h == "host") {
        return Err(AuthError::Malformed(
            "SignedHeaders must include host.".into(),
        ));
    }
    let date_time = header(req, "x-amz-date")
        .or_else(|| header(req, "date"))
        .ok_or_else(|| AuthError::Malformed("X-Amz-Date is required.".into()))?;
    let when = parse_amz_date(date_time).ok_or_else(|| {
        AuthError::Malformed(format!("X-Amz-Date '{date_time}' is not YYYYMMDDTHHMMSSZ."))
    })?;
    if &date_time[..8] != *date {
        return Err(AuthError::Malformed(
            "The credential scope's date does not match X-Amz-Date.".into(),
        ));
    }
    let skew = time::Duration::seconds(MAX_SKEW_SECS);
    if when < now - skew || when > now + skew {
        return Err(AuthError::Expired(
            date_time.to_string(),
            amz_date(now - skew),
            amz_date(now + skew),
        ));
    }
    let secret = secret_for(access_key).ok_or(AuthError::UnknownKey)?;
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let expected = signature(
        req,
        &signed,
        date_time,
        &scope,
        &cached_signing_key(&secret, date, region, service),
    );
    // Compare in constant time: the signature is a secret-derived value.
    let equal = expected.len() == provided.len()
        && expected
            .bytes()
            .zip(provided.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !equal {
        return Err(AuthError::Mismatch);
    }
    Ok(Verified {
        access_key: access_key.to_string(),
        region: region.to_string(),
        service: service.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        pairs.to_vec()
    }

    /// The "get-vanilla" case of AWS's SigV4 test suite.
    #[test]
    fn aws_test_suite_get_vanilla() {
        let h = headers(&[
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ]);
        let req = SignedRequest {
            method: "GET",
            raw_path: "/",
            raw_query: "",
            headers: &h,
            body: b"",
        };
        let signed = vec!["host".to_string(), "x-amz-date".to_string()];
        let key = signing_key(
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "20150830",
            "us-east-1",
            "service",
        );
        let sig = signature(
            &req,
            &signed,
            "20150830T123600Z",
            "20150830/us-east-1/service/aws4_request",
            &key,
        );
        assert_eq!(
            sig,
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn canonical_forms() {
        assert_eq!(
            canonical_uri("/2015-03-31/functions/arn%3Aaws%3Alambda/invocations"),
            "/2015-03-31/functions/arn%253Aaws%253Alambda/invocations"
        );
        assert_eq!(canonical_uri("/a/./b/../c/"), "/a/c/");
        assert_eq!(
            canonical_query("b=2&a=1&Marker=x%2By&e"),
            "Marker=x%2By&a=1&b=2&e="
        );
    }

    fn signed_request(body: &'static [u8], now: OffsetDateTime) -> Vec<(String, String)> {
        let h = headers(&[
            ("host", "127.0.0.1:8790"),
            ("content-type", "application/json"),
        ]);
        let req = SignedRequest {
            method: "POST",
            raw_path: "/2015-03-31/functions",
            raw_query: "",
            headers: &h,
            body,
        };
        let added = sign(&req, "AKID", "secret", "us-east-1", "lambda", now);
        let mut owned: Vec<(String, String)> = h
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        owned.extend(added);
        owned
    }

    fn check(
        h: &[(String, String)],
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<Verified, AuthError> {
        let borrowed: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let req = SignedRequest {
            method: "POST",
            raw_path: "/2015-03-31/functions",
            raw_query: "",
            headers: &borrowed,
            body,
        };
        verify(&req, now, |k| (k == "AKID").then(|| "secret".to_string()))
    }

    #[test]
    fn sign_then_verify() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let h = signed_request(b"{}", now);
        assert_eq!(check(&h, b"{}", now).unwrap().service, "lambda");
        assert_eq!(check(&h, b"{\"x\":1}", now), Err(AuthError::Mismatch));
        let late = now + time::Duration::minutes(6);
        assert!(matches!(
            check(&h, b"{}", late),
            Err(AuthError::Expired(..))
        ));
        let other = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let mut h2 = signed_request(b"{}", other);
        for (k, v) in h2.iter_mut() {
            if k == "authorization" {
                *v = v.replace("AKID", "NOPE");
            }
        }
        assert_eq!(check(&h2, b"{}", now), Err(AuthError::UnknownKey));
        let missing: Vec<(String, String)> = h
            .iter()
            .filter(|(k, _)| k != "authorization")
            .cloned()
            .collect();
        assert_eq!(check(&missing, b"{}", now), Err(AuthError::Missing));
    }
}
