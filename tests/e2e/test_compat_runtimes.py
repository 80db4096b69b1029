"""Official Lambda runtime clients on wisp's Runtime API.

ONE set of behaviour tests, run against three deployments of the same behaviour:

- "builtin":        python3.11, wisp's own bootstrap, tests/e2e/functions/compat_behaviour;
- "awslambdaric":   provided.al2023, a `bootstrap` shell script that cd's to
                    $LAMBDA_TASK_ROOT and execs this test venv's python with
                    `-m awslambdaric app.handler` (AWS's Python runtime interface client,
                    from PyPI), same app.py;
- "lambda_runtime": provided.al2023 whose `bootstrap` is the Rust program in
                    tests/fixtures/rust-lambda (AWS's `lambda_runtime` crate).

The behaviour: echo the event with the invocation context; {"raise": MSG} fails with
errorType "CompatError". Results are compared field by field across the three; where an
official client legitimately differs, the test normalises and says why.
"""
from __future__ import annotations

import base64
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wisp_e2e import ROLE, function_files, make_zip, unique, wait_for

HERE = Path(__file__).resolve().parent
BUILD_SH = HERE.parent / "fixtures" / "build.sh"
ACCOUNT = "000000000000"
REGION = "us-east-1"
MEMORY = 320
TIMEOUT = 25
KINDS = ["builtin", "awslambdaric", "lambda_runtime"]

# Without WISP_RUST_LAMBDA_BIN the first lambda_runtime test builds the Rust fixture
# (tests/fixtures/build.sh): a cold build takes minutes on a small machine, so these
# tests get more than pytest.ini's per-test timeout.
pytestmark = pytest.mark.timeout(1500)

CLIENT_CONTEXT = {
    "client": {
        "installation_id": "install-42",
        "app_title": "compat-app",
        "app_version_name": "1.2.3",
        "app_version_code": "123",
        "app_package_name": "dev.wisp.compat",
    },
    "custom": {"tenant": "acme", "trace": "t-0001"},
    "env": {"platform": "Linux", "locale": "en_GB"},
}


