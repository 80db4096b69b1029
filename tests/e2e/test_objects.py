"""The embedded S3-compatible object store (crate wisp-objects), driven with boto3's
real `s3` client: path-style addressing, region us-east-1, retries off.

By default every test runs against the real `wisp serve` (the `server` fixture). For
working on the crate alone, point the suite at its example server instead:

    cargo run -p wisp-objects --example serve -- 9100 /tmp/obj --events /tmp/obj-events.jsonl &
    cargo run -p wisp-objects --example serve -- 9101 /tmp/obj-noauth --no-auth &
    WISP_OBJECTS_ENDPOINT=http://127.0.0.1:9100 WISP_OBJECTS_DATA_DIR=/tmp/obj \
    WISP_OBJECTS_EVENTS=/tmp/obj-events.jsonl WISP_OBJECTS_NOAUTH_ENDPOINT=http://127.0.0.1:9101 \
    pytest tests/e2e/test_objects.py

(with WISP_BIN pointing at any executable, since conftest checks for one.)
"""
from __future__ import annotations

import hashlib
import http.client
import io
import json
import os
import uuid
import zlib
from base64 import b64encode
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import botocore.httpchecksum
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from wisp_e2e import ACCESS_KEY, REGION, SECRET_KEY, wait_for

MiB = 1024 * 1024


# --------------------------------------------------------------------------- fixtures


@dataclass
class Target:
    endpoint: str
    data_dir: "Path | None"
    events: "Path | None"  # the standalone example's notification log


@pytest.fixture(scope="module")
def target(request) -> Target:
    ep = os.environ.get("WISP_OBJECTS_ENDPOINT")
    if ep:
        dd = os.environ.get("WISP_OBJECTS_DATA_DIR")
        ev = os.environ.get("WISP_OBJECTS_EVENTS")
        return Target(ep, Path(dd) if dd else None, Path(ev) if ev else None)
    server = request.getfixturevalue("server")
    return Target(server.endpoint, Path(server.data_dir), None)


def s3_client(endpoint: str, key: str = ACCESS_KEY, secret: str = SECRET_KEY, **config: Any):
    session = boto3.session.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name=REGION)
    return session.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(
            region_name=REGION,
            s3={"addressing_style": "path"},
            retries={"max_attempts": 0},
            read_timeout=120,
            connect_timeout=10,
            **config,
        ),
    )


@pytest.fixture(scope="module")
def s3(target):
    return s3_client(target.endpoint)


def new_bucket_name() -> str:
    return f"wisp-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def bucket(s3):
    """A fresh bucket, emptied and deleted after the test."""
    name = new_bucket_name()
    s3.create_bucket(Bucket=name)
    yield name
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
            for o in page.get("Contents", []):
                s3.delete_object(Bucket=name, Key=o["Key"])
        s3.delete_bucket(Bucket=name)
    except ClientError:
        pass


def code(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


def status(exc: ClientError) -> int:
    return exc.response["ResponseMetadata"]["HTTPStatusCode"]


class Captured:
    """Records the headers of every request a client sends (botocore's before-send)."""

    def __init__(self, client):
        self.requests: list[tuple[str, str, dict]] = []
        client.meta.events.register("before-send.s3", self._capture)

    def _capture(self, request, **_):
        headers = {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()}
        self.requests.append((request.method, request.url, headers))


class TrailerChecksums:
    """botocore sends trailing checksums (aws-chunked, STREAMING-UNSIGNED-PAYLOAD-TRAILER)
    only over https; this makes its checksum resolver believe the endpoint is https, so
    that the same code path runs over the test's plain http."""

    def __enter__(self):
        self.orig = botocore.httpchecksum.urlparse
        botocore.httpchecksum.urlparse = lambda u: self.orig(u.replace("http://", "https://", 1))
        return self

    def __exit__(self, *exc):
        botocore.httpchecksum.urlparse = self.orig


# --------------------------------------------------------------------------- buckets


def test_bucket_life_cycle(s3):
    name = new_bucket_name()
    s3.create_bucket(Bucket=name)
    s3.head_bucket(Bucket=name)
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=name)
    assert code(e.value) == "BucketAlreadyOwnedByYou" and status(e.value) == 409

    s3.put_object(Bucket=name, Key="k", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=name)
    assert code(e.value) == "BucketNotEmpty" and status(e.value) == 409

    s3.delete_object(Bucket=name, Key="k")
    s3.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=name)
    assert status(e.value) == 404
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=name, Key="k", Body=b"x")
    assert code(e.value) == "NoSuchBucket"
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


