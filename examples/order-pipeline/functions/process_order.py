"""Fed by the orders queue: handle each order (the seed's process_order) and write its
receipt to the receipts bucket. Failed records are reported so only they come back."""

import json
import os
import time

import wispclient


def handler(event, context):
    failures = []
    for record in event["Records"]:
        try:
            order = json.loads(record["body"])
            receipt = {"order_id": order["order_id"], "order_amount": order["order_amount"],
                       "order_handled": True, "handled_at": time.time(), "request_id": context.aws_request_id}
            wispclient.put_object(os.environ["RECEIPTS_BUCKET"], f"receipts/{order['order_id']}.json",
                                  json.dumps(receipt).encode())
        except Exception as e:  # one bad record must not fail the others
            print(f"order in message {record['messageId']} failed: {e}")
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
