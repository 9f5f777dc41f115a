"""The allocation service's words, one home each: incident levels and statuses (the types are
shared with the inventory), sourcing policies, replenishment statuses, and the inventory's word
for a depot that may send. Plan and shipment statuses live with their transitions in
`lifecycle`; road statuses in `roadtable`."""

from __future__ import annotations

from shared.vocabulary import INCIDENT_TYPES  # noqa: F401 (its home is shared: items name them)

# Response levels, I the most severe. Levels I and II go straight to the whole prefecture.
LEVELS = ("I", "II", "III", "IV")
PREFECTURE_LEVELS = ("I", "II")

INCIDENT_OPEN, INCIDENT_CLOSED = "open", "closed"
INCIDENT_STATUSES = (INCIDENT_OPEN, INCIDENT_CLOSED)

# How depots are drawn: the fastest first; township -> county -> prefecture tiers; or the
# source document's rule 州级为支撑、县级为基础、乡村为补充 (the default): the incident's own
# townships, their county depot, the prefecture depot and the other county depots, then other
# township centres.
NEAREST, GRADED, BACKBONE = "nearest", "graded", "backbone"
POLICIES = (BACKBONE, NEAREST, GRADED)

# Depot levels, the prefecture at the top.
PREFECTURE, COUNTY, TOWNSHIP, VILLAGE = "prefecture", "county", "township", "village"
DEPOT_LEVELS = (PREFECTURE, COUNTY, TOWNSHIP, VILLAGE)
BACKBONE_LEVELS = (PREFECTURE, COUNTY)

# A replenishment is proposed, then executed into transfers.
REPLENISHMENT_PLANNED, REPLENISHMENT_EXECUTED = "planned", "executed"

# The inventory's status of a warehouse that may send stock (any other never does).
ACTIVE = "active"
