"""The examples keep working: the order pipeline runs end to end against a real server."""

import subprocess
import sys
from pathlib import Path

from wisp_e2e import cli_env

ROOT = Path(__file__).resolve().parents[2]


def test_order_pipeline_example(server):
    r = subprocess.run([sys.executable, str(ROOT / "examples/order-pipeline/run.py")], env=cli_env(server),
                       capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "-> 202" in out and "order_handled" in out and "NOTIFY receipt ready: s3://pipeline-receipts/receipts/order-" in out, out
    assert out.strip().endswith("pipeline OK"), out
