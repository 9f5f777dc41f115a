"""The gateway's own settings, read from the environment with the same one-line errors as the
suite's (shared.config): timeouts, retries, the circuit breaker, rate limits, webhooks."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.config import ConfigError, seconds, service_names, whole

UPSTREAMS = ("inventory", "allocation")


@dataclass(frozen=True)
class Options:
    connect_timeout_s: float = 1.0
    read_timeout_s: float = 15.0
    retries: int = 2
    breaker_failures: int = 5
    breaker_reset_s: float = 10.0
    rate_limit: str = "1200 per minute"
    token_cache_s: float = 5.0
    openapi_cache_s: float = 60.0
    # The services that must answer for /readyz; `emsupply up` names the ones it started.
    required_services: tuple[str, ...] = UPSTREAMS
    webhook_timeout_s: float = 5.0
    webhook_backoff_s: float = 1.0
    webhook_max_backoff_s: float = 60.0
    stream: str = "emsupply:events"
    limiter_prefix: str = "emsupply"


def _rate_limit(env: Mapping[str, str]) -> str:
    from limits import parse_many

    raw = env.get("EMSUPPLY_RATE_LIMIT", "").strip() or Options.rate_limit
    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(f"EMSUPPLY_RATE_LIMIT={raw!r} is not a rate limit "
                          "(e.g. '1200 per minute' or '20/second;1000/hour')") from None
    return raw


def load_options(env: Mapping[str, str] | None = None) -> Options:
    """Read and check the gateway's settings; raise ConfigError on the first bad one."""
    env = os.environ if env is None else env
    return Options(
        connect_timeout_s=seconds(env, "EMSUPPLY_CONNECT_TIMEOUT", 1.0, 0.05, 30),
        read_timeout_s=seconds(env, "EMSUPPLY_READ_TIMEOUT", 15.0, 0.1, 300),
        retries=whole(env, "EMSUPPLY_RETRIES", 2, 0, 5),
        breaker_failures=whole(env, "EMSUPPLY_BREAKER_FAILURES", 5, 1, 1000),
        breaker_reset_s=seconds(env, "EMSUPPLY_BREAKER_RESET", 10.0, 0.1, 600),
        rate_limit=_rate_limit(env),
        token_cache_s=seconds(env, "EMSUPPLY_TOKEN_CACHE", 5.0, 0, 300),
        required_services=service_names(env, "EMSUPPLY_GATEWAY_SERVICES", UPSTREAMS),
        webhook_timeout_s=seconds(env, "EMSUPPLY_WEBHOOK_TIMEOUT", 5.0, 0.1, 60),
        webhook_max_backoff_s=seconds(env, "EMSUPPLY_WEBHOOK_MAX_BACKOFF", 60.0, 0.01, 3600),
    )
