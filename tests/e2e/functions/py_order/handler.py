# The seed article's worked example: e-commerce order processing.


def lambda_handler(event, context):
    order_id = event["order_id"]
    order_amount = event["order_amount"]
    print(f"processing order {order_id} for amount {order_amount}")
    return {"order_id": order_id, "order_handled": True}
