//! Who may call: s3s verifies SigV4 (headers, presigned URLs, aws-chunked bodies with
//! their chunk and trailer signatures) against the secrets wisp's key store gives.
//!
//! With auth off, clients still sign (boto3 always does), with keys wisp may not know.
//! Rather than parse bodies ourselves, the request is re-signed on the way in with a
//! per-process internal key, so that s3s still does all the decoding (aws-chunked,
//! trailing checksums) it does for a verified request. The one body that cannot be
//! re-signed is a signed aws-chunked one (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD*`: each
//! chunk's signature chains from the client's secret); it passes when the key is known
//! and is refused otherwise. botocore never sends it (it uses unsigned trailers).

use axum::http::{header, HeaderMap, HeaderValue, Request, Uri};
use hmac::{Hmac, Mac};
use percent_encoding::percent_decode_str;
use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};
use sha2::{Digest, Sha256};

use crate::SecretLookup;

/// The access key id of the internal key used to re-sign requests when auth is off.
pub const NO_AUTH_ACCESS_KEY: &str = "wisp-no-auth";

/// The access key id the client signed with (before any re-signing), for event records.
#[derive(Debug, Clone)]
pub struct ClientAccessKey(pub String);

pub struct Secrets {
    pub lookup: SecretLookup,
    /// Set when auth is off: the internal key's secret.
    pub internal: Option<String>,
}

#[async_trait::async_trait]
impl S3Auth for Secrets {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if let Some(internal) = &self.internal {
            if access_key == NO_AUTH_ACCESS_KEY {
                return Ok(SecretKey::from(internal.as_str()));
            }
        }
        match (self.lookup)(access_key) {
            Some(secret) => Ok(SecretKey::from(secret)),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )),
        }
    }
}

/// The access key id a request names, from its Authorization header (SigV4 or SigV2) or
/// presigned query.
pub fn client_access_key(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256") {
            let cred = rest
                .split(',')
                .find_map(|p| p.trim().strip_prefix("Credential="))?;
            return cred.split('/').next().map(String::from);
        }
        if let Some(rest) = auth.strip_prefix("AWS ") {
            return rest.split(':').next().map(String::from);
        }
    }
    let query = uri.query()?;
    form_urlencoded::parse(query.as_bytes()).find_map(|(k, v)| match k.as_ref() {
        "X-Amz-Credential" => v.split('/').next().map(String::from),
        "AWSAccessKeyId" => Some(v.into_owned()),
        _ => None,
    })
}

/// The region and service of a SigV4 request's credential scope.
fn credential_scope(headers: &HeaderMap, uri: &Uri) -> Option<(String, String)> {
    let from_auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.strip_prefix("AWS4-HMAC-SHA256"))
        .and_then(|rest| {
            rest.split(',')
                .find_map(|p| p.trim().strip_prefix("Credential="))
                .map(String::from)
        });
    let cred = from_auth.or_else(|| {
        form_urlencoded::parse(uri.query()?.as_bytes())
            .find_map(|(k, v)| (k == "X-Amz-Credential").then(|| v.into_owned()))
    })?;
    let parts: Vec<&str> = cred.split('/').collect();
    (parts.len() == 5).then(|| (parts[2].to_string(), parts[3].to_string()))
}

/// Does this request look like an S3 request? True when it is signed for service `s3`
/// (SigV4 header or presigned URL), signed with SigV2 (S3 only), or carries
/// `x-amz-content-sha256` (which only S3 clients send). An unsigned request without that
/// header cannot be told apart by its headers: route it by path.
pub fn is_s3_request<B>(req: &Request<B>) -> bool {
    if let Some((_, service)) = credential_scope(req.headers(), req.uri()) {
        return service == "s3";
    }
    let sigv2 = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("AWS "));
    let presigned_v2 = req
        .uri()
        .query()
        .is_some_and(|q| form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "AWSAccessKeyId"));
    sigv2 || presigned_v2 || req.headers().contains_key("x-amz-content-sha256")
}

