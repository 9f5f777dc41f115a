"""The `emsupply` command.

Commands that read or write the suite's data (seed, import, export) go through its API: in this
process through the services' own apps on the data directory (the default: no server needed,
and the fastest on SQLite), or over HTTP through a running gateway with `--url` and `--token`.
`scenario` always goes through the gateway of a running suite, as a commander would.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import click

from emsupply.token_commands import token
from shared.auth import PLACED_ROLES, TOKEN_ROLES
from shared.config import ConfigError

DEMO_KEEPER_SCOPE = ("KL",)  # the demo keeper keeps the depots of Kaili City
TOKENS_FILE = "tokens.json"


class Command(click.Group):
    """Configuration mistakes end in one clear line and a non-zero exit, never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            click.echo(f"emsupply: configuration error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=Command)
def main() -> None:
    """emsupply: emergency-supply inventory and allocation."""


data_dir_option = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
                               default=Path("var"), show_default=True,
                               envvar="EMSUPPLY_DATA_DIR",
                               help="where the embedded default keeps its databases and logs "
                                    "(or EMSUPPLY_DATA_DIR)")
port_option = click.option("--port", type=click.IntRange(1, 65533), default=8000,
                           show_default=True,
                           help="the gateway's; the services take the ports after it")
url_option = click.option("--url", help="the gateway of a running suite (default: this process, "
                                        "on the data directory)")
token_option = click.option("--token", envvar="EMSUPPLY_TOKEN",
                            help="a bearer token for --url (or EMSUPPLY_TOKEN)")


def _err(message: str) -> None:
    click.echo(message, err=True)


# --- running the suite -----------------------------------------------------------------------

@main.command()
@data_dir_option
@port_option
@click.option("--workers", type=click.IntRange(1, 16), default=2, show_default=True,
              help="gunicorn workers per service")
@click.option("--instances", type=click.IntRange(1, 8), default=1, show_default=True,
              help="processes of the inventory and of the allocation service, on the ports "
                   "after the gateway's, balanced by the gateway (more than one needs their "
                   "databases on PostgreSQL)")
def up(data_dir: Path, port: int, workers: int, instances: int) -> None:
    """Run the suite: each service under gunicorn with its own database."""
    from emsupply import supervisor

    sys.exit(supervisor.run(data_dir.resolve(), port, available_services(), workers,
                            click.echo, _err, instances=instances))


villages_option = click.option(
    "--villages", type=click.IntRange(0, 100_000), default=None,
    help="fewer (or more) villages than the data set's 2,435, for a quick trial")


@main.command()
@data_dir_option
@port_option
@click.option("--workers", type=click.IntRange(1, 16), default=2, show_default=True)
@villages_option
@click.pass_context
def demo(ctx: click.Context, data_dir: Path, port: int, workers: int,
         villages: int | None) -> None:
    """What `make demo` runs: seed the Qiandongnan data set when the data directory holds no
    warehouses yet, make a demo token for each role (printed once, kept in DIR/tokens.json),
    then `up`."""
    from emsupply import supervisor

    data_dir = data_dir.resolve()
    names = available_services()
    env = dict(os.environ)
    if supervisor.running_suite(data_dir):
        raise ConfigError(f"a suite is already running on {data_dir}")
    supervisor.check_settings(data_dir, names, env)
    supervisor.check_ports(port, names)
    supervisor.prepare(data_dir, names, env)
    client = _local_suite(data_dir)
    try:
        if not client.call("GET", "/api/v1/warehouses?limit=1")["items"]:
            click.echo(f"{data_dir} holds no warehouses yet: seeding the Qiandongnan data set")
            _seed(client, "qiandongnan", 2023, villages)
    finally:
        client.close()
    _demo_tokens(data_dir, port)
    ctx.invoke(up, data_dir=data_dir, port=port, workers=workers)


