"""Lambda compatibility, driven by boto3's own `lambda` client with real SigV4
signatures: the whole function life cycle, versions, aliases (with a measured 90/10
weighted split), reserved concurrency, and the invoke extras (DryRun, LogType Tail,
RevisionId preconditions, account settings, tags).

Every assertion is on the values boto3 parsed from wisp's responses: field names,
types and error classes are what a program written for AWS Lambda would read."""
from __future__ import annotations

import json
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from wisp_e2e import (
    FUNCTIONS_DIR,
    ROLE,
    create_function,
    invoke,
    lambda_client,
    make_zip,
    sha256_b64,
    unique,
    wait_for,
)

ACCOUNT = "000000000000"
REGION = "us-east-1"


def arn(name: str, qualifier: "str | None" = None) -> str:
    base = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"
    return f"{base}:{qualifier}" if qualifier else base


def version_zip(code: str) -> bytes:
    """compat_version/app.py with its CODE constant set to `code`."""
    src = (FUNCTIONS_DIR / "compat_version" / "app.py").read_text()
    assert 'CODE = "v1"' in src
    return make_zip({"app.py": src.replace('CODE = "v1"', f'CODE = "{code}"')})


def all_function_names(lam, page_size: "int | None" = None) -> "list[str]":
    """ListFunctions followed page by page through NextMarker (by hand, as the AWS
    docs describe it, not through the paginator)."""
    names: list[str] = []
    marker = None
    for _ in range(10_000):
        params = {}
        if page_size:
            params["MaxItems"] = page_size
        if marker:
            params["Marker"] = marker
        page = lam.list_functions(**params)
        if page_size:
            assert len(page["Functions"]) <= page_size
        names += [f["FunctionName"] for f in page["Functions"]]
        marker = page.get("NextMarker")
        if not marker:
            return names
    raise AssertionError("ListFunctions never ended")


# --------------------------------------------------------------------------- life cycle


def test_function_life_cycle(server, lam):
    name = unique("compat-life")
    zip1 = version_zip("v1")

    # CreateFunction
    created = lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": zip1},
        Description="compat life cycle",
        Timeout=20,
        MemorySize=256,
        Environment={"Variables": {"TAG": "first"}},
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["FunctionName"] == name
    assert created["FunctionArn"] == arn(name)
    assert created["Runtime"] == "python3.11"
    assert created["Handler"] == "app.handler"
    assert created["Role"] == ROLE
    assert created["Description"] == "compat life cycle"
    assert created["Timeout"] == 20
    assert created["MemorySize"] == 256
    assert created["Version"] == "$LATEST"
    assert created["CodeSha256"] == sha256_b64(zip1)
    assert created["CodeSize"] == len(zip1)
    assert created["Environment"] == {"Variables": {"TAG": "first"}}
    assert created["PackageType"] == "Zip"
    assert isinstance(created["RevisionId"], str) and created["RevisionId"]
    # boto3's waiters, as deployment scripts written for AWS use them.
    fast = {"Delay": 1, "MaxAttempts": 30}
    lam.get_waiter("function_exists").wait(FunctionName=name, WaiterConfig=fast)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig=fast)
    lam.get_waiter("function_active").wait(FunctionName=name, WaiterConfig=fast)

    # GetFunction / GetFunctionConfiguration
    got = lam.get_function(FunctionName=name)
    conf = got["Configuration"]
    assert conf["FunctionArn"] == arn(name)
    assert conf["CodeSha256"] == sha256_b64(zip1)
    assert conf["State"] == "Active"
    assert "Location" in got["Code"]
    conf2 = lam.get_function_configuration(FunctionName=name)
    assert conf2["RevisionId"] == conf["RevisionId"]
    assert conf2["MemorySize"] == 256

    # Invoke $LATEST
    r = invoke(lam, name, {"n": 1})
    assert r.status == 200 and r.function_error is None
    assert r.executed_version == "$LATEST"
    assert r.payload == {"code": "v1", "version": "$LATEST", "tag": "first", "arn": arn(name), "echo": {"n": 1}}

    # UpdateFunctionCode
    zip2 = version_zip("v2")
    upd = lam.update_function_code(FunctionName=name, ZipFile=zip2)
    assert upd["CodeSha256"] == sha256_b64(zip2)
    assert upd["RevisionId"] != conf["RevisionId"]
    lam.get_waiter("function_updated_v2").wait(FunctionName=name, WaiterConfig=fast)
    lam.get_waiter("function_updated").wait(FunctionName=name, WaiterConfig=fast)
    assert lam.get_function_configuration(FunctionName=name)["LastUpdateStatus"] == "Successful"
    assert invoke(lam, name, {}).payload["code"] == "v2"

    # UpdateFunctionConfiguration
    upd = lam.update_function_configuration(
        FunctionName=name, Environment={"Variables": {"TAG": "second"}}, MemorySize=512, Description="changed"
    )
    assert upd["MemorySize"] == 512 and upd["Description"] == "changed"
    assert upd["Environment"] == {"Variables": {"TAG": "second"}}
    conf3 = lam.get_function_configuration(FunctionName=name)
    assert (conf3["MemorySize"], conf3["Timeout"], conf3["Description"]) == (512, 20, "changed")
    assert invoke(lam, name, {}).payload["tag"] == "second"

    # An asynchronous invocation: 202, no payload; it runs.
    ev = lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"async": True}).encode())
    assert ev["StatusCode"] == 202
    assert ev["Payload"].read() == b""
    wait_for(
        lambda: [r for r in server.records(name, limit=1000) if r["InvocationType"] == "Event" and r["Status"] == "Success"],
        timeout=30,
        message="the async invocation's record",
    )

    # ListFunctions, MaxItems=1 page by page through NextMarker, and the paginator
    assert all_function_names(lam, page_size=1).count(name) == 1
    paginated = [
        f["FunctionName"]
        for page in lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 2})
        for f in page["Functions"]
    ]
    assert paginated.count(name) == 1
    assert len(paginated) == len(set(paginated))

    # DeleteFunction
    deleted = lam.delete_function(FunctionName=name)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=name)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=name, Payload=b"{}")
    assert name not in all_function_names(lam)


