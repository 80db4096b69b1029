//! The router without a socket (`tower::ServiceExt::oneshot`).

use axum::http::Request;
use tower::ServiceExt;

use super::*;
use crate::service::QueueConfig;

struct Api {
    _dir: tempfile::TempDir,
    svc: Arc<QueueService>,
}

struct Reply {
    status: u16,
    query_error: Option<String>,
    body: Value,
}

impl Reply {
    /// Asserts an SQS error: its `__type` shape and `x-amzn-query-error` code.
    fn error(&self, shape: &str, code: &str) {
        assert_eq!(
            self.body["__type"],
            format!("com.amazonaws.sqs#{shape}"),
            "{:?}",
            self.body
        );
        assert_eq!(
            self.query_error.as_deref(),
            Some(format!("{code};Sender").as_str())
        );
        assert!(self.body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(self.status == 400 || self.status == 403, "{}", self.status);
    }
}

impl Api {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let svc =
            QueueService::open(&dir.path().join("queues.db"), QueueConfig::default()).unwrap();
        Api { _dir: dir, svc }
    }

    async fn raw(&self, target: Option<&str>, content_type: &str, body: Vec<u8>) -> Reply {
        let mut req = Request::post("/")
            .header("host", "127.0.0.1:8790")
            .header("content-type", content_type);
        if let Some(t) = target {
            req = req.header("x-amz-target", t);
        }
        let response = router(self.svc.clone())
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert_eq!(response.headers()["content-type"], CONTENT_TYPE);
        assert!(response.headers().contains_key("x-amzn-requestid"));
        let query_error = response
            .headers()
            .get("x-amzn-query-error")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Reply {
            status,
            query_error,
            body: serde_json::from_slice(&bytes).unwrap(),
        }
    }

    async fn call(&self, op: &str, body: Value) -> Reply {
        self.raw(
            Some(&format!("AmazonSQS.{op}")),
            CONTENT_TYPE,
            body.to_string().into_bytes(),
        )
        .await
    }

    async fn ok(&self, op: &str, body: Value) -> Value {
        let r = self.call(op, body).await;
        assert_eq!(r.status, 200, "{op}: {:?}", r.body);
        r.body
    }

    async fn create(&self, name: &str) -> String {
        let r = self.ok("CreateQueue", json!({ "QueueName": name })).await;
        r["QueueUrl"].as_str().unwrap().to_string()
    }
}

#[tokio::test]
async fn queue_urls_follow_the_host_header() {
    let api = Api::new();
    let url = api.create("orders").await;
    assert_eq!(url, "http://127.0.0.1:8790/000000000000/orders");
    let got = api
        .ok("GetQueueUrl", json!({ "QueueName": "orders" }))
        .await;
    assert_eq!(got["QueueUrl"], url);
    let listed = api.ok("ListQueues", json!({})).await;
    assert_eq!(listed["QueueUrls"], json!([url]));
}

