"""What every broker connector shares, through the real binary: trigger configs with
credentials (stored, never shown by the API, the CLI or the log), `wisp deploy` keeping
an unchanged connector trigger and replacing a changed one, Lambda's
CreateEventSourceMapping for self-managed Kafka and RabbitMQ, and a connector whose broker
does not exist reporting it in its status while other triggers keep working.

No broker is needed here: the brokers' own suites (test_connector_*.py) run them.
"""
from __future__ import annotations

import json

import pytest

from wisp_e2e import create_function, free_port, http_request, run_cli, unique, wait_for

SECRET = "s3cr3t-Pa55word-never-shown"


def triggers(server, name):
    status, _, body = http_request(server.endpoint, "GET", f"/wisp/v1/triggers?FunctionName={name}")
    assert status == 200, body
    return json.loads(body)["Triggers"]


def kafka_config(port: int, **extra):
    return {"BootstrapServers": [f"127.0.0.1:{port}"], "Topics": ["orders"], "Username": "app",
            "Password": SECRET, "SaslMechanism": "PLAIN", **extra}


def test_connector_secrets_status_and_manifest_sync(server, lam, tmp_path):
    name = unique("conn")
    src = tmp_path / "fn"
    src.mkdir()
    (src / "app.py").write_text("def handler(e, c):\n    return 'ok'\n")
    dead = free_port()  # nothing listens here
    manifest = tmp_path / "wisp.toml"

    def write(batch: int):
        manifest.write_text(
            f'version = 1\n[functions.{name}]\nruntime = "python3.11"\nhandler = "app.handler"\npath = "fn"\n'
            f'triggers = [{{ kind = "kafka", config = {{ BootstrapServers = ["127.0.0.1:{dead}"], '
            f'Topics = ["orders"], Username = "app", Password = "${{KAFKA_PASSWORD}}", '
            f'SaslMechanism = "PLAIN", BatchSize = {batch} }} }}]\n'
        )

    write(10)
    env = {"KAFKA_PASSWORD": SECRET}
    r = run_cli(server, "deploy", "--manifest", str(manifest), env=env)
    assert r.returncode == 0, r.stderr
    first = triggers(server, name)
    assert len(first) == 1 and first[0]["Kind"] == "kafka"
    assert first[0]["Config"]["Password"] == "******"
    assert first[0]["Config"]["BatchSize"] == 10

    # The broker does not exist: the status says so and keeps retrying.
    def reconnecting():
        s = triggers(server, name)[0]["Status"]
        return s.get("Connected") is False and s.get("LastError")
    wait_for(reconnecting, timeout=60, message="the dead broker reported in the status")

    # An unset variable named in the manifest is an error, not an empty password.
    r = run_cli(server, "deploy", "--manifest", str(manifest))
    assert r.returncode != 0 and "KAFKA_PASSWORD" in r.stderr, r.stderr

    # Unchanged: kept (same id). Changed: replaced.
    assert run_cli(server, "deploy", "--manifest", str(manifest), env=env).returncode == 0
    assert [t["Id"] for t in triggers(server, name)] == [first[0]["Id"]]
    write(20)
    assert run_cli(server, "deploy", "--manifest", str(manifest), env=env).returncode == 0
    now = triggers(server, name)
    assert len(now) == 1 and now[0]["Id"] != first[0]["Id"] and now[0]["Config"]["BatchSize"] == 20

    # Other triggers are not affected by the dead broker: a route still invokes.
    fn = unique("conn-other")
    create_function(lam, fn, files={"app.py": "def handler(e, c):\n    return {'statusCode': 200, 'body': 'fine'}\n"})
    status, _, body = http_request(server.endpoint, "POST", "/wisp/v1/triggers", body=json.dumps(
        {"Kind": "schedule", "FunctionName": fn, "Config": {"ScheduleExpression": "rate(1 minute)"}}).encode())
    assert status == 201, body
    assert lam.invoke(FunctionName=fn)["StatusCode"] == 200

    # The replacement trigger, too, reports its dead broker; the CLI shows it.
    wait_for(reconnecting, timeout=60, message="the replaced trigger reports the dead broker")
    r = run_cli(server, "triggers", "status", name)
    assert r.returncode == 0 and SECRET not in r.stdout
    assert "kafka" in r.stdout and "orders" in r.stdout and "NOT connected" in r.stdout, r.stdout
    assert "last error:" in r.stdout, r.stdout
    assert SECRET not in server.log_text()


