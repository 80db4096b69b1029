#!/usr/bin/env python3
"""Deploy and invoke the seed's order-processing function with boto3, against wisp.

This is the seed article's deployment code (section 5.2) with only these changes:

- the client gets wisp's endpoint_url, a region and credentials instead of AWS's;
- Runtime 'python3.8' -> 'python3.11' (the Python runtime this machine has);
- Code={'ZipFile': ...} gets the bytes of a zip file. The seed passes
  b'fileb://process_order.zip', which is the AWS CLI's syntax for "read this file",
  not zip bytes; boto3 would upload those 25 bytes as the "zip".

The seed's Handler is 'process_order.process_order' (module process_order, function
process_order), so handler.py goes into the zip as process_order.py.

Environment: WISP_ENDPOINT (default http://127.0.0.1:8790). Credentials, found as the
wisp CLI finds them: WISP_ACCESS_KEY_ID / WISP_SECRET_ACCESS_KEY, then the server's root
key WISP_ROOT_ACCESS_KEY_ID / WISP_ROOT_SECRET_ACCESS_KEY, then the admin key that a
default `wisp serve` writes to credentials.json in its data dir ($WISP_DATA_DIR, or the
nearest `.wisp` folder from the current folder upwards).
Needs boto3 (pip install boto3).
"""

import io
import json
import os
import sys
import zipfile

import boto3

HERE = os.path.dirname(os.path.abspath(__file__))
ENDPOINT = os.environ.get("WISP_ENDPOINT", "http://127.0.0.1:8790")
REGION = os.environ.get("AWS_REGION", "us-east-1")


def find_credentials():
    for id_var, secret_var in (("WISP_ACCESS_KEY_ID", "WISP_SECRET_ACCESS_KEY"),
                               ("WISP_ROOT_ACCESS_KEY_ID", "WISP_ROOT_SECRET_ACCESS_KEY")):
        if os.environ.get(id_var) and os.environ.get(secret_var):
            return os.environ[id_var], os.environ[secret_var]
    files = []
    if os.environ.get("WISP_DATA_DIR"):
        files.append(os.path.join(os.environ["WISP_DATA_DIR"], "credentials.json"))
    d = os.getcwd()
    while True:
        files.append(os.path.join(d, ".wisp", "credentials.json"))
        if os.path.dirname(d) == d:
            break
        d = os.path.dirname(d)
    for path in files:
        try:
            with open(path) as f:
                keys = json.load(f)["Keys"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        for key in keys:
            if key.get("Admin") is True:
                return key["AccessKeyId"], key["SecretAccessKey"]
    sys.exit("no credentials: set WISP_ROOT_ACCESS_KEY_ID and WISP_ROOT_SECRET_ACCESS_KEY "
             "(or run this from the folder where `wisp serve` keeps .wisp/)")


def build_zip():
    """process_order.zip, in memory: handler.py stored as process_order.py."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("process_order.py", date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(os.path.join(HERE, "handler.py"), "rb") as f:
            zf.writestr(info, f.read())
    return buf.getvalue()


def main():
    zip_bytes = build_zip()
    access_key_id, secret_access_key = find_credentials()

    lambda_client = boto3.client(
        "lambda",
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
    )

    # --- the seed's create_function call ---
    try:
        response = lambda_client.create_function(
            FunctionName='process_order',
            Runtime='python3.11',
            Role='arn:aws:iam::123456789012:role/service-role/ProcessOrderRole',
            Handler='process_order.process_order',
            Code={
                'ZipFile': zip_bytes
            },
            Description='Process order',
            Timeout=15,
            MemorySize=512,
            Publish=True
        )
    except lambda_client.exceptions.ResourceConflictException:
        # Already deployed (a second run of this script): publish the current code instead.
        print("process_order exists; updating its code", file=sys.stderr)
        response = lambda_client.update_function_code(
            FunctionName='process_order', ZipFile=zip_bytes, Publish=True
        )
    response.pop("ResponseMetadata", None)
    print(response)

    # --- invoke it, as the seed's `invoke --function process_order --payload ...` ---
    order = {"order_id": "123", "order_amount": 100}
    result = lambda_client.invoke(
        FunctionName='process_order',
        InvocationType='RequestResponse',
        Payload=json.dumps(order).encode(),
    )
    payload = json.loads(result["Payload"].read())
    print(json.dumps(payload))
    if result.get("FunctionError"):
        print(f"function error: {result['FunctionError']}", file=sys.stderr)
        return 1

    # A missing order_id is refused with a clear function error.
    bad = lambda_client.invoke(
        FunctionName='process_order',
        Payload=json.dumps({"order_amount": 100}).encode(),
    )
    err = json.loads(bad["Payload"].read())
    print(f"without order_id: {bad.get('FunctionError')}: "
          f"{err.get('errorType')}: {err.get('errorMessage')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