#[tokio::test]
async fn send_receive_delete_with_attributes() {
    let api = Api::new();
    let url = api.create("q").await;
    let sent = api
        .ok(
            "SendMessage",
            json!({
                "QueueUrl": url,
                "MessageBody": "hello",
                "MessageAttributes": {
                    "test": {"DataType": "String", "StringValue": "test"},
                    "bin": {"DataType": "Binary", "BinaryValue": "AAEC"},
                    "n": {"DataType": "Number.int", "StringValue": "42"},
                },
                "MessageSystemAttributes": {"AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1-x"}},
            }),
        )
        .await;
    assert_eq!(sent["MD5OfMessageBody"], "5d41402abc4b2a76b9719d911017c592");
    assert_eq!(
        sent["MD5OfMessageAttributes"],
        "adecebeeb0f5889f614e362e97f246f9"
    );
    assert!(sent["MD5OfMessageSystemAttributes"].is_string());
    let got = api
        .ok(
            "ReceiveMessage",
            json!({
                "QueueUrl": url,
                "MaxNumberOfMessages": 10,
                "MessageSystemAttributeNames": ["All"],
                "MessageAttributeNames": ["All"],
            }),
        )
        .await;
    let m = &got["Messages"][0];
    assert_eq!(m["MessageId"], sent["MessageId"]);
    assert_eq!(m["Body"], "hello");
    assert_eq!(m["MD5OfBody"], sent["MD5OfMessageBody"]);
    assert_eq!(m["MD5OfMessageAttributes"], sent["MD5OfMessageAttributes"]);
    assert_eq!(m["MessageAttributes"]["bin"]["BinaryValue"], "AAEC");
    assert_eq!(m["Attributes"]["ApproximateReceiveCount"], "1");
    assert_eq!(m["Attributes"]["AWSTraceHeader"], "Root=1-x");
    assert!(m["Attributes"]["SentTimestamp"]
        .as_str()
        .unwrap()
        .parse::<i64>()
        .is_ok());
    // Only what was asked for.
    api.ok(
        "ChangeMessageVisibility",
        json!({ "QueueUrl": url, "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0 }),
    )
    .await;
    let again = api.ok("ReceiveMessage", json!({ "QueueUrl": url })).await;
    let m2 = &again["Messages"][0];
    assert!(m2.get("Attributes").is_none() && m2.get("MessageAttributes").is_none());
    api.ok(
        "DeleteMessage",
        json!({ "QueueUrl": url, "ReceiptHandle": m2["ReceiptHandle"] }),
    )
    .await;
    let empty = api.ok("ReceiveMessage", json!({ "QueueUrl": url })).await;
    assert_eq!(empty, json!({}));
}

#[tokio::test]
async fn unknown_and_missing_targets() {
    let api = Api::new();
    let r = api.call("Frobnicate", json!({})).await;
    r.error("UnknownOperationException", "InvalidAction");
    let r = api.raw(None, CONTENT_TYPE, b"{}".to_vec()).await;
    r.error("UnknownOperationException", "InvalidAction");
    let r = api
        .raw(
            None,
            "application/x-www-form-urlencoded",
            b"Action=ListQueues".to_vec(),
        )
        .await;
    r.error("UnknownOperationException", "InvalidAction");
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .contains("Query protocol"));
    let r = api
        .raw(
            Some("AmazonSQS.AddPermission"),
            CONTENT_TYPE,
            b"{}".to_vec(),
        )
        .await;
    r.error(
        "UnsupportedOperation",
        "AWS.SimpleQueueService.UnsupportedOperation",
    );
}

