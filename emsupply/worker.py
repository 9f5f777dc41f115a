"""The suite's background work: one outbox relay per service, the webhook dispatcher, and the
services' housekeeping (holds past their time freed, plans stuck `reserving` settled), so that
no read has to write and no plan waits on another's leftovers.

`emsupply up` runs it as threads of the supervisor (one of each, so no two relays race in
practice, though they may: see shared.relay); `python -m emsupply.worker --data-dir DIR` runs it
as a process of its own, configured by the same environment as the services.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

from gateway.options import Options, load_options
from shared.config import Settings, load_settings
from shared.db import Database
from shared.redis import connect
from shared.relay import Relay

log = logging.getLogger("emsupply.worker")


class Background:
    def __init__(self, services: dict[str, Settings], gateway: Settings, gateway_url: str,
                 options: Options | None = None, relay_interval_s: float = 0.25,
                 dispatch_interval_s: float = 0.5, housekeeping_interval_s: float = 5.0):
        from gateway.webhooks import Dispatcher

        self.options = options or load_options()
        self.stop_event = threading.Event()
        self.databases: list[Database] = []
        self.relays = []
        own: dict[str, Database] = {}
        for name, settings in services.items():
            db = own[name] = self._database(settings.database_url)
            redis = connect(settings.redis_url) if settings.redis_url else None
            self.relays.append(Relay(name, db, secret=settings.secret, gateway_url=gateway_url,
                                     redis=redis, stream=self.options.stream))
        self.dispatcher = Dispatcher(self._database(gateway.database_url), self.options)
        self.threads = [threading.Thread(target=relay.run, args=(self.stop_event,
                                                                 relay_interval_s),
                                         name=f"relay-{relay.service}", daemon=True)
                        for relay in self.relays]
        self.threads.append(threading.Thread(target=self.dispatcher.run,
                                             args=(self.stop_event, dispatch_interval_s),
                                             name="webhooks", daemon=True))
        self.housekeeping = Housekeeping(_chores(services, own))
        self.threads.append(threading.Thread(target=self.housekeeping.run,
                                             args=(self.stop_event, housekeeping_interval_s),
                                             name="housekeeping", daemon=True))

    def _database(self, url: str) -> Database:
        db = Database(url, **({} if url.startswith("sqlite") else {"pool_size": 2}))
        self.databases.append(db)
        return db

    def start(self) -> Background:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self.stop_event.set()
        for thread in self.threads:
            if thread.is_alive():
                thread.join(timeout_s)
        for relay in self.relays:
            relay.close()
        self.dispatcher.close()
        for db in self.databases:
            db.dispose()


Chore = Callable[[], int]  # one pass of a housekeeping task; answers how much it did


class Housekeeping:
    """Chores run one after another every interval; one that fails is logged and tried again
    next time, never taking the others (or the thread) down with it."""

    def __init__(self, chores: dict[str, Chore]):
        self.chores = chores
        self.done: dict[str, int] = dict.fromkeys(chores, 0)

    def run_once(self) -> dict[str, int]:
        counts = {}
        for name, chore in self.chores.items():
            try:
                counts[name] = chore()
            except Exception as exc:  # a database or service away for a while: next time
                log.warning("housekeeping %s failed: %s", name, exc.__class__.__name__)
                continue
            self.done[name] += counts[name]
            if counts[name]:
                log.info("housekeeping %s: %d", name, counts[name])
        return counts

    def run(self, stop: threading.Event, interval_s: float) -> None:
        while not stop.is_set():
            self.run_once()
            stop.wait(interval_s)


def _chores(services: dict[str, Settings], dbs: dict[str, Database]) -> dict[str, Chore]:
    from shared.web import forget_old_answers

    chores: dict[str, Chore] = {}
    if "inventory" in dbs:
        from inventory_svc.expiry import expire_holds
        from inventory_svc.models import idempotency

        chores["expire-holds"] = partial(expire_holds, dbs["inventory"])
        chores["forget-inventory-answers"] = partial(forget_old_answers, dbs["inventory"],
                                                     idempotency)
    if "allocation" in dbs:
        from allocation_svc import inventory_service
        from allocation_svc.inventory import HttpInventory
        from allocation_svc.models import idempotency as allocation_idempotency
        from allocation_svc.plans import lapse_due, reconcile

        settings = services["allocation"]
        inventory = HttpInventory(inventory_service(settings))
        chores["reconcile-plans"] = partial(reconcile, dbs["allocation"], inventory,
                                            settings.reservation_ttl_s)
        chores["forget-allocation-answers"] = partial(forget_old_answers, dbs["allocation"],
                                                      allocation_idempotency)
        chores["lapse-plans"] = partial(lapse_due, dbs["allocation"])
    return chores


def main(argv: list[str] | None = None) -> int:
    from shared import logs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("var"))
    parser.add_argument("--gateway-url", default=None,
                        help="where the gateway listens (default: EMSUPPLY_PORT's)")
    parser.add_argument("--services", default="inventory,allocation")
    args = parser.parse_args(argv)
    stopped = threading.Event()  # first: a stop asked while starting still ends cleanly
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    logs.configure("worker")
    gateway = load_settings("gateway", data_dir=args.data_dir)
    services = {name: load_settings(name, data_dir=args.data_dir)
                for name in args.services.split(",") if name}
    url = args.gateway_url or f"http://127.0.0.1:{os.environ.get('EMSUPPLY_PORT', '8000')}"
    background = Background(services, gateway, url).start()
    log.info("worker running: relays of %s, webhooks, housekeeping", ", ".join(services))
    stopped.wait()
    background.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
