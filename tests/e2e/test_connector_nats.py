"""The NATS JetStream connector against a real nats-server (JetStream on, file storage in
the test's tmp dir) and the real wisp binary: at-least-once delivery with retries and a
failure subject, stream order with one batch in flight, the server stopped mid-stream, wisp
killed mid-stream, payloads that are not JSON or UTF-8, a user's credentials, a trigger
pointed at nothing, secrets, and bad configurations.

The server has two users: the trigger's (with a password) and the test publisher's, which
is also the `no_auth_user`. Messages are published with nats-py through JetStream and each
publish waits for the stream's acknowledgement.
"""
from __future__ import annotations

import asyncio
import base64
import collections
import json
import threading
import time
import urllib.request
from pathlib import Path

import nats
import pytest

from brokers import BrokerProcess, Sink, delete, deploy_sink, dups, outage_mid_stream, trigger
from brokers import add_trigger as _add_trigger
from test_connector_rabbitmq import make_certs
from test_queues import sqs_client
from wisp_e2e import Server, create_function, free_port, http_request, lambda_client, run_cli, unique, wait_for

USER, SECRET = "wispconsumer", "nats-s3cr3t-Pw-71f0aa"
PUB_USER, PUB_SECRET = "publisher", "publisher-pw-0b2c"


def add_trigger(server, function: str, config) -> "tuple[int, dict]":
    return _add_trigger(server, "nats", function, config)

def nats_process(workdir: Path, port: int) -> BrokerProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nats.conf"
    monitor = free_port()
    conf.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"http: 127.0.0.1:{monitor}\n"
        f"jetstream {{ store_dir: \"{workdir / 'js'}\" }}\n"
        "authorization { users = [\n"
        f"  {{user: \"{USER}\", password: \"{SECRET}\"}}\n"
        f"  {{user: \"{PUB_USER}\", password: \"{PUB_SECRET}\"}}\n"
        "] }\n"
        f"no_auth_user: {PUB_USER}\n"
    )
    b = BrokerProcess("nats", ["nats-server", "-c", str(conf)], port, workdir)
    b.monitor_port = monitor
    return b


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = nats_process(tmp_path_factory.mktemp("nats"), free_port())
    try:
        b.start()
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="module")
def wisp(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("wisp-nats"), name="nats")
    try:
        s.start()
        yield s
    finally:
        s.close()


def server_url(b: BrokerProcess) -> str:
    return f"nats://127.0.0.1:{b.port}"


async def _connect(b: BrokerProcess):
    return await nats.connect(server_url(b), connect_timeout=5, max_reconnect_attempts=-1, reconnect_time_wait=0.3)


def run(coro):
    return asyncio.run(coro)


def add_stream(b: BrokerProcess, name: str, subjects: "list[str]") -> None:
    async def go():
        nc = await _connect(b)
        try:
            await nc.jetstream().add_stream(name=name, subjects=subjects)
        finally:
            await nc.close()
    run(go())


def publish(b: BrokerProcess, subject: str, bodies, pace: float = 0.0, retry_for: float = 0.0,
            headers: "dict | None" = None) -> None:
    """JetStream-publishes each body in order, waiting for each acknowledgement; with
    retry_for, rides out a server restart (a publish in flight then may be stored twice)."""
    async def go():
        nc = await _connect(b)
        js = nc.jetstream()
        try:
            pending = []
            for body in bodies:
                if not pace:
                    # Up to 200 publishes in flight, acknowledged in order.
                    pending.append(asyncio.ensure_future(js.publish(subject, body, headers=headers)))
                    if len(pending) >= 200:
                        await asyncio.gather(*pending)
                        pending = []
                    continue
                deadline = time.monotonic() + retry_for
                while True:
                    try:
                        await js.publish(subject, body, timeout=2, headers=headers)
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.3)
                await asyncio.sleep(pace)
            await asyncio.gather(*pending)
        finally:
            await nc.close()
    run(go())


def stream_docs(b: BrokerProcess, stream: str) -> "list[dict]":
    async def go():
        nc = await _connect(b)
        js = nc.jetstream()
        try:
            info = await js.stream_info(stream)
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                if info.state.messages == 0:
                    break
                out.append(json.loads((await js.get_msg(stream, seq)).data))
            return out
        finally:
            await nc.close()
    return run(go())


