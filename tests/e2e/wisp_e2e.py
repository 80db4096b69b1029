"""Helpers for wisp's end-to-end tests: start the real binary, talk to it with
boto3 / raw HTTP, build zips, wait for things, and clean up every process."""
from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import signal
import socket
import stat
import subprocess
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

HERE = Path(__file__).resolve().parent
FUNCTIONS_DIR = HERE / "functions"

ACCESS_KEY = "AKIDWISPTEST"
SECRET_KEY = "wisp-test-secret"
REGION = "us-east-1"
ROLE = "arn:aws:iam::000000000000:role/wisp-test"

# The default server is started with this variable in its environment; no
# function may see it.
LEAK_ENV = "WISP_TEST_SECRET"
LEAK_VALUE = "leak-" + uuid.uuid4().hex

LIVE_SERVERS: "set[Server]" = set()


def wisp_bin() -> str:
    b = os.environ.get("WISP_BIN")
    if not b:
        target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/wisp-target")
        b = os.path.join(target, "debug", "wisp")
    return b


def unique(prefix: str) -> str:
    """A unique, valid function name."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- waiting


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1, message: str = "") -> Any:
    """Poll predicate until it returns something truthy; return that value.
    Raises AssertionError (with the last value or exception) on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = predicate()
            if last:
                return last
        except AssertionError as e:  # allow predicates that assert
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate!r}; last: {last!r}")
        time.sleep(interval)


# --------------------------------------------------------------------------- processes


def _stat_fields(pid: int) -> "list[str] | None":
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    # fields after "(comm)": state ppid pgrp session ... starttime is field 22 (index 19 here)
    return data[data.rfind(")") + 2 :].split()


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    f = _stat_fields(pid)
    return f is not None and f[0] not in ("Z", "X", "x")


def _starttime(pid: int) -> "str | None":
    f = _stat_fields(pid)
    return f[19] if f else None


