#!/usr/bin/env python3
"""The seed's order pipeline end to end, on one wisp:

    HTTP route POST /orders -> accept_order -> queue "orders"
      -> (event source mapping) process_order -> receipt in bucket "pipeline-receipts"
      -> (bucket notification) notify

Run it against a running server: `python3 examples/order-pipeline/run.py` (needs boto3).
It finds the server like the wisp CLI does (WISP_ENDPOINT, default http://127.0.0.1:8790;
keys from WISP_ACCESS_KEY_ID/WISP_SECRET_ACCESS_KEY, WISP_ROOT_*, or the nearest
.wisp/credentials.json), deploys everything (idempotently), posts an order, and prints
each hop as it happens.
"""

import io
import json
import os
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

HERE = Path(__file__).resolve().parent
ENDPOINT = os.environ.get("WISP_ENDPOINT", "http://127.0.0.1:8790")
REGION = "us-east-1"


def credentials():
    for a, b in (("WISP_ACCESS_KEY_ID", "WISP_SECRET_ACCESS_KEY"), ("WISP_ROOT_ACCESS_KEY_ID", "WISP_ROOT_SECRET_ACCESS_KEY")):
        if os.environ.get(a) and os.environ.get(b):
            return os.environ[a], os.environ[b]
    dirs = [Path(os.environ["WISP_DATA_DIR"])] if os.environ.get("WISP_DATA_DIR") else []
    dirs += [d / ".wisp" for d in [Path.cwd(), *Path.cwd().parents]]
    for d in dirs:
        f = d / "credentials.json"
        if f.is_file():
            admin = next(k for k in json.loads(f.read_text())["Keys"] if k.get("Admin"))
            return admin["AccessKeyId"], admin["SecretAccessKey"]
    sys.exit("no credentials: set WISP_ACCESS_KEY_ID/WISP_SECRET_ACCESS_KEY or WISP_DATA_DIR")


KEY, SECRET = credentials()


def client(service, **config):
    return boto3.client(service, endpoint_url=ENDPOINT, region_name=REGION, aws_access_key_id=KEY,
                        aws_secret_access_key=SECRET, config=Config(retries={"max_attempts": 3}, **config))


def wisp_api(method, path, body=None):
    data = json.dumps(body).encode() if body is not None else b""
    req = AWSRequest(method=method, url=ENDPOINT + path, data=data, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(KEY, SECRET), "lambda", REGION).add_auth(req)
    r = urllib.request.urlopen(urllib.request.Request(ENDPOINT + path, data=data or None, method=method, headers=dict(req.headers)))
    return json.loads(r.read() or b"null")


def package(module):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.write(HERE / "functions" / f"{module}.py", f"{module}.py")
        z.write(HERE / "functions" / "wispclient.py", "wispclient.py")
    return buf.getvalue()


def deploy(lam, name, env):
    args = dict(Runtime="python3.11", Role="pipeline", Handler=f"{name}.handler", Timeout=15, MemorySize=256,
                Environment={"Variables": env})
    try:
        lam.create_function(FunctionName=name, Code={"ZipFile": package(name)}, **args)
    except lam.exceptions.ResourceConflictException:
        lam.update_function_code(FunctionName=name, ZipFile=package(name))
        lam.update_function_configuration(FunctionName=name, **{k: v for k, v in args.items() if k != "Runtime"})


def main():
    lam, sqs, s3 = client("lambda"), client("sqs"), client("s3", s3={"addressing_style": "path"})
    health = json.loads(urllib.request.urlopen(ENDPOINT + "/wisp/v1/health").read())
    routes = health["Routes"]
    queue_url = sqs.create_queue(QueueName="pipeline-orders", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bucket = "pipeline-receipts"
    try:
        s3.create_bucket(Bucket=bucket)
    except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        pass
    # The functions call the queue and bucket APIs with a key of their own.
    key = wisp_api("POST", "/wisp/v1/keys")
    creds = {"WISP_ENDPOINT": ENDPOINT, "WISP_ACCESS_KEY_ID": key["AccessKeyId"], "WISP_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
    deploy(lam, "accept_order", dict(creds, ORDERS_QUEUE_URL=queue_url))
    deploy(lam, "process_order", dict(creds, RECEIPTS_BUCKET=bucket))
    deploy(lam, "notify", {})
    # Triggers: the route, the queue mapping, the bucket notification (idempotent).
    existing = wisp_api("GET", "/wisp/v1/triggers?FunctionName=accept_order")["Triggers"]
    if not existing:
        wisp_api("POST", "/wisp/v1/triggers", {"Kind": "http", "FunctionName": "accept_order",
                                               "Config": {"Method": "POST", "Path": "/orders"}})
    if not lam.list_event_source_mappings(FunctionName="process_order")["EventSourceMappings"]:
        lam.create_event_source_mapping(EventSourceArn=queue_arn, FunctionName="process_order", BatchSize=10,
                                        FunctionResponseTypes=["ReportBatchItemFailures"])
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"LambdaFunctionConfigurations": [{
        "Id": "receipts", "LambdaFunctionArn": f"arn:aws:lambda:{REGION}:000000000000:function:notify",
        "Events": ["s3:ObjectCreated:*"], "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "receipts/"}]}}}]})

    order_id = f"order-{int(time.time() * 1000)}"
    order = {"order_id": order_id, "order_amount": 100}
    print(f"1. POST {routes}/orders {json.dumps(order)}")
    req = urllib.request.Request(routes + "/orders", data=json.dumps(order).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        print(f"   -> {r.status} {r.read().decode()}")
    deadline = time.time() + 60
    receipt = None
    while time.time() < deadline and receipt is None:
        try:
            receipt = json.loads(s3.get_object(Bucket=bucket, Key=f"receipts/{order_id}.json")["Body"].read())
        except s3.exceptions.NoSuchKey:
            time.sleep(0.2)
    if receipt is None:
        sys.exit("the receipt never arrived")
    print(f"2. process_order (from the queue) wrote s3://{bucket}/receipts/{order_id}.json: {json.dumps(receipt)}")
    while time.time() < deadline:
        records = wisp_api("GET", "/wisp/v1/functions/notify/records?tail=50")["Records"]
        hit = [r for r in records if order_id in r["Logs"]]
        if hit:
            line = next(l for l in hit[0]["Logs"].splitlines() if l.startswith("NOTIFY"))
            print(f"3. notify (bucket notification): {line}")
            print("pipeline OK")
            return 0
        time.sleep(0.2)
    sys.exit("the notification never ran")


if __name__ == "__main__":
    sys.exit(main())
