#!/usr/bin/env python3
"""The IoT pipeline end to end: MQTT sensor readings -> wisp function -> Redis stream.

1. deploys this folder with the wisp CLI (`wisp deploy`: the iot_alerts function and its
   mqtt trigger, see wisp.toml) against the server the CLI finds (WISP_ENDPOINT and keys,
   as `wisp` does), with the alert stream on $REDIS_URL;
2. waits for the trigger to be connected (subscribed with its persistent session);
3. publishes $READINGS temperature readings (default 300) from $SENSORS sensors (default
   5) to sensors/<sensor>/temperature at QoS 1, each confirmed by the broker;
4. waits until every reading over the threshold is an alert in the Redis stream, checks
   that no reading under it is, and prints the alerts per sensor.

    MQTT_URL=mqtt://127.0.0.1:1883 REDIS_URL=redis://127.0.0.1:6379/0 \\
        python examples/iot-pipeline/run.py

MQTT_USERNAME/MQTT_PASSWORD are the broker credentials, if it wants them. The `wisp` binary
is $WISP_CLI, else `wisp` on PATH. Needs Python with paho-mqtt and redis
(`pip install paho-mqtt redis`).
"""
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
import redis

HERE = Path(__file__).resolve().parent
THRESHOLD = 30.0


def temperature(i: int) -> float:
    """Reading i's temperature: 20-34 degrees, deterministic, so the alerts are known."""
    return 20.0 + (i * 7 % 15)


def render(tmp: Path, redis_url: str, stream: str, with_credentials: bool) -> Path:
    """A copy of this folder whose wisp.toml points the function at the alert stream."""
    shutil.copytree(HERE / "function", tmp / "function")
    text = (HERE / "wisp.toml").read_text()
    text = text.replace('ALERT_REDIS_URL = "redis://127.0.0.1:6379/0"', f'ALERT_REDIS_URL = "{redis_url}"')
    text = text.replace('ALERT_STREAM = "alerts"', f'ALERT_STREAM = "{stream}"')
    if not with_credentials:
        text = text.replace(' Username = "${MQTT_USERNAME}", Password = "${MQTT_PASSWORD}",', "")
    (tmp / "wisp.toml").write_text(text)
    return tmp / "wisp.toml"


def wait_connected(wisp: str, env: dict) -> None:
    deadline = time.time() + 60
    out = ""
    while time.time() < deadline:
        r = subprocess.run([wisp, "triggers", "ls", "iot_alerts"], env=env, capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
        out = r.stdout
        if any(" mqtt " in line and "Connected" in line for line in out.splitlines()):
            return
        time.sleep(0.3)
    sys.exit(f"the mqtt trigger did not connect:\n{out}")


def publish(url: str, user: "str | None", password: "str | None", count: int, sensors: int) -> None:
    u = urlparse(url)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"iot-sensors-{os.getpid()}", protocol=mqtt.MQTTv5)
    if user:
        c.username_pw_set(user, password)
    c.max_inflight_messages_set(100)
    c.connect(u.hostname, u.port or 1883)
    c.loop_start()
    try:
        infos = []
        for i in range(count):
            sensor = f"sensor-{i % sensors}"
            reading = {"reading_id": i, "temperature": temperature(i), "ts": int(time.time() * 1000)}
            infos.append(c.publish(f"sensors/{sensor}/temperature", json.dumps(reading), qos=1))
        for info in infos:
            info.wait_for_publish(timeout=60)
            if not info.is_published():
                sys.exit("the broker did not acknowledge a reading")
    finally:
        c.loop_stop()
        c.disconnect()


def main() -> None:
    mqtt_url = os.environ.get("MQTT_URL") or sys.exit("set MQTT_URL=mqtt://host:port")
    redis_url = os.environ.get("REDIS_URL") or sys.exit("set REDIS_URL=redis://host:port/db")
    user, password = os.environ.get("MQTT_USERNAME"), os.environ.get("MQTT_PASSWORD")
    count = int(os.environ.get("READINGS", "300"))
    sensors = int(os.environ.get("SENSORS", "5"))
    stream = os.environ.get("ALERT_STREAM") or f"alerts-{int(time.time() * 1000)}"
    wisp = os.environ.get("WISP_CLI") or shutil.which("wisp") or sys.exit("set WISP_CLI to the wisp binary")

    with tempfile.TemporaryDirectory() as tmp:
        manifest = render(Path(tmp), redis_url, stream, bool(user))
        env = {**os.environ, "MQTT_URL": mqtt_url}
        r = subprocess.run([wisp, "deploy", "--manifest", str(manifest)], env=env, capture_output=True, text=True,
                           timeout=120, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            sys.exit(f"wisp deploy failed:\n{r.stdout}{r.stderr}")
    print(f"deployed iot_alerts with its mqtt trigger; alerts go to the Redis stream {stream}")
    wait_connected(wisp, env)

    publish(mqtt_url, user, password, count, sensors)
    expected = {i for i in range(count) if temperature(i) > THRESHOLD}
    print(f"{count} readings published from {sensors} sensors; {len(expected)} are over {THRESHOLD:.0f} degrees")

    r = redis.Redis.from_url(redis_url)
    deadline = time.time() + 120
    alerts: "list[dict]" = []
    while time.time() < deadline:
        alerts = [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in r.xrange(stream)]
        if expected <= {int(a["reading_id"]) for a in alerts}:
            break
        time.sleep(0.5)
    else:
        got = {int(a["reading_id"]) for a in alerts}
        sys.exit(f"only {len(expected & got)} of {len(expected)} alerts arrived")

    ids = [int(a["reading_id"]) for a in alerts]
    wrong = set(ids) - expected
    if wrong:
        sys.exit(f"alerts for readings under the threshold: {sorted(wrong)[:10]}")
    dups = len(ids) - len(set(ids))
    per_sensor = collections.Counter(a["sensor"] for a in alerts if a)
    print(f"{len(set(ids))} alerts in {stream} ({dups} duplicate deliveries), per sensor:")
    for sensor, n in sorted(per_sensor.items()):
        print(f"  {sensor:<10} {n:>4} alerts")
    print("iot pipeline OK")


if __name__ == "__main__":
    main()