@functools.lru_cache(maxsize=None)
def rust_lambda_bin() -> str:
    """$WISP_RUST_LAMBDA_BIN, or build tests/fixtures/rust-lambda with build.sh."""
    b = os.environ.get("WISP_RUST_LAMBDA_BIN")
    if b:
        assert os.access(b, os.X_OK), f"WISP_RUST_LAMBDA_BIN={b} is not an executable"
        return b
    proc = subprocess.run(["sh", str(BUILD_SH)], capture_output=True, text=True, timeout=1200, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"building the lambda_runtime fixture failed:\n{proc.stderr[-5000:]}"
    b = proc.stdout.strip().splitlines()[-1]
    assert os.access(b, os.X_OK), f"build.sh printed {b!r}, which is not an executable"
    return b


def package(kind: str) -> "tuple[str, str, bytes]":
    """(runtime, handler, zip) for one deployment of the behaviour."""
    if kind == "builtin":
        return "python3.11", "app.handler", make_zip(function_files("compat_behaviour"))
    if kind == "awslambdaric":
        python = sys.executable  # this venv's interpreter; awslambdaric is installed in it
        bootstrap = f'#!/bin/sh\ncd "$LAMBDA_TASK_ROOT" || exit 1\nexec "{python}" -m awslambdaric app.handler\n'
        files = dict(function_files("compat_behaviour"))
        files["bootstrap"] = (bootstrap, 0o755)
        return "provided.al2023", "app.handler", make_zip(files)
    if kind == "lambda_runtime":
        with open(rust_lambda_bin(), "rb") as f:
            return "provided.al2023", "bootstrap", make_zip({"bootstrap": (f.read(), 0o755)})
    raise ValueError(kind)


def arn(name: str, qualifier: "str | None" = None) -> str:
    base = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


@pytest.fixture(scope="module", params=KINDS)
def deployed(request, lam):
    """One deployment per kind: $LATEST, version 1 and alias "live" -> 1."""
    kind = request.param
    try:
        import awslambdaric  # noqa: F401
    except ImportError:
        pytest.fail("awslambdaric is not installed in the test venv (tests/requirements.txt)")
    runtime, handler, zip_bytes = package(kind)
    name = unique(f"compat-rt-{kind.replace('_', '-')}")
    created = lam.create_function(
        FunctionName=name, Runtime=runtime, Role=ROLE, Handler=handler, Code={"ZipFile": zip_bytes},
        MemorySize=MEMORY, Timeout=TIMEOUT, Publish=True,
    )
    if created.get("State") not in (None, "Active"):
        wait_for(lambda: lam.get_function_configuration(FunctionName=name)["State"] == "Active", timeout=30)
    assert created["Version"] == "1"
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    yield kind, name
    lam.delete_function(FunctionName=name)


def call(lam, name: str, event, qualifier: "str | None" = None, client_context: "dict | None" = None):
    params = dict(FunctionName=name, Payload=json.dumps(event).encode())
    if qualifier:
        params["Qualifier"] = qualifier
    if client_context is not None:
        params["ClientContext"] = base64.b64encode(json.dumps(client_context).encode()).decode()
    resp = lam.invoke(**params)
    payload = json.loads(resp["Payload"].read())
    return resp, payload


def normalised_context(kind: str, ctx: dict) -> dict:
    """The context fields, made comparable across the three clients."""
    ctx = dict(ctx)
    # Which client ran: checked separately (test_the_expected_client_ran).
    ctx.pop("runtime")
    # remaining time is checked per invocation (> 0, <= timeout), not compared.
    ctx.pop("remaining_ms")
    # awslambdaric exposes memory_limit_in_mb as the string of AWS_LAMBDA_FUNCTION_MEMORY_SIZE
    # (as on AWS); wisp's bootstrap gives an int, lambda_runtime an i32.
    ctx["memory_limit_in_mb"] = int(ctx["memory_limit_in_mb"])
    return ctx


# --------------------------------------------------------------------------- behaviour tests


def test_the_expected_client_ran(lam, deployed):
    kind, name = deployed
    _, payload = call(lam, name, {"who": "are you"})
    expected = {"builtin": "wisp-python", "awslambdaric": "awslambdaric", "lambda_runtime": "lambda_runtime"}[kind]
    assert payload["context"]["runtime"] == expected


def test_echo_event(lam, deployed):
    kind, name = deployed
    event = {"order_id": "123", "amount": 100.5, "nested": {"list": [1, "two", None, True]}, "unicode": "zürich ✓"}
    for _ in range(2):  # a cold and a warm invocation: the client's loop goes on
        resp, payload = call(lam, name, event)
        assert resp["StatusCode"] == 200
        assert "FunctionError" not in resp, payload
        assert payload["echo"] == event
    # Events that are not objects.
    for event in ([1, 2, 3], "text", 42):
        resp, payload = call(lam, name, event)
        assert "FunctionError" not in resp, payload
        assert payload["echo"] == event


def test_context_fields(lam, deployed):
    kind, name = deployed
    for qualifier, version, invoked_arn in (
        (None, "$LATEST", arn(name)),
        ("1", "1", arn(name, "1")),
        ("live", "1", arn(name, "live")),
    ):
        resp, payload = call(lam, name, {"q": qualifier}, qualifier=qualifier)
        assert "FunctionError" not in resp, payload
        ctx = payload["context"]
        assert ctx["aws_request_id"] == resp["ResponseMetadata"]["RequestId"]
        assert ctx["aws_request_id"] == resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
        assert ctx["function_name"] == name
        assert ctx["function_version"] == version
        assert resp["ExecutedVersion"] == version
        assert int(ctx["memory_limit_in_mb"]) == MEMORY
        assert ctx["invoked_function_arn"] == invoked_arn
        assert 0 < ctx["remaining_ms"] <= TIMEOUT * 1000
        assert ctx["client_context"] is None


def test_unhandled_error(lam, deployed):
    kind, name = deployed
    resp, payload = call(lam, name, {"raise": "order 123 is invalid"})
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "CompatError"
    assert payload["errorMessage"] == "order 123 is invalid"
    # The instance survives a handled error: the next invocation succeeds.
    resp, payload = call(lam, name, {"after": "error"})
    assert "FunctionError" not in resp and payload["echo"] == {"after": "error"}


def test_client_context(lam, deployed):
    kind, name = deployed
    resp, payload = call(lam, name, {"cc": True}, client_context=CLIENT_CONTEXT)
    assert "FunctionError" not in resp, payload
    cc = payload["context"]["client_context"]
    assert cc is not None
    assert cc["custom"] == CLIENT_CONTEXT["custom"]
    assert cc["client"] == CLIENT_CONTEXT["client"]
    if kind == "lambda_runtime":
        # lambda_runtime's ClientContext reads the mobile SDK's environment from a field
        # named "environment", not "env" as sent by the AWS SDKs (and read by the Python
        # clients): on AWS too it comes out empty. A client difference, not wisp's.
        assert cc["env"] == {}
    else:
        assert cc["env"] == CLIENT_CONTEXT["env"]


# --------------------------------------------------------------------------- across the three


def test_the_three_clients_agree(lam):
    """The same invocations against all three deployments give the same normalised
    results (names, ARNs and request ids differ by construction and are mapped)."""
    results = {}
    names = {}
    try:
        for kind in KINDS:
            runtime, handler, zip_bytes = package(kind)
            name = unique(f"compat-agree-{kind.replace('_', '-')}")
            names[kind] = name
            lam.create_function(
                FunctionName=name, Runtime=runtime, Role=ROLE, Handler=handler, Code={"ZipFile": zip_bytes},
                MemorySize=MEMORY, Timeout=TIMEOUT, Publish=True,
            )
            wait_for(lambda: lam.get_function_configuration(FunctionName=name)["State"] == "Active", timeout=30)
            out = []
            for event, qualifier, cc in (
                ({"a": [1, {"b": None}]}, None, None),
                ({"q": 1}, "1", CLIENT_CONTEXT),
                ({"raise": "same failure"}, None, None),
            ):
                resp, payload = call(lam, name, event, qualifier=qualifier, client_context=cc)
                if "context" in payload:
                    ctx = normalised_context(kind, payload["context"])
                    assert ctx.pop("aws_request_id") == resp["ResponseMetadata"]["RequestId"]
                    ctx["function_name"] = ctx["function_name"].replace(name, "NAME")
                    ctx["invoked_function_arn"] = ctx["invoked_function_arn"].replace(name, "NAME")
                    if ctx["client_context"] is not None:
                        # lambda_runtime does not read "env" (see test_client_context).
                        ctx["client_context"].pop("env")
                    payload = {"echo": payload["echo"], "context": ctx}
                else:
                    # lambda_runtime's error document has no stackTrace; compare the rest.
                    payload = {k: payload[k] for k in ("errorType", "errorMessage")}
                out.append((resp["StatusCode"], resp.get("FunctionError"), resp["ExecutedVersion"], payload))
            results[kind] = out
    finally:
        for name in names.values():
            lam.delete_function(FunctionName=name)

    assert results["builtin"][0][3]["context"]["invoked_function_arn"] == arn("NAME")
    assert results["builtin"][2][:3] == (200, "Unhandled", "$LATEST")
    assert results["awslambdaric"] == results["builtin"]
    assert results["lambda_runtime"] == results["builtin"]
