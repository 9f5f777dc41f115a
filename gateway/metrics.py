"""The gateway's Prometheus metrics (process-wide, as the default registry is)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

PROXIED = Counter("emsupply_gateway_proxied_requests_total",
                  "Calls passed on to a service, by service, method and answered status",
                  ("service", "method", "status"))
UPSTREAM_SECONDS = Histogram("emsupply_gateway_upstream_seconds",
                             "Time a service took to answer the gateway", ("service",),
                             buckets=(.002, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
UPSTREAM_FAILURES = Counter("emsupply_gateway_upstream_failures_total",
                            "Calls a service did not answer, by kind", ("service", "kind"))
BREAKER_OPEN = Gauge("emsupply_gateway_circuit_open",
                     "How many of a service's instances have their circuit open (with one "
                     "instance: 1 while it is open)", ("service",))
EVENTS_INGESTED = Counter("emsupply_gateway_events_ingested_total",
                          "Events stored in the event log, by source", ("source",))
WEBHOOK_DELIVERIES = Counter("emsupply_gateway_webhook_deliveries_total",
                             "Webhook delivery attempts, by outcome", ("outcome",))
RATE_LIMITED = Counter("emsupply_gateway_rate_limited_total", "Calls refused with 429")