def descendants(root: int) -> "list[tuple[int, str]]":
    """(pid, starttime) of every live descendant of root."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            f = _stat_fields(int(d))
            if f:
                children.setdefault(int(f[1]), []).append(int(d))
    out, stack = [], [root]
    while stack:
        for c in children.get(stack.pop(), []):
            st = _starttime(c)
            if st:
                out.append((c, st))
            stack.append(c)
    return out


def pids_with_cmdline(token: str) -> "list[int]":
    """Live pids whose command line contains token."""
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        if token in cmd and pid_alive(int(d)):
            found.append(int(d))
    return found


def pids_referencing(path: str) -> "list[tuple[int, str]]":
    """Live processes (other than us) whose cwd or environment mention path."""
    found = []
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        pid = int(d)
        hit = False
        try:
            if path in os.readlink(f"/proc/{pid}/cwd"):
                hit = True
        except OSError:
            pass
        if not hit:
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    hit = path.encode() in f.read()
            except OSError:
                pass
        if hit and pid_alive(pid):
            st = _starttime(pid)
            if st:
                found.append((pid, st))
    return found


def kill_exact(procs: "list[tuple[int, str]]") -> "list[int]":
    """SIGKILL each (pid, starttime) that is still that same live process."""
    killed = []
    for pid, st in procs:
        if pid_alive(pid) and _starttime(pid) == st:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    return killed


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- server


def server_env(extra: "dict[str, str] | None" = None) -> "dict[str, str]":
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WISP_"))}
    env.update(
        {
            "WISP_ROOT_ACCESS_KEY_ID": ACCESS_KEY,
            "WISP_ROOT_SECRET_ACCESS_KEY": SECRET_KEY,
            "RUST_BACKTRACE": "1",
        }
    )
    env.update(extra or {})
    return env


class Server:
    """The real `wisp serve` process, on 127.0.0.1, with its own data dir and log."""

    def __init__(self, root: Path, args: "list[str] | tuple" = (), env: "dict[str, str] | None" = None, name: str = "wisp"):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.root / "data"
        self.cwd = self.root / "cwd"
        self.cwd.mkdir(exist_ok=True)
        self.log_path = self.root / "server.log"
        self.log_path.touch()
        self.args = [str(a) for a in args]
        self.extra_env = dict(env or {})
        self.name = name
        self.port = free_port()
        self.proc: "subprocess.Popen | None" = None
        self.starts = 0
        self.leftovers: "list[int]" = []  # pids we had to kill after the server was gone

    def __repr__(self) -> str:
        return f"<Server {self.name} {self.endpoint} {self.status()}>"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> str:
        if self.proc is None:
            return "not started"
        rc = self.proc.poll()
        return f"pid {self.proc.pid} running" if rc is None else f"pid {self.proc.pid} exited {rc}"

    def command(self) -> "list[str]":
        return [wisp_bin(), "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir), *self.args]

    def start(self, timeout: float = 90.0) -> "Server":
        assert not self.running(), "already running"
        binary = wisp_bin()
        if not os.access(binary, os.X_OK):
            raise RuntimeError(f"wisp binary not found or not executable: {binary} (set WISP_BIN)")
        self.data_dir.mkdir(exist_ok=True)
        cmd = self.command()
        LIVE_SERVERS.add(self)
        with open(self.log_path, "ab") as log:
            log.write(f"\n----- [test harness] start #{self.starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.cwd,
                env=server_env(self.extra_env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self.starts += 1
        self.wait_healthy(timeout)
        return self

    def health(self, timeout: float = 5.0) -> "tuple[int, bytes]":
        status, _, body = http_request(self.endpoint, "GET", "/wisp/v1/health", timeout=timeout)
        return status, body

    def wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"wisp exited with {self.proc.returncode} while starting:\n{self.log_tail()}")
            try:
                status, _ = self.health(timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"wisp not healthy after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.1)

    def _cleanup_after_exit(self, tree: "list[tuple[int, str]]") -> None:
        # Instances the server started in their own process groups/sessions, or
        # that outlived it: kill them by pid (checked against their start time).
        killed = kill_exact(tree)
        killed += kill_exact(pids_referencing(str(self.data_dir)))
        self.leftovers.extend(killed)

    def terminate(self) -> None:
        """SIGTERM to the server process only (graceful stop); does not wait."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 30.0) -> "int | None":
        """SIGTERM the process group, wait, SIGKILL if needed; kill leftovers. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            tree = descendants(self.proc.pid)
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=30)
            self._cleanup_after_exit(tree)
        else:
            self._cleanup_after_exit([])
        return self.proc.returncode

    def kill9(self) -> None:
        """kill -9 the whole process group (a crash), and whatever it started."""
        assert self.proc is not None and self.proc.poll() is None, "not running"
        tree = descendants(self.proc.pid)
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._cleanup_after_exit(tree)
        with open(self.log_path, "ab") as log:
            log.write(b"\n----- [test harness] kill -9\n")

    def restart(self, timeout: float = 90.0) -> "Server":
        """Stop (if running) and start again on the same port and data dir."""
        if self.running():
            self.stop()
        return self.start(timeout=timeout)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            LIVE_SERVERS.discard(self)

    # logs
    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_text(self, since: int = 0) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, since: int = 0, lines: int = 150, max_chars: int = 30000) -> str:
        text = self.log_text(since)
        tail = "\n".join(text.splitlines()[-lines:])
        return tail[-max_chars:]

    # clients
    def client(self):
        return lambda_client(self.endpoint)

    def records(self, name: str, limit: "int | None" = None, after: "int | None" = None) -> "list[dict]":
        q = []
        if limit is not None:
            q.append(f"limit={limit}")
        if after is not None:
            q.append(f"after={after}")
        path = f"/wisp/v1/functions/{name}/records" + ("?" + "&".join(q) if q else "")
        status, _, body = http_request(self.endpoint, "GET", path)
        assert status == 200, f"GET {path} -> {status} {body[:500]!r}"
        return json.loads(body)["Records"]

    def wait_records(self, name: str, count: int, timeout: float = 20.0) -> "list[dict]":
        """Poll the records endpoint until at least `count` records exist."""

        def enough():
            recs = self.records(name, limit=1000)
            return recs if len(recs) >= count else None

        return wait_for(enough, timeout=timeout, message=f"{count} records for {name}")


# --------------------------------------------------------------------------- clients


def lambda_client(endpoint: str, validate: bool = True):
    """boto3 lambda client: retries off (429s and errors stay observable),
    region us-east-1, the test keys. validate=False skips botocore's own
    parameter checks so that the server sees out-of-range values."""
    session = boto3.session.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name=REGION
    )
    return session.client(
        "lambda",
        endpoint_url=endpoint,
        config=Config(
            region_name=REGION,
            retries={"max_attempts": 0},
            read_timeout=120,
            connect_timeout=10,
            max_pool_connections=32,
            parameter_validation=validate,
        ),
    )


def http_request(
    endpoint: str,
    method: str,
    path: str,
    body: "bytes | str | dict | list | None" = None,
    headers: "dict[str, str] | None" = None,
    sign: bool = True,
    timeout: float = 60.0,
) -> "tuple[int, dict[str, str], bytes]":
    """A raw HTTP request (SigV4-signed like boto3 would, unless sign=False).
    Returns (status, lower-cased headers, body)."""
    if isinstance(body, (dict, list)):
        data: "bytes | None" = json.dumps(body).encode()
    elif isinstance(body, str):
        data = body.encode()
    else:
        data = body
    hdrs = dict(headers or {})
    if data is not None:
        hdrs.setdefault("Content-Type", "application/json")
    if sign:
        req = AWSRequest(method=method, url=endpoint + path, data=data or b"", headers=hdrs)
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "lambda", REGION).add_auth(req)
        hdrs = dict(req.headers.items())
    host, port = endpoint.split("//", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


# --------------------------------------------------------------------------- zips


def make_zip(files: "dict[str, Any]", compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """Build a zip in memory from {path: content} or {path: (content, unix_mode)}."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for path, spec in files.items():
            content, mode = spec if isinstance(spec, tuple) else (spec, None)
            if isinstance(content, str):
                content = content.encode()
            info = zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = compression
            info.create_system = 3
            info.external_attr = (stat.S_IFREG | (0o644 if mode is None else mode)) << 16
            zf.writestr(info, content)
    return buf.getvalue()


