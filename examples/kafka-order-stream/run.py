#!/usr/bin/env python3
"""The Kafka order stream end to end: producer -> Kafka topic -> wisp function.

1. creates the topic (3 partitions) and its failure topic on the broker at $KAFKA_BOOTSTRAP;
2. deploys this folder with the wisp CLI (`wisp deploy`: the function and its kafka trigger,
   see wisp.toml) against the server the CLI finds (WISP_ENDPOINT and keys, as `wisp` does);
3. produces $ORDER_COUNT orders (default 500) keyed by customer;
4. waits until the function processed every order, checks that each customer's orders were
   processed in the order they were placed, and prints the totals per customer.

    KAFKA_BOOTSTRAP=127.0.0.1:9092 python examples/kafka-order-stream/run.py

The `wisp` binary is $WISP_CLI, else `wisp` on PATH. Needs confluent-kafka
(`pip install confluent-kafka`).
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from producer import produce  # noqa: E402

OUT_DIR = Path(os.environ.get("ORDER_STREAM_DIR", "/tmp/wisp-kafka-order-stream"))


def create_topics(bootstrap: str, names: "list[str]") -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(n, num_partitions=3, replication_factor=1) for n in names])
    for name, fut in futures.items():
        try:
            fut.result(timeout=30)
        except Exception as e:  # an existing topic is fine
            if "already exists" not in str(e).lower() and "TOPIC_ALREADY_EXISTS" not in str(e):
                raise


def main() -> None:
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP") or sys.exit("set KAFKA_BOOTSTRAP=host:port")
    topic = os.environ.get("ORDER_TOPIC") or f"orders-{int(time.time() * 1000)}"
    count = int(os.environ.get("ORDER_COUNT", "500"))
    wisp = os.environ.get("WISP_CLI") or shutil.which("wisp") or sys.exit("set WISP_CLI to the wisp binary")

    create_topics(bootstrap, [topic, f"{topic}-failed"])
    print(f"topics {topic} and {topic}-failed ready on {bootstrap}")
    env = {**os.environ, "KAFKA_BOOTSTRAP": bootstrap, "ORDER_TOPIC": topic}
    r = subprocess.run([wisp, "deploy"], cwd=HERE, env=env, capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        sys.exit(f"wisp deploy failed:\n{r.stdout}{r.stderr}")
    print("deployed order_stream with its kafka trigger")

    produce(bootstrap, topic, count)
    print(f"{count} orders produced to {topic}")

    out = OUT_DIR / f"{topic}.jsonl"
    deadline = time.time() + 150
    rows: "list[dict]" = []
    while time.time() < deadline:
        if out.exists():
            rows = [json.loads(line) for line in out.read_text().splitlines() if line]
            if len({r["order_id"] for r in rows}) >= count:
                break
        time.sleep(0.5)
    else:
        sys.exit(f"only {len({r['order_id'] for r in rows})} of {count} orders processed")

    # At least once: an order may be processed twice (after a crash), never out of order
    # within a customer: the first time each order was seen follows the customer's seq.
    seen, totals, dups = set(), {}, 0
    last_seq: "dict[str, int]" = {}
    for r in rows:
        if r["order_id"] in seen:
            dups += 1
            continue
        seen.add(r["order_id"])
        c = r["customer"]
        if r["seq"] != last_seq.get(c, 0) + 1:
            sys.exit(f"customer {c}: order seq {r['seq']} after {last_seq.get(c, 0)}: out of order")
        last_seq[c] = r["seq"]
        n, total = totals.get(c, (0, 0.0))
        totals[c] = (n + 1, total + r["amount"])
    print(f"processed {len(seen)} orders ({dups} duplicate deliveries), per customer in order:")
    for c, (n, total) in sorted(totals.items()):
        print(f"  {c:<8} {n:>4} orders  {total:>10.2f}")
    print("order stream OK")


if __name__ == "__main__":
    main()
