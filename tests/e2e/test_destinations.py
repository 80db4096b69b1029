"""Where asynchronous results go: event invoke config (retries, age), destinations on
success and failure with Lambda's record shape, dead letters and redrive."""

import json

from wisp_e2e import create_function, http_request, read_lines, unique, wait_for

WORKER = """
import json, os
def handler(event, context):
    with open(os.environ["RUNS"], "a") as f:
        f.write(json.dumps(event) + "\\n")
    if event.get("fail"):
        raise ValueError("order " + str(event.get("id")) + " failed")
    return {"handled": event.get("id")}
"""

SINK = """
import json, os
def handler(event, context):
    with open(os.environ["SINK"], "a") as f:
        f.write(json.dumps(event) + "\\n")
"""


def arn(name):
    return f"arn:aws:lambda:us-east-1:000000000000:function:{name}"


def setup(lam, tmp_path):
    worker, sink = unique("worker"), unique("sink")
    runs, received = tmp_path / "runs.jsonl", tmp_path / "sink.jsonl"
    create_function(lam, worker, files={"app.py": WORKER}, env={"RUNS": str(runs)})
    create_function(lam, sink, files={"app.py": SINK}, env={"SINK": str(received)})
    return worker, sink, runs, received


def test_destinations_receive_lambda_records(lam, tmp_path):
    worker, sink, runs, received = setup(lam, tmp_path)
    cfg = lam.put_function_event_invoke_config(
        FunctionName=worker,
        MaximumRetryAttempts=0,
        DestinationConfig={"OnSuccess": {"Destination": arn(sink)}, "OnFailure": {"Destination": arn(sink)}},
    )
    assert cfg["MaximumRetryAttempts"] == 0 and cfg["FunctionArn"].endswith(f"{worker}:$LATEST")
    assert lam.invoke(FunctionName=worker, InvocationType="Event", Payload=json.dumps({"id": 1, "fail": True}))["StatusCode"] == 202
    assert lam.invoke(FunctionName=worker, InvocationType="Event", Payload=json.dumps({"id": 2}))["StatusCode"] == 202
    wait_for(lambda: len(read_lines(received)) >= 2, timeout=60, message="destination records")
    records = {json.loads(line)["requestPayload"]["id"]: json.loads(line) for line in read_lines(received)}
    failed, ok = records[1], records[2]
    assert failed["version"] == "1.0"
    assert failed["requestContext"]["condition"] == "RetriesExhausted"
    assert failed["requestContext"]["approximateInvokeCount"] == 1
    assert failed["requestContext"]["functionArn"] == arn(worker) + ":$LATEST"
    assert failed["requestPayload"] == {"id": 1, "fail": True}
    assert failed["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert failed["responsePayload"]["errorType"] == "ValueError"
    assert failed["responsePayload"]["errorMessage"] == "order 1 failed"
    assert ok["requestContext"]["condition"] == "Success"
    assert ok["responsePayload"] == {"handled": 2}
    assert "functionError" not in ok["responseContext"]
    # MaximumRetryAttempts=0: the failing event ran once.
    assert sum(1 for line in read_lines(runs) if json.loads(line)["id"] == 1) == 1


def test_dead_letters_and_redrive(server, lam, tmp_path):
    worker, _, runs, _ = setup(lam, tmp_path)
    lam.put_function_event_invoke_config(FunctionName=worker, MaximumRetryAttempts=1)
    lam.invoke(FunctionName=worker, InvocationType="Event", Payload=json.dumps({"id": 7, "fail": True}))

    def letters():
        status, _, body = http_request(server.endpoint, "GET", f"/wisp/v1/functions/{worker}/dead-letters")
        assert status == 200, body
        return json.loads(body)["DeadLetters"]

    wait_for(lambda: len(letters()) == 1, timeout=60, message="dead letter")
    assert len(read_lines(runs)) == 2  # one try and one retry
    letter = letters()[0]
    assert letter["Payload"] == {"id": 7, "fail": True} and letter["Attempts"] == 2 and letter["Error"] == "ValueError"
    # Redrive sends it back for a fresh set of attempts.
    status, _, body = http_request(server.endpoint, "POST", f"/wisp/v1/functions/{worker}/redrive")
    assert status == 200 and json.loads(body)["Redriven"] == 1, body
    wait_for(lambda: len(read_lines(runs)) == 4 and len(letters()) == 1, timeout=60, message="redriven runs")


def test_event_invoke_config_api(server, lam, tmp_path):
    worker, sink, _, _ = setup(lam, tmp_path)
    lam.put_function_event_invoke_config(FunctionName=worker, MaximumRetryAttempts=1, MaximumEventAgeInSeconds=120)
    lam.update_function_event_invoke_config(FunctionName=worker, DestinationConfig={"OnFailure": {"Destination": arn(sink)}})
    got = lam.get_function_event_invoke_config(FunctionName=worker)
    assert got["MaximumRetryAttempts"] == 1 and got["MaximumEventAgeInSeconds"] == 120
    assert got["DestinationConfig"]["OnFailure"]["Destination"] == arn(sink)
    assert len(lam.list_function_event_invoke_configs(FunctionName=worker)["FunctionEventInvokeConfigs"]) == 1
    lam.delete_function_event_invoke_config(FunctionName=worker)
    try:
        lam.get_function_event_invoke_config(FunctionName=worker)
        raise AssertionError("config still there")
    except lam.exceptions.ResourceNotFoundException:
        pass
    # Out-of-range values, unknown destinations and fields are refused (raw: botocore
    # would refuse some of these itself).
    path = f"/2019-09-25/functions/{worker}/event-invoke-config"
    for body in ({"MaximumRetryAttempts": 5}, {"MaximumEventAgeInSeconds": 10},
                 {"DestinationConfig": {"OnFailure": {"Destination": arn(unique("nobody"))}}},
                 {"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sns:us-east-1:000000000000:topic"}}},
                 {"Colour": "red"}):
        status, headers, raw = http_request(server.endpoint, "PUT", path, body)
        assert status in (400, 404), (body, raw)
        assert headers["x-amzn-errortype"] in ("InvalidParameterValueException", "ResourceNotFoundException"), raw


