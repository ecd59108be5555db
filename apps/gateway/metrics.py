"""The gateway's Prometheus series (bounded labels: the route's API and a reason, never a
namespace, key or model). The fuller set (requests, added latency, extraction) comes with
the gateway's metrics work (issue 22, item 7)."""

from __future__ import annotations

from prometheus_client import Counter

INJECTED = Counter("memoryweb_gateway_injected_total",
                   "Memories the gateway injected into upstream requests.")
SCREENED_OUT = Counter("memoryweb_gateway_screened_out_total",
                       "Recalled memories not injected because screening flagged them.")
FAIL_OPEN = Counter("memoryweb_gateway_fail_open_total",
                    "Requests forwarded unchanged because recall failed or ran over its budget.",
                    ["route", "reason"])
