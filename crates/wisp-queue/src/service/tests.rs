use super::*;
use crate::message::MessageAttributeValue;
use crate::ErrorKind;

fn service() -> (tempfile::TempDir, Arc<QueueService>) {
    let dir = tempfile::tempdir().unwrap();
    let svc = QueueService::open(&dir.path().join("queues.db"), QueueConfig::default()).unwrap();
    (dir, svc)
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn create(svc: &QueueService, name: &str, pairs: &[(&str, &str)]) {
    svc.create_queue(name, &attrs(pairs), BTreeMap::new())
        .await
        .unwrap();
}

#[tokio::test]
async fn long_poll_wakes_on_send() {
    let (_d, svc) = service();
    create(&svc, "q", &[]).await;
    let waiter = {
        let svc = svc.clone();
        tokio::spawn(async move {
            let start = std::time::Instant::now();
            let got = svc
                .receive_wait("q", 1, None, Duration::from_secs(10))
                .await
                .unwrap();
            (got, start.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    svc.send("q", "wake up", MessageAttributes::new())
        .await
        .unwrap();
    let (got, elapsed) = waiter.await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "wake up");
    assert!(
        elapsed < Duration::from_secs(3),
        "woken, not timed out: {elapsed:?}"
    );
}

#[tokio::test]
async fn long_poll_ends_empty_after_the_wait() {
    let (_d, svc) = service();
    create(&svc, "q", &[]).await;
    let start = std::time::Instant::now();
    let got = svc
        .receive_wait("q", 1, None, Duration::from_millis(700))
        .await
        .unwrap();
    assert!(got.is_empty());
    let elapsed = start.elapsed();
    assert!(elapsed >= Duration::from_millis(650), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[tokio::test]
async fn long_poll_wakes_when_a_hidden_message_becomes_visible() {
    let (_d, svc) = service();
    create(&svc, "q", &[]).await;
    svc.send("q", "m", MessageAttributes::new()).await.unwrap();
    assert_eq!(svc.receive("q", 1, Some(1)).await.unwrap().len(), 1);
    let start = std::time::Instant::now();
    let got = svc
        .receive_wait("q", 1, None, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].receive_count, 2);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn deleting_a_queue_ends_its_long_polls() {
    let (_d, svc) = service();
    create(&svc, "q", &[]).await;
    let waiter = {
        let svc = svc.clone();
        tokio::spawn(async move {
            svc.receive_wait("q", 1, None, Duration::from_secs(15))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    svc.delete_queue("q").await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(3), waiter)
        .await
        .expect("woken")
        .unwrap();
    assert_eq!(result.unwrap_err().kind, ErrorKind::QueueDoesNotExist);
}

#[tokio::test]
async fn dead_lettered_messages_wake_the_dead_letter_queue() {
    let (_d, svc) = service();
    create(&svc, "dlq", &[]).await;
    let policy =
        r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":1}"#;
    create(
        &svc,
        "src",
        &[("RedrivePolicy", policy), ("VisibilityTimeout", "0")],
    )
    .await;
    svc.send("src", "poison", MessageAttributes::new())
        .await
        .unwrap();
    assert_eq!(svc.receive("src", 1, None).await.unwrap().len(), 1);
    let waiter = {
        let svc = svc.clone();
        tokio::spawn(async move {
            svc.receive_wait("dlq", 1, None, Duration::from_secs(10))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(svc.receive("src", 1, None).await.unwrap().is_empty());
    let got = tokio::time::timeout(Duration::from_secs(3), waiter)
        .await
        .expect("woken")
        .unwrap()
        .unwrap();
    assert_eq!(got[0].body, "poison");
    let record = svc.lambda_record("dlq", &got[0]);
    assert_eq!(
        record["attributes"]["DeadLetterQueueSourceArn"],
        "arn:aws:sqs:us-east-1:000000000000:src"
    );
}

#[tokio::test]
async fn bounds_are_checked_before_anything_is_stored() {
    let (_d, svc) = service();
    create(&svc, "q", &[]).await;
    let too_big = "x".repeat(MESSAGE_MAX_BYTES + 1);
    let err = svc
        .send("q", &too_big, MessageAttributes::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidParameterValue);
    // Body plus attributes counts.
    let mut a = MessageAttributes::new();
    a.insert("k".into(), MessageAttributeValue::string("v"));
    let err = svc
        .send("q", &"x".repeat(MESSAGE_MAX_BYTES - 2), a)
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidParameterValue);
    for (max, vt) in [(0, None), (11, None), (1, Some(43_201))] {
        assert_eq!(
            svc.receive("q", max, vt).await.unwrap_err().kind,
            ErrorKind::InvalidParameterValue
        );
    }
    assert_eq!(
        svc.receive_wait("q", 1, None, Duration::from_secs(21))
            .await
            .unwrap_err()
            .kind,
        ErrorKind::InvalidParameterValue
    );
    assert_eq!(svc.counts("q").await.unwrap(), Counts::default());
    assert_eq!(
        svc.send("nope", "x", MessageAttributes::new())
            .await
            .unwrap_err()
            .kind,
        ErrorKind::QueueDoesNotExist
    );
}

#[tokio::test]
async fn queue_attributes() {
    let (_d, svc) = service();
    create(
        &svc,
        "q",
        &[("VisibilityTimeout", "45"), ("DelaySeconds", "0")],
    )
    .await;
    // Same values: idempotent. Different: refused.
    create(&svc, "q", &[("VisibilityTimeout", "45")]).await;
    let err = svc
        .create_queue("q", &attrs(&[("VisibilityTimeout", "46")]), BTreeMap::new())
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::QueueNameExists);
    svc.send("q", "a", MessageAttributes::new()).await.unwrap();
    let all = svc.get_attributes("q", &["All".into()]).await.unwrap();
    assert_eq!(all["VisibilityTimeout"], "45");
    assert_eq!(all["ApproximateNumberOfMessages"], "1");
    assert_eq!(all["ApproximateNumberOfMessagesNotVisible"], "0");
    assert_eq!(all["QueueArn"], "arn:aws:sqs:us-east-1:000000000000:q");
    assert_eq!(all["MaximumMessageSize"], "262144");
    assert_eq!(all["MessageRetentionPeriod"], "345600");
    assert!(!all.contains_key("RedrivePolicy"));
    let some = svc.get_attributes("q", &["QueueArn".into()]).await.unwrap();
    assert_eq!(some.keys().collect::<Vec<_>>(), ["QueueArn"]);
    assert_eq!(
        svc.get_attributes("q", &["Nope".into()])
            .await
            .unwrap_err()
            .kind,
        ErrorKind::InvalidAttributeName
    );
    svc.set_attributes("q", &attrs(&[("VisibilityTimeout", "5")]))
        .await
        .unwrap();
    // All or nothing.
    let err = svc
        .set_attributes(
            "q",
            &attrs(&[("DelaySeconds", "3"), ("VisibilityTimeout", "x")]),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidAttributeValue);
    let now = svc.get_attributes("q", &["All".into()]).await.unwrap();
    assert_eq!(
        (
            now["VisibilityTimeout"].as_str(),
            now["DelaySeconds"].as_str()
        ),
        ("5", "0")
    );
    assert_eq!(
        svc.queue_name_from_arn("arn:aws:sqs:us-east-1:000000000000:q")
            .await
            .unwrap(),
        "q"
    );
    assert_eq!(
        svc.queue_name_from_arn("arn:aws:sqs:us-east-1:000000000000:gone")
            .await
            .unwrap_err()
            .kind,
        ErrorKind::QueueDoesNotExist
    );
}

#[tokio::test]
async fn lambda_records_have_lambdas_shape() {
    let (_d, svc) = service();
    create(&svc, "q", &[]).await;
    let mut a = MessageAttributes::new();
    a.insert("color".into(), MessageAttributeValue::string("blue"));
    a.insert(
        "raw".into(),
        MessageAttributeValue::binary(b"\x00\x01".to_vec()),
    );
    let id = svc.send("q", "{\"n\":1}", a).await.unwrap();
    let m = svc.receive("q", 1, None).await.unwrap().remove(0);
    let r = svc.lambda_record("q", &m);
    assert_eq!(r["messageId"], id);
    assert_eq!(r["receiptHandle"], m.receipt_handle);
    assert_eq!(r["body"], "{\"n\":1}");
    assert_eq!(r["eventSource"], "aws:sqs");
    assert_eq!(r["eventSourceARN"], "arn:aws:sqs:us-east-1:000000000000:q");
    assert_eq!(r["awsRegion"], "us-east-1");
    assert_eq!(r["attributes"]["ApproximateReceiveCount"], "1");
    assert_eq!(r["messageAttributes"]["color"]["stringValue"], "blue");
    assert_eq!(r["messageAttributes"]["color"]["dataType"], "String");
    assert_eq!(r["messageAttributes"]["raw"]["binaryValue"], "AAE=");
    assert_eq!(r["md5OfBody"], m.md5_of_body);
    assert!(r["md5OfMessageAttributes"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn competing_consumers_each_get_a_message_once() {
    let (_d, svc) = service();
    create(&svc, "q", &[("VisibilityTimeout", "300")]).await;
    let sends: Vec<_> = (0..200)
        .map(|i| {
            let svc = svc.clone();
            tokio::spawn(async move {
                svc.send("q", &format!("m{i}"), MessageAttributes::new())
                    .await
                    .unwrap()
            })
        })
        .collect();
    let consumers: Vec<_> = (0..8)
        .map(|_| {
            let svc = svc.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = svc
                        .receive_wait("q", 10, None, Duration::from_millis(500))
                        .await
                        .unwrap();
                    if batch.is_empty() {
                        return got;
                    }
                    got.extend(batch.into_iter().map(|m| m.message_id));
                }
            })
        })
        .collect();
    let mut sent = std::collections::HashSet::new();
    for s in sends {
        sent.insert(s.await.unwrap());
    }
    let mut received = Vec::new();
    for c in consumers {
        received.extend(c.await.unwrap());
    }
    let unique: std::collections::HashSet<_> = received.iter().cloned().collect();
    assert_eq!(unique.len(), received.len(), "no message delivered twice");
    assert_eq!(unique, sent);
}