def test_queue_destination_and_dead_letter_queue(server, lam, tmp_path):
    """A queue can be a destination (it receives the record) or a function's dead-letter
    queue (DeadLetterConfig: it receives the event itself)."""
    import boto3
    from botocore.config import Config

    from wisp_e2e import ACCESS_KEY, REGION, SECRET_KEY

    sqs = boto3.client("sqs", endpoint_url=server.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                       aws_secret_access_key=SECRET_KEY, config=Config(retries={"max_attempts": 0}))

    def queue(name):
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        return url, sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def one(url):
        def got():
            return sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=1).get("Messages")
        return json.loads(wait_for(got, timeout=60, message="a message")[0]["Body"])

    dest_url, dest_arn = queue(unique("dest"))
    dlq_url, dlq_arn = queue(unique("dlq"))
    worker, _, _, _ = setup(lam, tmp_path)
    lam.put_function_event_invoke_config(FunctionName=worker, MaximumRetryAttempts=0,
                                         DestinationConfig={"OnSuccess": {"Destination": dest_arn}})
    lam.invoke(FunctionName=worker, InvocationType="Event", Payload=json.dumps({"id": 3}))
    rec = one(dest_url)
    assert rec["requestContext"]["condition"] == "Success" and rec["responsePayload"] == {"handled": 3}

    # No failure destination, but a dead-letter queue: the failed event lands there.
    lam.update_function_configuration(FunctionName=worker, DeadLetterConfig={"TargetArn": dlq_arn})
    lam.invoke(FunctionName=worker, InvocationType="Event", Payload=json.dumps({"id": 4, "fail": True}))
    assert one(dlq_url) == {"id": 4, "fail": True}
    # ... and is not also kept as a dead letter in wisp.
    status, _, body = http_request(server.endpoint, "GET", f"/wisp/v1/functions/{worker}/dead-letters")
    assert json.loads(body)["DeadLetters"] == []
    # A destination queue that does not exist is refused.
    status, headers, raw = http_request(server.endpoint, "PUT", f"/2019-09-25/functions/{worker}/event-invoke-config",
                                        {"DestinationConfig": {"OnFailure": {"Destination": dest_arn + "-missing"}}})
    assert status == 400 and headers["x-amzn-errortype"] == "InvalidParameterValueException", raw
