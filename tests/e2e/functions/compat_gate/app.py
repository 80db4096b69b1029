"""Holds its invocation until the test opens the gate: writes $GATE_DIR/started, then
waits for $GATE_DIR/open (at most 60 s). Lets a test keep one invocation in flight
without any timing assumption (tests/e2e/test_compat_lifecycle.py)."""
import os
import time


def handler(event, context):
    gate = os.environ["GATE_DIR"]
    if isinstance(event, dict) and event.get("hold"):
        with open(os.path.join(gate, "started"), "w") as f:
            f.write(context.aws_request_id)
        deadline = time.time() + 60
        while not os.path.exists(os.path.join(gate, "open")) and time.time() < deadline:
            time.sleep(0.02)
        return {"held": True, "opened": os.path.exists(os.path.join(gate, "open"))}
    return {"held": False}
