#!/usr/bin/env python3
"""RabbitMQ connector benchmark (issue: broker connectors).

Starts its own rabbitmq-server (Debian's package, with its own epmd, on free ports bound to
127.0.0.1, data in a temporary directory) and a wisp server, deploys a no-op Python handler
that logs, per message, when its invocation started and when the message was published,
and measures:

1. Throughput: N messages published first (persistent), then a `rabbitmq`
   trigger drains the queue (BatchSize 100, MaximumConcurrency 4): messages/s.
2. Lag: N messages published at a steady rate while the trigger runs (BatchSize 10):
   publish -> handler start, p50/p99.
3. The reference, "the broker's limit" from a client's side: RabbitMQ has no consumer
   benchmark tool in Debian, so a plain pika consumer (manual acks, prefetch 400) drains
   the same N prefilled messages: messages/s.

    python3 bench/connector_rabbitmq.py --wisp target/release/wisp [-n 20000] [--rate 1000]

Binds and targets 127.0.0.1 only; stops everything it starts (by process group).
"""

import argparse
import base64
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
import pika
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from connector_common import free_port, lines, pct, start, stop, wait_lines, wait_port

KEY, SECRET = "AKIABENCHRABBITMQ000", "bench-secret-bench-secret-bench-secret00"
RABBIT_BIN = "/usr/lib/rabbitmq/bin"
LOCAL_DIST = "-kernel inet_dist_use_interface {127,0,0,1}"

NOOP = """
import base64, json, os, time
LOG = os.environ["LOG"]
def handler(event, context):
    now = time.time()
    lines = []
    for msgs in event["rmqMessagesByQueue"].values():
        for m in msgs:
            lines.append(f"{now} {json.loads(base64.b64decode(m['data']))['t']}\\n")
    with open(LOG, "a") as f:
        f.write("".join(lines))
    return {}
"""


def publish(port, queue, n, rate=0.0):
    """Persistent messages, without publisher confirms (pika waits for each confirm, which
    would cap the rate at a few hundred per second); the runs count what arrived."""
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = c.channel()
    props = pika.BasicProperties(delivery_mode=2)
    t0 = time.time()
    for i in range(n):
        if rate:
            due = t0 + i / rate
            while time.time() < due:
                time.sleep(max(0.0, min(0.001, due - time.time())))
        ch.basic_publish("", queue, json.dumps({"t": time.time(), "i": i}).encode(), props)
    took = time.time() - t0
    c.close()
    return took


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wisp", required=True)
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--rate", type=float, default=1000.0, help="messages/s for the lag run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        port, epmd_port, dist_port, api = free_port(), free_port(), free_port(), free_port()
        with open(f"{d}/rabbitmq.conf", "w") as f:
            f.write(f"listeners.tcp.default = 127.0.0.1:{port}\nlog.console = true\nlog.file = false\n"
                    "log.console.level = warning\n")
        with open(f"{d}/enabled_plugins", "w") as f:
            f.write("[].\n")
        renv = dict(os.environ, HOME=d, RABBITMQ_NODE_PORT=str(port), RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
                    RABBITMQ_NODENAME=f"bench{port}@localhost", RABBITMQ_MNESIA_BASE=f"{d}/mnesia",
                    RABBITMQ_LOG_BASE=f"{d}/log", RABBITMQ_CONFIG_FILE=f"{d}/rabbitmq.conf",
                    RABBITMQ_ENABLED_PLUGINS_FILE=f"{d}/enabled_plugins", RABBITMQ_DIST_PORT=str(dist_port),
                    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=LOCAL_DIST, ERL_EPMD_ADDRESS="127.0.0.1",
                    ERL_EPMD_PORT=str(epmd_port))
        wenv = dict(os.environ, WISP_ROOT_ACCESS_KEY_ID=KEY, WISP_ROOT_SECRET_ACCESS_KEY=SECRET)
        procs = []
        with open(f"{d}/brokers.log", "ab") as blog:
            try:
                procs.append(start(["epmd", "-address", "127.0.0.1", "-port", str(epmd_port)], renv, blog))
                wait_port(epmd_port, procs[-1], timeout=90)
                procs.append(start([f"{RABBIT_BIN}/rabbitmq-server"], renv, blog))
                wait_port(port, procs[-1], timeout=90)
                procs.append(start([args.wisp, "serve", "--listen", f"127.0.0.1:{api}", "--url-listen", "127.0.0.1:0",
                                    "--routes-listen", "127.0.0.1:0", "--data-dir", f"{d}/wisp"], wenv, blog))
                wait_port(api, procs[-1], timeout=90)
                run(args, d, port, api)
            finally:
                for p in reversed(procs):
                    stop(p)


