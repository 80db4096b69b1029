"""IoT alerts: MQTT sensor readings in, a Redis stream of alerts out.

wisp invokes this with batches of MQTT messages (the `mqtt` trigger's event: payloads
base64). Each payload is a JSON reading `{"reading_id": N, "temperature": 31.4, "ts": ...}`
published on `sensors/<sensor>/temperature`. Readings over $ALERT_THRESHOLD become entries
of the Redis stream $ALERT_STREAM on $ALERT_REDIS_URL (redis://host:port/db).

A failure to write the alerts fails the invocation: wisp retries the batch, and acknowledges
the MQTT messages only once it went through (at least once: a retried batch may write an
alert twice; each alert carries its reading's id, so readers can tell).

The Redis client is the few lines of RESP below, so the function needs nothing installed.
"""
import base64
import json
import os
import socket
from urllib.parse import urlparse

THRESHOLD = float(os.environ.get("ALERT_THRESHOLD", "30"))
STREAM = os.environ.get("ALERT_STREAM", "alerts")
REDIS_URL = os.environ.get("ALERT_REDIS_URL", "redis://127.0.0.1:6379/0")


def resp_command(*args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def read_reply(f):
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind == b"-":
        raise RuntimeError(f"redis error: {rest.decode(errors='replace')}")
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2]
    if kind == b"*":
        return [read_reply(f) for _ in range(max(int(rest), 0))]
    return rest


def xadd_all(entries) -> None:
    """XADDs every entry in one round trip (a pipeline)."""
    url = urlparse(REDIS_URL)
    password = os.environ.get("ALERT_REDIS_PASSWORD")
    cmds = []
    if password:
        cmds.append(resp_command("AUTH", os.environ.get("ALERT_REDIS_USERNAME", "default"), password))
    cmds.append(resp_command("SELECT", (url.path or "/0").lstrip("/") or "0"))
    for fields in entries:
        flat = [x for kv in fields.items() for x in kv]
        cmds.append(resp_command("XADD", STREAM, "*", *flat))
    with socket.create_connection((url.hostname, url.port or 6379), timeout=10) as s:
        s.sendall(b"".join(cmds))
        f = s.makefile("rb")
        for _ in cmds:
            read_reply(f)


def handler(event, context):
    alerts, readings, bad = [], 0, 0
    for m in event.get("messages", []):
        try:
            reading = json.loads(base64.b64decode(m["payload"]))
            temperature = float(reading["temperature"])
        except (ValueError, KeyError, TypeError):
            bad += 1  # not a reading: skipped (a real pipeline might dead-letter it)
            continue
        readings += 1
        if temperature > THRESHOLD:
            parts = m["topic"].split("/")
            sensor = parts[1] if len(parts) > 2 else m["topic"]
            alerts.append({
                "sensor": sensor,
                "temperature": f"{temperature:.2f}",
                "reading_id": str(reading.get("reading_id", "")),
                "ts": str(reading.get("ts", "")),
                "topic": m["topic"],
            })
    if alerts:
        xadd_all(alerts)
    return {"readings": readings, "alerts": len(alerts), "skipped": bad}
