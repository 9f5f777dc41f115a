"""A client of the suite's public API for the command line (seed, import, export, scenario):
over HTTP through the gateway with a bearer token, or in this process through the services'
own apps (same schemas, rules and events, no server needed) when the suite is not running."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import requests

from shared import auth
from shared.config import load_settings


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: Any):
        detail = body.get("detail") if isinstance(body, dict) else str(body)[:300]
        super().__init__(f"{method} {path} -> {status}: {detail}")
        self.status, self.body = status, body


class SuiteClient:
    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None, ok: tuple[int, ...] = (200, 201)) -> Any:
        status, answer = self.send(method, path, body, headers)
        if status not in ok:
            raise ApiError(method, path, status, answer)
        return answer

    def send(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        raise NotImplementedError

    def pages(self, path: str) -> list[dict]:
        """Every row of a paginated list."""
        rows, cursor = [], None
        joiner = "&" if "?" in path else "?"
        while True:
            page = self.call("GET", f"{path}{joiner}limit=1000" +
                             (f"&cursor={cursor}" if cursor else ""))
            rows.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                return rows


class HttpSuite(SuiteClient):
    def __init__(self, url: str, token: str, timeout: float = 120.0):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def send(self, method, path, body=None, headers=None):
        response = self.session.request(method, self.url + path, json=body, headers=headers,
                                        timeout=(3.0, self.timeout))
        try:
            return response.status_code, response.json() if response.content else None
        except ValueError:
            return response.status_code, response.text


class LocalSuite(SuiteClient):
    """The services' apps in this process, called with a signed admin (or given) identity."""

    def __init__(self, data_dir: Path, identity: auth.Identity | None = None):
        from allocation_svc import create_app as allocation_app
        from gateway.proxy import owner
        from inventory_svc import create_app as inventory_app
        from shared.client import ServiceClient

        self.owner = owner
        self.identity = identity or auth.Identity("emsupply-cli", "admin")
        inventory_settings = load_settings("inventory", data_dir=data_dir)
        self.secret = inventory_settings.secret
        self.apps = {"inventory": inventory_app(inventory_settings)}
        local = InProcessTransport("inventory", self.apps["inventory"], self.secret)
        self.apps["allocation"] = allocation_app(load_settings("allocation", data_dir=data_dir),
                                                 inventory_client=local.as_client(ServiceClient))
        self.clients = {name: app.test_client() for name, app in self.apps.items()}
        logging.getLogger("emsupply.access").setLevel(logging.WARNING)  # a CLI, not a server

    def send(self, method, path, body=None, headers=None):
        service = self.owner(path.split("?", 1)[0])
        if service is None:
            return 404, {"detail": f"no service owns {path}"}
        raw = b"" if body is None else json.dumps(body).encode()
        signed = auth.sign(self.secret, self.identity, method, path, raw)
        answer = self.clients[service].open(path, method=method, data=raw or None, headers={
            **(headers or {}), **signed, "Content-Type": "application/json"})
        return answer.status_code, answer.get_json(silent=True)


class InProcessTransport:
    """Lets the allocation app reach the inventory app in this process instead of a socket."""

    def __init__(self, name: str, app, secret: str):
        self.name, self.client, self.secret = name, app.test_client(), secret

    def as_client(self, client_class):
        client = client_class(self.name, "http://in-process", self.secret)
        client.send = self.send
        return client

    def send(self, method, path, identity, body=b"", headers=None, timeout=None):
        signed = auth.sign(self.secret, identity, method, path, body)
        answer = self.client.open(path, method=method, data=body or None, headers={
            **(headers or {}), **signed, "Content-Type": "application/json"})
        response = requests.Response()
        response.status_code = answer.status_code
        response._content = answer.get_data()
        return response
