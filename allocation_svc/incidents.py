"""Incidents grow from a thin first report (a type and one site, within two minutes) into the
full report: level, title, sites, affected population. Every amendment is kept (who, when, what
from and to) and published (`incident.updated`; a level raised towards I also
`incident.escalated`), so that an inquiry after the response can follow the record."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from allocation_svc.inventory import Inventory
from allocation_svc.models import Incident, outbox
from allocation_svc.permissions import require, require_sites
from allocation_svc.vocabulary import INCIDENT_OPEN, LEVELS
from shared import events
from shared.auth import Identity
from shared.client import RemoteError
from shared.errors import InvalidInput, NotFound
from shared.i18n import _


def _resolve_sites(inventory: Inventory, sites: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give each site an id and its road node, township and county (from its warehouse)."""
    resolved, seen = [], set()
    for index, site in enumerate(sites):
        entry = {"id": site.get("id") or f"S{index + 1}", "warehouse": site.get("warehouse"),
                 "node": site.get("node"), "population": site.get("population") or 0,
                 "township": None, "county": None}
        if entry["id"] in seen:
            raise InvalidInput(_("two sites are called %(site)r", site=entry["id"]),
                               errors={f"sites.{index}.id": [_("must be unique")]})
        seen.add(entry["id"])
        if not entry["warehouse"] and not entry["node"]:
            raise InvalidInput(_("a site needs a warehouse code or a road node"),
                               errors={f"sites.{index}": [_("give warehouse or node")]})
        if entry["warehouse"]:
            try:
                warehouse = inventory.warehouse(entry["warehouse"])
            except RemoteError as exc:
                if exc.status == 404:
                    raise InvalidInput(_("no warehouse %(code)r", code=entry["warehouse"]),
                                       errors={f"sites.{index}.warehouse": [
                                           _("unknown warehouse code")]}) from None
                raise
            if not warehouse.get("road_node"):
                raise InvalidInput(_("warehouse %(code)s has no road node",
                                     code=entry["warehouse"]), errors={
                    f"sites.{index}.warehouse": [_("has no road_node; give node instead")]})
            entry["node"] = entry["node"] or warehouse["road_node"]
            path = warehouse.get("path") or []
            entry["county"] = path[1] if len(path) > 1 else None
            entry["township"] = path[2] if len(path) > 2 else None
        resolved.append(entry)
    return resolved


def declare(session: Session, identity: Identity, data: dict[str, Any],
            inventory: Inventory) -> Incident:
    require(identity, "incidents.write")
    sites = _resolve_sites(inventory, data["sites"])
    require_sites(identity, sites)
    now = datetime.now(UTC)
    incident = Incident(type=data["type"], level=data.get("level"), title=data.get("title"),
                        status=INCIDENT_OPEN, sites=sites,
                        drill=bool(data.get("drill")), history=[], created_by=identity.actor,
                        created_at=now, updated_at=now)
    session.add(incident)
    session.flush()
    events.record(session, outbox, "incident.declared", {
        "id": incident.id, "type": incident.type, "level": incident.level,
        "sites": [site["id"] for site in incident.sites], "drill": incident.drill,
        "actor": identity.actor})
    return incident


def amend(session: Session, identity: Identity, incident_id: int, data: dict[str, Any],
          inventory: Inventory) -> Incident:
    require(identity, "incidents.write")
    sites = _resolve_sites(inventory, data["sites"]) if "sites" in data else None
    incident = get(session, incident_id)
    require_sites(identity, [*incident.sites, *(sites or ())])
    changes: dict[str, dict[str, Any]] = {}
    for key in ("type", "level", "title", "status"):
        if key in data and data[key] != getattr(incident, key):
            changes[key] = {"from": getattr(incident, key), "to": data[key]}
            setattr(incident, key, data[key])
    if sites is not None and sites != incident.sites:
        changes["sites"] = {"from": _site_summary(incident.sites), "to": _site_summary(sites)}
        incident.sites = sites
    if not changes:
        return incident
    now = datetime.now(UTC)
    incident.updated_at = now
    incident.history = [*(incident.history or []), {
        "at": now.isoformat().replace("+00:00", "Z"), "actor": identity.actor,
        "changes": changes}]
    session.flush()
    said = {"id": incident.id, "actor": identity.actor, "changes": changes,
            "drill": incident.drill}
    events.record(session, outbox, "incident.updated", said)
    level = changes.get("level")
    if level and escalates(level["from"], level["to"]):
        events.record(session, outbox, "incident.escalated", {
            "id": incident.id, "actor": identity.actor, "from": level["from"],
            "to": level["to"], "drill": incident.drill})
    return incident


def escalates(before: str | None, after: str | None) -> bool:
    """A level raised towards I (the most severe); a first level given is not an escalation."""
    return before in LEVELS and after in LEVELS and LEVELS.index(after) < LEVELS.index(before)


def _site_summary(sites: list[dict]) -> list[dict]:
    return [{"id": site["id"], "population": site.get("population") or 0} for site in sites]


def get(session: Session, incident_id: int) -> Incident:
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise NotFound(_("no incident %(incident)s", incident=incident_id))
    return incident


def list_incidents(session: Session, status: str | None, limit: int, after: int) -> list[Incident]:
    query = select(Incident).where(Incident.id > after).order_by(Incident.id).limit(limit)
    if status:
        query = query.where(Incident.status == status)
    return list(session.scalars(query))
