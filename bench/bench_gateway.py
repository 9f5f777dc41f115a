"""The gateway's hop, measured: the same read and the same movement, through the gateway and
directly to the inventory service (signed as the gateway would), in one run, on the same
processes: inventory and gateway each under gunicorn (2 gthread workers, as `emsupply up` runs
them), the gateway's rate limits in the embedded Redis, SQLite databases.

For each call and each way: latency one call at a time (p50, p90, p99 over --calls calls), then
requests per second and p50 with --concurrency clients in --seconds. The clients are separate
processes on the same machine (2 cores here), so throughput figures share the CPU with them.
Aim (the gateway issue): the gateway costs under 30% of the direct latency at p50.

    .venv/bin/python bench/bench_gateway.py [--calls 1000] [--concurrency 8] [--seconds 5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emsupply import supervisor  # noqa: E402
from shared import auth  # noqa: E402
from shared.redis import EmbeddedRedis  # noqa: E402

READ = ("GET", "/api/v1/stock?warehouse=KL-T01&item=TENT", None)
ROUNDS = 10
MOVE = ("POST", "/api/v1/movements",
        json.dumps({"warehouse": "KL-T01", "item": "TENT", "kind": "receipt",
                    "quantity": 1}).encode())


def request_headers(way: str, secret: str, token: str, method: str, path: str,
                    body: bytes | None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"} if body else {}
    if way == "gateway":
        headers["Authorization"] = f"Bearer {token}"
    else:  # what the gateway would send
        headers.update(auth.sign(secret, auth.Identity("bench", "admin"), method, path,
                                 body or b""))
    return headers


def client(port: int, way: str, secret: str, token: str, call, count: int, until: float,
           out) -> None:
    """One keep-alive connection: `count` calls, or as many as fit before `until`."""
    method, path, body = call
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies, errors, signed_at, headers = [], 0, 0.0, {}
    done = 0
    while (count and done < count) or (not count and time.perf_counter() < until):
        if way == "direct" and time.monotonic() - signed_at > 20 or not headers:
            headers, signed_at = request_headers(way, secret, token, method, path,
                                                 body), time.monotonic()
        started = time.perf_counter()
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
        if response.status >= 400:
            errors += 1
        done += 1
    conn.close()
    out.put((latencies, errors))


def measure(port, way, secret, token, call, *, calls=0, concurrency=1, seconds=0.0):
    queue = multiprocessing.Queue()
    until = time.perf_counter() + seconds
    procs = [multiprocessing.Process(target=client, args=(port, way, secret, token, call,
                                                          calls, until, queue))
             for _ in range(concurrency)]
    started = time.perf_counter()
    for proc in procs:
        proc.start()
    results = [queue.get() for _ in procs]
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join()
    latencies = sorted(x for lat, _ in results for x in lat)
    errors = sum(e for _, e in results)
    if errors:
        raise SystemExit(f"{way} {call[0]} {call[1]}: {errors} calls failed")
    return latencies, len(latencies) / elapsed


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=18700)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="emsupply-bench-"))
    redis = EmbeddedRedis(data_dir / "redis").start()
    env = {**os.environ, "EMSUPPLY_PORT": str(args.port), "EMSUPPLY_REDIS_URL": redis.url,
           "EMSUPPLY_RATE_LIMIT": "100000000 per minute",
           "EMSUPPLY_GATEWAY_SERVICES": "inventory"}
    for name in ("EMSUPPLY_INVENTORY_DB", "EMSUPPLY_GATEWAY_DB"):
        env.pop(name, None)
    names = ("inventory", "gateway")
    settings = supervisor.prepare(data_dir, names, env)
    running = []
    try:
        for service in supervisor.services(args.port, names):
            supervisor.start(service, data_dir, env, workers=2)
            running.append(service)
            supervisor.wait_ready(service)
        from gateway import tokens
        from shared.db import Database

        db = Database(settings["gateway"].database_url)
        with db.unit_of_work() as session:
            token = tokens.create(session, "admin", name="bench").token
        db.dispose()
        secret = settings["inventory"].secret
        seed(args.port, token)
        ports = {"gateway": args.port, "direct": args.port + 1}
        rows = []
        for label, call in (("read (GET /stock)", READ), ("movement (POST)", MOVE)):
            one = {"direct": [], "gateway": []}
            loaded = {"direct": [], "gateway": []}
            served = {"direct": 0.0, "gateway": 0.0}
            for way in ("direct", "gateway"):
                measure(ports[way], way, secret, token, call, calls=50)  # warm up
            # Rounds alternate between the two ways, so that whatever else the machine does
            # weighs on both alike.
            for _ in range(ROUNDS):
                for way in ("direct", "gateway"):
                    lat, _ = measure(ports[way], way, secret, token, call,
                                     calls=max(1, args.calls // ROUNDS))
                    one[way] += lat
            for _ in range(2):
                for way in ("direct", "gateway"):
                    lat, rps = measure(ports[way], way, secret, token, call,
                                       concurrency=args.concurrency, seconds=args.seconds / 2)
                    loaded[way] += lat
                    served[way] += rps / 2
            rows.append((label, {way: (sorted(one[way]), sorted(loaded[way]), served[way])
                                 for way in ("direct", "gateway")}))
        report(rows, args)
        print(f"\ngateway's own work per call (in process, the service's answer canned): "
              f"{gateway_cpu(redis.url):.0f} us with rate limits in Redis, "
              f"{gateway_cpu(None):.0f} us with them in memory")
    finally:
        supervisor.stop_all(running)
        redis.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def gateway_cpu(redis_url: str | None, calls: int = 3000) -> float:
    """Microseconds of the gateway's own work per call, in this process through Flask's test
    client, with the service's answer canned: what the hop costs beyond the sockets."""
    import logging

    import urllib3

    from gateway import create_app, tokens
    from gateway.options import Options
    from shared.config import load_settings
    from shared.migrate import upgrade

    directory = tempfile.mkdtemp(prefix="emsupply-bench-cpu-")
    settings = load_settings("gateway", {"EMSUPPLY_REDIS_URL": redis_url or ""},
                             data_dir=directory)
    logging.disable(logging.WARNING)  # the migration's chatter
    upgrade("gateway", settings.database_url)
    logging.disable(logging.NOTSET)
    app = create_app(settings, options=Options(rate_limit="100000000 per minute",
                                               limiter_prefix=f"bench-{time.time()}"))
    state = app.extensions["gateway"]

    def canned(*_, **__):
        return urllib3.HTTPResponse(body=b'{"items":[]}', status=200, preload_content=True,
                                    headers={"Content-Type": "application/json"})
    for upstream in state.upstreams.values():
        upstream.client.forward = canned
    with state.db.unit_of_work() as session:
        headers = {"Authorization": f"Bearer {tokens.create(session, 'admin').token}"}
    client = app.test_client()
    handlers, logging.getLogger().handlers = logging.getLogger().handlers, [
        logging.StreamHandler(open(os.devnull, "w"))]  # noqa: SIM115
    try:
        for _ in range(300):
            client.get("/api/v1/items", headers=headers)
        started = time.perf_counter()
        for _ in range(calls):
            client.get("/api/v1/items", headers=headers)
        return (time.perf_counter() - started) / calls * 1e6
    finally:
        logging.getLogger().handlers = handlers
        state.close()
        state.db.dispose()
        shutil.rmtree(directory, ignore_errors=True)


