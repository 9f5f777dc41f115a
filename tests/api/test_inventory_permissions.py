"""The inventory's permissions table is the one the code reads: every action the code checks is
in it, every action in it is checked, and `require` allows exactly the roles it lists (a keeper
only inside its scope)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import inventory_svc
from inventory_svc.catalog import WarehouseRef
from inventory_svc.permissions import PERMISSIONS, SCOPED_ROLES, require
from shared import auth
from shared.errors import Forbidden

SOURCES = Path(inventory_svc.__file__).parent
KL_T01 = WarehouseRef(1, "KL-T01", "/QDN/KL/KL-T01/")


def test_every_role_named_is_a_role_of_the_suite():
    named = {role for roles in PERMISSIONS.values() for role in roles} | set(SCOPED_ROLES)
    assert named <= set(auth.ROLES)


def test_the_code_checks_exactly_the_actions_of_the_table():
    checked = set()
    for path in SOURCES.rglob("*.py"):
        checked |= set(re.findall(r'\brequire\(identity, "([a-z._]+)"', path.read_text()))
    assert checked == set(PERMISSIONS)
    literal_roles = re.compile(r'\.require\(|"(admin|commander|keeper|integration|viewer|'
                               r'service)"')
    for path in SOURCES.rglob("*.py"):
        if path.name != "permissions.py":
            assert not literal_roles.search(path.read_text()), path


@pytest.mark.parametrize("action", sorted(PERMISSIONS))
def test_require_allows_the_roles_listed_and_no_other(action):
    for role in auth.ROLES:
        identity = auth.Identity("someone", role, ("KL-T01",) if role in SCOPED_ROLES else ())
        if role in PERMISSIONS[action]:
            require(identity, action, KL_T01)
        else:
            with pytest.raises(Forbidden, match=action):
                require(identity, action, KL_T01)


def test_a_keeper_acts_only_inside_its_scope():
    keeper = auth.Identity("k", "keeper", ("KL-T01",))
    require(keeper, "stock.move", WarehouseRef(2, "KL-T01-V01", "/QDN/KL/KL-T01/KL-T01-V01/"))
    for outside in (WarehouseRef(3, "KL", "/QDN/KL/"),
                    WarehouseRef(4, "KL-T02", "/QDN/KL/KL-T02/"),
                    WarehouseRef(5, "KL-T011", "/QDN/KL/KL-T011/")):
        with pytest.raises(Forbidden, match="outside this keeper's scope"):
            require(keeper, "stock.move", outside)
    with pytest.raises(Forbidden, match="outside this keeper's scope"):
        require(keeper, "stock.move")  # naming no warehouse is no way round the scope
    with pytest.raises(Forbidden, match="outside this keeper's scope"):
        require(auth.Identity("k", "keeper"), "stock.move", KL_T01)  # a keeper of nothing
