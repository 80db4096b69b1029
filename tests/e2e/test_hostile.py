"""Bad input gets a clear error and loses nothing: invalid names and runtimes,
malformed requests, hostile zips, oversized and non-JSON payloads."""
from __future__ import annotations

import base64
import io
import json
import os
import stat
import uuid
import zipfile

import pytest
from botocore.exceptions import ClientError

from wisp_e2e import (
    ROLE,
    create_function,
    error_code,
    error_message,
    http_request,
    invoke,
    lambda_client,
    make_zip,
    unique,
)

GOOD_APP = "def handler(event, context):\n    return {'good': True, 'size': len(str(event))}\n"


@pytest.fixture(scope="module")
def lam_unchecked(server):
    """A client without botocore's client-side parameter validation."""
    return lambda_client(server.endpoint, validate=False)


def assert_not_created(lam, name: str) -> None:
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName=name)


def create_error(lam, **overrides) -> ClientError:
    params = dict(
        FunctionName=unique("bad"),
        Runtime="python3.11",
        Role=ROLE,
        Handler="app.handler",
        Code={"ZipFile": make_zip({"app.py": GOOD_APP})},
    )
    params.update(overrides)
    with pytest.raises(ClientError) as ei:
        lam.create_function(**params)
    return ei.value


# ------------------------------------------------------------------ invalid parameters


@pytest.mark.parametrize("bad_name", ["bad name!", "a" * 65, "slash/name", "dots.not.allowed"])
def test_invalid_function_names(lam_unchecked, bad_name):
    e = create_error(lam_unchecked, FunctionName=bad_name)
    assert error_code(e) == "InvalidParameterValueException", e.response
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error_message(e)


def test_max_length_name_is_fine(lam):
    name = ("ok-" + uuid.uuid4().hex * 3)[:64]
    create_function(lam, name, files={"app.py": GOOD_APP})
    assert invoke(lam, name, {}).payload["good"] is True


def test_unknown_runtime_lists_available_ones(lam):
    name = unique("bad-runtime")
    e = create_error(lam, FunctionName=name, Runtime="cobol9")
    assert error_code(e) == "InvalidParameterValueException"
    msg = error_message(e)
    assert "cobol9" in msg
    assert "python3.11" in msg and "nodejs20.x" in msg, msg
    assert_not_created(lam, name)


@pytest.mark.parametrize("handler", ["nodot", "", "app.", ".handler"])
def test_bad_handler(lam, lam_unchecked, handler):
    name = unique("bad-handler")
    e = create_error(lam_unchecked, FunctionName=name, Handler=handler)
    assert error_code(e) == "InvalidParameterValueException", e.response
    assert_not_created(lam, name)


@pytest.mark.parametrize("memory,timeout", [(64, 3), (20000, 3), (128, 0), (128, 100000)])
def test_out_of_range_memory_and_timeout(lam, lam_unchecked, memory, timeout):
    name = unique("bad-range")
    e = create_error(lam_unchecked, FunctionName=name, MemorySize=memory, Timeout=timeout)
    assert error_code(e) == "InvalidParameterValueException", e.response
    assert_not_created(lam, name)


def test_code_not_a_zip(lam):
    name = unique("bad-notzip")
    e = create_error(lam, FunctionName=name, Code={"ZipFile": b"this is not a zip file at all" * 10})
    assert error_code(e) == "InvalidParameterValueException"
    assert "zip" in error_message(e).lower()
    assert_not_created(lam, name)


# ------------------------------------------------------------------ malformed requests (raw HTTP)


def valid_body(name: str) -> dict:
    return {
        "FunctionName": name,
        "Runtime": "python3.11",
        "Role": ROLE,
        "Handler": "app.handler",
        "Code": {"ZipFile": base64.b64encode(make_zip({"app.py": GOOD_APP})).decode()},
    }


def assert_aws_error(status: int, headers: dict, body: bytes, expected_status: int = 400) -> dict:
    assert status == expected_status, (status, body[:500])
    assert headers.get("x-amzn-errortype"), f"no x-amzn-ErrorType header: {headers}"
    doc = json.loads(body)
    assert doc.get("message") or doc.get("Message"), doc
    return doc


