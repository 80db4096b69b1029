"""The `wisp` CLI (a client of the API) against a real server, via WISP_ENDPOINT."""
from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest

from wisp_e2e import FUNCTIONS_DIR, cli_env, free_port, read_lines, run_cli, unique, wait_for, wisp_bin


def out(p) -> str:
    return (p.stdout or "") + (p.stderr or "")


def copy_fixture(fixture: str, dest) -> None:
    shutil.copytree(FUNCTIONS_DIR / fixture, dest, ignore=shutil.ignore_patterns("__pycache__"))


def test_cli_deploy_invoke_ls_describe_logs_rm(server, lam, tmp_path):
    code = tmp_path / "code"
    copy_fixture("py_tool", code)
    side = tmp_path / "side.txt"
    name = unique("cli-fn")

    p = run_cli(
        server, "deploy", name, "--dir", str(code), "--runtime", "python3.11", "--handler", "app.handler",
        "--memory", "256", "--timeout", "9", "--env", "GREETING=from-cli", "--env", f"OUT_FILE={side}",
        "--description", "deployed by the cli test",
    )
    assert p.returncode == 0, out(p)
    cfg = lam.get_function_configuration(FunctionName=name)
    assert cfg["Runtime"] == "python3.11"
    assert cfg["Handler"] == "app.handler"
    assert cfg["MemorySize"] == 256
    assert cfg["Timeout"] == 9
    assert cfg["Description"] == "deployed by the cli test"
    assert cfg["Environment"]["Variables"] == {"GREETING": "from-cli", "OUT_FILE": str(side)}

    marker = "cli-print-" + uuid.uuid4().hex
    event = {"print": marker, "k": "v"}
    p = run_cli(server, "invoke", name, "--payload", json.dumps(event))
    assert p.returncode == 0, out(p)
    assert json.loads(p.stdout) == {"ok": True, "echo": event, "greeting": "from-cli"}

    p = run_cli(server, "invoke", name, "--payload", json.dumps({"append": "via-cli-async"}), "--async")
    assert p.returncode == 0, out(p)
    wait_for(lambda: "via-cli-async" in read_lines(side), timeout=30, message="--async side effect")

    p = run_cli(server, "invoke", name, "--payload", json.dumps({"raise": "cli boom"}))
    assert p.returncode == 1, f"function error exits 1: {out(p)}"
    assert "cli boom" in out(p)

    p = run_cli(server, "ls")
    assert p.returncode == 0, out(p)
    assert name in p.stdout

    p = run_cli(server, "describe", name)
    assert p.returncode == 0, out(p)
    assert name in p.stdout
    assert "python3.11" in p.stdout
    assert "app.handler" in p.stdout

    wait_for(lambda: marker in run_cli(server, "logs", name).stdout, timeout=20, message="print output in wisp logs")

    # Deploying again updates in place.
    p = run_cli(
        server, "deploy", name, "--dir", str(code), "--runtime", "python3.11", "--handler", "app.handler",
        "--env", "GREETING=redeployed",
    )
    assert p.returncode == 0, out(p)
    p = run_cli(server, "invoke", name, "--payload", "{}")
    assert p.returncode == 0, out(p)
    assert json.loads(p.stdout)["greeting"] == "redeployed"

    p = run_cli(server, "rm", name)
    assert p.returncode == 0, out(p)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=name)
    assert name not in run_cli(server, "ls").stdout
    p = run_cli(server, "describe", name)
    assert p.returncode != 0
    p = run_cli(server, "invoke", name, "--payload", "{}")
    assert p.returncode != 0


def test_cli_unreachable_endpoint_fails_cleanly(server):
    env = cli_env(server, {"WISP_ENDPOINT": f"http://127.0.0.1:{free_port()}"})
    p = subprocess.run([wisp_bin(), "ls"], env=env, capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert p.returncode != 0
    assert "panicked" not in out(p)


def write_manifest(project, body: str) -> None:
    (project / "wisp.toml").write_text(body)


def test_cli_deploy_manifest_with_two_functions(server, lam, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    copy_fixture("py_tool", project / "a")
    copy_fixture("node_callback", project / "b")
    suffix = uuid.uuid4().hex[:8]
    fa, fb = f"cli_a_{suffix}", f"cli_b_{suffix}"
    write_manifest(
        project,
        f"""version = 1

[functions.{fa}]
runtime = "python3.11"
handler = "app.handler"
path = "a"
memory_mb = 256
timeout_s = 12
description = "first from manifest"
env = {{ GREETING = "from-manifest" }}

[functions.{fb}]
runtime = "nodejs20.x"
handler = "index.handler"
path = "b"
""",
    )
    p = run_cli(server, "deploy", cwd=project)
    assert p.returncode == 0, out(p)

    a = lam.get_function_configuration(FunctionName=fa)
    assert a["Runtime"] == "python3.11"
    assert a["MemorySize"] == 256
    assert a["Timeout"] == 12
    assert a["Description"] == "first from manifest"
    assert a["Environment"]["Variables"] == {"GREETING": "from-manifest"}
    b = lam.get_function_configuration(FunctionName=fb)
    assert b["Runtime"] == "nodejs20.x"
    assert b["Handler"] == "index.handler"

    p = run_cli(server, "invoke", fa, "--payload", '{"n": 1}')
    assert p.returncode == 0, out(p)
    assert json.loads(p.stdout) == {"ok": True, "echo": {"n": 1}, "greeting": "from-manifest"}
    p = run_cli(server, "invoke", fb, "--payload", '{"n": 2}')
    assert p.returncode == 0, out(p)
    assert json.loads(p.stdout) == {"kind": "callback", "echo": {"n": 2}, "functionName": fb}

    # --manifest from elsewhere redeploys (paths stay relative to the manifest).
    p = run_cli(server, "deploy", "--manifest", str(project / "wisp.toml"), cwd=tmp_path)
    assert p.returncode == 0, out(p)
    assert lam.get_function_configuration(FunctionName=fa)["Timeout"] == 12


@pytest.mark.parametrize(
    "bad_key,body",
    [
        (
            "memroy_mb",
            'version = 1\n[functions.{name}]\nruntime = "python3.11"\nhandler = "app.handler"\n'
            'path = "a"\nmemroy_mb = 256\n',
        ),
        (
            "colour",
            'version = 1\ncolour = "blue"\n[functions.{name}]\nruntime = "python3.11"\n'
            'handler = "app.handler"\npath = "a"\n',
        ),
    ],
)
def test_cli_manifest_unknown_key_is_an_error(server, lam, tmp_path, bad_key, body):
    project = tmp_path / "project"
    project.mkdir()
    copy_fixture("py_tool", project / "a")
    name = f"cli_bad_{uuid.uuid4().hex[:8]}"
    write_manifest(project, body.format(name=name))
    p = run_cli(server, "deploy", cwd=project)
    assert p.returncode != 0
    assert bad_key in out(p), out(p)
    assert "panicked" not in out(p)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=name)