def seed(port: int, token: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for path, body in (
            ("/api/v1/warehouses", {"code": "QDN", "name": "Prefecture", "level": "prefecture"}),
            ("/api/v1/warehouses", {"code": "KL", "name": "Kaili", "level": "county",
                                    "parent": "QDN"}),
            ("/api/v1/warehouses", {"code": "KL-T01", "name": "Dafeng", "level": "township",
                                    "parent": "KL"}),
            ("/api/v1/items", {"sku": "TENT", "name": "Tent", "unit": "piece"}),
            ("/api/v1/movements", {"warehouse": "KL-T01", "item": "TENT", "kind": "receipt",
                                   "quantity": 100})):
        conn.request("POST", path, body=json.dumps(body), headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 201:
            raise SystemExit(f"seeding {path}: {response.status}")
    conn.close()


def report(rows, args) -> None:
    print(f"\nOne call at a time ({args.calls} calls in {ROUNDS} rounds alternating the two "
          f"ways), then {args.concurrency} clients for {args.seconds:.0f} s; milliseconds")
    print(f"{'call':<20} {'way':<8} {'p50':>7} {'p90':>7} {'p99':>7} | {'req/s':>7} "
          f"{'p50 loaded':>10}")
    for label, figures in rows:
        for way in ("direct", "gateway"):
            one, loaded, rps = figures[way]
            print(f"{label:<20} {way:<8} {pct(one, 50):7.2f} {pct(one, 90):7.2f} "
                  f"{pct(one, 99):7.2f} | {rps:7.0f} {pct(loaded, 50):10.2f}")
        direct, gateway = figures["direct"][0], figures["gateway"][0]
        cost = pct(gateway, 50) - pct(direct, 50)
        print(f"{'':<20} gateway costs {cost:.2f} ms at p50 = "
              f"{cost / pct(direct, 50) * 100:.0f}% of the direct latency (aim < 30%); "
              f"throughput ratio {figures['gateway'][2] / figures['direct'][2]:.2f}")


if __name__ == "__main__":
    main()
