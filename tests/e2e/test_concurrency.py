"""Reserved concurrency: the limit holds, excess callers wait up to
--queue-wait-ms and then get 429 TooManyRequestsException."""
from __future__ import annotations

import json
import threading

import pytest
from botocore.exceptions import ClientError

from wisp_e2e import create_function, error_code, invoke, lambda_client, unique, wait_for


def max_overlap(intervals: "list[tuple[float, float]]") -> int:
    events = []
    for start, end in intervals:
        events.append((start, 1))
        events.append((end, -1))
    events.sort(key=lambda e: (e[0], e[1]))  # ends before starts at equal times
    cur = best = 0
    for _, delta in events:
        cur += delta
        best = max(best, cur)
    return best


def test_reserved_concurrency_limits_overlap_and_throttles(make_server, tmp_path):
    srv = make_server("--queue-wait-ms", "3000", name="concurrency")
    lam = srv.client()
    name = unique("conc-limit")
    interval_dir = tmp_path / "intervals"
    interval_dir.mkdir()
    create_function(lam, name, env={"INTERVAL_DIR": str(interval_dir)}, timeout=30)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)

    n = 10
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def call(i: int) -> None:
        client = lambda_client(srv.endpoint)
        barrier.wait()
        try:
            r = invoke(client, name, {"interval": True, "sleep": 1, "i": i})
            results[i] = ("ok", r)
        except ClientError as e:
            results[i] = (error_code(e), e.response["ResponseMetadata"]["HTTPStatusCode"])
        except Exception as e:  # noqa: BLE001 - recorded and asserted below
            results[i] = ("exception", repr(e))

    threads = [threading.Thread(target=call, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(not t.is_alive() for t in threads), "invokes hung"

    ok = [r for kind, r in results if kind == "ok"]
    throttled = [r for kind, r in results if kind == "TooManyRequestsException"]
    other = [x for x in results if x[0] not in ("ok", "TooManyRequestsException")]
    print(f"{len(ok)} succeeded, {len(throttled)} throttled")
    assert not other, other
    assert all(status == 429 for status in throttled)
    for r in ok:
        assert r.function_error is None, r.payload
    assert len(ok) >= 2, results
    assert len(throttled) >= 1, f"10 one-second calls at concurrency 2 with a 3 s queue wait must throttle some: {results}"
    assert len(ok) + len(throttled) == n

    intervals = []
    for p in interval_dir.glob("*.json"):
        d = json.loads(p.read_text())
        intervals.append((d["start"], d["end"]))
    assert len(intervals) == len(ok), "one interval per successful call, none for throttled ones"
    print(f"max overlap {max_overlap(intervals)}")
    assert 1 <= max_overlap(intervals) <= 2, intervals

    # Exactly the successful calls are recorded as successes (throttles may be recorded as "Throttled").
    def successes():
        recs = srv.records(name, limit=1000)
        return [r for r in recs if r["Status"] == "Success"]

    wait_for(lambda: len(successes()) >= len(ok), timeout=20, message="success records")
    assert len(successes()) == len(ok)
    assert all(r["Status"] in ("Success", "Throttled") for r in srv.records(name, limit=1000))


def test_concurrency_round_trip_and_zero(lam):
    name = unique("conc-rt")
    create_function(lam, name)
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)

    put = lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=2)
    assert put["ReservedConcurrentExecutions"] == 2
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 2
    assert invoke(lam, name, {"n": 1}).payload["echo"] == {"n": 1}

    lam.delete_function_concurrency(FunctionName=name)
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)

    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 0
    for _ in range(3):
        with pytest.raises(lam.exceptions.TooManyRequestsException):
            invoke(lam, name, {"n": 2})

    lam.delete_function_concurrency(FunctionName=name)
    assert invoke(lam, name, {"n": 3}).payload["echo"] == {"n": 3}

    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.put_function_concurrency(FunctionName=unique("conc-missing"), ReservedConcurrentExecutions=1)
