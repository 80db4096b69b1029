#!/usr/bin/env python3
"""MQTT connector benchmark (issue 6): messages/s through a no-op handler and the lag from
publish to handler start (p50, p99), next to the broker's own consumer tool
(mosquitto_sub) receiving the same messages from the same mosquitto.

1. lag: a trigger (QoS 1, BatchSize 100, window 0); N messages published at a steady pace
   (--rate per second) with paho-mqtt at QoS 1, each carrying its publish time; the handler
   logs when it started.
2. throughput: N messages queued by the broker for the trigger's persistent session while
   no trigger runs, then drained (BatchSize 500): time from trigger creation to the last one.
3. reference: `mosquitto_sub -q 1 -c` draining the same backlog from its own persistent
   session.

    python3 bench/connector_mqtt.py --wisp target/release/wisp [-n 20000] [--rate 2000] [--version 5]

Needs mosquitto + mosquitto-clients (Debian) and the test venv's boto3 + paho-mqtt. Binds and
targets 127.0.0.1 only; stops what it starts.
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
import paho.mqtt.client as mqtt
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from connector_common import free_port, lines, pct, wait_port
import http.client

KEY, SECRET = "AKIABENCHMQTT0000000", "bench-secret-bench-secret-bench-secret00"

NOOP = """
import base64, json, os, time
LOG = os.environ["LOG"]
def handler(event, context):
    now = time.time()
    lines = []
    for m in event.get("messages", []):
        body = json.loads(base64.b64decode(m["payload"]))
        lines.append(f"{now} {body['t']}\\n")
    with open(LOG, "a") as f:
        f.write("".join(lines))
    return {}
