"""wisp's SQS-compatible queues, driven with boto3's `sqs` client against the real
server: every operation, long polling, visibility timeouts, redrive to a dead-letter
queue, purge, hostile input, and durability across kill -9."""
from __future__ import annotations

import hashlib
import http.client
import json
import struct
import threading
import time
import uuid

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from wisp_e2e import ACCESS_KEY, REGION, SECRET_KEY, wait_for

ACCOUNT = "000000000000"
NON_EXISTENT = "AWS.SimpleQueueService.NonExistentQueue"


def sqs_client(endpoint: str, validate: bool = True):
    """boto3 sqs client: retries off, the test keys, long enough reads for 20 s polls.
    validate=False skips botocore's own parameter checks so the server sees bad values."""
    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    )
    return session.client(
        "sqs",
        endpoint_url=endpoint,
        config=Config(
            region_name=REGION,
            retries={"max_attempts": 0},
            read_timeout=60,
            connect_timeout=10,
            max_pool_connections=16,
            parameter_validation=validate,
        ),
    )


def sqs_raw(endpoint: str, target: "str | None", body: bytes, sign: bool = True,
            content_type: str = "application/x-amz-json-1.0") -> "tuple[int, dict, bytes]":
    """A raw POST / as boto3 would send it (signed for service `sqs`), with any body."""
    headers = {"Content-Type": content_type}
    if target is not None:
        headers["X-Amz-Target"] = target
    if sign:
        req = AWSRequest(method="POST", url=endpoint + "/", data=body, headers=headers)
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "sqs", REGION).add_auth(req)
        headers = dict(req.headers.items())
    host, port = endpoint.split("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", "/", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def qname(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def code(e: ClientError) -> str:
    return e.response["Error"]["Code"]


def md5_of_attributes(attributes: dict) -> str:
    """MD5OfMessageAttributes as the SQS Developer Guide defines it."""
    md5 = hashlib.md5()

    def put(b: bytes) -> None:
        md5.update(struct.pack("!I", len(b)))
        md5.update(b)

    for name in sorted(attributes):
        value = attributes[name]
        put(name.encode())
        put(value["DataType"].encode())
        if "StringValue" in value:
            md5.update(b"\x01")
            put(value["StringValue"].encode())
        else:
            md5.update(b"\x02")
            put(value["BinaryValue"])
    return md5.hexdigest()


def counts(sqs, url: str) -> "tuple[int, int, int]":
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return (
        int(a["ApproximateNumberOfMessages"]),
        int(a["ApproximateNumberOfMessagesNotVisible"]),
        int(a["ApproximateNumberOfMessagesDelayed"]),
    )


def receive_all(sqs, url: str, expected: int, timeout: float = 20.0, **kwargs) -> list:
    """Receive until `expected` messages came back (standard queues may return fewer
    than asked per call)."""
    got: list = []

    def more():
        r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, **kwargs)
        got.extend(r.get("Messages", []))
        return len(got) >= expected

    wait_for(more, timeout=timeout, interval=0, message=f"{expected} messages from {url}")
    return got


@pytest.fixture(scope="module")
def sqs(server):
    return sqs_client(server.endpoint)


@pytest.fixture(scope="module")
def sqs_unchecked(server):
    return sqs_client(server.endpoint, validate=False)


@pytest.fixture
def queue(sqs):
    """A fresh queue's URL; deleted afterwards."""
    url = sqs.create_queue(QueueName=qname("q"))["QueueUrl"]
    yield url
    try:
        sqs.delete_queue(QueueUrl=url)
    except ClientError:
        pass


# ------------------------------------------------------------------ queues


def test_queue_lifecycle(server, sqs):
    name = qname("life")
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "45"}, tags={"team": "orders"})["QueueUrl"]
    assert url == f"{server.endpoint}/{ACCOUNT}/{name}"
    # Idempotent with the same attributes (or none); refused with different ones.
    assert sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "45"})["QueueUrl"] == url
    assert sqs.create_queue(QueueName=name)["QueueUrl"] == url
    with pytest.raises(sqs.exceptions.QueueNameExists) as ei:
        sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "46"})
    assert code(ei.value) == "QueueAlreadyExists"

    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url
    assert url in sqs.list_queues(QueueNamePrefix=name)["QueueUrls"]

    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "45"
    assert attrs["QueueArn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
    assert attrs["MessageRetentionPeriod"] == "345600"
    assert attrs["MaximumMessageSize"] == "262144"
    assert attrs["DelaySeconds"] == "0"
    assert attrs["ReceiveMessageWaitTimeSeconds"] == "0"
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert abs(int(attrs["CreatedTimestamp"]) - time.time()) < 120
    only = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    assert list(only) == ["QueueArn"]

    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "10", "DelaySeconds": "2"})
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout", "DelaySeconds"])["Attributes"]
    assert attrs == {"VisibilityTimeout": "10", "DelaySeconds": "2"}

    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "orders"}
    sqs.tag_queue(QueueUrl=url, Tags={"env": "dev"})
    sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"env": "dev"}

    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist) as ei:
        sqs.get_queue_url(QueueName=name)
    assert code(ei.value) == NON_EXISTENT
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=url, MessageBody="x")
    assert url not in sqs.list_queues(QueueNamePrefix=name).get("QueueUrls", [])


