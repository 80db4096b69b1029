"""Function URLs: managed with boto3 (Create/Get/Update/List/DeleteFunctionUrlConfig),
called with plain HTTP (urllib). The handler sees an API Gateway payload 2.0 event and
its result maps back to HTTP as on Lambda; AuthType AWS_IAM requires a SigV4 signature
(botocore's SigV4Auth, service "lambda")."""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from wisp_e2e import ACCESS_KEY, REGION, SECRET_KEY, create_function, unique


def http(url: str, method: str = "GET", body: "bytes | None" = None, headers: "dict | None" = None):
    """(status, headers as an email.message.Message, body) with urllib; no redirects, no retries."""
    req = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def sigv4_headers(url: str, method: str, body: bytes = b"", key: str = ACCESS_KEY, secret: str = SECRET_KEY, headers: "dict | None" = None) -> dict:
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    SigV4Auth(Credentials(key, secret), "lambda", REGION).add_auth(req)
    return dict(req.headers.items())


@pytest.fixture(scope="module")
def url_fn(lam):
    name = unique("compat-url")
    create_function(lam, name, fixture="compat_url")
    cfg = lam.create_function_url_config(FunctionName=name, AuthType="NONE")
    yield name, cfg
    lam.delete_function(FunctionName=name)


def test_url_config_management(lam, url_fn):
    name, cfg = url_fn
    assert cfg["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert cfg["AuthType"] == "NONE"
    assert cfg["FunctionArn"].endswith(f":function:{name}")
    parsed = urllib.parse.urlsplit(cfg["FunctionUrl"])
    assert parsed.scheme == "http" and parsed.hostname == "127.0.0.1" and parsed.port
    assert cfg["FunctionUrl"].endswith("/")

    got = lam.get_function_url_config(FunctionName=name)
    assert got["FunctionUrl"] == cfg["FunctionUrl"] and got["AuthType"] == "NONE"
    listed = lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"]
    assert [c["FunctionUrl"] for c in listed] == [cfg["FunctionUrl"]]
    with pytest.raises(lam.exceptions.ResourceConflictException):
        lam.create_function_url_config(FunctionName=name, AuthType="NONE")


def test_url_event_is_payload_2_0(url_fn):
    _, cfg = url_fn
    status, headers, body = http(
        cfg["FunctionUrl"] + "echo/sub?a=1&b=two&b=three&sp=x%20y",
        method="POST",
        body=b'{"k": "v"}',
        headers={"Content-Type": "application/json", "X-Custom": "hello", "Cookie": "c1=v1; c2=v2"},
    )
    assert status == 200, body
    assert headers["Content-Type"] == "application/json"
    event = json.loads(body)
    assert event["version"] == "2.0"
    assert event["routeKey"] == "$default"
    assert event["rawPath"] == "/echo/sub"
    assert event["rawQueryString"] == "a=1&b=two&b=three&sp=x%20y"
    # Repeated parameters are joined with commas (payload 2.0).
    assert event["queryStringParameters"] == {"a": "1", "b": "two,three", "sp": "x y"}
    assert event["headers"]["x-custom"] == "hello"
    assert event["headers"]["content-type"] == "application/json"
    assert all(k == k.lower() for k in event["headers"])
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["body"] == '{"k": "v"}'
    assert event["isBase64Encoded"] is False
    http_ctx = event["requestContext"]["http"]
    assert http_ctx["method"] == "POST"
    assert http_ctx["path"] == "/echo/sub"
    assert http_ctx["sourceIp"] == "127.0.0.1"
    assert event["requestContext"]["requestId"] == headers["x-amzn-RequestId"]
    assert isinstance(event["requestContext"]["timeEpoch"], int)

    # A GET at the URL root: rawPath "/", no body, no query.
    status, _, body = http(cfg["FunctionUrl"])
    assert status == 200
    event = json.loads(body)
    assert event["rawPath"] == "/" and event["rawQueryString"] == ""
    assert event["requestContext"]["http"]["method"] == "GET"
    assert "body" not in event or event["body"] in (None, "")
    assert "queryStringParameters" not in event


def test_binary_request_body_arrives_base64(url_fn):
    _, cfg = url_fn
    raw = bytes(range(256))
    status, _, body = http(cfg["FunctionUrl"] + "upload", method="PUT", body=raw, headers={"Content-Type": "application/octet-stream"})
    assert status == 200
    event = json.loads(body)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == raw
    assert event["requestContext"]["http"]["method"] == "PUT"


def test_result_mapping(url_fn):
    _, cfg = url_fn
    # statusCode / headers / cookies / base64 body
    status, headers, body = http(cfg["FunctionUrl"] + "binary")
    assert status == 201
    assert body == bytes([0, 1, 2, 254, 255])
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["X-Compat"] == "binary"
    assert sorted(headers.get_all("Set-Cookie")) == ["session=abc; Path=/", "theme=dark"]

    # A bare value: 200, application/json, the value as the body.
    status, headers, body = http(cfg["FunctionUrl"] + "bare", method="DELETE")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"bare": True, "method": "DELETE"}

    # A function error: 502.
    status, _, body = http(cfg["FunctionUrl"] + "fail")
    assert status == 502, body


def test_unknown_url_is_404(url_fn):
    _, cfg = url_fn
    parsed = urllib.parse.urlsplit(cfg["FunctionUrl"])
    status, _, _ = http(f"{parsed.scheme}://{parsed.netloc}/nosuchurlid0123456789/echo")
    assert status == 404


def test_aws_iam_url_requires_sigv4(lam):
    name = unique("compat-url-iam")
    create_function(lam, name, fixture="compat_url")
    cfg = lam.create_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    assert cfg["AuthType"] == "AWS_IAM"
    url = cfg["FunctionUrl"] + "echo?x=1"

    status, _, body = http(url)
    assert status == 403, body
    status, _, body = http(url, headers=sigv4_headers(url, "GET", secret=SECRET_KEY + "-wrong"))
    assert status == 403, body
    status, _, body = http(url, headers=sigv4_headers(url, "GET", key="AKIDNOSUCHKEY0000000"))
    assert status == 403, body

    status, _, body = http(url, headers=sigv4_headers(url, "GET"))
    assert status == 200, body
    assert json.loads(body)["queryStringParameters"] == {"x": "1"}

    # Signed POST: the body is covered by the signature.
    payload = b'{"signed": true}'
    hdrs = sigv4_headers(url, "POST", payload, headers={"Content-Type": "application/json"})
    status, _, body = http(url, method="POST", body=payload, headers=hdrs)
    assert status == 200 and json.loads(body)["body"] == '{"signed": true}'
    status, _, body = http(url, method="POST", body=b'{"signed": false}', headers=hdrs)
    assert status == 403, body

    # UpdateFunctionUrlConfig to NONE opens it; back to AWS_IAM closes it.
    assert lam.update_function_url_config(FunctionName=name, AuthType="NONE")["AuthType"] == "NONE"
    assert http(url)[0] == 200
    lam.update_function_url_config(FunctionName=name, AuthType="AWS_IAM")
    assert http(url)[0] == 403

    # DeleteFunctionUrlConfig: the URL is gone.
    assert lam.delete_function_url_config(FunctionName=name)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert http(url, headers=sigv4_headers(url, "GET"))[0] == 404
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function_url_config(FunctionName=name)
    assert lam.list_function_url_configs(FunctionName=name)["FunctionUrlConfigs"] == []
    lam.delete_function(FunctionName=name)
