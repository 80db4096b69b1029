"""The MQTT connector (3.1.1 and 5) against a real mosquitto (persistence on, password
file) and the real wisp binary: at-least-once delivery with retries and a failure topic
for both protocol versions, a broker stopped mid-stream, wisp killed mid-stream (the
persistent session queues what is published meanwhile), payloads that are not JSON or
UTF-8 with MQTT 5 properties, wrong credentials, a trigger pointed at nothing, secrets,
and bad configurations.

Messages are published with paho-mqtt at QoS 1, each waiting for the broker's PUBACK.
"""
from __future__ import annotations

import base64
import collections
import json
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from brokers import BrokerProcess, Sink, delete, deploy_sink, dups, outage_mid_stream, trigger
from brokers import add_trigger as _add_trigger
from wisp_e2e import Server, create_function, free_port, http_request, lambda_client, run_cli, unique, wait_for

SECRET = "mqtt-s3cr3t-Pw-1c9e44"
USER = "wisp"
PUB_USER, PUB_SECRET = "publisher", "publisher-pw"


def add_trigger(server, function: str, config) -> "tuple[int, dict]":
    return _add_trigger(server, "mqtt", function, config)

def mosquitto_process(workdir: Path, port: int) -> BrokerProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    passwd = workdir / "passwd"
    passwd.write_text("")
    for user, pw in ((USER, SECRET), (PUB_USER, PUB_SECRET)):
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, pw], check=True, capture_output=True,
                       stdin=subprocess.DEVNULL)
    passwd.chmod(0o600)
    conf = workdir / "mosquitto.conf"
    # Persistence saved every second and on SIGTERM, so a broker restart keeps queued and
    # in-flight QoS 1 messages; the queue limit raised far above the 5,000 the tests send.
    conf.write_text(
        f"user root\nlistener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n"
        f"persistence true\npersistence_location {workdir}/\nautosave_interval 1\n"
        f"max_queued_messages 100000\nmax_queued_bytes 0\nlog_dest stdout\nlog_type error\nlog_type warning\n"
    )
    return BrokerProcess("mosquitto", ["mosquitto", "-c", str(conf)], port, workdir)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = mosquitto_process(tmp_path_factory.mktemp("mosquitto"), free_port())
    try:
        b.start()
        yield b
    finally:
        b.stop()


def client(b: BrokerProcess, version: int = 5, client_id: str = "") -> mqtt.Client:
    proto = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or unique("pub"), protocol=proto)
    c.username_pw_set(PUB_USER, PUB_SECRET)
    c.max_inflight_messages_set(100)
    c.reconnect_delay_set(0.2, 2)
    c.connect("127.0.0.1", b.port, keepalive=30)
    c.loop_start()
    wait_for(c.is_connected, timeout=15, message="publisher connected")
    return c


def publish(b: BrokerProcess, topic: str, ids, version: int = 5, pace: float = 0.0, qos: int = 1) -> None:
    """Publishes {"id": N} per id at QoS 1 and waits for every PUBACK. Paced (the broker
    restart test), each message is confirmed before the next and re-sent while the broker is
    away (a message the broker took but did not confirm may arrive twice: counted, not lost)."""
    c = client(b, version)
    try:
        if not pace:
            infos = [c.publish(topic, json.dumps({"id": mid}), qos=qos) for mid in ids]
            for info in infos:
                info.wait_for_publish(timeout=120)
                assert info.is_published(), "a publish was not acknowledged"
            return
        for mid in ids:
            deadline = time.monotonic() + 120
            while True:
                try:
                    info = c.publish(topic, json.dumps({"id": mid}), qos=qos)
                    info.wait_for_publish(timeout=5)
                    if info.is_published():
                        break
                except (RuntimeError, ValueError):
                    pass
                assert time.monotonic() < deadline, f"message {mid} never acknowledged"
                time.sleep(0.2)
            time.sleep(pace)
    finally:
        c.loop_stop()
        c.disconnect()


