"""The `emsupply` command."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from shared.config import ConfigError


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
                               help="where the embedded default keeps its databases and logs")


@main.command()
@data_dir_option
@click.option("--port", type=click.IntRange(1, 65533), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 16), default=2, show_default=True)
def up(data_dir: Path, port: int, workers: int) -> None:
    """Run the suite: each service under gunicorn with its own database."""
    from shared import supervisor

    sys.exit(supervisor.run(data_dir.resolve(), port, available_services(), workers, click.echo))


@main.command()
@data_dir_option
@click.option("--port", type=click.IntRange(1, 65533), default=8000, show_default=True)
@click.pass_context
def demo(ctx: click.Context, data_dir: Path, port: int) -> None:
    """What `make demo` runs: everything that exists so far, on the embedded default."""
    ctx.invoke(up, data_dir=data_dir, port=port, workers=2)


@main.command()
@data_dir_option
@click.option("--service", "names", multiple=True,
              type=click.Choice(["inventory", "allocation", "gateway"]),
              help="only these (default: every service built)")
def migrate(data_dir: Path, names: tuple[str, ...]) -> None:
    """Upgrade each service's database to the newest schema."""
    from shared import supervisor

    supervisor.prepare(data_dir.resolve(), names or available_services(), dict(os.environ))
    click.echo("databases at the newest schema")


@main.command()
@click.argument("dataset", type=click.Choice(["qiandongnan"]))
@data_dir_option
@click.option("--seed", "seed_value", type=int, default=2023, show_default=True,
              help="the generator's seed")
@click.option("--url", help="the gateway of a running suite (default: in this process)")
@click.option("--token", envvar="EMSUPPLY_TOKEN", help="an admin token for --url")
def seed(dataset: str, data_dir: Path, seed_value: int, url: str | None,
         token: str | None) -> None:
    """Load a data set through the services' API; a second run changes nothing."""
    import time

    from allocation_svc import dataset as datasets
    from shared import seed as seeding
    from shared import supervisor
    from shared.suite import HttpSuite, LocalSuite

    started = time.monotonic()
    if url:
        if not token:
            raise click.UsageError("--url needs --token (or EMSUPPLY_TOKEN)")
        client = HttpSuite(url, token)
    else:
        supervisor.prepare(data_dir.resolve(), ("inventory", "allocation"), dict(os.environ))
        client = LocalSuite(data_dir.resolve())
    data = datasets.qiandongnan(seed_value)

    def progress(label: str, length: int):
        return click.progressbar(length=length, label=f"{label:<11}", file=sys.stderr,
                                 show_pos=True)

    written = seeding.seed(client, data, progress)
    click.echo(f"seeded {dataset} in {time.monotonic() - started:.1f} s: " +
               ", ".join(f"{n} {kind}" for kind, n in written.items()))


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


from gateway.cli import token  # noqa: E402 (the gateway's commands join the group)

main.add_command(token)