def _demo_tokens(data_dir: Path, port: int) -> dict[str, str]:
    """One token per role, made once: printed the first time, then only where they are."""
    path = data_dir / TOKENS_FILE
    if path.exists():
        click.echo(f"demo tokens: {path} (one per role)")
        return json.loads(path.read_text())
    made = {role: _issue_token(data_dir, role, f"demo-{role}",
                               DEMO_KEEPER_SCOPE if role in PLACED_ROLES else ())
            for role in TOKEN_ROLES}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(made, fh, indent=2)
        fh.write("\n")
    click.echo(f"demo tokens, one per role (shown this once; kept in {path}, mode 0600):")
    for role, value in made.items():
        scope = f"   (warehouses {', '.join(DEMO_KEEPER_SCOPE)} and below)" \
            if role == "keeper" else ""
        click.echo(f"  {role:<12} {value}{scope}")
    click.echo(f"try: curl -H 'Authorization: Bearer {made['viewer']}' "
               f"http://127.0.0.1:{port}/api/v1/stock/summary")
    return made


def _issue_token(data_dir: Path, role: str, name: str, warehouses: tuple[str, ...] = ()) -> str:
    """A token made straight in the gateway's database, as `emsupply token create` does."""
    from gateway import tokens
    from shared.config import load_settings
    from shared.db import Database
    from shared.migrate import upgrade

    settings = load_settings("gateway", data_dir=data_dir)
    upgrade("gateway", settings.database_url)
    db = Database(settings.database_url)
    try:
        with db.unit_of_work() as session:
            return tokens.create(session, role, warehouses, name).token
    finally:
        db.dispose()


@main.command()
@data_dir_option
@click.option("--service", "names", multiple=True,
              type=click.Choice(["inventory", "allocation", "gateway"]),
              help="only these (default: every service built)")
def migrate(data_dir: Path, names: tuple[str, ...]) -> None:
    """Upgrade each service's database to the newest schema."""
    from emsupply import supervisor

    supervisor.prepare(data_dir.resolve(), names or available_services(), dict(os.environ))
    click.echo("databases at the newest schema")


@main.command()
@data_dir_option
@click.option("--gateway-url", envvar="EMSUPPLY_GATEWAY_URL",
              help="where the gateway listens (or EMSUPPLY_GATEWAY_URL; default "
                   "http://127.0.0.1:EMSUPPLY_PORT)")
def relay(data_dir: Path, gateway_url: str | None) -> None:
    """Run the outbox relays of the services and the webhook dispatcher in the foreground
    (what `up` runs in its own process; a process of its own in a container)."""
    from emsupply import worker

    args = ["--data-dir", str(data_dir.resolve())]
    if gateway_url:
        args += ["--gateway-url", gateway_url]
    sys.exit(worker.main(args))


# --- data in and out -------------------------------------------------------------------------

def _local_suite(data_dir: Path):
    from emsupply import supervisor
    from emsupply.suite import LocalSuite

    supervisor.prepare(data_dir, ("inventory", "allocation"), dict(os.environ))
    return LocalSuite(data_dir)


def _suite(data_dir: Path, url: str | None, token: str | None, parallel: int = 4):
    from emsupply.suite import HttpSuite

    if url:
        if not token:
            raise click.UsageError("--url needs --token (or EMSUPPLY_TOKEN)")
        return HttpSuite(url, token, parallel=parallel)
    return _local_suite(data_dir.resolve())


def _progress(label: str, length: int):
    """A progress bar on stderr when it is a terminal; with no known length, a count of rows.
    (Not on a pipe or a log file, where a bar is only noise.)"""
    if length and sys.stderr.isatty():
        return click.progressbar(length=length, label=f"{label:<11}", file=sys.stderr,
                                 show_pos=True)
    return _Counter(label)


class _Counter:
    def __init__(self, label: str):
        self.label, self.count, self.tty = label, 0, sys.stderr.isatty()
        self.shown = 0.0

    def __enter__(self):
        return self

    def update(self, n: int) -> None:
        self.count += n
        if self.tty and time.monotonic() - self.shown > 0.1:
            self.shown = time.monotonic()
            click.echo(f"\r{self.label:<11} {self.count:,}", nl=False, err=True)

    def __exit__(self, *exc):
        if self.tty:
            click.echo(f"\r{self.label:<11} {self.count:,}", err=True)


