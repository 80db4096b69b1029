"""Invocation through boto3: sync, async, logs, errors, context, env, runtimes."""
from __future__ import annotations

import os
import shutil
import uuid

import pytest

from wisp_e2e import (
    LEAK_ENV,
    LEAK_VALUE,
    ROLE,
    SECRET_KEY,
    create_function,
    function_zip,
    invoke,
    make_zip,
    read_lines,
    server_env,
    unique,
    wait_for,
)


def test_sync_invoke_returns_handler_result(lam):
    name = unique("inv-sync")
    create_function(lam, name, env={"GREETING": "hello from env"})
    event = {"a": 1, "nested": {"list": [1, 2, 3]}, "text": "héllo"}
    r = invoke(lam, name, event)
    assert r.status == 200
    assert r.function_error is None
    assert r.payload == {"ok": True, "echo": event, "greeting": "hello from env"}
    assert r.request_id
    assert r.executed_version == "$LATEST"
    # Warm path answers the same.
    r2 = invoke(lam, name, {"b": 2})
    assert r2.payload == {"ok": True, "echo": {"b": 2}, "greeting": "hello from env"}
    assert r2.request_id != r.request_id


def test_seed_order_example(lam):
    """The seed article's example, as written there, with only the endpoint changed."""
    name = unique("process_order")
    resp = lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="handler.lambda_handler",
        Code={"ZipFile": function_zip("py_order")},
        Description="Process e-commerce orders",
        Timeout=15,
        MemorySize=512,
        Publish=True,
    )
    assert resp["Version"] == "1"
    r = invoke(lam, name, {"order_id": "123", "order_amount": 100}, log=True)
    assert r.function_error is None
    assert r.payload == {"order_id": "123", "order_handled": True}
    assert "processing order 123 for amount 100" in r.log


def test_async_invoke_side_effect(lam, tmp_path):
    name = unique("inv-async")
    out = tmp_path / "out.txt"
    create_function(lam, name, env={"OUT_FILE": str(out)})
    marker = "async-" + uuid.uuid4().hex
    r = invoke(lam, name, {"append": marker}, invocation_type="Event")
    assert r.status == 202
    assert r.function_error is None
    assert not r.raw
    wait_for(lambda: marker in read_lines(out), timeout=30, message="async side effect")


def test_dry_run(lam, tmp_path):
    name = unique("inv-dry")
    out = tmp_path / "out.txt"
    create_function(lam, name, env={"OUT_FILE": str(out)})
    r = invoke(lam, name, {"append": "dry"}, invocation_type="DryRun")
    assert r.status == 204
    # A real invoke afterwards runs; the dry run did not.
    invoke(lam, name, {"append": "real"})
    assert read_lines(out) == ["real"]


def test_log_tail(lam):
    name = unique("inv-tail")
    create_function(lam, name)
    text = "tail-marker-" + uuid.uuid4().hex
    r = invoke(lam, name, {"print": text}, log=True)
    assert r.function_error is None
    assert r.log is not None, "LogResult missing with LogType=Tail"
    assert text in r.log
    # Without LogType there is no LogResult.
    r = invoke(lam, name, {"print": "quiet"})
    assert r.log is None


def test_unhandled_python_error(lam):
    name = unique("inv-raise")
    create_function(lam, name)
    r = invoke(lam, name, {"raise": "boom 42"})
    assert r.status == 200
    assert r.function_error == "Unhandled"
    assert r.payload["errorType"] == "ValueError"
    assert r.payload["errorMessage"] == "boom 42"
    trace = r.payload["stackTrace"]
    assert isinstance(trace, list) and trace, trace
    assert any("app.py" in str(frame) for frame in trace), trace
    # The instance keeps working after a handled-by-runtime exception.
    assert invoke(lam, name, {"x": 1}).payload["echo"] == {"x": 1}


def test_context_and_environment(server, lam):
    name = unique("inv-ctx")
    create_function(lam, name, env={"FOO": "bar", "EMPTY_LOOKING": " "}, memory=256, timeout=7)
    r = invoke(lam, name, {"want_context": True})
    assert r.function_error is None, r.payload
    ctx, env, cwd = r.payload["context"], r.payload["env"], r.payload["cwd"]

    assert ctx["aws_request_id"] == r.request_id, "context request id is the invoke's x-amzn-RequestId"
    assert ctx["function_name"] == name
    assert ctx["function_version"] == "$LATEST"
    assert f":function:{name}" in ctx["invoked_function_arn"]
    assert str(ctx["memory_limit_in_mb"]) == "256"
    assert name in ctx["log_group_name"]
    assert ctx["log_stream_name"]
    assert 0 < ctx["remaining_ms"] <= 7000

    # Declared variables and Lambda's own.
    assert env["FOO"] == "bar"
    assert env["EMPTY_LOOKING"] == " "
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == name
    assert env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert env["AWS_LAMBDA_FUNCTION_VERSION"] == "$LATEST"
    assert env["_HANDLER"] == "app.handler"
    for k in ("AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "AWS_REGION", "AWS_LAMBDA_LOG_GROUP_NAME",
              "AWS_LAMBDA_LOG_STREAM_NAME"):
        assert env.get(k), f"{k} missing from the function's environment"

    # Nothing from the server's own environment.
    assert LEAK_ENV not in env
    assert not [k for k in env if k.startswith("WISP_")], sorted(env)
    assert "RUST_BACKTRACE" not in env
    for k, v in env.items():
        assert LEAK_VALUE not in v, k
        assert SECRET_KEY not in v, k
    generic = {"PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "USER", "LOGNAME", "SHELL", "PWD", "OLDPWD",
               "SHLVL", "_", "TERM", "LD_LIBRARY_PATH", "PYTHONPATH", "NODE_PATH", "TMPDIR", "HOSTNAME"}
    leaked = sorted(
        k for k in server_env() if k in env and k not in generic and not k.startswith(("PYENV", "PYTHON"))
    )
    assert not leaked, f"server environment variables visible to the function: {leaked}"

    # Not the server's working directory.
    assert os.path.realpath(cwd) != os.path.realpath(server.cwd)