#[tokio::test]
async fn hostile_bodies_get_sqs_errors() {
    let api = Api::new();
    let url = api.create("q").await;
    let check = |r: Reply, shape: &str, code: &str| r.error(shape, code);
    for body in [&b"{"[..], b"[]", b"\"x\"", b"\xff\xfe", b"{\"QueueUrl\": }"] {
        let r = api
            .raw(Some("AmazonSQS.SendMessage"), CONTENT_TYPE, body.to_vec())
            .await;
        check(r, "InvalidParameterValueException", "InvalidParameterValue");
    }
    let ipv = ("InvalidParameterValueException", "InvalidParameterValue");
    let cases: Vec<(&str, Value, (&str, &str))> = vec![
        (
            "SendMessage",
            json!({"QueueUrl": url}),
            ("MissingRequiredParameterException", "MissingParameter"),
        ),
        (
            "SendMessage",
            json!({"MessageBody": "x"}),
            ("MissingRequiredParameterException", "MissingParameter"),
        ),
        (
            "SendMessage",
            json!({"QueueUrl": 5, "MessageBody": "x"}),
            ipv,
        ),
        (
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": ["x"]}),
            ipv,
        ),
        (
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": "x", "DelaySeconds": 901}),
            ipv,
        ),
        (
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": "x", "DelaySeconds": "5"}),
            ipv,
        ),
        (
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": "x", "MessageAttributes": []}),
            ipv,
        ),
        (
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": "x", "MessageAttributes": {"a": {"DataType": "Binary", "BinaryValue": "!!"}}}),
            ipv,
        ),
        (
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": "x", "MessageAttributes": {"a": {"StringValue": "v"}}}),
            ipv,
        ),
        (
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": "x", "MessageDeduplicationId": "d"}),
            ipv,
        ),
        (
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": "bad \u{1}"}),
            ("InvalidMessageContents", "InvalidMessageContents"),
        ),
        (
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": "x".repeat(262_145)}),
            ipv,
        ),
        (
            "SendMessage",
            json!({"QueueUrl": "http://h/000000000000/nope", "MessageBody": "x"}),
            (
                "QueueDoesNotExist",
                "AWS.SimpleQueueService.NonExistentQueue",
            ),
        ),
        (
            "SendMessage",
            json!({"QueueUrl": "http://h/x/y/z", "MessageBody": "x"}),
            ("InvalidAddress", "InvalidAddress"),
        ),
        (
            "ReceiveMessage",
            json!({"QueueUrl": url, "MaxNumberOfMessages": 11}),
            ipv,
        ),
        (
            "ReceiveMessage",
            json!({"QueueUrl": url, "MaxNumberOfMessages": 0}),
            ipv,
        ),
        (
            "ReceiveMessage",
            json!({"QueueUrl": url, "MaxNumberOfMessages": "ten"}),
            ipv,
        ),
        (
            "ReceiveMessage",
            json!({"QueueUrl": url, "MaxNumberOfMessages": 1.5}),
            ipv,
        ),
        (
            "ReceiveMessage",
            json!({"QueueUrl": url, "WaitTimeSeconds": 21}),
            ipv,
        ),
        (
            "ReceiveMessage",
            json!({"QueueUrl": url, "WaitTimeSeconds": -1}),
            ipv,
        ),
        (
            "ReceiveMessage",
            json!({"QueueUrl": url, "VisibilityTimeout": 43_201}),
            ipv,
        ),
        (
            "ReceiveMessage",
            json!({"QueueUrl": url, "MessageSystemAttributeNames": ["Bogus"]}),
            ("InvalidAttributeName", "InvalidAttributeName"),
        ),
        (
            "DeleteMessage",
            json!({"QueueUrl": url, "ReceiptHandle": "garbage"}),
            ("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid"),
        ),
        (
            "DeleteMessage",
            json!({"QueueUrl": url}),
            ("MissingRequiredParameterException", "MissingParameter"),
        ),
        (
            "ChangeMessageVisibility",
            json!({"QueueUrl": url, "ReceiptHandle": "garbage"}),
            ("MissingRequiredParameterException", "MissingParameter"),
        ),
        ("CreateQueue", json!({"QueueName": "bad name"}), ipv),
        (
            "CreateQueue",
            json!({"QueueName": "jobs.fifo"}),
            (
                "UnsupportedOperation",
                "AWS.SimpleQueueService.UnsupportedOperation",
            ),
        ),
        (
            "CreateQueue",
            json!({"QueueName": "q2", "Attributes": {"VisibilityTimeout": 5}}),
            ipv,
        ),
        (
            "CreateQueue",
            json!({"QueueName": "q2", "Attributes": {"VisibilityTimeout": "-5"}}),
            ("InvalidAttributeValue", "InvalidAttributeValue"),
        ),
        (
            "CreateQueue",
            json!({"QueueName": "q2", "Attributes": {"Nope": "1"}}),
            ("InvalidAttributeName", "InvalidAttributeName"),
        ),
        (
            "CreateQueue",
            json!({"QueueName": "q", "Attributes": {"VisibilityTimeout": "31"}}),
            ("QueueNameExists", "QueueAlreadyExists"),
        ),
        (
            "GetQueueUrl",
            json!({"QueueName": "nope"}),
            (
                "QueueDoesNotExist",
                "AWS.SimpleQueueService.NonExistentQueue",
            ),
        ),
        (
            "GetQueueAttributes",
            json!({"QueueUrl": url, "AttributeNames": ["Nope"]}),
            ("InvalidAttributeName", "InvalidAttributeName"),
        ),
        (
            "SetQueueAttributes",
            json!({"QueueUrl": url}),
            ("MissingRequiredParameterException", "MissingParameter"),
        ),
        ("ListQueues", json!({"MaxResults": 0}), ipv),
        ("ListQueues", json!({"NextToken": "%%%"}), ipv),
        (
            "PurgeQueue",
            json!({"QueueUrl": "http://h/000000000000/nope"}),
            (
                "QueueDoesNotExist",
                "AWS.SimpleQueueService.NonExistentQueue",
            ),
        ),
        (
            "DeleteQueue",
            json!({}),
            ("MissingRequiredParameterException", "MissingParameter"),
        ),
    ];
    for (op, body, (shape, code)) in cases {
        let r = api.call(op, body.clone()).await;
        assert!(
            r.body["__type"] == format!("com.amazonaws.sqs#{shape}"),
            "{op} {body}: {:?}",
            r.body
        );
        r.error(shape, code);
    }
    // Nothing was stored by any of them.
    assert_eq!(api.svc.counts("q").await.unwrap(), crate::Counts::default());
    assert!(api.svc.queue("q2").await.is_err());
}

