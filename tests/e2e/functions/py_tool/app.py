"""A multi-purpose Python handler driven by the event, used by most e2e tests.

Event keys (all optional, applied in this order):
  mark: true          -> write "started" to $MARK_FILE (tells the test we are running)
  print: "text"       -> print(text)
  print_mb: N         -> print N MiB of output
  append: "line"      -> append the line to $OUT_FILE
  spawn: "token"      -> start a child `sleep 100.<digits>` (token in its argv), write its pid to $PID_FILE
  alloc_mb: N         -> allocate N MiB in 10 MiB chunks, touching every page
  sleep: seconds      -> time.sleep
  interval: true      -> write {"start", "end"} around the sleep to $INTERVAL_DIR/<request id>.json
  raise: "message"    -> raise ValueError(message)
  exit: code          -> os._exit(code)
  want_context: true  -> return context and environment details
Returns {"ok": true, "echo": event, "greeting": $GREETING} (plus "context"/"env"/"cwd" when asked).
"""
import json
import os
import subprocess
import sys
import time


def handler(event, context):
    if not isinstance(event, dict):
        return {"ok": True, "echo": event}
    started = time.time()
    if event.get("mark"):
        with open(os.environ["MARK_FILE"], "w") as f:
            f.write("started")
    if "print" in event:
        print(event["print"], flush=True)
    if event.get("print_mb"):
        line = "x" * 1023 + "\n"
        for _ in range(int(event["print_mb"]) * 1024):
            sys.stdout.write(line)
        sys.stdout.flush()
    if "append" in event:
        with open(os.environ["OUT_FILE"], "a") as f:
            f.write(str(event["append"]) + "\n")
    if event.get("spawn"):
        # A unique duration makes the child findable by its command line.
        child = subprocess.Popen(["sleep", "100." + str(event["spawn"])])
        with open(os.environ["PID_FILE"], "w") as f:
            f.write(str(child.pid))
    if event.get("alloc_mb"):
        hold = []
        for _ in range(int(event["alloc_mb"]) // 10):
            hold.append(bytearray(b"\x01") * (10 * 1024 * 1024))
        print("allocated", len(hold) * 10, "MiB", flush=True)
    if event.get("sleep"):
        time.sleep(float(event["sleep"]))
    if event.get("interval"):
        path = os.path.join(os.environ["INTERVAL_DIR"], context.aws_request_id + ".json")
        with open(path + ".tmp", "w") as f:
            json.dump({"start": started, "end": time.time()}, f)
        os.rename(path + ".tmp", path)
    if "raise" in event:
        raise ValueError(event["raise"])
    if "exit" in event:
        os._exit(int(event["exit"]))

    result = {"ok": True, "echo": event, "greeting": os.environ.get("GREETING")}
    if event.get("want_context"):
        result["context"] = {
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
        }
        result["env"] = dict(os.environ)
        result["cwd"] = os.getcwd()
        result["uid"] = os.getuid()
    return result