def test_cwd_is_own_and_shows_the_package(lam):
    """Each instance has a working directory of its own (what it writes there stays its
    own), in which the package's files are reachable by relative path, as on Lambda where
    the working directory is the task root."""
    name = unique("inv-cwd")
    create_function(
        lam,
        name,
        files={
            "app.py": "import os\ndef handler(e, c):\n"
                      "    open('scratch.txt', 'w').write('mine')\n"
                      "    return {'cwd': os.getcwd(), 'root': os.environ['LAMBDA_TASK_ROOT'],"
                      " 'data': open('data/config.txt').read(),"
                      " 'root_has_scratch': os.path.exists(os.path.join(os.environ['LAMBDA_TASK_ROOT'], 'scratch.txt'))}\n",
            "data/config.txt": "bundled-config",
        },
    )
    r = invoke(lam, name, {})
    assert r.function_error is None, r.payload
    assert r.payload["data"] == "bundled-config"
    assert os.path.realpath(r.payload["cwd"]) != os.path.realpath(r.payload["root"])
    # A write in the working directory does not touch the shared package.
    assert r.payload["root_has_scratch"] is False


def test_python_module_in_package(lam):
    name = unique("inv-pkg")
    create_function(
        lam,
        name,
        files={
            "pkg/__init__.py": "",
            "pkg/mod.py": "from pkg.helper import value\ndef handler(e, c):\n    return {'value': value(), 'e': e}\n",
            "pkg/helper.py": "def value():\n    return 'from-helper'\n",
        },
        handler="pkg/mod.handler",
    )
    r = invoke(lam, name, {"k": "v"})
    assert r.function_error is None, r.payload
    assert r.payload == {"value": "from-helper", "e": {"k": "v"}}


def test_missing_function_invoke(lam):
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        invoke(lam, unique("inv-nope"), {})


def test_import_error_then_fixed(lam):
    name = unique("inv-import")
    create_function(
        lam, name, files={"app.py": "import module_that_does_not_exist_xyz\n\ndef handler(e, c):\n    return 1\n"}
    )
    r = invoke(lam, name, {})
    assert r.function_error == "Unhandled"
    assert r.payload["errorType"] == "Runtime.ImportModuleError"
    assert "module_that_does_not_exist_xyz" in r.payload["errorMessage"]
    # Still broken on a second try (no stale state hides it).
    assert invoke(lam, name, {}).payload["errorType"] == "Runtime.ImportModuleError"

    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": "def handler(e, c):\n    return {'fixed': e}\n"}))
    r = invoke(lam, name, {"n": 1})
    assert r.function_error is None, r.payload
    assert r.payload == {"fixed": {"n": 1}}


def test_handler_not_found(lam):
    name = unique("inv-nohandler")
    create_function(lam, name, files={"app.py": "def other(e, c):\n    return 1\n"}, handler="app.handler")
    r = invoke(lam, name, {})
    assert r.function_error == "Unhandled"
    assert r.payload["errorType"] == "Runtime.HandlerNotFound"


# ------------------------------------------------------------------ Node.js


def test_node_async_handler(lam):
    name = unique("inv-node-async")
    create_function(lam, name, fixture="node_async", runtime="nodejs20.x", handler="index.handler", memory=192)
    r = invoke(lam, name, {"order_id": "n1"}, log=True)
    assert r.function_error is None, r.payload
    p = r.payload
    assert p["kind"] == "async"
    assert p["echo"] == {"order_id": "n1"}
    assert p["functionName"] == name
    assert p["awsRequestId"] == r.request_id
    assert p["memoryLimitInMB"] == "192"
    assert p["remaining"] > 0
    assert p["nodeMajor"] == 20
    assert 'node async handler got {"order_id":"n1"}' in r.log


def test_node_callback_handler(lam):
    name = unique("inv-node-cb")
    create_function(lam, name, fixture="node_callback", runtime="nodejs20.x", handler="index.handler")
    r = invoke(lam, name, {"x": [1, 2]})
    assert r.function_error is None, r.payload
    assert r.payload == {"kind": "callback", "echo": {"x": [1, 2]}, "functionName": name}


def test_node_throwing_handler(lam):
    name = unique("inv-node-throw")
    create_function(lam, name, fixture="node_throw", runtime="nodejs20.x", handler="index.handler")
    r = invoke(lam, name, {"order_id": "7"})
    assert r.status == 200
    assert r.function_error == "Unhandled"
    assert r.payload["errorType"] == "TypeError"
    assert "bad order 7" in r.payload["errorMessage"]


# ------------------------------------------------------------------ provided (custom runtime)


@pytest.mark.parametrize("runtime", ["provided", "provided.al2023"])
def test_provided_runtime_shell_bootstrap(lam, runtime):
    assert shutil.which("curl"), "curl is required (scripts/test.sh installs it)"
    name = unique("inv-provided")
    create_function(lam, name, fixture="provided_echo", runtime=runtime, handler="function.handler")
    event = {"hello": "custom runtime", "n": 3}
    r = invoke(lam, name, event, log=True)
    assert r.function_error is None, r.payload
    assert r.payload == event
    assert "provided bootstrap handling" in r.log
    # The same instance loops to the next event.
    assert invoke(lam, name, {"second": True}).payload == {"second": True}
