#!/usr/bin/env python3
"""What SigV4 verification adds to a warm invoke, measured in one run.

Starts two wisp servers from the same binary — one with authentication (the default),
one with --no-auth — deploys the same no-op Python function to both, and sends them
alternating warm invokes over one keep-alive connection each. Requests for the signed
server are signed before the timed loop, so the client's signing cost is not counted:
both servers get byte-identical requests (the --no-auth one ignores the signature), so
what differs is only the server's verification (body hash, canonical request, HMAC). Prints p50/p99 for both and the p50 ratio.

    python3 bench/sigv4_overhead.py --wisp target/release/wisp [-n 3000]

Needs boto3/botocore (the test venv has them). Binds and targets 127.0.0.1 only.
"""

import argparse
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

KEY, SECRET = "AKIABENCHSIGV4000000", "bench-secret-bench-secret-bench-secret00"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(wisp, data, auth):
    port, url_port = free_port(), free_port()
    env = dict(os.environ, WISP_ROOT_ACCESS_KEY_ID=KEY, WISP_ROOT_SECRET_ACCESS_KEY=SECRET)
    args = [wisp, "serve", "--listen", f"127.0.0.1:{port}", "--url-listen", f"127.0.0.1:{url_port}", "--data-dir", data]
    if not auth:
        args.append("--no-auth")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(200):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/wisp/v1/health")
            if c.getresponse().status == 200:
                return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("wisp did not start")


def signed(port, method, path, body):
    req = AWSRequest(method=method, url=f"http://127.0.0.1:{port}{path}", data=body, headers={"Content-Type": "application/json"})
    SigV4Auth(Credentials(KEY, SECRET), "lambda", "us-east-1").add_auth(req)
    return dict(req.headers.items())


def call(conn, method, path, body, headers):
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status >= 300:
        raise SystemExit(f"{method} {path}: {resp.status} {data[:300]!r}")
    return data


def deploy(port):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "def handler(event, context):\n    return {'ok': True}\n")
    body = json.dumps({"FunctionName": "noop", "Runtime": "python3.11", "Role": "r", "Handler": "handler.handler",
                       "Code": {"ZipFile": __import__("base64").b64encode(buf.getvalue()).decode()}}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port)
    call(conn, "POST", "/2015-03-31/functions", body, signed(port, "POST", "/2015-03-31/functions", body))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wisp", required=True)
    ap.add_argument("-n", type=int, default=3000)
    args = ap.parse_args()
    path, body = "/2015-03-31/functions/noop/invocations", b"{}"
    procs = []
    try:
        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
            (pa, port_auth), (pb, port_open) = start(args.wisp, a, True), start(args.wisp, b, False)
            procs = [pa, pb]
            deploy(port_auth)
            deploy(port_open)
            # Signatures are valid for 5 minutes; sign in batches just before use.
            c_auth = http.client.HTTPConnection("127.0.0.1", port_auth)
            c_open = http.client.HTTPConnection("127.0.0.1", port_open)
            plain = {"Content-Type": "application/json"}
            for _ in range(200):  # warm-up: instances started, connections open
                call(c_auth, "POST", path, body, signed(port_auth, "POST", path, body))
                call(c_open, "POST", path, body, plain)
            t_auth, t_open = [], []
            done = 0
            while done < args.n:
                batch = min(1000, args.n - done)
                headers = [signed(port_auth, "POST", path, body) for _ in range(batch)]
                for h in headers:
                    t0 = time.perf_counter()
                    call(c_auth, "POST", path, body, h)
                    t1 = time.perf_counter()
                    # The same bytes on the wire (the open server ignores the signature),
                    # so the only difference is the server's verification.
                    call(c_open, "POST", path, body, h)
                    t2 = time.perf_counter()
                    t_auth.append((t1 - t0) * 1000)
                    t_open.append((t2 - t1) * 1000)
                done += batch
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)
    p50a, p50o = pct(t_auth, 0.5), pct(t_open, 0.5)
    print(f"| warm invoke, n={args.n} | p50 ms | p99 ms |")
    print("|---|---|---|")
    print(f"| SigV4 on  | {p50a:.3f} | {pct(t_auth, 0.99):.3f} |")
    print(f"| --no-auth | {p50o:.3f} | {pct(t_open, 0.99):.3f} |")
    print(f"\nSigV4 adds {100 * (p50a / p50o - 1):+.1f}% at p50 (target: at most +5%)")


if __name__ == "__main__":
    sys.exit(main())
