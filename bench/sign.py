#!/usr/bin/env python3
"""Sign one request with AWS SigV4 (stdlib only) for the benchmark's load generator.

Usage: sign.py METHOD URL BODY
Reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION (us-east-1); service "lambda".
Prints two lines: the X-Amz-Date value, then the Authorization value. The signature
covers host and x-amz-date; a signed request stays valid for the server's clock-skew
window (5 minutes), so run.sh signs again right before every wrk run.
"""
import datetime
import hashlib
import hmac
import os
import sys
from urllib.parse import quote, urlsplit


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sign(method, url, body, key_id, secret, region="us-east-1", service="lambda", now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    date = amz_date[:8]
    parts = urlsplit(url)
    host = parts.netloc
    path = quote(parts.path or "/", safe="/-_.~")
    query = "&".join(sorted(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
        for k, _, v in (p.partition("=") for p in parts.query.split("&") if p)
    ))
    signed_headers = "host;x-amz-date"
    canonical = "\n".join([
        method, path, query,
        f"host:{host}\nx-amz-date:{amz_date}\n",
        signed_headers,
        hashlib.sha256(body.encode()).hexdigest(),
    ])
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = _hmac(("AWS4" + secret).encode(), date)
    for part in (region, service, "aws4_request"):
        k = _hmac(k, part)
    signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    auth = (f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}")
    return amz_date, auth


if __name__ == "__main__":
    method, url, body = sys.argv[1:4]
    amz_date, auth = sign(method, url, body, os.environ["AWS_ACCESS_KEY_ID"],
                          os.environ["AWS_SECRET_ACCESS_KEY"], os.environ.get("AWS_REGION", "us-east-1"))
    print(amz_date)
    print(auth)
