"""The gateway's settings: read with the suite's parsers (shared.config), one line per mistake."""

from __future__ import annotations

import pytest

from gateway.options import UPSTREAMS, Options, load_options
from shared.config import ConfigError, load_settings


def test_nothing_set_is_the_defaults():
    assert load_options({}) == Options()
    assert load_options({"EMSUPPLY_RETRIES": " ", "EMSUPPLY_READ_TIMEOUT": ""}) == Options()


def test_values_are_read_as_their_types():
    options = load_options({"EMSUPPLY_CONNECT_TIMEOUT": "0.25", "EMSUPPLY_RETRIES": "0",
                            "EMSUPPLY_BREAKER_FAILURES": "12", "EMSUPPLY_TOKEN_CACHE": "0",
                            "EMSUPPLY_RATE_LIMIT": "20/second;1000/hour"})
    assert options.connect_timeout_s == 0.25
    assert options.retries == 0 and isinstance(options.retries, int)
    assert options.breaker_failures == 12 and isinstance(options.breaker_failures, int)
    assert options.token_cache_s == 0
    assert options.rate_limit == "20/second;1000/hour"


@pytest.mark.parametrize("name,value,message", [
    ("EMSUPPLY_CONNECT_TIMEOUT", "soon", "EMSUPPLY_CONNECT_TIMEOUT='soon' must be a number of "
                                         "seconds"),
    ("EMSUPPLY_READ_TIMEOUT", "301", "EMSUPPLY_READ_TIMEOUT=301.0 must be between 0.1 and 300"),
    ("EMSUPPLY_RETRIES", "two", "EMSUPPLY_RETRIES='two' must be a whole number"),
    ("EMSUPPLY_RETRIES", "2.5", "EMSUPPLY_RETRIES='2.5' must be a whole number"),
    ("EMSUPPLY_RETRIES", "6", "EMSUPPLY_RETRIES=6 must be between 0 and 5"),
    ("EMSUPPLY_BREAKER_FAILURES", "0", "EMSUPPLY_BREAKER_FAILURES=0 must be between 1 and 1000"),
    ("EMSUPPLY_WEBHOOK_MAX_BACKOFF", "-1", "EMSUPPLY_WEBHOOK_MAX_BACKOFF=-1.0 must be between "
                                           "0.01 and 3600"),
    ("EMSUPPLY_RATE_LIMIT", "lots", "EMSUPPLY_RATE_LIMIT='lots' is not a rate limit "
                                    "(e.g. '1200 per minute' or '20/second;1000/hour')"),
    ("EMSUPPLY_GATEWAY_SERVICES", "inventory,stores",
     "EMSUPPLY_GATEWAY_SERVICES names unknown services ['stores'] "
     "(known: inventory, allocation)"),
])
def test_a_bad_value_is_one_line_naming_the_variable(name, value, message):
    with pytest.raises(ConfigError) as bad:
        load_options({name: value})
    assert str(bad.value) == message


@pytest.mark.parametrize("value,services", [
    (None, UPSTREAMS), ("", ()), ("inventory", ("inventory",)),
    (" allocation , inventory ", ("allocation", "inventory"))])
def test_the_services_readyz_waits_for(value, services):
    env = {} if value is None else {"EMSUPPLY_GATEWAY_SERVICES": value}
    assert load_options(env).required_services == services


def test_the_suite_settings_use_the_same_parsers(tmp_path):
    env = {"EMSUPPLY_SECRET": "s" * 16}
    with pytest.raises(ConfigError, match=r"^EMSUPPLY_PORT='80a' must be a whole number$"):
        load_settings("gateway", {**env, "EMSUPPLY_PORT": "80a"}, data_dir=tmp_path)
    with pytest.raises(ConfigError,
                       match=r"^EMSUPPLY_SIGNATURE_MAX_AGE=4 must be between 5 and 3600$"):
        load_settings("gateway", {**env, "EMSUPPLY_SIGNATURE_MAX_AGE": "4"}, data_dir=tmp_path)
    assert load_settings("gateway", {**env, "EMSUPPLY_PORT": "9000"},
                         data_dir=tmp_path).inventory_url == "http://127.0.0.1:9001"