def consumer_info(b: BrokerProcess, stream: str, durable: str):
    async def go():
        nc = await _connect(b)
        try:
            return await nc.jetstream().consumer_info(stream, durable)
        finally:
            await nc.close()
    return run(go())


def failure_ids(docs: "list[dict]") -> "set[int]":
    ids = set()
    for doc in docs:
        for m in doc["requestPayload"]["messages"]:
            try:
                ids.add(int(json.loads(base64.b64decode(m["data"]))["id"]))
            except Exception:
                pass
    return ids


def ids_bodies(ids):
    return [json.dumps({"id": i}).encode() for i in ids]


def base_config(b: BrokerProcess, stream: str, **extra) -> dict:
    cfg = {"Servers": [server_url(b)], "Stream": stream, "Username": USER, "Password": SECRET,
           "RetryBaseDelayMs": 50, "MaximumRetryAttempts": 2}
    cfg.update(extra)
    return cfg


def names():
    """A fresh stream name and its subject prefix."""
    s = unique("S").replace("-", "_").upper()
    return s, s.lower()


# ----------------------------------------------------------------------------- tests


def test_bad_configs_are_refused(wisp, broker, tmp_path):
    name, _ = deploy_sink(wisp, tmp_path, "nbad")
    good = base_config(broker, "S")
    cases = [
        ({**good, "Nope": 1}, "unknown field"),
        ({**good, "Servers": [f"nats://{USER}:{SECRET}@127.0.0.1:{broker.port}"]}, "Username/Password"),
        ({**good, "Servers": ["http://127.0.0.1:4222"]}, "nats://"),
        ({**good, "Servers": []}, "Servers"),
        ({**good, "Servers": "nats://127.0.0.1:4222"}, "invalid type"),
        ({**good, "Servers": ["nats://127.0.0.1:0"]}, "port"),
        ({**good, "Servers": ["nats://127.0.0.1:4222/x"]}, "host:port"),
        ({k: v for k, v in good.items() if k != "Stream"}, "Stream"),
        ({**good, "Stream": "a.b"}, "Stream"),
        ({**good, "Stream": "a\nb"}, "Stream"),
        ({**good, "Subject": "a..b"}, "subject"),
        ({**good, "Subject": "a.>.b"}, "subject"),
        ({**good, "Durable": "has space"}, "Durable"),
        ({**good, "DeliverPolicy": "last"}, "DeliverPolicy"),
        ({**good, "StartingPosition": "AT_TIMESTAMP"}, "StartingPosition"),
        ({**good, "AckWait": 0}, "AckWait"),
        ({**good, "Token": "t"}, "either Token"),
        ({k: v for k, v in good.items() if k != "Username"}, "Username and Password"),
        ({**good, "CreateStream": {"Subjects": []}}, "CreateStream"),
        ({**good, "BatchSize": 0}, "BatchSize"),
        ({**good, "BatchSize": "ten"}, "invalid type"),
        ({**good, "MaximumConcurrency": 0}, "MaximumConcurrency"),
        ({**good, "Tls": {"Enabled": True, "Ca": "/x"}}, "unknown field"),
        ({**good, "Tls": {"Enabled": True, "CaFile": "/nonexistent/ca.pem"}}, "CaFile"),
        ("not an object", "JSON object"),
    ]
    for cfg, why in cases:
        status, body = add_trigger(wisp, name, cfg)
        assert status == 400, (cfg, status, body)
        assert why in json.dumps(body), (cfg, body)
        assert SECRET not in json.dumps(body), body
    status, _, raw = http_request(wisp.endpoint, "POST", "/wisp/v1/triggers", b"{\"Kind\": \"nats\", \xff")
    assert status == 400, raw
    status, body = add_trigger(wisp, name, {**good, "Stream": "s" * 100_000})
    assert status == 400, body