@pytest.mark.parametrize(
    "name",
    ["ab", "a" * 64, "Upper-Case", "under_score", "-leading", "trailing-", "two..dots", "192.168.1.10", "xn--punycode"],
)
def test_invalid_bucket_names_are_refused(s3, name):
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=name)
    assert code(e.value) == "InvalidBucketName", e.value.response
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


# --------------------------------------------------------------------------- objects


def test_put_get_head_delete(s3, bucket):
    body = os.urandom(100_000)
    put = s3.put_object(
        Bucket=bucket,
        Key="dir/data.bin",
        Body=body,
        ContentType="application/x-test",
        Metadata={"owner": "wisp", "purpose": "e2e"},
    )
    md5 = hashlib.md5(body).hexdigest()
    assert put["ETag"] == f'"{md5}"'

    got = s3.get_object(Bucket=bucket, Key="dir/data.bin")
    assert got["Body"].read() == body
    assert got["ETag"] == f'"{md5}"'
    assert got["ContentLength"] == len(body)
    assert got["ContentType"] == "application/x-test"
    assert got["Metadata"] == {"owner": "wisp", "purpose": "e2e"}

    head = s3.head_object(Bucket=bucket, Key="dir/data.bin")
    assert head["ContentLength"] == len(body) and head["ETag"] == f'"{md5}"'
    assert head["Metadata"] == {"owner": "wisp", "purpose": "e2e"}

    part = s3.get_object(Bucket=bucket, Key="dir/data.bin", Range="bytes=10-19")
    assert part["Body"].read() == body[10:20]
    assert part["ContentRange"] == f"bytes 10-19/{len(body)}"
    assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
    tail = s3.get_object(Bucket=bucket, Key="dir/data.bin", Range="bytes=-5")
    assert tail["Body"].read() == body[-5:]
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="dir/data.bin", Range=f"bytes={len(body)}-")
    assert code(e.value) == "InvalidRange"

    # Conditional GET.
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="dir/data.bin", IfMatch='"nope"')
    assert status(e.value) == 412
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="dir/data.bin", IfNoneMatch=f'"{md5}"')
    assert status(e.value) == 304

    # Overwrite, then empty body.
    s3.put_object(Bucket=bucket, Key="dir/data.bin", Body=b"second")
    assert s3.get_object(Bucket=bucket, Key="dir/data.bin")["Body"].read() == b"second"
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    e_obj = s3.get_object(Bucket=bucket, Key="empty")
    assert e_obj["Body"].read() == b"" and e_obj["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'

    s3.delete_object(Bucket=bucket, Key="dir/data.bin")
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="dir/data.bin")
    assert code(e.value) == "NoSuchKey" and status(e.value) == 404
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="dir/data.bin")
    assert status(e.value) == 404
    # Deleting what is not there is a success, as on S3.
    s3.delete_object(Bucket=bucket, Key="dir/data.bin")


def test_default_put_object_sends_a_checksum_that_is_checked(s3, bucket):
    """boto3 1.36+ adds x-amz-checksum-crc32 to every PutObject (over http as a header);
    the server checks it, and refuses a wrong one."""
    cap = Captured(s3)
    s3.put_object(Bucket=bucket, Key="crc", Body=b"checked")
    sent = cap.requests[-1][2]
    assert "x-amz-checksum-crc32" in sent, sent
    assert s3.get_object(Bucket=bucket, Key="crc")["Body"].read() == b"checked"

    wrong = b64encode(zlib.crc32(b"other").to_bytes(4, "big")).decode()
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="bad-crc", Body=b"checked", ChecksumCRC32=wrong)
    assert code(e.value) == "BadDigest"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="bad-crc")
    assert status(e.value) == 404


