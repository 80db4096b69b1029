//! Errors in the shape botocore parses: the type in `x-amzn-ErrorType`, a JSON body with
//! `Type` and `Message` (and `Reason` for throttles).

use axum::http::{HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use wisp_core::{Error, ErrorKind};

#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status =
            StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut body = serde_json::json!({ "Type": e.kind.fault(), "Message": e.message, "message": e.message });
        if let Some(reason) = e.reason {
            body["Reason"] = reason.into();
        }
        let mut response = (status, axum::Json(body)).into_response();
        response.headers_mut().insert(
            "x-amzn-errortype",
            HeaderValue::from_static(e.kind.as_str()),
        );
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Any path the API does not serve.
pub async fn unknown_operation(uri: Uri) -> ApiError {
    ApiError(Error::new(
        ErrorKind::ResourceNotFound,
        format!(
            "No operation is served at {}.",
            uri.path().chars().take(200).collect::<String>()
        ),
    ))
}

/// Reads a request body of at most `limit` bytes.
pub async fn read_body(
    body: axum::body::Body,
    limit: usize,
    operation: &str,
) -> ApiResult<bytes::Bytes> {
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ApiError(Error::too_large(limit, operation)))
}

/// Parses a JSON request body strictly into `T`.
pub fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let text = if bytes.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        bytes
    };
    serde_json::from_slice(text).map_err(|e| {
        let kind = if e.is_syntax() || e.is_eof() {
            ErrorKind::InvalidRequestContent
        } else {
            ErrorKind::InvalidParameterValue
        };
        ApiError(Error::new(
            kind,
            format!("Could not parse the request body: {e}"),
        ))
    })
}
