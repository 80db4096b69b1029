"""The Redis Streams connector against a real redis-server (AOF on, fsync always) and the
real wisp binary: at-least-once delivery with retries and a failure stream, a broker
stopped mid-stream, wisp killed mid-stream, payloads that are not JSON or UTF-8, an ACL
user's credentials, a trigger pointed at nothing, secrets, and bad configurations.

Entries are added with redis-py (XADD); each carries its test id as `{"id": N}` in the
field `data`, which is where the broker_sink function finds it.
"""
from __future__ import annotations

import base64
import collections
import json
import threading
import time
from pathlib import Path

import pytest
import redis

from brokers import BrokerProcess, Sink, delete, deploy_sink, dups, outage_mid_stream, trigger
from brokers import add_trigger as _add_trigger
from wisp_e2e import Server, create_function, free_port, http_request, lambda_client, run_cli, unique, wait_for

SECRET = "redis-s3cr3t-Pw-5b7d0a"
USER = "wispconsumer"


def add_trigger(server, function: str, config) -> "tuple[int, dict]":
    return _add_trigger(server, "redis", function, config)

def redis_process(workdir: Path, port: int) -> BrokerProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "redis.conf"
    # An ACL user with a password for the credentials test; the default user stays open
    # for the test's own publisher.
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {workdir}\nappendonly yes\nappendfsync always\nsave \"\"\n"
        f"user {USER} on >{SECRET} ~* &* +@all\n"
    )
    return BrokerProcess("redis", ["redis-server", str(conf)], port, workdir)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = redis_process(tmp_path_factory.mktemp("redis"), free_port())
    try:
        b.start()
        yield b
    finally:
        b.stop()


def conn(b: BrokerProcess) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=b.port, socket_timeout=10)


def url(b: BrokerProcess) -> str:
    return f"redis://127.0.0.1:{b.port}/0"


def base_config(b: BrokerProcess, stream: str, **extra) -> dict:
    cfg = {"Url": url(b), "Stream": stream, "Group": "wisp", "RetryBaseDelayMs": 50, "MaximumRetryAttempts": 2}
    cfg.update(extra)
    return cfg


@pytest.fixture(scope="module")
def wisp(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("wisp-redis"), name="redis")
    try:
        s.start()
        yield s
    finally:
        s.close()


def publish_ids(b: BrokerProcess, stream: str, ids, pace: float = 0.0, retry_for: float = 0.0) -> None:
    """XADDs {"id": N} for each id, in order; with retry_for, rides out a broker restart."""
    r = conn(b)
    pipe_ids = list(ids)
    step = 1 if pace else 200
    i = 0
    while i < len(pipe_ids):
        chunk = pipe_ids[i:i + step]
        deadline = time.monotonic() + retry_for
        while True:
            try:
                p = r.pipeline(transaction=False)
                for mid in chunk:
                    p.xadd(stream, {"data": json.dumps({"id": mid})})
                p.execute()
                break
            except (redis.ConnectionError, redis.TimeoutError):
                # The broker went away: an XADD that reached its AOF may be added twice here,
                # which a test tolerates (duplicates are counted, never lost).
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
                r = conn(b)
        i += step
        if pace:
            time.sleep(pace)


def failure_ids(b: BrokerProcess, stream: str) -> "tuple[set[int], list[dict]]":
    ids, docs = set(), []
    for _, fields in conn(b).xrange(stream):
        doc = json.loads(fields[b"record"])
        docs.append(doc)
        for rec in doc["requestPayload"]["records"]:
            try:
                ids.add(int(json.loads(base64.b64decode(rec["fields"]["data"]))["id"]))
            except Exception:
                pass
    return ids, docs


# ----------------------------------------------------------------------------- tests