def test_aws_chunked_uploads_with_trailing_checksums(target, bucket):
    """The aws-chunked encoding with a trailing CRC32 that botocore uses over https
    (x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER), for put_object and for the
    parts of a multipart upload_fileobj."""
    s3 = s3_client(target.endpoint)
    cap = Captured(s3)
    body = os.urandom(3 * MiB + 17)
    with TrailerChecksums():
        s3.put_object(Bucket=bucket, Key="chunked.bin", Body=body)
        sent = cap.requests[-1][2]
        assert sent.get("x-amz-content-sha256") == "STREAMING-UNSIGNED-PAYLOAD-TRAILER", sent
        assert "aws-chunked" in sent.get("content-encoding", ""), sent
        assert sent.get("x-amz-trailer") == "x-amz-checksum-crc32", sent

        big = os.urandom(12 * MiB + 5)
        s3.upload_fileobj(
            io.BytesIO(big), bucket, "chunked-multipart.bin", Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
        )
        parts = [r for r in cap.requests if "uploadId=" in r[1] and r[0] == "PUT"]
        assert len(parts) == 3 and all(r[2].get("x-amz-content-sha256") == "STREAMING-UNSIGNED-PAYLOAD-TRAILER" for r in parts)

    got = s3.get_object(Bucket=bucket, Key="chunked.bin")
    assert got["Body"].read() == body
    assert got["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    # Stored without the transfer encoding.
    assert "aws-chunked" not in got.get("ContentEncoding", "")
    assert s3.get_object(Bucket=bucket, Key="chunked-multipart.bin")["Body"].read() == big


def raw_chunked_put(endpoint: str, bucket: str, key: str, payload: bytes, crc32_b64: str) -> "tuple[int, bytes]":
    """A hand-built aws-chunked PUT with an unsigned trailer, signed (headers only) with
    botocore's own S3 signer."""
    chunked = b"%x\r\n%s\r\n0\r\nx-amz-checksum-crc32:%s\r\n\r\n" % (len(payload), payload, crc32_b64.encode())
    url = f"{endpoint}/{bucket}/{key}"
    headers = {
        "Content-Encoding": "aws-chunked",
        "X-Amz-Content-SHA256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "X-Amz-Trailer": "x-amz-checksum-crc32",
        "X-Amz-Decoded-Content-Length": str(len(payload)),
        "Content-Length": str(len(chunked)),
    }
    req = AWSRequest(method="PUT", url=url, data=chunked, headers=headers)
    # What makes botocore's signer use STREAMING-UNSIGNED-PAYLOAD-TRAILER as the payload.
    req.context["checksum"] = {"request_algorithm": {"in": "trailer", "algorithm": "crc32", "name": "x-amz-checksum-crc32"}}
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(req)
    u = urlparse(endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("PUT", f"/{bucket}/{key}", body=chunked, headers=dict(req.headers.items()))
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_aws_chunked_trailer_checksum_is_verified(target, s3, bucket):
    payload = b"hello, chunks"
    good = b64encode(zlib.crc32(payload).to_bytes(4, "big")).decode()
    st, body = raw_chunked_put(target.endpoint, bucket, "raw-good", payload, good)
    assert st == 200, body
    assert s3.get_object(Bucket=bucket, Key="raw-good")["Body"].read() == payload

    bad = b64encode(zlib.crc32(b"something else").to_bytes(4, "big")).decode()
    st, body = raw_chunked_put(target.endpoint, bucket, "raw-bad", payload, bad)
    assert st == 400 and b"BadDigest" in body, body
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="raw-bad")


def test_copy_and_delete_objects(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"copy me", Metadata={"a": "1"})
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    dst = s3.get_object(Bucket=bucket, Key="dst")
    assert dst["Body"].read() == b"copy me" and dst["Metadata"] == {"a": "1"}
    s3.copy_object(
        Bucket=bucket, Key="dst2", CopySource={"Bucket": bucket, "Key": "src"}, MetadataDirective="REPLACE", Metadata={"b": "2"}
    )
    assert s3.head_object(Bucket=bucket, Key="dst2")["Metadata"] == {"b": "2"}
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="src", CopySource={"Bucket": bucket, "Key": "src"})
    assert code(e.value) == "InvalidRequest"

    resp = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "src"}, {"Key": "dst"}, {"Key": "never-existed"}]}
    )
    assert sorted(d["Key"] for d in resp["Deleted"]) == ["dst", "never-existed", "src"]
    left = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert left == ["dst2"]


# --------------------------------------------------------------------------- listing


