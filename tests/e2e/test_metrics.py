"""Prometheus metrics: invocations, cold starts, billed GB-seconds, throttles, instances."""

import re

from wisp_e2e import create_function, http_request, invoke, unique


def metric(text: str, line_prefix: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_prefix):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {line_prefix!r} in:\n{text}")


def test_metrics_count_invocations_and_need_auth(server, lam):
    name = unique("met")
    create_function(lam, name, memory=512)
    for _ in range(3):
        assert invoke(lam, name, {}).function_error is None
    status, headers, body = http_request(server.endpoint, "GET", "/metrics")
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain")
    text = body.decode()
    assert metric(text, f'wisp_invocations_total{{function="{name}",status="Success"}}') == 3
    assert metric(text, f'wisp_cold_starts_total{{function="{name}"}}') == 1
    assert metric(text, f'wisp_invocation_duration_seconds_count{{function="{name}"}}') == 3
    # 512 MB for at least 1 ms, three times.
    assert metric(text, f'wisp_billed_gb_seconds_total{{function="{name}"}}') >= 3 * 0.001 * 0.5
    assert metric(text, 'wisp_instances{state="idle"}') >= 1
    assert re.search(r"^wisp_async_queue_depth \d+$", text, re.M), text
    # Unsigned scrapes are refused unless the server was started with --public-metrics.
    status, _, _ = http_request(server.endpoint, "GET", "/metrics", sign=False)
    assert status == 403


def test_public_metrics_flag(make_server):
    srv = make_server("--public-metrics")
    status, _, body = http_request(srv.endpoint, "GET", "/metrics", sign=False)
    assert status == 200 and b"# TYPE wisp_invocations_total counter" in body
    status, _, _ = http_request(srv.endpoint, "GET", "/2015-03-31/functions/", sign=False)
    assert status == 403
