"""A handler that forks without bound is stopped by the instance's process cap, and
everything it started dies with the instance."""

import time

from wisp_e2e import create_function, invoke, pid_alive, unique

FORKER = """
import subprocess, os
def handler(event, context):
    started, refused = [], None
    for i in range(event["n"]):
        try:
            started.append(subprocess.Popen(["sleep", "300"]).pid)
        except OSError as e:
            refused = type(e).__name__
            break
    open(event["pidfile"], "w").write(" ".join(map(str, started)))
    if event.get("hang"):
        import time; time.sleep(60)
    return {"started": len(started), "refused": refused}
"""


def test_fork_storm_is_capped_and_cleaned_up(lam, tmp_path):
    name = unique("forker")
    create_function(lam, name, files={"app.py": FORKER}, timeout=5, memory=512)
    pidfile = tmp_path / "pids"
    r = invoke(lam, name, {"n": 2000, "pidfile": str(pidfile), "hang": True})
    # The instance hit its process cap (512 with the pids cgroup), then its timeout.
    assert r.function_error == "Unhandled", r.payload
    assert r.payload["errorType"] == "Sandbox.Timedout", r.payload
    pids = [int(p) for p in pidfile.read_text().split()]
    assert 0 < len(pids) < 2000, len(pids)
    deadline = time.time() + 20
    while time.time() < deadline and any(pid_alive(p) for p in pids):
        time.sleep(0.2)
    assert not [p for p in pids if pid_alive(p)], "processes of a timed-out instance survived"
    # The function still serves afterwards.
    r = invoke(lam, name, {"n": 1, "pidfile": str(tmp_path / "pids2")})
    assert r.function_error is None and r.payload["started"] == 1, r.payload