def test_list_objects_v2_prefix_delimiter_pagination(s3, bucket):
    keys = ["a.txt", "b/1", "b/2", "b/c/3", "c/x", "d", "e f+g", "ü/1", "z"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())

    flat = s3.list_objects_v2(Bucket=bucket)
    assert [o["Key"] for o in flat["Contents"]] == sorted(keys, key=lambda k: k.encode())
    assert flat["KeyCount"] == len(keys) and not flat["IsTruncated"]
    assert all(o["Size"] == len(o["Key"].encode()) for o in flat["Contents"])

    top = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [o["Key"] for o in top["Contents"]] == ["a.txt", "d", "e f+g", "z"]
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["b/", "c/", "ü/"]

    under_b = s3.list_objects_v2(Bucket=bucket, Prefix="b/", Delimiter="/")
    assert [o["Key"] for o in under_b["Contents"]] == ["b/1", "b/2"]
    assert [p["Prefix"] for p in under_b["CommonPrefixes"]] == ["b/c/"]

    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="nothing-here")

    # Pages of two (objects and prefixes count alike), through continuation tokens.
    pages = list(s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Delimiter="/", PaginationConfig={"PageSize": 2}))
    seen = [o["Key"] for p in pages for o in p.get("Contents", [])] + [c["Prefix"] for p in pages for c in p.get("CommonPrefixes", [])]
    assert sorted(seen) == sorted(["a.txt", "d", "e f+g", "z", "b/", "c/", "ü/"])
    assert len(pages) == 4 and all(p["KeyCount"] <= 2 for p in pages)
    assert all(p["IsTruncated"] for p in pages[:-1]) and not pages[-1]["IsTruncated"]

    after = s3.list_objects_v2(Bucket=bucket, StartAfter="b/2")
    assert [o["Key"] for o in after["Contents"]][0] == "b/c/3"
    one = s3.list_objects_v2(Bucket=bucket, MaxKeys=1)
    assert one["IsTruncated"] and len(one["Contents"]) == 1 and one["NextContinuationToken"]
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket=bucket, ContinuationToken="not-a-token")
    assert code(e.value) == "InvalidArgument"

    # ListObjects (v1) with markers.
    v1 = list(s3.get_paginator("list_objects").paginate(Bucket=bucket, PaginationConfig={"PageSize": 3}))
    assert [o["Key"] for p in v1 for o in p.get("Contents", [])] == sorted(keys, key=lambda k: k.encode())


# --------------------------------------------------------------------------- multipart


def test_multipart_upload_file_20mb(s3, bucket, tmp_path):
    data = os.urandom(20 * MiB + 123)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    # boto3's defaults: 8 MiB threshold and parts, so three parts.
    s3.upload_file(str(src), bucket, "big.bin")
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == len(data)
    chunk = 8 * MiB
    md5s = b"".join(hashlib.md5(data[i : i + chunk]).digest() for i in range(0, len(data), chunk))
    assert head["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'

    dst = tmp_path / "back.bin"
    s3.download_file(bucket, "big.bin", str(dst))
    assert hashlib.sha256(dst.read_bytes()).digest() == hashlib.sha256(data).digest()


def test_multipart_errors_and_abort(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    small = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=b"too small")
    last = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=2, Body=b"last")
    parts = s3.list_parts(Bucket=bucket, Key="mp", UploadId=up)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, 9), (2, 4)]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(
            Bucket=bucket,
            Key="mp",
            UploadId=up,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": small["ETag"]}, {"PartNumber": 2, "ETag": last["ETag"]}]},
        )
    assert code(e.value) == "EntityTooSmall"
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 3, "ETag": last["ETag"]}]}
        )
    assert code(e.value) == "InvalidPart"
    # A single (last) part may be small.
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": last["ETag"]}]}
    )
    assert done["ETag"].endswith('-1"')
    assert s3.get_object(Bucket=bucket, Key="mp")["Body"].read() == b"last"

    up2 = s3.create_multipart_upload(Bucket=bucket, Key="mp2")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="mp2", UploadId=up2, PartNumber=1, Body=b"x")
    s3.abort_multipart_upload(Bucket=bucket, Key="mp2", UploadId=up2)
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="mp2", UploadId=up2, PartNumber=2, Body=b"y")
    assert code(e.value) == "NoSuchUpload"
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="mp2", UploadId="../../etc", PartNumber=1, Body=b"y")
    assert code(e.value) == "NoSuchUpload"


