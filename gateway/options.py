"""The gateway's own settings, read from the environment with the same one-line errors as the
suite's (shared.config): timeouts, retries, the circuit breaker, rate limits, webhooks."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.config import ConfigError

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


def _float(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} must be a number of seconds") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} must be between {low} and {high}")
    return value


def _rate_limit(env: Mapping[str, str]) -> str:
    from limits import parse_many

    raw = env.get("EMSUPPLY_RATE_LIMIT", "").strip() or Options.rate_limit
    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(f"EMSUPPLY_RATE_LIMIT={raw!r} is not a rate limit "
                          "(e.g. '1200 per minute' or '20/second;1000/hour')") from None
    return raw


def _services(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = env.get("EMSUPPLY_GATEWAY_SERVICES")
    if raw is None:
        return UPSTREAMS
    names = tuple(n.strip() for n in raw.split(",") if n.strip())
    unknown = [n for n in names if n not in UPSTREAMS]
    if unknown:
        raise ConfigError(f"EMSUPPLY_GATEWAY_SERVICES names unknown services {unknown} "
                          f"(known: {', '.join(UPSTREAMS)})")
    return names


def load_options(env: Mapping[str, str] | None = None) -> Options:
    env = os.environ if env is None else env
    return Options(
        connect_timeout_s=_float(env, "EMSUPPLY_CONNECT_TIMEOUT", 1.0, 0.05, 30),
        read_timeout_s=_float(env, "EMSUPPLY_READ_TIMEOUT", 15.0, 0.1, 300),
        retries=int(_float(env, "EMSUPPLY_RETRIES", 2, 0, 5)),
        breaker_failures=int(_float(env, "EMSUPPLY_BREAKER_FAILURES", 5, 1, 1000)),
        breaker_reset_s=_float(env, "EMSUPPLY_BREAKER_RESET", 10.0, 0.1, 600),
        rate_limit=_rate_limit(env),
        token_cache_s=_float(env, "EMSUPPLY_TOKEN_CACHE", 5.0, 0, 300),
        required_services=_services(env),
        webhook_timeout_s=_float(env, "EMSUPPLY_WEBHOOK_TIMEOUT", 5.0, 0.1, 60),
        webhook_max_backoff_s=_float(env, "EMSUPPLY_WEBHOOK_MAX_BACKOFF", 60.0, 0.01, 3600),
    )
