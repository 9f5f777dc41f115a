"""The words of the inventory, each named once: the tables' check constraints, the schemas'
choices and the rules all take them from here."""

from __future__ import annotations

# The warehouse tree, top down: one prefecture depot, counties under it, townships, villages.
PREFECTURE, COUNTY, TOWNSHIP, VILLAGE = "prefecture", "county", "township", "village"
LEVELS = (PREFECTURE, COUNTY, TOWNSHIP, VILLAGE)
PARENT_LEVEL = {COUNTY: PREFECTURE, TOWNSHIP: COUNTY, VILLAGE: TOWNSHIP}

ACTIVE, UNDER_CONSTRUCTION, PLANNED, CLOSED = "active", "under_construction", "planned", "closed"
WAREHOUSE_STATUSES = (ACTIVE, UNDER_CONSTRUCTION, PLANNED, CLOSED)

# What moves stock. A request posts the first three; a transfer writes the last two.
RECEIPT, ISSUE, ADJUSTMENT = "receipt", "issue", "adjustment"
TRANSFER_OUT, TRANSFER_IN = "transfer_out", "transfer_in"
POSTED_KINDS = (RECEIPT, ISSUE, ADJUSTMENT)
MOVEMENT_KINDS = (*POSTED_KINDS, TRANSFER_OUT, TRANSFER_IN)
INWARD_KINDS, OUTWARD_KINDS = (RECEIPT, TRANSFER_IN), (ISSUE, TRANSFER_OUT)

HELD, COMMITTED, RELEASED, EXPIRED = "held", "committed", "released", "expired"
RESERVATION_STATUSES = (HELD, COMMITTED, RELEASED, EXPIRED)

IN_TRANSIT, RECEIVED = "in_transit", "received"
TRANSFER_STATUSES = (IN_TRANSIT, RECEIVED)