class Collector:
    """A subscriber that keeps every message of a topic (the failure topic)."""

    def __init__(self, b: BrokerProcess, topic: str):
        self.messages: list[bytes] = []
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=unique("dlq"), protocol=mqtt.MQTTv5)
        self.c.username_pw_set(PUB_USER, PUB_SECRET)
        self.c.on_message = lambda _c, _u, m: self.messages.append(m.payload)
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.connect("127.0.0.1", b.port)
        self.c.loop_start()
        self.c.subscribe(topic, qos=1)
        assert subscribed.wait(15), "collector subscribed"

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()

    def ids(self) -> "tuple[set[int], list[dict]]":
        ids, docs = set(), []
        for raw in list(self.messages):
            doc = json.loads(raw)
            docs.append(doc)
            for m in doc["requestPayload"]["messages"]:
                try:
                    ids.add(int(json.loads(base64.b64decode(m["payload"]))["id"]))
                except Exception:
                    pass
        return ids, docs


def wait_connected(server: Server, function: str, trigger_id: str, timeout: float = 30) -> None:
    """Connected means subscribed (the SUBACK came back): publishing is safe from here."""
    wait_for(lambda: trigger(server, function, trigger_id)["Status"].get("Connected") is True,
             timeout=timeout, interval=0.2, message="trigger connected and subscribed")


def base_config(b: BrokerProcess, topics, **extra) -> dict:
    cfg = {"Url": f"mqtt://127.0.0.1:{b.port}", "Topics": topics, "Username": USER, "Password": SECRET,
           "RetryBaseDelayMs": 50, "MaximumRetryAttempts": 2}
    cfg.update(extra)
    return cfg


@pytest.fixture(scope="module")
def wisp(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("wisp-mqtt"), name="mqtt")
    try:
        s.start()
        yield s
    finally:
        s.close()


# ----------------------------------------------------------------------------- tests


def test_bad_configs_are_refused(wisp, broker, tmp_path):
    name, _ = deploy_sink(wisp, tmp_path, "mbad")
    good = base_config(broker, ["a/b"])
    cases = [
        ({**good, "Nope": 1}, "unknown field"),
        ({**good, "Url": f"mqtt://u:pw@127.0.0.1:{broker.port}"}, "Username/Password"),
        ({**good, "Url": "http://127.0.0.1:1"}, "scheme"),
        ({**good, "Url": "mqtt://127.0.0.1:1/path"}, "path"),
        ({**good, "Topics": []}, "Topics"),
        ({**good, "Topics": "a/b"}, "invalid type"),
        ({**good, "Topics": ["a/#/b"]}, "'#'"),
        ({**good, "Topics": ["a+/b"]}, "'+'"),
        ({**good, "Topics": ["a\u0000b"]}, "NUL"),
        ({**good, "Qos": 3}, "Qos"),
        ({**good, "ProtocolVersion": 4}, "ProtocolVersion"),
        ({**good, "ClientId": "a\nb"}, "ClientId"),
        ({k: v for k, v in good.items() if k != "Username"}, "Username"),
        ({**good, "KeepAliveSeconds": 0}, "KeepAliveSeconds"),
        ({**good, "Tls": {"Enabled": True, "Ca": "/x"}}, "unknown field"),
        ({**good, "Tls": {"Enabled": True, "CaFile": "/nonexistent/ca.pem"}}, "CaFile"),
        ({**good, "BatchSize": 0}, "BatchSize"),
        ({**good, "BatchSize": "ten"}, "invalid type"),
        ("not an object", "JSON object"),
    ]
    for cfg, why in cases:
        status, body = add_trigger(wisp, name, cfg)
        assert status == 400, (cfg, status, body)
        assert why in json.dumps(body), (cfg, body)
    status, _, raw = http_request(wisp.endpoint, "POST", "/wisp/v1/triggers", b"{\"Kind\": \"mqtt\", \xff")
    assert status == 400, raw
    status, body = add_trigger(wisp, name, {**good, "Topics": ["t" * 70_000]})
    assert status == 400, body


