"""SigV4 as an attacker meets it: requests signed by botocore's SigV4Auth and sent with
urllib, then tampered with, replayed outside the clock window, or signed with a key
that has been revoked. Each is refused with the AWS error, and changes nothing."""
from __future__ import annotations

import base64
import datetime
import json
import urllib.error
import urllib.request
from unittest import mock

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from wisp_e2e import ACCESS_KEY, REGION, ROLE, SECRET_KEY, create_function, invoke, make_zip, unique

APP = "def handler(event, context):\n    return {'ok': True}\n"
CREATE_PATH = "/2015-03-31/functions"


def signed(endpoint: str, method: str, path: str, body: bytes = b"", key: str = ACCESS_KEY, secret: str = SECRET_KEY,
           when: "datetime.datetime | None" = None) -> AWSRequest:
    req = AWSRequest(method=method, url=endpoint + path, data=body, headers={"Content-Type": "application/json"})
    signer = SigV4Auth(Credentials(key, secret), "lambda", REGION)
    if when is None:
        signer.add_auth(req)
    else:
        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            signer.add_auth(req)
    return req


def send(req: AWSRequest, body: "bytes | None" = None) -> "tuple[int, dict, bytes]":
    """Send a prepared request with urllib (optionally with another body than the one signed)."""
    data = req.body if body is None else body
    if isinstance(data, str):
        data = data.encode()
    headers = {k: v for k, v in req.headers.items()}
    r = urllib.request.Request(req.url, data=data if req.method != "GET" else None, headers=headers, method=req.method)
    try:
        with urllib.request.urlopen(r, timeout=60) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def create_body(name: str) -> bytes:
    return json.dumps(
        {
            "FunctionName": name,
            "Runtime": "python3.11",
            "Role": ROLE,
            "Handler": "app.handler",
            "Code": {"ZipFile": base64.b64encode(make_zip({"app.py": APP})).decode()},
        }
    ).encode()


def error_type(headers: dict, body: bytes) -> str:
    t = headers.get("x-amzn-errortype", "").split(":")[0]
    assert t, (headers, body)
    return t


def names(lam) -> "set[str]":
    return {f["FunctionName"] for p in lam.get_paginator("list_functions").paginate() for f in p["Functions"]}


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def test_a_correctly_signed_urllib_request_is_accepted(server, lam):
    """The baseline for the refusals below: the same construction, untouched, works."""
    name = unique("compat-raw")
    status, _, body = send(signed(server.endpoint, "POST", CREATE_PATH, create_body(name)))
    assert status == 201, body
    assert json.loads(body)["FunctionName"] == name
    assert name in names(lam)
    lam.delete_function(FunctionName=name)


def test_tampered_body_is_refused(server, lam):
    name = unique("compat-tamper")
    other = name[:-1] + ("x" if name[-1] != "x" else "y")  # same length: only the bytes differ
    req = signed(server.endpoint, "POST", CREATE_PATH, create_body(name))
    tampered = create_body(other)
    assert len(tampered) == len(req.body)
    status, headers, body = send(req, body=tampered)
    assert status == 403, body
    assert error_type(headers, body) == "InvalidSignatureException"
    assert not {name, other} & names(lam)

    # Tampering with an invoke's payload is refused before the function runs.
    fn = unique("compat-tamper-fn")
    create_function(lam, fn, files={"app.py": "def handler(e, c):\n    return e\n"})
    req = signed(server.endpoint, "POST", f"/2015-03-31/functions/{fn}/invocations", b'{"amount": 100}')
    status, headers, body = send(req, body=b'{"amount": 999}')
    assert status == 403 and error_type(headers, body) == "InvalidSignatureException"
    # The untampered original goes through.
    status, _, body = send(req)
    assert status == 200 and json.loads(body) == {"amount": 100}
    lam.delete_function(FunctionName=fn)


def test_request_outside_the_clock_window_is_refused(server, lam):
    name = unique("compat-replay")
    for minutes in (10, -10):  # a replay of an old request, and a request from the future
        req = signed(server.endpoint, "POST", CREATE_PATH, create_body(name), when=utcnow() - datetime.timedelta(minutes=minutes))
        assert req.headers["X-Amz-Date"] != utcnow().strftime("%Y%m%dT%H%M%SZ")
        status, headers, body = send(req)
        assert status == 403, body
        assert error_type(headers, body) == "InvalidSignatureException"
        assert "Signature expired" in body.decode(), body
    assert name not in names(lam)


def test_revoked_key_is_refused(server, lam, tmp_path):
    # The admin creates a key ...
    status, _, body = send(signed(server.endpoint, "POST", "/wisp/v1/keys", b""))
    assert status in (200, 201), body
    key = json.loads(body)
    key_id, secret = key["AccessKeyId"], key["SecretAccessKey"]
    assert key_id != ACCESS_KEY and secret
    status, _, body = send(signed(server.endpoint, "GET", "/wisp/v1/keys"))
    assert status == 200 and key_id in [k["AccessKeyId"] for k in json.loads(body)["Keys"]]

    # ... which works with boto3 ...
    user = boto3.session.Session(aws_access_key_id=key_id, aws_secret_access_key=secret, region_name=REGION).client(
        "lambda", endpoint_url=server.endpoint, config=Config(retries={"max_attempts": 0})
    )
    kept = unique("compat-keyed")
    create_function(user, kept, files={"app.py": APP})
    assert invoke(user, kept, {}).payload == {"ok": True}
    # ... but cannot manage keys (it is not the admin).
    status, headers, body = send(signed(server.endpoint, "POST", "/wisp/v1/keys", b"", key=key_id, secret=secret))
    assert status == 403, body

    # A request signed with it before revocation, sent after.
    late = unique("compat-revoked")
    presigned = signed(server.endpoint, "POST", CREATE_PATH, create_body(late), key=key_id, secret=secret)

    status, _, body = send(signed(server.endpoint, "DELETE", f"/wisp/v1/keys/{key_id}"))
    assert status in (200, 204), body
    status, _, body = send(signed(server.endpoint, "GET", "/wisp/v1/keys"))
    assert key_id not in [k["AccessKeyId"] for k in json.loads(body)["Keys"]]

    status, headers, body = send(presigned)
    assert status == 403, body
    assert error_type(headers, body) == "UnrecognizedClientException"
    with pytest.raises(ClientError) as exc:
        user.delete_function(FunctionName=kept)
    assert exc.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403

    present = names(lam)
    assert late not in present
    assert kept in present  # the refused delete did not happen
    lam.delete_function(FunctionName=kept)


def test_no_auth_server_accepts_unsigned_requests(make_server):
    s = make_server("--no-auth", "--url-listen", "127.0.0.1:0", name="noauth")
    name = unique("compat-noauth")
    req = AWSRequest(method="POST", url=s.endpoint + CREATE_PATH, data=create_body(name), headers={"Content-Type": "application/json"})
    status, _, body = send(req)
    assert status == 201, body
    status, _, body = send(AWSRequest(method="GET", url=s.endpoint + CREATE_PATH))
    assert status == 200 and name in [f["FunctionName"] for f in json.loads(body)["Functions"]]