# --------------------------------------------------------------------------- hostile keys


def test_keys_with_dot_segments_and_unicode_stay_keys(target, s3, bucket):
    marker = f"escape-{uuid.uuid4().hex[:8]}"
    keys = [
        f"../../../{marker}",
        f"a/../../{marker}-2",
        f"./{marker}-3",
        "ünïcödé/ключ ✓ 𝄞.txt",
        "with space+plus&amp=eq?q#hash",
        "a//double//slash",
        "%2e%2e/percent",
        "trailing/",
    ]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    listed = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket) for o in p.get("Contents", [])]
    assert sorted(listed) == sorted(keys)
    for k in keys:
        assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == k.encode(), k
        assert s3.head_object(Bucket=bucket, Key=k)["ContentLength"] == len(k.encode())

    if target.data_dir is not None:
        # Nothing named after a key anywhere near the data dir, inside or out.
        root = target.data_dir.resolve().parent.parent
        found = [str(p) for p in root.rglob(f"*{marker}*")]
        assert found == [], found
        assert not any("ключ" in str(p) for p in target.data_dir.rglob("*"))
    for k in keys:
        s3.delete_object(Bucket=bucket, Key=k)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)

    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert code(e.value) == "KeyTooLongError"


# --------------------------------------------------------------------------- auth


def test_unsigned_and_badly_signed_requests_are_refused(target, bucket):
    u = urlparse(target.endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request("GET", f"/{bucket}")
        resp = conn.getresponse()
        assert resp.status == 403, resp.read()
        resp.read()
    finally:
        conn.close()
    wrong = s3_client(target.endpoint, secret="not-the-secret")
    with pytest.raises(ClientError) as e:
        wrong.list_objects_v2(Bucket=bucket)
    assert code(e.value) == "SignatureDoesNotMatch"
    unknown = s3_client(target.endpoint, key="AKIDUNKNOWN")
    with pytest.raises(ClientError) as e:
        unknown.list_buckets()
    assert code(e.value) == "InvalidAccessKeyId"


def test_presigned_url(target, s3, bucket):
    s3.put_object(Bucket=bucket, Key="shared", Body=b"presigned body")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared"}, ExpiresIn=60)
    u = urlparse(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request("GET", f"{u.path}?{u.query}")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b"presigned body"
    finally:
        conn.close()


@pytest.fixture(scope="module")
def no_auth_endpoint(request):
    ep = os.environ.get("WISP_OBJECTS_NOAUTH_ENDPOINT")
    if ep:
        return ep
    if os.environ.get("WISP_OBJECTS_ENDPOINT"):
        pytest.skip("standalone run without WISP_OBJECTS_NOAUTH_ENDPOINT")
    from wisp_e2e import Server

    s = Server(request.getfixturevalue("tmp_path_factory").mktemp("wisp-objects-noauth"), args=["--no-auth"], name="objects-noauth")
    s.start()
    request.addfinalizer(s.close)
    return s.endpoint


def test_no_auth_accepts_any_key_and_unsigned_requests(no_auth_endpoint):
    anyone = s3_client(no_auth_endpoint, key="ANYKEY", secret="any-secret")
    name = new_bucket_name()
    anyone.create_bucket(Bucket=name)
    anyone.put_object(Bucket=name, Key="k", Body=b"open")
    with TrailerChecksums():
        anyone.put_object(Bucket=name, Key="chunked", Body=b"open and chunked" * 1000)
    assert anyone.get_object(Bucket=name, Key="chunked")["Body"].read() == b"open and chunked" * 1000
    u = urlparse(no_auth_endpoint)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request("GET", f"/{name}/k")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.read() == b"open"
    finally:
        conn.close()
    for k in ("k", "chunked"):
        anyone.delete_object(Bucket=name, Key=k)
    anyone.delete_bucket(Bucket=name)


# --------------------------------------------------------------------------- notifications

FN = "arn:aws:lambda:us-east-1:000000000000:function:"


def test_notification_configuration_round_trip(s3, bucket):
    config = {
        "LambdaFunctionConfigurations": [
            {
                "Id": "jpg-in-images",
                "LambdaFunctionArn": FN + "thumbnails",
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "images/"}, {"Name": "suffix", "Value": ".jpg"}]}},
            },
            {"Id": "removed", "LambdaFunctionArn": FN + "audit", "Events": ["s3:ObjectRemoved:*"]},
            {"LambdaFunctionArn": FN + "puts:live", "Events": ["s3:ObjectCreated:Put"]},
        ]
    }
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
    got = s3.get_bucket_notification_configuration(Bucket=bucket)["LambdaFunctionConfigurations"]
    assert [c["LambdaFunctionArn"] for c in got] == [FN + "thumbnails", FN + "audit", FN + "puts:live"]
    assert got[0]["Id"] == "jpg-in-images" and got[1]["Id"] == "removed" and got[2]["Id"]
    assert got[0]["Events"] == ["s3:ObjectCreated:*"]
    rules = {r["Name"].lower(): r["Value"] for r in got[0]["Filter"]["Key"]["FilterRules"]}
    assert rules == {"prefix": "images/", "suffix": ".jpg"}
    assert "Filter" not in got[1]

    for bad in [
        {"LambdaFunctionConfigurations": [{"LambdaFunctionArn": FN + "f", "Events": ["s3:ObjectCreated:Nope"]}]},
        {
            "LambdaFunctionConfigurations": [
                {
                    "LambdaFunctionArn": FN + "f",
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "a"}, {"Name": "prefix", "Value": "b"}]}},
                }
            ]
        },
        {"QueueConfigurations": [{"QueueArn": "arn:aws:sqs:us-east-1:000000000000:q", "Events": ["s3:ObjectCreated:*"]}]},
    ]:
        with pytest.raises(ClientError) as e:
            s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=bad)
        assert code(e.value) == "InvalidArgument", bad
    # Refused configurations left the stored one alone.
    assert len(s3.get_bucket_notification_configuration(Bucket=bucket)["LambdaFunctionConfigurations"]) == 3

    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    assert "LambdaFunctionConfigurations" not in s3.get_bucket_notification_configuration(Bucket=bucket)


