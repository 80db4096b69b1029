//! Events as HTTP: an HTTP event (API Gateway payload 2.0, made by a function URL or a
//! route) becomes the request it was made from, and the component's response becomes the
//! 2.0 response document; any other event becomes `POST /` with the JSON as body.

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Map, Value};

/// The request a component receives, before it becomes a wasi:http resource.
#[derive(Debug)]
pub struct GuestRequest {
    pub method: http::Method,
    /// Path and query, as received.
    pub path_and_query: String,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl GuestRequest {
    pub fn into_http(self) -> Result<http::Request<Bytes>, http::Error> {
        let authority = self
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| h.parse::<http::uri::Authority>().is_ok())
            .unwrap_or("localhost")
            .to_string();
        let uri = http::Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query(self.path_and_query)
            .build()?;
        let mut request = http::Request::builder()
            .method(self.method)
            .uri(uri)
            .body(self.body)?;
        *request.headers_mut() = self.headers;
        Ok(request)
    }
}

/// `POST /` with the event as its JSON body: how a component sees an Invoke.
pub fn plain(payload: &Bytes) -> GuestRequest {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::HOST,
        http::HeaderValue::from_static("localhost"),
    );
    GuestRequest {
        method: http::Method::POST,
        path_and_query: "/".into(),
        headers,
        body: payload.clone(),
    }
}

/// Rebuilds the HTTP request a payload 2.0 event was made from. `None` if the payload is
/// not such an event (it then goes as a plain event).
pub fn from_http_event(payload: &[u8]) -> Option<GuestRequest> {
    let doc: Value = serde_json::from_slice(payload).ok()?;
    if doc.get("version")? != "2.0" {
        return None;
    }
    let method = doc
        .pointer("/requestContext/http/method")
        .and_then(Value::as_str)
        .and_then(|m| http::Method::from_bytes(m.as_bytes()).ok())?;
    let raw_path = doc.get("rawPath").and_then(Value::as_str).unwrap_or("/");
    let raw_query = doc
        .get("rawQueryString")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut path_and_query = if raw_path.starts_with('/') {
        raw_path.to_string()
    } else {
        format!("/{raw_path}")
    };
    if !raw_query.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(raw_query);
    }
    if path_and_query.parse::<http::uri::PathAndQuery>().is_err() {
        return None;
    }
    let mut headers = http::HeaderMap::new();
    if let Some(Value::Object(map)) = doc.get("headers") {
        for (name, value) in map {
            let (Ok(name), Some(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                value.as_str(),
            ) else {
                continue;
            };
            if let Ok(value) = http::HeaderValue::from_str(value) {
                headers.append(name, value);
            }
        }
    }
    // The 2.0 event moves cookies out of the headers; put them back as one header.
    if let Some(Value::Array(cookies)) = doc.get("cookies") {
        let joined: Vec<&str> = cookies.iter().filter_map(Value::as_str).collect();
        if let Ok(v) = http::HeaderValue::from_str(&joined.join("; ")) {
            if !joined.is_empty() {
                headers.insert(http::header::COOKIE, v);
            }
        }
    }
    let body = match doc.get("body").and_then(Value::as_str) {
        None => Bytes::new(),
        Some(b) if doc.get("isBase64Encoded") == Some(&Value::Bool(true)) => {
            Bytes::from(base64::engine::general_purpose::STANDARD.decode(b).ok()?)
        }
        Some(b) => Bytes::from(b.to_string()),
    };
    Some(GuestRequest {
        method,
        path_and_query,
        headers,
        body,
    })
}

/// The 2.0 response document for a component's response, which the HTTP front maps back
/// to the same status, headers and bytes.
pub fn http_result(status: u16, headers: &http::HeaderMap, body: &[u8]) -> Vec<u8> {
    let mut hmap = Map::new();
    let mut cookies = Vec::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        if name == http::header::SET_COOKIE {
            cookies.extend(values);
        } else {
            hmap.insert(name.as_str().to_string(), Value::String(values.join(", ")));
        }
    }
    let (body, base64) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_string(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let mut doc = json!({
        "statusCode": status,
        "headers": hmap,
        "body": body,
        "isBase64Encoded": base64,
    });
    if !cookies.is_empty() {
        doc["cookies"] = json!(cookies);
    }
    doc.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuilds_the_request_of_an_event() {
        let event = json!({
            "version": "2.0",
            "rawPath": "/a/b",
            "rawQueryString": "x=1&y=%20",
            "headers": {"content-type": "application/octet-stream", "x-multi": "a,b", "host": "h:1"},
            "cookies": ["c=1", "d=2"],
            "requestContext": {"http": {"method": "PUT"}},
            "body": base64::engine::general_purpose::STANDARD.encode([0u8, 255, 1]),
            "isBase64Encoded": true,
        });
        let r = from_http_event(event.to_string().as_bytes()).unwrap();
        assert_eq!(r.method, http::Method::PUT);
        assert_eq!(r.path_and_query, "/a/b?x=1&y=%20");
        assert_eq!(r.headers["x-multi"], "a,b");
        assert_eq!(r.headers["cookie"], "c=1; d=2");
        assert_eq!(&r.body[..], &[0u8, 255, 1]);
        let req = r.into_http().unwrap();
        assert_eq!(req.uri().authority().unwrap().as_str(), "h:1");
    }

    #[test]
    fn plain_json_is_not_an_http_event() {
        assert!(from_http_event(br#"{"order_id":"1"}"#).is_none());
        assert!(from_http_event(b"not json").is_none());
    }

    #[test]
    fn response_document_keeps_bytes_and_cookies() {
        let mut h = http::HeaderMap::new();
        h.append("set-cookie", "a=1".parse().unwrap());
        h.append("set-cookie", "b=2".parse().unwrap());
        h.insert("content-type", "image/png".parse().unwrap());
        let doc: Value = serde_json::from_slice(&http_result(201, &h, &[0xff, 0])).unwrap();
        assert_eq!(doc["statusCode"], 201);
        assert_eq!(doc["isBase64Encoded"], true);
        assert_eq!(doc["body"], "/wA=");
        assert_eq!(doc["cookies"], json!(["a=1", "b=2"]));
        assert_eq!(doc["headers"]["content-type"], "image/png");
    }
}
