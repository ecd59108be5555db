"""The gateway's Prometheus series (bounded labels: the route's API, the memory mode, a
reason from a fixed list; never a namespace, key, model or text)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter("memoryweb_gateway_requests_total",
                   "Requests the gateway admitted, by route and memory mode ('none' for "
                   "routes without memory: models).", ["route", "mode"])
INJECTED = Counter("memoryweb_gateway_injected_total",
                   "Memories the gateway injected into upstream requests.")
SCREENED_OUT = Counter("memoryweb_gateway_screened_out_total",
                       "Recalled memories not injected because screening flagged them.")
FAIL_OPEN = Counter("memoryweb_gateway_fail_open_total",
                    "Requests forwarded unchanged because recall failed or ran over its budget.",
                    ["route", "reason"])
UPSTREAM_BROKE_OFF = Counter("memoryweb_gateway_upstream_broke_off_total",
                             "Upstream answers that broke off mid-answer (a stream closed "
                             "with an error event, or a 502).", ["route"])
#: The gateway's own time before forwarding: admission (key, rate budget, mode), recall,
#: screening and injection. Buckets from 1 ms to the recall budget's range.
ADDED_LATENCY = Histogram("memoryweb_gateway_added_latency_seconds",
                          "The gateway's own time before forwarding a request (admission + "
                          "recall + injection).", ["route"],
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                   1.0, 2.5, 5.0))
LEARN_QUEUED = Counter("memoryweb_gateway_exchanges_queued_total",
                       "Answered exchanges queued (redacted) for learning.", ["route"])
EXTRACTED = Counter("memoryweb_gateway_facts_extracted_total",
                    "Candidate facts the extractor found in exchanges.", ["extractor"])
QUARANTINED = Counter("memoryweb_gateway_facts_quarantined_total",
                      "Extracted facts that entered quarantine (new candidates).")
PROMOTED = Counter("memoryweb_gateway_facts_promoted_total",
                   "Quarantined facts promoted into memories.", ["how"])  # seen | approved
STRENGTHENED = Counter("memoryweb_gateway_memories_strengthened_total",
                       "Extracted facts that repeated an existing memory and strengthened it.")
LEARN_FAILURES = Counter("memoryweb_gateway_learn_failures_total",
                         "Learning attempts that failed (the exchange stays queued), by stage.",
                         ["stage"])  # queue | extract | apply
