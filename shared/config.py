"""Settings read once from the environment, validated with one clear line per mistake."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

SERVICES = ("inventory", "allocation", "gateway")
DEFAULT_PORT = 8000
SUPPORTED_DIALECTS = ("sqlite", "postgresql")


class ConfigError(ValueError):
    """A setting that cannot work; its message is the one line shown to the operator."""


@dataclass(frozen=True)
class Settings:
    service: str
    database_url: str
    secret: str
    data_dir: Path
    redis_url: str | None = None
    # Where each service is: one URL, or several instances of it sharing its database
    # (EMSUPPLY_INVENTORY_URL=http://a:8001,http://b:8001); callers balance over them.
    inventory_urls: tuple[str, ...] = (f"http://127.0.0.1:{DEFAULT_PORT + 1}",)
    allocation_urls: tuple[str, ...] = (f"http://127.0.0.1:{DEFAULT_PORT + 2}",)
    # The gateway's port (EMSUPPLY_PORT); the services' are in their URLs.
    port: int = DEFAULT_PORT
    signature_max_age_s: int = 60
    reservation_ttl_s: int = 900
    # Plans: the vehicle of each depot level (level -> (name, capacity kg)) and a trip's cost in
    # unit-minutes; empty vehicles: the allocation service's defaults.
    vehicles: tuple[tuple[str, str, float], ...] = ()
    trip_cost: float | None = None
    # The allocation's workers load the road graph and read the whole network when they start,
    # not when the first plan asks (a nation's takes longer than the gateway waits for a plan).
    warm_start: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def inventory_url(self) -> str:
        """EMSUPPLY_INVENTORY_URL as checked: the URL, or the instances' URLs joined by commas."""
        return ",".join(self.inventory_urls)

    @property
    def allocation_url(self) -> str:
        """EMSUPPLY_ALLOCATION_URL as checked: the URL, or the instances' URLs joined by commas."""
        return ",".join(self.allocation_urls)


def _database_url(env: Mapping[str, str], service: str, data_dir: Path) -> str:
    name = f"EMSUPPLY_{service.upper()}_DB"
    raw = env.get(name, "").strip()
    if not raw:
        return f"sqlite:///{data_dir / (service + '.sqlite')}"
    try:
        url = make_url(raw)
    except ArgumentError:
        raise ConfigError(f"{name}={raw!r} is not a database URL "
                          "(expected e.g. postgresql+psycopg://user@host/db)") from None
    if url.get_backend_name() not in SUPPORTED_DIALECTS:
        raise ConfigError(f"{name}={raw!r}: unsupported database "
                          f"{url.get_backend_name()!r} (use sqlite or postgresql)")
    if url.get_backend_name() == "postgresql" and url.get_driver_name() != "psycopg":
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def _redis_url(env: Mapping[str, str]) -> str | None:
    raw = env.get("EMSUPPLY_REDIS_URL", "").strip()
    if not raw:
        return None
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"EMSUPPLY_REDIS_URL={raw!r} must start with redis://, rediss:// or unix://")
    return raw


def service_urls(env: Mapping[str, str], name: str, default: str) -> tuple[str, ...]:
    """One http(s) URL, or a comma-separated list of them (the instances of one service);
    every bad entry is named in the one line of the ConfigError."""
    raw = env.get(name, "").strip() or default
    entries = [part.strip() for part in raw.split(",")]
    if len(entries) == 1:
        problem = _url_problem(entries[0])
        if problem:
            raise ConfigError(f"{name}={raw!r} {problem}")
        return (entries[0].rstrip("/"),)
    problems, urls = [], []
    for number, entry in enumerate(entries, 1):
        url = entry.rstrip("/")
        problem = "is empty" if not entry else _url_problem(entry)
        if not problem and url in urls:
            problem = "is listed twice"
        if problem:
            problems.append(f"entry {number} {entry!r} {problem}" if entry else
                            f"entry {number} {problem}")
        urls.append(url)
    if problems:
        raise ConfigError(f"{name}={raw!r}: " + "; ".join(problems) +
                          " (expected http(s) URLs separated by commas)")
    return tuple(urls)


def _url_problem(url: str) -> str | None:
    if not url.startswith(("http://", "https://")):
        return "must be an http:// or https:// URL"
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError:
        return "has a port that is not a number from 0 to 65535"
    if not parts.hostname:
        return "has no host"
    return None