def test_trigger_configs_are_checked(server, lam):
    name = unique("conn-bad")
    create_function(lam, name, files={"app.py": "def handler(e, c):\n    return 1\n"})

    def create(kind, config):
        status, _, body = http_request(server.endpoint, "POST", "/wisp/v1/triggers", body=json.dumps(
            {"Kind": kind, "FunctionName": name, "Config": config}).encode())
        return status, body

    status, body = create("carrier-pigeon", {})
    assert status == 400 and b"kafka" in body, body
    for bad, why in [
        (kafka_config(9, BatchSize=0), b"BatchSize"),
        (kafka_config(9, MaximumConcurrency=5000), b"MaximumConcurrency"),
        (kafka_config(9, Colour="red"), b"Colour"),
        ({**kafka_config(9), "OnFailure": "bad\nname"}, b"OnFailure"),
        ("not an object", b"object"),
    ]:
        status, body = create("kafka", bad)
        assert status == 400 and why in body, (bad, body)
        assert SECRET.encode() not in body
    assert triggers(server, name) == []


def test_event_source_mappings_for_self_managed_brokers(server, lam):
    name = unique("esm-broker")
    create_function(lam, name, files={"app.py": "def handler(e, c):\n    return 1\n"})
    port = free_port()
    secret = json.dumps({"username": "app", "password": SECRET})
    m = lam.create_event_source_mapping(
        FunctionName=name,
        SelfManagedEventSource={"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [f"127.0.0.1:{port}"]}},
        Topics=["orders"],
        StartingPosition="TRIM_HORIZON",
        SelfManagedKafkaEventSourceConfig={"ConsumerGroupId": "orders-group"},
        SourceAccessConfigurations=[{"Type": "SASL_SCRAM_512_AUTH", "URI": secret}],
        DestinationConfig={"OnFailure": {"Destination": "kafka://orders-failed"}},
        BatchSize=50,
    )
    uuid = m["UUID"]
    assert m["Topics"] == ["orders"] and m["BatchSize"] == 50
    assert m["SelfManagedEventSource"]["Endpoints"]["KAFKA_BOOTSTRAP_SERVERS"] == [f"127.0.0.1:{port}"]
    assert m["SelfManagedKafkaEventSourceConfig"]["ConsumerGroupId"] == "orders-group"
    assert m["DestinationConfig"]["OnFailure"]["Destination"] == "kafka://orders-failed"
    assert SECRET not in json.dumps(m, default=str)
    got = lam.get_event_source_mapping(UUID=uuid)
    assert got["UUID"] == uuid and SECRET not in json.dumps(got, default=str)
    listed = lam.list_event_source_mappings(FunctionName=name)["EventSourceMappings"]
    assert [x["UUID"] for x in listed] == [uuid]
    upd = lam.update_event_source_mapping(UUID=uuid, BatchSize=7)
    assert upd["BatchSize"] == 7 and upd["Topics"] == ["orders"]
    # The stored trigger is an ordinary kafka trigger with the credentials kept (hidden).
    t = triggers(server, name)[0]
    assert t["Kind"] == "kafka" and t["Config"]["Password"] == "******" and t["Config"]["Username"] == "app"
    assert t["Config"]["SaslMechanism"] == "SCRAM-SHA-512"

    with pytest.raises(lam.exceptions.InvalidParameterValueException) as e:
        lam.create_event_source_mapping(
            FunctionName=name,
            SelfManagedEventSource={"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [f"127.0.0.1:{port}"]}},
            Topics=["orders"], StartingPosition="LATEST",
            SourceAccessConfigurations=[{"Type": "BASIC_AUTH", "URI": "arn:aws:secretsmanager:us-east-1:1:secret:x"}],
        )
    assert "Secrets Manager" in str(e.value)
    lam.delete_event_source_mapping(UUID=uuid)
    assert triggers(server, name) == []

    # RabbitMQ: Lambda's Amazon MQ mapping, with the broker's address given.
    arn = "arn:aws:mq:us-east-1:000000000000:broker:local:b-1"
    with pytest.raises(lam.exceptions.InvalidParameterValueException) as e:
        lam.create_event_source_mapping(FunctionName=name, EventSourceArn=arn, Queues=["jobs"])
    assert "RABBITMQ_BROKER_URL" in str(e.value)
    m = lam.create_event_source_mapping(
        FunctionName=name, EventSourceArn=arn, Queues=["jobs"], BatchSize=10,
        SelfManagedEventSource={"Endpoints": {"RABBITMQ_BROKER_URL": [f"amqp://127.0.0.1:{port}"]}},
        SourceAccessConfigurations=[{"Type": "BASIC_AUTH", "URI": secret}, {"Type": "VIRTUAL_HOST", "URI": "/"}],
    )
    assert m["EventSourceArn"] == arn and m["Queues"] == ["jobs"]
    assert SECRET not in json.dumps(m, default=str)
    t = triggers(server, name)[0]
    assert t["Kind"] == "rabbitmq" and t["Config"]["Password"] == "******"
    lam.delete_event_source_mapping(UUID=m["UUID"])
    assert SECRET not in server.log_text()