@pytest.mark.parametrize("version", [5, 3])
def test_5000_messages_with_failures_and_poison(wisp, broker, tmp_path, version):
    topic, dlq = f"sensors/{unique('v')}", f"dlq/{unique('v')}"
    name, sink = deploy_sink(wisp, tmp_path, f"m5000v{version}")
    poison = {1234, 4321}
    sink.set_poison(poison)
    collector = Collector(broker, dlq)
    try:
        status, trig = add_trigger(wisp, name, base_config(broker, [f"{topic}/+"], ProtocolVersion=version,
                                                           BatchSize=100, MaximumConcurrency=3, OnFailure=dlq))
        assert status == 201, trig
        tid = trig["Id"]
        wait_connected(wisp, name, tid)
        # Two subtopics, one filter with a wildcard.
        a = threading.Thread(target=publish, args=(broker, f"{topic}/a", range(0, 5000, 2), version))
        a.start()
        publish(broker, f"{topic}/b", range(1, 5000, 2), version)
        a.join(timeout=200)
        every = set(range(5000))
        wait_for(lambda: every - poison <= set(sink.handled()) | collector.ids()[0],
                 timeout=150, interval=2, message="all 5000 handled or dead-lettered")
        wait_for(lambda: poison <= collector.ids()[0], timeout=30, message="poison in the failure topic")
        dead, docs = collector.ids()
    finally:
        collector.close()
    assert all("poison message" in d["errorMessage"] for d in docs), docs[0]["errorMessage"]
    assert all(d["requestPayload"]["eventSource"] == "wisp:mqtt" for d in docs)
    assert all(d["requestContext"]["condition"] == "RetryAttemptsExhausted" for d in docs)
    handled = sink.handled()
    assert every <= set(handled) | dead, "lost messages"
    assert not (poison & set(handled))
    print(f"mqtt v{version} 5000: handled {len(set(handled))}, dead-lettered {len(dead)} in {len(docs)} batches, "
          f"duplicates {dups(handled)}")
    s = trigger(wisp, name, tid)["Status"]
    assert s["Connected"] is True and s["DeadLettered"] >= 2 and s["Retried"] >= 1 and s["Fired"] > 0, s
    assert http_request(wisp.endpoint, "DELETE", f"/wisp/v1/triggers/{tid}")[0] == 204


def test_broker_stopped_mid_stream(wisp, broker, tmp_path):
    topic = f"stop/{unique('t')}"
    name, sink = deploy_sink(wisp, tmp_path, "mstop", fail_every=0)
    status, trig = add_trigger(wisp, name, base_config(broker, [topic], BatchSize=20, ProtocolVersion=3))
    assert status == 201, trig
    wait_connected(wisp, name, trig["Id"])
    total = 1500
    t = threading.Thread(target=publish, args=(broker, topic, range(total), 3), kwargs={"pace": 0.006})
    outage_mid_stream(wisp, broker, name, trig["Id"], sink, t, gone_within=8, outage=9)
    sink.wait_all(set(range(total)), timeout=120)
    handled = sink.handled()
    print(f"mqtt broker stop: {total} published, all handled, duplicates {dups(handled)}")
    wait_connected(wisp, name, trig["Id"])
    assert http_request(wisp.endpoint, "DELETE", f"/wisp/v1/triggers/{trig['Id']}")[0] == 204


def test_wisp_killed_mid_stream(make_server, broker, tmp_path):
    server = make_server(name="mqtt-kill")
    topic = f"kill/{unique('t')}"
    name, sink = deploy_sink(server, tmp_path, "mkill", fail_every=0)
    # Small batches: consumption takes long enough to be killed in the middle of it.
    status, trig = add_trigger(server, name, base_config(broker, [topic], BatchSize=5, MaximumConcurrency=2))
    assert status == 201, trig
    wait_connected(server, name, trig["Id"])
    total = 3000
    # Published one by one, confirmed, while wisp consumes, is killed, and is away: what
    # comes meanwhile is queued by the broker in the trigger's persistent session.
    t = threading.Thread(target=publish, args=(broker, topic, range(total)), kwargs={"pace": 0.0005})
    t.start()
    try:
        wait_for(lambda: len(set(sink.handled())) >= 300, timeout=60, interval=0.05, message="consumption started")
        server.kill9()
        before = len(set(sink.handled()))
    finally:
        t.join(timeout=200)
    assert before < total, "everything was handled before the kill: the test did not test anything"
    server.restart()
    sink.wait_all(set(range(total)), timeout=120)
    handled = sink.handled()
    print(f"mqtt SIGKILL: {before} handled before the kill, all {total} after, duplicates {dups(handled)}")


