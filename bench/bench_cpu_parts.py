"""What one call costs in CPU, in process, side by side for several checkouts (issue 12): the
parts the keepers' and the plans' profiles named, each taken alone so that a change shows
through the noise of a loaded 2-core machine.

For each checkout given (`--code DIR`, repeated; default this tree), each part in a fresh
Python process of that checkout (its code first on the path, this tree's venv), `--rounds`
times, the checkouts alternating:

- `gateway`: the gateway's app called as WSGI (no server), with a bearer token, its rate limit
  counted in Redis, passing each call on to a stub service in a process of its own that
  answers at once: CPU and wall per call, a read (GET /stock) and a movement (POST);
- `ingest`: the gateway taking in the relay's batches (80 events each) on PostgreSQL: CPU and
  wall per event;
- `hold`: the inventory's app called as WSGI, holding 62 lines (as the small plan does) and
  releasing them, on a copy of the seeded Qiandongnan inventory (bench_speed.py's template
  `emsupply_speed_seeded_*_inventory`; run that bench once first): CPU and wall per pair;
- `since`: on such a copy, the snapshot read `since` the last one after 62 balances changed
  (what every plan reads first): CPU and wall per change and read (the UPDATE is the same
  on every checkout);
- `read`: on such a copy, a keeper's look at one balance (GET /stock?warehouse=QDN&item=TENT,
  as bench_speed.py's `hop` reads it): CPU and wall per read;
- `move`: on such a copy, a keeper's movement as the gateway passes it on (signed, so keyed by
  its nonce), a receipt of one TENT at QDN then an issue of one, as bench_speed.py's `hot`
  keepers post them: CPU and wall per movement.

    .venv/bin/python bench/bench_cpu_parts.py --code /tmp/base --code . [--rounds 2]
        [--parts gateway,ingest,hold,since,read,move] [--redis redis://127.0.0.1:6379/13]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("gateway", "ingest", "hold", "since", "read", "move")
PG = "postgresql://postgres@127.0.0.1:5432"

PRELUDE = """
import json, logging, os, sys, time, uuid
from sqlalchemy import create_engine, text
ADMIN = create_engine(sys.argv[1].replace("postgresql://", "postgresql+psycopg://") + "/postgres",
                      isolation_level="AUTOCOMMIT")
def database(template=None):
    name = "emsupply_cpu_" + uuid.uuid4().hex[:8]
    with ADMIN.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template
                                                     else "")))
    return name, sys.argv[1].replace("postgresql://", "postgresql+psycopg://") + "/" + name
def drop(name):
    with ADMIN.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
def timed(call, n):
    for _ in range(min(100, n)):
        call()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        call()
    return {"wall_ms": 1000 * (time.perf_counter() - wall) / n,
            "cpu_ms": 1000 * (time.process_time() - cpu) / n}
def wsgi(app, environ):
    out = []
    body = b"".join(app.wsgi_app(environ, lambda status, headers, exc=None: out.append(status)))
    return out[0], body