def read_events(path: Path) -> "list[dict]":
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


RECORDER = """
import json, os
def handler(event, context):
    with open(os.environ["EVENTS"], "a") as f:
        f.write(json.dumps({"function": context.function_name, "event": event}) + "\\n")
"""


def test_notifications_reach_functions(server, s3, bucket, tmp_path):
    """Uploading fires exactly the matching functions (event type, prefix and suffix
    filters), each with the S3 event notification document: bucket, key, size, ETag."""
    from wisp_e2e import create_function, lambda_client, unique

    lam = lambda_client(server.endpoint)
    log = tmp_path / "events.jsonl"
    names = {role: unique(role) for role in ("thumbs", "audit", "puts")}
    for name in names.values():
        create_function(lam, name, files={"app.py": RECORDER}, env={"EVENTS": str(log)})
    arn = lambda n: f"arn:aws:lambda:{REGION}:000000000000:function:{n}"
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "LambdaFunctionConfigurations": [
                {
                    "Id": "jpg",
                    "LambdaFunctionArn": arn(names["thumbs"]),
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "images/"}, {"Name": "suffix", "Value": ".jpg"}]}},
                },
                {"Id": "gone", "LambdaFunctionArn": arn(names["audit"]), "Events": ["s3:ObjectRemoved:*"]},
                {"Id": "puts", "LambdaFunctionArn": arn(names["puts"]), "Events": ["s3:ObjectCreated:Put"]},
            ]
        },
    )
    s3.put_object(Bucket=bucket, Key="images/my cat.jpg", Body=b"meow")  # thumbs + puts
    s3.put_object(Bucket=bucket, Key="images/cat.png", Body=b"png")  # puts
    s3.put_object(Bucket=bucket, Key="docs/a.jpg", Body=b"doc")  # puts
    big = tmp_path / "big.jpg"
    big.write_bytes(os.urandom(9 * MiB))
    s3.upload_file(str(big), bucket, "images/big.jpg")  # thumbs (CompleteMultipartUpload)
    s3.delete_object(Bucket=bucket, Key="docs/a.jpg")  # audit
    s3.delete_object(Bucket=bucket, Key="never-existed")  # nothing removed: no event

    role = {v: k for k, v in names.items()}
    expected = {
        ("thumbs", "ObjectCreated:Put", "images/my+cat.jpg"),
        ("puts", "ObjectCreated:Put", "images/my+cat.jpg"),
        ("puts", "ObjectCreated:Put", "images/cat.png"),
        ("puts", "ObjectCreated:Put", "docs/a.jpg"),
        ("thumbs", "ObjectCreated:CompleteMultipartUpload", "images/big.jpg"),
        ("audit", "ObjectRemoved:Delete", "docs/a.jpg"),
    }

    def fired():
        return {(role[e["function"]], e["event"]["Records"][0]["eventName"], e["event"]["Records"][0]["s3"]["object"]["key"])
                for e in read_events(log)}

    # Deliveries are asynchronous (and at least once): wait for all, then check that
    # nothing else fired.
    wait_for(lambda: fired() >= expected, timeout=60, message="six notifications")
    evs = read_events(log)
    first = next(e["event"] for e in evs if role[e["function"]] == "thumbs" and e["event"]["Records"][0]["eventName"] == "ObjectCreated:Put")
    assert set(first) == {"Records"} and len(first["Records"]) == 1
    rec = first["Records"][0]
    assert rec["eventVersion"] == "2.1" and rec["eventSource"] == "aws:s3" and rec["awsRegion"] == REGION
    assert rec["eventTime"].endswith("Z")
    assert rec["userIdentity"]["principalId"] == ACCESS_KEY
    assert rec["s3"]["s3SchemaVersion"] == "1.0" and rec["s3"]["configurationId"] == "jpg"
    assert rec["s3"]["bucket"]["name"] == bucket and rec["s3"]["bucket"]["arn"] == f"arn:aws:s3:::{bucket}"
    obj = rec["s3"]["object"]
    assert obj["size"] == 4 and obj["eTag"] == hashlib.md5(b"meow").hexdigest() and obj["sequencer"]
    # The unmatched uploads and the no-op delete fired nothing.
    import time
    time.sleep(1)
    assert fired() == expected, fired()