def test_list_queues_pages(sqs):
    prefix = qname("page")
    urls = [sqs.create_queue(QueueName=f"{prefix}-{i}")["QueueUrl"] for i in range(5)]
    try:
        seen, token, pages = [], None, 0
        while True:
            kwargs = {"QueueNamePrefix": prefix, "MaxResults": 2}
            if token:
                kwargs["NextToken"] = token
            r = sqs.list_queues(**kwargs)
            seen += r.get("QueueUrls", [])
            pages += 1
            token = r.get("NextToken")
            if not token:
                break
        assert seen == urls and pages == 3
        # The paginator boto3 users reach for works too.
        listed = [u for page in sqs.get_paginator("list_queues").paginate(QueueNamePrefix=prefix, PaginationConfig={"PageSize": 2}) for u in page.get("QueueUrls", [])]
        assert listed == urls
        assert "QueueUrls" not in sqs.list_queues(QueueNamePrefix=qname("none"))
    finally:
        for u in urls:
            sqs.delete_queue(QueueUrl=u)


# ------------------------------------------------------------------ messages


def test_send_receive_delete(sqs, queue):
    attributes = {
        "color": {"DataType": "String", "StringValue": "blue"},
        "count": {"DataType": "Number", "StringValue": "42"},
        "raw": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
        "unit": {"DataType": "String.custom", "StringValue": "kg"},
    }
    body = json.dumps({"order_id": "123", "emoji": "🎉"})
    sent = sqs.send_message(QueueUrl=queue, MessageBody=body, MessageAttributes=attributes)
    assert sent["MD5OfMessageBody"] == hashlib.md5(body.encode()).hexdigest()
    assert sent["MD5OfMessageAttributes"] == md5_of_attributes(attributes)
    assert counts(sqs, queue) == (1, 0, 0)

    r = sqs.receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["All"], WaitTimeSeconds=5,
    )
    [m] = r["Messages"]
    assert m["MessageId"] == sent["MessageId"]
    assert m["Body"] == body
    assert m["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert m["MessageAttributes"] == attributes
    assert m["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert m["Attributes"]["ApproximateReceiveCount"] == "1"
    sent_ms = int(m["Attributes"]["SentTimestamp"])
    assert abs(sent_ms / 1000 - time.time()) < 120
    assert int(m["Attributes"]["ApproximateFirstReceiveTimestamp"]) >= sent_ms
    assert counts(sqs, queue) == (0, 1, 0)

    sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
    assert counts(sqs, queue) == (0, 0, 0)
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0)


def test_message_attribute_filters(sqs, queue):
    sqs.send_message(
        QueueUrl=queue, MessageBody="m",
        MessageAttributes={
            "order.id": {"DataType": "String", "StringValue": "1"},
            "order.total": {"DataType": "Number", "StringValue": "9.5"},
            "trace": {"DataType": "String", "StringValue": "t"},
        },
    )
    [m] = sqs.receive_message(QueueUrl=queue, MessageAttributeNames=["order.*"], VisibilityTimeout=0)["Messages"]
    assert set(m["MessageAttributes"]) == {"order.id", "order.total"}
    [m] = sqs.receive_message(QueueUrl=queue, MessageAttributeNames=["trace"], AttributeNames=["ApproximateReceiveCount"])["Messages"]
    assert set(m["MessageAttributes"]) == {"trace"}
    assert m["Attributes"] == {"ApproximateReceiveCount": "2"}


def test_batches(sqs, queue):
    entries = [{"Id": f"m{i}", "MessageBody": f"body-{i}"} for i in range(10)]
    r = sqs.send_message_batch(QueueUrl=queue, Entries=entries)
    assert sorted(e["Id"] for e in r["Successful"]) == sorted(e["Id"] for e in entries)
    assert r.get("Failed", []) == []
    for e in r["Successful"]:
        assert e["MD5OfMessageBody"] == hashlib.md5(f"body-{e['Id'][1:]}".encode()).hexdigest()

    got = receive_all(sqs, queue, 10)
    assert sorted(m["Body"] for m in got) == sorted(e["MessageBody"] for e in entries)

    # Hide half for longer, make the other half visible again at once.
    vis = sqs.change_message_visibility_batch(
        QueueUrl=queue,
        Entries=[{"Id": f"v{i}", "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0 if i < 5 else 300}
                 for i, m in enumerate(got)],
    )
    assert len(vis["Successful"]) == 10
    again = receive_all(sqs, queue, 5)
    assert {m["MessageId"] for m in again} == {m["MessageId"] for m in got[:5]}

    handles = [m["ReceiptHandle"] for m in again + got[5:]]
    deleted = sqs.delete_message_batch(
        QueueUrl=queue,
        Entries=[{"Id": f"d{i}", "ReceiptHandle": h} for i, h in enumerate(handles[:9])]
        + [{"Id": "bad", "ReceiptHandle": "not-a-handle"}],
    )
    assert len(deleted["Successful"]) == 9
    assert [(f["Id"], f["Code"], f["SenderFault"]) for f in deleted["Failed"]] == [("bad", "ReceiptHandleIsInvalid", True)]
    sqs.delete_message_batch(QueueUrl=queue, Entries=[{"Id": "last", "ReceiptHandle": handles[9]}])
    assert counts(sqs, queue) == (0, 0, 0)

    # A bad entry fails alone.
    r = sqs.send_message_batch(QueueUrl=queue, Entries=[
        {"Id": "ok", "MessageBody": "fine"},
        {"Id": "bad", "MessageBody": "nul \x00 inside"},
    ])
    assert [e["Id"] for e in r["Successful"]] == ["ok"]
    assert [(f["Id"], f["Code"]) for f in r["Failed"]] == [("bad", "InvalidMessageContents")]


def test_batch_limits(sqs, sqs_unchecked, queue):
    def batch_error(entries, client=sqs):
        with pytest.raises(ClientError) as ei:
            client.send_message_batch(QueueUrl=queue, Entries=entries)
        return code(ei.value)

    assert batch_error([{"Id": f"m{i}", "MessageBody": "x"} for i in range(11)]) == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
    assert batch_error([{"Id": "a", "MessageBody": "x"}, {"Id": "a", "MessageBody": "y"}]) == "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"
    assert batch_error([{"Id": "no spaces", "MessageBody": "x"}]) == "AWS.SimpleQueueService.InvalidBatchEntryId"
    assert batch_error([], client=sqs_unchecked) == "AWS.SimpleQueueService.EmptyBatchRequest"
    big = "x" * 150_000
    assert batch_error([{"Id": "a", "MessageBody": big}, {"Id": "b", "MessageBody": big}]) == "AWS.SimpleQueueService.BatchRequestTooLong"
    with pytest.raises(ClientError) as ei:
        sqs.delete_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "ReceiptHandle": "h"} for i in range(11)])
    assert code(ei.value) == "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"
    assert counts(sqs, queue) == (0, 0, 0), "refused batches store nothing"


