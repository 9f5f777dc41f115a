"""The reliability campaign of issue 13 (`make campaign`; not part of `make test`).

On a PostgreSQL cluster of its own (initdb and pg_ctl in a temporary directory, on a free port;
never the machine's shared PostgreSQL), it starts the suite (`emsupply up`), seeds a small
Qiandongnan, makes a token of every role and then:

1. runs schemathesis `--checks all` through the gateway with each role's token, until at least
   `--cases` test cases were generated (0 failures wanted: no 5xx, no undocumented status);
2. stops PostgreSQL for `--outage` seconds while clients keep writing keyed receipts and
   reading: no 500 wanted (503 with Retry-After while it is down), and afterwards the books are
   exact (each accepted key counted once: on hand = the sum of accepted receipts);
3. tries the attacks of the issue: a body announced huge (413 at once), a body sent slowly
   (408 within EMSUPPLY_BODY_TIMEOUT), a signed internal call replayed four times (counted
   once) and guessed tokens (429 after the refused-call limit).

The report (JSON, with every command run) goes to `--out`; the exit status is 0 only when every
check held. A trial run: `python bench/campaign.py --cases 500 --outage 20`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from ports import free_block  # noqa: E402  (the tests' ports: below the ephemeral range)

BIN = Path(sys.executable).parent
# Why 422 counts as a valid request refused by a rule, not as a rejected one: read the file.
SCHEMATHESIS_CONFIG = ROOT / "bench" / "schemathesis.toml"
ROLES = ("admin", "commander", "keeper", "reporter", "integration", "viewer")
SECRET = "campaign-secret-" + uuid.uuid4().hex


class PrivateCluster:
    """A PostgreSQL cluster of our own in `directory`, on `port`; as root, run as `postgres`."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.data = directory / "pgdata"
        self.port = free_block(1)
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *command: str) -> None:
        run = subprocess.run([*self.as_user, *command], capture_output=True, text=True,
                             timeout=120)
        if run.returncode:
            raise RuntimeError(f"{' '.join(command)}: {run.stdout}{run.stderr}")

    def init(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.as_user:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "--no-sync")
        self.start()
        for name in ("inventory", "allocation", "gateway"):
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                      name)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.directory / "pg.log"),
                  "-o", f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
                        "-c fsync=off -c max_connections=200", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"