def test_external_store_webhook(server, tmp_path):
    """MinIO-style bucket events POSTed to wisp's webhook reach the function as AWS S3
    event notifications; the webhook needs a key's secret as its bearer token."""
    from wisp_e2e import create_function, lambda_client, unique

    lam = lambda_client(server.endpoint)
    log = tmp_path / "events.jsonl"
    name = unique("minio-sink")
    create_function(lam, name, files={"app.py": RECORDER}, env={"EVENTS": str(log)})
    minio = {
        "EventName": "s3:ObjectCreated:Put",
        "Key": "photos/cat one.jpg",
        "Records": [{
            "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "", "eventTime": "2026-11-26T10:00:00.000Z",
            "eventName": "s3:ObjectCreated:Put", "userIdentity": {"principalId": "minio"},
            "requestParameters": {"sourceIPAddress": "10.0.0.1"}, "responseElements": {},
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "Config", "bucket": {"name": "photos", "ownerIdentity": {"principalId": "minio"}, "arn": "arn:aws:s3:::photos"},
                   "object": {"key": "cat+one.jpg", "size": 1234, "eTag": "abc123", "sequencer": "17"}},
        }],
    }
    body = json.dumps(minio).encode()
    host, port = server.endpoint.split("//")[1].split(":")

    def post(headers):
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("POST", f"/wisp/v1/notifications/{name}", body=body, headers={"content-type": "application/json", **headers})
        r = conn.getresponse()
        return r.status, r.read()

    assert post({})[0] == 403
    assert post({"authorization": "Bearer not-a-secret"})[0] == 403
    status, raw = post({"authorization": f"Bearer {SECRET_KEY}"})
    assert status == 200 and json.loads(raw)["Accepted"] == 1, raw
    evs = wait_for(lambda: read_events(log) or None, timeout=30, message="webhook event")
    rec = evs[0]["event"]["Records"][0]
    assert rec["s3"]["bucket"]["name"] == "photos" and rec["s3"]["object"]["size"] == 1234
    assert rec["eventName"] == "ObjectCreated:Put"
    # Garbage is refused and nothing runs.
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", f"/wisp/v1/notifications/{name}", body=b"{not json", headers={"authorization": f"Bearer {SECRET_KEY}"})
    assert conn.getresponse().status == 400
