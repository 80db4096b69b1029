"""The compat behaviour, shared by the built-in python3.11 bootstrap and the
awslambdaric deployment (tests/e2e/test_compat_runtimes.py). The Rust
`lambda_runtime` fixture (tests/fixtures/rust-lambda) implements the same thing.

- {"raise": "MSG"} -> raises CompatError("MSG") (errorType "CompatError");
- anything else    -> {"echo": event, "context": {...context fields...}}.
"""
import sys

CLIENT_FIELDS = ("installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name")


class CompatError(Exception):
    pass


def _client_context(cc):
    if cc is None:
        return None
    client = getattr(cc, "client", None)
    return {
        "custom": getattr(cc, "custom", None),
        "env": getattr(cc, "env", None),
        "client": None if client is None else {f: getattr(client, f, None) for f in CLIENT_FIELDS},
    }


def handler(event, context):
    if isinstance(event, dict) and "raise" in event:
        raise CompatError(str(event["raise"]))
    return {
        "echo": event,
        "context": {
            # Which runtime client actually ran this handler.
            "runtime": "awslambdaric" if "awslambdaric" in sys.modules else "wisp-python",
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "function_version": context.function_version,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "invoked_function_arn": context.invoked_function_arn,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "client_context": _client_context(context.client_context),
        },
    }
