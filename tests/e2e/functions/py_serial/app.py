"""Appends the event's id to $OUT_FILE, then sleeps 0.2 s, holding a file lock
($LOCK_FILE) so that invocations run one at a time however many instances run."""
import fcntl
import os
import time


def handler(event, context):
    with open(os.environ["LOCK_FILE"], "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with open(os.environ["OUT_FILE"], "a") as f:
            f.write(f"{event['id']}\n")
        time.sleep(float(event.get("sleep", 0.2)))
    if event.get("fail"):
        raise RuntimeError(f"failing on purpose: {event['id']}")
    return {"id": event["id"]}