def test_payloads_that_are_not_json_or_utf8(wisp, broker, tmp_path):
    topic = f"raw/{unique('t')}"
    name, sink = deploy_sink(wisp, tmp_path, "mraw", fail_every=0)
    status, trig = add_trigger(wisp, name, base_config(broker, [f"{topic}/#"], ClientId=unique("wisp-raw")))
    assert status == 201, trig
    wait_connected(wisp, name, trig["Id"])
    c = client(broker, 5)
    payloads = [b"not json {", b"\xff\xfe\x00\x80binary\x00", b""]
    try:
        for i, v in enumerate(payloads):
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = [("k", "v1"), ("k", "v2")]
            props.ContentType = "application/octet-stream"
            props.CorrelationData = b"\x00\xff" + bytes([i])
            c.publish(f"{topic}/{i}", v, qos=1, properties=props).wait_for_publish(30)
        c.publish(f"{topic}/json", json.dumps({"id": 77}), qos=1).wait_for_publish(30)
    finally:
        c.loop_stop()
        c.disconnect()
    sink.wait_all({77}, timeout=60)
    wait_for(lambda: len(sink.raw_events()) >= 1, timeout=30)
    by_topic = {}
    for line in sink.raw_events():
        ev = json.loads(line)
        assert ev["eventSource"] == "wisp:mqtt" and ev["broker"] == f"mqtt://127.0.0.1:{broker.port}"
        for m in ev["messages"]:
            by_topic[m["topic"]] = m
    for i, v in enumerate(payloads):
        m = by_topic[f"{topic}/{i}"]
        assert base64.b64decode(m["payload"]) == v
        assert m["qos"] == 1 and m["retain"] is False
        p = m["properties"]
        assert p["userProperties"] == [["k", "v1"], ["k", "v2"]], p
        assert p["contentType"] == "application/octet-stream"
        assert base64.b64decode(p["correlationData"]) == b"\x00\xff" + bytes([i])
    assert http_request(wisp.endpoint, "DELETE", f"/wisp/v1/triggers/{trig['Id']}")[0] == 204


def test_credentials_dead_broker_and_secrets(wisp, broker, tmp_path):
    topic = f"acl/{unique('t')}"
    name, sink = deploy_sink(wisp, tmp_path, "macl", fail_every=0)
    dead_port = free_port()
    status, dead = add_trigger(wisp, name, base_config(broker, [topic], Url=f"mqtt://127.0.0.1:{dead_port}"))
    assert status == 201, dead
    status, wrong = add_trigger(wisp, name, base_config(broker, [topic], Password="wrong-password", ProtocolVersion=3))
    assert status == 201, wrong
    status, live = add_trigger(wisp, name, base_config(broker, [topic], Qos=0))
    assert status == 201, live

    def failing(t):
        def check():
            s = trigger(wisp, name, t["Id"])["Status"]
            return s.get("Connected") is False and s.get("LastError") and s
        return check
    s = wait_for(failing(dead), timeout=30, interval=0.5, message="dead trigger reports its failure")
    assert s["State"] == "Reconnecting" and f"127.0.0.1:{dead_port}" in s["LastError"], s
    s = wait_for(failing(wrong), timeout=30, interval=0.5, message="wrong password reported")
    assert "refused" in s["LastError"].lower() or "auth" in s["LastError"].lower(), s
    wait_connected(wisp, name, live["Id"])
    publish(broker, topic, range(50))
    sink.wait_all(set(range(50)), timeout=60)
    assert trigger(wisp, name, dead["Id"])["Status"]["Connected"] is False
    assert trigger(wisp, name, wrong["Id"])["Status"]["Connected"] is False
    assert trigger(wisp, name, live["Id"])["Status"]["Connected"] is True

    status, _, raw = http_request(wisp.endpoint, "GET", f"/wisp/v1/triggers?FunctionName={name}")
    assert status == 200 and SECRET.encode() not in raw and b"wrong-password" not in raw
    cfg = trigger(wisp, name, live["Id"])["Config"]
    assert cfg["Password"] == "******" and cfg["Username"] == USER and cfg["Qos"] == 0, cfg
    r = run_cli(wisp, "triggers", "status", name)
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stdout + r.stderr and dead["Id"] in r.stdout
    log = wisp.log_text()
    assert SECRET not in log and "wrong-password" not in log
    for t in (dead, wrong, live):
        assert http_request(wisp.endpoint, "DELETE", f"/wisp/v1/triggers/{t['Id']}")[0] == 204