def _seed(client, dataset: str, seed_value: int, villages: int | None) -> dict:
    from emsupply import dataset as datasets
    from emsupply import seed as seeding

    started = time.monotonic()
    data = (datasets.qiandongnan(seed_value) if villages is None
            else datasets.generate(seed_value, villages=villages))
    written = seeding.seed(client, data, _progress)
    click.echo(f"seeded {dataset} in {time.monotonic() - started:.1f} s: " +
               ", ".join(f"{n} {kind}" for kind, n in written.items()) +
               ("" if any(written.values()) else " (all there already)"))
    return written


@main.command()
@click.argument("dataset", type=click.Choice(["qiandongnan"]))
@data_dir_option
@click.option("--seed", "seed_value", type=int, default=2023, show_default=True,
              help="the generator's seed")
@villages_option
@url_option
@token_option
@click.option("--parallel", type=click.IntRange(1, 32), default=4, show_default=True,
              help="calls at once over --url")
def seed(dataset: str, data_dir: Path, seed_value: int, villages: int | None, url: str | None,
         token: str | None, parallel: int) -> None:
    """Load a data set through the services' API; a second run changes nothing."""
    client = _suite(data_dir, url, token, parallel)
    try:
        _seed(client, dataset, seed_value, villages)
    except _api_errors() as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        client.close()


def _api_errors():
    from emsupply.suite import ApiError

    return ApiError


@main.command("import")
@click.argument("kind", type=click.Choice(["warehouses", "items", "levels", "stock", "roads"]))
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--skip-bad", is_flag=True,
              help="write the good rows and skip the bad ones (default: write nothing when a "
                   "row is bad)")
@data_dir_option
@url_option
@token_option
def import_(kind: str, file: Path, skip_bad: bool, data_dir: Path, url: str | None,
            token: str | None) -> None:
    """Import a CSV file of KIND (roads: a GeoJSON FeatureCollection). Every row is checked
    first; bad rows are reported by line number and, unless --skip-bad, nothing is written.
    The suite then holds what the file says: importing it again changes nothing."""
    import io

    from emsupply import csvio

    try:
        raw = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
        text, encoding = csvio.decode(raw)
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {file}: {exc}") from None
    client = _suite(data_dir, url, token)
    try:
        plan = csvio.plan_import(client, kind, io.StringIO(text, newline=""))
        if plan.problems and skip_bad and not plan.fatal:
            plan = csvio.without_bad_rows(client, plan, text)
        unit = "features" if kind == "roads" else "rows"
        if plan.problems:
            bad = len(plan.bad_lines)
            _err(f"{file}: {bad} bad {unit} of {plan.rows}" if not plan.fatal else
                 f"{file}: cannot be imported")
            for problem in sorted(plan.problems, key=lambda p: (p.line or 0, p.field)):
                _err(f"  {problem}")
            if plan.fatal or not skip_bad:
                raise click.ClickException(
                    "nothing was written" + ("" if plan.fatal else
                                             " (--skip-bad writes the good rows)"))
        written = csvio.apply(client, plan, _progress)
    except _api_errors() as exc:
        raise click.ClickException(f"{exc} (the writes before it were made)") from None
    finally:
        client.close()
    skipped = f", {len(plan.bad_lines)} bad skipped" if plan.problems else ""
    click.echo(f"imported {kind} from {file} (read as {encoding}): {written} {unit} written, "
               f"{plan.unchanged} unchanged{skipped}")


@main.command()
@click.argument("kind", type=click.Choice(["warehouses", "items", "levels", "stock", "roads"]))
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              default=Path("-"), help="the file to write (default: standard output)")
@data_dir_option
@url_option
@token_option
def export(kind: str, output: Path, data_dir: Path, url: str | None, token: str | None) -> None:
    """Export KIND as CSV (roads: GeoJSON), in the form `import` reads."""
    from emsupply import csvio

    client = _suite(data_dir, url, token)
    try:
        with _output(output) as out:
            count = csvio.export(client, kind, out, _progress)
    except _api_errors() as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        client.close()
    unit = "features" if kind == "roads" else "rows"
    _err(f"exported {count} {unit} of {kind}" + ("" if str(output) == "-" else f" to {output}"))


@contextmanager
def _output(path: Path):
    if str(path) == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w", encoding="utf-8", newline="") as fh:
        yield fh
    partial.replace(path)  # never half a file under the name asked for