"""


def add_trigger(port, config):
    body = json.dumps({"Kind": "mqtt", "FunctionName": "noop", "Config": config}).encode()
    req = AWSRequest(method="POST", url=f"http://127.0.0.1:{port}/wisp/v1/triggers", data=body,
                     headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(KEY, SECRET), "lambda", "us-east-1").add_auth(req)
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("POST", "/wisp/v1/triggers", body=body, headers=dict(req.headers.items()))
    r = c.getresponse()
    out = r.read()
    assert r.status == 201, out
    return json.loads(out)["Id"]


def delete_trigger(port, tid):
    req = AWSRequest(method="DELETE", url=f"http://127.0.0.1:{port}/wisp/v1/triggers/{tid}")
    SigV4Auth(Credentials(KEY, SECRET), "lambda", "us-east-1").add_auth(req)
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("DELETE", f"/wisp/v1/triggers/{tid}", headers=dict(req.headers.items()))
    assert c.getresponse().status == 204


def publisher(port, version):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{time.time()}",
                    protocol=mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311)
    c.max_inflight_messages_set(100)
    c.connect("127.0.0.1", port)
    c.loop_start()
    while not c.is_connected():
        time.sleep(0.01)
    return c


def wait_connected(wport):
    req = AWSRequest(method="GET", url=f"http://127.0.0.1:{wport}/wisp/v1/triggers")
    for _ in range(300):
        SigV4Auth(Credentials(KEY, SECRET), "lambda", "us-east-1").add_auth(req)
        c = http.client.HTTPConnection("127.0.0.1", wport)
        c.request("GET", "/wisp/v1/triggers", headers=dict(req.headers.items()))
        doc = json.loads(c.getresponse().read())
        if doc["Triggers"] and all(t["Status"].get("Connected") for t in doc["Triggers"]):
            return
        time.sleep(0.1)
        req = AWSRequest(method="GET", url=f"http://127.0.0.1:{wport}/wisp/v1/triggers")
    raise SystemExit("trigger did not connect")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wisp", required=True)
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--version", type=int, default=5, choices=[3, 5])
    args = ap.parse_args()
    mport, wport = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        conf = os.path.join(tmp, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"user root\nlistener {mport} 127.0.0.1\nallow_anonymous true\n"
                    f"max_queued_messages 1000000\nmax_queued_bytes 0\n")
        mproc = subprocess.Popen(["mosquitto", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
        env = dict(os.environ, WISP_ROOT_ACCESS_KEY_ID=KEY, WISP_ROOT_SECRET_ACCESS_KEY=SECRET)
        wproc = subprocess.Popen([args.wisp, "serve", "--listen", f"127.0.0.1:{wport}", "--data-dir",
                                  os.path.join(tmp, "wisp")], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_port(mport)
            wait_port(wport)
            run(args, mport, wport, tmp)
        finally:
            for p in (wproc, mproc):
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(30)


def publish_all(c, topic, n, rate=None):
    infos = []
    t0 = time.time()
    for i in range(n):
        infos.append(c.publish(topic, json.dumps({"t": time.time()}), qos=1))
        if rate and i % max(1, rate // 100) == 0:
            time.sleep(max(0.0, t0 + i / rate - time.time()))
    for info in infos:
        info.wait_for_publish(120)


def run(args, mport, wport, tmp):
    log = os.path.join(tmp, "lag.log")
    kw = dict(endpoint_url=f"http://127.0.0.1:{wport}", region_name="us-east-1", aws_access_key_id=KEY,
              aws_secret_access_key=SECRET, config=Config(retries={"max_attempts": 0}))
    lam = boto3.client("lambda", **kw)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("app.py", NOOP)
    lam.create_function(FunctionName="noop", Runtime="python3.11", Role="r", Handler="app.handler",
                        Code={"ZipFile": buf.getvalue()}, Environment={"Variables": {"LOG": log}})
    url = f"mqtt://127.0.0.1:{mport}"
    v = args.version

    # 1. Lag at a steady rate.
    add_trigger(wport, {"Url": url, "Topics": ["lag"], "ProtocolVersion": v, "BatchSize": 100,
                        "ClientId": "bench-lag"})
    wait_connected(wport)
    c = publisher(mport, v)
    publish_all(c, "lag", args.n, args.rate)
    while len(lines(log)) < args.n:
        time.sleep(0.1)
    got = [tuple(map(float, l.split())) for l in lines(log)]
    lags = [(s - t) * 1000 for s, t in got]
    print(f"| mqtt v{v}: {args.n} messages (QoS 1) at {args.rate}/s, no-op handler | value |\n|---|---:|")
    print(f"| lag publish -> handler start, p50 | {pct(lags, 0.5):.1f} ms |")
    print(f"| lag publish -> handler start, p99 | {pct(lags, 0.99):.1f} ms |")

    # 2. Draining a backlog: the trigger's persistent session subscribes, goes away (trigger
    # deleted; the broker keeps the session), N messages are queued for it, and a new
    # trigger with the same ClientId drains them: time from its creation to the last one.
    os.remove(log)
    tid = add_trigger(wport, {"Url": url, "Topics": ["drain"], "ProtocolVersion": v, "ClientId": "bench-drain",
                              "BatchSize": 500})
    wait_connected(wport)
    delete_trigger(wport, tid)
    time.sleep(1.0)
    publish_all(c, "drain", args.n)
    t1 = time.time()
    add_trigger(wport, {"Url": url, "Topics": ["drain"], "ProtocolVersion": v, "ClientId": "bench-drain",
                        "BatchSize": 500})
    while len(lines(log)) < args.n:
        time.sleep(0.02)
    wisp_rate = args.n / (time.time() - t1)
    print(f"| wisp draining a queued session (batch 500) | {wisp_rate:.0f} msg/s |")

    # 3. The broker's own consumer tool on the same backlog (persistent session, QoS 1).
    sub_cmd = ["mosquitto_sub", "-p", str(mport), "-t", "ref", "-q", "1", "-c", "-i", "bench-ref",
               "-V", "5" if v == 5 else "311", "-x", "3600"] if v == 5 else \
              ["mosquitto_sub", "-p", str(mport), "-t", "ref", "-q", "1", "-c", "-i", "bench-ref", "-V", "311"]
    subprocess.run(sub_cmd + ["-W", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    publish_all(c, "ref", args.n)
    t2 = time.time()
    subprocess.run(sub_cmd + ["-C", str(args.n)], stdout=subprocess.DEVNULL, timeout=300)
    ref = args.n / (time.time() - t2)
    print(f"| mosquitto_sub -q 1 draining the same backlog (reference) | {ref:.0f} msg/s |")
    c.loop_stop()
    c.disconnect()
    print(f"\nwisp reaches {100 * wisp_rate / ref:.0f}% of mosquitto_sub's rate.")


if __name__ == "__main__":
    sys.exit(main())
