"""Helpers for the gateway's tests: live servers, closed ports, options, tokens."""

from __future__ import annotations

import threading
import uuid

from ports import free_block
from werkzeug.serving import make_server

from gateway.options import Options


class Live:
    """A WSGI app on a real port (any free one unless given), in a thread."""

    def __init__(self, app, port: int = 0):
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def closed_port_url() -> str:
    """A URL where nothing listens: connections are refused at once."""
    return f"http://127.0.0.1:{free_block(1)}"


def quick_options(**changes) -> Options:
    base = dict(connect_timeout_s=0.5, read_timeout_s=5.0, retries=2, breaker_failures=50,
                breaker_reset_s=1.0, rate_limit="100000 per minute", token_cache_s=0,
                required_services=("inventory",), webhook_timeout_s=1.0,
                webhook_backoff_s=0.05, webhook_max_backoff_s=0.2,
                limiter_prefix=f"test-{uuid.uuid4().hex[:8]}",
                webhook_allow_internal=True)  # the tests' receivers are on 127.0.0.1
    return Options(**{**base, **changes})


def issue(app, role: str, *warehouses: str, name: str | None = None) -> str:
    from gateway import tokens

    with app.extensions["gateway"].db.unit_of_work() as session:
        return tokens.create(session, role, warehouses, name or f"{role}-{uuid.uuid4().hex[:6]}"
                             ).token
