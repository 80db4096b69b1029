#!/usr/bin/env python3
"""Kafka connector benchmark (issue 6): messages/s through a no-op handler and the lag from
produce to handler start (p50, p99), next to what a plain librdkafka consumer (no function)
gets from the same tansu broker: "the broker's limit" for one consumer of that topic.

1. lag: a trigger (BatchSize 100, window 0) on an empty 3-partition topic; N messages
   produced at a steady pace (--rate per second), each carrying its produce time; the
   handler logs when it started.
2. throughput: N messages produced first, then a trigger (BatchSize 500, MaximumConcurrency
   3 = one batch per partition) drains them; time from trigger creation to the last one.
3. reference: confluent-kafka (librdkafka) consuming the same N messages, committing per
   500, no function; and `tansu perf` is not used (it measures the broker's own produce
   path, not a consumer).

    python3 bench/connector_kafka.py --wisp target/release/wisp [-n 20000] [--rate 2000]

Needs tansu (scripts/kafka-broker.sh prints its path; or --tansu) and the test venv's
boto3 + confluent-kafka. Binds and targets 127.0.0.1 only; stops what it starts.
"""
import argparse
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
from pathlib import Path

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from connector_common import free_port, pct, wait_port
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

KEY, SECRET = "AKIABENCHKAFKA000000", "bench-secret-bench-secret-bench-secret00"
ROOT = Path(__file__).resolve().parents[1]

NOOP = """
import base64, json, os, time
LOG = os.environ["LOG"]
def handler(event, context):
    now = time.time()
    lines = []
    for recs in event["records"].values():
        for r in recs:
            body = json.loads(base64.b64decode(r["value"]))
            lines.append(f"{now} {body['t']}\\n")
    fd = os.open(LOG, os.O_CREAT | os.O_APPEND | os.O_WRONLY)
    os.write(fd, "".join(lines).encode())
    os.close(fd)
    return {}
"""


def count_lines(log):
    if not os.path.exists(log):
        return 0
    with open(log, "rb") as f:
        return f.read().count(b"\n")


def add_trigger(port, config):
    body = json.dumps({"Kind": "kafka", "FunctionName": "noop", "Config": config}).encode()
    req = AWSRequest(method="POST", url=f"http://127.0.0.1:{port}/wisp/v1/triggers", data=body,
                     headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(KEY, SECRET), "lambda", "us-east-1").add_auth(req)
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("POST", "/wisp/v1/triggers", body=body, headers=dict(req.headers.items()))
    r = c.getresponse()
    out = r.read()
    assert r.status == 201, out


def tansu_bin(arg):
    if arg:
        return arg
    if os.environ.get("WISP_TANSU_BIN"):
        return os.environ["WISP_TANSU_BIN"]
    return subprocess.run([str(ROOT / "scripts/kafka-broker.sh")], capture_output=True, text=True,
                          check=True).stdout.strip().splitlines()[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wisp", required=True)
    ap.add_argument("--tansu")
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--rate", type=int, default=2000)
    args = ap.parse_args()
    kport, wport = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"tcp://127.0.0.1:{kport}"
        kproc = subprocess.Popen([tansu_bin(args.tansu), "broker", "--listener-url", url, "--advertised-listener-url",
                                  url, "--storage-engine", "sqlite://tansu.db"], cwd=tmp,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        env = dict(os.environ, WISP_ROOT_ACCESS_KEY_ID=KEY, WISP_ROOT_SECRET_ACCESS_KEY=SECRET)
        wproc = subprocess.Popen([args.wisp, "serve", "--listen", f"127.0.0.1:{wport}", "--data-dir",
                                  os.path.join(tmp, "wisp")], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_port(kport)
            wait_port(wport)
            run(args, f"127.0.0.1:{kport}", wport, tmp)
        finally:
            for p in (wproc, kproc):
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(30)


def produce(bootstrap, topic, n, rate=None):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1 if rate else 20, "log_level": 0})
    t0 = time.time()
    for i in range(n):
        while True:
            try:
                p.produce(topic, json.dumps({"t": time.time(), "i": i}).encode(), key=str(i % 64).encode())
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
        if rate:
            time.sleep(max(0.0, t0 + (i + 1) / rate - time.time()))
    assert p.flush(60) == 0
    return time.time() - t0


def run(args, bootstrap, wport, tmp):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1)
                                  for t in ("lag", "drain")]).values():
        f.result(30)
    log = os.path.join(tmp, "lag.log")
    kw = dict(endpoint_url=f"http://127.0.0.1:{wport}", region_name="us-east-1", aws_access_key_id=KEY,
              aws_secret_access_key=SECRET, config=Config(retries={"max_attempts": 0}))
    lam = boto3.client("lambda", **kw)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", NOOP)
    lam.create_function(FunctionName="noop", Runtime="python3.11", Role="r", Handler="app.handler",
                        Code={"ZipFile": buf.getvalue()}, Environment={"Variables": {"LOG": log}})

    # 1. Lag at a steady rate.
    add_trigger(wport, {"BootstrapServers": [bootstrap], "Topics": ["lag"], "StartingPosition": "LATEST",
                        "BatchSize": 100, "MaximumConcurrency": 3})
    time.sleep(3.0)
    produce(bootstrap, "lag", args.n, rate=args.rate)
    while count_lines(log) < args.n:
        time.sleep(0.1)
    got = [tuple(map(float, l.split())) for l in open(log).read().split("\n") if l]
    lags = [(s - t) * 1000 for s, t in got]
    print(f"| kafka (tansu, sqlite): {args.n} messages at {args.rate}/s, no-op handler | value |\n|---|---:|")
    print(f"| lag produce -> handler start, p50 | {pct(lags, 0.5):.1f} ms |")
    print(f"| lag produce -> handler start, p99 | {pct(lags, 0.99):.1f} ms |")

    # 2. Draining a prefilled topic.
    os.remove(log)
    took = produce(bootstrap, "drain", args.n)
    print(f"| producing {args.n} messages (confluent-kafka, one producer) | {args.n / took:.0f} msg/s |")
    t1 = time.time()
    add_trigger(wport, {"BootstrapServers": [bootstrap], "Topics": ["drain"], "StartingPosition": "TRIM_HORIZON",
                        "BatchSize": 500, "MaximumConcurrency": 3})
    while count_lines(log) < args.n:
        time.sleep(0.02)
    wisp_rate = args.n / (time.time() - t1)
    print(f"| wisp draining a prefilled topic (batch 500, concurrency 3) | {wisp_rate:.0f} msg/s |")

    # 3. A plain librdkafka consumer, no function: the consumer's limit on this broker.
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "plain", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "log_level": 0})
    c.assign([TopicPartition("drain", p, -2) for p in range(3)])
    t2 = time.time()
    done = 0
    while done < args.n:
        msgs = c.consume(500, timeout=1.0)
        good = [m for m in msgs if m.error() is None]
        done += len(good)
        if good:
            c.commit(asynchronous=True)
    plain = args.n / (time.time() - t2)
    c.close()
    print(f"| confluent-kafka consume(500) + async commit, no function (reference) | {plain:.0f} msg/s |")
    print(f"\nwisp reaches {100 * wisp_rate / plain:.0f}% of the plain consumer's rate.")


if __name__ == "__main__":
    sys.exit(main())
