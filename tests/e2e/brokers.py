"""Shared helpers for the broker connector tests (tests/e2e/test_connector_*.py).

`BrokerProcess` runs one real broker (from Debian's packages, or tansu for Kafka) in its
own process group on 127.0.0.1, and stops, kills or restarts it by its own pid. `Sink` is
the tests' view of what the `broker_sink` function handled.
"""
from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from wisp_e2e import create_function, http_request, lambda_client, unique, wait_for


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class BrokerProcess:
    """A broker started from a command line, in its own process group, logging to a file."""

    def __init__(self, name: str, cmd: Sequence[str], port: int, workdir: Path, env: "dict[str, str] | None" = None):
        self.name, self.cmd, self.port, self.workdir = name, list(cmd), port, Path(workdir)
        self.env = {**os.environ, **(env or {})}
        self.proc: "subprocess.Popen | None" = None
        self.log_path = self.workdir / f"{name}.log"

    def start(self, timeout: float = 60.0) -> "BrokerProcess":
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.cmd, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        try:
            wait_for(lambda: self.proc.poll() is not None or port_open(self.port), timeout=timeout,
                     message=f"{self.name} to listen on {self.port}")
        except Exception:
            self.stop()
            raise
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
        return self

    def _signal_group(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the broker's group, SIGKILL it if it lingers."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(timeout=10)
        # Children that outlived the leader (the group id is the leader's pid).
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        wait_for(lambda: not port_open(self.port), timeout=20, message=f"{self.name} port {self.port} to close")

    def kill9(self) -> None:
        self._signal_group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def restart(self, timeout: float = 60.0) -> "BrokerProcess":
        self.stop()
        return self.start(timeout=timeout)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""


class Sink:
    """What the broker_sink function recorded under its SINK_DIR."""

    def __init__(self, root: Path):
        self.dir = Path(root)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "seen").mkdir(exist_ok=True)

    def env(self, fail_every: int = 10) -> "dict[str, str]":
        return {"SINK_DIR": str(self.dir), "FAIL_EVERY": str(fail_every)}

    def handled(self) -> "list[int]":
        try:
            text = (self.dir / "handled").read_text()
        except FileNotFoundError:
            return []
        return [int(x) for x in text.split()]

    def counts(self) -> "collections.Counter[int]":
        return collections.Counter(self.handled())

    def raw_events(self) -> "list[str]":
        try:
            return (self.dir / "raw").read_text().splitlines()
        except FileNotFoundError:
            return []

    def set_poison(self, ids: "set[int]") -> None:
        (self.dir / "poison").write_text("".join(f"{i}\n" for i in sorted(ids)))

    def wait_all(self, expected: "set[int]", timeout: float = 240.0, also_done: "callable | None" = None) -> None:
        """Waits until every expected id was handled (or, with `also_done`, counted elsewhere)."""
        def done():
            got = set(self.handled())
            if also_done is not None:
                got |= set(also_done())
            return expected <= got
        wait_for(done, timeout=timeout, interval=0.5,
                 message=f"all {len(expected)} messages handled (have {len(set(self.handled()) & expected)})")


# ------------------------------------------------------------ wisp side of a connector test


def add_trigger(server, kind: str, function: str, config) -> "tuple[int, dict]":
    """POST /wisp/v1/triggers; returns (HTTP status, reply document)."""
    status, _, raw = http_request(server.endpoint, "POST", "/wisp/v1/triggers",
                                  {"Kind": kind, "FunctionName": function, "Config": config})
    return status, json.loads(raw or b"{}")


def trigger(server, function: str, trigger_id: str) -> dict:
    """One trigger as the API lists it (config and status)."""
    status, _, raw = http_request(server.endpoint, "GET", f"/wisp/v1/triggers?FunctionName={function}")
    assert status == 200, raw
    for t in json.loads(raw)["Triggers"]:
        if t["Id"] == trigger_id:
            return t
    raise AssertionError(f"trigger {trigger_id} not listed")


def delete(server, tid: str) -> None:
    assert http_request(server.endpoint, "DELETE", f"/wisp/v1/triggers/{tid}")[0] == 204


def deploy_sink(server, tmp_path: Path, prefix: str, fail_every: int = 10) -> "tuple[str, Sink]":
    """Deploys the broker_sink function with a fresh Sink; returns (function name, sink)."""
    sink = Sink(tmp_path / unique("sink"))
    name = unique(prefix)
    create_function(lambda_client(server.endpoint), name, fixture="broker_sink", env=sink.env(fail_every), timeout=30)
    return name, sink


def dups(handled: "list[int]") -> int:
    """How many handlings were repeats."""
    return sum(c - 1 for c in collections.Counter(handled).values() if c > 1)


def outage_mid_stream(server, broker: BrokerProcess, function: str, trigger_id: str, sink: Sink,
                      publisher: threading.Thread, *, gone_within: float = 15, outage: float = 10,
                      at_stop: "Callable[[], Any] | None" = None) -> Any:
    """Starts `publisher` (a thread publishing in the background), stops the broker once the
    sink has handled 200 messages, checks that the trigger's status shows it gone (and
    reconnecting, with the error), starts the broker `outage` seconds later and waits for the
    publisher to finish. Returns what `at_stop` gave right after the stop."""
    publisher.start()
    stopped = None
    try:
        wait_for(lambda: len(set(sink.handled())) >= 200, timeout=60, message="consumption started")
        broker.stop()
        if at_stop is not None:
            stopped = at_stop()
        wait_for(lambda: trigger(server, function, trigger_id)["Status"].get("Connected") is False,
                 timeout=gone_within, interval=0.3, message="status shows the broker gone")
        during = trigger(server, function, trigger_id)["Status"]
        time.sleep(outage)
        broker.start()
    finally:
        publisher.join(timeout=200)
    assert not publisher.is_alive()
    assert during["State"] == "Reconnecting" and during["LastError"], during
    return stopped
