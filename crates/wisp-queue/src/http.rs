//! SQS's JSON protocol over HTTP: `POST /` with `X-Amz-Target: AmazonSQS.<Operation>` and
//! a JSON body, answered with `application/x-amz-json-1.0`. Handlers translate between
//! JSON and [`QueueService`] calls; every parameter is read by name and type-checked
//! (`params.rs`) so a hostile body gets an SQS error that names the parameter, never a panic.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::error::{clip, ErrorKind, QueueError, Result};
use crate::limits::{
    ACCOUNT_ID, BATCH_PAYLOAD_MAX_BYTES, LIST_MAX_RESULTS, RECEIVE_WAIT_MAX_S, REQUEST_MAX_BYTES,
};
use crate::message::{self, MessageAttributeValue, MessageAttributes};
use crate::names;
use crate::service::QueueService;
use crate::store::{NewMessage, Received};

mod params;

use params::{in_range, Params};

const CONTENT_TYPE: &str = "application/x-amz-json-1.0";

/// The SQS API on `POST /`. Mount it for requests meant for SQS (see the crate docs).
pub fn router(state: Arc<QueueService>) -> Router {
    Router::new().route("/", post(handle)).with_state(state)
}

fn error_response(e: &QueueError, request_id: &str) -> Response {
    let message = if e.kind == ErrorKind::InternalFailure {
        tracing::error!(request_id, error = %e.message, "SQS request failed");
        format!("wisp could not complete the request; the server log has the details (request id {request_id}).")
    } else {
        e.message.clone()
    };
    let body = json!({
        "__type": format!("com.amazonaws.sqs#{}", e.kind.shape()),
        "message": message,
    });
    let status = StatusCode::from_u16(e.kind.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(v) = HeaderValue::from_str(&format!("{};{}", e.kind.code(), e.kind.fault())) {
        headers.insert("x-amzn-query-error", v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", v);
    }
    response
}

fn ok_response(body: Value, request_id: &str) -> Response {
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert("content-type", HeaderValue::from_static(CONTENT_TYPE));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", v);
    }
    response
}

async fn handle(State(svc): State<Arc<QueueService>>, headers: HeaderMap, body: Body) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    match serve(&svc, &headers, body).await {
        Ok(v) => ok_response(v, &request_id),
        Err(e) => error_response(&e, &request_id),
    }
}

/// `http://HOST` as the client reached wisp, for the queue URLs it is given.
fn endpoint(headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                })
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

async fn serve(svc: &QueueService, headers: &HeaderMap, body: Body) -> Result<Value> {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(operation) = target.strip_prefix("AmazonSQS.") else {
        let form = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
        return Err(QueueError::new(
            ErrorKind::InvalidAction,
            if form {
                "wisp speaks SQS's JSON protocol only (X-Amz-Target: AmazonSQS.<Operation>, Content-Type: application/x-amz-json-1.0), not the Query protocol (Action=...). Use a current AWS SDK or CLI.".to_string()
            } else if target.is_empty() {
                "Missing X-Amz-Target header: SQS requests name their operation as X-Amz-Target: AmazonSQS.<Operation>.".to_string()
            } else {
                format!(
                    "Unknown X-Amz-Target {:?}: expected AmazonSQS.<Operation>.",
                    clip(target)
                )
            },
        ));
    };
    let bytes = axum::body::to_bytes(body, REQUEST_MAX_BYTES)
        .await
        .map_err(|_| {
            QueueError::invalid(format!(
                "The request body is larger than {REQUEST_MAX_BYTES} bytes; no SQS request needs that much (messages are at most 262144 bytes)."
            ))
        })?;
    let p = Params::parse(&bytes)?;
    let endpoint = endpoint(headers);
    dispatch(svc, operation, &p, &endpoint).await
}