def test_bad_configs_are_refused(wisp, broker, tmp_path):
    name, _ = deploy_sink(wisp, tmp_path, "rbad")
    good = base_config(broker, "s")
    cases = [
        ({**good, "Nope": 1}, "unknown field"),
        ({**good, "Url": f"redis://u:pw@127.0.0.1:{broker.port}/0"}, "Username/Password"),
        ({**good, "Url": f"redis://:pw@127.0.0.1:{broker.port}/0"}, "Username/Password"),
        ({**good, "Url": "http://127.0.0.1:1/0"}, "scheme"),
        ({**good, "Url": "redis://127.0.0.1:1/zero"}, "database"),
        ({**good, "Url": "not a url"}, "Url"),
        ({k: v for k, v in good.items() if k != "Group"}, "Group"),
        ({**good, "Stream": ""}, "Stream"),
        ({**good, "Stream": "a\nb"}, "Stream"),
        ({**good, "Consumer": "x" * 2000}, "Consumer"),
        ({**good, "StartingPosition": "AT_TIMESTAMP"}, "unknown variant"),
        ({**good, "BatchSize": 0}, "BatchSize"),
        ({**good, "BatchSize": "ten"}, "invalid type"),
        ({**good, "MaximumConcurrency": 0}, "MaximumConcurrency"),
        ({**good, "Username": "u"}, "Password"),
        ({**good, "Tls": {"Enabled": True, "Ca": "/x"}}, "unknown field"),
        ({**good, "Tls": {"Enabled": True, "CaFile": "/nonexistent/ca.pem"}}, "CaFile"),
        ({**good, "ClaimIdleSeconds": 0}, "ClaimIdleSeconds"),
        ("not an object", "JSON object"),
    ]
    for cfg, why in cases:
        status, body = add_trigger(wisp, name, cfg)
        assert status == 400, (cfg, status, body)
        assert why in json.dumps(body), (cfg, body)
    status, _, raw = http_request(wisp.endpoint, "POST", "/wisp/v1/triggers", b"{\"Kind\": \"redis\", \xff")
    assert status == 400, raw
    status, body = add_trigger(wisp, name, {**good, "Stream": "s" * 100_000})
    assert status == 400, body


def test_5000_messages_with_failures_and_poison(wisp, broker, tmp_path):
    stream, dlq = unique("readings"), unique("readings-dlq")
    name, sink = deploy_sink(wisp, tmp_path, "r5000")
    poison = {1234, 4321}
    sink.set_poison(poison)
    publish_ids(broker, stream, range(5000))
    status, trig = add_trigger(wisp, name, base_config(broker, stream, BatchSize=100, MaximumConcurrency=3,
                                                       OnFailure=dlq))
    assert status == 201, trig
    tid = trig["Id"]
    every = set(range(5000))
    wait_for(lambda: every - poison <= set(sink.handled()) | failure_ids(broker, dlq)[0],
             timeout=150, interval=2, message="all 5000 handled or dead-lettered")
    dead, docs = failure_ids(broker, dlq)
    assert poison <= dead
    assert all("poison message" in d["errorMessage"] for d in docs), docs[0]["errorMessage"]
    assert all(d["requestPayload"]["eventSource"] == "wisp:redis" for d in docs)
    assert all(d["requestPayload"]["stream"] == stream for d in docs)
    assert all(d["requestContext"]["condition"] == "RetryAttemptsExhausted" for d in docs)
    handled = sink.handled()
    assert every <= set(handled) | dead, "lost messages"
    assert not (poison & set(handled))
    print(f"redis 5000: handled {len(set(handled))}, dead-lettered {len(dead)} in {len(docs)} batches, "
          f"duplicates {dups(handled)}")

    # Nothing left pending in the group; the status shows it caught up.
    def caught_up():
        s = trigger(wisp, name, tid)["Status"]
        return s.get("Connected") is True and s.get("Lag") == 0 and s
    s = wait_for(caught_up, timeout=30, interval=1, message="lag 0")
    assert s["DeadLettered"] >= 2 and s["Retried"] >= 1 and s["Fired"] > 0, s
    assert conn(broker).xpending(stream, "wisp")["pending"] == 0
    assert http_request(wisp.endpoint, "DELETE", f"/wisp/v1/triggers/{tid}")[0] == 204