def function_files(fixture: str) -> "dict[str, tuple[bytes, int]]":
    """The files of tests/e2e/functions/<fixture>, with their unix modes."""
    root = FUNCTIONS_DIR / fixture
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts:
            rel = p.relative_to(root).as_posix()
            mode = 0o755 if (os.access(p, os.X_OK) or rel == "bootstrap") else 0o644
            out[rel] = (p.read_bytes(), mode)
    return out


def function_zip(fixture: str, extra: "dict[str, Any] | None" = None) -> bytes:
    files: dict[str, Any] = dict(function_files(fixture))
    files.update(extra or {})
    return make_zip(files)


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


# --------------------------------------------------------------------------- lambda helpers


def create_function(
    client,
    name: str,
    *,
    fixture: "str | None" = "py_tool",
    files: "dict[str, Any] | None" = None,
    zip_bytes: "bytes | None" = None,
    runtime: str = "python3.11",
    handler: str = "app.handler",
    env: "dict[str, str] | None" = None,
    timeout: "int | None" = None,
    memory: "int | None" = None,
    publish: bool = False,
    description: "str | None" = None,
    wait_active: bool = True,
) -> dict:
    if zip_bytes is None:
        zip_bytes = make_zip(files) if files is not None else function_zip(fixture)  # type: ignore[arg-type]
    params: dict[str, Any] = dict(
        FunctionName=name, Runtime=runtime, Role=ROLE, Handler=handler, Code={"ZipFile": zip_bytes}, Publish=publish
    )
    if env is not None:
        params["Environment"] = {"Variables": env}
    if timeout is not None:
        params["Timeout"] = timeout
    if memory is not None:
        params["MemorySize"] = memory
    if description is not None:
        params["Description"] = description
    resp = client.create_function(**params)
    if wait_active and resp.get("State") not in (None, "Active"):
        wait_for(
            lambda: client.get_function_configuration(FunctionName=name)["State"] == "Active",
            timeout=30,
            message=f"{name} Active",
        )
    return resp


@dataclass
class Result:
    status: int
    function_error: "str | None"
    payload: Any  # parsed JSON, or raw bytes if not JSON
    raw: bytes
    log: "str | None"  # decoded LogResult
    request_id: "str | None"
    executed_version: "str | None"
    response: dict


def invoke(
    client,
    name: str,
    event: Any = None,
    *,
    payload: "bytes | None" = None,
    invocation_type: str = "RequestResponse",
    log: bool = False,
    qualifier: "str | None" = None,
) -> Result:
    params: dict[str, Any] = dict(FunctionName=name, InvocationType=invocation_type)
    params["Payload"] = payload if payload is not None else json.dumps({} if event is None else event).encode()
    if log:
        params["LogType"] = "Tail"
    if qualifier is not None:
        params["Qualifier"] = qualifier
    resp = client.invoke(**params)
    raw = resp["Payload"].read() if "Payload" in resp else b""
    try:
        parsed: Any = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw
    log_result = resp.get("LogResult")
    return Result(
        status=resp["StatusCode"],
        function_error=resp.get("FunctionError"),
        payload=parsed,
        raw=raw,
        log=base64.b64decode(log_result).decode("utf-8", "replace") if log_result else None,
        request_id=resp["ResponseMetadata"].get("RequestId"),
        executed_version=resp.get("ExecutedVersion"),
        response=resp,
    )


def error_code(exc: BaseException) -> str:
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def error_message(exc: BaseException) -> str:
    err = getattr(exc, "response", {}).get("Error", {})
    return err.get("Message") or str(exc)


def read_lines(path: "str | Path") -> "list[str]":
    try:
        with open(path) as f:
            return [line.rstrip("\n") for line in f if line.strip()]
    except FileNotFoundError:
        return []


# --------------------------------------------------------------------------- CLI


def cli_env(server: Server, extra: "dict[str, str] | None" = None) -> "dict[str, str]":
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WISP_"))}
    env.update(
        {
            "WISP_ENDPOINT": server.endpoint,
            # The contract does not say where the CLI takes credentials from:
            # offer both the AWS names and the server's names.
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "WISP_ACCESS_KEY_ID": ACCESS_KEY,
            "WISP_SECRET_ACCESS_KEY": SECRET_KEY,
            "WISP_ROOT_ACCESS_KEY_ID": ACCESS_KEY,
            "WISP_ROOT_SECRET_ACCESS_KEY": SECRET_KEY,
            "NO_COLOR": "1",
        }
    )
    env.update(extra or {})
    return env


def run_cli(server: Server, *args: str, cwd: "str | Path | None" = None, timeout: float = 120.0,
            env: "dict[str, str] | None" = None) -> subprocess.CompletedProcess:
    """Run the `wisp` CLI against server; the child is killed on timeout."""
    return subprocess.run(
        [wisp_bin(), *args],
        cwd=cwd,
        env=cli_env(server, env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