def test_versions_and_qualified_arns(lam):
    name = unique("compat-ver")
    created = lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": version_zip("v1")},
        Environment={"Variables": {"TAG": "t1"}},
        Publish=True,
    )
    # Publish=True on create publishes version 1 of this code.
    assert created["Version"] == "1"
    assert created["FunctionArn"] == arn(name, "1")

    lam.update_function_code(FunctionName=name, ZipFile=version_zip("v2"))
    lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"TAG": "t2"}})
    v2 = lam.publish_version(FunctionName=name, Description="second")
    assert v2["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert v2["Version"] == "2"
    assert v2["FunctionArn"] == arn(name, "2")
    assert v2["CodeSha256"] == sha256_b64(version_zip("v2"))
    lam.get_waiter("published_version_active").wait(FunctionName=name, Qualifier="2", WaiterConfig={"Delay": 1, "MaxAttempts": 30})

    # Publishing again without a change returns the same version (as on AWS).
    again = lam.publish_version(FunctionName=name)
    assert again["Version"] == "2"

    # $LATEST moves on; published versions do not.
    lam.update_function_code(FunctionName=name, ZipFile=version_zip("v3"))

    versions = lam.list_versions_by_function(FunctionName=name)["Versions"]
    assert [v["Version"] for v in versions] == ["$LATEST", "1", "2"]
    assert [v["FunctionArn"] for v in versions][1:] == [arn(name, "1"), arn(name, "2")]

    r1 = invoke(lam, name, {}, qualifier="1")
    assert (r1.executed_version, r1.payload["code"], r1.payload["tag"], r1.payload["version"]) == ("1", "v1", "t1", "1")
    assert r1.payload["arn"] == arn(name, "1")
    r2 = invoke(lam, name, {}, qualifier="2")
    assert (r2.executed_version, r2.payload["code"], r2.payload["tag"]) == ("2", "v2", "t2")
    latest = invoke(lam, name, {}, qualifier="$LATEST")
    assert (latest.executed_version, latest.payload["code"]) == ("$LATEST", "v3")
    assert latest.payload["arn"] == arn(name, "$LATEST")

    # A qualified ARN as FunctionName (no Qualifier parameter) ...
    by_arn = lam.invoke(FunctionName=arn(name, "1"), Payload=b"{}")
    assert by_arn["ExecutedVersion"] == "1"
    assert json.loads(by_arn["Payload"].read())["code"] == "v1"
    # ... an unqualified ARN, and a qualified ARN for Get.
    assert lam.invoke(FunctionName=arn(name), Payload=b"{}")["ExecutedVersion"] == "$LATEST"
    assert lam.get_function(FunctionName=arn(name, "2"))["Configuration"]["Version"] == "2"
    got1 = lam.get_function(FunctionName=name, Qualifier="1")["Configuration"]
    assert (got1["Version"], got1["FunctionArn"]) == ("1", arn(name, "1"))
    assert got1["CodeSha256"] == sha256_b64(version_zip("v1"))
    assert lam.get_function_configuration(FunctionName=name, Qualifier="2")["Environment"] == {"Variables": {"TAG": "t2"}}

    # A version that does not exist.
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=name, Qualifier="7", Payload=b"{}")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=name, Qualifier="7")

    # Delete one version.
    lam.delete_function(FunctionName=name, Qualifier="1")
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == ["$LATEST", "2"]
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=name, Qualifier="1", Payload=b"{}")
    assert invoke(lam, name, {}, qualifier="2").payload["code"] == "v2"

    # ListVersionsByFunction names $LATEST with its qualified ARN (as AWS does: see
    # the AWS CLI's list-versions-by-function example).
    assert versions[0]["FunctionArn"] == arn(name, "$LATEST")
    # PublishVersion's Description is the version's description (not $LATEST's).
    assert v2["Description"] == "second"
    assert lam.get_function_configuration(FunctionName=name, Qualifier="2")["Description"] == "second"
    assert lam.get_function_configuration(FunctionName=name)["Description"] == ""

    # Deleting the function deletes every version.
    lam.delete_function(FunctionName=name)
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=name, Qualifier="2", Payload=b"{}")


