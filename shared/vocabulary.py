"""Words more than one service speaks: the kinds of incident (the allocation service records
them; the inventory's items carry demand norms per kind)."""

from __future__ import annotations

# The source document's response kinds: flood control, disaster relief (rainstorm, landslide,
# geological hazard, hail, earthquake), snow and ice (凝冻), forest and other fires, production
# safety.
INCIDENT_TYPES = ("flood", "rainstorm", "landslide", "geological", "hail", "snow_ice",
                  "forest_fire", "fire", "earthquake", "production_safety", "other")
