"""Rate limits: per token, and per client address for calls without a valid token (no free
brute force). Counted in Redis when it is configured, so that every worker shares one count; in
the process otherwise, and while Redis cannot be reached: a call is never refused because Redis
is down.

The counting is the `limits` package's, the one flask-limiter counts with. flask-limiter's own
per-request machinery around it (resolving, filtering and evaluating limits through Flask's
context on every call) cost 0.33 ms of the gateway's 0.82 ms of CPU a call, for two fixed
limits (docs/benchmarks.md, "The gateway's own work").
"""

from __future__ import annotations

import logging
import time

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from redis.exceptions import RedisError

from gateway import metrics
from gateway.options import Options
from shared.errors import TooManyRequests
from shared.redis import limiter_uri

log = logging.getLogger("emsupply.gateway")
# After Redis failed, calls are counted in the process for this long before it is tried again,
# so that an outage costs one connect timeout every few seconds, not one a call.
RETRY_REDIS_S = 5.0


class RateLimits:
    def __init__(self, options: Options, redis_url: str | None = None):
        self.per_token = parse_many(options.rate_limit)
        self.per_address = parse_many(options.refused_rate_limit)
        self.prefix = options.limiter_prefix
        self._local = FixedWindowRateLimiter(MemoryStorage())
        self._shared = FixedWindowRateLimiter(storage_from_string(
            limiter_uri(redis_url), socket_connect_timeout=0.5, socket_timeout=0.5)
        ) if redis_url else None
        self._shared_down_until = 0.0

    def count_token(self, token_id: int) -> None:
        """Count a call of a valid token; TooManyRequests (with Retry-After) over its limit."""
        self._count(self.per_token, "token", str(token_id), "this token's calls")

    def count_address(self, address: str | None) -> None:
        """Count a call without a valid token from `address`."""
        self._count(self.per_address, "address", address or "-",
                    "calls without a valid token from this address")

    def _count(self, items: list[RateLimitItem], scope: str, key: str, who: str) -> None:
        for item in items:
            counter = self._counter()
            try:
                allowed = counter.hit(item, self.prefix, scope, key)
            except (RedisError, OSError) as exc:
                log.warning("rate limits counted in this process for %.0f s: Redis failed (%s)",
                            RETRY_REDIS_S, exc)
                self._shared_down_until = time.monotonic() + RETRY_REDIS_S
                counter = self._local
                allowed = counter.hit(item, self.prefix, scope, key)
            if not allowed:
                metrics.RATE_LIMITED.inc()
                wait = self._wait(counter, item, scope, key)
                raise TooManyRequests(f"{who} are limited to {item}; try again in {wait} s",
                                      headers={"Retry-After": str(wait)})

    def _counter(self) -> FixedWindowRateLimiter:
        if self._shared is not None and time.monotonic() >= self._shared_down_until:
            return self._shared
        return self._local

    def _wait(self, counter: FixedWindowRateLimiter, item: RateLimitItem, scope: str,
              key: str) -> int:
        """Whole seconds until the window that refused the call ends (at least 1)."""
        try:
            reset = counter.get_window_stats(item, self.prefix, scope, key).reset_time
        except (RedisError, OSError):
            return item.get_expiry()
        return max(1, int(reset - time.time()) + 1)
