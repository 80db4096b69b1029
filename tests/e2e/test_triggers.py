"""Triggers: HTTP routes on their own listener, schedules that survive a restart
without doubling, the trigger API and CLI, and wisp.toml triggers."""

import base64
import http.client
import json
import time

import pytest

from wisp_e2e import create_function, free_port, http_request, lambda_client, read_lines, run_cli, unique, wait_for

ROUTE_HANDLER = """
import json, base64
def handler(e, c):
    return {
        "statusCode": 201,
        "headers": {"x-route": e["routeKey"]},
        "body": json.dumps({
            "routeKey": e["routeKey"], "rawPath": e["rawPath"], "params": e.get("pathParameters"),
            "query": e.get("queryStringParameters"), "method": e["requestContext"]["http"]["method"],
            "body": e.get("body"), "b64": e["isBase64Encoded"], "version": e["version"],
        }),
    }
"""

FIRE_HANDLER = """
import json, os
def handler(e, c):
    with open(os.environ["FIRES"], "a") as f:
        f.write(json.dumps({"time": e["time"], "id": e["id"], "source": e["source"], "type": e["detail-type"]}) + "\\n")
    return {}
"""


def route_call(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def add_trigger(server, kind, function, config, qualifier=None):
    body = {"Kind": kind, "FunctionName": function, "Config": config}
    if qualifier:
        body["Qualifier"] = qualifier
    return http_request(server.endpoint, "POST", "/wisp/v1/triggers", body)


@pytest.fixture
def routed(make_server):
    port = free_port()
    srv = make_server("--routes-listen", f"127.0.0.1:{port}", name="routes")
    srv.routes_port = port
    return srv


def test_http_routes(routed):
    lam = lambda_client(routed.endpoint)
    name = unique("route")
    create_function(lam, name, files={"app.py": ROUTE_HANDLER})
    status, _, body = add_trigger(routed, "http", name, {"Method": "POST", "Path": "/orders/{id}"})
    assert status == 201, body
    trigger_id = json.loads(body)["Id"]
    status, _, body = add_trigger(routed, "http", name, {"Method": "ANY", "Path": "/files/{proxy+}",
                                                          "Cors": {"AllowOrigins": ["http://shop.test"], "AllowMethods": ["GET"]}})
    assert status == 201, body

    status, headers, body = route_call(routed.routes_port, "POST", "/orders/42?x=1&x=2", b'{"n": 1}', {"content-type": "application/json"})
    assert status == 201, body
    doc = json.loads(body)
    assert doc == {"routeKey": "POST /orders/{id}", "rawPath": "/orders/42", "params": {"id": "42"},
                   "query": {"x": "1,2"}, "method": "POST", "body": '{"n": 1}', "b64": False, "version": "2.0"}
    assert headers["x-route"] == "POST /orders/{id}"

    # Greedy path, binary body arrives base64-encoded.
    status, headers, body = route_call(routed.routes_port, "PUT", "/files/a/b/c.bin", bytes(range(256)),
                                       {"content-type": "application/octet-stream", "origin": "http://shop.test"})
    doc = json.loads(body)
    assert status == 201 and doc["params"] == {"proxy": "a/b/c.bin"} and doc["b64"] is True
    assert base64.b64decode(doc["body"]) == bytes(range(256))
    assert headers["access-control-allow-origin"] == "http://shop.test"
    # CORS preflight is answered by the route's configuration, without invoking.
    status, headers, _ = route_call(routed.routes_port, "OPTIONS", "/files/x",
                                    headers={"origin": "http://shop.test", "access-control-request-method": "GET"})
    assert status == 204 and headers["access-control-allow-methods"] == "GET"

    # Unmatched path 404, wrong method 405 with Allow.
    assert route_call(routed.routes_port, "GET", "/nope")[0] == 404
    status, headers, _ = route_call(routed.routes_port, "GET", "/orders/42")
    assert status == 405 and headers["allow"] == "POST"
    # The management API's paths are not served on the routes listener.
    assert route_call(routed.routes_port, "GET", "/2015-03-31/functions/")[0] == 404

    # A duplicate route is refused; removing the trigger removes the route.
    status, headers, body = add_trigger(routed, "http", name, {"Method": "POST", "Path": "/orders/{other}"})
    assert status == 409 and headers["x-amzn-errortype"] == "ResourceConflictException", body
    assert http_request(routed.endpoint, "DELETE", f"/wisp/v1/triggers/{trigger_id}")[0] == 204
    assert route_call(routed.routes_port, "POST", "/orders/42", b"{}")[0] == 404

    # Invocations through routes are recorded like any other.
    recs = routed.wait_records(name, 2)
    assert all(r["Status"] == "Success" for r in recs)


def test_trigger_api_refuses_bad_input(server, lam):
    name = unique("trig-bad")
    create_function(lam, name)
    cases = [
        ({"Kind": "schedule", "FunctionName": name, "Config": {"ScheduleExpression": "cron(0 12 * * * *)"}}, "InvalidParameterValueException", "day-of-week"),
        ({"Kind": "schedule", "FunctionName": name, "Config": {"ScheduleExpression": "every day"}}, "InvalidParameterValueException", "rate("),
        ({"Kind": "schedule", "FunctionName": name, "Config": {"ScheduleExpression": "rate(5 minutes)", "ScheduleExpressionTimezone": "Mars/Olympus"}}, "InvalidParameterValueException", "time zone"),
        ({"Kind": "schedule", "FunctionName": name, "Config": {"ScheduleExpression": "rate(5 minutes)", "Colour": 1}}, "InvalidParameterValueException", "Colour"),
        ({"Kind": "http", "FunctionName": name, "Config": {"Method": "GET", "Path": "no-slash"}}, "InvalidParameterValueException", "path"),
        ({"Kind": "carrier-pigeon", "FunctionName": name, "Config": {}}, "InvalidParameterValueException", "schedule, http"),
        ({"Kind": "schedule", "FunctionName": unique("missing"), "Config": {"ScheduleExpression": "rate(5 minutes)"}}, "ResourceNotFoundException", "not found"),
    ]
    for body, kind, text in cases:
        status, headers, raw = http_request(server.endpoint, "POST", "/wisp/v1/triggers", body)
        assert headers.get("x-amzn-errortype") == kind, (body, raw)
        assert text.lower() in json.loads(raw)["Message"].lower(), (body, raw)
    status, _, raw = http_request(server.endpoint, "GET", f"/wisp/v1/triggers?FunctionName={name}")
    assert status == 200 and json.loads(raw)["Triggers"] == [], raw


def test_triggers_cli_and_manifest(routed, tmp_path):
    name = unique("trig-cli")
    src = tmp_path / "fn"
    src.mkdir()
    (src / "app.py").write_text(ROUTE_HANDLER)
    manifest = tmp_path / "wisp.toml"
    manifest.write_text(
        f'version = 1\n[functions.{name}]\nruntime = "python3.11"\nhandler = "app.handler"\npath = "fn"\n'
        f'triggers = [{{ http = "GET /hello/{{who}}" }}, {{ schedule = "cron(0 12 * * ? *)", timezone = "Europe/Paris" }}]\n'
    )
    r = run_cli(routed, "deploy", "--manifest", str(manifest))
    assert r.returncode == 0, r.stderr
    status, _, body = route_call(routed.routes_port, "GET", "/hello/ada")
    assert status == 201 and json.loads(body)["params"] == {"who": "ada"}, body
    r = run_cli(routed, "triggers", "ls", name)
    assert r.returncode == 0 and "GET /hello/{who}" in r.stdout and "cron(0 12 * * ? *)" in r.stdout, r.stdout
    ids_before = sorted(line.split()[0] for line in r.stdout.splitlines()[1:])
    # Deploying again keeps the same triggers (a schedule keeps its history).
    assert run_cli(routed, "deploy", "--manifest", str(manifest)).returncode == 0
    r = run_cli(routed, "triggers", "ls", name)
    assert sorted(line.split()[0] for line in r.stdout.splitlines()[1:]) == ids_before
    # Dropping one from the manifest removes it; the CLI adds and removes by hand too.
    manifest.write_text(manifest.read_text().replace(', { schedule = "cron(0 12 * * ? *)", timezone = "Europe/Paris" }', ""))
    assert run_cli(routed, "deploy", "--manifest", str(manifest)).returncode == 0
    r = run_cli(routed, "triggers", "add", name, "--http", "DELETE /hello/{who}")
    assert r.returncode == 0, r.stderr
    added = r.stdout.split()[-1]
    assert route_call(routed.routes_port, "DELETE", "/hello/x")[0] == 201
    r = run_cli(routed, "triggers", "ls", name)
    assert "cron(" not in r.stdout and r.stdout.count(name) == 2, r.stdout
    assert run_cli(routed, "triggers", "rm", added).returncode == 0
    assert route_call(routed.routes_port, "DELETE", "/hello/x")[0] == 405
    r = run_cli(routed, "triggers", "add", name, "--schedule", "rate(0 minutes)")
    assert r.returncode != 0 and "positive" in r.stderr
    # Deleting the function removes its triggers.
    lambda_client(routed.endpoint).delete_function(FunctionName=name)
    wait_for(lambda: route_call(routed.routes_port, "GET", "/hello/ada")[0] == 404, timeout=20)


def test_schedule_fires_on_time_across_restart_without_doubling(make_server, tmp_path):
    srv = make_server(name="schedule")
    lam = lambda_client(srv.endpoint)
    name = unique("sched")
    fires = tmp_path / "fires.jsonl"
    create_function(lam, name, files={"app.py": FIRE_HANDLER}, env={"FIRES": str(fires)})
    status, _, body = add_trigger(srv, "schedule", name, {"ScheduleExpression": "rate(1 minute)"})
    assert status == 201, body
    created_ms = json.loads(body)["CreatedMs"]
    wait_for(lambda: fires.exists() and len(read_lines(fires)) >= 1, timeout=100, message="first fire")
    # Crash right after the first fire, restart: the schedule continues, nothing doubles.
    srv.kill9()
    srv.restart()
    wait_for(lambda: len(read_lines(fires)) >= 2, timeout=100, message="second fire")
    time.sleep(2)
    events = [json.loads(line) for line in read_lines(fires)]
    assert len(events) == 2, events
    assert all(e["source"] == "aws.events" and e["type"] == "Scheduled Event" for e in events)
    assert len({e["id"] for e in events}) == 2
    times = [int(time.mktime(time.strptime(e["time"], "%Y-%m-%dT%H:%M:%SZ"))) - time.timezone for e in events]
    # Fires are one period apart, counted from the trigger's creation.
    assert times[1] - times[0] == 60, events
    assert abs(times[0] - (created_ms // 1000 + 60)) <= 1, (events, created_ms)


def test_queue_trigger_from_manifest_and_cli(server, tmp_path):
    import boto3
    from botocore.config import Config

    from wisp_e2e import ACCESS_KEY, REGION, SECRET_KEY

    sqs = boto3.client("sqs", endpoint_url=server.endpoint, region_name=REGION, aws_access_key_id=ACCESS_KEY,
                       aws_secret_access_key=SECRET_KEY, config=Config(retries={"max_attempts": 0}))
    qname = unique("mq")
    url = sqs.create_queue(QueueName=qname)["QueueUrl"]
    name = unique("mq-fn")
    log = tmp_path / "log"
    src = tmp_path / "fn"
    src.mkdir()
    (src / "app.py").write_text(
        "import json, os\ndef handler(e, c):\n    with open(os.environ['LOG'], 'a') as f:\n"
        "        for r in e['Records']:\n            f.write(r['body'] + '\\n')\n"
    )
    manifest = tmp_path / "wisp.toml"
    manifest.write_text(
        f'version = 1\n[functions.{name}]\nruntime = "python3.11"\nhandler = "app.handler"\npath = "fn"\n'
        f'env = {{ LOG = "{log}" }}\n'
        f'triggers = [{{ queue = "{qname}", batch_size = 5, report_batch_item_failures = true }}]\n'
    )
    assert run_cli(server, "deploy", "--manifest", str(manifest)).returncode == 0
    r = run_cli(server, "triggers", "ls", name)
    ids = [line.split()[0] for line in r.stdout.splitlines()[1:]]
    assert len(ids) == 1 and "sqs" in r.stdout and qname in r.stdout, r.stdout
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    wait_for(lambda: read_lines(log) == ["hello"], timeout=30, message="queued message processed")
    # Redeploying keeps the same mapping.
    assert run_cli(server, "deploy", "--manifest", str(manifest)).returncode == 0
    r = run_cli(server, "triggers", "ls", name)
    assert [line.split()[0] for line in r.stdout.splitlines()[1:]] == ids, r.stdout
    bad = manifest.read_text().replace("batch_size = 5", 'batch_size = 5, http = "GET /x"')
    manifest.write_text(bad)
    r = run_cli(server, "deploy", "--manifest", str(manifest))
    assert r.returncode != 0 and "exactly one of" in r.stderr, r.stderr


def test_missed_fires_skip_or_fire_once(make_server, tmp_path):
    """Fires missed while the server was down are skipped (SKIP) or fired once for the
    latest missed time (FIRE_ONCE); either way the schedule then continues on its period."""
    servers, logs, created = {}, {}, {}
    for policy in ("SKIP", "FIRE_ONCE"):
        srv = make_server("--schedule-grace-secs", "5", name=f"missed-{policy.lower()}")
        lam = lambda_client(srv.endpoint)
        name = unique("missed")
        logs[policy] = tmp_path / f"{policy}.jsonl"
        create_function(lam, name, files={"app.py": FIRE_HANDLER}, env={"FIRES": str(logs[policy])})
        status, _, body = add_trigger(srv, "schedule", name, {"ScheduleExpression": "rate(1 minute)", "MissedFires": policy})
        assert status == 201, body
        servers[policy], created[policy] = srv, json.loads(body)["CreatedMs"] // 1000
    for policy in servers:
        wait_for(lambda: len(read_lines(logs[policy])) >= 1, timeout=100, message=f"first fire ({policy})")
        servers[policy].stop()

    def fire_times(policy):
        return [int(time.mktime(time.strptime(json.loads(l)["time"], "%Y-%m-%dT%H:%M:%SZ"))) - time.timezone
                for l in read_lines(logs[policy])]

    # Down past the second fire (at +120 s) by more than the grace.
    time.sleep(max(0, created["SKIP"] + 131 - time.time()))
    for srv in servers.values():
        srv.restart()
    wait_for(lambda: len(read_lines(logs["FIRE_ONCE"])) >= 2, timeout=30, message="the missed fire, once")
    time.sleep(3)
    assert [t - created["FIRE_ONCE"] for t in fire_times("FIRE_ONCE")] == [60, 120]
    assert [t - created["SKIP"] for t in fire_times("SKIP")] == [60]
    # Both continue on their period.
    wait_for(lambda: len(read_lines(logs["SKIP"])) >= 2, timeout=90, message="the next fire after the skip")
    assert [t - created["SKIP"] for t in fire_times("SKIP")] == [60, 180]
