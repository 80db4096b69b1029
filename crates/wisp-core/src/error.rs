//! The errors the platform reports to callers, named as AWS Lambda names them so that
//! botocore maps each one to the exception class a Lambda user already catches.

use std::fmt;

/// One AWS error type. `as_str` is the value of the `x-amzn-ErrorType` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    ResourceNotFound,
    ResourceConflict,
    InvalidParameterValue,
    InvalidRequestContent,
    RequestTooLarge,
    TooManyRequests,
    PreconditionFailed,
    UnsupportedMediaType,
    CodeStorageExceeded,
    Service,
    // Authentication: all 403.
    MissingAuthenticationToken,
    IncompleteSignature,
    UnrecognizedClient,
    InvalidSignature,
    AccessDenied,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::ResourceNotFound => "ResourceNotFoundException",
            ErrorKind::ResourceConflict => "ResourceConflictException",
            ErrorKind::InvalidParameterValue => "InvalidParameterValueException",
            ErrorKind::InvalidRequestContent => "InvalidRequestContentException",
            ErrorKind::RequestTooLarge => "RequestTooLargeException",
            ErrorKind::TooManyRequests => "TooManyRequestsException",
            ErrorKind::PreconditionFailed => "PreconditionFailedException",
            ErrorKind::UnsupportedMediaType => "UnsupportedMediaTypeException",
            ErrorKind::CodeStorageExceeded => "CodeStorageExceededException",
            ErrorKind::Service => "ServiceException",
            ErrorKind::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            ErrorKind::IncompleteSignature => "IncompleteSignatureException",
            ErrorKind::UnrecognizedClient => "UnrecognizedClientException",
            ErrorKind::InvalidSignature => "InvalidSignatureException",
            ErrorKind::AccessDenied => "AccessDeniedException",
        }
    }

    /// The HTTP status AWS answers with for this error.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::ResourceNotFound => 404,
            ErrorKind::ResourceConflict => 409,
            ErrorKind::InvalidParameterValue
            | ErrorKind::InvalidRequestContent
            | ErrorKind::CodeStorageExceeded => 400,
            ErrorKind::RequestTooLarge => 413,
            ErrorKind::TooManyRequests => 429,
            ErrorKind::PreconditionFailed => 412,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::Service => 500,
            ErrorKind::MissingAuthenticationToken
            | ErrorKind::IncompleteSignature
            | ErrorKind::UnrecognizedClient
            | ErrorKind::InvalidSignature
            | ErrorKind::AccessDenied => 403,
        }
    }

    /// AWS tags client faults "User" and its own faults "Service".
    pub fn fault(self) -> &'static str {
        match self {
            ErrorKind::Service => "Service",
            _ => "User",
        }
    }
}

/// An error with the message the caller sees. Messages say what was wrong and, where it
/// helps, what to do instead; they never carry internals (those go to the server log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// Lambda's `Reason` field, set on throttles.
    pub reason: Option<&'static str>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            reason: None,
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameterValue, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceNotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceConflict, message)
    }
    pub fn service(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Service, message)
    }
    pub fn throttled(reason: &'static str) -> Self {
        Error {
            kind: ErrorKind::TooManyRequests,
            message: "Rate Exceeded.".into(),
            reason: Some(reason),
        }
    }
    pub fn too_large(limit: usize, operation: &str) -> Self {
        Self::new(
            ErrorKind::RequestTooLarge,
            format!("Request must be smaller than {limit} bytes for the {operation} operation"),
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
