"""A small AWS Signature V4 client (standard library only) for the functions of this
example: SQS SendMessage and S3 PutObject against wisp's endpoint. A real deployment would
use boto3; this keeps the example's packages tiny."""

import datetime
import hashlib
import hmac
import json
import os
import urllib.parse
import urllib.request

ENDPOINT = os.environ["WISP_ENDPOINT"]
KEY = os.environ["WISP_ACCESS_KEY_ID"]
SECRET = os.environ["WISP_SECRET_ACCESS_KEY"]
REGION = os.environ.get("AWS_REGION", "us-east-1")


def _sign(method, path, headers, body, service):
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, date = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    host = urllib.parse.urlsplit(ENDPOINT).netloc
    payload_hash = hashlib.sha256(body).hexdigest()
    headers = dict(headers, host=host, **{"x-amz-date": amz_date, "x-amz-content-sha256": payload_hash})
    names = sorted(k.lower() for k in headers)
    canonical_headers = "".join(f"{k}:{str(headers[k]).strip()}\n" for k in names)
    canonical_path = urllib.parse.quote(path, safe="/~")
    request = "\n".join([method, canonical_path, "", canonical_headers, ";".join(names), payload_hash])
    scope = f"{date}/{REGION}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(request.encode()).hexdigest()])
    key = ("AWS4" + SECRET).encode()
    for part in (date, REGION, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = f"AWS4-HMAC-SHA256 Credential={KEY}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
    return headers


def _send(method, path, headers, body, service):
    req = urllib.request.Request(ENDPOINT + urllib.parse.quote(path, safe="/~"), data=body, method=method,
                                 headers=_sign(method, path, headers, body, service))
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.read()


def send_message(queue_url, body):
    doc = json.dumps({"QueueUrl": queue_url, "MessageBody": body}).encode()
    headers = {"content-type": "application/x-amz-json-1.0", "x-amz-target": "AmazonSQS.SendMessage"}
    return json.loads(_send("POST", "/", headers, doc, "sqs"))["MessageId"]


def put_object(bucket, key, body, content_type="application/json"):
    _send("PUT", f"/{bucket}/{key}", {"content-type": content_type}, body, "s3")
