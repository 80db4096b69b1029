#!/usr/bin/env python3
"""Redis Streams connector benchmark (issue 6): messages/s through a no-op handler and the
lag from XADD to handler start (p50, p99), next to what a plain client consuming the same
stream achieves on the same redis-server ("the broker's limit" for a consumer group).

1. lag: a trigger (BatchSize 100, window 0) on an empty stream; N entries added at a steady
   pace (--rate per second), each carrying its XADD time; the handler logs when it started.
2. throughput: N entries added first, then a trigger (BatchSize 500, MaximumConcurrency 4)
   drains them; time from trigger creation to the last entry handled.
3. reference: redis-py draining the same N entries with XREADGROUP COUNT 500 + XACK (no
   function at all), and redis-benchmark's XADD rate.

    python3 bench/connector_redis.py --wisp target/release/wisp [-n 20000] [--rate 2000]

Needs redis-server/redis-benchmark (Debian redis-server, redis-tools) and the test venv's
boto3 + redis. Binds and targets 127.0.0.1 only; stops what it starts.
"""
import argparse
import base64
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile

import boto3
import redis
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from connector_common import free_port, lines, pct, wait_port
import http.client

KEY, SECRET = "AKIABENCHREDIS000000", "bench-secret-bench-secret-bench-secret00"

NOOP = """
import base64, json, os, time
LOG = os.environ["LOG"]
def handler(event, context):
    now = time.time()
    lines = []
    for r in event.get("records", []):
        body = json.loads(base64.b64decode(r["fields"]["data"]))
        lines.append(f"{now} {body['t']}\\n")
    with open(LOG, "a") as f:
        f.write("".join(lines))
    return {}
"""


def add_trigger(port, config):
    body = json.dumps({"Kind": "redis", "FunctionName": "noop", "Config": config}).encode()
    req = AWSRequest(method="POST", url=f"http://127.0.0.1:{port}/wisp/v1/triggers", data=body,
                     headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(KEY, SECRET), "lambda", "us-east-1").add_auth(req)
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("POST", "/wisp/v1/triggers", body=body, headers=dict(req.headers.items()))
    r = c.getresponse()
    out = r.read()
    assert r.status == 201, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wisp", required=True)
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--rate", type=int, default=2000)
    args = ap.parse_args()
    rport, wport = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        rproc = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--dir", tmp,
                                  "--save", "", "--appendonly", "no"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        env = dict(os.environ, WISP_ROOT_ACCESS_KEY_ID=KEY, WISP_ROOT_SECRET_ACCESS_KEY=SECRET)
        wproc = subprocess.Popen([args.wisp, "serve", "--listen", f"127.0.0.1:{wport}", "--data-dir",
                                  os.path.join(tmp, "wisp")], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_port(rport)
            wait_port(wport)
            run(args, rport, wport, tmp)
        finally:
            for p in (wproc, rproc):
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(30)


def run(args, rport, wport, tmp):
    r = redis.Redis(port=rport)
    log = os.path.join(tmp, "lag.log")
    kw = dict(endpoint_url=f"http://127.0.0.1:{wport}", region_name="us-east-1", aws_access_key_id=KEY,
              aws_secret_access_key=SECRET, config=Config(retries={"max_attempts": 0}))
    lam = boto3.client("lambda", **kw)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", NOOP)
    lam.create_function(FunctionName="noop", Runtime="python3.11", Role="r", Handler="app.handler",
                        Code={"ZipFile": buf.getvalue()}, Environment={"Variables": {"LOG": log}})
    url = f"redis://127.0.0.1:{rport}/0"

    # 1. Lag at a steady rate.
    add_trigger(wport, {"Url": url, "Stream": "lag", "Group": "wisp", "BatchSize": 100})
    time.sleep(1.0)
    t0 = time.time()
    per_tick = max(1, args.rate // 100)
    sent = 0
    while sent < args.n:
        p = r.pipeline(transaction=False)
        for _ in range(min(per_tick, args.n - sent)):
            p.xadd("lag", {"data": json.dumps({"t": time.time()})})
            sent += 1
        p.execute()
        next_tick = t0 + sent / args.rate
        time.sleep(max(0.0, next_tick - time.time()))
    while len(lines(log)) < args.n:
        time.sleep(0.1)
    got = [tuple(map(float, l.split())) for l in lines(log)]
    lags = [(s - t) * 1000 for s, t in got]
    print(f"| redis: {args.n} entries at {args.rate}/s, no-op handler | value |\n|---|---:|")
    print(f"| lag XADD -> handler start, p50 | {pct(lags, 0.5):.1f} ms |")
    print(f"| lag XADD -> handler start, p99 | {pct(lags, 0.99):.1f} ms |")

    # 2. Draining a prefilled stream.
    os.remove(log)
    for start in range(0, args.n, 1000):
        p = r.pipeline(transaction=False)
        for _ in range(min(1000, args.n - start)):
            p.xadd("drain", {"data": json.dumps({"t": 0})})
        p.execute()
    t1 = time.time()
    add_trigger(wport, {"Url": url, "Stream": "drain", "Group": "wisp", "BatchSize": 500,
                        "MaximumConcurrency": 4})
    while len(lines(log)) < args.n:
        time.sleep(0.02)
    wisp_rate = args.n / (time.time() - t1)
    print(f"| wisp draining a prefilled stream (batch 500, concurrency 4) | {wisp_rate:.0f} msg/s |")

    # 3. The same with a plain client and no function: the consumer-group limit.
    r.xgroup_create("drain", "plain", id="0")
    t2 = time.time()
    done = 0
    while done < args.n:
        got = r.xreadgroup("plain", "c1", {"drain": ">"}, count=500)
        ids = [eid for _, entries in got for eid, _ in entries]
        for _, entries in got:
            for _, fields in entries:
                base64.b64encode(fields[b"data"])  # what wisp does per value, at least
        r.xack("drain", "plain", *ids)
        done += len(ids)
    plain = args.n / (time.time() - t2)
    print(f"| redis-py XREADGROUP COUNT 500 + XACK, no function (reference) | {plain:.0f} msg/s |")
    out = subprocess.run(["redis-benchmark", "-p", str(rport), "-n", "100000", "-q", "XADD", "bench", "*", "data",
                          "0123456789"], capture_output=True, text=True, timeout=120).stdout
    m = re.search(r"([\d.]+) requests per second", out)
    print(f"| redis-benchmark XADD (50 clients) | {float(m.group(1)):.0f} req/s |" if m else out)
    print(f"\nwisp reaches {100 * wisp_rate / plain:.0f}% of the plain consumer's rate.")


if __name__ == "__main__":
    sys.exit(main())