async fn dispatch(
    svc: &QueueService,
    operation: &str,
    p: &Params,
    endpoint: &str,
) -> Result<Value> {
    match operation {
        "CreateQueue" => create_queue(svc, p, endpoint).await,
        "GetQueueUrl" => get_queue_url(svc, p, endpoint).await,
        "ListQueues" => list_queues(svc, p, endpoint).await,
        "SendMessage" => send_message(svc, p).await,
        "SendMessageBatch" => send_message_batch(svc, p).await,
        "ReceiveMessage" => receive_message(svc, p).await,
        "DeleteMessage" => delete_message(svc, p).await,
        "DeleteMessageBatch" => delete_message_batch(svc, p).await,
        "ChangeMessageVisibility" => change_message_visibility(svc, p).await,
        "ChangeMessageVisibilityBatch" => change_message_visibility_batch(svc, p).await,
        "GetQueueAttributes" => get_queue_attributes(svc, p).await,
        "SetQueueAttributes" => set_queue_attributes(svc, p).await,
        "PurgeQueue" => {
            svc.purge(&p.queue()?).await?;
            Ok(json!({}))
        }
        "DeleteQueue" => {
            svc.delete_queue(&p.queue()?).await?;
            Ok(json!({}))
        }
        "ListDeadLetterSourceQueues" => list_dead_letter_sources(svc, p, endpoint).await,
        "TagQueue" => {
            let queue = p.queue()?;
            let tags = p
                .string_map("Tags")?
                .ok_or_else(|| QueueError::missing("Tags"))?;
            svc.tag_queue(&queue, tags).await?;
            Ok(json!({}))
        }
        "UntagQueue" => {
            let queue = p.queue()?;
            let keys = p
                .string_list("TagKeys")?
                .ok_or_else(|| QueueError::missing("TagKeys"))?;
            svc.untag_queue(&queue, keys).await?;
            Ok(json!({}))
        }
        "ListQueueTags" => {
            let row = svc.queue(&p.queue()?).await?;
            Ok(if row.tags.is_empty() {
                json!({})
            } else {
                json!({ "Tags": row.tags })
            })
        }
        "AddPermission"
        | "RemovePermission"
        | "StartMessageMoveTask"
        | "CancelMessageMoveTask"
        | "ListMessageMoveTasks" => Err(QueueError::new(
            ErrorKind::UnsupportedOperation,
            format!("{operation} is not supported by wisp."),
        )),
        other => Err(QueueError::new(
            ErrorKind::InvalidAction,
            format!("The action {} is not valid for this endpoint.", clip(other)),
        )),
    }
}

fn failed(id: &str, e: &QueueError) -> Value {
    json!({
        "Id": id,
        "SenderFault": e.kind.fault() == "Sender",
        "Code": e.kind.code(),
        "Message": e.message,
    })
}

/// `MD5OfMessageSystemAttributes` of an `AWSTraceHeader`.
fn md5_of_trace_header(trace: &str) -> String {
    let mut m = MessageAttributes::new();
    m.insert(
        "AWSTraceHeader".into(),
        MessageAttributeValue::string(trace),
    );
    message::md5_of_attributes(&m).unwrap_or_default()
}

// ---------------------------------------------------------------------- queues

async fn create_queue(svc: &QueueService, p: &Params, endpoint: &str) -> Result<Value> {
    let name = p.required_str("QueueName")?;
    let attributes = p.string_map("Attributes")?.unwrap_or_default();
    let tags = p.string_map("tags")?.unwrap_or_default();
    svc.create_queue(name, &attributes, tags).await?;
    Ok(json!({ "QueueUrl": names::queue_url(endpoint, name) }))
}

async fn get_queue_url(svc: &QueueService, p: &Params, endpoint: &str) -> Result<Value> {
    let name = p.required_str("QueueName")?;
    if p.str("QueueOwnerAWSAccountId")?
        .is_some_and(|a| a != ACCOUNT_ID)
    {
        return Err(QueueError::no_queue(name));
    }
    if name.ends_with(".fifo") {
        return Err(QueueError::no_queue(name));
    }
    names::validate_queue_name(name).map_err(|_| QueueError::no_queue(name))?;
    svc.queue(name).await?;
    Ok(json!({ "QueueUrl": names::queue_url(endpoint, name) }))
}

fn next_token(last: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(last)
}