def run(args, d, port, api):
    endpoint = f"http://127.0.0.1:{api}"
    lam = boto3.client("lambda", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=KEY,
                       aws_secret_access_key=SECRET, config=Config(retries={"max_attempts": 0}))
    log = f"{d}/handled.log"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", NOOP)
    lam.create_function(FunctionName="noop", Runtime="python3.11", Role="r", Handler="app.handler",
                        Code={"ZipFile": buf.getvalue()}, Environment={"Variables": {"LOG": log}})

    def add_trigger(queue, **delivery):
        body = json.dumps({"Kind": "rabbitmq", "FunctionName": "noop",
                           "Config": {"Url": f"amqp://127.0.0.1:{port}", "Queue": queue, **delivery}}).encode()
        req = AWSRequest(method="POST", url=endpoint + "/wisp/v1/triggers", data=body,
                         headers={"Content-Type": "application/json"})
        SigV4Auth(Credentials(KEY, SECRET), "lambda", "us-east-1").add_auth(req)
        import urllib.request
        r = urllib.request.urlopen(urllib.request.Request(endpoint + "/wisp/v1/triggers", data=body,
                                                          headers=dict(req.headers.items()), method="POST"))
        return json.loads(r.read())["Id"]

    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = c.channel()
    for q in ("prefilled", "paced", "reference"):
        ch.queue_declare(q, durable=True)
    c.close()

    # 1. Throughput draining a prefilled queue.
    took = publish(port, "prefilled", args.n)
    t0 = time.time()
    add_trigger("prefilled", BatchSize=100, MaximumConcurrency=4)
    got = wait_lines(log, args.n)
    drain = time.time() - t0
    os.remove(log)

    # 2. Lag at a steady rate.
    add_trigger("paced", BatchSize=10, MaximumConcurrency=4)
    time.sleep(1)
    publish(port, "paced", args.n, rate=args.rate)
    got = wait_lines(log, args.n)
    lags = [(float(s) - float(t)) * 1000 for s, t in (l.split() for l in got)]

    # 3. Reference: a plain client consumer on the same broker.
    publish(port, "reference", args.n)
    c = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    ch = c.channel()
    ch.basic_qos(prefetch_count=400)
    seen = 0
    t1 = time.time()
    for method, _, _ in ch.consume("reference"):
        seen += 1
        if seen % 100 == 0 or seen == args.n:
            ch.basic_ack(method.delivery_tag, multiple=True)
        if seen >= args.n:
            break
    ref = time.time() - t1
    ch.cancel()
    c.close()

    print(f"| RabbitMQ, {args.n} messages | value |\n|---|---:|")
    print(f"| publishing (pika, persistent, no confirms) | {args.n / took:.0f} msg/s |")
    print(f"| wisp trigger draining a prefilled queue (batch 100, concurrency 4, no-op handler) | {args.n / drain:.0f} msg/s |")
    print(f"| reference: pika consumer, manual acks, prefetch 400, no handler | {args.n / ref:.0f} msg/s |")
    print(f"| lag publish -> handler start at {args.rate:.0f} msg/s (batch 10), p50 | {pct(lags, 0.5):.1f} ms |")
    print(f"| lag publish -> handler start at {args.rate:.0f} msg/s (batch 10), p99 | {pct(lags, 0.99):.1f} ms |")


if __name__ == "__main__":
    sys.exit(main())
