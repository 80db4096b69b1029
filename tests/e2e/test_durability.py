"""Nothing acknowledged is lost: async events survive kill -9, failing async
events are retried, throttled ones wait, and SIGTERM lets in-flight work finish."""
from __future__ import annotations

import threading
import time
from collections import Counter

from wisp_e2e import (
    create_function,
    descendants,
    invoke,
    lambda_client,
    pid_alive,
    read_lines,
    unique,
    wait_for,
)


def serial_env(tmp_path) -> dict:
    return {"OUT_FILE": str(tmp_path / "ids.txt"), "LOCK_FILE": str(tmp_path / "lock")}


def test_async_events_survive_kill_9(make_server, tmp_path):
    srv = make_server("--async-retry-base-ms", "100", name="durability")
    lam = srv.client()
    name = unique("dur-kill9")
    env = serial_env(tmp_path)
    out = env["OUT_FILE"]
    create_function(lam, name, fixture="py_serial", env=env, timeout=60)

    ids = [str(i) for i in range(50)]
    for i in ids:
        r = invoke(lam, name, {"id": i}, invocation_type="Event")
        assert r.status == 202, f"event {i} not accepted"

    # Each run holds a lock for 0.2 s, so 50 take >= 10 s: crash after ~5.
    wait_for(lambda: len(read_lines(out)) >= 5, timeout=60, interval=0.05, message="first 5 events ran")
    srv.kill9()
    before = set(read_lines(out))
    print(f"{len(before)} of {len(ids)} events had started when the server was killed")
    assert len(before) < len(ids), "vacuous: every event ran before the crash"

    srv.start()
    missing = lambda: sorted(set(ids) - set(read_lines(out)), key=int)  # noqa: E731
    wait_for(lambda: not missing(), timeout=120, interval=0.5, message="all 50 events after restart")
    assert set(read_lines(out)) == set(ids)

    # The server works normally after the restart, and the function is still there.
    lam = srv.client()
    assert lam.get_function_configuration(FunctionName=name)["FunctionName"] == name
    assert invoke(lam, name, {"id": "sync-after-restart", "sleep": 0}).payload == {"id": "sync-after-restart"}


def test_async_failures_are_retried_twice(server, lam, tmp_path):
    # The default server runs with --async-retry-base-ms 200 (retries after ~0.2 s and ~0.4 s).
    name = unique("dur-retry")
    env = serial_env(tmp_path)
    create_function(lam, name, fixture="py_serial", env=env)
    r = invoke(lam, name, {"id": "r1", "fail": True, "sleep": 0}, invocation_type="Event")
    assert r.status == 202
    wait_for(lambda: len(read_lines(env["OUT_FILE"])) >= 3, timeout=60, message="3 attempts")
    time.sleep(4)  # a 4th attempt would have happened by now
    assert read_lines(env["OUT_FILE"]) == ["r1", "r1", "r1"], "1 attempt + 2 retries, no more"

    recs = server.wait_records(name, 3)
    assert len(recs) == 3
    for rec in recs:
        assert rec["InvocationType"] == "Event"
        assert rec["Status"] == "Error"
        assert rec["ErrorType"] == "RuntimeError"
    assert len({rec["RequestId"] for rec in recs}) == 1, "retries keep the request id, as on Lambda"


def test_async_events_over_reserved_concurrency_are_not_dropped(lam, tmp_path):
    """Throttled async events wait in the queue (Lambda retries throttles); none is lost."""
    name = unique("dur-throttle")
    env = serial_env(tmp_path)
    create_function(lam, name, fixture="py_serial", env=env, timeout=30)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    ids = [str(i) for i in range(12)]
    for i in ids:
        assert invoke(lam, name, {"id": i, "sleep": 0.3}, invocation_type="Event").status == 202
    wait_for(lambda: set(ids) <= set(read_lines(env["OUT_FILE"])), timeout=120, interval=0.5,
             message="all 12 throttled async events delivered")
    counts = Counter(read_lines(env["OUT_FILE"]))
    assert set(counts) == set(ids)


def test_sigterm_lets_in_flight_invocation_finish(make_server, tmp_path):
    srv = make_server(name="graceful")
    lam = srv.client()
    name = unique("dur-graceful")
    mark = tmp_path / "started"
    create_function(lam, name, env={"MARK_FILE": str(mark)}, timeout=30)
    # Warm an instance so the timing below is about the invocation, not the start.
    assert invoke(lam, name, {"warm": True}).function_error is None

    result: dict = {}

    def call() -> None:
        try:
            result["r"] = invoke(lambda_client(srv.endpoint), name, {"mark": True, "sleep": 2, "tag": "inflight"})
        except Exception as e:  # noqa: BLE001
            result["error"] = repr(e)

    t = threading.Thread(target=call, daemon=True)
    t.start()
    wait_for(mark.exists, timeout=30, message="invocation started")
    tree = descendants(srv.pid)
    assert tree, "the server has instance processes"
    srv.terminate()
    t.join(timeout=60)
    assert not t.is_alive()
    assert "error" not in result, result.get("error")
    r = result["r"]
    assert r.function_error is None, r.payload
    assert r.payload["echo"]["tag"] == "inflight"

    rc = srv.wait(timeout=40)
    assert rc == 0, f"graceful stop exits 0, got {rc}"
    wait_for(lambda: not [p for p, _ in tree if pid_alive(p)], timeout=10,
             message="instance processes stopped with the server")

    # The record of the in-flight invocation was kept.
    srv.start()
    recs = srv.wait_records(name, 2)
    assert [rec["Status"] for rec in recs] == ["Success", "Success"]
