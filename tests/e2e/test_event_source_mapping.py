"""Queue -> function event source mappings (Lambda's SQS shape): partial batch failures,
redrive to a dead-letter queue, and nothing lost or re-run after a crash."""

import json
import time

import boto3
from botocore.config import Config

from wisp_e2e import ACCESS_KEY, REGION, SECRET_KEY, create_function, lambda_client, read_lines, unique, wait_for

CONSUMER = """
import json, os, random
def handler(event, context):
    failures = []
    with open(os.environ["LOG"], "a") as log:
        for r in event["Records"]:
            n = json.loads(r["body"])["n"]
            fail = random.random() < float(os.environ.get("FAIL_RATE", "0"))
            log.write(("fail" if fail else "ok") + f" {n} {r['messageId']} {r['attributes']['ApproximateReceiveCount']}\\n")
            if fail:
                failures.append({"itemIdentifier": r["messageId"]})
    return {"batchItemFailures": failures}
"""


def sqs_client(endpoint):
    return boto3.client("sqs", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                        aws_secret_access_key=SECRET_KEY, config=Config(retries={"max_attempts": 0}))


def make_queues(sqs, name, visibility="2", max_receive="3"):
    dlq = sqs.create_queue(QueueName=name + "-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    src = sqs.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": visibility,
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive}),
    })["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=src, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return src, arn, dlq


def drain(sqs, url):
    bodies = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            return bodies
        for m in got:
            bodies.append(json.loads(m["Body"])["n"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


def counts(sqs, url):
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


def test_mapping_api_and_partial_batch_failure(server, lam, tmp_path):
    sqs = sqs_client(server.endpoint)
    name = unique("esm")
    src, arn, _ = make_queues(sqs, name, visibility="1", max_receive="100")
    log = tmp_path / "log"
    fn = unique("consumer")
    # Fails every message whose n is a multiple of 5, on its first two receives only.
    create_function(lam, fn, files={"app.py": """
import json, os
def handler(event, context):
    failures = []
    with open(os.environ["LOG"], "a") as log:
        for r in event["Records"]:
            n = json.loads(r["body"])["n"]
            fail = n % 5 == 0 and int(r["attributes"]["ApproximateReceiveCount"]) < 3
            log.write(("fail" if fail else "ok") + f" {n} {r['messageId']}\\n")
            if fail:
                failures.append({"itemIdentifier": r["messageId"]})
    return {"batchItemFailures": failures}
"""}, env={"LOG": str(log)})
    m = lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=10,
                                        FunctionResponseTypes=["ReportBatchItemFailures"])
    assert m["State"] == "Enabled" and m["BatchSize"] == 10 and m["EventSourceArn"] == arn
    assert lam.get_event_source_mapping(UUID=m["UUID"])["FunctionArn"].endswith(f":function:{fn}")
    assert [x["UUID"] for x in lam.list_event_source_mappings(FunctionName=fn)["EventSourceMappings"]] == [m["UUID"]]
    sqs.send_message_batch(QueueUrl=src, Entries=[{"Id": str(i), "MessageBody": json.dumps({"n": i})} for i in range(10)])
    wait_for(lambda: sum(1 for l in read_lines(log) if l.startswith("ok")) == 10, timeout=60, message="all processed")
    lines = read_lines(log)
    # Only the two reported failures were redelivered, each twice, then succeeded.
    fails = sorted(int(l.split()[1]) for l in lines if l.startswith("fail"))
    assert fails == [0, 0, 5, 5], lines
    assert len(lines) == 14, lines
    wait_for(lambda: counts(sqs, src) == 0, timeout=20)
    # Disable, update, delete through the Lambda API.
    u = lam.update_event_source_mapping(UUID=m["UUID"], Enabled=False, BatchSize=5)
    assert u["State"] == "Disabled" and u["BatchSize"] == 5
    sqs.send_message(QueueUrl=src, MessageBody=json.dumps({"n": 99}))
    time.sleep(2)
    assert not any(l.split()[1] == "99" for l in read_lines(log)), "a disabled mapping consumed a message"
    assert lam.delete_event_source_mapping(UUID=m["UUID"])["State"] == "Deleting"
    try:
        lam.get_event_source_mapping(UUID=m["UUID"])
        raise AssertionError("mapping still there")
    except lam.exceptions.ResourceNotFoundException:
        pass
    # Bad mappings are refused.
    for bad in ({"EventSourceArn": "arn:aws:sqs:us-east-1:000000000000:" + unique("nope"), "FunctionName": fn},
                {"EventSourceArn": arn, "FunctionName": fn, "BatchSize": 100},
                {"EventSourceArn": arn, "FunctionName": unique("missing")}):
        try:
            lam.create_event_source_mapping(**bad)
            raise AssertionError(f"accepted {bad}")
        except (lam.exceptions.InvalidParameterValueException, lam.exceptions.ResourceNotFoundException):
            pass


def test_ten_thousand_messages_none_lost_across_a_crash(make_server, tmp_path):
    srv = make_server(name="esm-crash")
    lam, sqs = lambda_client(srv.endpoint), sqs_client(srv.endpoint)
    src, arn, dlq = make_queues(sqs, unique("bulk"))
    log = tmp_path / "log"
    fn = unique("bulk-consumer")
    create_function(lam, fn, files={"app.py": CONSUMER}, env={"LOG": str(log), "FAIL_RATE": "0.1"})
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=fn, BatchSize=10,
                                    FunctionResponseTypes=["ReportBatchItemFailures"],
                                    ScalingConfig={"MaximumConcurrency": 4})
    total = 10_000
    for start in range(0, total, 10):
        sqs.send_message_batch(QueueUrl=src, Entries=[
            {"Id": str(i), "MessageBody": json.dumps({"n": start + i})} for i in range(10)])

    def ok_ns():
        return {int(l.split()[1]) for l in read_lines(log) if l.startswith("ok")}

    wait_for(lambda: len(ok_ns()) >= total // 3, timeout=300, message="a third processed")
    srv.kill9()
    srv.restart()

    def done():
        return counts(sqs, src) == 0 and len(ok_ns()) + counts(sqs, dlq) >= total

    wait_for(done, timeout=600, interval=1.0, message="queue drained")
    dead = drain(sqs, dlq)
    ok = ok_ns()
    # Every message was processed or dead-lettered: none lost.
    assert ok | set(dead) == set(range(total)), (len(ok), len(dead))
    # A deleted message is never delivered again: after a message's success, it shows up
    # again only if the crash came between that success and its delete (at most the
    # batches in flight then: 4 x 10).
    seen_after_ok, first_ok = 0, {}
    for i, line in enumerate(read_lines(log)):
        status, n = line.split()[0], int(line.split()[1])
        if n in first_ok:
            seen_after_ok += 1
        elif status == "ok":
            first_ok[n] = i
    assert seen_after_ok <= 40, seen_after_ok
