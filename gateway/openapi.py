"""One OpenAPI document of everything public: the gateway's own paths and each service's,
fetched from the service (`/api/v1/openapi.json`, served without identity), merged, and cached.

Merging also says what the gateway adds to every call: the bearer token (401), the rate limit
(429, `Retry-After`), a service down or slow (503, 504), and that every error is
`application/problem+json`. Components of the same name and the same content are shared; of
the same name and other content, the service's are renamed `<service>_<name>`. Each POST that
creates something with an id is linked to the calls on that id (OpenAPI links), which is what
a stateful test needs to chain calls.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import threading
import time
from typing import Any

from gateway.proxy import ROUTES, Upstream, owner

log = logging.getLogger("emsupply.openapi")
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
PROBLEM = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "object",
                   "additionalProperties": {"type": "array", "items": {"type": "string"}}},
        "request_id": {"type": ["string", "null"]},
    },
    "required": ["type", "title", "status", "detail"],
}
PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref":
                                                           "#/components/schemas/Problem"}}}
ERRORS = {
    "400": ("BadRequest", "The request is not well formed"),
    "401": ("Unauthenticated", "No valid bearer token"),
    "403": ("Forbidden", "Outside the token's role or scope"),
    "404": ("NotFound", "No such resource"),
    "408": ("RequestTimeout", "The body did not arrive in time (EMSUPPLY_BODY_TIMEOUT)"),
    "409": ("Conflict", "Conflicts with the current state (e.g. not enough stock)"),
    "413": ("RequestEntityTooLarge", "The body is over the gateway's limit (EMSUPPLY_MAX_BODY)"),
    "422": ("UNPROCESSABLE_ENTITY", "Invalid input; `errors` maps fields to messages"),
    "429": ("RateLimited", "Too many calls with this token, or without a valid token from "
                           "this address; see Retry-After"),
    "503": ("Unavailable", "A service is down (the problem's `service` names it)"),
    "504": ("UpstreamTimeout", "A service did not answer in time (`service` names it)"),
}
ALWAYS = ("400", "401", "403", "422", "429", "503", "504")
IDEMPOTENCY_KEY = {
    "in": "header", "name": "Idempotency-Key", "required": False,
    "description": "the same key with the same body answers the first response again and "
                   "changes nothing; with another body it is 422",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200,
               "pattern": "^[\\x21-\\x7e]{1,200}$"},
}


def merge(own: dict[str, Any], services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The public document: `own` (the gateway's) plus each service's routed paths."""
    doc = copy.deepcopy(own)
    doc["info"] = {"title": "emsupply", "version": "v1",
                   "description": "Emergency-supply inventory and allocation. Every call "
                                  "needs `Authorization: Bearer <token>`."}
    components = doc.setdefault("components", {})
    paths = doc.setdefault("paths", {})
    tags = {tag["name"]: tag for tag in doc.get("tags", [])}
    for name, service_doc in services.items():
        service_doc = copy.deepcopy(service_doc)
        renames: dict[str, str] = {}
        for section, entries in service_doc.get("components", {}).items():
            mine = components.setdefault(section, {})
            for key, value in entries.items():
                if key in mine and mine[key] != value:
                    renames[f"#/components/{section}/{key}"] = \
                        f"#/components/{section}/{name}_{key}"
        if renames:
            service_doc = _rewrite_refs(service_doc, renames)
        for section, entries in service_doc.get("components", {}).items():
            for key, value in entries.items():
                ref = f"#/components/{section}/{key}"
                components[section][renames.get(ref, ref).rsplit("/", 1)[1]] = value
        for path, item in service_doc.get("paths", {}).items():
            if owner(path) == name:
                paths[path] = item
        for tag in service_doc.get("tags", []):
            tags.setdefault(tag["name"], tag)
    doc["tags"] = list(tags.values())
    doc["paths"] = dict(sorted(paths.items()))
    doc = _rewrite_refs(doc, {"#/components/schemas/Error": "#/components/schemas/Problem"})
    _errors_as_problems(doc)
    _security(doc)
    _links(doc)
    return _python_patterns(doc)


def _walk(node: Any, fn) -> Any:
    node = fn(node)
    if isinstance(node, dict):
        return {k: _walk(v, fn) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, fn) for v in node]
    return node


def _rewrite_refs(doc: dict, renames: dict[str, str]) -> dict:
    def fn(node):
        if isinstance(node, dict) and node.get("$ref") in renames:
            return {**node, "$ref": renames[node["$ref"]]}
        return node
    return _walk(doc, fn)


def _python_patterns(doc: dict) -> dict:
    """marshmallow writes Python's `\\Z` for end of string; ECMA regexes (which OpenAPI means)
    spell it `$`."""
    def fn(node):
        if isinstance(node, dict) and isinstance(node.get("pattern"), str):
            return {**node, "pattern": re.sub(r"\\Z$", "$", node["pattern"])}
        return node
    return _walk(doc, fn)


