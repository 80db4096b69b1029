"""Function life cycle through boto3: create, read, list, update, version, delete."""
from __future__ import annotations

import json
import re

import pytest
from botocore.exceptions import ClientError

from wisp_e2e import (
    ROLE,
    create_function,
    error_code,
    http_request,
    invoke,
    make_zip,
    sha256_b64,
    unique,
)

APP_V1 = """
import os
def handler(event, context):
    return {"code": "v1", "stage": os.environ.get("STAGE"), "remaining": context.get_remaining_time_in_millis()}
"""
APP_V2 = """
import os
def handler(event, context):
    return {"code": "v2", "stage": os.environ.get("STAGE"), "remaining": context.get_remaining_time_in_millis()}
"""


def all_function_names(lam) -> list[str]:
    return [f["FunctionName"] for p in lam.get_paginator("list_functions").paginate() for f in p["Functions"]]


def test_health_runtimes_and_listening_line(server):
    status, _, body = http_request(server.endpoint, "GET", "/wisp/v1/health")
    assert status == 200
    health = json.loads(body)
    assert health["status"] == "ok"
    # The side listeners' addresses, so clients can find function URLs and routes.
    assert health["FunctionUrls"].startswith("http://127.0.0.1:") and health["Routes"].startswith("http://127.0.0.1:"), health
    status, _, body = http_request(server.endpoint, "GET", "/wisp/v1/runtimes")
    assert status == 200
    runtimes = json.loads(body)["Runtimes"]
    for r in ("python3.11", "nodejs20.x", "provided", "provided.al2023"):
        assert r in runtimes, runtimes
    assert f"wisp: listening on http://127.0.0.1:{server.port}" in server.log_text()


def test_create_and_read_configuration(lam):
    name = unique("life-create")
    zip_bytes = make_zip({"app.py": APP_V1})
    created = lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": zip_bytes},
        Description="life cycle test",
        Timeout=15,
        MemorySize=512,
        Environment={"Variables": {"STAGE": "dev", "EMPTYISH": "x"}},
        Publish=True,
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["FunctionName"] == name
    assert created["Version"] == "1"
    assert created["CodeSha256"] == sha256_b64(zip_bytes)

    cfg = lam.get_function_configuration(FunctionName=name)
    assert cfg["FunctionName"] == name
    assert name in cfg["FunctionArn"]
    assert cfg["Runtime"] == "python3.11"
    assert cfg["Handler"] == "app.handler"
    assert cfg["CodeSha256"] == sha256_b64(zip_bytes)
    assert cfg["CodeSize"] == len(zip_bytes)
    assert cfg["MemorySize"] == 512
    assert cfg["Timeout"] == 15
    assert cfg["Description"] == "life cycle test"
    assert cfg["Environment"]["Variables"] == {"STAGE": "dev", "EMPTYISH": "x"}
    assert cfg["State"] == "Active"
    assert cfg["Version"] == "$LATEST"
    assert re.match(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", cfg["LastModified"]), cfg["LastModified"]

    got = lam.get_function(FunctionName=name)
    assert got["Configuration"]["FunctionName"] == name
    assert got["Configuration"]["CodeSha256"] == sha256_b64(zip_bytes)
    assert got["Configuration"]["Runtime"] == "python3.11"

    # The published version 1 is readable by qualifier too.
    v1 = lam.get_function_configuration(FunctionName=name, Qualifier="1")
    assert v1["Version"] == "1"
    assert v1["CodeSha256"] == sha256_b64(zip_bytes)


def test_defaults_when_unspecified(lam):
    name = unique("life-defaults")
    create_function(lam, name, files={"app.py": APP_V1})
    cfg = lam.get_function_configuration(FunctionName=name)
    # Lambda's defaults: 128 MB, 3 s.
    assert cfg["MemorySize"] == 128
    assert cfg["Timeout"] == 3


def test_create_twice_conflicts(lam):
    name = unique("life-dup")
    create_function(lam, name, files={"app.py": APP_V1})
    with pytest.raises(lam.exceptions.ResourceConflictException):
        create_function(lam, name, files={"app.py": APP_V2})
    # The original is untouched.
    assert invoke(lam, name, {}).payload["code"] == "v1"


def test_list_functions_paging(lam):
    prefix = "life-page-" + unique("p").split("-")[1][:6]
    names = sorted(f"{prefix}-{i:02d}" for i in range(7))
    for n in names:
        create_function(lam, n, files={"app.py": APP_V1})

    seen: list[str] = []
    pages = 0
    kwargs: dict = {"MaxItems": 3}
    while True:
        page = lam.list_functions(**kwargs)
        pages += 1
        assert len(page["Functions"]) <= 3
        seen.extend(f["FunctionName"] for f in page["Functions"])
        marker = page.get("NextMarker")
        if not marker:
            break
        kwargs = {"MaxItems": 3, "Marker": marker}
        assert pages < 1000, "paging does not terminate"
    ours = [n for n in seen if n.startswith(prefix)]
    assert sorted(ours) == names, "every function listed exactly once"
    assert len(seen) == len(set(seen)), "no function listed twice"
    assert pages >= 3  # 7+ functions at 3 per page

    # The paginator (boto3's own Marker handling) agrees.
    listed = all_function_names(lam)
    assert sorted(n for n in listed if n.startswith(prefix)) == names


def test_update_code_and_configuration(lam):
    name = unique("life-update")
    zip1 = make_zip({"app.py": APP_V1})
    create_function(lam, name, zip_bytes=zip1, env={"STAGE": "dev"}, timeout=10)
    r = invoke(lam, name, {})
    assert r.function_error is None
    assert r.payload["code"] == "v1"
    assert r.payload["stage"] == "dev"

    zip2 = make_zip({"app.py": APP_V2})
    upd = lam.update_function_code(FunctionName=name, ZipFile=zip2)
    assert upd["CodeSha256"] == sha256_b64(zip2)
    assert upd["CodeSha256"] != sha256_b64(zip1)
    assert lam.get_function_configuration(FunctionName=name)["CodeSha256"] == sha256_b64(zip2)
    assert lam.get_function_configuration(FunctionName=name)["CodeSize"] == len(zip2)
    r = invoke(lam, name, {})
    assert r.payload["code"] == "v2", "new code answers after update_function_code"

    cfg = lam.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"STAGE": "prod"}}, Timeout=4, MemorySize=256
    )
    assert cfg["Timeout"] == 4
    assert cfg["MemorySize"] == 256
    assert cfg["Environment"]["Variables"] == {"STAGE": "prod"}
    after = lam.get_function_configuration(FunctionName=name)
    assert after["Timeout"] == 4
    assert after["MemorySize"] == 256
    assert after["CodeSha256"] == sha256_b64(zip2), "configuration update keeps the code"
    r = invoke(lam, name, {})
    assert r.payload["code"] == "v2"
    assert r.payload["stage"] == "prod", "env change visible to the handler"
    assert 0 < r.payload["remaining"] <= 4000, "timeout change visible to the handler"