def test_raw_valid_body_works(server, lam):
    """Control: the same raw request path with a valid body creates the function."""
    name = unique("raw-ok")
    status, _, body = http_request(server.endpoint, "POST", "/2015-03-31/functions", valid_body(name))
    assert status == 201, body[:500]
    assert json.loads(body)["FunctionName"] == name
    assert invoke(lam, name, {}).payload["good"] is True


def test_raw_malformed_json(server, lam):
    name = unique("raw-malformed")
    text = json.dumps(valid_body(name))[:-20]  # cut off
    status, headers, body = http_request(server.endpoint, "POST", "/2015-03-31/functions", text)
    assert_aws_error(status, headers, body)
    assert_not_created(lam, name)


def test_raw_wrong_types(server, lam):
    name = unique("raw-types")
    for field, value in (("Timeout", "ten"), ("MemorySize", [128]), ("Environment", {"Variables": {"A": 1}})):
        doc = valid_body(name)
        doc[field] = value
        status, headers, body = http_request(server.endpoint, "POST", "/2015-03-31/functions", doc)
        assert_aws_error(status, headers, body)
    assert_not_created(lam, name)


def test_raw_unknown_field(server, lam):
    name = unique("raw-unknown")
    doc = valid_body(name)
    doc["Colour"] = "blue"
    status, headers, body = http_request(server.endpoint, "POST", "/2015-03-31/functions", doc)
    assert_aws_error(status, headers, body)
    assert b"Colour" in body, "the error names the unknown field"
    assert_not_created(lam, name)


def test_raw_not_json_at_all(server, lam):
    status, headers, body = http_request(
        server.endpoint, "POST", "/2015-03-31/functions", b"\x00\xff<xml>nope</xml>", {"Content-Type": "application/json"}
    )
    assert_aws_error(status, headers, body)


def test_unknown_route_is_404_not_crash(server):
    status, _, _ = http_request(server.endpoint, "GET", "/2015-03-31/nothing-here")
    assert status == 404


# ------------------------------------------------------------------ hostile zips


def zip_with_entry(info: zipfile.ZipInfo, content: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("app.py"), GOOD_APP)
        zf.writestr(info, content)
    return buf.getvalue()


def evil_files_under(root: str, token: str) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames + dirnames:
            if token in n:
                found.append(os.path.join(dirpath, n))
    return found


def check_refused(lam, server, zip_bytes: bytes, keywords: tuple, token: "str | None" = None) -> None:
    """The zip is refused on create and on update; nothing is created or replaced."""
    name = unique("bad-zip")
    with pytest.raises(ClientError) as ei:
        lam.create_function(
            FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler", Code={"ZipFile": zip_bytes}
        )
    assert error_code(ei.value) == "InvalidParameterValueException", ei.value.response
    msg = error_message(ei.value).lower()
    assert any(k in msg for k in keywords), f"message {msg!r} should mention one of {keywords}"
    assert_not_created(lam, name)

    # Updating an existing function with the same zip is refused and keeps the old code.
    keep = unique("keep-zip")
    create_function(lam, keep, files={"app.py": GOOD_APP})
    before = lam.get_function_configuration(FunctionName=keep)["CodeSha256"]
    with pytest.raises(ClientError) as ei:
        lam.update_function_code(FunctionName=keep, ZipFile=zip_bytes)
    assert error_code(ei.value) == "InvalidParameterValueException", ei.value.response
    assert lam.get_function_configuration(FunctionName=keep)["CodeSha256"] == before
    assert invoke(lam, keep, {}).payload["good"] is True

    if token:
        assert not os.path.exists(f"/tmp/{token}")
        assert not os.path.exists(f"/tmp/evil-{token}")
        assert not evil_files_under(str(server.root), token)
        assert not evil_files_under(os.path.dirname(str(server.root)), token)
    assert server.health()[0] == 200


def test_zip_with_parent_traversal(lam, server):
    token = uuid.uuid4().hex
    z = zip_with_entry(zipfile.ZipInfo(f"../evil-{token}"), b"pwned")
    check_refused(lam, server, z, ("..", "path", "travers", "outside", "unsafe", "invalid"), token)
    deep = zip_with_entry(zipfile.ZipInfo("../" * 30 + f"tmp/evil-{token}"), b"pwned")
    check_refused(lam, server, deep, ("..", "path", "travers", "outside", "unsafe", "invalid"), token)
    inner = zip_with_entry(zipfile.ZipInfo(f"lib/../../evil-{token}"), b"pwned")
    check_refused(lam, server, inner, ("..", "path", "travers", "outside", "unsafe", "invalid"), token)