#[tokio::test]
async fn an_oversized_request_body_is_refused() {
    let api = Api::new();
    let url = api.create("q").await;
    let body = json!({"QueueUrl": url, "MessageBody": "x".repeat(REQUEST_MAX_BYTES + 1)});
    let r = api.call("SendMessage", body).await;
    r.error("InvalidParameterValueException", "InvalidParameterValue");
}

#[tokio::test]
async fn batches() {
    let api = Api::new();
    let url = api.create("q").await;
    let entry = |id: &str, body: &str| json!({"Id": id, "MessageBody": body});
    let r = api
        .call("SendMessageBatch", json!({"QueueUrl": url, "Entries": []}))
        .await;
    r.error(
        "EmptyBatchRequest",
        "AWS.SimpleQueueService.EmptyBatchRequest",
    );
    let r = api.call("SendMessageBatch", json!({"QueueUrl": url})).await;
    r.error(
        "EmptyBatchRequest",
        "AWS.SimpleQueueService.EmptyBatchRequest",
    );
    let eleven: Vec<Value> = (0..11).map(|i| entry(&format!("e{i}"), "x")).collect();
    let r = api
        .call(
            "SendMessageBatch",
            json!({"QueueUrl": url, "Entries": eleven}),
        )
        .await;
    r.error(
        "TooManyEntriesInBatchRequest",
        "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
    );
    let r = api
        .call(
            "SendMessageBatch",
            json!({"QueueUrl": url, "Entries": [entry("a", "x"), entry("a", "y")]}),
        )
        .await;
    r.error(
        "BatchEntryIdsNotDistinct",
        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
    );
    let r = api
        .call(
            "SendMessageBatch",
            json!({"QueueUrl": url, "Entries": [entry("a b", "x")]}),
        )
        .await;
    r.error(
        "InvalidBatchEntryId",
        "AWS.SimpleQueueService.InvalidBatchEntryId",
    );
    let big = "x".repeat(200_000);
    let r = api
        .call(
            "SendMessageBatch",
            json!({"QueueUrl": url, "Entries": [entry("a", &big), entry("b", &big)]}),
        )
        .await;
    r.error(
        "BatchRequestTooLong",
        "AWS.SimpleQueueService.BatchRequestTooLong",
    );
    let r = api
        .call(
            "SendMessageBatch",
            json!({"QueueUrl": "http://h/000000000000/nope", "Entries": [entry("a", "x")]}),
        )
        .await;
    r.error(
        "QueueDoesNotExist",
        "AWS.SimpleQueueService.NonExistentQueue",
    );
    assert_eq!(
        api.svc.counts("q").await.unwrap().visible,
        0,
        "refused batches store nothing"
    );

    // One bad entry fails alone.
    let out = api
        .ok(
            "SendMessageBatch",
            json!({"QueueUrl": url, "Entries": [entry("ok1", "a"), entry("bad", "\u{1}"), entry("ok2", "b")]}),
        )
        .await;
    assert_eq!(out["Successful"].as_array().unwrap().len(), 2);
    assert_eq!(out["Failed"][0]["Id"], "bad");
    assert_eq!(out["Failed"][0]["Code"], "InvalidMessageContents");
    assert_eq!(out["Failed"][0]["SenderFault"], true);

    let got = api
        .ok(
            "ReceiveMessage",
            json!({"QueueUrl": url, "MaxNumberOfMessages": 10}),
        )
        .await;
    let msgs = got["Messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    let vis = api
        .ok(
            "ChangeMessageVisibilityBatch",
            json!({"QueueUrl": url, "Entries": [
                {"Id": "v1", "ReceiptHandle": msgs[0]["ReceiptHandle"], "VisibilityTimeout": 60},
                {"Id": "v2", "ReceiptHandle": "garbage", "VisibilityTimeout": 60},
            ]}),
        )
        .await;
    assert_eq!(vis["Successful"], json!([{"Id": "v1"}]));
    assert_eq!(vis["Failed"][0]["Code"], "ReceiptHandleIsInvalid");
    let del = api
        .ok(
            "DeleteMessageBatch",
            json!({"QueueUrl": url, "Entries": [
                {"Id": "d1", "ReceiptHandle": msgs[0]["ReceiptHandle"]},
                {"Id": "d2", "ReceiptHandle": msgs[1]["ReceiptHandle"]},
                {"Id": "d3", "ReceiptHandle": "garbage"},
            ]}),
        )
        .await;
    assert_eq!(del["Successful"], json!([{"Id": "d1"}, {"Id": "d2"}]));
    assert_eq!(del["Failed"][0]["Id"], "d3");
    assert_eq!(api.svc.counts("q").await.unwrap(), crate::Counts::default());
}

#[tokio::test]
async fn list_queues_pages_with_max_results() {
    let api = Api::new();
    for n in ["a1", "a2", "a3", "b1"] {
        api.create(n).await;
    }
    let page = api
        .ok(
            "ListQueues",
            json!({"QueueNamePrefix": "a", "MaxResults": 2}),
        )
        .await;
    assert_eq!(page["QueueUrls"].as_array().unwrap().len(), 2);
    let token = page["NextToken"].as_str().unwrap();
    let rest = api
        .ok(
            "ListQueues",
            json!({"QueueNamePrefix": "a", "MaxResults": 2, "NextToken": token}),
        )
        .await;
    assert_eq!(
        rest["QueueUrls"],
        json!(["http://127.0.0.1:8790/000000000000/a3"])
    );
    assert!(rest.get("NextToken").is_none());
    let none = api.ok("ListQueues", json!({"QueueNamePrefix": "zz"})).await;
    assert_eq!(none, json!({}));
}

#[tokio::test]
async fn attributes_redrive_and_dead_letter_sources() {
    let api = Api::new();
    let dlq = api.create("dlq").await;
    let arn = "arn:aws:sqs:us-east-1:000000000000:dlq";
    let policy = json!({"deadLetterTargetArn": arn, "maxReceiveCount": 1}).to_string();
    let src = api
        .ok(
            "CreateQueue",
            json!({"QueueName": "src", "Attributes": {"RedrivePolicy": policy, "VisibilityTimeout": "0"}, "tags": {"team": "a"}}),
        )
        .await["QueueUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let attrs = api
        .ok(
            "GetQueueAttributes",
            json!({"QueueUrl": src, "AttributeNames": ["All"]}),
        )
        .await;
    let redrive: Value =
        serde_json::from_str(attrs["Attributes"]["RedrivePolicy"].as_str().unwrap()).unwrap();
    assert_eq!(
        redrive,
        json!({"deadLetterTargetArn": arn, "maxReceiveCount": 1})
    );
    let sources = api
        .ok("ListDeadLetterSourceQueues", json!({"QueueUrl": dlq}))
        .await;
    assert_eq!(sources["queueUrls"], json!([src]));
    let tags = api.ok("ListQueueTags", json!({"QueueUrl": src})).await;
    assert_eq!(tags["Tags"], json!({"team": "a"}));
    api.ok(
        "SendMessage",
        json!({"QueueUrl": src, "MessageBody": "poison"}),
    )
    .await;
    api.ok("ReceiveMessage", json!({"QueueUrl": src})).await;
    assert_eq!(
        api.ok("ReceiveMessage", json!({"QueueUrl": src})).await,
        json!({})
    );
    let dead = api
        .ok(
            "ReceiveMessage",
            json!({"QueueUrl": dlq, "AttributeNames": ["All"]}),
        )
        .await;
    assert_eq!(dead["Messages"][0]["Body"], "poison");
    assert_eq!(
        dead["Messages"][0]["Attributes"]["DeadLetterQueueSourceArn"],
        "arn:aws:sqs:us-east-1:000000000000:src"
    );
    // No attributes asked for: none returned.
    let none = api.ok("GetQueueAttributes", json!({"QueueUrl": src})).await;
    assert_eq!(none, json!({}));
}
