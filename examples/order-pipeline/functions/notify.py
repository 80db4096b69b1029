"""Fires when a receipt lands in the bucket (S3 ObjectCreated notification): 'send' the
customer notification — here, a log line that the run script reads back."""

import urllib.parse


def handler(event, context):
    for record in event["Records"]:
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        print(f"NOTIFY receipt ready: s3://{record['s3']['bucket']['name']}/{key} ({record['s3']['object']['size']} bytes)")