fn parse_next_token(p: &Params) -> Result<Option<String>> {
    let Some(token) = p.str("NextToken")? else {
        return Ok(None);
    };
    let invalid = || {
        QueueError::invalid(
            "Invalid NextToken: pass back the NextToken of the previous page unchanged.",
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| invalid())?;
    let name = String::from_utf8(bytes).map_err(|_| invalid())?;
    names::validate_queue_name(&name).map_err(|_| invalid())?;
    Ok(Some(name))
}

fn max_results(p: &Params) -> Result<Option<usize>> {
    p.int("MaxResults")?
        .map(|n| in_range("MaxResults", n, 1, LIST_MAX_RESULTS as i64).map(|n| n as usize))
        .transpose()
}

async fn list_queues(svc: &QueueService, p: &Params, endpoint: &str) -> Result<Value> {
    let prefix = p.str("QueueNamePrefix")?.unwrap_or("");
    if prefix.len() > 80 {
        return Err(QueueError::invalid(
            "QueueNamePrefix is longer than a queue name can be (80 characters).",
        ));
    }
    let after = parse_next_token(p)?;
    let max = max_results(p)?;
    let limit = max.unwrap_or(LIST_MAX_RESULTS);
    let mut names_found = svc.list_queues(prefix, after, limit + 1).await?;
    let more = names_found.len() > limit;
    names_found.truncate(limit);
    let mut out = Map::new();
    if !names_found.is_empty() {
        let urls: Vec<String> = names_found
            .iter()
            .map(|n| names::queue_url(endpoint, n))
            .collect();
        out.insert("QueueUrls".into(), json!(urls));
    }
    // As SQS: pages (and a NextToken) only when the caller asked for MaxResults.
    if more && max.is_some() {
        if let Some(last) = names_found.last() {
            out.insert("NextToken".into(), next_token(last).into());
        }
    }
    Ok(Value::Object(out))
}

async fn list_dead_letter_sources(svc: &QueueService, p: &Params, endpoint: &str) -> Result<Value> {
    let queue = p.queue()?;
    let after = parse_next_token(p)?;
    let max = max_results(p)?;
    let limit = max.unwrap_or(LIST_MAX_RESULTS);
    let sources: Vec<String> = svc
        .dead_letter_sources(&queue)
        .await?
        .into_iter()
        .filter(|n| after.as_ref().is_none_or(|a| n > a))
        .collect();
    let more = sources.len() > limit;
    let page: Vec<&String> = sources.iter().take(limit).collect();
    let mut out = json!({
        "queueUrls": page.iter().map(|n| names::queue_url(endpoint, n)).collect::<Vec<_>>(),
    });
    if more && max.is_some() {
        if let Some(last) = page.last() {
            out["NextToken"] = next_token(last).into();
        }
    }
    Ok(out)
}

async fn get_queue_attributes(svc: &QueueService, p: &Params) -> Result<Value> {
    let queue = p.queue()?;
    let wanted = p.string_list("AttributeNames")?.unwrap_or_default();
    let attributes = svc.get_attributes(&queue, &wanted).await?;
    Ok(if attributes.is_empty() {
        json!({})
    } else {
        json!({ "Attributes": attributes })
    })
}

async fn set_queue_attributes(svc: &QueueService, p: &Params) -> Result<Value> {
    let queue = p.queue()?;
    let attributes = p
        .string_map("Attributes")?
        .ok_or_else(|| QueueError::missing("Attributes"))?;
    svc.set_attributes(&queue, &attributes).await?;
    Ok(json!({}))
}

// ---------------------------------------------------------------------- messages

async fn send_message(svc: &QueueService, p: &Params) -> Result<Value> {
    let queue = p.queue()?;
    let m = p.new_message()?;
    let trace = m.trace_header.clone();
    let sent = svc
        .send_messages(&queue, vec![m])
        .await?
        .pop()
        .unwrap_or_else(|| Err(QueueError::internal("send returned nothing")))?;
    let mut out = json!({
        "MessageId": sent.message_id,
        "MD5OfMessageBody": sent.md5_of_body,
    });
    if let Some(md5) = sent.md5_of_attributes {
        out["MD5OfMessageAttributes"] = md5.into();
    }
    if let Some(t) = trace {
        out["MD5OfMessageSystemAttributes"] = md5_of_trace_header(&t).into();
    }
    Ok(out)
}

async fn send_message_batch(svc: &QueueService, p: &Params) -> Result<Value> {
    let queue = p.queue()?;
    let entries = p.entries("SendMessage")?;
    // The queue must exist even if every entry turns out invalid.
    svc.queue(&queue).await?;
    let mut total = 0usize;
    let mut failed_entries = Vec::new();
    let mut valid: Vec<(String, NewMessage)> = Vec::new();
    for (id, entry) in &entries {
        // Missing or mistyped required members fail the whole request, as SQS does.
        let body = entry.required_str("MessageBody")?;
        match entry.new_message() {
            Ok(m) => {
                total += message::message_size(&m.body, &m.attributes);
                valid.push((id.clone(), m));
            }
            Err(e) => {
                total += body.len();
                failed_entries.push(failed(id, &e));
            }
        }
    }
    if total > BATCH_PAYLOAD_MAX_BYTES {
        return Err(QueueError::new(
            ErrorKind::BatchRequestTooLong,
            format!("Batch requests cannot be longer than {BATCH_PAYLOAD_MAX_BYTES} bytes. You have sent {total} bytes."),
        ));
    }
    let mut successful = Vec::new();
    if !valid.is_empty() {
        let traces: Vec<Option<String>> =
            valid.iter().map(|(_, m)| m.trace_header.clone()).collect();
        let ids: Vec<String> = valid.iter().map(|(id, _)| id.clone()).collect();
        let results = svc
            .send_messages(&queue, valid.into_iter().map(|(_, m)| m).collect())
            .await?;
        for ((id, result), trace) in ids.iter().zip(results).zip(traces) {
            match result {
                Ok(sent) => {
                    let mut entry = json!({
                        "Id": id,
                        "MessageId": sent.message_id,
                        "MD5OfMessageBody": sent.md5_of_body,
                    });
                    if let Some(md5) = sent.md5_of_attributes {
                        entry["MD5OfMessageAttributes"] = md5.into();
                    }
                    if let Some(t) = trace {
                        entry["MD5OfMessageSystemAttributes"] = md5_of_trace_header(&t).into();
                    }
                    successful.push(entry);
                }
                Err(e) => failed_entries.push(failed(id, &e)),
            }
        }
    }
    Ok(json!({ "Successful": successful, "Failed": failed_entries }))
}

/// Message system attribute names ReceiveMessage knows.
const SYSTEM_ATTRIBUTES: &[&str] = &[
    "All",
    "SenderId",
    "SentTimestamp",
    "ApproximateReceiveCount",
    "ApproximateFirstReceiveTimestamp",
    "SequenceNumber",
    "MessageDeduplicationId",
    "MessageGroupId",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
];

fn system_attributes(svc: &QueueService, m: &Received, wanted: &[String]) -> Map<String, Value> {
    let all = wanted.iter().any(|w| w == "All");
    let wants = |n: &str| all || wanted.iter().any(|w| w == n);
    let mut out = Map::new();
    if wants("SenderId") {
        out.insert("SenderId".into(), ACCOUNT_ID.into());
    }
    if wants("SentTimestamp") {
        out.insert("SentTimestamp".into(), m.sent_ms.to_string().into());
    }
    if wants("ApproximateReceiveCount") {
        out.insert(
            "ApproximateReceiveCount".into(),
            m.receive_count.to_string().into(),
        );
    }
    if wants("ApproximateFirstReceiveTimestamp") {
        out.insert(
            "ApproximateFirstReceiveTimestamp".into(),
            m.first_receive_ms.to_string().into(),
        );
    }
    if let Some(t) = m.trace_header.as_ref().filter(|_| wants("AWSTraceHeader")) {
        out.insert("AWSTraceHeader".into(), t.clone().into());
    }
    if let Some(s) = m
        .dead_letter_source
        .as_ref()
        .filter(|_| wants("DeadLetterQueueSourceArn"))
    {
        out.insert("DeadLetterQueueSourceArn".into(), svc.queue_arn(s).into());
    }
    out
}

async fn receive_message(svc: &QueueService, p: &Params) -> Result<Value> {
    let queue = p.queue()?;
    let mut wanted_system = p
        .string_list("MessageSystemAttributeNames")?
        .unwrap_or_default();
    for name in &wanted_system {
        if !SYSTEM_ATTRIBUTES.contains(&name.as_str()) {
            return Err(QueueError::new(
                ErrorKind::InvalidAttributeName,
                format!("Unknown Attribute {}.", clip(name)),
            ));
        }
    }
    // The deprecated AttributeNames: message system attributes, or queue attribute names
    // (accepted and ignored, as SQS does).
    for name in p.string_list("AttributeNames")?.unwrap_or_default() {
        if SYSTEM_ATTRIBUTES.contains(&name.as_str()) {
            wanted_system.push(name);
        } else {
            crate::attributes::check_readable(&name)?;
        }
    }
    let wanted_attributes = p.string_list("MessageAttributeNames")?.unwrap_or_default();
    let max = p
        .int("MaxNumberOfMessages")?
        .map(|n| {
            in_range(
                "MaxNumberOfMessages",
                n,
                1,
                crate::limits::RECEIVE_MAX_MESSAGES as i64,
            )
        })
        .transpose()?
        .unwrap_or(1);
    let visibility = p
        .int("VisibilityTimeout")?
        .map(|n| {
            in_range(
                "VisibilityTimeout",
                n,
                0,
                crate::limits::VISIBILITY_TIMEOUT_MAX_S as i64,
            )
        })
        .transpose()?;
    let wait_s = match p.int("WaitTimeSeconds")? {
        Some(n) => in_range("WaitTimeSeconds", n, 0, RECEIVE_WAIT_MAX_S as i64)?,
        None => svc.queue(&queue).await?.settings.receive_wait_s,
    };
    p.str("ReceiveRequestAttemptId")?;
    let messages = svc
        .receive_wait(
            &queue,
            max as usize,
            visibility,
            Duration::from_secs(wait_s as u64),
        )
        .await?;
    if messages.is_empty() {
        return Ok(json!({}));
    }
    let rendered: Vec<Value> = messages
        .iter()
        .map(|m| {
            let mut out = json!({
                "MessageId": m.message_id,
                "ReceiptHandle": m.receipt_handle,
                "MD5OfBody": m.md5_of_body,
                "Body": m.body,
            });
            let system = system_attributes(svc, m, &wanted_system);
            if !system.is_empty() {
                out["Attributes"] = Value::Object(system);
            }
            let attributes = message::select_attributes(&m.attributes, &wanted_attributes);
            if let Some(md5) = message::md5_of_attributes(&attributes) {
                out["MD5OfMessageAttributes"] = md5.into();
                out["MessageAttributes"] = json!(attributes);
            }
            out
        })
        .collect();
    Ok(json!({ "Messages": rendered }))
}

async fn delete_message(svc: &QueueService, p: &Params) -> Result<Value> {
    let queue = p.queue()?;
    let handle = p.required_str("ReceiptHandle")?;
    svc.delete(&queue, handle).await?;
    Ok(json!({}))
}

async fn delete_message_batch(svc: &QueueService, p: &Params) -> Result<Value> {
    let queue = p.queue()?;
    let entries = p.entries("DeleteMessage")?;
    svc.queue(&queue).await?;
    let mut successful = Vec::new();
    let mut failed_entries = Vec::new();
    for (id, entry) in &entries {
        let handle = entry.required_str("ReceiptHandle")?;
        match svc.delete(&queue, handle).await {
            Ok(_) => successful.push(json!({ "Id": id })),
            Err(e)
                if e.kind == ErrorKind::QueueDoesNotExist
                    || e.kind == ErrorKind::InternalFailure =>
            {
                return Err(e)
            }
            Err(e) => failed_entries.push(failed(id, &e)),
        }
    }
    Ok(json!({ "Successful": successful, "Failed": failed_entries }))
}

async fn change_message_visibility(svc: &QueueService, p: &Params) -> Result<Value> {
    let queue = p.queue()?;
    let handle = p.required_str("ReceiptHandle")?;
    let timeout = p
        .int("VisibilityTimeout")?
        .ok_or_else(|| QueueError::missing("VisibilityTimeout"))?;
    let timeout = in_range(
        "VisibilityTimeout",
        timeout,
        0,
        crate::limits::VISIBILITY_TIMEOUT_MAX_S as i64,
    )?;
    svc.change_visibility(&queue, handle, timeout).await?;
    Ok(json!({}))
}

async fn change_message_visibility_batch(svc: &QueueService, p: &Params) -> Result<Value> {
    let queue = p.queue()?;
    let entries = p.entries("ChangeMessageVisibility")?;
    svc.queue(&queue).await?;
    let mut successful = Vec::new();
    let mut failed_entries = Vec::new();
    for (id, entry) in &entries {
        let handle = entry.required_str("ReceiptHandle")?;
        let result = match entry.int("VisibilityTimeout") {
            Ok(Some(t)) => match in_range(
                "VisibilityTimeout",
                t,
                0,
                crate::limits::VISIBILITY_TIMEOUT_MAX_S as i64,
            ) {
                Ok(t) => svc.change_visibility(&queue, handle, t).await,
                Err(e) => Err(e),
            },
            Ok(None) => Err(QueueError::missing("VisibilityTimeout")),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => successful.push(json!({ "Id": id })),
            Err(e)
                if e.kind == ErrorKind::QueueDoesNotExist
                    || e.kind == ErrorKind::InternalFailure =>
            {
                return Err(e)
            }
            Err(e) => failed_entries.push(failed(id, &e)),
        }
    }
    Ok(json!({ "Successful": successful, "Failed": failed_entries }))
}

#[cfg(test)]
mod tests;
