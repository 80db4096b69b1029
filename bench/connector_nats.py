#!/usr/bin/env python3
"""NATS JetStream connector benchmark (issue: broker connectors).

Starts its own nats-server (JetStream on, file storage in a temporary directory, bound to
127.0.0.1) and a wisp server, deploys a no-op Python handler that logs, per message, when
its invocation started and when the message was published, and measures:

1. Throughput: N messages published first (JetStream, acknowledged), then a `nats`
   trigger drains them (BatchSize 100, MaximumConcurrency 4): messages/s.
2. Lag: N messages published at a steady rate while the trigger runs (BatchSize 10):
   publish -> handler start, p50/p99.
3. The reference, "the broker's limit" from a client's side: `nats bench` is not in
   Debian, so a plain nats-py durable pull consumer (fetch 400, ack each) drains the same N
   messages: messages/s.

    python3 bench/connector_nats.py --wisp target/release/wisp [-n 20000] [--rate 1000]

Binds and targets 127.0.0.1 only; stops everything it starts (by process group).
"""

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile

import boto3
import nats
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from connector_common import free_port, lines, pct, start, stop, wait_lines, wait_port

KEY, SECRET = "AKIABENCHNATS0000000", "bench-secret-bench-secret-bench-secret00"

NOOP = """
import base64, json, os, time
LOG = os.environ["LOG"]
def handler(event, context):
    now = time.time()
    lines = [f"{now} {json.loads(base64.b64decode(m['data']))['t']}\\n" for m in event["messages"]]
    with open(LOG, "a") as f:
        f.write("".join(lines))
    return {}
"""


async def publish(url, subject, n, rate=0.0):
    nc = await nats.connect(url)
    js = nc.jetstream()
    t0 = time.time()
    pending = []
    for i in range(n):
        if rate:
            due = t0 + i / rate
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
        pending.append(asyncio.ensure_future(js.publish(subject, json.dumps({"t": time.time(), "i": i}).encode())))
        if len(pending) >= 256:
            await asyncio.gather(*pending)
            pending = []
    await asyncio.gather(*pending)
    took = time.time() - t0
    await nc.close()
    return took


async def reference(url, stream, n):
    nc = await nats.connect(url)
    js = nc.jetstream()
    sub = await js.pull_subscribe("", durable="reference", stream=stream)
    seen = 0
    t0 = time.time()
    while seen < n:
        for m in await sub.fetch(400, timeout=5):
            await m.ack()
            seen += 1
    took = time.time() - t0
    await nc.close()
    return took


async def setup(url):
    nc = await nats.connect(url)
    js = nc.jetstream()
    for name in ("PREFILLED", "PACED", "REFERENCE"):
        await js.add_stream(name=name, subjects=[name.lower()])
    await nc.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wisp", required=True)
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--rate", type=float, default=1000.0, help="messages/s for the lag run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        port, api = free_port(), free_port()
        wenv = dict(os.environ, WISP_ROOT_ACCESS_KEY_ID=KEY, WISP_ROOT_SECRET_ACCESS_KEY=SECRET)
        procs = []
        with open(f"{d}/servers.log", "ab") as blog:
            try:
                procs.append(start(["nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", f"{d}/js"],
                                   os.environ, blog))
                wait_port(port, procs[-1], timeout=60)
                procs.append(start([args.wisp, "serve", "--listen", f"127.0.0.1:{api}", "--url-listen", "127.0.0.1:0",
                                    "--routes-listen", "127.0.0.1:0", "--data-dir", f"{d}/wisp"], wenv, blog))
                wait_port(api, procs[-1], timeout=60)
                run(args, d, f"nats://127.0.0.1:{port}", api)
            finally:
                for p in reversed(procs):
                    stop(p)


def run(args, d, url, api):
    endpoint = f"http://127.0.0.1:{api}"
    lam = boto3.client("lambda", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=KEY,
                       aws_secret_access_key=SECRET, config=Config(retries={"max_attempts": 0}))
    log = f"{d}/handled.log"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", NOOP)
    lam.create_function(FunctionName="noop", Runtime="python3.11", Role="r", Handler="app.handler",
                        Code={"ZipFile": buf.getvalue()}, Environment={"Variables": {"LOG": log}})

    def add_trigger(stream, **delivery):
        body = json.dumps({"Kind": "nats", "FunctionName": "noop",
                           "Config": {"Servers": [url], "Stream": stream, **delivery}}).encode()
        req = AWSRequest(method="POST", url=endpoint + "/wisp/v1/triggers", data=body,
                         headers={"Content-Type": "application/json"})
        SigV4Auth(Credentials(KEY, SECRET), "lambda", "us-east-1").add_auth(req)
        r = urllib.request.urlopen(urllib.request.Request(endpoint + "/wisp/v1/triggers", data=body,
                                                          headers=dict(req.headers.items()), method="POST"))
        return json.loads(r.read())["Id"]

    asyncio.run(setup(url))

    # 1. Throughput draining a prefilled stream.
    took = asyncio.run(publish(url, "prefilled", args.n))
    t0 = time.time()
    add_trigger("PREFILLED", BatchSize=100, MaximumConcurrency=4)
    wait_lines(log, args.n)
    drain = time.time() - t0
    os.remove(log)

    # 2. Lag at a steady rate.
    add_trigger("PACED", BatchSize=10, MaximumConcurrency=4)
    time.sleep(1)
    asyncio.run(publish(url, "paced", args.n, rate=args.rate))
    got = wait_lines(log, args.n)
    lags = [(float(s) - float(t)) * 1000 for s, t in (l.split() for l in got)]

    # 3. Reference: a plain client consumer on the same server.
    asyncio.run(publish(url, "reference", args.n))
    ref = asyncio.run(reference(url, "REFERENCE", args.n))

    print(f"| NATS JetStream, {args.n} messages | value |\n|---|---:|")
    print(f"| publishing (nats-py, JetStream, 256 acks in flight) | {args.n / took:.0f} msg/s |")
    print(f"| wisp trigger draining a prefilled stream (batch 100, concurrency 4, no-op handler) | {args.n / drain:.0f} msg/s |")
    print(f"| reference: nats-py pull consumer, fetch 400, ack each, no handler | {args.n / ref:.0f} msg/s |")
    print(f"| lag publish -> handler start at {args.rate:.0f} msg/s (batch 10), p50 | {pct(lags, 0.5):.1f} ms |")
    print(f"| lag publish -> handler start at {args.rate:.0f} msg/s (batch 10), p99 | {pct(lags, 0.99):.1f} ms |")


if __name__ == "__main__":
    sys.exit(main())
