"""EMSUPPLY_INVENTORY_URL and EMSUPPLY_ALLOCATION_URL: one URL as before, or a comma-separated
list of a service's instances, every bad entry named in one line."""

from __future__ import annotations

import pytest

from shared.config import ConfigError, load_settings

SECRET = {"EMSUPPLY_SECRET": "s" * 16}


def settings(tmp_path, **env):
    return load_settings("gateway", {**SECRET, **env}, data_dir=tmp_path)


def test_one_url_is_read_as_before(tmp_path):
    one = settings(tmp_path, EMSUPPLY_INVENTORY_URL=" http://inv.local:8001/ ")
    assert one.inventory_urls == ("http://inv.local:8001",)
    assert one.inventory_url == "http://inv.local:8001"
    default = settings(tmp_path, EMSUPPLY_PORT="9000")
    assert default.inventory_urls == ("http://127.0.0.1:9001",)
    assert default.allocation_urls == ("http://127.0.0.1:9002",)
    assert default.allocation_url == "http://127.0.0.1:9002"


def test_a_list_names_each_instance_in_order(tmp_path):
    many = settings(tmp_path,
                    EMSUPPLY_INVENTORY_URL="http://inv-1:8000/, https://inv-2:8443 ,http://10.0.0.3",
                    EMSUPPLY_ALLOCATION_URL="http://alloc-1:8000,http://alloc-2:8000")
    assert many.inventory_urls == ("http://inv-1:8000", "https://inv-2:8443", "http://10.0.0.3")
    assert many.allocation_urls == ("http://alloc-1:8000", "http://alloc-2:8000")
    # the joined form, for anything that shows the setting
    assert many.inventory_url == "http://inv-1:8000,https://inv-2:8443,http://10.0.0.3"


def test_one_bad_url_keeps_its_message(tmp_path):
    with pytest.raises(ConfigError) as bad:
        settings(tmp_path, EMSUPPLY_INVENTORY_URL="inv:8001")
    assert str(bad.value) == "EMSUPPLY_INVENTORY_URL='inv:8001' must be an http:// or https:// URL"


@pytest.mark.parametrize("value,message", [
    ("http://a:1,ftp://b:2",
     "EMSUPPLY_ALLOCATION_URL='http://a:1,ftp://b:2': entry 2 'ftp://b:2' must be an http:// "
     "or https:// URL (expected http(s) URLs separated by commas)"),
    ("http://a:1,",
     "EMSUPPLY_ALLOCATION_URL='http://a:1,': entry 2 is empty (expected http(s) URLs "
     "separated by commas)"),
    ("http://a:1,,http://:5,http://a:1/,http://b:99999",
     "EMSUPPLY_ALLOCATION_URL='http://a:1,,http://:5,http://a:1/,http://b:99999': entry 2 is "
     "empty; entry 3 'http://:5' has no host; entry 4 'http://a:1/' is listed twice; entry 5 "
     "'http://b:99999' has a port that is not a number from 0 to 65535 (expected http(s) URLs "
     "separated by commas)"),
])
def test_every_bad_entry_of_a_list_is_named_in_one_line(tmp_path, value, message):
    with pytest.raises(ConfigError) as bad:
        settings(tmp_path, EMSUPPLY_ALLOCATION_URL=value)
    assert str(bad.value) == message
    assert "\n" not in str(bad.value)


def test_the_services_read_the_same_lists(tmp_path):
    env = {"EMSUPPLY_INVENTORY_URL": "http://inv-1:8000,http://inv-2:8000"}
    for service in ("inventory", "allocation", "gateway"):
        assert settings(tmp_path, **env).inventory_urls == \
            load_settings(service, {**SECRET, **env}, data_dir=tmp_path).inventory_urls
