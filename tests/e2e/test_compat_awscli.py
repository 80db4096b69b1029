"""The AWS CLI (`pip install awscli`, run as `python -m awscli`) against wisp: the same
calls a user would type, signed by the CLI with the credentials from its environment,
with no AWS configuration file in reach."""
from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wisp_e2e import ACCESS_KEY, REGION, ROLE, SECRET_KEY, make_zip, unique

APP_V1 = "import os\ndef handler(event, context):\n    return {'code': 'v1', 'version': context.function_version, 'echo': event, 'tag': os.environ.get('TAG')}\n"
APP_V2 = APP_V1.replace("'v1'", "'v2'")


@pytest.fixture(scope="module")
def aws(server, tmp_path_factory):
    home = tmp_path_factory.mktemp("awscli-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WISP_"))}
    env.update(
        {
            "HOME": str(home),
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(home / "no-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_PAGER": "",
            "AWS_MAX_ATTEMPTS": "1",
        }
    )

    def run(*args: str, check: bool = True, secret: "str | None" = None) -> subprocess.CompletedProcess:
        e = dict(env)
        if secret is not None:
            e["AWS_SECRET_ACCESS_KEY"] = secret
        proc = subprocess.run(
            [sys.executable, "-m", "awscli", "--endpoint-url", server.endpoint, "--output", "json", "lambda", *args],
            env=e, cwd=home, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
        )
        if check:
            assert proc.returncode == 0, f"aws lambda {' '.join(args)} -> {proc.returncode}\n{proc.stderr}"
        return proc

    run.home = home  # type: ignore[attr-defined]
    return run


def out(proc: subprocess.CompletedProcess):
    return json.loads(proc.stdout)


def test_awscli_life_cycle(aws, lam):
    home: Path = aws.home
    name = unique("compat-cli")
    (home / "v1.zip").write_bytes(make_zip({"app.py": APP_V1}))
    (home / "v2.zip").write_bytes(make_zip({"app.py": APP_V2}))

    created = out(aws(
        "create-function", "--function-name", name, "--runtime", "python3.11", "--role", ROLE,
        "--handler", "app.handler", "--zip-file", "fileb://v1.zip", "--timeout", "12", "--memory-size", "192",
        "--environment", "Variables={TAG=cli}",
    ))
    assert created["FunctionName"] == name
    assert (created["Timeout"], created["MemorySize"], created["Runtime"]) == (12, 192, "python3.11")
    # boto3 sees what the CLI created.
    assert lam.get_function_configuration(FunctionName=name)["Environment"] == {"Variables": {"TAG": "cli"}}

    conf = out(aws("get-function-configuration", "--function-name", name))
    assert conf["Handler"] == "app.handler" and conf["State"] == "Active"
    assert out(aws("get-function", "--function-name", name))["Configuration"]["FunctionName"] == name
    listed = out(aws("list-functions"))
    assert name in [f["FunctionName"] for f in listed["Functions"]]

    # invoke writes the payload to a file and the metadata to stdout.
    meta = out(aws("invoke", "--function-name", name, "--payload", '{"hello": "cli"}', str(home / "out.json")))
    assert meta["StatusCode"] == 200 and meta["ExecutedVersion"] == "$LATEST"
    assert "FunctionError" not in meta
    assert json.loads((home / "out.json").read_text()) == {"code": "v1", "version": "$LATEST", "echo": {"hello": "cli"}, "tag": "cli"}

    # LogType Tail.
    meta = out(aws("invoke", "--function-name", name, "--log-type", "Tail", str(home / "out.json")))
    assert "START RequestId:" in base64.b64decode(meta["LogResult"]).decode()

    # Versions and an alias.
    assert out(aws("publish-version", "--function-name", name))["Version"] == "1"
    aws("update-function-code", "--function-name", name, "--zip-file", "fileb://v2.zip")
    assert out(aws("publish-version", "--function-name", name))["Version"] == "2"
    versions = out(aws("list-versions-by-function", "--function-name", name))["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    alias = out(aws("create-alias", "--function-name", name, "--name", "live", "--function-version", "1"))
    assert alias["AliasArn"].endswith(f":function:{name}:live")
    meta = out(aws("invoke", "--function-name", name, "--qualifier", "live", str(home / "out.json")))
    assert meta["ExecutedVersion"] == "1"
    assert json.loads((home / "out.json").read_text())["code"] == "v1"

    # Configuration update.
    upd = out(aws("update-function-configuration", "--function-name", name, "--timeout", "7"))
    assert upd["Timeout"] == 7

    # Reserved concurrency 0: the CLI reports TooManyRequestsException.
    assert out(aws("put-function-concurrency", "--function-name", name, "--reserved-concurrent-executions", "0")) == {
        "ReservedConcurrentExecutions": 0
    }
    proc = aws("invoke", "--function-name", name, str(home / "out.json"), check=False)
    assert proc.returncode != 0
    assert "TooManyRequestsException" in proc.stderr
    aws("delete-function-concurrency", "--function-name", name)

    # Delete, then the CLI reports ResourceNotFoundException.
    aws("delete-function", "--function-name", name)
    proc = aws("get-function", "--function-name", name, check=False)
    assert proc.returncode != 0
    assert "ResourceNotFoundException" in proc.stderr


def test_awscli_errors(aws, lam):
    name = unique("compat-cli-err")
    proc = aws("get-function", "--function-name", name, check=False)
    assert proc.returncode != 0 and "ResourceNotFoundException" in proc.stderr

    # Wrong secret: refused, nothing created.
    (aws.home / "e.zip").write_bytes(make_zip({"app.py": APP_V1}))
    proc = aws(
        "create-function", "--function-name", name, "--runtime", "python3.11", "--role", ROLE,
        "--handler", "app.handler", "--zip-file", "fileb://e.zip",
        check=False, secret=SECRET_KEY + "-wrong",
    )
    assert proc.returncode != 0
    assert "InvalidSignatureException" in proc.stderr
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=name)

    # A runtime wisp does not have.
    proc = aws(
        "create-function", "--function-name", name, "--runtime", "java8", "--role", ROLE,
        "--handler", "app.handler", "--zip-file", "fileb://e.zip", check=False,
    )
    assert proc.returncode != 0 and "InvalidParameterValueException" in proc.stderr