def _errors_as_problems(doc: dict) -> None:
    components = doc["components"]
    components.setdefault("schemas", {})["Problem"] = copy.deepcopy(PROBLEM)
    components["schemas"].pop("Error", None)
    responses = components.setdefault("responses", {})
    for name, description in ERRORS.values():
        responses.setdefault(name, {"description": description})
    responses.setdefault("DEFAULT_ERROR", {"description": "Any other error"})
    for response in responses.values():  # flask-smorest puts only error responses here
        if "$ref" not in response:
            response["content"] = copy.deepcopy(PROBLEM_CONTENT)
    responses["RateLimited"]["headers"] = {"Retry-After": {
        "description": "seconds until the token may call again", "schema": {"type": "integer"}}}
    responses["Unavailable"]["headers"] = {"Retry-After": {
        "description": "when the circuit is open: seconds until the service is tried again",
        "schema": {"type": "integer"}}}
    for path, method, operation in _operations(doc):
        answers = operation.setdefault("responses", {})
        for status, answer in answers.items():
            if (status == "default" or status[0] in "45") and "$ref" not in answer:
                answer["content"] = copy.deepcopy(PROBLEM_CONTENT)
        wanted = list(ALWAYS)
        if "{" in path:
            wanted.append("404")
        if method in ("post", "put", "patch", "delete"):
            wanted.extend(("408", "409", "413"))  # a body: too slow, too large (gateway)
        for status in wanted:
            answers.setdefault(status, {"$ref": f"#/components/responses/{ERRORS[status][0]}"})
        answers.setdefault("default", {"$ref": "#/components/responses/DEFAULT_ERROR"})
        if method == "post":
            params = operation.setdefault("parameters", [])
            if not any(p.get("name") == "Idempotency-Key" for p in params):
                params.append(copy.deepcopy(IDEMPOTENCY_KEY))
        operation["responses"] = dict(sorted(answers.items()))


def _operations(doc: dict):
    for path, item in doc.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def _security(doc: dict) -> None:
    doc["components"].setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http", "scheme": "bearer",
        "description": "a token made by `emsupply token create`"}
    doc["security"] = [{"bearerAuth": []}]


def _links(doc: dict) -> None:
    """Link each `POST /x` (and `POST /x/{id}/y`) that answers an object with an identifying
    field to the operations on `/x/{field}`."""
    paths = doc["paths"]
    schemas = doc["components"].get("schemas", {})
    for path, method, operation in list(_operations(doc)):
        if method != "post":
            continue
        created = next((operation["responses"][s] for s in ("201", "200")
                        if s in operation["responses"]), None)
        if not created:
            continue
        schema = created.get("content", {}).get("application/json", {}).get("schema", {})
        fields = schemas.get(schema.get("$ref", "").rsplit("/", 1)[-1], {}).get("properties", {})
        resource = path.rstrip("/").rsplit("/", 1)[-1]
        links = {}
        for target, item in paths.items():
            match = re.fullmatch(r"(/api/v1/[^/{}]+)/\{([^}]+)\}(/[^{}]*)?", target)
            if not match or match.group(1).rsplit("/", 1)[-1] != resource:
                continue
            param = match.group(2)
            field = param if param in fields else ("id" if param.endswith("id") else None)
            if field not in fields:
                continue
            for target_method in METHODS:
                if target_method in item:
                    pointer = target.replace("~", "~0").replace("/", "~1")
                    links[f"{target_method}{target.title()}".replace("/", "")
                          .replace("{", "").replace("}", "")] = {
                        "operationRef": f"#/paths/{pointer}/{target_method}",
                        "parameters": {param: f"$response.body#/{field}"},
                    }
        if links:
            created.setdefault("links", {}).update(links)


class Document:
    """The merged document, cached; a service that could not be read is tried again soon."""

    def __init__(self, own: dict[str, Any], upstreams: dict[str, Upstream], cache_s: float):
        self.own = own
        self.upstreams = upstreams
        self.cache_s = cache_s
        self._doc: dict[str, Any] | None = None
        self._until = 0.0
        self._lock = threading.Lock()

    def get(self) -> dict[str, Any]:
        if self._doc is not None and time.monotonic() < self._until:
            return self._doc
        with self._lock:
            if self._doc is None or time.monotonic() >= self._until:
                services, missing = {}, []
                for name, upstream in self.upstreams.items():
                    fetched = self._fetch(upstream)
                    if fetched is None:
                        missing.append(name)
                    else:
                        services[name] = fetched
                doc = merge(self.own, services)
                if missing:
                    doc["info"]["x-emsupply-unavailable"] = missing
                self._doc = doc
                self._until = time.monotonic() + (5.0 if missing else self.cache_s)
        return self._doc

    @staticmethod
    def _fetch(upstream: Upstream) -> dict[str, Any] | None:
        client = upstream.client
        try:
            answer = client.fetch("/api/v1/openapi.json", timeout=(client.timeout[0], 5.0))
            if answer.status == 200:
                return json.loads(answer.data)
            log.warning("%s answered %s for its OpenAPI document", upstream.name,
                        answer.status)
        except Exception as exc:  # any failure: leave the service out for now
            log.warning("cannot read the %s OpenAPI document: %s", upstream.name,
                        exc.__class__.__name__)
        return None


__all__ = ["Document", "merge", "ROUTES"]
