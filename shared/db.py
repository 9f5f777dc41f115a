"""One engine per service and one unit of work per command.

A unit of work commits when its block ends normally and rolls back otherwise, so nothing is
half-saved by accident. SQLite is opened in WAL mode with writes serialised (BEGIN IMMEDIATE),
so that concurrent writers queue instead of failing to upgrade a read lock.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from shared.errors import Unavailable


def make_engine(url: str, **kwargs) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               **kwargs)
        _sqlite_pragmas(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("connect_args", {"connect_timeout": 5})
    return create_engine(url, **kwargs)


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # let the "begin" hook below issue BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """The engine and session factory of one service."""

    def __init__(self, url: str, **engine_kwargs):
        self.url = url
        self.engine = make_engine(url, **engine_kwargs)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def unit_of_work(self) -> Iterator[Session]:
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def reading(self, *, one_view: bool = False) -> Iterator[Session]:
        """A session for reads only: nothing it does is committed, and on PostgreSQL its
        transaction is READ ONLY, so that a read that tries to write fails loudly instead.
        `one_view`: every statement sees the database as the first did (PostgreSQL's
        REPEATABLE READ; SQLite's transactions always do), for a read of several queries that
        must agree.

        Closing (not rolling back) ends the transaction without expiring what was loaded, so
        the objects read can still be dumped after the block, as handlers returning them do.
        """
        session = self.sessions()
        try:
            if self.is_postgres:  # set before BEGIN, and reset when the connection is returned
                options = {"postgresql_readonly": True}
                if one_view:
                    options["isolation_level"] = "REPEATABLE READ"
                session.connection(execution_options=options)
            yield session
        finally:
            session.close()

    def ping(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means "not reachable"
            raise Unavailable(f"database unreachable: {exc.__class__.__name__}") from None

    def dispose(self) -> None:
        self.engine.dispose()


_collector = threading.Lock()
_readers = 0  # reads of many rows under way in this process
_collector_was_on = False


@contextmanager
def many_rows() -> Iterator[None]:
    """Around a read of millions of rows: Python's cycle collector paused meanwhile. Each row
    is a new tuple, and the collections so many set off walk the whole heap again and again
    (two thirds of a nation's snapshot, half of its road graph's load); rows make no cycles.
    What other threads leave meanwhile is collected once the last such read ends."""
    global _readers, _collector_was_on
    with _collector:
        if _readers == 0:
            _collector_was_on = gc.isenabled()
            gc.disable()
        _readers += 1
    try:
        yield
    finally:
        with _collector:
            _readers -= 1
            if _readers == 0 and _collector_was_on:
                gc.enable()
