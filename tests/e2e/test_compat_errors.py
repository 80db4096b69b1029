"""Every error path of the Lambda API, as botocore parses it: the exception class a
program written for AWS would catch (client.exceptions.X), the HTTP status, and that a
refused request changed nothing.

Authentication errors (InvalidSignatureException, UnrecognizedClientException,
MissingAuthenticationTokenException) are not in the Lambda service model on AWS either:
botocore raises them as a plain ClientError whose Error.Code names them, so that is
what is asserted for them."""
from __future__ import annotations

import base64
import datetime
import json
from unittest import mock

import boto3
import botocore
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from wisp_e2e import (
    ACCESS_KEY,
    REGION,
    ROLE,
    SECRET_KEY,
    create_function,
    make_zip,
    unique,
)

APP = "def handler(event, context):\n    return {'ok': True, 'echo': event}\n"


def client_with(endpoint: str, access_key: str = ACCESS_KEY, secret: str = SECRET_KEY, unsigned: bool = False):
    cfg = Config(region_name=REGION, retries={"max_attempts": 0})
    if unsigned:
        cfg = cfg.merge(Config(signature_version=botocore.UNSIGNED))
    return boto3.session.Session(
        aws_access_key_id=access_key, aws_secret_access_key=secret, region_name=REGION
    ).client("lambda", endpoint_url=endpoint, config=cfg)


def names(lam) -> "set[str]":
    return {f["FunctionName"] for p in lam.get_paginator("list_functions").paginate() for f in p["Functions"]}


def status_of(exc: ClientError) -> int:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture(scope="module")
def fn(lam):
    """One function (published as version 1) shared by the error tests."""
    name = unique("compat-err")
    create_function(lam, name, files={"app.py": APP}, publish=True)
    yield name
    lam.delete_function(FunctionName=name)


# --------------------------------------------------------------------------- modeled errors


def test_resource_not_found(lam, fn):
    cases = [
        lambda: lam.get_function(FunctionName=fn + "-missing"),
        lambda: lam.get_function_configuration(FunctionName=fn + "-missing"),
        lambda: lam.invoke(FunctionName=fn + "-missing", Payload=b"{}"),
        lambda: lam.invoke(FunctionName=fn, Qualifier="42", Payload=b"{}"),
        lambda: lam.invoke(FunctionName=fn, Qualifier="no-such-alias", Payload=b"{}"),
        lambda: lam.update_function_configuration(FunctionName=fn + "-missing", Timeout=5),
        lambda: lam.update_function_code(FunctionName=fn + "-missing", ZipFile=make_zip({"app.py": APP})),
        lambda: lam.delete_function(FunctionName=fn + "-missing"),
        lambda: lam.publish_version(FunctionName=fn + "-missing"),
        lambda: lam.list_versions_by_function(FunctionName=fn + "-missing"),
        lambda: lam.get_alias(FunctionName=fn, Name="no-such-alias"),
        lambda: lam.put_function_concurrency(FunctionName=fn + "-missing", ReservedConcurrentExecutions=1),
        lambda: lam.get_function_url_config(FunctionName=fn),
    ]
    for i, call in enumerate(cases):
        with pytest.raises(lam.exceptions.ResourceNotFoundException) as exc:
            call()
        assert status_of(exc.value) == 404, i
        assert exc.value.response["Error"]["Message"], i


def test_resource_conflict(lam, fn):
    before = lam.get_function_configuration(FunctionName=fn)
    with pytest.raises(lam.exceptions.ResourceConflictException) as exc:
        lam.create_function(
            FunctionName=fn, Runtime="python3.11", Role=ROLE, Handler="other.handler", Code={"ZipFile": make_zip({"other.py": APP})}
        )
    assert status_of(exc.value) == 409
    after = lam.get_function_configuration(FunctionName=fn)
    assert (after["Handler"], after["CodeSha256"], after["RevisionId"]) == (
        before["Handler"],
        before["CodeSha256"],
        before["RevisionId"],
    )


def test_invalid_parameter_value(lam):
    name = unique("compat-bad")
    good_zip = make_zip({"app.py": APP})
    cases = {
        "unknown runtime": dict(Runtime="cobol85", Code={"ZipFile": good_zip}),
        "not a zip": dict(Runtime="python3.11", Code={"ZipFile": b"this is not a zip file"}),
        "traversal in zip": dict(Runtime="python3.11", Code={"ZipFile": make_zip({"../evil.py": APP})}),
    }
    for label, params in cases.items():
        with pytest.raises(lam.exceptions.InvalidParameterValueException) as exc:
            lam.create_function(FunctionName=name, Role=ROLE, Handler="app.handler", **params)
        assert status_of(exc.value) == 400, label
    assert name not in names(lam)


def test_request_too_large(lam, fn):
    big = json.dumps({"blob": "x" * (6 * 1024 * 1024 + 16)}).encode()
    with pytest.raises(lam.exceptions.RequestTooLargeException) as exc:
        lam.invoke(FunctionName=fn, Payload=big)
    assert status_of(exc.value) == 413
    # Async invocations are limited to 1 MB.
    with pytest.raises(lam.exceptions.RequestTooLargeException) as exc:
        lam.invoke(FunctionName=fn, InvocationType="Event", Payload=json.dumps({"blob": "x" * (1024 * 1024 + 16)}).encode())
    assert status_of(exc.value) == 413


def test_invalid_request_content(lam, fn):
    with pytest.raises(lam.exceptions.InvalidRequestContentException) as exc:
        lam.invoke(FunctionName=fn, Payload=b"{not json")
    assert status_of(exc.value) == 400