def test_long_polling_wakes_on_send(sqs, queue):
    result: dict = {}

    def poll():
        start = time.monotonic()
        result["response"] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=20)
        result["elapsed"] = time.monotonic() - start

    t = threading.Thread(target=poll)
    t.start()
    time.sleep(1.0)
    assert t.is_alive(), "the long poll returned before any message was sent"
    sqs.send_message(QueueUrl=queue, MessageBody="wake")
    t.join(timeout=25)
    assert not t.is_alive()
    assert [m["Body"] for m in result["response"]["Messages"]] == ["wake"]
    assert 0.9 <= result["elapsed"] < 5, f"woken by the send, not by the timeout: {result['elapsed']:.2f}s"


def test_long_polling_waits_the_full_time_when_empty(sqs, queue):
    start = time.monotonic()
    r = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=2)
    elapsed = time.monotonic() - start
    assert "Messages" not in r
    assert 1.9 <= elapsed < 6, elapsed
    # The queue's ReceiveMessageWaitTimeSeconds applies when the request sets none.
    sqs.set_queue_attributes(QueueUrl=queue, Attributes={"ReceiveMessageWaitTimeSeconds": "1"})
    start = time.monotonic()
    sqs.receive_message(QueueUrl=queue)
    assert 0.9 <= time.monotonic() - start < 5