def test_zip_with_absolute_path(lam, server):
    token = uuid.uuid4().hex
    z = zip_with_entry(zipfile.ZipInfo(f"/tmp/evil-{token}"), b"pwned")
    check_refused(lam, server, z, ("absolute", "path", "unsafe", "invalid", "outside"), token)


def test_zip_with_symlink(lam, server):
    token = uuid.uuid4().hex
    info = zipfile.ZipInfo(f"evil-{token}")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    z = zip_with_entry(info, b"/etc/passwd")
    check_refused(lam, server, z, ("link",))


@pytest.fixture(scope="module")
def bomb_300mb() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr(zipfile.ZipInfo("app.py"), GOOD_APP)
        info = zipfile.ZipInfo("zeros.bin")
        info.compress_type = zipfile.ZIP_DEFLATED
        chunk = bytes(1024 * 1024)
        with zf.open(info, "w", force_zip64=True) as f:
            for _ in range(300):
                f.write(chunk)
    data = buf.getvalue()
    assert len(data) < 2 * 1024 * 1024  # small on the wire, 300 MB unzipped
    return data


def test_zip_bomb_one_huge_entry(lam, server, bomb_300mb):
    check_refused(lam, server, bomb_300mb, ("250", "large", "size", "unzipped", "uncompressed", "limit", "bytes"))
    # No partially extracted 300 MB file was left behind in the data dir.
    big = [
        os.path.join(d, f)
        for d, _, fs in os.walk(server.data_dir)
        for f in fs
        if os.path.getsize(os.path.join(d, f)) > 100 * 1024 * 1024
    ]
    assert not big, big


def test_zip_with_too_many_entries(lam, server):
    files = {f"f/{i:05d}.txt": "x" for i in range(20000)}
    files["app.py"] = GOOD_APP
    z = make_zip(files, compression=zipfile.ZIP_STORED)
    check_refused(lam, server, z, ("10000", "10,000", "entries", "files", "too many", "limit"))


def test_zip_with_many_small_entries_is_fine(lam):
    files = {f"f/{i:04d}.txt": "x" for i in range(999)}
    files["app.py"] = GOOD_APP
    name = unique("ok-many")
    create_function(lam, name, files=files)
    assert invoke(lam, name, {}).payload["good"] is True


# ------------------------------------------------------------------ payloads


@pytest.fixture(scope="module")
def echo_fn(lam):
    name = unique("payload-echo")
    create_function(lam, name, files={"app.py": GOOD_APP}, timeout=30, memory=512)
    return name


def json_string_payload(total_len: int) -> bytes:
    p = b'"' + b"a" * (total_len - 2) + b'"'
    assert len(p) == total_len
    return p


def test_sync_payload_over_6mb(lam, echo_fn):
    with pytest.raises(lam.exceptions.RequestTooLargeException) as ei:
        invoke(lam, echo_fn, payload=json_string_payload(6 * 1024 * 1024 + 1))
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 413


def test_sync_payload_over_1mb_is_fine(lam, echo_fn):
    r = invoke(lam, echo_fn, payload=json_string_payload(1024 * 1024 + 1))
    assert r.function_error is None, r.payload
    assert r.payload == {"good": True, "size": 1024 * 1024 - 1}


def test_async_payload_over_1mb(lam, echo_fn):
    with pytest.raises(lam.exceptions.RequestTooLargeException):
        invoke(lam, echo_fn, payload=json_string_payload(1024 * 1024 + 1), invocation_type="Event")


@pytest.mark.parametrize("payload", [b"this is not json", b'{"unterminated": ', b"\xff\xfe\x00"])
def test_non_json_payload(lam, echo_fn, payload):
    with pytest.raises(lam.exceptions.InvalidRequestContentException) as ei:
        invoke(lam, echo_fn, payload=payload)
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_server_still_fine_after_hostile_input(server, lam, echo_fn):
    # Runs last in this module: everything above must have left the server healthy.
    assert server.health()[0] == 200
    assert server.running()
    r = invoke(lam, echo_fn, {"still": "alive"})
    assert r.payload["good"] is True
    name = unique("after-hostile")
    create_function(lam, name, files={"app.py": GOOD_APP})
    assert invoke(lam, name, {}).payload["good"] is True
