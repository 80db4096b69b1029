"""Fixtures for wisp's end-to-end tests.

Every test talks to the real `wisp` binary ($WISP_BIN) over HTTP on 127.0.0.1:
boto3 for the Lambda API, raw HTTP for hostile input, the CLI via subprocess.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from wisp_e2e import (  # noqa: E402
    LEAK_ENV,
    LEAK_VALUE,
    LIVE_SERVERS,
    Server,
    lambda_client,
    wisp_bin,
)


def pytest_report_header(config):
    return [f"wisp binary: {wisp_bin()}", f"python: {sys.executable}"]


def pytest_sessionstart(session):
    b = wisp_bin()
    if not os.access(b, os.X_OK):
        raise pytest.UsageError(f"wisp binary not found or not executable: {b} (build it, or set WISP_BIN)")


# ---------------------------------------------------------------- server log on failure


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    # Where each already-running server's log stood when this test began.
    item._wisp_log_marks = {s: s.log_size() for s in LIVE_SERVERS}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    marks = getattr(item, "_wisp_log_marks", {})
    for s in list(LIVE_SERVERS):
        since = marks.get(s, 0)
        rep.sections.append(
            (
                f"wisp server log ({s.name}, {s.status()}, {s.log_path}) since this test began",
                s.log_tail(since=since) or "(empty)",
            )
        )


# ---------------------------------------------------------------- servers


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """The shared default server. It runs with an extra variable in its own
    environment (LEAK_ENV) that no function may see, and quick async retries."""
    s = Server(
        tmp_path_factory.mktemp("wisp-default"),
        args=["--async-retry-base-ms", "200"],
        env={LEAK_ENV: LEAK_VALUE},
        name="default",
    )
    try:
        s.start()
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def lam(server):
    """boto3 lambda client for the default server."""
    return lambda_client(server.endpoint)


@pytest.fixture
def make_server(tmp_path_factory):
    """Factory for a dedicated server with special flags; all are stopped (and
    their processes killed) at the end of the test, pass or fail."""
    made: list[Server] = []

    def factory(*args: str, env: "dict[str, str] | None" = None, start: bool = True, name: str = "dedicated") -> Server:
        s = Server(tmp_path_factory.mktemp("wisp-" + name), args=list(args), env=env, name=name)
        made.append(s)
        if start:
            s.start()
        return s

    yield factory
    errors = []
    for s in made:
        try:
            s.close()
        except Exception as e:  # keep closing the others
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def client_for():
    """client_for(server) -> boto3 lambda client (retries off, region us-east-1)."""
    return lambda s: lambda_client(s.endpoint)