def _function_with_two_versions(lam, prefix: str) -> str:
    name = unique(prefix)
    create_function(lam, name, zip_bytes=version_zip("v1"), publish=True)
    lam.update_function_code(FunctionName=name, ZipFile=version_zip("v2"), Publish=True)
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == ["$LATEST", "1", "2"]
    return name


def test_aliases(lam):
    name = _function_with_two_versions(lam, "compat-alias")

    created = lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1", Description="prod")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["AliasArn"] == arn(name, "live")
    assert (created["Name"], created["FunctionVersion"], created["Description"]) == ("live", "1", "prod")
    assert created["RevisionId"]

    got = lam.get_alias(FunctionName=name, Name="live")
    assert (got["AliasArn"], got["FunctionVersion"]) == (arn(name, "live"), "1")

    r = invoke(lam, name, {"a": 1}, qualifier="live")
    assert r.executed_version == "1"
    assert r.payload["code"] == "v1" and r.payload["version"] == "1"
    assert r.payload["arn"] == arn(name, "live")
    by_arn = lam.invoke(FunctionName=arn(name, "live"), Payload=b"{}")
    assert by_arn["ExecutedVersion"] == "1"

    # Repoint the alias.
    updated = lam.update_alias(FunctionName=name, Name="live", FunctionVersion="2")
    assert updated["FunctionVersion"] == "2"
    assert updated["RevisionId"] != created["RevisionId"]
    r = invoke(lam, name, {}, qualifier="live")
    assert (r.executed_version, r.payload["code"]) == ("2", "v2")

    lam.create_alias(FunctionName=name, Name="beta", FunctionVersion="$LATEST")
    aliases = lam.list_aliases(FunctionName=name)["Aliases"]
    assert sorted((a["Name"], a["FunctionVersion"]) for a in aliases) == [("beta", "$LATEST"), ("live", "2")]

    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.create_alias(FunctionName=name, Name="ghost", FunctionVersion="9")
    # A version an alias points to cannot be deleted.
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.delete_function(FunctionName=name, Qualifier="2")

    lam.delete_alias(FunctionName=name, Name="live")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_alias(FunctionName=name, Name="live")
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=name, Qualifier="live", Payload=b"{}")
    assert [a["Name"] for a in lam.list_aliases(FunctionName=name)["Aliases"]] == ["beta"]
    lam.delete_function(FunctionName=name)


