"""The suite's background work: one outbox relay per service and the webhook dispatcher.

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
                 dispatch_interval_s: float = 0.5):
        from gateway.webhooks import Dispatcher

        self.options = options or load_options()
        self.stop_event = threading.Event()
        self.databases: list[Database] = []
        self.relays = []
        for name, settings in services.items():
            db = self._database(settings.database_url)
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


def main(argv: list[str] | None = None) -> int:
    from shared import logs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("var"))
    parser.add_argument("--gateway-url", default=None,
                        help="where the gateway listens (default: EMSUPPLY_PORT's)")
    parser.add_argument("--services", default="inventory,allocation")
    args = parser.parse_args(argv)
    logs.configure("worker")
    gateway = load_settings("gateway", data_dir=args.data_dir)
    services = {name: load_settings(name, data_dir=args.data_dir)
                for name in args.services.split(",") if name}
    url = args.gateway_url or f"http://127.0.0.1:{os.environ.get('EMSUPPLY_PORT', '8000')}"
    background = Background(services, gateway, url).start()
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    background.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
