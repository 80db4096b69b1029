"""E-commerce order processing: the worked example of the seed article (section 5.2).

The seed writes it as a Flask route (`POST /orders`) that reads `order_id` and
`order_amount`, calls `handle_order` and returns
`{'order_id': order_id, 'order_handled': order_handled}`; its deployment names the
handler `process_order.process_order`. Here it is the same function as a Lambda
handler, with the seed's two bugs fixed:

- `handle_order` calls `time.sleep` without importing `time`;
- a request without `order_id` (or `order_amount`) fails with a bare `KeyError`;
  here it fails with a clear `InvalidOrder` error that says what is wrong.

The seed simulates 5 s of processing (`time.sleep(5)`); set the environment variable
ORDER_PROCESSING_SECONDS=5 to get that back (the default is no delay). The function
timeout is 15 s, as in the seed.
"""

import base64
import json
import os
import time


class InvalidOrder(ValueError):
    """The event is not a valid order. Reported as the function error (errorType "InvalidOrder")."""


def process_order(event, context):
    data = _order_from_event(event)

    order_id = data.get("order_id")
    order_amount = data.get("order_amount")
    if order_id is None or order_id == "":
        raise InvalidOrder("order_id is required")
    if isinstance(order_id, bool) or not isinstance(order_id, (str, int)):
        raise InvalidOrder(f"order_id must be a string or an integer, got {type(order_id).__name__}")
    if order_amount is None:
        raise InvalidOrder("order_amount is required")
    if isinstance(order_amount, bool) or not isinstance(order_amount, (int, float)):
        raise InvalidOrder(f"order_amount must be a number, got {type(order_amount).__name__}")
    if order_amount < 0:
        raise InvalidOrder(f"order_amount must not be negative, got {order_amount}")

    # 处理订单逻辑 (process the order)
    order_handled = handle_order(order_id, order_amount)

    # 返回处理结果 (return the result)
    return {"order_id": order_id, "order_handled": order_handled}


# The conventional Lambda name, so `handler.lambda_handler` works too.
lambda_handler = process_order


def handle_order(order_id, order_amount):
    # 处理订单逻辑，如查询库存、更新订单状态等 (check stock, update the order's state, ...)
    print(f"processing order {order_id}, amount {order_amount}")
    delay = float(os.environ.get("ORDER_PROCESSING_SECONDS", "0"))
    if delay > 0:
        time.sleep(delay)
    return True


def _order_from_event(event):
    """The order itself: the event, or the JSON body of an HTTP event (the seed's POST /orders)."""
    if isinstance(event, dict) and "order_id" not in event and isinstance(event.get("body"), str):
        body = event["body"]
        if event.get("isBase64Encoded"):
            body = base64.b64decode(body).decode("utf-8")
        try:
            event = json.loads(body) if body else {}
        except ValueError as exc:
            raise InvalidOrder(f"request body is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise InvalidOrder(f"an order must be a JSON object, got {type(event).__name__}")
    return event