def test_visibility_timeout_redelivers(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="job")
    [first] = sqs.receive_message(QueueUrl=queue, VisibilityTimeout=2, AttributeNames=["All"])["Messages"]
    assert first["Attributes"]["ApproximateReceiveCount"] == "1"
    assert "Messages" not in sqs.receive_message(QueueUrl=queue), "hidden while in flight"
    # A long poll is woken when the visibility timeout runs out.
    start = time.monotonic()
    [second] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=10, AttributeNames=["All"])["Messages"]
    assert time.monotonic() - start < 5
    assert second["MessageId"] == first["MessageId"]
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    assert second["ReceiptHandle"] != first["ReceiptHandle"]

    # The first consumer's handle is stale: its delete succeeds but deletes nothing.
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=first["ReceiptHandle"])
    assert counts(sqs, queue) == (0, 1, 0)
    with pytest.raises(ClientError) as ei:
        sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=5)
    assert code(ei.value) == "InvalidParameterValue"

    # The current handle can extend, release and delete.
    sqs.change_message_visibility(QueueUrl=queue, ReceiptHandle=second["ReceiptHandle"], VisibilityTimeout=0)
    [third] = sqs.receive_message(QueueUrl=queue)["Messages"]
    sqs.delete_message(QueueUrl=queue, ReceiptHandle=third["ReceiptHandle"])
    assert counts(sqs, queue) == (0, 0, 0)


def test_delay_seconds(sqs, queue):
    sqs.send_message(QueueUrl=queue, MessageBody="later", DelaySeconds=2)
    assert counts(sqs, queue) == (0, 0, 1)
    assert "Messages" not in sqs.receive_message(QueueUrl=queue)
    start = time.monotonic()
    [m] = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=10)["Messages"]
    assert m["Body"] == "later"
    assert time.monotonic() - start < 5


