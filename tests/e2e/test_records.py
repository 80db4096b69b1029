"""Per-invocation records (/wisp/v1/functions/{name}/records) and keep-alive."""
from __future__ import annotations

import json
import math
import time
import uuid

from wisp_e2e import create_function, http_request, invoke, unique


def test_cold_then_warm_records(server, lam):
    name = unique("rec-coldwarm")
    create_function(lam, name, memory=256)
    text1 = "first-" + uuid.uuid4().hex
    text2 = "second-" + uuid.uuid4().hex
    r1 = invoke(lam, name, {"print": text1})
    r2 = invoke(lam, name, {"print": text2})
    assert r1.function_error is None and r2.function_error is None

    recs = server.wait_records(name, 2)
    assert len(recs) == 2
    cold, warm = recs
    assert cold["Seq"] < warm["Seq"]
    assert cold["RequestId"] == r1.request_id
    assert warm["RequestId"] == r2.request_id
    assert cold["InitDurationMs"] is not None and cold["InitDurationMs"] > 0, "first invoke is a cold start"
    assert warm["InitDurationMs"] is None, "second invoke is warm"
    for rec, text in ((cold, text1), (warm, text2)):
        assert rec["FunctionName"] == name
        assert rec["Version"] == "$LATEST"
        assert rec["InvocationType"] == "RequestResponse"
        assert rec["Status"] == "Success"
        assert rec["ErrorType"] is None
        assert rec["StartTimeMs"] > 1_600_000_000_000  # epoch milliseconds
        assert rec["DurationMs"] > 0
        assert isinstance(rec["BilledDurationMs"], int)
        assert rec["BilledDurationMs"] >= math.ceil(rec["DurationMs"] - 1e-6)
        assert rec["BilledDurationMs"] >= 1
        assert rec["MaxMemoryUsedMb"] > 0
        assert rec["MemorySizeMb"] == 256
        assert text in rec["Logs"]
    assert text2 not in cold["Logs"], "logs are per invocation"

    # Paging: limit and after.
    first = server.records(name, limit=1)
    assert [r["Seq"] for r in first] == [cold["Seq"]]
    rest = server.records(name, after=cold["Seq"])
    assert [r["Seq"] for r in rest] == [warm["Seq"]]


def test_error_record(server, lam):
    name = unique("rec-error")
    create_function(lam, name)
    invoke(lam, name, {"print": "about to fail", "raise": "record me"})
    rec = server.wait_records(name, 1)[-1]
    assert rec["Status"] == "Error"
    assert rec["ErrorType"] == "ValueError"
    assert "about to fail" in rec["Logs"]


def test_records_for_missing_function(server):
    status, _, body = http_request(server.endpoint, "GET", f"/wisp/v1/functions/{unique('rec-none')}/records")
    # Either "no such function" or an empty history; never a 5xx or someone else's records.
    assert status == 404 or (status == 200 and json.loads(body)["Records"] == []), (status, body[:300])


def test_keep_alive_expiry_means_cold_again(make_server):
    srv = make_server("--keep-alive-secs", "1", name="keepalive")
    lam = srv.client()
    name = unique("rec-keepalive")
    create_function(lam, name)
    assert invoke(lam, name, {"n": 1}).function_error is None
    assert invoke(lam, name, {"n": 2}).function_error is None  # warm, within keep-alive
    time.sleep(3.5)
    assert invoke(lam, name, {"n": 3}).function_error is None  # the instance was reclaimed

    recs = srv.wait_records(name, 3)
    assert recs[0]["InitDurationMs"] is not None
    assert recs[1]["InitDurationMs"] is None
    assert recs[2]["InitDurationMs"] is not None, "after keep-alive expiry the next invoke is cold"
