"""Bearer tokens: the CLI, hashing, and what a token grants."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from emsupply.cli import main
from gateway import tokens
from gateway.models import Token
from shared.errors import InvalidInput, Unauthenticated
from shared.migrate import heads


def test_single_alembic_head():
    assert len(heads("gateway")) == 1


def test_token_cli_create_list_revoke(tmp_path, make_gateway, settings_for):
    runner = CliRunner()
    env = {"EMSUPPLY_SECRET": "test-secret-0123456789abcdef", "EMSUPPLY_GATEWAY_DB": ""}
    made = runner.invoke(main, ["token", "create", "--role", "keeper", "--warehouse", "KL-T01",
                                "--warehouse", "LP", "--name", "li.wei", "--data-dir",
                                str(tmp_path)], env=env)
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    assert made.stdout == token + "\n"  # one token on stdout, nothing else
    assert token.startswith("ems_") and len(token) > 40

    listed = runner.invoke(main, ["token", "list", "--json", "--data-dir", str(tmp_path)],
                           env=env)
    assert listed.exit_code == 0
    assert token not in listed.output and '"role": "keeper"' in listed.output
    assert '"warehouses": ["KL-T01", "LP"]' in listed.output

    from shared.db import Database

    db = Database(f"sqlite:///{tmp_path / 'gateway.sqlite'}")
    try:
        store = tokens.TokenStore(db, cache_s=0)
        identity, _ = store.authenticate(f"Bearer {token}")
        assert identity.actor == "li.wei" and identity.role == "keeper"
        assert identity.scope == ("KL-T01", "LP")
        with db.reading() as session:
            (row,) = session.query(Token).all()
            assert row.hash == tokens.digest(token) and token not in repr(vars(row))
        revoked = runner.invoke(main, ["token", "revoke", "li.wei", "--data-dir",
                                       str(tmp_path)], env=env)
        assert revoked.exit_code == 0, revoked.output
        with pytest.raises(Unauthenticated):
            store.authenticate(f"Bearer {token}")
    finally:
        db.dispose()

    refused = runner.invoke(main, ["token", "create", "--role", "keeper", "--data-dir",
                                   str(tmp_path)], env=env)
    assert refused.exit_code != 0 and "warehouse" in refused.output
    unknown = runner.invoke(main, ["token", "create", "--role", "service", "--data-dir",
                                   str(tmp_path)], env=env)
    assert unknown.exit_code != 0


@pytest.mark.parametrize("role,warehouses", [
    ("viewer", ("KL",)), ("keeper", ()), ("keeper", ("bad code!",)), ("root", ())])
def test_grants_that_make_no_sense_are_refused(gateway_db, role, warehouses):
    with gateway_db.unit_of_work() as session, pytest.raises(InvalidInput):
        tokens.create(session, role, warehouses)


def test_the_cache_forgets_a_revoked_token_within_its_time(gateway_db):
    store = tokens.TokenStore(gateway_db, cache_s=0.2)
    with gateway_db.unit_of_work() as session:
        issued = tokens.create(session, "viewer", name="v")
    assert store.authenticate(f"Bearer {issued.token}")[0].actor == "v"
    with gateway_db.unit_of_work() as session:
        tokens.revoke(session, str(issued.id))
    assert store.authenticate(f"Bearer {issued.token}")[0].actor == "v"  # cached
    import time

    time.sleep(0.25)
    with pytest.raises(Unauthenticated):
        store.authenticate(f"Bearer {issued.token}")
