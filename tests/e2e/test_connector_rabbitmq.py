"""The RabbitMQ (AMQP 0-9-1) connector against a real rabbitmq-server and the real wisp
binary: at-least-once delivery with retries and a failure queue, the broker stopped
mid-stream, wisp killed mid-stream, payloads that are not JSON or UTF-8 (with Lambda's
`aws:rmq` shape), a user's credentials, a trigger pointed at nothing, secrets, and bad
configurations.

The broker runs as root from Debian's package on free ports with its data in the test's tmp
dir; its own epmd is started first (bound to 127.0.0.1, on its own port) so that the test
owns and stops it. Queues are durable and messages persistent, published with publisher
confirms, so a broker stop loses nothing the broker confirmed.
"""
from __future__ import annotations

import base64
import collections
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pika
import pytest

from brokers import BrokerProcess, Sink, delete, deploy_sink, dups, outage_mid_stream, trigger
from brokers import add_trigger as _add_trigger
from test_queues import sqs_client
from wisp_e2e import Server, create_function, free_port, http_request, lambda_client, run_cli, unique, wait_for

RABBIT_BIN = "/usr/lib/rabbitmq/bin"
USER, SECRET = "wispconsumer", "rmq-s3cr3t-Pw-9c1e44"
LOCAL_DIST = "-kernel inet_dist_use_interface {127,0,0,1}"


def add_trigger(server, function: str, config) -> "tuple[int, dict]":
    return _add_trigger(server, "rabbitmq", function, config)

def make_certs(d: Path) -> "tuple[Path, Path, Path]":
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    d.mkdir(parents=True, exist_ok=True)
    def ssl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=wisp test CA")
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                               "extendedKeyUsage=serverAuth\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return d / "ca.pem", d / "server.pem", d / "server.key"