"""

STUB = """
import socket, sys, threading
BODY = b'{"items":[{"warehouse":"QDN","item":"TENT","on_hand":100,"available":100}]}'
HEAD = b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n"
def serve(conn):
    buffer = b""
    while True:
        while b"\\r\\n\\r\\n" not in buffer:
            data = conn.recv(65536)
            if not data:
                return
            buffer += data
        head, _, rest = buffer.partition(b"\\r\\n\\r\\n")
        length = 0
        for line in head.split(b"\\r\\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += conn.recv(65536)
        buffer = rest[length:]
        conn.sendall(HEAD % len(BODY) + BODY)
server = socket.socket()
server.bind(("127.0.0.1", 0))
server.listen(64)
print(server.getsockname()[1], flush=True)
while True:
    conn, _ = server.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

GATEWAY = PRELUDE + """
import io, subprocess, tempfile
from werkzeug.test import EnvironBuilder
from shared.config import load_settings
from shared.db import Database
from shared.migrate import upgrade
from gateway import create_app, tokens
from gateway.options import load_options
stub = subprocess.Popen([sys.executable, "-c", sys.argv[4]], stdout=subprocess.PIPE, text=True)
port = int(stub.stdout.readline())
try:
    folder = tempfile.mkdtemp()
    url = f"sqlite:///{folder}/gateway.sqlite"
    upgrade("gateway", url)
    db = Database(url)
    upstream = f"http://127.0.0.1:{port}"
    settings = load_settings("gateway", {
        "EMSUPPLY_SECRET": "s" * 32, "EMSUPPLY_GATEWAY_DB": url, "EMSUPPLY_REDIS_URL": sys.argv[3],
        "EMSUPPLY_INVENTORY_URL": upstream, "EMSUPPLY_ALLOCATION_URL": upstream}, data_dir=folder)
    app = create_app(settings, db, load_options({"EMSUPPLY_RATE_LIMIT": "1000000 per minute"}))
    logging.disable(logging.INFO)  # the access log is a line of stderr a call, not measured
    with db.unit_of_work() as session:
        token = tokens.create(session, "keeper", ("QDN",), name="bench").token
    body = json.dumps({"warehouse": "QDN", "item": "TENT", "kind": "issue",
                       "quantity": 1}).encode()
    calls = {}
    for name, method, path, data in (("read", "GET", "/api/v1/stock?warehouse=QDN&item=TENT",
                                      b""),
                                     ("movement", "POST", "/api/v1/movements", body)):
        headers = {"Authorization": "Bearer " + token}
        if data:
            headers["Content-Type"] = "application/json"
        base = EnvironBuilder(path=path, method=method, data=data, headers=headers).get_environ()
        def call(base=base, data=data):
            environ = dict(base)
            environ["wsgi.input"] = io.BytesIO(data)
            status, _ = wsgi(app, environ)
            assert status.startswith("200"), status
        calls[name] = timed(call, int(sys.argv[2]))
    print(json.dumps(calls))
finally:
    stub.kill()
"""

INGEST = PRELUDE + """
from datetime import UTC, datetime
from shared.db import Database
from shared.migrate import upgrade
from gateway.events import ingest
name, url = database()
try:
    upgrade("gateway", url)
    db = Database(url)
    now, last = datetime.now(UTC), [0]
    def batch():
        with db.unit_of_work() as session:
            ingest(session, "inventory", [
                {"id": last[0] + i, "type": "stock.changed", "at": now,
                 "data": {"warehouse": "QDN", "item": "TENT", "actor": "k1", "on_hand": i}}
                for i in range(1, 81)])
        last[0] += 80
    found = timed(batch, max(1, int(sys.argv[2]) // 40))
    db.dispose()
    print(json.dumps({"per event": {k: v / 80 for k, v in found.items()}}))
finally:
    drop(name)
"""

INVENTORY = PRELUDE + """
import atexit
from werkzeug.test import EnvironBuilder
from shared import auth
from shared.config import load_settings
from shared.db import Database
from inventory_svc import create_app
name, url = database(sys.argv[3])  # a copy of the seeded inventory, dropped at exit
atexit.register(drop, name)
db = Database(url)
atexit.register(db.dispose)
SECRET = "s" * 32
app = create_app(load_settings("inventory", {"EMSUPPLY_SECRET": SECRET,
                                             "EMSUPPLY_INVENTORY_DB": url}, data_dir="/tmp"), db)
logging.disable(logging.INFO)
SERVICE = auth.Identity("allocation", "service")
def call(method, path, data=b"", caller=SERVICE):
    headers = auth.sign(SECRET, caller, method, path, data)
    if data:
        headers["Content-Type"] = "application/json"
    return wsgi(app, EnvironBuilder(path=path, method=method, data=data,
                                    headers=headers).get_environ())
"""

HOLD = INVENTORY + """
with db.reading() as session:
    pairs = session.execute(text(
        "SELECT w.code, i.sku FROM stock s JOIN warehouses w ON w.id = s.warehouse_id "
        "JOIN items i ON i.id = s.item_id WHERE s.on_hand - s.reserved >= 100 "
        "ORDER BY s.id LIMIT 62")).all()
body = json.dumps({"reference": "bench", "lines": [
    {"warehouse": code, "item": sku, "quantity": 1} for code, sku in pairs]}).encode()
def hold_and_release():
    status, answer = call("POST", "/api/v1/reservations", body)
    assert status.startswith("201"), answer[:300]
    hold = json.loads(answer)["id"]
    status, answer = call("POST", f"/api/v1/reservations/{hold}/release")
    assert status.startswith("200"), answer[:300]
found = timed(hold_and_release, max(1, int(sys.argv[2]) // 20))
print(json.dumps({f"hold and release of {len(pairs)} lines": found}))
"""

SINCE = INVENTORY + """
from urllib.parse import urlencode
def read(path):
    status, body = call("GET", path)
    assert status.startswith("200"), body[:300]
    return json.loads(body)
version = [read("/api/v1/stock/snapshot")["version"]]
with db.reading() as session:
    ids = list(session.scalars(text("SELECT id FROM stock ORDER BY id LIMIT 62")))
def change_then_read():
    with db.unit_of_work() as session:  # timed too: the same UPDATE on every checkout
        session.execute(text("UPDATE stock SET min = min + 1 WHERE id = ANY(:ids)"),
                        {"ids": ids})
    answer = read("/api/v1/stock/snapshot?" + urlencode({"since": version[0]}))
    assert len(answer["stock"]["on_hand"]) == len(ids), answer["full"]
    version[0] = answer["version"]
found = timed(change_then_read, max(1, int(sys.argv[2]) // 10))
print(json.dumps({"62 balances changed, then read since": found}))
"""

READ = INVENTORY + """
keeper = auth.Identity("keeper-1", "keeper", ("QDN",))
def read():
    status, body = call("GET", "/api/v1/stock?warehouse=QDN&item=TENT", caller=keeper)
    assert status.startswith("200") and json.loads(body)["items"], body[:300]
found = timed(read, int(sys.argv[2]) // 2)
print(json.dumps({"one balance read": found}))
"""

MOVE = INVENTORY + """
keeper = auth.Identity("keeper-1", "keeper", ("QDN",))
kinds = ["receipt", "issue"]
def move():
    kinds.reverse()
    body = json.dumps({"warehouse": "QDN", "item": "TENT", "kind": kinds[0], "quantity": 1,
                       "reference": "bench-cpu"}).encode()
    status, answer = call("POST", "/api/v1/movements", body, caller=keeper)
    assert status.startswith("201"), answer[:300]
found = timed(move, int(sys.argv[2]) // 3)
print(json.dumps({"one movement": found}))
"""

SCRIPTS = {"gateway": GATEWAY, "ingest": INGEST, "hold": HOLD, "since": SINCE, "read": READ,
           "move": MOVE}


def template(pg: str) -> str | None:
    """The newest seeded inventory template of bench_speed.py, if any."""
    with psycopg.connect(pg + "/postgres", autocommit=True) as conn:
        row = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE "
                           "'emsupply_speed_seeded_%_inventory' ORDER BY oid DESC").fetchone()
    return row[0] if row else None