def test_redrive_to_dead_letter_queue(server, sqs):
    dlq_name, src_name = qname("dlq"), qname("src")
    dlq = sqs.create_queue(QueueName=dlq_name)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "2"})
    src = sqs.create_queue(QueueName=src_name, Attributes={"RedrivePolicy": policy, "VisibilityTimeout": "1"})["QueueUrl"]
    try:
        got_policy = json.loads(sqs.get_queue_attributes(QueueUrl=src, AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"])
        assert got_policy == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}
        assert sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [src]

        sent = sqs.send_message(QueueUrl=src, MessageBody="poison")
        for attempt in (1, 2):
            [m] = sqs.receive_message(QueueUrl=src, WaitTimeSeconds=5, AttributeNames=["All"])["Messages"]
            assert m["Attributes"]["ApproximateReceiveCount"] == str(attempt)
            time.sleep(1.2)  # "fail": let the visibility timeout run out
        # The third receive would exceed maxReceiveCount: the message moves instead.
        assert "Messages" not in sqs.receive_message(QueueUrl=src, WaitTimeSeconds=1)
        [dead] = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=5, MessageSystemAttributeNames=["All"])["Messages"]
        assert dead["MessageId"] == sent["MessageId"]
        assert dead["Body"] == "poison"
        assert dead["Attributes"]["ApproximateReceiveCount"] == "1"
        assert dead["Attributes"]["DeadLetterQueueSourceArn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:{src_name}"
        assert counts(sqs, src) == (0, 0, 0)
    finally:
        sqs.delete_queue(QueueUrl=src)
        sqs.delete_queue(QueueUrl=dlq)


def test_redrive_policy_must_name_an_existing_queue(sqs):
    name = qname("nodlq")
    policy = json.dumps({"deadLetterTargetArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{qname('missing')}", "maxReceiveCount": 3})
    with pytest.raises(ClientError) as ei:
        sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})
    assert code(ei.value) == "InvalidAttributeValue"
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName=name)


def test_purge(sqs, queue):
    sqs.send_message_batch(QueueUrl=queue, Entries=[{"Id": str(i), "MessageBody": str(i)} for i in range(5)])
    sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=2)
    assert sum(counts(sqs, queue)) == 5
    sqs.purge_queue(QueueUrl=queue)
    assert counts(sqs, queue) == (0, 0, 0)
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)
    # The queue itself stays.
    sqs.send_message(QueueUrl=queue, MessageBody="after purge")
    assert counts(sqs, queue)[0] == 1


# ------------------------------------------------------------------ hostile input