def test_invalid_client_context(lam, tmp_path):
    """AWS: InvalidRequestContentException "Client context must be a valid Base64-encoded
    JSON object." (see boto/boto3#2153); the function does not run."""
    name = unique("compat-badcc")
    out = tmp_path / "ran.txt"
    create_function(lam, name, fixture="py_tool", env={"OUT_FILE": str(out)})
    event = json.dumps({"append": "ran"}).encode()
    got = {}
    for label, cc in (("not base64", "not base64 at all!"), ("base64, not JSON", base64.b64encode(b"{not json").decode())):
        try:
            resp = lam.invoke(FunctionName=name, Payload=event, ClientContext=cc)
            got[label] = ("accepted", resp["StatusCode"], resp.get("FunctionError"))
        except ClientError as e:
            got[label] = (type(e).__name__, status_of(e))
    assert got == {
        "not base64": ("InvalidRequestContentException", 400),
        "base64, not JSON": ("InvalidRequestContentException", 400),
    }
    assert not out.exists()
    lam.delete_function(FunctionName=name)


def test_too_many_requests_with_reason(lam):
    name = unique("compat-429")
    create_function(lam, name, files={"app.py": APP})
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    with pytest.raises(lam.exceptions.TooManyRequestsException) as exc:
        lam.invoke(FunctionName=name, Payload=b"{}")
    assert status_of(exc.value) == 429
    assert exc.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    lam.delete_function(FunctionName=name)


def test_precondition_failed(lam, fn):
    with pytest.raises(lam.exceptions.PreconditionFailedException) as exc:
        lam.update_function_configuration(FunctionName=fn, Timeout=9, RevisionId="00000000-0000-0000-0000-000000000000")
    assert status_of(exc.value) == 412
    assert lam.get_function_configuration(FunctionName=fn)["Timeout"] == 3


def test_function_error_is_not_an_api_error(lam):
    """A handler that raises: HTTP 200, FunctionError Unhandled, error document."""
    name = unique("compat-raise")
    create_function(lam, name, files={"app.py": "def handler(e, c):\n    raise KeyError('order_id')\n"})
    resp = lam.invoke(FunctionName=name, Payload=b"{}")
    assert resp["StatusCode"] == 200
    assert resp["FunctionError"] == "Unhandled"
    doc = json.loads(resp["Payload"].read())
    assert doc["errorType"] == "KeyError"
    assert doc["errorMessage"] == "'order_id'"
    assert isinstance(doc["stackTrace"], list)
    lam.delete_function(FunctionName=name)


# --------------------------------------------------------------------------- authentication


def _assert_auth_refused(exc: ClientError, code: str, message_part: "str | None" = None) -> None:
    assert type(exc) is ClientError  # not modeled by Lambda: a plain ClientError
    assert exc.response["Error"]["Code"] == code
    assert status_of(exc) == 403
    if message_part:
        assert message_part in exc.response["Error"]["Message"], exc.response["Error"]


def test_wrong_secret_is_invalid_signature(server, lam, fn, tmp_path):
    bad = client_with(server.endpoint, secret=SECRET_KEY + "-wrong")
    name = unique("compat-auth")
    with pytest.raises(ClientError) as exc:
        bad.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler", Code={"ZipFile": make_zip({"app.py": APP})})
    _assert_auth_refused(exc.value, "InvalidSignatureException")
    with pytest.raises(ClientError) as exc:
        bad.delete_function(FunctionName=fn)
    _assert_auth_refused(exc.value, "InvalidSignatureException")
    with pytest.raises(ClientError) as exc:
        bad.list_functions()
    _assert_auth_refused(exc.value, "InvalidSignatureException")
    assert name not in names(lam)
    assert lam.get_function(FunctionName=fn)["Configuration"]["FunctionName"] == fn


def test_unknown_key_is_unrecognized_client(server, lam, fn):
    bad = client_with(server.endpoint, access_key="AKIDNOSUCHKEY0000000")
    with pytest.raises(ClientError) as exc:
        bad.delete_function(FunctionName=fn)
    _assert_auth_refused(exc.value, "UnrecognizedClientException")
    with pytest.raises(ClientError) as exc:
        bad.invoke(FunctionName=fn, Payload=b"{}")
    _assert_auth_refused(exc.value, "UnrecognizedClientException")
    assert lam.get_function(FunctionName=fn)["Configuration"]["FunctionName"] == fn


def test_stale_date_is_signature_expired(server, lam):
    name = unique("compat-stale")
    stale = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=10)
    c = client_with(server.endpoint)
    with mock.patch("botocore.auth.get_current_datetime", return_value=stale):
        with pytest.raises(ClientError) as exc:
            c.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler", Code={"ZipFile": make_zip({"app.py": APP})})
    _assert_auth_refused(exc.value, "InvalidSignatureException", "Signature expired")
    assert name not in names(lam)
    # The same client, signing with the right time, is accepted.
    assert "Functions" in c.list_functions(MaxItems=1)


def test_unsigned_is_missing_authentication_token(server, lam, fn):
    anon = client_with(server.endpoint, unsigned=True)
    name = unique("compat-anon")
    with pytest.raises(ClientError) as exc:
        anon.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler", Code={"ZipFile": make_zip({"app.py": APP})})
    _assert_auth_refused(exc.value, "MissingAuthenticationTokenException")
    with pytest.raises(ClientError) as exc:
        anon.delete_function(FunctionName=fn)
    _assert_auth_refused(exc.value, "MissingAuthenticationTokenException")
    assert name not in names(lam)
    assert lam.get_function(FunctionName=fn)["Configuration"]["FunctionName"] == fn