def test_5000_messages_in_order_with_failures_and_poison(wisp, broker, tmp_path):
    stream, prefix = names()
    dlq_stream = stream + "_DLQ"
    add_stream(broker, stream, [f"{prefix}.>"])
    add_stream(broker, dlq_stream, [f"{prefix}-dlq"])
    name, sink = deploy_sink(wisp, tmp_path, "n5000")
    poison = {1234, 4321}
    sink.set_poison(poison)
    publish(broker, f"{prefix}.orders", ids_bodies(range(5000)))
    status, trig = add_trigger(wisp, name, base_config(broker, stream, Subject=f"{prefix}.orders", BatchSize=100,
                                                       OnFailure=f"{prefix}-dlq"))
    assert status == 201, trig
    tid = trig["Id"]
    assert trig["Config"]["Password"] == "******"
    every = set(range(5000))
    wait_for(lambda: every - poison <= set(sink.handled()) | failure_ids(stream_docs(broker, dlq_stream)),
             timeout=150, interval=2, message="all 5000 handled or dead-lettered")
    docs = stream_docs(broker, dlq_stream)
    dead = failure_ids(docs)
    assert poison <= dead
    assert all("poison message" in d["errorMessage"] for d in docs), docs[0]["errorMessage"]
    assert all(d["requestPayload"]["eventSource"] == "wisp:nats" for d in docs)
    assert all(d["requestPayload"]["stream"] == stream for d in docs)
    handled = sink.handled()
    assert every <= set(handled) | dead, "lost messages"
    assert not (poison & set(handled))
    # One batch in flight (MaximumConcurrency 1): handled in stream order, retries included.
    first_seen = list(dict.fromkeys(handled))
    assert first_seen == sorted(first_seen), "handled out of stream order"
    print(f"nats 5000: handled {len(set(handled))} in stream order, dead-lettered {len(dead)} in {len(docs)} "
          f"batches, duplicates {dups(handled)}")

    def caught_up():
        s = trigger(wisp, name, tid)["Status"]
        return s.get("Connected") is True and s.get("Lag") == 0 and s
    s = wait_for(caught_up, timeout=30, interval=1, message="lag 0")
    assert s["DeadLettered"] >= 2 and s["Retried"] >= 1 and s["Fired"] > 0, s
    durable = f"wisp-{tid}"
    wait_for(lambda: consumer_info(broker, stream, durable).num_ack_pending == 0, timeout=30,
             message="nothing left unacknowledged")
    info = consumer_info(broker, stream, durable)
    assert info.config.max_ack_pending == 100, info.config
    delete(wisp, tid)