def test_weighted_alias_split_90_10_over_1000_invocations(lam):
    name = _function_with_two_versions(lam, "compat-split")
    alias = lam.create_alias(
        FunctionName=name,
        Name="split",
        FunctionVersion="1",
        RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}},
    )
    assert alias["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.1}}
    assert lam.get_alias(FunctionName=name, Name="split")["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.1}}

    clients = [lambda_client(lam.meta.endpoint_url) for _ in range(4)]

    def one(i: int) -> "tuple[str, str, str]":
        r = invoke(clients[i % len(clients)], name, {"i": i}, qualifier="split")
        assert r.status == 200 and r.function_error is None, r.payload
        assert r.payload["echo"] == {"i": i}
        return r.executed_version, r.payload["version"], r.payload["code"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, range(1000)))

    # What ran is what X-Amz-Executed-Version says ran.
    for executed, version, code in results:
        assert executed == version
        assert code == {"1": "v1", "2": "v2"}[executed]
    counts = Counter(executed for executed, _, _ in results)
    assert set(counts) == {"1", "2"}, counts
    share_v2 = counts["2"] / 1000
    assert 0.07 <= share_v2 <= 0.13, f"version 2 got {share_v2:.1%} of 1000 invocations, want 10% +- 3 points: {counts}"

    # Back to a plain alias: everything goes to version 1.
    lam.update_alias(FunctionName=name, Name="split", FunctionVersion="1", RoutingConfig={"AdditionalVersionWeights": {}})
    assert {invoke(lam, name, {}, qualifier="split").executed_version for _ in range(20)} == {"1"}
    lam.delete_function(FunctionName=name)


# --------------------------------------------------------------------------- concurrency


def test_reserved_concurrency_zero_throttles_everything(lam):
    name = unique("compat-conc0")
    create_function(lam, name, zip_bytes=version_zip("v1"), publish=True)
    assert invoke(lam, name, {}).status == 200

    put = lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    assert put["ReservedConcurrentExecutions"] == 0
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 0
    assert lam.get_function(FunctionName=name)["Concurrency"] == {"ReservedConcurrentExecutions": 0}

    for qualifier in (None, "1"):
        kwargs = {"Qualifier": qualifier} if qualifier else {}
        with pytest.raises(lam.exceptions.TooManyRequestsException) as exc:
            lam.invoke(FunctionName=name, Payload=b"{}", **kwargs)
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
        assert exc.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
        assert exc.value.response["Error"]["Code"] == "TooManyRequestsException"

    lam.delete_function_concurrency(FunctionName=name)
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
    assert invoke(lam, name, {"after": True}).payload["echo"] == {"after": True}
    lam.delete_function(FunctionName=name)


def test_reserved_concurrency_one_throttles_the_second_caller(lam, tmp_path):
    """Reserved concurrency 1, one invocation held in flight (it waits for a file the
    test creates): a second invocation is refused with 429, the first one completes."""
    name = unique("compat-conc1")
    gate = tmp_path / "gate"
    gate.mkdir()
    create_function(lam, name, fixture="compat_gate", env={"GATE_DIR": str(gate)}, timeout=90)
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)

    held: dict = {}

    def hold():
        try:
            held["result"] = invoke(lambda_client(lam.meta.endpoint_url), name, {"hold": True})
        except Exception as e:  # reported by the main thread
            held["error"] = e

    t = threading.Thread(target=hold, daemon=True)
    t.start()
    try:
        request_id = wait_for(lambda: (gate / "started").exists() and (gate / "started").read_text(), timeout=60)
        with pytest.raises(lam.exceptions.TooManyRequestsException) as exc:
            lam.invoke(FunctionName=name, Payload=b"{}")
        assert exc.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    finally:
        (gate / "open").write_text("go")
        t.join(timeout=90)
    assert "error" not in held, held
    assert held["result"].payload == {"held": True, "opened": True}
    assert held["result"].request_id == request_id
    # The slot is free again.
    assert invoke(lam, name, {}).payload == {"held": False}
    lam.delete_function(FunctionName=name)


# --------------------------------------------------------------------------- invoke extras


def test_dry_run_and_log_tail(lam, tmp_path):
    name = unique("compat-extra")
    out = tmp_path / "out.txt"
    create_function(lam, name, fixture="py_tool", env={"OUT_FILE": str(out)})

    dry = lam.invoke(FunctionName=name, InvocationType="DryRun", Payload=json.dumps({"append": "dry"}).encode())
    assert dry["StatusCode"] == 204
    assert dry["Payload"].read() == b""
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.invoke(FunctionName=name + "-missing", InvocationType="DryRun", Payload=b"{}")

    r = invoke(lam, name, {"print": "hello from the tail", "append": "real"}, log=True)
    assert r.status == 200 and r.function_error is None
    assert r.log is not None
    assert f"START RequestId: {r.request_id}" in r.log
    assert "hello from the tail" in r.log
    assert f"END RequestId: {r.request_id}" in r.log
    assert f"REPORT RequestId: {r.request_id}" in r.log
    # Only the real invocation ran the handler.
    assert out.read_text().splitlines() == ["real"]
    # Without LogType there is no LogResult.
    assert "LogResult" not in lam.invoke(FunctionName=name, Payload=b"{}")
    lam.delete_function(FunctionName=name)


