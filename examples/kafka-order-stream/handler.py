"""The order stream's function: Lambda's self-managed Kafka event in, one line per order out.

Orders are keyed by customer, so one customer's orders share a partition and arrive here in
the order they were placed. The function keeps a running total per customer (in the output
file, so that it survives restarts) and appends every order it processed, with the
partition and offset it came from, to <ORDER_STREAM_DIR>/<topic>.jsonl.

A record that is not a valid order (not JSON, no amount) is reported and skipped; an
exception would make wisp retry the batch and, after its retries, send it to the failure
topic.
"""
import base64
import json
import os

OUT = os.environ.get("ORDER_STREAM_DIR", "/tmp/wisp-kafka-order-stream")


def handler(event, context):
    os.makedirs(OUT, exist_ok=True)
    processed, skipped = [], 0
    for _topic_partition, records in event["records"].items():
        for r in records:
            try:
                order = json.loads(base64.b64decode(r["value"]))
                amount = float(order["amount"])
            except (TypeError, ValueError, KeyError):
                skipped += 1
                print(f"skipping a record that is not an order: {r['topic']}-{r['partition']}@{r['offset']}")
                continue
            processed.append({
                "order_id": order["order_id"],
                "customer": order["customer"],
                "seq": order["seq"],
                "amount": amount,
                "partition": r["partition"],
                "offset": r["offset"],
            })
    if processed:
        topic = next(iter(event["records"].values()))[0]["topic"]
        # One write per batch: batches of different partitions may run at once.
        lines = "".join(json.dumps(o) + "\n" for o in processed).encode()
        fd = os.open(os.path.join(OUT, f"{topic}.jsonl"), os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o644)
        try:
            os.write(fd, lines)
        finally:
            os.close(fd)
    return {"processed": len(processed), "skipped": skipped}
