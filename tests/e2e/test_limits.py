"""Handlers that hang, leak memory, crash, fork or flood stdout: the function
gets a clear error, the server keeps serving, and the next invoke works."""
from __future__ import annotations

import random

from wisp_e2e import (
    create_function,
    invoke,
    pid_alive,
    pids_with_cmdline,
    unique,
    wait_for,
)


def test_timeout_kills_the_whole_process_group(server, lam, tmp_path):
    name = unique("lim-timeout")
    pid_file = tmp_path / "child.pid"
    create_function(lam, name, timeout=1, env={"PID_FILE": str(pid_file)})
    token = str(random.randrange(10**8, 10**9))  # child runs `sleep 100.<token>`
    r = invoke(lam, name, {"spawn": token, "sleep": 5})
    assert r.status == 200
    assert r.function_error == "Unhandled"
    assert r.payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in r.payload["errorMessage"]

    # The handler really ran (and forked) before it was cut off ...
    pid = int(wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), timeout=5, message="child pid"))
    assert pid > 0
    # ... and its child died with it.
    wait_for(lambda: not pids_with_cmdline("100." + token), timeout=10, message="forked child killed")
    wait_for(lambda: not pid_alive(pid), timeout=10, message=f"pid {pid} gone")

    # The record says Timeout.
    recs = server.wait_records(name, 1)
    assert recs[-1]["Status"] == "Timeout"
    assert recs[-1]["ErrorType"] == "Sandbox.Timedout"

    # The next invoke gets a fresh instance and succeeds.
    r = invoke(lam, name, {"sleep": 0})
    assert r.function_error is None, r.payload
    assert r.payload["echo"] == {"sleep": 0}


def test_out_of_memory(server, lam):
    name = unique("lim-oom")
    create_function(lam, name, memory=128, timeout=30)
    other = unique("lim-oom-other")
    create_function(lam, other)

    r = invoke(lam, name, {"alloc_mb": 400})
    assert r.status == 200
    assert r.function_error == "Unhandled"
    assert r.payload["errorType"] == "Runtime.OutOfMemory", r.payload

    # The server is fine, and so are other functions.
    assert server.health()[0] == 200
    assert invoke(lam, other, {"k": 1}).payload["echo"] == {"k": 1}
    # The same function answers a small request.
    r = invoke(lam, name, {"alloc_mb": 20})
    assert r.function_error is None, r.payload
    assert r.payload["ok"] is True

    recs = server.wait_records(name, 2)
    assert recs[0]["Status"] == "OutOfMemory"
    assert recs[0]["ErrorType"] == "Runtime.OutOfMemory"
    assert recs[1]["Status"] == "Success"


def test_process_exit_mid_invocation(server, lam):
    name = unique("lim-exit")
    create_function(lam, name)
    r = invoke(lam, name, {"exit": 3})
    assert r.status == 200
    assert r.function_error == "Unhandled"
    assert r.payload["errorType"] == "Runtime.ExitError", r.payload
    r = invoke(lam, name, {"after": "exit"})
    assert r.function_error is None, r.payload
    assert r.payload["echo"] == {"after": "exit"}
    recs = server.wait_records(name, 2)
    assert recs[0]["Status"] == "Crashed"
    assert recs[0]["ErrorType"] == "Runtime.ExitError"


def test_huge_output_is_truncated(server, lam):
    name = unique("lim-output")
    create_function(lam, name, timeout=60)
    r = invoke(lam, name, {"print_mb": 5}, log=True)
    assert r.function_error is None, r.payload
    assert r.payload["ok"] is True
    assert r.log is not None and len(r.log) <= 64 * 1024, "LogResult is a tail, not the whole output"

    recs = server.wait_records(name, 1)
    logs = recs[-1]["Logs"]
    assert 0 < len(logs) < 5 * 1024 * 1024, len(logs)
    assert "truncat" in logs.lower(), "truncated logs carry a marker"
    assert server.health()[0] == 200
    assert invoke(lam, name, {"print": "small"}).function_error is None
