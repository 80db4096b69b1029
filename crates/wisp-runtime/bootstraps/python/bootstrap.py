"""wisp's Python runtime: a client of the AWS Lambda Runtime API (2018-06-01).

Run as `python -S -u -B bootstrap.py` inside every python function instance.
It imports the handler named by $_HANDLER once, then loops: fetch the next
event from $AWS_LAMBDA_RUNTIME_API, call the handler, post its result or error.
Behaviour and error shapes follow AWS's awslambdaric. Standard library only.

Start-up time matters (it is every cold start), so this file imports as little
as it can: `http.client` alone would cost ~30 ms (it pulls in email and ssl),
hence the small HTTP/1.1 client below; `logging`, `traceback` and `decimal`
are only imported when they are needed.
"""

import _socket
import json
import os
import sys
import time

API_PREFIX = "/2018-06-01/runtime/"

# Request id of the invocation in progress, for log lines ("" outside one).
_request_id = ""


class RuntimeClient:
    """HTTP/1.1 over one keep-alive TCP connection to the Runtime API.

    The server is wisp itself, so only what it can send is handled:
    Content-Length or chunked bodies, and `Connection: close`. Built on
    `_socket` because the `socket` module alone adds ~10 ms of imports.
    """

    def __init__(self, address):
        host, _, port = address.rpartition(":")
        self.host_header = address
        self.host, self.port = host.strip("[]") or "127.0.0.1", int(port)
        self.sock = None
        self.buf = b""

    def _connect(self):
        family, kind, proto, _, sockaddr = _socket.getaddrinfo(self.host, self.port, 0, _socket.SOCK_STREAM)[0]
        sock = _socket.socket(family, kind, proto)
        try:
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            sock.connect(sockaddr)
        except OSError:
            sock.close()
            raise
        self.sock, self.buf = sock, b""

    def _close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buf = None, b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionResetError("runtime API closed the connection")
        self.buf += data

    def _readline(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read(self, n):
        # Gathers chunks and joins once: events can be megabytes.
        chunks, have = [self.buf], len(self.buf)
        while have < n:
            data = self.sock.recv(262144)
            if not data:
                raise ConnectionResetError("runtime API closed the connection")
            chunks.append(data)
            have += len(data)
        data = b"".join(chunks)
        self.buf = data[n:]
        return data[:n]

    def request(self, method, path, body=None, headers=()):
        """Returns (status, headers with lower-case names, body bytes)."""
        head = "%s %s%s HTTP/1.1\r\nHost: %s\r\n" % (method, API_PREFIX, path, self.host_header)
        if body is not None:
            head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        for name, value in headers:
            head += "%s: %s\r\n" % (name, value.replace("\r", " ").replace("\n", " "))
        data = (head + "\r\n").encode("utf-8") + (body or b"")
        # A kept-alive connection the server has since closed shows up as a
        # send error or an early EOF: reconnect and try once more.
        for attempt in (1, 2):
            try:
                if self.sock is None:
                    self._connect()
                self.sock.sendall(data)
                return self._read_response()
            except OSError:  # includes ConnectionError
                self._close()
                if attempt == 2:
                    raise

    def _read_response(self):
        status = int(self._readline().split()[1])
        headers = {}
        while True:
            line = self._readline()
            if not line:
                break
            name, _, value = line.decode("utf-8", "replace").partition(":")
            headers[name.strip().lower()] = value.strip()
        close = headers.get("connection", "").lower() == "close"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size = int(self._readline().split(b";")[0], 16)
                if size == 0:
                    while self._readline():  # trailers, up to the empty line
                        pass
                    break
                chunks.append(self._read(size))
                self._readline()
            body = b"".join(chunks)
        elif "content-length" in headers:
            body = self._read(int(headers["content-length"]))
        elif close:  # body runs to the end of the connection
            try:
                while True:
                    self._fill()
            except ConnectionResetError:
                body = self.buf
        else:
            body = b""
        if close:
            self._close()
        return status, headers, body

    def post(self, path, body, headers=()):
        # The reply needs no handling: a refusal (413 for a too-large response,
        # 400 for an invocation already over) is wisp's to report.
        self.request("POST", path, body, headers)


# ---------------------------------------------------------------- errors


class FaultException(Exception):
    """A runtime-level error with an AWS errorType such as Runtime.ImportModuleError."""

    def __init__(self, error_type, msg, trace=None):
        super().__init__(msg)
        self.error_type, self.msg, self.trace = error_type, msg, trace


def make_error(message, error_type, stack_trace, request_id=None):
    # awslambdaric's shape, requestId included.
    return {
        "errorMessage": message or "",
        "errorType": error_type or "",
        "requestId": request_id or "",
        "stackTrace": stack_trace or [],
    }


def error_from_exception(exc, request_id=None):
    if isinstance(exc, FaultException):
        return make_error(exc.msg, exc.error_type, exc.trace, request_id)
    import traceback

    # Tuples rather than FrameSummary objects so that Python 3.11+ does not add
    # "^^^^" marker lines. Leading frames of this file and of the import
    # machinery (for errors raised while importing the handler) are dropped.
    ours = (__file__, getattr(sys.modules.get("importlib"), "__file__", None))
    frames = [(f.filename, f.lineno, f.name, f.line) for f in traceback.extract_tb(exc.__traceback__)]
    while frames and (frames[0][0] in ours or frames[0][0].startswith("<frozen importlib")):
        frames.pop(0)
    return make_error(str(exc), type(exc).__name__, traceback.format_list(frames), request_id)


def log_error(error):
    # What awslambdaric prints for an unhandled error (it joins the lines with
    # "\r" for CloudWatch; wisp keeps logs as text, so "\n").
    line = "[ERROR]"
    if error["errorType"]:
        line += " " + error["errorType"] + (":" if error["errorMessage"] else "")
    if error["errorMessage"]:
        line += " " + error["errorMessage"]
    lines = [line, "Traceback (most recent call last):"]
    for element in error["stackTrace"]:
        lines.extend(element.splitlines() or [""])
    sys.stdout.write("\n".join(lines) + "\n")


def flush_output():
    # Logs of an invocation must be in the pipe before its response is posted.
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass


# ---------------------------------------------------------------- handler


def load_handler(handler):
    try:
        modname, fname = handler.rsplit(".", 1)
    except ValueError as e:
        raise FaultException("Runtime.MalformedHandlerName", "Bad handler '%s': %s" % (handler, e))
    try:
        if modname.split(".")[0] in sys.builtin_module_names:
            raise FaultException(
                "Runtime.BuiltInModuleConflict",
                "Cannot use built-in module %s as a handler module" % modname,
            )
        # "src/app" and "src.app" both mean the module src.app under the task root.
        import importlib

        module = importlib.import_module(modname.replace("/", "."))
    except ImportError as e:
        raise FaultException("Runtime.ImportModuleError", "Unable to import module '%s': %s" % (modname, e))
    except SyntaxError as e:
        trace = ['  File "%s" Line %s\n    %s' % (e.filename, e.lineno, e.text)]
        raise FaultException("Runtime.UserCodeSyntaxError", "Syntax error in module '%s': %s" % (modname, e), trace)
    try:
        return getattr(module, fname)
    except AttributeError:
        raise FaultException("Runtime.HandlerNotFound", "Handler '%s' missing on module '%s'" % (fname, modname))


class CognitoIdentity:
    __slots__ = ["cognito_identity_id", "cognito_identity_pool_id"]


class Client:
    __slots__ = ["installation_id", "app_title", "app_version_name", "app_version_code", "app_package_name"]


class ClientContext:
    __slots__ = ["custom", "env", "client"]


def _obj_from_dict(cls, d):
    if d is None:
        return None
    obj = cls()
    for field in cls.__slots__:
        setattr(obj, field, d.get(field))
    return obj


class LambdaContext:
    def __init__(self, request_id, headers):
        env = os.environ
        self.aws_request_id = request_id
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.memory_limit_in_mb = int(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or 0)
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.invoked_function_arn = headers.get("lambda-runtime-invoked-function-arn")
        client_context = headers.get("lambda-runtime-client-context")
        self.client_context = _obj_from_dict(ClientContext, json.loads(client_context) if client_context else None)
        if self.client_context is not None:
            self.client_context.client = _obj_from_dict(Client, self.client_context.client)
        self.identity = _obj_from_dict(CognitoIdentity, {})
        cognito = headers.get("lambda-runtime-cognito-identity")
        if cognito:
            cognito = json.loads(cognito)
            self.identity.cognito_identity_id = cognito.get("cognitoIdentityId")
            self.identity.cognito_identity_pool_id = cognito.get("cognitoIdentityPoolId")
        self._deadline_ms = int(headers.get("lambda-runtime-deadline-ms") or 0)

    def get_remaining_time_in_millis(self):
        return max(self._deadline_ms - int(time.time() * 1000), 0)

    def log(self, msg):
        sys.stdout.write(str(msg))


def _json_default(obj):
    # Only reached for types json does not know: DynamoDB's Decimals are numbers.
    import decimal

    if isinstance(obj, decimal.Decimal):
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    raise TypeError("Object of type %s is not JSON serializable" % type(obj).__name__)


def to_json(obj):
    return json.dumps(obj, default=_json_default, ensure_ascii=False).encode("utf-8")


def invoke(handler, request_id, headers, body):
    """Runs one invocation; returns ("response", bytes) or ("error", error dict)."""
    try:
        context = LambdaContext(request_id, headers)
        try:
            event = json.loads(body) if body.strip() else {}
        except ValueError as e:
            raise FaultException("Runtime.UnmarshalError", "Unable to unmarshal input: %s" % e)
        result = handler(event, context)
        if isinstance(result, bytes):
            return "response", result
        try:
            return "response", to_json(result)
        except (TypeError, ValueError) as e:
            raise FaultException("Runtime.MarshalError", "Unable to marshal response: %s" % e)
    except Exception as e:
        return "error", error_from_exception(e, request_id)


# ---------------------------------------------------------------- logging

# Lambda's root logger writes "[LEVEL]\t<time>\t<request id>\t<message>" to
# stdout, so `logging.getLogger().setLevel(logging.INFO)` is enough for user
# code to be heard. Importing logging up front would add ~10 ms to every cold
# start, so the handler is installed when (and if) user code imports logging.


class _LoggingHook:
    def find_spec(self, name, path=None, target=None):
        if name != "logging":
            return None
        sys.meta_path.remove(self)
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_configure(module):
            exec_module(module)
            try:
                _configure_logging(module)
            except Exception:
                pass

        spec.loader.exec_module = exec_and_configure
        return spec


def _configure_logging(logging):
    class LambdaLoggerHandler(logging.Handler):
        def emit(self, record):
            record.aws_request_id = _request_id
            sys.stdout.write(self.format(record))

    logging.Formatter.converter = time.gmtime
    handler = LambdaLoggerHandler()
    handler.setFormatter(
        logging.Formatter(
            "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s\n",
            "%Y-%m-%dT%H:%M:%S",
        )
    )
    logging.getLogger().addHandler(handler)


# ---------------------------------------------------------------- main


def main():
    global _request_id
    client = RuntimeClient(os.environ["AWS_LAMBDA_RUNTIME_API"])
    sys.path.insert(0, os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd())
    if "logging" in sys.modules:
        _configure_logging(sys.modules["logging"])
    else:
        sys.meta_path.insert(0, _LoggingHook())

    try:
        handler = load_handler(os.environ.get("_HANDLER", ""))
    except Exception as e:
        error = error_from_exception(e)
        log_error(error)
        flush_output()
        client.post("init/error", to_json(error), [("Lambda-Runtime-Function-Error-Type", error["errorType"])])
        sys.exit(1)

    while True:
        status, headers, body = client.request("GET", "invocation/next")
        if status == 410:  # wisp is stopping this instance
            sys.exit(0)
        if status != 200:
            sys.stderr.write("wisp runtime: GET next -> %d %s\n" % (status, body[:200].decode("utf-8", "replace")))
            sys.exit(1)
        request_id = headers.get("lambda-runtime-aws-request-id", "")
        _request_id = request_id
        trace_id = headers.get("lambda-runtime-trace-id")
        if trace_id:
            os.environ["_X_AMZN_TRACE_ID"] = trace_id
        else:
            os.environ.pop("_X_AMZN_TRACE_ID", None)

        kind, result = invoke(handler, request_id, headers, body)
        if kind == "error":
            log_error(result)
            flush_output()
            client.post(
                "invocation/%s/error" % request_id,
                to_json(result),
                [("Lambda-Runtime-Function-Error-Type", result["errorType"])],
            )
        else:
            flush_output()
            client.post("invocation/%s/response" % request_id, result)


if __name__ == "__main__":
    try:
        main()
    except OSError as e:
        sys.stderr.write("wisp runtime: lost the runtime API: %s\n" % e)
        sys.exit(1)
