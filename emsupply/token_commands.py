"""`emsupply token create|list|revoke`: bearer tokens in the gateway's database."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from shared.auth import TOKEN_ROLES
from shared.errors import EmsupplyError

data_dir_option = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                               default=Path("var"), show_default=True,
                               help="the suite's data directory (the gateway's database)")


def _database(data_dir: Path):
    from shared.config import load_settings
    from shared.db import Database
    from shared.migrate import upgrade

    settings = load_settings("gateway", data_dir=data_dir.resolve())
    upgrade("gateway", settings.database_url)
    return Database(settings.database_url)


def _fail(exc: EmsupplyError) -> None:
    raise click.ClickException(exc.detail)


@click.group()
def token() -> None:
    """Bearer tokens: create (printed once), list, revoke."""


def sign_in_link(console_url: str, token_value: str) -> str:
    """The console's one-time sign-in link: the token rides in the fragment (`/#token=...`),
    which a browser never sends to a server, so it reaches no log."""
    return f"{console_url.rstrip('/')}/#token={token_value}"


def print_qr(text: str) -> None:
    """`text` as a QR code drawn in the terminal (two rows of modules a line)."""
    import segno

    segno.make(text, error="m").terminal(out=sys.stdout, compact=True)


@token.command()
@click.option("--role", required=True,
              type=click.Choice(TOKEN_ROLES))
@click.option("--warehouse", "warehouses", multiple=True, metavar="CODE",
              help="where the token acts (that warehouse and everything below it): required "
                   "for a keeper or reporter, a county for a county commander; repeat for "
                   "several")
@click.option("--read-only", is_flag=True,
              help="an integration that may only read: the gateway refuses its writes")
@click.option("--name", help="who or what holds the token (shown as the actor in the ledger)")
@click.option("--link", is_flag=True,
              help="print the console's sign-in link (URL/#token=...) instead of the bare token")
@click.option("--qr", is_flag=True,
              help="also draw the sign-in link as a QR code in the terminal, for a phone to scan "
                   "(implies --link)")
@click.option("--url", "console_url", envvar="EMSUPPLY_CONSOLE_URL",
              default="http://127.0.0.1:8000", show_default=True,
              help="the gateway's address as the phone or browser reaches it (for --link/--qr; "
                   "a phone needs the machine's network address, not 127.0.0.1)")
@data_dir_option
def create(role: str, warehouses: tuple[str, ...], read_only: bool, name: str | None,
           link: bool, qr: bool, console_url: str, data_dir: Path) -> None:
    """Make a token and print it (only this once; the gateway keeps a hash). With --link, the
    console's sign-in link that carries it; with --qr, that link as a QR code too."""
    from gateway import tokens

    if (link or qr) and not console_url.startswith(("http://", "https://")):
        raise click.BadParameter("give the console's address as http://HOST:PORT",
                                 param_hint="--url")

    db = _database(data_dir)
    try:
        with db.unit_of_work() as session:
            issued = tokens.create(session, role, warehouses, name, read_only)
    except EmsupplyError as exc:
        _fail(exc)
    finally:
        db.dispose()
    if not (link or qr):
        click.echo(issued.token)
        return
    url = sign_in_link(console_url, issued.token)
    click.echo(url)
    if qr:
        print_qr(url)


@token.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="revoked tokens too")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@data_dir_option
def list_(include_revoked: bool, as_json: bool, data_dir: Path) -> None:
    """The tokens (never their secret): id, name, role, warehouses, read-only, created,
    revoked."""
    from gateway import tokens

    db = _database(data_dir)
    try:
        with db.reading() as session:
            rows = tokens.list_tokens(session, include_revoked)
    finally:
        db.dispose()
    for row in rows:
        entry = {"id": row.id, "name": row.name, "role": row.role, "warehouses": row.scope,
                 "read_only": row.read_only, "prefix": row.prefix,
                 "created_at": row.created_at.isoformat(),
                 "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None}
        if as_json:
            click.echo(json.dumps(entry, ensure_ascii=False))
        else:
            state = f"revoked {entry['revoked_at'][:19]}" if row.revoked_at else "live"
            role = f"{row.role} read-only" if row.read_only else row.role
            click.echo(f"{row.id:>5}  {row.prefix}…  {role:<21} "
                       f"{(row.name or '-'):<20} {','.join(row.scope) or '-':<20} "
                       f"{entry['created_at'][:19]}  {state}")


@token.command()
@click.argument("which")
@data_dir_option
def revoke(which: str, data_dir: Path) -> None:
    """Revoke the token of id WHICH, or every live token named WHICH (effective within the
    gateway's token cache time, 5 s by default)."""
    from gateway import tokens

    db = _database(data_dir)
    try:
        with db.unit_of_work() as session:
            rows = tokens.revoke(session, which)
            revoked = [row.id for row in rows]
    except EmsupplyError as exc:
        _fail(exc)
    finally:
        db.dispose()
    click.echo(f"revoked {len(revoked)} token(s): {', '.join(map(str, revoked))}", err=True)