def test_broker_stopped_mid_stream(wisp, broker, tmp_path):
    stream = unique("stop")
    name, sink = deploy_sink(wisp, tmp_path, "rstop", fail_every=0)
    status, trig = add_trigger(wisp, name, base_config(broker, stream, BatchSize=20))
    assert status == 201, trig
    total = 1500
    t = threading.Thread(target=publish_ids, args=(broker, stream, range(total)),
                         kwargs={"pace": 0.006, "retry_for": 60})
    outage_mid_stream(wisp, broker, name, trig["Id"], sink, t, gone_within=8, outage=9)
    sink.wait_all(set(range(total)), timeout=120)
    handled = sink.handled()
    print(f"redis broker stop: {total} published, all handled, duplicates {dups(handled)}")
    wait_for(lambda: trigger(wisp, name, trig["Id"])["Status"].get("Connected") is True, timeout=30)
    assert http_request(wisp.endpoint, "DELETE", f"/wisp/v1/triggers/{trig['Id']}")[0] == 204


def test_wisp_killed_mid_stream(make_server, broker, tmp_path):
    server = make_server(name="redis-kill")
    stream = unique("killed")
    name, sink = deploy_sink(server, tmp_path, "rkill", fail_every=0)
    status, trig = add_trigger(server, name, base_config(broker, stream, BatchSize=25, MaximumConcurrency=2,
                                                         Consumer="killed-consumer"))
    assert status == 201, trig
    total = 3000
    publish_ids(broker, stream, range(total))
    wait_for(lambda: len(set(sink.handled())) >= 300, timeout=60, message="consumption started")
    server.kill9()
    before = len(set(sink.handled()))
    assert before < total, "everything was handled before the kill: the test did not test anything"
    pending = conn(broker).xpending(stream, "wisp")["pending"]
    server.restart()
    sink.wait_all(set(range(total)), timeout=120)
    handled = sink.handled()
    print(f"redis SIGKILL: {before} handled before the kill ({pending} pending in the group), "
          f"all {total} after, duplicates {dups(handled)}")
    wait_for(lambda: conn(broker).xpending(stream, "wisp")["pending"] == 0, timeout=30,
             message="nothing left pending")


def test_entries_of_a_dead_consumer_are_claimed(wisp, broker, tmp_path):
    """Entries another consumer of the group read and never acknowledged are claimed once
    idle for ClaimIdleSeconds (XAUTOCLAIM) and delivered."""
    stream = unique("claim")
    r = conn(broker)
    r.xgroup_create(stream, "wisp", id="0", mkstream=True)
    publish_ids(broker, stream, range(40))
    got = r.xreadgroup("wisp", "crashed-consumer", {stream: ">"}, count=40)
    assert len(got[0][1]) == 40
    name, sink = deploy_sink(wisp, tmp_path, "rclaim", fail_every=0)
    status, trig = add_trigger(wisp, name, base_config(broker, stream, ClaimIdleSeconds=2))
    assert status == 201, trig
    sink.wait_all(set(range(40)), timeout=60)
    wait_for(lambda: r.xpending(stream, "wisp")["pending"] == 0, timeout=30, message="claimed entries acked")
    assert http_request(wisp.endpoint, "DELETE", f"/wisp/v1/triggers/{trig['Id']}")[0] == 204


