"""Places orders on the Kafka topic: `python producer.py BOOTSTRAP TOPIC COUNT`.

Each order is JSON, keyed by its customer (so a customer's orders stay in order on one
partition); `seq` numbers a customer's orders. Needs `pip install confluent-kafka`.
"""
import json
import random
import sys

from confluent_kafka import Producer

CUSTOMERS = ["ada", "brian", "chen", "dora", "emeka", "farah", "goran"]


def produce(bootstrap: str, topic: str, count: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    # acks from the broker and one request in flight: the broker keeps our order.
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "max.in.flight.requests.per.connection": 1})
    seq = {c: 0 for c in CUSTOMERS}
    failed = []
    for n in range(count):
        c = rng.choice(CUSTOMERS)
        seq[c] += 1
        order = {"order_id": f"o-{n:05d}", "customer": c, "seq": seq[c], "amount": round(rng.uniform(5, 250), 2)}
        p.produce(topic, json.dumps(order).encode(), key=c.encode(),
                  on_delivery=lambda err, _m: failed.append(err) if err else None)
        p.poll(0)
    p.flush(60)
    if failed:
        raise SystemExit(f"{len(failed)} orders were not acknowledged: {failed[0]}")
    return count


if __name__ == "__main__":
    n = produce(sys.argv[1], sys.argv[2], int(sys.argv[3]))
    print(f"{n} orders produced to {sys.argv[2]}")
