"""The seed article's deployment code (section 5.2: boto3 `create_function` for the
order-processing function) runs against wisp with only the endpoint_url, the
credentials and the Python runtime version changed.

Each test gets its own server: the seed's function name, process_order, is fixed."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from wisp_e2e import ACCESS_KEY, REGION, SECRET_KEY, invoke, lambda_client

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "order-processing"

# Section 5.2 of the seed article, verbatim.
SEED_SNIPPET = """\
import boto3

lambda_client = boto3.client('lambda')

response = lambda_client.create_function(
    FunctionName='process_order',
    Runtime='python3.8',
    Role='arn:aws:iam::123456789012:role/service-role/ProcessOrderRole',
    Handler='process_order.process_order',
    Code={
        'ZipFile': b'fileb://process_order.zip'
    },
    Description='Process order',
    Timeout=15,
    MemorySize=512,
    Publish=True
)

print(response)
"""


def adapted(endpoint: str, zip_from_file: bool) -> str:
    """The seed snippet with only endpoint_url, credentials and runtime changed (and,
    with zip_from_file, the bytes of process_order.zip as Code.ZipFile)."""
    src = SEED_SNIPPET
    client = "boto3.client('lambda')"
    assert src.count(client) == 1 and src.count("'python3.8'") == 1
    src = src.replace(
        client,
        f"boto3.client('lambda', endpoint_url={endpoint!r}, region_name={REGION!r}, "
        f"aws_access_key_id={ACCESS_KEY!r}, aws_secret_access_key={SECRET_KEY!r})",
    )
    src = src.replace("'python3.8'", "'python3.11'")
    if zip_from_file:
        # The seed writes the AWS CLI's `fileb://` syntax inside a Python bytes literal;
        # to boto3 that is 25 bytes, not the file. Read the file instead.
        src = src.replace("b'fileb://process_order.zip'", "open('process_order.zip', 'rb').read()")
    return src


def clean_env() -> "dict[str, str]":
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WISP_"))}
    env.update({"AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"})
    return env


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    script = cwd / "seed_deploy.py"
    script.write_text(code)
    return subprocess.run([sys.executable, str(script)], cwd=cwd, env=clean_env(), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


def process_order_zip() -> bytes:
    """process_order.zip: the example's handler.py as process_order.py (the seed's Handler
    is process_order.process_order)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("process_order.py", (EXAMPLE / "handler.py").read_bytes())
    return buf.getvalue()


def check_deployed(lam) -> None:
    conf = lam.get_function_configuration(FunctionName="process_order", Qualifier="1")
    assert conf["Runtime"] == "python3.11"
    assert conf["Handler"] == "process_order.process_order"
    assert conf["Role"] == "arn:aws:iam::123456789012:role/service-role/ProcessOrderRole"
    assert (conf["Timeout"], conf["MemorySize"], conf["Description"]) == (15, 512, "Process order")
    r = invoke(lam, "process_order", {"order_id": "123", "order_amount": 100})
    assert r.function_error is None, r.payload
    assert r.payload == {"order_id": "123", "order_handled": True}
    r = invoke(lam, "process_order", {"order_id": "7", "order_amount": 5}, qualifier="1")
    assert r.payload == {"order_id": "7", "order_handled": True} and r.executed_version == "1"


def test_seed_snippet_verbatim_is_refused_cleanly(make_server, tmp_path):
    """Verbatim (but for endpoint, credentials, runtime), the seed uploads the 25 bytes
    b'fileb://process_order.zip' as the zip: refused as AWS refuses it
    (InvalidParameterValueException), with nothing created."""
    s = make_server("--url-listen", "127.0.0.1:0", name="seed-verbatim")
    proc = run_python(adapted(s.endpoint, zip_from_file=False), tmp_path)
    assert proc.returncode != 0
    assert "InvalidParameterValueException" in proc.stderr, proc.stderr
    assert lambda_client(s.endpoint).list_functions()["Functions"] == []


def test_seed_snippet_deploys(make_server, tmp_path):
    s = make_server("--url-listen", "127.0.0.1:0", name="seed-snippet")
    (tmp_path / "process_order.zip").write_bytes(process_order_zip())
    proc = run_python(adapted(s.endpoint, zip_from_file=True), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "'FunctionName': 'process_order'" in proc.stdout
    assert "'Version': '1'" in proc.stdout  # Publish=True
    assert "'Runtime': 'python3.11'" in proc.stdout
    check_deployed(lambda_client(s.endpoint))


def test_example_deploy_script(make_server, tmp_path):
    """examples/order-processing/deploy_boto3.py, as its README runs it."""
    s = make_server("--url-listen", "127.0.0.1:0", name="seed-example")
    env = clean_env()
    env.update({"WISP_ENDPOINT": s.endpoint, "WISP_ROOT_ACCESS_KEY_ID": ACCESS_KEY, "WISP_ROOT_SECRET_ACCESS_KEY": SECRET_KEY})
    proc = subprocess.run([sys.executable, str(EXAMPLE / "deploy_boto3.py")], cwd=tmp_path, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '{"order_id": "123", "order_handled": true}' in proc.stdout.splitlines()
    assert "without order_id: Unhandled: InvalidOrder: order_id is required" in proc.stderr
    check_deployed(lambda_client(s.endpoint))