def test_payloads_that_are_not_json_or_utf8(wisp, broker, tmp_path):
    stream = unique("raw")
    name, sink = deploy_sink(wisp, tmp_path, "rraw", fail_every=0)
    status, trig = add_trigger(wisp, name, base_config(broker, stream))
    assert status == 201, trig
    r = conn(broker)
    payloads = [b"not json {", b"\xff\xfe\x00\x80binary\x00", b""]
    ids = [r.xadd(stream, {"data": v, b"k\xffey": b"\x00\x01"}).decode() for v in payloads]
    # Repeated field names (raw XADD) are kept too.
    rep = r.execute_command("XADD", stream, "*", "data", b"dup-1", "data", b"dup-2").decode()
    r.xadd(stream, {"data": json.dumps({"id": 77})})
    sink.wait_all({77}, timeout=60)
    wait_for(lambda: len(sink.raw_events()) >= 1, timeout=30)
    records = {}
    for line in sink.raw_events():
        ev = json.loads(line)
        assert ev["eventSource"] == "wisp:redis" and ev["stream"] == stream and ev["group"] == "wisp"
        assert ev["url"] == url(broker)
        for rec in ev["records"]:
            records[rec["id"]] = rec
    for eid, v in zip(ids, payloads):
        rec = records[eid]
        assert base64.b64decode(rec["fields"]["data"]) == v
        assert rec["timestamp"] == int(eid.split("-")[0]) and rec["deliveryCount"] >= 1
        # The non-UTF-8 field name is only in rawFields, exactly.
        pairs = [(base64.b64decode(k), base64.b64decode(x)) for k, x in rec["rawFields"]]
        assert (b"k\xffey", b"\x00\x01") in pairs and (b"data", v) in pairs
    pairs = [(base64.b64decode(k), base64.b64decode(x)) for k, x in records[rep]["rawFields"]]
    assert pairs == [(b"data", b"dup-1"), (b"data", b"dup-2")]
    assert http_request(wisp.endpoint, "DELETE", f"/wisp/v1/triggers/{trig['Id']}")[0] == 204


def test_credentials_dead_broker_and_secrets(wisp, broker, tmp_path):
    stream = unique("acl")
    name, sink = deploy_sink(wisp, tmp_path, "racl", fail_every=0)
    dead_port = free_port()
    status, dead = add_trigger(wisp, name, base_config(broker, stream, Url=f"redis://127.0.0.1:{dead_port}/0",
                                                       Username=USER, Password=SECRET))
    assert status == 201, dead
    status, wrong = add_trigger(wisp, name, base_config(broker, stream, Username=USER, Password="wrong-password"))
    assert status == 201, wrong
    status, live = add_trigger(wisp, name, base_config(broker, stream, Username=USER, Password=SECRET,
                                                       Group="acl-group"))
    assert status == 201, live

    def failing(t):
        def check():
            s = trigger(wisp, name, t["Id"])["Status"]
            return s.get("Connected") is False and s.get("LastError") and s
        return check
    s = wait_for(failing(dead), timeout=30, interval=0.5, message="dead trigger reports its failure")
    assert s["State"] == "Reconnecting", s
    assert f"127.0.0.1:{dead_port}" in s["LastError"], s
    s = wait_for(failing(wrong), timeout=30, interval=0.5, message="wrong password reported")
    assert "authentication failed" in s["LastError"].lower(), s
    publish_ids(broker, stream, range(50))
    sink.wait_all(set(range(50)), timeout=60)
    assert trigger(wisp, name, dead["Id"])["Status"]["Connected"] is False
    assert trigger(wisp, name, live["Id"])["Status"]["Connected"] is True
    # The group was created by the ACL user's trigger.
    assert any(g["name"] == b"acl-group" for g in conn(broker).xinfo_groups(stream))

    status, _, raw = http_request(wisp.endpoint, "GET", f"/wisp/v1/triggers?FunctionName={name}")
    assert status == 200 and SECRET.encode() not in raw and b"wrong-password" not in raw
    cfg = trigger(wisp, name, live["Id"])["Config"]
    assert cfg["Password"] == "******" and cfg["Username"] == USER, cfg
    r = run_cli(wisp, "triggers", "status", name)
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stdout + r.stderr and dead["Id"] in r.stdout
    log = wisp.log_text()
    assert SECRET not in log and "wrong-password" not in log
    for t in (dead, wrong, live):
        assert http_request(wisp.endpoint, "DELETE", f"/wisp/v1/triggers/{t['Id']}")[0] == 204