class Suite:
    """`emsupply up` on the private cluster, and the CLI against the same settings."""

    def __init__(self, directory: Path, cluster: PrivateCluster):
        self.directory = directory
        self.port = free_block(3)
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "EMSUPPLY_SECRET": SECRET, "EMSUPPLY_DATA_DIR": str(directory),
                    "EMSUPPLY_INVENTORY_DB": cluster.url("inventory"),
                    "EMSUPPLY_ALLOCATION_DB": cluster.url("allocation"),
                    "EMSUPPLY_GATEWAY_DB": cluster.url("gateway"),
                    "EMSUPPLY_RATE_LIMIT": "1000000 per minute",
                    "EMSUPPLY_REFUSED_RATE_LIMIT": "300 per minute",
                    "EMSUPPLY_BODY_TIMEOUT": "5", "EMSUPPLY_READ_TIMEOUT": "30"}
        self.process: subprocess.Popen | None = None

    def cli(self, *args: str, timeout: float = 600, **env: str) -> str:
        run = subprocess.run([str(BIN / "emsupply"), *args], env={**self.env, **env},
                             capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        if run.returncode:
            raise RuntimeError(f"emsupply {' '.join(args)}: {run.stdout}{run.stderr}")
        return run.stdout

    def up(self) -> None:
        log = open(self.directory / "up.log", "ab")  # noqa: SIM115 (the child keeps it)
        self.process = subprocess.Popen(
            [str(BIN / "emsupply"), "up", "--data-dir", str(self.directory), "--port",
             str(self.port), "--workers", "2"], env=self.env, stdout=log,
            stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        raise RuntimeError(f"the suite did not start; see {self.directory / 'up.log'}")

    def down(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def schemathesis(suite: Suite, token: str, examples: int, seed: int, out: Path) -> dict:
    command = [str(BIN / "schemathesis"), "--config-file", str(SCHEMATHESIS_CONFIG), "run",
               f"{suite.url}/api/v1/openapi.json",
               "--url", suite.url, "-H", f"Authorization: Bearer {token}",
               "--checks", "all", "--max-examples", str(examples), "--seed", str(seed),
               "--workers", "2", "--phases", "examples,coverage,fuzzing,stateful",
               "--generation-database", "none", "--request-timeout", "30", "--no-color",
               "--suppress-health-check", "all"]
    started = time.monotonic()
    run = subprocess.run(command, capture_output=True, text=True, timeout=4 * 3600,
                         cwd=out.parent)  # its own state directory goes with the report
    output = run.stdout + run.stderr
    out.write_text(output)
    generated = sum(int(n) for n in re.findall(r"(\d+) generated", output))
    failures = {f"{code} {title}": int(count) for code, title, count
                in re.findall(r"❌ (ST\d+) ([^:\n]+): (\d+)", output)}
    return {"command": " ".join(c if "Bearer" not in c else "Authorization: Bearer <token>"
                                for c in command),
            "exit": run.returncode, "generated": generated, "failures": failures,
            "seconds": round(time.monotonic() - started, 1), "output": str(out),
            "summary": output[-1500:]}


def outage(suite: Suite, cluster: PrivateCluster, token: str, warehouse: str, item: str,
           seconds: float) -> dict:
    """Keyed receipts and reads from 8 threads; PostgreSQL stopped for `seconds` meanwhile."""
    api = f"{suite.url}/api/v1"
    headers = {"Authorization": f"Bearer {token}"}
    statuses: Counter[int] = Counter()
    missing_retry_after = Counter()
    accepted: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def before() -> int:
        rows = requests.get(f"{api}/stock", params={"warehouse": warehouse, "item": item},
                            headers=headers, timeout=30).json()["items"]
        return rows[0]["on_hand"] if rows else 0

    start_on_hand = before()

    def client(n: int) -> None:
        session = requests.Session()
        i = 0
        while not stop.is_set():
            key, i = f"campaign-{n}-{i}", i + 1
            while not stop.is_set():  # a keyed write is retried until it is answered
                try:
                    answer = session.post(f"{api}/movements", headers={
                        **headers, "Idempotency-Key": key}, json={
                        "warehouse": warehouse, "item": item, "kind": "receipt",
                        "quantity": 1}, timeout=30)
                except requests.RequestException:
                    time.sleep(0.2)
                    continue
                with lock:
                    statuses[answer.status_code] += 1
                    if answer.status_code == 503 and "Retry-After" not in answer.headers:
                        missing_retry_after[answer.status_code] += 1
                if answer.status_code == 201:
                    with lock:
                        accepted[key] = 1
                    break
                time.sleep(0.2)
            try:
                read = session.get(f"{api}/stock/summary", headers=headers, timeout=30)
                with lock:
                    statuses[read.status_code] += 1
            except requests.RequestException:
                pass

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(5)
    cluster.stop()
    stopped_at = time.monotonic()
    time.sleep(seconds)
    cluster.start()
    down_s = time.monotonic() - stopped_at
    time.sleep(15)
    stop.set()
    for thread in threads:
        thread.join(60)
    time.sleep(2)
    end_on_hand = before()
    exact = end_on_hand - start_on_hand == len(accepted)
    return {"down_s": round(down_s, 1), "statuses": dict(sorted(statuses.items())),
            "five_hundreds": statuses[500], "503_without_retry_after": sum(
                missing_retry_after.values()), "accepted_receipts": len(accepted),
            "on_hand_change": end_on_hand - start_on_hand, "books_exact": exact}


def raw(url: str, data: bytes, wait_s: float) -> tuple[bytes, float]:
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    received = b""
    with socket.create_connection((host, int(port)), timeout=wait_s) as conn:
        conn.sendall(data)
        try:
            while chunk := conn.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return received, round(time.monotonic() - started, 2)


def attacks(suite: Suite, token: str, warehouse: str, item: str) -> dict:
    from shared import auth

    head = ("POST /api/v1/movements HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: %d\r\n\r\n")
    huge, huge_s = raw(suite.url, (head % 10**10).encode(), 10)
    slow, slow_s = raw(suite.url, (head % 1000).encode() + b"{", 30)
    inventory = f"http://127.0.0.1:{suite.port + 1}"
    path = "/api/v1/movements"
    body = json.dumps({"warehouse": warehouse, "item": item, "kind": "receipt",
                       "quantity": 1}).encode()
    signed = {**auth.sign(SECRET, auth.Identity("campaign", "admin"), "POST", path, body),
              "Content-Type": "application/json"}
    replays = [requests.post(inventory + path, data=body, headers=signed, timeout=30)
               for _ in range(4)]
    ids = {r.json()["lines"][0]["id"] for r in replays if r.status_code == 201}
    guesses: Counter[int] = Counter()
    for _ in range(400):  # the refused-call limit is 300 a minute (Suite.env)
        guess = f"Bearer ems_{uuid.uuid4().hex}{uuid.uuid4().hex[:11]}"
        status = requests.get(f"{suite.url}/api/v1/stock", headers={"Authorization": guess},
                              timeout=10).status_code
        guesses[status] += 1
        if status == 429:
            break
    return {"huge_body": {"status": huge[:12].decode(errors="replace"), "seconds": huge_s},
            "slow_body": {"status": slow[:12].decode(errors="replace"), "seconds": slow_s},
            "replay": {"statuses": [r.status_code for r in replays], "ledger_lines": len(ids),
                       "replayed": [r.headers.get("Idempotent-Replayed") for r in replays]},
            "guessed_tokens": dict(guesses)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000,
                        help="schemathesis test cases to generate at least, over all roles")
    parser.add_argument("--examples", type=int, default=10,
                        help="schemathesis --max-examples of the first round")
    parser.add_argument("--outage", type=float, default=20.0, help="seconds PostgreSQL is down")
    parser.add_argument("--villages", type=int, default=40, help="of the seeded data set")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = args.out / f"campaign-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="emsupply-campaign-"))
    work.chmod(0o755)  # the cluster's user (postgres, when run as root) must reach its own
    cluster = PrivateCluster(work / "pg")
    cluster.init()  # first: the suite's ports are chosen among those still free
    suite = Suite(work / "suite", cluster)
    suite.directory.mkdir(parents=True)
    report: dict = {"started": stamp, "cases_wanted": args.cases, "outage_s": args.outage}
    try:
        report["postgresql"] = f"private cluster in {cluster.data}, port {cluster.port}"
        suite.up()
        admin = suite.cli("token", "create", "--role", "admin", "--name", "campaign").strip()
        suite.cli("seed", "qiandongnan", "--villages", str(args.villages), "--url", suite.url,
                  "--token", admin)
        head = requests.get(f"{suite.url}/api/v1/warehouses", params={"limit": 1}, timeout=30,
                            headers={"Authorization": f"Bearer {admin}"}).json()["items"][0]
        item = requests.get(f"{suite.url}/api/v1/items", params={"limit": 1}, timeout=30,
                            headers={"Authorization": f"Bearer {admin}"}).json()["items"][0]
        tokens = {"admin": admin}
        for role in ROLES[1:]:
            scope = ("--warehouse", head["code"]) if role in ("keeper", "reporter") else ()
            tokens[role] = suite.cli("token", "create", "--role", role, *scope,
                                     "--name", f"campaign-{role}").strip()
        runs, total, seed = [], 0, 1
        while total < args.cases and seed <= 20:
            for role in ROLES:
                result = schemathesis(suite, tokens[role], args.examples, seed,
                                      out / f"schemathesis-{role}-{seed}.txt")
                runs.append({"role": role, "seed": seed, **result})
                total += result["generated"]
                print(f"schemathesis {role} seed {seed}: {result['generated']} cases, "
                      f"exit {result['exit']} ({result['seconds']} s) {result['failures']}",
                      flush=True)
            seed += 1
        report["schemathesis"] = {"cases": total, "runs": runs,
                                  "failed_runs": sum(1 for r in runs if r["exit"]),
                                  "failures": dict(sum((Counter(r["failures"]) for r in runs),
                                                       Counter()))}
        report["outage"] = outage(suite, cluster, admin, head["code"], item["sku"], args.outage)
        print("outage:", json.dumps(report["outage"]), flush=True)
        report["attacks"] = attacks(suite, admin, head["code"], item["sku"])
        print("attacks:", json.dumps(report["attacks"]), flush=True)
    finally:
        suite.down()
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            cluster.stop()
        (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
        for log in [suite.directory / "up.log", *(suite.directory / "logs").glob("*.log")]:
            if log.exists():
                shutil.copy(log, out / log.name)
        shutil.rmtree(work, ignore_errors=True)
    attacks_ok = report.get("attacks", {})
    ok = (report.get("schemathesis", {}).get("failed_runs", 1) == 0
          and report["schemathesis"]["cases"] >= args.cases
          and report.get("outage", {}).get("five_hundreds", 1) == 0
          and report["outage"].get("books_exact")
          and attacks_ok.get("huge_body", {}).get("status", "").endswith("413")
          and attacks_ok.get("slow_body", {}).get("status", "").endswith("408")
          and attacks_ok.get("replay", {}).get("ledger_lines") == 1
          and 429 in attacks_ok.get("guessed_tokens", {}))
    print(f"report: {out / 'report.json'}; {'every check held' if ok else 'CHECKS FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