class Rabbit:
    """rabbitmq-server and its own epmd, both on 127.0.0.1, both stopped by pid group. It
    listens for plain AMQP on `port` and for AMQP over TLS on `tls_port`."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.port, epmd_port, dist_port, self.tls_port = free_port(), free_port(), free_port(), free_port()
        self.name = f"wisp{self.port}@localhost"
        workdir.mkdir(parents=True, exist_ok=True)
        self.ca, cert, key = make_certs(workdir / "certs")
        (workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nlog.console = true\nlog.file = false\n"
            "log.console.level = warning\n"
            f"listeners.ssl.default = 127.0.0.1:{self.tls_port}\n"
            f"ssl_options.cacertfile = {self.ca}\nssl_options.certfile = {cert}\nssl_options.keyfile = {key}\n"
            "ssl_options.verify = verify_none\nssl_options.fail_if_no_peer_cert = false\n"
        )
        (workdir / "enabled_plugins").write_text("[].\n")  # no management plugin
        self.env = {
            "HOME": str(workdir),  # the Erlang cookie lives here
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_MNESIA_BASE": str(workdir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(workdir / "log"),
            "RABBITMQ_CONFIG_FILE": str(workdir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(workdir / "enabled_plugins"),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": LOCAL_DIST,
            "RABBITMQ_CTL_ERL_ARGS": LOCAL_DIST,
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "ERL_EPMD_PORT": str(epmd_port),
        }
        self.epmd = BrokerProcess("epmd", ["epmd", "-address", "127.0.0.1", "-port", str(epmd_port)],
                                  epmd_port, workdir, env=self.env)
        self.server = BrokerProcess("rabbitmq", [f"{RABBIT_BIN}/rabbitmq-server"], self.port, workdir, env=self.env)

    def start(self) -> "Rabbit":
        if self.epmd.proc is None or self.epmd.proc.poll() is not None:
            self.epmd.start()
        self.server.start(timeout=90)
        return self

    def stop(self) -> None:
        self.server.stop(timeout=30)

    def close(self) -> None:
        try:
            self.server.stop(timeout=30)
        finally:
            self.epmd.stop()

    def ctl(self, *args: str) -> str:
        r = subprocess.run([f"{RABBIT_BIN}/rabbitmqctl", *args], env={**os.environ, **self.env},
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    @property
    def url(self) -> str:
        return f"amqp://127.0.0.1:{self.port}"

    def connect(self) -> pika.BlockingConnection:
        return pika.BlockingConnection(pika.ConnectionParameters(
            host="127.0.0.1", port=self.port, connection_attempts=1, socket_timeout=10, heartbeat=30))


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Rabbit(tmp_path_factory.mktemp("rabbitmq"))
    try:
        b.start()
        b.ctl("add_user", USER, SECRET)
        b.ctl("set_permissions", "-p", "/", USER, ".*", ".*", ".*")
        yield b
    finally:
        b.close()


@pytest.fixture(scope="module")
def wisp(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("wisp-rabbitmq"), name="rabbitmq")
    try:
        s.start()
        yield s
    finally:
        s.close()


def declare(b: Rabbit, *queues: str) -> None:
    c = b.connect()
    try:
        ch = c.channel()
        for q in queues:
            ch.queue_declare(q, durable=True)
    finally:
        c.close()


def publish(b: Rabbit, queue: str, bodies, pace: float = 0.0, retry_for: float = 0.0, props=None) -> None:
    """Publishes each body (bytes) persistent with publisher confirms, in order; with
    retry_for, rides out a broker restart (a publish in flight then may be sent twice)."""
    bodies = list(bodies)
    props = props or pika.BasicProperties(delivery_mode=2, content_type="application/json")
    i, c = 0, None
    deadline = None
    while i < len(bodies):
        try:
            if c is None:
                c = b.connect()
                ch = c.channel()
                ch.confirm_delivery()
            ch.basic_publish("", queue, bodies[i], props, mandatory=True)
            i += 1
            deadline = None
            if pace:
                time.sleep(pace)
        except (pika.exceptions.AMQPError, OSError):
            c = None
            if deadline is None:
                deadline = time.monotonic() + retry_for
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    if c is not None:
        c.close()


def ids_bodies(ids):
    return [json.dumps({"id": i}).encode() for i in ids]


class FailureQueue:
    """Drains a failure queue, keeping every record it read."""

    def __init__(self, b: Rabbit, queue: str):
        self.b, self.queue, self.docs = b, queue, []

    def drain(self) -> "FailureQueue":
        c = self.b.connect()
        try:
            ch = c.channel()
            while True:
                method, props, body = ch.basic_get(self.queue, auto_ack=True)
                if method is None:
                    break
                assert props.delivery_mode == 2, "failure records are persistent"
                self.docs.append(json.loads(body))
        finally:
            c.close()
        return self

    def ids(self) -> "set[int]":
        out = set()
        for doc in self.docs:
            for msgs in doc["requestPayload"]["rmqMessagesByQueue"].values():
                for m in msgs:
                    try:
                        out.add(int(json.loads(base64.b64decode(m["data"]))["id"]))
                    except Exception:
                        pass
        return out


def base_config(b: Rabbit, queue: str, **extra) -> dict:
    cfg = {"Url": b.url, "Queue": queue, "Username": USER, "Password": SECRET,
           "RetryBaseDelayMs": 50, "MaximumRetryAttempts": 2}
    cfg.update(extra)
    return cfg


def depth(b: Rabbit, queue: str) -> "tuple[int, int]":
    """(ready, unacknowledged) as the broker counts them."""
    for line in b.ctl("list_queues", "-q", "--no-table-headers", "name", "messages_ready",
                      "messages_unacknowledged").splitlines():
        parts = line.split()
        if parts and parts[0] == queue:
            return int(parts[1]), int(parts[2])
    raise AssertionError(f"queue {queue} not listed")


# ----------------------------------------------------------------------------- tests


def test_bad_configs_are_refused(wisp, broker, tmp_path):
    name, _ = deploy_sink(wisp, tmp_path, "qbad")
    good = base_config(broker, "q")
    cases = [
        ({**good, "Nope": 1}, "unknown field"),
        ({**good, "Queues": ["q"]}, "unknown field"),
        ({**good, "Url": f"amqp://{USER}:{SECRET}@127.0.0.1:{broker.port}"}, "Username/Password"),
        ({**good, "Url": f"amqp://127.0.0.1:{broker.port}/vhost"}, "VirtualHost"),
        ({**good, "Url": "http://127.0.0.1:5672"}, "amqp://"),
        ({**good, "Url": "amqp://127.0.0.1:0"}, "port"),
        ({**good, "Url": "amqp://127.0.0.1:5672?heartbeat=0"}, "query"),
        ({**good, "Url": "amqp://bad host:1"}, "host"),
        ({k: v for k, v in good.items() if k != "Queue"}, "Queue"),
        ({**good, "Queue": ""}, "Queue"),
        ({**good, "Queue": "a\nb"}, "Queue"),
        ({**good, "Queue": "q" * 256}, "Queue"),
        ({**good, "VirtualHost": "v\x00h"}, "VirtualHost"),
        ({**good, "Prefetch": 0}, "Prefetch"),
        ({**good, "Prefetch": 70000}, "Prefetch"),
        ({**good, "BatchSize": 0}, "BatchSize"),
        ({**good, "BatchSize": "ten"}, "invalid type"),
        ({**good, "MaximumConcurrency": 0}, "MaximumConcurrency"),
        ({k: v for k, v in good.items() if k != "Username"}, "Username"),
        ({**good, "Tls": {"Enabled": True, "Ca": "/x"}}, "unknown field"),
        ({**good, "Tls": {"Enabled": True, "CaFile": "/nonexistent/ca.pem"}}, "CaFile"),
        ({**good, "Tls": {"CaFile": "/etc/hostname"}}, "TLS is off"),
        ({**good, "EventSourceArn": "not-an-arn"}, "ARN"),
        ("not an object", "JSON object"),
    ]
    for cfg, why in cases:
        status, body = add_trigger(wisp, name, cfg)
        assert status == 400, (cfg, status, body)
        assert why in json.dumps(body), (cfg, body)
        assert SECRET not in json.dumps(body), body
    status, _, raw = http_request(wisp.endpoint, "POST", "/wisp/v1/triggers", b"{\"Kind\": \"rabbitmq\", \xff")
    assert status == 400, raw
    status, body = add_trigger(wisp, name, {**good, "Queue": "q" * 100_000})
    assert status == 400, body


def test_5000_messages_with_failures_and_poison(wisp, broker, tmp_path):
    queue, dlq = unique("orders"), unique("orders-dlq")
    declare(broker, queue, dlq)
    name, sink = deploy_sink(wisp, tmp_path, "q5000")
    poison = {1234, 4321}
    sink.set_poison(poison)
    publish(broker, queue, ids_bodies(range(5000)))
    status, trig = add_trigger(wisp, name, base_config(broker, queue, BatchSize=100, MaximumConcurrency=3,
                                                       OnFailure=dlq))
    assert status == 201, trig
    tid = trig["Id"]
    assert trig["Config"]["Password"] == "******"
    every = set(range(5000))
    failures = FailureQueue(broker, dlq)
    # While the backlog drains, the broker never has more unacknowledged messages out
    # than the trigger can work on (prefetch = BatchSize x MaximumConcurrency).
    unacked_max = 0
    def done():
        nonlocal unacked_max
        unacked_max = max(unacked_max, depth(broker, queue)[1])
        return every - poison <= set(sink.handled()) | failures.drain().ids()
    wait_for(done, timeout=150, interval=1, message="all 5000 handled or dead-lettered")
    assert unacked_max <= 300, unacked_max
    dead = failures.ids()
    assert poison <= dead
    docs = failures.docs
    assert all("poison message" in d["errorMessage"] for d in docs), docs[0]["errorMessage"]
    assert all(d["requestPayload"]["eventSource"] == "aws:rmq" for d in docs)
    assert all(list(d["requestPayload"]["rmqMessagesByQueue"]) == [f"{queue}::/"] for d in docs)
    assert all(d["requestContext"]["condition"] == "RetryAttemptsExhausted" for d in docs)
    handled = sink.handled()
    assert every <= set(handled) | dead, "lost messages"
    assert not (poison & set(handled))
    print(f"rabbitmq 5000: handled {len(set(handled))}, dead-lettered {len(dead)} in {len(docs)} batches, "
          f"duplicates {dups(handled)}, most unacked at once {unacked_max}")

    def caught_up():
        s = trigger(wisp, name, tid)["Status"]
        return s.get("Connected") is True and s.get("Lag") == 0 and s
    s = wait_for(caught_up, timeout=30, interval=1, message="lag 0")
    assert s["DeadLettered"] >= 2 and s["Retried"] >= 1 and s["Fired"] > 0, s
    wait_for(lambda: depth(broker, queue) == (0, 0), timeout=30, message="nothing left unacknowledged")
    delete(wisp, tid)


def test_failures_to_a_wisp_queue(wisp, broker, tmp_path):
    """OnFailure may be a wisp queue ARN instead of a queue on the broker."""
    queue = unique("toq")
    declare(broker, queue)
    name, sink = deploy_sink(wisp, tmp_path, "qarn", fail_every=0)
    sink.set_poison({7})
    sqs_name = unique("rmq-failures")
    sqs = sqs_client(wisp.endpoint)
    url = sqs.create_queue(QueueName=sqs_name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    status, trig = add_trigger(wisp, name, base_config(broker, queue, BatchSize=1, OnFailure=arn))
    assert status == 201, trig
    publish(broker, queue, ids_bodies(range(5, 10)))
    sink.wait_all({5, 6, 8, 9}, timeout=60)
    got = wait_for(lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages"), timeout=30)
    doc = json.loads(got[0]["Body"])
    msgs = doc["requestPayload"]["rmqMessagesByQueue"][f"{queue}::/"]
    assert [json.loads(base64.b64decode(m["data"])) for m in msgs] == [{"id": 7}]
    wait_for(lambda: depth(broker, queue) == (0, 0), timeout=30, message="acknowledged after the wisp queue took it")
    delete(wisp, trig["Id"])


def test_broker_stopped_mid_stream(wisp, broker, tmp_path):
    queue = unique("stop")
    declare(broker, queue)
    name, sink = deploy_sink(wisp, tmp_path, "qstop", fail_every=0)
    status, trig = add_trigger(wisp, name, base_config(broker, queue, BatchSize=20))
    assert status == 201, trig
    total = 1500
    t = threading.Thread(target=publish, args=(broker, queue, ids_bodies(range(total))),
                         kwargs={"pace": 0.004, "retry_for": 90})
    outage_mid_stream(wisp, broker, name, trig["Id"], sink, t)
    sink.wait_all(set(range(total)), timeout=120)
    handled = sink.handled()
    print(f"rabbitmq broker stop: {total} published, all handled, duplicates {dups(handled)}")
    wait_for(lambda: trigger(wisp, name, trig["Id"])["Status"].get("Connected") is True, timeout=30)
    delete(wisp, trig["Id"])


def test_wisp_killed_mid_stream(make_server, broker, tmp_path):
    server = make_server(name="rabbitmq-kill")
    queue = unique("killed")
    declare(broker, queue)
    name, sink = deploy_sink(server, tmp_path, "qkill", fail_every=0)
    total = 3000
    publish(broker, queue, ids_bodies(range(total)))
    status, trig = add_trigger(server, name, base_config(broker, queue, BatchSize=25, MaximumConcurrency=2))
    assert status == 201, trig
    wait_for(lambda: len(set(sink.handled())) >= 300, timeout=60, message="consumption started")
    server.kill9()
    before = len(set(sink.handled()))
    assert before < total, "everything was handled before the kill: the test did not test anything"
    server.restart()
    sink.wait_all(set(range(total)), timeout=120)
    handled = sink.handled()
    print(f"rabbitmq SIGKILL: {before} handled before the kill, all {total} after, duplicates {dups(handled)}")
    wait_for(lambda: depth(broker, queue) == (0, 0), timeout=30, message="nothing left unacknowledged")


def test_payloads_that_are_not_json_or_utf8(wisp, broker, tmp_path):
    queue = unique("raw")
    declare(broker, queue)
    name, sink = deploy_sink(wisp, tmp_path, "qraw", fail_every=0)
    status, trig = add_trigger(wisp, name, base_config(broker, queue))
    assert status == 201, trig
    payloads = [b"not json {", b"\xff\xfe\x00\x80binary\x00", b""]
    props = pika.BasicProperties(delivery_mode=2, content_type="application/octet-stream", priority=3,
                                 correlation_id="corr-1", message_id="m-1", timestamp=1_700_000_000,
                                 type="raw", app_id="tests", expiration="600000",
                                 headers={"h-str": "v\u00e9", "h-int": 42, "h-bool": True})
    for p in payloads:
        publish(broker, queue, [p], props=props)
    publish(broker, queue, ids_bodies([77]))
    sink.wait_all({77}, timeout=60)
    wait_for(lambda: sum(len(m) for line in sink.raw_events()
                         for m in json.loads(line)["rmqMessagesByQueue"].values()) >= 3, timeout=30)
    got = []
    for line in sink.raw_events():
        ev = json.loads(line)
        assert ev["eventSource"] == "aws:rmq"
        assert ev["eventSourceArn"].startswith("arn:aws:mq:") and ev["eventSourceArn"].endswith(trig["Id"])
        assert list(ev["rmqMessagesByQueue"]) == [f"{queue}::/"]
        got.extend(ev["rmqMessagesByQueue"][f"{queue}::/"])
    raw = [m for m in got if m["basicProperties"]["contentType"] == "application/octet-stream"]
    assert [base64.b64decode(m["data"]) for m in raw] == payloads
    bp = raw[1]["basicProperties"]
    assert bp["deliveryMode"] == 2 and bp["priority"] == 3 and bp["correlationId"] == "corr-1"
    assert bp["messageId"] == "m-1" and bp["type"] == "raw" and bp["appId"] == "tests"
    assert bp["expiration"] == "600000" and bp["bodySize"] == len(payloads[1])
    assert bp["timestamp"] == "Nov 14, 2023, 10:13:20 PM", bp["timestamp"]
    assert bp["headers"]["h-str"] == {"bytes": list("v\u00e9".encode())}
    assert bp["headers"]["h-int"] == 42 and bp["headers"]["h-bool"] is True
    assert raw[0]["redelivered"] is False
    delete(wisp, trig["Id"])


def test_credentials_dead_broker_and_secrets(wisp, broker, tmp_path):
    queue = unique("acl")
    declare(broker, queue)
    name, sink = deploy_sink(wisp, tmp_path, "qacl", fail_every=0)
    dead_port = free_port()
    status, dead = add_trigger(wisp, name, base_config(broker, queue, Url=f"amqp://127.0.0.1:{dead_port}"))
    assert status == 201, dead
    status, wrong = add_trigger(wisp, name, base_config(broker, queue, Password="wrong-password"))
    assert status == 201, wrong
    status, missing = add_trigger(wisp, name, base_config(broker, unique("no-such-queue")))
    assert status == 201, missing
    status, live = add_trigger(wisp, name, base_config(broker, queue))
    assert status == 201, live

    def failing(t):
        def check():
            s = trigger(wisp, name, t["Id"])["Status"]
            return s.get("Connected") is False and s.get("LastError") and s
        return check
    s = wait_for(failing(dead), timeout=30, interval=0.5, message="dead trigger reports its failure")
    assert s["State"] == "Reconnecting", s
    s = wait_for(failing(wrong), timeout=30, interval=0.5, message="wrong password reported")
    assert "ACCESS_REFUSED" in s["LastError"] or "auth" in s["LastError"].lower(), s
    s = wait_for(failing(missing), timeout=30, interval=0.5, message="missing queue reported")
    assert "NOT_FOUND" in s["LastError"] or "no queue" in s["LastError"], s
    publish(broker, queue, ids_bodies(range(50)))
    sink.wait_all(set(range(50)), timeout=60)
    assert trigger(wisp, name, dead["Id"])["Status"]["Connected"] is False
    assert trigger(wisp, name, live["Id"])["Status"]["Connected"] is True

    status, _, raw = http_request(wisp.endpoint, "GET", f"/wisp/v1/triggers?FunctionName={name}")
    assert status == 200 and SECRET.encode() not in raw and b"wrong-password" not in raw
    cfg = trigger(wisp, name, live["Id"])["Config"]
    assert cfg["Password"] == "******" and cfg["Username"] == USER, cfg
    r = run_cli(wisp, "triggers", "status", name)
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stdout + r.stderr and dead["Id"] in r.stdout
    log = wisp.log_text()
    assert SECRET not in log and "wrong-password" not in log
    # Deleting a trigger closes its connection (each trigger has its own, named "wisp").
    def wisp_connections():
        out = broker.ctl("list_connections", "-q", "--no-table-headers", "client_properties")
        return out.count('"wisp"')
    assert wisp_connections() >= 1
    for t in (dead, wrong, missing, live):
        delete(wisp, t["Id"])
    wait_for(lambda: wisp_connections() == 0, timeout=30, interval=1,
             message="the deleted triggers' connections closed")


def test_tls(wisp, broker, tmp_path):
    """amqps:// with the broker's CA in Tls.CaFile delivers; without it, the certificate is
    refused and the status says so."""
    queue = unique("tls")
    declare(broker, queue)
    name, sink = deploy_sink(wisp, tmp_path, "qtls", fail_every=0)
    tls_url = f"amqps://127.0.0.1:{broker.tls_port}"
    status, good = add_trigger(wisp, name, base_config(broker, queue, Url=tls_url, Tls={"CaFile": str(broker.ca)}))
    assert status == 201, good
    assert good["Config"]["Tls"] == {"Enabled": True, "CaFile": str(broker.ca)}, good["Config"]
    status, untrusted = add_trigger(wisp, name, base_config(broker, queue, Url=tls_url))
    assert status == 201, untrusted
    publish(broker, queue, ids_bodies(range(20)))
    sink.wait_all(set(range(20)), timeout=60)
    assert trigger(wisp, name, good["Id"])["Status"]["Connected"] is True
    s = wait_for(lambda: trigger(wisp, name, untrusted["Id"])["Status"].get("LastError"), timeout=30, interval=0.5)
    assert "certificate" in s.lower() or "issuer" in s.lower(), s
    assert trigger(wisp, name, untrusted["Id"])["Status"]["Connected"] is False
    for t in (good, untrusted):
        delete(wisp, t["Id"])