const PRESIGN_PARAMS: &[&str] = &[
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
    "AWSAccessKeyId",
    "Signature",
    "Expires",
];

/// Why a request cannot be served with auth off.
#[derive(Debug)]
pub struct Refused(pub &'static str);

/// With auth off: replaces whatever signature a request carries by one made with the
/// internal key, keeping the request otherwise as sent (its payload hash, so s3s still
/// checks a signed body's sha256 and decodes aws-chunked bodies).
pub fn resign<B>(
    req: &mut Request<B>,
    internal_secret: &str,
    default_region: &str,
    knows: impl Fn(&str) -> bool,
    now: time::OffsetDateTime,
) -> Result<(), Refused> {
    let client = client_access_key(req.headers(), req.uri());
    let payload = req
        .headers()
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    if payload
        .as_deref()
        .is_some_and(|p| p.starts_with("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"))
    {
        if client.as_deref().is_some_and(&knows) {
            req.extensions_mut()
                .insert(ClientAccessKey(client.unwrap_or_default()));
            return Ok(());
        }
        return Err(Refused(
            "signed aws-chunked bodies (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) can only be verified with a key this server knows, even with auth off; sign with one of its keys, or send the body unsigned (STREAMING-UNSIGNED-PAYLOAD-TRAILER, as botocore does)",
        ));
    }
    let region = credential_scope(req.headers(), req.uri())
        .map(|(r, _)| r)
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| default_region.to_string());
    req.extensions_mut().insert(ClientAccessKey(
        client.unwrap_or_else(|| "anonymous".into()),
    ));

    // Drop a presigned URL's signature from the query, keeping the rest as sent.
    if let Some(query) = req.uri().query() {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let name = pair.split('=').next().unwrap_or("");
                let name = percent_decode_str(name).decode_utf8_lossy();
                !PRESIGN_PARAMS.contains(&name.as_ref())
            })
            .collect();
        if kept.len() != query.split('&').count() {
            let path = req.uri().path();
            let pq = if kept.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{}", kept.join("&"))
            };
            let mut parts = req.uri().clone().into_parts();
            parts.path_and_query = pq.parse().ok();
            if let Ok(uri) = Uri::from_parts(parts) {
                *req.uri_mut() = uri;
            }
        }
    }

    let amz_date = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    );
    let payload = payload.unwrap_or_else(|| "UNSIGNED-PAYLOAD".to_string());
    let headers = req.headers_mut();
    headers.remove(header::AUTHORIZATION);
    headers.insert(
        "x-amz-date",
        HeaderValue::from_str(&amz_date).expect("ASCII"),
    );
    if let Ok(v) = HeaderValue::from_str(&payload) {
        headers.insert("x-amz-content-sha256", v);
    }
    let mut signed: Vec<(&str, String)> = Vec::new();
    if let Some(host) = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
    {
        signed.push(("host", canonical_value(host)));
    }
    signed.push(("x-amz-content-sha256", canonical_value(&payload)));
    signed.push(("x-amz-date", amz_date.clone()));

    let canonical = canonical_request(req.method().as_str(), req.uri(), &signed, &payload).ok_or(
        Refused("the request path is not valid percent-encoded UTF-8"),
    )?;
    let date = &amz_date[..8];
    let scope = format!("{date}/{region}/s3/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{internal_secret}").as_bytes(), date.as_bytes());
    for part in [region.as_str(), "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
    let names: Vec<&str> = signed.iter().map(|(n, _)| *n).collect();
    let authorization = format!(
        "AWS4-HMAC-SHA256 Credential={NO_AUTH_ACCESS_KEY}/{scope}, SignedHeaders={}, Signature={signature}",
        names.join(";")
    );
    req.headers_mut().insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&authorization)
            .map_err(|_| Refused("the region in the credential scope is not ASCII"))?,
    );
    Ok(())
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn canonical_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// S3's URI encoding (the unreserved set kept, everything else `%XX`), as s3s compares it.
fn uri_encode(s: &str, encode_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'~' | b'.' => {
                out.push(b as char)
            }
            b'/' if !encode_slash => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The canonical request as s3s rebuilds it: the path decoded then re-encoded, the
/// query decoded as a form then re-encoded and sorted by name (stable).
fn canonical_request(
    method: &str,
    uri: &Uri,
    signed: &[(&str, String)],
    payload: &str,
) -> Option<String> {
    let path = percent_decode_str(uri.path()).decode_utf8().ok()?;
    let mut query: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .map(|(k, v)| (uri_encode(&k, true), uri_encode(&v, true)))
            .collect();
    query.sort_by(|a, b| a.0.cmp(&b.0));
    let query: Vec<String> = query.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    let headers: String = signed.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let names: Vec<&str> = signed.iter().map(|(n, _)| *n).collect();
    Some(format!(
        "{method}\n{}\n{}\n{headers}\n{}\n{payload}",
        uri_encode(&path, false),
        query.join("&"),
        names.join(";")
    ))
}

/// A per-process secret for the internal key.
pub fn internal_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(auth: Option<&str>, uri: &str, sha: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri(uri).header("host", "127.0.0.1:9000");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        if let Some(s) = sha {
            b = b.header("x-amz-content-sha256", s);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn routing_markers() {
        let s3 = "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=x";
        let lambda = "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=x";
        assert!(is_s3_request(&req(Some(s3), "/b/k", None)));
        assert!(!is_s3_request(&req(
            Some(lambda),
            "/2015-03-31/functions",
            None
        )));
        assert!(is_s3_request(&req(Some("AWS AK:sig"), "/b/k", None)));
        assert!(is_s3_request(&req(
            None,
            "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20240101%2Fus-east-1%2Fs3%2Faws4_request",
            None
        )));
        assert!(is_s3_request(&req(None, "/b/k", Some("UNSIGNED-PAYLOAD"))));
        assert!(!is_s3_request(&req(None, "/2015-03-31/functions", None)));
        assert_eq!(
            client_access_key(req(Some(s3), "/", None).headers(), &"/".parse().unwrap()).as_deref(),
            Some("AK")
        );
    }

    #[test]
    fn resign_replaces_signature_and_presign_params() {
        let mut r = req(
            None,
            "/b/k%20x?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20240101%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Signature=abc&partNumber=1",
            None,
        );
        let now = time::macros::datetime!(2024-01-01 00:00:00 UTC);
        resign(&mut r, "secret", "us-east-1", |_| false, now).unwrap();
        assert_eq!(r.uri().query(), Some("partNumber=1"));
        let auth = r.headers()["authorization"].to_str().unwrap();
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=wisp-no-auth/20240101/eu-west-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="), "{auth}");
        assert_eq!(r.headers()["x-amz-content-sha256"], "UNSIGNED-PAYLOAD");
        assert_eq!(r.extensions().get::<ClientAccessKey>().unwrap().0, "AK");
    }

    #[test]
    fn signed_chunks_need_a_known_key() {
        let a = "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=x";
        let now = time::OffsetDateTime::now_utc();
        let mut r = req(Some(a), "/b/k", Some("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"));
        assert!(resign(&mut r, "s", "us-east-1", |_| false, now).is_err());
        let mut r = req(Some(a), "/b/k", Some("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"));
        resign(&mut r, "s", "us-east-1", |k| k == "AK", now).unwrap();
        assert_eq!(
            r.headers()["authorization"],
            a,
            "passed through for s3s to verify"
        );
    }

    #[test]
    fn canonical_request_encodes_as_s3s_does() {
        // The path decoded then re-encoded; the query decoded as a form ('+' is a space)
        // then re-encoded with '/' as %2F and sorted by name.
        let uri: Uri = "/test%24file.text?b=2&a=1+2&c=%2F".parse().unwrap();
        let c =
            canonical_request("GET", &uri, &[("host", "h".into())], "UNSIGNED-PAYLOAD").unwrap();
        assert_eq!(
            c,
            "GET\n/test%24file.text\na=1%202&b=2&c=%2F\nhost:h\n\nhost\nUNSIGNED-PAYLOAD"
        );
    }
}
