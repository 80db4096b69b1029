"""A function-URL handler (API Gateway payload 2.0 in, HTTP response out), chosen by the
path below the URL root (tests/e2e/test_compat_urls.py):

  /bare...    -> a bare JSON value (Lambda answers 200 application/json)
  /binary...  -> 201, base64 body, two cookies, custom headers
  /fail...    -> raises (Lambda answers 502)
  anything    -> 200 with the whole event as a JSON body
"""
import base64
import json


def handler(event, context):
    path = event.get("rawPath", "")
    if path.startswith("/bare"):
        return {"bare": True, "method": event["requestContext"]["http"]["method"]}
    if path.startswith("/binary"):
        return {
            "statusCode": 201,
            "headers": {"Content-Type": "application/octet-stream", "X-Compat": "binary"},
            "cookies": ["session=abc; Path=/", "theme=dark"],
            "isBase64Encoded": True,
            "body": base64.b64encode(bytes([0, 1, 2, 254, 255])).decode(),
        }
    if path.startswith("/fail"):
        raise RuntimeError("url handler failed on purpose")
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json", "X-Request-Id": context.aws_request_id},
        "body": json.dumps(event),
    }
