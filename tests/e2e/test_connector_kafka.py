"""The Kafka connector against a real Kafka-protocol broker (tansu, with its durable SQLite
storage engine) and the real wisp binary: at-least-once delivery with retries and a failure
topic, per-partition order, a broker stopped mid-stream, wisp killed mid-stream, payloads
that are not JSON or UTF-8, a trigger pointed at nothing, secrets, bad configurations, and
the Kafka order stream example.

The broker comes from scripts/kafka-broker.sh ($WISP_TANSU_BIN when scripts/test.sh set it);
messages are produced with confluent-kafka (librdkafka), acks=all, one request in flight.
"""
from __future__ import annotations

import base64
import collections
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from brokers import BrokerProcess, Sink, delete, deploy_sink, dups, outage_mid_stream, trigger as trigger_status
from brokers import add_trigger as _add_trigger
from wisp_e2e import (
    Server,
    cli_env,
    create_function,
    free_port,
    http_request,
    lambda_client,
    run_cli,
    unique,
    wait_for,
    wisp_bin,
)

ROOT = Path(__file__).resolve().parents[2]
SECRET = "kafka-s3cr3t-Pw-9f2c1e"


def add_trigger(server, function: str, config) -> "tuple[int, dict]":
    return _add_trigger(server, "kafka", function, config)

def tansu_bin() -> str:
    b = os.environ.get("WISP_TANSU_BIN")
    if b and os.access(b, os.X_OK):
        return b
    r = subprocess.run([str(ROOT / "scripts/kafka-broker.sh")], capture_output=True, text=True, timeout=3600,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


def tansu_process(workdir: Path, port: int) -> BrokerProcess:
    url = f"tcp://127.0.0.1:{port}"
    return BrokerProcess(
        "tansu",
        [tansu_bin(), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "sqlite://tansu.db"],
        port, workdir, env={"RUST_LOG": "warn"},
    )


@pytest.fixture(scope="module")
def kafka(tmp_path_factory):
    b = tansu_process(tmp_path_factory.mktemp("tansu"), free_port())
    try:
        b.start()
        yield b
    finally:
        b.stop()


def bootstrap(b: BrokerProcess) -> str:
    return f"127.0.0.1:{b.port}"


def create_topic(b: BrokerProcess, name: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap(b)})
    fut = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name]
    fut.result(timeout=30)


class Produced:
    """Messages produced and what the broker acknowledged: partition and offset per id."""

    def __init__(self):
        self.where: dict[int, tuple[int, int]] = {}
        self.order: list[int] = []  # production (produce() call) order
        self.errors: list[str] = []
        self._lock = threading.Lock()

    def cb(self, mid):
        def done(err, msg):
            with self._lock:
                if err is not None:
                    self.errors.append(f"{mid}: {err}")
                else:
                    self.where[mid] = (msg.partition(), msg.offset())
        return done

    def by_partition(self) -> "dict[int, list[int]]":
        out: dict[int, list[int]] = collections.defaultdict(list)
        for mid in self.order:
            out[self.where[mid][0]].append(mid)
        return out


def producer(b: BrokerProcess) -> Producer:
    # One request in flight per connection and acks from the broker: the order of produce()
    # calls is the order in each partition.
    return Producer({"bootstrap.servers": bootstrap(b), "acks": "all", "log_level": 0,
                     "max.in.flight.requests.per.connection": 1, "linger.ms": 5,
                     "message.timeout.ms": 120000})


def produce_ids(b: BrokerProcess, topic: str, ids, produced: Produced, keys: int = 13, pace: float = 0.0,
                allow_errors: bool = False) -> None:
    """Produces {"id": i} for each id; with allow_errors, messages the broker refused (a broker
    shutting down answers with errors) are only counted in produced.errors."""
    p = producer(b)
    for i in ids:
        produced.order.append(i)
        while True:
            try:
                p.produce(topic, json.dumps({"id": i, "pad": "x" * 40}).encode(), key=f"k{i % keys}".encode(),
                          on_delivery=produced.cb(i))
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
        if pace:
            time.sleep(pace)
    left = p.flush(120)
    assert left == 0, f"{left} messages neither acknowledged nor refused by the broker"
    assert allow_errors or not produced.errors, produced.errors[:5]


