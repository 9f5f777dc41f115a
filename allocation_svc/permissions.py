"""Who may do what in the allocation service: one table, action -> roles, read by the code and
by the auth-matrix test. Only writes are listed: every role reads everything, a county
commander too (help comes across county lines, and it must see the prefecture to ask for it).

And where (docs/roles.md), for an identity bound to places (`Identity.bound`):
- a county commander acts on an incident (declares, amends, plans, dispatches, cancels,
  re-plans, holds again, records deliveries) only when every site of it lies in its scope: the
  site's warehouse, township or county is named on its token. Restocking the prefecture is not
  its to do;
- a keeper or a reporter (a village grid worker) reports a road closed or degraded only near
  its depots (`NEAR_KM`, measured by `roads.near_edges`), and gives the reason. Commanders,
  integrations and admins report anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.auth import PLACED_ROLES, Identity
from shared.errors import Forbidden
from shared.i18n import _

PERMISSIONS: dict[str, tuple[str, ...]] = {
    "roads.write": ("admin",),
    "roads.report": ("admin", "commander", "integration", *PLACED_ROLES),
    "incidents.write": ("admin", "commander", "integration"),
    "plans.write": ("admin", "commander", "integration"),
    "replenishment.write": ("admin", "commander"),
}
# Work over the whole prefecture, which no bound identity does.
PREFECTURE_WIDE = ("replenishment.write",)
# A keeper's or reporter's road is near when an end lies within this many km along the roads
# (any status, either way) of the road node of a warehouse named on its token.
NEAR_KM = 5.0
# What they may say of a road near them: reopening it is a commander's call.
FIELD_STATUSES = ("closed", "degraded")


def require(identity: Identity, action: str) -> None:
    """Forbidden (403) unless the identity's role may do `action`, and, for prefecture-wide
    work, unless it is bound to no place."""
    identity.require(*PERMISSIONS[action])
    if identity.bound and action in PREFECTURE_WIDE:
        raise Forbidden(_("%(action)s is prefecture-wide: not for a token bound to "
                          "%(scope)s", action=action, scope=", ".join(identity.scope)))


def require_sites(identity: Identity, sites: Iterable[dict]) -> None:
    """Forbidden unless every site lies in a bound identity's scope (an unbound one acts
    everywhere)."""
    if not identity.bound:
        return
    scope = set(identity.scope)
    outside = [site.get("warehouse") or site.get("node") or site.get("id") for site in sites
               if not scope & {site.get("warehouse"), site.get("township"), site.get("county")}]
    if outside:
        raise Forbidden(_("sites %(sites)s are outside this %(role)s's scope (%(scope)s)",
                          sites=", ".join(map(str, outside)), role=identity.role,
                          scope=", ".join(identity.scope)))


def reports_near_only(identity: Identity) -> bool:
    """A keeper or reporter: its road reports are checked by `require_near`."""
    return identity.role in PLACED_ROLES


def require_near(identity: Identity, events: list[dict], near: set[str]) -> None:
    """Forbidden unless every event closes or slows an edge in `near` (the edges near the
    identity's depots)."""
    refused = sorted({e["edge"] for e in events
                      if e["edge"] not in near or e["status"] not in FIELD_STATUSES})
    if refused:
        raise Forbidden(_("a %(role)s may close or slow only roads within %(km)s km of its "
                          "depots (%(scope)s); not %(edges)s", role=identity.role,
                          km=f"{NEAR_KM:g}", scope=", ".join(identity.scope),
                          edges=", ".join(refused)))
