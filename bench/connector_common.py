"""Helpers shared by the connector benchmarks (bench/connector_*.py): ports, processes
started in their own process group and stopped by it, the handler's log lines."""

import os
import signal
import socket
import subprocess
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def wait_port(port, proc=None, timeout=30):
    """Waits until something listens on 127.0.0.1:`port`; gives up early if `proc` exits."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"process exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def start(cmd, env, log):
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)


def stop(proc):
    if proc and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def lines(path):
    try:
        with open(path) as f:
            return [l for l in f.read().split("\n") if l]
    except FileNotFoundError:
        return []


def wait_lines(path, n, timeout=600):
    t0 = time.time()
    while True:
        got = lines(path)
        if len(got) >= n:
            return got
        if time.time() - t0 > timeout:
            raise SystemExit(f"only {len(got)} of {n} handled")
        time.sleep(0.02)