# --- the storyline ---------------------------------------------------------------------------

@main.command()
@click.argument("story", type=click.Choice(["storm"]))
@data_dir_option
@url_option
@click.option("--token", envvar="EMSUPPLY_TOKEN",
              help="a commander's token (default with --data-dir: the demo commander's, or a "
                   "new one)")
@click.option("--keeper-token", envvar="EMSUPPLY_KEEPER_TOKEN",
              help="with --url: a keeper's token for the storm's townships, to receive the "
                   "stock moved there after the warning (with --data-dir: made for them)")
@click.option("--county", help="the county the storm hits (default: Rongjiang, RJ)")
@click.option("--lang", "language", metavar="zh|en",
              help="the language of the story (default: the locale's, LC_ALL / LC_MESSAGES / "
                   "LANG, when it is Chinese or English; otherwise Chinese)")
def scenario(story: str, data_dir: Path, url: str | None, token: str | None,
             keeper_token: str | None, county: str | None, language: str | None) -> None:
    """Tell the storyline of a response through the public API of a running suite: a storm's
    warning and the stock moved beforehand, first and full reports, a plan, a landslide and an
    escalation, re-plan, dispatch, deliveries, restocking. Exits non-zero if any step fails."""
    from emsupply import supervisor
    from emsupply.scenario import StepFailed, Storm
    from emsupply.suite import HttpSuite
    from shared.i18n import _, localize

    data_dir = data_dir.resolve()
    local = not url
    if not url:
        state = supervisor.running_suite(data_dir)
        if state is None:
            raise click.UsageError(f"no suite is running on {data_dir}: start one with "
                                   f"`emsupply up --data-dir {data_dir}`, or give --url and "
                                   "--token")
        url = state["url"]
        if not token:
            tokens_path = data_dir / TOKENS_FILE
            known = json.loads(tokens_path.read_text()) if tokens_path.exists() else {}
            token = known.get("commander") or _issue_token(data_dir, "commander",
                                                           "storm-scenario")
    elif not token:
        raise click.UsageError("--url needs --token (a commander's, or EMSUPPLY_TOKEN)")
    language = _language(language)
    client = HttpSuite(url, token, timeout=180.0, language=language)
    opened = [client]

    def keepers(warehouses: list[str]) -> HttpSuite:
        chosen = keeper_token or _issue_token(data_dir, "keeper", "storm-keepers",
                                              tuple(warehouses))
        opened.append(HttpSuite(url, chosen, timeout=180.0, language=language))
        return opened[-1]

    click.echo(f"through {url}/api/v1\n")
    try:
        outcome = Storm(client, click.echo, county, language,
                        keepers if local or keeper_token else None).run()
    except StepFailed as exc:
        _err(localize(_("scenario failed: %(why)s", why=exc.said), language))
        sys.exit(1)
    finally:
        for each in opened:
            each.close()
    click.echo(localize(_(
        "storm scenario done in %(seconds).1f s: incident %(incident)s, plan %(plan)s, "
        "%(shipped)s units shipped, %(unmet)s unmet, road %(road)s closed, %(transfers)s "
        "restocking transfers", seconds=outcome.seconds, incident=outcome.incident,
        plan=outcome.plan, shipped=f"{outcome.shipped:,}", unmet=f"{outcome.unmet:,}",
        road=outcome.closed_edge, transfers=len(outcome.transfers)), language))


def _language(chosen: str | None) -> str:
    """--lang, else the locale's language when it is one of ours, else Chinese (the users')."""
    from shared import i18n

    if chosen:
        try:
            return i18n.parse_language(chosen)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--lang") from None
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name, "")
        if value:
            try:
                return i18n.parse_language(value)
            except ValueError:
                return "zh"
    return "zh"


def available_services() -> tuple[str, ...]:
    """The services built so far, in start order (the gateway last: it needs the others)."""
    import importlib.util

    order = (("inventory", "inventory_svc"), ("allocation", "allocation_svc"),
             ("gateway", "gateway"))
    found = []
    for name, package in order:
        spec = importlib.util.find_spec(package)
        if spec and hasattr(importlib.import_module(package), "create_app"):
            found.append(name)
    return tuple(found)


main.add_command(token)
