#!/usr/bin/env python3
"""Trigger benchmarks, in one run against one release wisp (issue: built-in triggers).

1. Queue -> function: N messages sent to a queue with an event source mapping (batch 10,
   concurrency 4) to a no-op Python handler that logs, per record, when it started and
   when the message was sent: the lag from SendMessage to handler start (p50, p99). Then
   N messages put in a second queue first and drained by a new mapping: throughput.
2. HTTP route overhead: the same no-op function called alternately through an HTTP route
   (routes listener) and through the Invoke API, sequentially over keep-alive connections;
   reports p50/p99 of both and the difference.

    python3 bench/triggers.py --wisp target/release/wisp [-n 5000] [--calls 3000]

Binds and targets 127.0.0.1 only; stops the server it starts.
"""

import argparse
import base64
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile

import boto3
from botocore.config import Config

KEY, SECRET = "AKIABENCHTRIGGERS000", "bench-secret-bench-secret-bench-secret00"

NOOP = """
import json, os, time
LOG = os.environ.get("LOG")
def handler(event, context):
    now = time.time()
    if "Records" in event and LOG:
        with open(LOG, "a") as f:
            for r in event["Records"]:
                f.write(f"{now} {json.loads(r['body'])['t']}\\n")
        return {}
    return {"statusCode": 200, "body": "ok"} if "rawPath" in event else {"ok": True}
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wisp", required=True)
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--calls", type=int, default=3000)
    args = ap.parse_args()
    port, routes = free_port(), free_port()
    with tempfile.TemporaryDirectory() as data:
        log = os.path.join(data, "lag.log")
        env = dict(os.environ, WISP_ROOT_ACCESS_KEY_ID=KEY, WISP_ROOT_SECRET_ACCESS_KEY=SECRET)
        proc = subprocess.Popen([args.wisp, "serve", "--listen", f"127.0.0.1:{port}", "--routes-listen", f"127.0.0.1:{routes}",
                                 "--url-listen", "127.0.0.1:0", "--data-dir", os.path.join(data, "d")],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            run(args, port, routes, log)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)


def run(args, port, routes, log):
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/wisp/v1/health")
            if c.getresponse().status == 200:
                break
        except OSError:
            time.sleep(0.05)
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=KEY, aws_secret_access_key=SECRET,
              config=Config(retries={"max_attempts": 0}))
    lam, sqs = boto3.client("lambda", **kw), boto3.client("sqs", **kw)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", NOOP)
    lam.create_function(FunctionName="noop", Runtime="python3.11", Role="r", Handler="app.handler",
                        Code={"ZipFile": buf.getvalue()}, Environment={"Variables": {"LOG": log}})

    # 1. Queue -> function.
    url = sqs.create_queue(QueueName="bench")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName="noop", BatchSize=10,
                                    ScalingConfig={"MaximumConcurrency": 4})
    t0 = time.time()
    for start in range(0, args.n, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "MessageBody": json.dumps({"t": time.time()})} for i in range(min(10, args.n - start))])
    sent = time.time()
    while True:
        lines = open(log).read().split("\n") if os.path.exists(log) else []
        lines = [l for l in lines if l]
        if len(lines) >= args.n:
            break
        if time.time() - sent > 300:
            raise SystemExit(f"only {len(lines)} of {args.n} processed")
        time.sleep(0.2)
    starts = [tuple(map(float, l.split())) for l in lines]
    lags = [(s - t) * 1000 for s, t in starts]
    last = max(s for s, _ in starts)
    print(f"| queue -> function, {args.n} messages | value |\n|---|---:|")
    print(f"| sending took | {sent - t0:.2f} s ({args.n / (sent - t0):.0f} msg/s, boto3, one client) |")
    print(f"| end-to-end throughput while sending (bounded by the sender) | {args.n / (last - t0):.0f} msg/s |")
    print(f"| lag send -> handler start, p50 | {pct(lags, 0.5):.1f} ms |")
    print(f"| lag send -> handler start, p99 | {pct(lags, 0.99):.1f} ms |")

    # Consumer throughput alone: the queue is filled first, then the mapping drains it.
    os.remove(log)
    url2 = sqs.create_queue(QueueName="bench-prefilled")["QueueUrl"]
    arn2 = sqs.get_queue_attributes(QueueUrl=url2, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for start in range(0, args.n, 10):
        sqs.send_message_batch(QueueUrl=url2, Entries=[
            {"Id": str(i), "MessageBody": json.dumps({"t": 0})} for i in range(min(10, args.n - start))])
    t1 = time.time()
    lam.create_event_source_mapping(EventSourceArn=arn2, FunctionName="noop", BatchSize=10,
                                    ScalingConfig={"MaximumConcurrency": 4})
    while True:
        done = sum(1 for l in open(log)) if os.path.exists(log) else 0
        if done >= args.n:
            break
        if time.time() - t1 > 300:
            raise SystemExit(f"only {done} of {args.n} drained")
        time.sleep(0.05)
    print(f"| draining a prefilled queue (batch 10, concurrency 4) | {args.n / (time.time() - t1):.0f} msg/s |")

    # 2. HTTP route vs Invoke API.
    body = json.dumps({"Kind": "http", "FunctionName": "noop", "Config": {"Method": "GET", "Path": "/noop"}}).encode()
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    def signed(method, path, data):
        req = AWSRequest(method=method, url=endpoint + path, data=data, headers={"Content-Type": "application/json"})
        SigV4Auth(Credentials(KEY, SECRET), "lambda", "us-east-1").add_auth(req)
        return dict(req.headers.items())

    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("POST", "/wisp/v1/triggers", body=body, headers=signed("POST", "/wisp/v1/triggers", body))
    assert c.getresponse().read() and True
    time.sleep(0.5)
    route = http.client.HTTPConnection("127.0.0.1", routes)
    api = http.client.HTTPConnection("127.0.0.1", port)
    path = "/2015-03-31/functions/noop/invocations"
    t_route, t_api = [], []
    headers = [signed("POST", path, b"{}") for _ in range(args.calls + 100)]
    for i in range(args.calls + 100):
        a = time.perf_counter()
        route.request("GET", "/noop")
        r = route.getresponse()
        r.read()
        b = time.perf_counter()
        api.request("POST", path, body=b"{}", headers=headers[i])
        q = api.getresponse()
        q.read()
        c2 = time.perf_counter()
        assert r.status == 200 and q.status == 200
        if i >= 100:  # warm-up
            t_route.append((b - a) * 1000)
            t_api.append((c2 - b) * 1000)
    print(f"\n| {args.calls} sequential calls | p50 ms | p99 ms |\n|---|---:|---:|")
    print(f"| HTTP route (GET /noop) | {pct(t_route, 0.5):.3f} | {pct(t_route, 0.99):.3f} |")
    print(f"| Invoke API (signed) | {pct(t_api, 0.5):.3f} | {pct(t_api, 0.99):.3f} |")
    print(f"\nroute - invoke at p50: {pct(t_route, 0.5) - pct(t_api, 0.5):+.3f} ms")


if __name__ == "__main__":
    sys.exit(main())
