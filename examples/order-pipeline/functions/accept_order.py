"""POST /orders (an HTTP route): validate the order and queue it."""

import json
import os

import wispclient


def handler(event, context):
    try:
        order = json.loads(event.get("body") or "{}")
    except ValueError:
        return {"statusCode": 400, "body": json.dumps({"error": "the body must be JSON"})}
    if not order.get("order_id") or not isinstance(order.get("order_amount"), (int, float)):
        return {"statusCode": 400, "body": json.dumps({"error": "order_id and a numeric order_amount are required"})}
    message_id = wispclient.send_message(os.environ["ORDERS_QUEUE_URL"], json.dumps(order))
    return {"statusCode": 202, "body": json.dumps({"order_id": order["order_id"], "queued": message_id})}