def test_hostile_parameters(sqs, sqs_unchecked, queue):
    def err(call, **kwargs) -> ClientError:
        with pytest.raises(ClientError) as ei:
            call(**kwargs)
        return ei.value

    u = sqs_unchecked
    missing = f"http://127.0.0.1:1/{ACCOUNT}/{qname('nope')}"
    cases = [
        (u.receive_message, dict(QueueUrl=queue, MaxNumberOfMessages=11), "InvalidParameterValue"),
        (u.receive_message, dict(QueueUrl=queue, MaxNumberOfMessages=0), "InvalidParameterValue"),
        (u.receive_message, dict(QueueUrl=queue, WaitTimeSeconds=21), "InvalidParameterValue"),
        (u.receive_message, dict(QueueUrl=queue, VisibilityTimeout=43201), "InvalidParameterValue"),
        (u.receive_message, dict(QueueUrl=queue, MaxNumberOfMessages="ten"), "InvalidParameterValue"),
        (u.send_message, dict(QueueUrl=queue, MessageBody="x" * 262_145), "InvalidParameterValue"),
        (u.send_message, dict(QueueUrl=queue, MessageBody="x" * 262_000,
                               MessageAttributes={"pad": {"DataType": "String", "StringValue": "y" * 200}}), "InvalidParameterValue"),
        (u.send_message, dict(QueueUrl=queue, MessageBody="bad \x01 char"), "InvalidMessageContents"),
        (u.send_message, dict(QueueUrl=queue, MessageBody=""), "MissingParameter"),
        (u.send_message, dict(QueueUrl=queue, MessageBody="x", DelaySeconds=901), "InvalidParameterValue"),
        (u.send_message, dict(QueueUrl=queue, MessageBody="x", MessageAttributes={"AWS.reserved": {"DataType": "String", "StringValue": "v"}}), "InvalidParameterValue"),
        (u.send_message, dict(QueueUrl=queue, MessageBody="x", MessageAttributes={"n": {"DataType": "Number", "StringValue": "NaN!"}}), "InvalidParameterValue"),
        (u.send_message, dict(QueueUrl=queue, MessageBody="x", MessageAttributes={f"a{i}": {"DataType": "String", "StringValue": "v"} for i in range(11)}), "InvalidParameterValue"),
        (u.send_message, dict(QueueUrl=missing, MessageBody="x"), NON_EXISTENT),
        (u.send_message, dict(QueueUrl="http://127.0.0.1:1/not/a/queue/url", MessageBody="x"), "InvalidAddress"),
        (u.delete_message, dict(QueueUrl=queue, ReceiptHandle="forged"), "ReceiptHandleIsInvalid"),
        (u.change_message_visibility, dict(QueueUrl=queue, ReceiptHandle="forged", VisibilityTimeout=5), "ReceiptHandleIsInvalid"),
        (u.create_queue, dict(QueueName="bad name!"), "InvalidParameterValue"),
        (u.create_queue, dict(QueueName="x" * 81), "InvalidParameterValue"),
        (u.create_queue, dict(QueueName="jobs.fifo", Attributes={"FifoQueue": "true"}), "AWS.SimpleQueueService.UnsupportedOperation"),
        (u.create_queue, dict(QueueName=qname("bad"), Attributes={"VisibilityTimeout": "43201"}), "InvalidAttributeValue"),
        (u.create_queue, dict(QueueName=qname("bad"), Attributes={"MessageRetentionPeriod": "abc"}), "InvalidAttributeValue"),
        (u.create_queue, dict(QueueName=qname("bad"), Attributes={"NotAnAttribute": "1"}), "InvalidAttributeName"),
        (u.create_queue, dict(QueueName=qname("bad"), Attributes={"RedrivePolicy": "{not json"}), "InvalidAttributeValue"),
        (u.set_queue_attributes, dict(QueueUrl=queue, Attributes={"QueueArn": "arn:aws:sqs:x"}), "InvalidAttributeName"),
        (u.get_queue_attributes, dict(QueueUrl=queue, AttributeNames=["Bogus"]), "InvalidAttributeName"),
        (u.purge_queue, dict(QueueUrl=missing), NON_EXISTENT),
        (u.delete_queue, dict(QueueUrl=missing), NON_EXISTENT),
    ]
    for call, kwargs, expected in cases:
        e = err(call, **kwargs)
        shown = {k: (v[:40] + "...") if isinstance(v, str) and len(v) > 40 else v for k, v in kwargs.items()}
        assert code(e) == expected, f"{call.__name__}({shown}): {e.response['Error']}"
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 403)
        assert e.response["Error"]["Message"], "every error says what was wrong"
    assert counts(sqs, queue) == (0, 0, 0), "nothing refused was stored"
    assert "QueueUrls" not in sqs.list_queues(QueueNamePrefix="bad-")