def test_revision_id_preconditions(lam):
    name = unique("compat-rev")
    create_function(lam, name, zip_bytes=version_zip("v1"), env={"TAG": "a"})
    rev0 = lam.get_function_configuration(FunctionName=name)["RevisionId"]

    with pytest.raises(lam.exceptions.PreconditionFailedException) as exc:
        lam.update_function_configuration(FunctionName=name, Description="nope", RevisionId="not-" + rev0)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    conf = lam.get_function_configuration(FunctionName=name)
    assert conf["Description"] == "" and conf["RevisionId"] == rev0

    rev1 = lam.update_function_configuration(FunctionName=name, Description="yes", RevisionId=rev0)["RevisionId"]
    assert rev1 != rev0

    # rev0 is stale now: code update and publish refuse it and change nothing.
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.update_function_code(FunctionName=name, ZipFile=version_zip("v2"), RevisionId=rev0)
    assert lam.get_function_configuration(FunctionName=name)["CodeSha256"] == sha256_b64(version_zip("v1"))
    with pytest.raises(lam.exceptions.PreconditionFailedException):
        lam.publish_version(FunctionName=name, RevisionId=rev0)
    assert [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]] == ["$LATEST"]

    rev2 = lam.update_function_code(FunctionName=name, ZipFile=version_zip("v2"), RevisionId=rev1)["RevisionId"]
    assert lam.publish_version(FunctionName=name, RevisionId=rev2)["Version"] == "1"
    lam.delete_function(FunctionName=name)


def test_account_settings_limits(lam):
    limit = lam.get_account_settings()["AccountLimit"]
    assert isinstance(limit["ConcurrentExecutions"], int) and limit["ConcurrentExecutions"] > 0
    assert limit["CodeSizeZipped"] == 50 * 1024 * 1024
    assert limit["CodeSizeUnzipped"] == 250 * 1024 * 1024


def test_account_settings_usage(lam):
    name = unique("compat-acct")
    create_function(lam, name, zip_bytes=version_zip("v1"))
    try:
        usage = lam.get_account_settings()["AccountUsage"]
        assert usage["FunctionCount"] == len(all_function_names(lam))
        assert usage["TotalCodeSize"] >= len(version_zip("v1"))
    finally:
        lam.delete_function(FunctionName=name)


def test_account_settings_unreserved_concurrency(lam):
    """UnreservedConcurrentExecutions is the account's limit minus what functions reserve."""
    name = unique("compat-acct-rc")
    create_function(lam, name, zip_bytes=version_zip("v1"))
    try:
        before = lam.get_account_settings()["AccountLimit"]
        lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=5)
        after = lam.get_account_settings()["AccountLimit"]
        assert after["ConcurrentExecutions"] == before["ConcurrentExecutions"]
        assert after["UnreservedConcurrentExecutions"] == before["UnreservedConcurrentExecutions"] - 5
    finally:
        lam.delete_function(FunctionName=name)


def test_tags(lam):
    name = unique("compat-tags")
    create_function(lam, name, zip_bytes=version_zip("v1"))
    fn_arn = lam.get_function_configuration(FunctionName=name)["FunctionArn"]

    lam.tag_resource(Resource=fn_arn, Tags={"team": "payments", "env": "test"})
    assert lam.list_tags(Resource=fn_arn)["Tags"] == {"team": "payments", "env": "test"}
    lam.tag_resource(Resource=fn_arn, Tags={"env": "prod"})
    assert lam.list_tags(Resource=fn_arn)["Tags"] == {"team": "payments", "env": "prod"}
    assert lam.get_function(FunctionName=name)["Tags"] == {"team": "payments", "env": "prod"}
    lam.untag_resource(Resource=fn_arn, TagKeys=["env"])
    assert lam.list_tags(Resource=fn_arn)["Tags"] == {"team": "payments"}

    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.list_tags(Resource=arn(name + "-missing"))
    lam.delete_function(FunctionName=name)
