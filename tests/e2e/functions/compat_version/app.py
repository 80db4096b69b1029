"""Says which code and which published version ran: used for versions, aliases and
the weighted alias split (tests/e2e/test_compat_lifecycle.py)."""
import os

CODE = "v1"  # the tests upload variants of this file with another CODE


def handler(event, context):
    if isinstance(event, dict) and "raise" in event:
        raise ValueError(str(event["raise"]))
    return {
        "code": CODE,
        "version": context.function_version,
        "tag": os.environ.get("TAG"),
        "arn": context.invoked_function_arn,
        "echo": event,
    }