def test_versions_publish_list_and_invoke_qualifier(lam):
    name = unique("life-versions")
    create_function(lam, name, files={"app.py": APP_V1}, publish=True)
    lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": APP_V2}))
    v2 = lam.publish_version(FunctionName=name, Description="second")
    assert v2["Version"] == "2"
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]]
    assert set(versions) == {"$LATEST", "1", "2"}

    old = invoke(lam, name, {}, qualifier="1")
    assert old.payload["code"] == "v1"
    assert old.executed_version == "1"
    new = invoke(lam, name, {}, qualifier="2")
    assert new.payload["code"] == "v2"
    latest = invoke(lam, name, {})
    assert latest.payload["code"] == "v2"
    assert latest.executed_version == "$LATEST"
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        invoke(lam, name, {}, qualifier="9")


def test_delete_function(lam):
    name = unique("life-delete")
    create_function(lam, name, files={"app.py": APP_V1})
    assert invoke(lam, name, {}).payload["code"] == "v1"
    resp = lam.delete_function(FunctionName=name)
    assert resp["ResponseMetadata"]["HTTPStatusCode"] in (200, 204)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=name)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_configuration(FunctionName=name)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        invoke(lam, name, {})
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.delete_function(FunctionName=name)
    assert name not in all_function_names(lam)
    # The name is free again.
    create_function(lam, name, files={"app.py": APP_V2})
    assert invoke(lam, name, {}).payload["code"] == "v2"


def test_missing_function_errors(lam):
    name = unique("life-missing")
    for call in (
        lambda: lam.get_function(FunctionName=name),
        lambda: lam.get_function_configuration(FunctionName=name),
        lambda: lam.update_function_code(FunctionName=name, ZipFile=make_zip({"app.py": APP_V1})),
        lambda: lam.update_function_configuration(FunctionName=name, Timeout=5),
        lambda: invoke(lam, name, {}),
    ):
        with pytest.raises(ClientError) as ei:
            call()
        assert error_code(ei.value) == "ResourceNotFoundException"
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