def test_hostile_raw_requests(server, sqs, queue):
    def call(target, body, **kwargs):
        status, headers, raw = sqs_raw(server.endpoint, target, body, **kwargs)
        return status, headers, json.loads(raw)

    for body in [b"{", b"[]", b"\xff\xfe", b'{"QueueUrl": }', b"null"]:
        status, headers, doc = call("AmazonSQS.SendMessage", body)
        assert status == 400, (body, doc)
        assert doc["__type"] == "com.amazonaws.sqs#InvalidParameterValueException"
        assert headers["x-amzn-query-error"] == "InvalidParameterValue;Sender"

    wrong_types = [
        {"QueueUrl": queue, "MessageBody": 5},
        {"QueueUrl": [queue], "MessageBody": "x"},
        {"QueueUrl": queue, "MessageBody": "x", "DelaySeconds": "1"},
        {"QueueUrl": queue, "MessageBody": "x", "MessageAttributes": {"a": "b"}},
        {"QueueUrl": queue, "MessageBody": "x", "MessageAttributes": {"a": {"DataType": "Binary", "BinaryValue": "***"}}},
    ]
    for body in wrong_types:
        status, headers, doc = call("AmazonSQS.SendMessage", json.dumps(body).encode())
        assert status == 400 and headers["x-amzn-query-error"].startswith("InvalidParameterValue;"), (body, doc)

    status, headers, doc = call("AmazonSQS.Frobnicate", b"{}")
    assert status == 400 and headers["x-amzn-query-error"] == "InvalidAction;Sender", doc
    status, headers, doc = call("AmazonSQS.GetQueueUrl", json.dumps({"QueueName": qname("nope")}).encode())
    assert (status, doc["__type"]) == (400, "com.amazonaws.sqs#QueueDoesNotExist")
    assert headers["x-amzn-query-error"] == f"{NON_EXISTENT};Sender"
    status, headers, doc = call("AmazonSQS.SendMessage", json.dumps({"QueueUrl": queue}).encode())
    assert status == 400 and headers["x-amzn-query-error"] == "MissingParameter;Sender"

    assert counts(sqs, queue) == (0, 0, 0)
    status, _, _ = call("AmazonSQS.ListQueues", b"{}")
    assert status == 200, "the server is fine after all that"


def test_unsigned_requests_are_refused(server, sqs):
    name = qname("unsigned")
    status, _, _ = sqs_raw(server.endpoint, "AmazonSQS.CreateQueue", json.dumps({"QueueName": name}).encode(), sign=False)
    assert status in (401, 403)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName=name)


# ------------------------------------------------------------------ durability


def test_messages_survive_kill_9(make_server):
    srv = make_server(name="queues-kill9")
    sqs = sqs_client(srv.endpoint)
    hidden_s = 8
    url = sqs.create_queue(QueueName="durable", Attributes={"VisibilityTimeout": str(hidden_s)})["QueueUrl"]
    sent = {}
    for i in range(20):
        r = sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
        sent[r["MessageId"]] = f"m{i}"
    in_flight = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=5)["Messages"]
    received_at = time.monotonic()
    assert len(in_flight) == 5
    inflight_ids = {m["MessageId"] for m in in_flight}

    srv.kill9()
    srv.start()
    sqs = sqs_client(srv.endpoint)
    url = sqs.get_queue_url(QueueName="durable")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"]
    assert attrs["VisibilityTimeout"] == str(hidden_s)
    visible, not_visible, _ = counts(sqs, url)
    assert visible + not_visible == 20, "every acknowledged message is still there"

    # Receive everything: the 15 that were waiting at once, the 5 that were in flight
    # only once their visibility timeout (counted from before the crash) has passed.
    got: dict = {}

    def more():
        r = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                VisibilityTimeout=120, AttributeNames=["ApproximateReceiveCount"])
        for m in r.get("Messages", []):
            assert m["MessageId"] not in got, "delivered twice while hidden"
            got[m["MessageId"]] = (m, time.monotonic() - received_at)
        return len(got) >= 20

    wait_for(more, timeout=60, interval=0, message="all 20 messages after the restart")
    assert set(got) == set(sent)
    assert {m["Body"] for m, _ in got.values()} == set(sent.values())
    for mid, (m, after_s) in got.items():
        if mid in inflight_ids:
            assert m["Attributes"]["ApproximateReceiveCount"] == "2"
            assert after_s >= hidden_s - 0.5, f"in-flight message visible again after {after_s:.1f}s"
        else:
            assert m["Attributes"]["ApproximateReceiveCount"] == "1"

    # Handles from before the crash are stale now: deleting with them deletes nothing.
    for m in in_flight:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    assert counts(sqs, url) == (0, 20, 0)
    back = [got[mid][0] for mid in inflight_ids]
    sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(back)])
    assert counts(sqs, url) == (0, 15, 0)
