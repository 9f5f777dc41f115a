"""The gateway's own settings, read from the environment with the same one-line errors as the
suite's (shared.config): timeouts, retries, the circuit breaker, rate limits, webhooks."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.config import ConfigError, flag, seconds, service_names, whole

UPSTREAMS = ("inventory", "allocation")


@dataclass(frozen=True)
class Options:
    connect_timeout_s: float = 1.0
    read_timeout_s: float = 15.0
    retries: int = 2
    breaker_failures: int = 5
    breaker_reset_s: float = 10.0
    rate_limit: str = "1200 per minute"
    # Calls with no token or a wrong one, per client address: guessing tokens is not free.
    refused_rate_limit: str = "30 per minute"
    token_cache_s: float = 5.0
    openapi_cache_s: float = 60.0
    # The services that must answer for /readyz; `emsupply up` names the ones it started.
    required_services: tuple[str, ...] = UPSTREAMS
    webhook_timeout_s: float = 5.0
    webhook_backoff_s: float = 1.0
    webhook_max_backoff_s: float = 60.0
    # Webhooks may call loopback, link-local and private addresses and the suite's own ports
    # (a receiver on this machine or network); off, they are refused.
    webhook_allow_internal: bool = False
    stream: str = "emsupply:events"
    # A request body: at most this large (413 at once from Content-Length), read within this
    # time in all (408), so that a huge or slow body never holds a thread for long.
    max_body_bytes: int = 64 * 1024 * 1024
    body_timeout_s: float = 30.0
    limiter_prefix: str = "emsupply"


def _rate_limit(env: Mapping[str, str], name: str = "EMSUPPLY_RATE_LIMIT",
                default: str = Options.rate_limit) -> str:
    from limits import parse_many

    raw = env.get(name, "").strip() or default
    try:
        parse_many(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a rate limit "
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
        refused_rate_limit=_rate_limit(env, "EMSUPPLY_REFUSED_RATE_LIMIT",
                                       Options.refused_rate_limit),
        token_cache_s=seconds(env, "EMSUPPLY_TOKEN_CACHE", 5.0, 0, 300),
        required_services=service_names(env, "EMSUPPLY_GATEWAY_SERVICES", UPSTREAMS),
        webhook_timeout_s=seconds(env, "EMSUPPLY_WEBHOOK_TIMEOUT", 5.0, 0.1, 60),
        webhook_max_backoff_s=seconds(env, "EMSUPPLY_WEBHOOK_MAX_BACKOFF", 60.0, 0.01, 3600),
        webhook_allow_internal=flag(env, "EMSUPPLY_WEBHOOK_ALLOW_INTERNAL", False),
        max_body_bytes=whole(env, "EMSUPPLY_MAX_BODY", Options.max_body_bytes, 1024, 2 ** 31),
        body_timeout_s=seconds(env, "EMSUPPLY_BODY_TIMEOUT", 30.0, 0.1, 3600),
    )
