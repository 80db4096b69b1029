"""The IoT pipeline example (examples/iot-pipeline): its run.py against a real mosquitto,
a real redis-server and the real wisp binary: MQTT sensor readings -> function -> Redis
stream of alerts, every expected alert present and none other."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import test_connector_mqtt as mq
import test_connector_redis as rd
from wisp_e2e import Server, cli_env, free_port, wisp_bin

ROOT = Path(__file__).resolve().parents[2]


def test_iot_pipeline_example(tmp_path):
    mosquitto = mq.mosquitto_process(tmp_path / "mosquitto", free_port())
    redis_server = rd.redis_process(tmp_path / "redis", free_port())
    server = Server(tmp_path / "wisp", name="iot")
    try:
        mosquitto.start()
        redis_server.start()
        server.start()
        env = cli_env(server, {
            "MQTT_URL": f"mqtt://127.0.0.1:{mosquitto.port}",
            "MQTT_USERNAME": mq.USER, "MQTT_PASSWORD": mq.SECRET,
            "REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
            "READINGS": "300", "WISP_CLI": wisp_bin(),
        })
        r = subprocess.run([sys.executable, str(ROOT / "examples/iot-pipeline/run.py")], env=env,
                           capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "300 readings published from 5 sensors; 80 are over 30 degrees" in r.stdout, r.stdout
        assert "80 alerts in" in r.stdout, r.stdout
        assert r.stdout.strip().endswith("iot pipeline OK"), r.stdout
        # The broker password never shows in the server's log.
        assert mq.SECRET not in server.log_text()
    finally:
        server.close()
        redis_server.stop()
        mosquitto.stop()