def run(code: Path, part: str, args, seeded: str | None) -> dict:
    extra = {"gateway": [args.redis, STUB], "ingest": [],
             "hold": [seeded or ""], "since": [seeded or ""], "read": [seeded or ""],
             "move": [seeded or ""]}[part]
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPTS[part]), args.pg,
                           str(args.calls), *extra], cwd=code, capture_output=True, text=True,
                          check=False, env={**os.environ, "PYTHONPATH": str(code)})
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def commit(code: Path) -> str:
    return subprocess.run(["git", "-C", str(code), "log", "--oneline", "-1"], capture_output=True,
                          text=True, check=False).stdout.strip()[:60]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--code", action="append", type=Path,
                        help="a checkout to measure (repeat; default this tree)")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--calls", type=int, default=3000, help="gateway calls per kind; "
                        "ingest and hold take a fortieth and a twentieth of it")
    parser.add_argument("--pg", default=PG, help="a PostgreSQL server (libpq URL, no database)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args(argv)
    codes = [code.resolve() for code in (args.code or [ROOT])]
    parts = [part for part in args.parts.split(",") if part]
    seeded = template(args.pg)
    for part in ("hold", "since", "read", "move"):
        if part in parts and seeded is None:
            print(f"{part}: no seeded template; run bench/bench_speed.py once first",
                  file=sys.stderr)
            parts.remove(part)
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    for code in codes:
        print(f"code: {code} at {commit(code)}")
    for part in parts:
        for round_ in range(1, args.rounds + 1):
            for code in codes:
                found = run(code, part, args, seeded)
                shown = "; ".join(
                    f"{name}: CPU {value['cpu_ms']:.3f} ms, wall {value['wall_ms']:.3f} ms"
                    if isinstance(value, dict) else f"{name}: {value}"
                    for name, value in found.items())
                print(f"{part:8} round {round_}  {code.name:>8}  {shown}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
