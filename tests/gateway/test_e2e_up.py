"""`emsupply up` for real: gunicorn processes, the embedded Redis, the relays and the webhook
dispatcher; an event travels from a stock movement to a webhook receiver and to the Redis
stream; Ctrl-C stops everything, the embedded Redis included."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from flask import Flask, request
from gateway_helpers import Live
from ports import free_block

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def ours(data_dir: Path) -> list[int]:
    """Processes whose command line names this test's data directory or its Redis socket."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if str(data_dir) in cmdline:
                pids.append(int(entry.name))
    return pids


def test_up_relays_events_to_webhooks_and_redis_and_stops_cleanly(tmp_path):
    data_dir = tmp_path / "var"
    port = free_block()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMSUPPLY_")}
    env["EMSUPPLY_WEBHOOK_ALLOW_INTERNAL"] = "1"  # the receiver is on 127.0.0.1
    emsupply = str(Path(sys.executable).with_name("emsupply"))
    suite = subprocess.Popen([emsupply, "up", "--data-dir", str(data_dir), "--port", str(port)],
                             cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    lines: list[str] = []
    ready = threading.Event()

    def read():
        for line in suite.stdout:
            lines.append(line)
            if line.startswith("ready"):
                ready.set()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    received: list[dict] = []
    secret = "e2e-webhook-secret-0123"
    receiver_app = Flask("receiver")

    @receiver_app.post("/hook")
    def hook():
        body = request.get_data()
        good = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        assert request.headers["X-Emsupply-Signature"] == good
        received.append(json.loads(body))
        return "", 204
    receiver = Live(receiver_app)
    try:
        assert ready.wait(90), "".join(lines)
        assert any("(embedded)" in line for line in lines)
        token = subprocess.run([emsupply, "token", "create", "--role", "admin", "--data-dir",
                                str(data_dir)], cwd=ROOT, env=env, capture_output=True,
                               text=True, check=True).stdout.strip()
        api = f"http://127.0.0.1:{port}/api/v1"
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        assert session.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        made = session.post(f"{api}/webhooks", json={"url": receiver.url + "/hook",
                                                     "events": ["stock.changed"],
                                                     "secret": secret}, timeout=5)
        assert made.status_code == 201, made.text
        for path, body in (("warehouses", {"code": "QDN", "name": "Q", "level": "prefecture"}),
                           ("items", {"sku": "TENT", "name": "Tent", "unit": "piece"}),
                           ("movements", {"warehouse": "QDN", "item": "TENT",
                                          "kind": "receipt", "quantity": 7})):
            answer = session.post(f"{api}/{path}", json=body, timeout=10)
            assert answer.status_code == 201, answer.text
        deadline = time.monotonic() + 20
        while not received and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [e["data"]["on_hand"] for e in received] == [7]
        log = session.get(f"{api}/events", timeout=5).json()["items"]
        assert received[0]["id"] in [e["id"] for e in log]
        import redis

        stream = redis.Redis(unix_socket_path=str(data_dir / "redis" / "redis.sock"))
        entries = stream.xrange("emsupply:events")
        stream.close()
        assert [f[b"key"] for _, f in entries] == [received[0]["key"].encode()]
        assert ours(data_dir)  # the suite's processes, the embedded Redis among them
    finally:
        receiver.stop()
        if suite.poll() is None:
            suite.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            suite.wait(30)
        except subprocess.TimeoutExpired:
            suite.kill()
            suite.wait()
        reader.join(5)
        suite.stdout.close()
    deadline = time.monotonic() + 10
    while ours(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ours(data_dir) == [], "".join(lines)
    assert not (data_dir / "redis" / "redis.sock").exists()
