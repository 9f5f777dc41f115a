"""The gateway's rate limits, counted with `limits`: shared by every worker through Redis,
counted in the process while Redis is down, each limit of a list its own count."""

from __future__ import annotations

import logging

import pytest
from gateway_helpers import closed_port_url, quick_options

from gateway import ratelimit
from gateway.ratelimit import RateLimits
from shared.errors import TooManyRequests


def refused_after(limits: RateLimits, token_id: int, calls: int) -> int:
    """How many of `calls` passed before the first refusal (all of them if none)."""
    for passed in range(calls):
        try:
            limits.count_token(token_id)
        except TooManyRequests:
            return passed
    return calls


def test_two_workers_share_one_count_in_redis(redis_url):
    options = quick_options(rate_limit="5 per minute")
    first, second = RateLimits(options, redis_url), RateLimits(options, redis_url)
    assert refused_after(first, 7, 3) == 3
    assert refused_after(second, 7, 3) == 2  # the other worker's three counted
    with pytest.raises(TooManyRequests) as refused:
        first.count_token(7)
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 61
    assert "this token's calls are limited to 5 per 1 minute" in refused.value.detail
    assert refused_after(second, 8, 5) == 5  # another token, its own count


def test_each_limit_of_a_list_counts(redis_url):
    limits = RateLimits(quick_options(rate_limit="2 per second;3 per hour"), redis_url)
    assert refused_after(limits, 1, 5) == 2
    with pytest.raises(TooManyRequests) as refused:
        limits.count_token(1)
    assert "2 per 1 second" in refused.value.detail
    assert int(refused.value.headers["Retry-After"]) <= 2


def test_redis_down_counts_in_the_process_then_redis_again(redis_url, caplog):
    limits = RateLimits(quick_options(rate_limit="3 per minute"),
                        closed_port_url().replace("http", "redis"))
    with caplog.at_level(logging.WARNING, "emsupply.gateway"):
        assert refused_after(limits, 1, 5) == 3  # still limited, in this process
    assert sum("Redis failed" in r.message for r in caplog.records) == 1  # not once a call
    assert limits._shared_down_until > ratelimit.time.monotonic()  # Redis left alone a while
    limits._shared = RateLimits(quick_options(rate_limit="3 per minute"), redis_url)._shared
    limits._shared_down_until = 0.0  # the pause is over
    assert refused_after(limits, 1, 5) == 3  # Redis counts again, from its own count


def test_calls_without_a_token_count_by_address():
    limits = RateLimits(quick_options(refused_rate_limit="2 per minute"))
    limits.count_address("10.0.0.1")
    limits.count_address("10.0.0.1")
    with pytest.raises(TooManyRequests, match="without a valid token from this address"):
        limits.count_address("10.0.0.1")
    limits.count_address("10.0.0.2")
    limits.count_address(None)
