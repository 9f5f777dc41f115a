"""Allocation service: road graph, incidents, allocation plans, dispatch, re-planning,
restocking."""