def _bounded(env: Mapping[str, str], name: str, default, low, high, parse, what: str):
    """Unset or empty is the default; anything else must parse and lie within the bounds."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} must be {what}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} must be between {low} and {high}")
    return value


def whole(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """A whole number from `low` to `high`; `default` when the variable is unset or empty."""
    return _bounded(env, name, default, low, high, int, "a whole number")


def seconds(env: Mapping[str, str], name: str, default: float, low: float,
            high: float) -> float:
    """A duration in seconds from `low` to `high`; `default` when unset or empty."""
    return _bounded(env, name, default, low, high, float, "a number of seconds")


def flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """Yes or no: 1/true/yes/on or 0/false/no/off; `default` when unset or empty."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} must be true or false (1/0, yes/no, on/off)")


def service_names(env: Mapping[str, str], name: str,
                  known: tuple[str, ...]) -> tuple[str, ...]:
    """A comma-separated choice among `known`: all of them when the variable is unset, none
    when it is set empty."""
    raw = env.get(name)
    if raw is None:
        return known
    chosen = tuple(n.strip() for n in raw.split(",") if n.strip())
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise ConfigError(f"{name} names unknown services {unknown} "
                          f"(known: {', '.join(known)})")
    return chosen


def vehicles(env: Mapping[str, str], name: str) -> tuple[tuple[str, str, float], ...]:
    """`level=vehicle:kg,...`, e.g. `township=van:2000,village=pickup:1000`; empty when unset."""
    raw = env.get(name, "").strip()
    out = []
    for part in filter(None, (p.strip() for p in raw.split(","))):
        level, _, rest = part.partition("=")
        vehicle, _, kg = rest.partition(":")
        try:
            capacity = float(kg)
        except ValueError:
            capacity = -1.0
        if not level.strip() or not vehicle.strip() or not 0 < capacity <= 1e6:
            raise ConfigError(f"{name}: {part!r} must be level=vehicle:kg with 0 < kg <= 1e6 "
                              "(e.g. township=van:2000)")
        out.append((level.strip(), vehicle.strip(), capacity))
    return tuple(out)


def load_settings(service: str, env: Mapping[str, str] | None = None,
                  data_dir: str | os.PathLike | None = None) -> Settings:
    """Read and check every setting of one service; raise ConfigError on the first bad one."""
    if service not in SERVICES:
        raise ConfigError(f"unknown service {service!r}")
    env = os.environ if env is None else env
    directory = Path(data_dir or env.get("EMSUPPLY_DATA_DIR") or "var").resolve()
    secret = env.get("EMSUPPLY_SECRET", "")
    if not secret:
        secret = _local_secret(directory)
    elif len(secret) < 16:
        raise ConfigError("EMSUPPLY_SECRET must be at least 16 characters")
    port = whole(env, "EMSUPPLY_PORT", DEFAULT_PORT, 1, 65533)
    return Settings(
        service=service,
        database_url=_database_url(env, service, directory),
        secret=secret,
        data_dir=directory,
        redis_url=_redis_url(env),
        inventory_urls=service_urls(env, "EMSUPPLY_INVENTORY_URL", f"http://127.0.0.1:{port + 1}"),
        allocation_urls=service_urls(env, "EMSUPPLY_ALLOCATION_URL",
                                     f"http://127.0.0.1:{port + 2}"),
        port=port,
        signature_max_age_s=whole(env, "EMSUPPLY_SIGNATURE_MAX_AGE", 60, 5, 3600),
        reservation_ttl_s=whole(env, "EMSUPPLY_RESERVATION_TTL", 900, 1, 7 * 86400),
        vehicles=vehicles(env, "EMSUPPLY_VEHICLES"),
        trip_cost=_bounded(env, "EMSUPPLY_TRIP_COST", None, 0.0, 1e9, float, "a number"),
        warm_start=flag(env, "EMSUPPLY_WARM_START", False),
    )


def _local_secret(directory: Path) -> str:
    """The embedded default keeps one random secret per data directory, shared by its services."""
    import secrets

    path = directory / "secret"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
    except FileExistsError:
        pass
    except OSError as exc:
        raise ConfigError(f"cannot keep a secret under {directory}: {exc.strerror}") from None
    return path.read_text().strip()
