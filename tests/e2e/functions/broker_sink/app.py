"""The handler the broker connector tests deploy.

For every record of a batch it finds the message's test id (see `message_id`), appends
`<id>` to $SINK_DIR/handled (one short O_APPEND write per batch, so lines never interleave),
and fails the whole batch the first time it sees a message whose id is divisible by
$FAIL_EVERY (0 = never fail): the connector must retry it. Ids listed in
$SINK_DIR/poison fail every time (they must reach the failure destination).
"""
import base64
import json
import os

SINK = os.environ["SINK_DIR"]
FAIL_EVERY = int(os.environ.get("FAIL_EVERY", "10"))


def payloads(event):
    """Every message payload (bytes) in the event, whatever the connector's shape."""
    out = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("value", "data", "payload", "body"):
                v = node.get(key)
                if isinstance(v, str):
                    try:
                        out.append(base64.b64decode(v, validate=True))
                        return
                    except Exception:
                        out.append(v.encode())
                        return
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(event)
    return out


def message_id(payload: bytes):
    """Test messages are JSON {"id": N, ...}; anything else has no id."""
    try:
        return int(json.loads(payload)["id"])
    except Exception:
        return None


def first_time(mid: int) -> bool:
    try:
        fd = os.open(os.path.join(SINK, "seen", str(mid)), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def poison():
    try:
        with open(os.path.join(SINK, "poison")) as f:
            return {int(x) for x in f.read().split()}
    except FileNotFoundError:
        return set()


def handler(event, context):
    os.makedirs(os.path.join(SINK, "seen"), exist_ok=True)
    ids = [message_id(p) for p in payloads(event)]
    known = [i for i in ids if i is not None]
    bad = poison()
    if any(i in bad for i in known):
        raise RuntimeError(f"poison message in batch: {sorted(set(known) & bad)}")
    if FAIL_EVERY:
        # Mark every message of the batch seen first, so a retried batch succeeds.
        firsts = [i for i in known if first_time(i)]
        if any(i % FAIL_EVERY == 0 for i in firsts):
            raise RuntimeError(f"first try of {[i for i in firsts if i % FAIL_EVERY == 0]}")
    if known:
        line = "".join(f"{i}\n" for i in known).encode()
        fd = os.open(os.path.join(SINK, "handled"), os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    unknown = len(ids) - len(known)
    if unknown:
        with open(os.path.join(SINK, "raw"), "a") as f:
            f.write(json.dumps(event) + "\n")
    return {"handled": len(known), "other": unknown}
