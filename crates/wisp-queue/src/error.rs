//! The errors of the queue service, with the shape SQS gives each on its JSON protocol.
//!
//! SQS moved from the Query protocol to JSON and kept its old error codes: a response
//! carries the modeled shape name in `__type` (`com.amazonaws.sqs#QueueDoesNotExist`) and
//! the legacy code in the `x-amzn-query-error` header
//! (`AWS.SimpleQueueService.NonExistentQueue;Sender`). botocore reports the legacy code as
//! `Error.Code` and raises the modeled exception class (`client.exceptions.QueueDoesNotExist`)
//! from the shape name, so both must be right.

/// What went wrong, as SQS names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    QueueDoesNotExist,
    QueueNameExists,
    InvalidParameterValue,
    MissingParameter,
    InvalidAttributeName,
    InvalidAttributeValue,
    InvalidMessageContents,
    ReceiptHandleIsInvalid,
    MessageNotInflight,
    TooManyEntriesInBatchRequest,
    EmptyBatchRequest,
    BatchEntryIdsNotDistinct,
    BatchRequestTooLong,
    InvalidBatchEntryId,
    InvalidAddress,
    OverLimit,
    UnsupportedOperation,
    /// The `X-Amz-Target` names no operation.
    InvalidAction,
    /// Storage failed; the details go to the log, not to the client.
    InternalFailure,
}

impl ErrorKind {
    /// The error shape's name: `__type` is `com.amazonaws.sqs#` followed by this.
    pub fn shape(self) -> &'static str {
        use ErrorKind::*;
        match self {
            QueueDoesNotExist => "QueueDoesNotExist",
            QueueNameExists => "QueueNameExists",
            InvalidParameterValue => "InvalidParameterValueException",
            MissingParameter => "MissingRequiredParameterException",
            InvalidAttributeName => "InvalidAttributeName",
            InvalidAttributeValue => "InvalidAttributeValue",
            InvalidMessageContents => "InvalidMessageContents",
            ReceiptHandleIsInvalid => "ReceiptHandleIsInvalid",
            MessageNotInflight => "MessageNotInflight",
            TooManyEntriesInBatchRequest => "TooManyEntriesInBatchRequest",
            EmptyBatchRequest => "EmptyBatchRequest",
            BatchEntryIdsNotDistinct => "BatchEntryIdsNotDistinct",
            BatchRequestTooLong => "BatchRequestTooLong",
            InvalidBatchEntryId => "InvalidBatchEntryId",
            InvalidAddress => "InvalidAddress",
            OverLimit => "OverLimit",
            UnsupportedOperation => "UnsupportedOperation",
            InvalidAction => "UnknownOperationException",
            InternalFailure => "InternalFailure",
        }
    }

    /// The legacy Query-protocol code: what `x-amzn-query-error` carries, what botocore
    /// shows as `Error.Code`, and what batch results put in `Failed[].Code`.
    pub fn code(self) -> &'static str {
        use ErrorKind::*;
        match self {
            QueueDoesNotExist => "AWS.SimpleQueueService.NonExistentQueue",
            QueueNameExists => "QueueAlreadyExists",
            InvalidParameterValue => "InvalidParameterValue",
            MissingParameter => "MissingParameter",
            InvalidAttributeName => "InvalidAttributeName",
            InvalidAttributeValue => "InvalidAttributeValue",
            InvalidMessageContents => "InvalidMessageContents",
            ReceiptHandleIsInvalid => "ReceiptHandleIsInvalid",
            MessageNotInflight => "AWS.SimpleQueueService.MessageNotInflight",
            TooManyEntriesInBatchRequest => "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            EmptyBatchRequest => "AWS.SimpleQueueService.EmptyBatchRequest",
            BatchEntryIdsNotDistinct => "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
            BatchRequestTooLong => "AWS.SimpleQueueService.BatchRequestTooLong",
            InvalidBatchEntryId => "AWS.SimpleQueueService.InvalidBatchEntryId",
            InvalidAddress => "InvalidAddress",
            OverLimit => "OverLimit",
            UnsupportedOperation => "AWS.SimpleQueueService.UnsupportedOperation",
            InvalidAction => "InvalidAction",
            InternalFailure => "InternalFailure",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            ErrorKind::OverLimit => 403,
            ErrorKind::InternalFailure => 500,
            _ => 400,
        }
    }

    /// `Sender` (the request was wrong) or `Receiver` (wisp failed).
    pub fn fault(self) -> &'static str {
        if self == ErrorKind::InternalFailure {
            "Receiver"
        } else {
            "Sender"
        }
    }
}

/// An error of the queue service: its kind and a message that says what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", kind.code())]
pub struct QueueError {
    pub kind: ErrorKind,
    pub message: String,
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;

impl QueueError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        QueueError {
            kind,
            message: message.into(),
        }
    }

    pub fn no_queue(name: &str) -> Self {
        Self::new(
            ErrorKind::QueueDoesNotExist,
            format!(
                "The specified queue does not exist: {}. Create it with CreateQueue first.",
                clip(name)
            ),
        )
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidParameterValue, message)
    }

    pub fn missing(parameter: &str) -> Self {
        Self::new(
            ErrorKind::MissingParameter,
            format!("The request must contain the parameter {parameter}."),
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InternalFailure, message)
    }
}

impl From<rusqlite::Error> for QueueError {
    fn from(e: rusqlite::Error) -> Self {
        QueueError::internal(format!("queue database: {e}"))
    }
}

/// A client-supplied string, shortened for an error message.
pub(crate) fn clip(s: &str) -> String {
    const MAX_CHARS: usize = 100;
    if s.chars().count() <= MAX_CHARS {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(MAX_CHARS).collect();
        out.push_str("...");
        out
    }
}