def test_failures_to_a_wisp_queue_and_created_stream(wisp, broker, tmp_path):
    """CreateStream makes the stream; OnFailure may be a wisp queue ARN."""
    stream, prefix = names()
    name, sink = deploy_sink(wisp, tmp_path, "narn", fail_every=0)
    sink.set_poison({7})
    sqs = sqs_client(wisp.endpoint)
    url = sqs.create_queue(QueueName=unique("nats-failures"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    status, trig = add_trigger(wisp, name, base_config(broker, stream, BatchSize=1, OnFailure=arn,
                                                       CreateStream={"Subjects": [f"{prefix}.*"]},
                                                       Durable="made-here"))
    assert status == 201, trig
    wait_for(lambda: trigger(wisp, name, trig["Id"])["Status"].get("Connected") is True, timeout=30)
    publish(broker, f"{prefix}.a", ids_bodies(range(5, 10)))
    sink.wait_all({5, 6, 8, 9}, timeout=60)
    got = wait_for(lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages"), timeout=30)
    doc = json.loads(got[0]["Body"])
    assert [json.loads(base64.b64decode(m["data"])) for m in doc["requestPayload"]["messages"]] == [{"id": 7}]
    assert doc["requestPayload"]["consumer"] == "made-here"
    wait_for(lambda: consumer_info(broker, stream, "made-here").num_ack_pending == 0, timeout=30)
    delete(wisp, trig["Id"])


def test_broker_stopped_mid_stream(wisp, broker, tmp_path):
    stream, prefix = names()
    add_stream(broker, stream, [f"{prefix}.>"])
    name, sink = deploy_sink(wisp, tmp_path, "nstop", fail_every=0)
    status, trig = add_trigger(wisp, name, base_config(broker, stream, BatchSize=20, AckWait=10))
    assert status == 201, trig
    total = 1500
    t = threading.Thread(target=publish, args=(broker, f"{prefix}.x", ids_bodies(range(total))),
                         kwargs={"pace": 0.004, "retry_for": 60})
    outage_mid_stream(wisp, broker, name, trig["Id"], sink, t)
    sink.wait_all(set(range(total)), timeout=120)
    handled = sink.handled()
    print(f"nats server stop: {total} published, all handled, duplicates {dups(handled)}")
    wait_for(lambda: trigger(wisp, name, trig["Id"])["Status"].get("Connected") is True, timeout=30)
    delete(wisp, trig["Id"])


def test_wisp_killed_mid_stream(make_server, broker, tmp_path):
    server = make_server(name="nats-kill")
    stream, prefix = names()
    add_stream(broker, stream, [f"{prefix}.>"])
    name, sink = deploy_sink(server, tmp_path, "nkill", fail_every=0)
    total = 3000
    publish(broker, f"{prefix}.x", ids_bodies(range(total)))
    status, trig = add_trigger(server, name, base_config(broker, stream, BatchSize=25, MaximumConcurrency=2,
                                                         AckWait=5, Durable="killed"))
    assert status == 201, trig
    wait_for(lambda: len(set(sink.handled())) >= 300, timeout=60, message="consumption started")
    server.kill9()
    before = len(set(sink.handled()))
    assert before < total, "everything was handled before the kill: the test did not test anything"
    pending = consumer_info(broker, stream, "killed").num_ack_pending
    server.restart()
    sink.wait_all(set(range(total)), timeout=120)
    handled = sink.handled()
    print(f"nats SIGKILL: {before} handled before the kill ({pending} unacknowledged), all {total} after, "
          f"duplicates {dups(handled)}")
    wait_for(lambda: consumer_info(broker, stream, "killed").num_ack_pending == 0, timeout=30,
             message="nothing left unacknowledged")


def test_payloads_that_are_not_json_or_utf8(wisp, broker, tmp_path):
    stream, prefix = names()
    add_stream(broker, stream, [f"{prefix}.>"])
    name, sink = deploy_sink(wisp, tmp_path, "nraw", fail_every=0)
    status, trig = add_trigger(wisp, name, base_config(broker, stream, Subject=f"{prefix}.raw.*",
                                                       StartingPosition="LATEST"))
    assert status == 201, trig
    wait_for(lambda: trigger(wisp, name, trig["Id"])["Status"].get("Connected") is True, timeout=30)
    payloads = [b"not json {", b"\xff\xfe\x00\x80binary\x00", b""]
    for p in payloads:
        publish(broker, f"{prefix}.raw.bin", [p], headers={"X-Kind": "raw"})
    publish(broker, f"{prefix}.other", ids_bodies([99]))  # filtered out by Subject
    publish(broker, f"{prefix}.raw.json", ids_bodies([77]))
    sink.wait_all({77}, timeout=60)
    wait_for(lambda: sum(len(json.loads(line)["messages"]) for line in sink.raw_events()) >= 3, timeout=30)
    got = []
    for line in sink.raw_events():
        ev = json.loads(line)
        assert ev["eventSource"] == "wisp:nats" and ev["stream"] == stream
        assert ev["consumer"] == f"wisp-{trig['Id']}"
        assert ev["eventSourceArn"].endswith(trig["Id"])
        got.extend(ev["messages"])
    raw = [m for m in got if m["subject"] == f"{prefix}.raw.bin"]
    assert [base64.b64decode(m["data"]) for m in raw] == payloads
    assert raw[0]["headers"] == {"X-Kind": ["raw"]}
    seqs = [m["sequence"]["stream"] for m in raw]
    assert seqs == sorted(seqs) and raw[0]["sequence"]["consumer"] >= 1
    assert raw[0]["redelivered"] is False and raw[0]["numDelivered"] == 1
    assert abs(raw[0]["timestamp"] / 1000 - time.time()) < 600
    assert 99 not in set(sink.handled())
    delete(wisp, trig["Id"])


def test_credentials_dead_broker_and_secrets(wisp, broker, tmp_path):
    stream, prefix = names()
    add_stream(broker, stream, [f"{prefix}.>"])
    name, sink = deploy_sink(wisp, tmp_path, "nacl", fail_every=0)
    dead_port = free_port()
    status, dead = add_trigger(wisp, name, base_config(broker, stream, Servers=[f"nats://127.0.0.1:{dead_port}"]))
    assert status == 201, dead
    status, wrong = add_trigger(wisp, name, base_config(broker, stream, Password="wrong-password"))
    assert status == 201, wrong
    status, missing = add_trigger(wisp, name, base_config(broker, "NO_SUCH_STREAM"))
    assert status == 201, missing
    status, live = add_trigger(wisp, name, base_config(broker, stream))
    assert status == 201, live

    def failing(t, connected=False):
        def check():
            s = trigger(wisp, name, t["Id"])["Status"]
            return s.get("Connected") is connected and s.get("LastError") and s
        return check
    s = wait_for(failing(dead), timeout=30, interval=0.5, message="dead trigger reports its failure")
    assert s["State"] == "Reconnecting", s
    s = wait_for(failing(wrong), timeout=30, interval=0.5, message="wrong password reported")
    assert "authorization" in s["LastError"].lower(), s
    s = wait_for(lambda: trigger(wisp, name, missing["Id"])["Status"].get("LastError"), timeout=30, interval=0.5,
                 message="missing stream reported")
    assert "stream not found" in s.lower() or "NO_SUCH_STREAM" in s, s
    publish(broker, f"{prefix}.x", ids_bodies(range(50)))
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
    # Deleting a trigger closes its connection (the server's monitoring port lists them).
    def wisp_connections():
        with urllib.request.urlopen(f"http://127.0.0.1:{broker.monitor_port}/connz", timeout=5) as r:
            return [c for c in json.loads(r.read()).get("connections") or [] if c.get("name") == "wisp"]
    assert len(wisp_connections()) >= 2  # the live and the missing-stream triggers
    for t in (dead, wrong, missing, live):
        delete(wisp, t["Id"])
    wait_for(lambda: wisp_connections() == [], timeout=30, interval=1,
             message="the deleted triggers' connections closed")


def test_tls(wisp, tmp_path):
    """tls:// with the server's CA in Tls.CaFile delivers; without it, the certificate is
    refused and the status says so. (A server of its own: TLS there is for every client.)"""
    ca, cert, key = make_certs(tmp_path / "certs")
    port = free_port()
    workdir = tmp_path / "nats-tls"
    workdir.mkdir()
    conf = workdir / "nats.conf"
    conf.write_text(f"listen: 127.0.0.1:{port}\njetstream {{ store_dir: \"{workdir / 'js'}\" }}\n"
                    f"tls {{ cert_file: \"{cert}\", key_file: \"{key}\" }}\n")
    b = BrokerProcess("nats-tls", ["nats-server", "-c", str(conf)], port, workdir)
    b.start()
    try:
        stream, prefix = names()
        name, sink = deploy_sink(wisp, tmp_path, "ntls", fail_every=0)
        servers = [f"tls://127.0.0.1:{port}"]
        status, good = add_trigger(wisp, name, {"Servers": servers, "Stream": stream, "Tls": {"CaFile": str(ca)},
                                                "CreateStream": {"Subjects": [f"{prefix}.>"]}})
        assert status == 201, good
        assert good["Config"]["Tls"] == {"Enabled": True, "CaFile": str(ca)}, good["Config"]
        status, untrusted = add_trigger(wisp, name, {"Servers": servers, "Stream": stream})
        assert status == 201, untrusted
        wait_for(lambda: trigger(wisp, name, good["Id"])["Status"].get("Connected") is True, timeout=30)

        async def go():
            import ssl
            ctx = ssl.create_default_context(cafile=str(ca))
            nc = await nats.connect(servers[0], tls=ctx, connect_timeout=5)
            try:
                js = nc.jetstream()
                for body in ids_bodies(range(20)):
                    await js.publish(f"{prefix}.x", body)
            finally:
                await nc.close()
        run(go())
        sink.wait_all(set(range(20)), timeout=60)
        s = wait_for(lambda: trigger(wisp, name, untrusted["Id"])["Status"].get("LastError"), timeout=30,
                     interval=0.5)
        assert "certificate" in s.lower() or "tls" in s.lower(), s
        assert trigger(wisp, name, untrusted["Id"])["Status"]["Connected"] is False
        for t in (good, untrusted):
            delete(wisp, t["Id"])
    finally:
        b.stop()