def read_topic(b: BrokerProcess, topic: str, expect_at_least: int, timeout: float = 60.0) -> "list[bytes]":
    c = Consumer({"bootstrap.servers": bootstrap(b), "group.id": unique("reader"), "log_level": 0,
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    out: list[bytes] = []
    try:
        c.subscribe([topic])
        deadline = time.time() + timeout
        while time.time() < deadline and len(out) < expect_at_least:
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                out.append(m.value())
    finally:
        c.close()
    return out


def base_config(b: BrokerProcess, topic: str, **extra) -> dict:
    cfg = {"BootstrapServers": [bootstrap(b)], "Topics": [topic], "StartingPosition": "TRIM_HORIZON",
           "RetryBaseDelayMs": 50, "MaximumRetryAttempts": 2}
    cfg.update(extra)
    return cfg


@pytest.fixture(scope="module")
def wisp(tmp_path_factory, kafka):
    # Depends on the broker so that it stops first: tansu stops slowly while clients are connected.
    # KAFKA_TEST_WISP_LOG=debug shows librdkafka's log in the server log (when debugging).
    log = os.environ.get("KAFKA_TEST_WISP_LOG")
    s = Server(tmp_path_factory.mktemp("wisp-kafka"), name="kafka", env={"WISP_LOG": log} if log else None)
    try:
        s.start()
        yield s
    finally:
        s.close()


def failure_ids(records: "list[bytes]") -> "tuple[set[int], list[dict]]":
    ids, docs = set(), []
    for raw in records:
        doc = json.loads(raw)
        docs.append(doc)
        for recs in doc["requestPayload"]["records"].values():
            for r in recs:
                try:
                    ids.add(int(json.loads(base64.b64decode(r["value"]))["id"]))
                except Exception:
                    pass
    return ids, docs


# ----------------------------------------------------------------------------- tests


def test_bad_configs_are_refused(wisp, kafka, tmp_path):
    name, _ = deploy_sink(wisp, tmp_path, "kbad")
    good = base_config(kafka, "whatever")
    cases = [
        ({**good, "Nope": 1}, "unknown field"),
        ({**good, "BootstrapServers": ["user:pw@127.0.0.1:9092"]}, "Username/Password"),
        ({**good, "BootstrapServers": []}, "BootstrapServers"),
        ({**good, "BootstrapServers": ["no-port"]}, "host:port"),
        ({**good, "Topics": ["a", "b"]}, "exactly one"),
        ({**good, "Topics": ["bad/topic"]}, "topic name"),
        ({**good, "StartingPosition": "AT_TIMESTAMP"}, "unknown variant"),
        ({**good, "BatchSize": 0}, "BatchSize"),
        ({**good, "BatchSize": "ten"}, "invalid type"),
        ({**good, "Username": "u"}, "together"),
        ({**good, "SaslMechanism": "GSSAPI", "Username": "u", "Password": "p"}, "unknown variant"),
        ({**good, "Tls": {"Enabled": True, "Ca": "/x"}}, "unknown field"),
        ({**good, "ConsumerGroupId": "a\u0000b"}, "ConsumerGroupId"),
        ("not an object", "JSON object"),
    ]
    for cfg, why in cases:
        status, body = add_trigger(wisp, name, cfg)
        assert status == 400, (cfg, status, body)
        assert why in json.dumps(body), (cfg, body)
    # Hostile bodies: not JSON, huge strings.
    status, _, raw = http_request(wisp.endpoint, "POST", "/wisp/v1/triggers", b"{\"Kind\": \"kafka\", \xff")
    assert status == 400, raw
    status, body = add_trigger(wisp, name, {**good, "Topics": ["t" * 100_000]})
    assert status == 400, body


def test_5000_messages_with_failures_poison_and_partition_order(wisp, kafka, tmp_path):
    topic, dlq = unique("orders"), unique("orders-dlq")
    create_topic(kafka, topic, partitions=3)
    create_topic(kafka, dlq, partitions=1)
    name, sink = deploy_sink(wisp, tmp_path, "k5000")
    poison = {1234, 4321}
    sink.set_poison(poison)
    produced = Produced()
    produce_ids(kafka, topic, range(5000), produced)
    status, trig = add_trigger(wisp, name, base_config(kafka, topic, BatchSize=100, MaximumConcurrency=3,
                                                       OnFailure=dlq, ConsumerGroupId=unique("g")))
    assert status == 201, trig
    tid = trig["Id"]

    # The poison batches end in the failure topic, everything else is handled.
    wait_for(lambda: set(range(5000)) - poison <= set(sink.handled()) | failure_ids(read_topic(kafka, dlq, 2, 2))[0],
             timeout=150, interval=2, message="all 5000 handled or dead-lettered")
    dead, docs = failure_ids(read_topic(kafka, dlq, 2))
    assert poison <= dead
    assert all("poison message" in d["errorMessage"] for d in docs), docs[0]["errorMessage"]
    assert all(d["requestPayload"]["eventSource"] == "SelfManagedKafka" for d in docs)
    assert all(d["requestContext"]["condition"] == "RetryAttemptsExhausted" for d in docs)
    handled = sink.handled()
    assert set(range(5000)) <= set(handled) | dead, "lost messages"
    assert not (poison & set(handled))
    dups = sum(c - 1 for c in collections.Counter(handled).values() if c > 1)
    print(f"kafka 5000: handled {len(set(handled))}, dead-lettered {len(dead)} in {len(docs)} batches, duplicates {dups}")

    # Order: within each partition, the first time each id was handled follows production.
    first_seen: dict[int, int] = {}
    for pos, mid in enumerate(handled):
        first_seen.setdefault(mid, pos)
    for part, ids in produced.by_partition().items():
        offsets = [produced.where[i][1] for i in ids]
        assert offsets == sorted(offsets), f"partition {part}: the broker's order differs from production"
        got = sorted((i for i in ids if i in first_seen), key=first_seen.__getitem__)
        expected = [i for i in ids if i in first_seen]
        assert got == expected, f"partition {part}: handled out of production order"
    assert len(produced.by_partition()) == 3

    # Status: connected, caught up, retries and dead letters counted.
    def caught_up():
        s = trigger_status(wisp, name, tid)["Status"]
        return s.get("Connected") is True and s.get("Lag") == 0 and s
    s = wait_for(caught_up, timeout=30, interval=1, message="lag 0")
    assert s["DeadLettered"] >= 2 and s["Retried"] >= 1 and s["Fired"] > 0, s


def test_broker_stopped_mid_stream(wisp, kafka, tmp_path):
    topic = unique("stream")
    create_topic(kafka, topic, partitions=2)
    name, sink = deploy_sink(wisp, tmp_path, "kstop", fail_every=0)
    status, trig = add_trigger(wisp, name, base_config(kafka, topic, BatchSize=20))
    assert status == 201, trig
    produced = Produced()
    total = 1500
    t = threading.Thread(target=produce_ids, args=(kafka, topic, range(total), produced),
                         kwargs={"pace": 0.008, "allow_errors": True})
    stopped_at = outage_mid_stream(wisp, kafka, name, trig["Id"], sink, t, gone_within=8, outage=9,
                                   at_stop=lambda: len(produced.order))
    # What the broker acknowledged must all be handled (tansu answers produce requests with
    # errors while it shuts down: those messages were never acknowledged).
    acked = set(produced.where)
    assert max(acked) > stopped_at, "nothing was produced after the broker came back"
    sink.wait_all(acked, timeout=120)
    handled = sink.handled()
    dups = len(handled) - len(set(handled))
    print(f"kafka broker stop: {len(acked)} acknowledged ({len(produced.errors)} refused while the broker "
          f"stopped), all handled, duplicates {dups}")
    wait_for(lambda: trigger_status(wisp, name, trig["Id"])["Status"].get("Connected") is True, timeout=30)


def test_wisp_killed_mid_stream(make_server, kafka, tmp_path):
    server = make_server(name="kafka-kill")
    topic = unique("killed")
    create_topic(kafka, topic, partitions=3)
    name, sink = deploy_sink(server, tmp_path, "kkill", fail_every=0)
    status, trig = add_trigger(server, name, base_config(kafka, topic, BatchSize=25, MaximumConcurrency=2))
    assert status == 201, trig
    total = 3000
    produce_ids(kafka, topic, range(total), Produced())
    wait_for(lambda: len(set(sink.handled())) >= 300, timeout=60, message="consumption started")
    server.kill9()
    before = len(set(sink.handled()))
    assert before < total, "everything was handled before the kill: the test did not test anything"
    server.restart()
    sink.wait_all(set(range(total)), timeout=120)
    handled = sink.handled()
    dups = len(handled) - len(set(handled))
    print(f"kafka SIGKILL: {before} handled before the kill, all {total} after, duplicates {dups}")


def test_payloads_that_are_not_json_or_utf8(wisp, kafka, tmp_path):
    topic = unique("raw")
    create_topic(kafka, topic)
    name, sink = deploy_sink(wisp, tmp_path, "kraw", fail_every=0)
    status, trig = add_trigger(wisp, name, base_config(kafka, topic))
    assert status == 201, trig
    payloads = [b"not json {", b"\xff\xfe\x00\x80binary\x00", b""]
    p = producer(kafka)
    for i, v in enumerate(payloads):
        p.produce(topic, v, key=b"\x00key\xff" + bytes([i]), headers=[("h1", b"\x01\x02"), ("trace", b"abc")])
    p.produce(topic, json.dumps({"id": 77}).encode())
    assert p.flush(30) == 0
    sink.wait_all({77}, timeout=60)
    wait_for(lambda: len(sink.raw_events()) >= 1, timeout=30)
    records = []
    for line in sink.raw_events():
        ev = json.loads(line)
        assert ev["eventSource"] == "SelfManagedKafka"
        assert ev["bootstrapServers"] == bootstrap(kafka)
        for key, recs in ev["records"].items():
            assert key == f"{topic}-0"
            records.extend(recs)
    by_value = {base64.b64decode(r["value"]): r for r in records if r["value"] is not None}
    for i, v in enumerate(payloads):
        r = by_value[v]
        assert base64.b64decode(r["key"]) == b"\x00key\xff" + bytes([i])
        assert r["headers"] == [{"h1": [1, 2]}, {"trace": [97, 98, 99]}]
        assert r["topic"] == topic and r["partition"] == 0 and isinstance(r["offset"], int)
        assert r["timestampType"] == "CREATE_TIME" and r["timestamp"] > 0


def test_dead_broker_status_and_other_triggers_unaffected(wisp, kafka, tmp_path):
    topic = unique("alive")
    create_topic(kafka, topic)
    name, sink = deploy_sink(wisp, tmp_path, "kdead", fail_every=0)
    dead_port = free_port()
    status, dead = add_trigger(wisp, name, base_config(kafka, topic, BootstrapServers=[f"127.0.0.1:{dead_port}"],
                                                       Username="wisp", Password=SECRET,
                                                       SaslMechanism="SCRAM-SHA-256"))
    assert status == 201, dead
    status, live = add_trigger(wisp, name, base_config(kafka, topic))
    assert status == 201, live

    def failing():
        s = trigger_status(wisp, name, dead["Id"])["Status"]
        return s.get("Connected") is False and s.get("LastError") and s
    s = wait_for(failing, timeout=30, interval=0.5, message="dead trigger reports its failure")
    assert s["State"] == "Reconnecting", s
    assert f"127.0.0.1:{dead_port}" in s["LastError"], s
    produce_ids(kafka, topic, range(50), Produced())
    sink.wait_all(set(range(50)), timeout=60)
    # Still retrying, still failing, the other one still fine.
    assert trigger_status(wisp, name, dead["Id"])["Status"]["Connected"] is False
    assert trigger_status(wisp, name, live["Id"])["Status"]["Connected"] is True

    # The password is stored but never shown, nor logged.
    status, _, raw = http_request(wisp.endpoint, "GET", f"/wisp/v1/triggers?FunctionName={name}")
    assert status == 200 and SECRET.encode() not in raw
    cfg = trigger_status(wisp, name, dead["Id"])["Config"]
    assert cfg["Password"] == "******" and cfg["Username"] == "wisp", cfg
    r = run_cli(wisp, "triggers", "status", name)
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stdout + r.stderr
    assert dead["Id"] in r.stdout
    assert SECRET not in wisp.log_text()
    for t in (dead, live):
        assert http_request(wisp.endpoint, "DELETE", f"/wisp/v1/triggers/{t['Id']}")[0] == 204


def test_kafka_order_stream_example(wisp, kafka, tmp_path):
    env = cli_env(wisp, {"KAFKA_BOOTSTRAP": bootstrap(kafka), "ORDER_COUNT": "300", "WISP_CLI": wisp_bin()})
    r = subprocess.run([sys.executable, str(ROOT / "examples/kafka-order-stream/run.py")], env=env,
                       capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "300 orders produced" in r.stdout, r.stdout
    assert r.stdout.strip().endswith("order stream OK"), r.stdout
