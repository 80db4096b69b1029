//! Events as HTTP: a request received by a function URL or a route reaches the component
//! as it came (and its response goes back as it is, see `invoke`); any other event
//! becomes `POST /` with the JSON as body.

use bytes::Bytes;

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

/// The request a function URL or a route received, as the component receives it: the
/// path below the URL's root (a route's whole path) with the query, the headers and the
/// body as they came.
pub fn from_http(request: wisp_runtime::HttpRequest) -> GuestRequest {
    let mut path_and_query = request.path;
    if !path_and_query.starts_with('/') {
        path_and_query.insert(0, '/');
    }
    if !request.query.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&request.query);
    }
    GuestRequest {
        method: request.method,
        path_and_query,
        headers: request.headers,
        body: request.body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_request_reaches_the_component_as_it_came() {
        let mut headers = http::HeaderMap::new();
        headers.append("x-multi", "a".parse().unwrap());
        headers.append("x-multi", "b".parse().unwrap());
        headers.insert("host", "h:1".parse().unwrap());
        headers.insert("cookie", "c=1; d=2".parse().unwrap());
        let r = from_http(wisp_runtime::HttpRequest {
            method: http::Method::PUT,
            path: "/a/b".into(),
            query: "x=1&y=%20".into(),
            headers,
            body: Bytes::from_static(&[0, 255, 1]),
        });
        assert_eq!(r.method, http::Method::PUT);
        assert_eq!(r.path_and_query, "/a/b?x=1&y=%20");
        assert_eq!(r.headers.get_all("x-multi").iter().count(), 2);
        assert_eq!(r.headers["cookie"], "c=1; d=2");
        assert_eq!(&r.body[..], &[0u8, 255, 1]);
        let req = r.into_http().unwrap();
        assert_eq!(req.uri().authority().unwrap().as_str(), "h:1");
    }

    #[test]
    fn an_invoke_is_a_post_of_its_json() {
        let r = plain(&Bytes::from_static(br#"{"order_id":"1"}"#));
        assert_eq!(r.method, http::Method::POST);
        assert_eq!(r.path_and_query, "/");
        assert_eq!(r.headers["content-type"], "application/json");
    }
}
